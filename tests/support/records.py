"""Inspection records and a frame for tests of the log and the fleet path."""

import numpy as np

from edge_inspect.inspection.checks import CheckOutcome
from edge_inspect.logbook import InspectionRecord
from edge_inspect.verdict import Verdict

FRAME = np.full((120, 160, 3), 128, np.uint8)


def record(result_id: int, verdict: Verdict, part_id: str | None = None) -> InspectionRecord:
    """A record with a point check (failed for FAIL) and a yes/no check."""
    outcomes = [
        CheckOutcome("surface", "point", "fail" if verdict == Verdict.FAIL else "pass", "found 1", [(0.5, 0.5)], 1),
        CheckOutcome("label", "qa", "pass", "answered yes", answer="yes", p_yes=0.9, margin=0.8),
    ]
    return InspectionRecord(
        result_id=result_id,
        station="s",
        recipe=1,
        recipe_name="plate",
        part_id=f"P{result_id}" if part_id is None else part_id,
        trigger="plc",
        verdict=verdict,
        error="",
        outcomes=outcomes,
        timings_ms={"inspect_ms": 12.5, "cycle_ms": 20.0},
        model_sha256="m" * 64,
        config_sha256="c" * 64,
        rois=[[(0.1, 0.1), (0.9, 0.1), (0.9, 0.9)], None],
    )
