"""Argument types shared by the tools' command lines."""

from __future__ import annotations

import argparse


def seed_range(text: str) -> range:
    """START:STOP → range(START, STOP) of generator seeds."""
    try:
        start, stop = (int(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be START:STOP, got {text!r}") from None
    if stop <= start:
        raise argparse.ArgumentTypeError(f"seeds {text!r}: STOP must be greater than START")
    return range(start, stop)
