"""The few types every layer shares: the verdict of an inspection and the station's error codes.

A leaf module: it imports nothing of ours, so checks, the log, the PLC link and the web pages can
all use it without depending on each other.
"""

from __future__ import annotations

import enum


class Verdict(enum.IntEnum):
    """Verdict of one inspection; the numbers are the PLC's `verdict` register values."""

    PASS = 1
    FAIL = 2
    ERROR = 3


class ErrorCode(enum.IntEnum):
    """The PLC's `error_code` register (docs/plc.md)."""

    NONE = 0
    MODEL = 1  # model failed or gave no usable answer
    CAMERA = 2  # no frame / camera lost
    MISSED_TRIGGER = 3  # reserved: a missed trigger is counted in missed_triggers, never put on a result
    DISK_FULL = 4  # log could not be written; signalling continues
    BAD_RECIPE = 5  # recipe number not configured
    INTERNAL = 6
