"""What the commands print and read that is not their work: a line per inspection for ``edge-inspect
run``, the demo's ``--defect-rate``. Light to import: the argument parser needs it."""

from __future__ import annotations

import argparse


def print_event(event) -> None:
    """One line per event on stdout: an inspection names its failed checks by number (from 1) and name."""
    from ..station.events import AlarmCleared, AlarmRaised, InspectionDone, Started, Stopped

    if isinstance(event, InspectionDone):
        failed = "; ".join(  # by number (from 1, as on the HMI) and name, with the reason
            f"{i} {c.name}: {c.reason}" for i, c in enumerate(event.checks, 1) if c.status != "pass"
        )
        print(
            f"{event.result_id:>6} {event.verdict:5} recipe={event.recipe} part={event.part_id or '-'} "
            f"defects={event.defect_count}"
            + (f" failed: {failed}" if failed else "")
            + (f" {event.error}" if event.error else ""),
            flush=True,
        )
    elif isinstance(event, AlarmRaised):
        print(f"[alarm] {event.code} {event.message}", flush=True)
    elif isinstance(event, AlarmCleared):
        print(f"[alarm_cleared] {event.code}", flush=True)
    elif isinstance(event, Started):
        print(f"[started] {event.station}", flush=True)
    elif isinstance(event, Stopped):
        print("[stopped]", flush=True)


def defect_rate(text: str) -> float | None:
    """--defect-rate: a share 0..1, or 'mix' for the part generator's own mix (most parts defective)."""
    if text == "mix":
        return None
    try:
        rate = float(text)
    except ValueError:
        rate = -1.0
    if not 0.0 <= rate <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a share from 0 to 1 (0.1 = one part in ten) nor 'mix'")
    return rate
