"""CSV for spreadsheets, one implementation for the station's and the plant's exports: a cell that a
spreadsheet would run as a formula (a leading = + - @, tab or CR that is not a number) is written
as text, with a leading quote."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> str:
    """A cell a spreadsheet shows as text: a leading = + - @ tab or CR (a formula) gets a quote."""
    if value is None:
        return ""
    if type(value) in (int, float):  # a number is never a formula (the fast path of a large export)
        return str(value)
    text = str(value)
    if text.startswith(_FORMULA_START) and not _is_number(text):
        return "'" + text
    return text


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def csv_text(rows: Iterable[Iterable[object]]) -> str:
    """Rows as CSV text, every cell through csv_cell."""
    out = io.StringIO()
    writer = csv.writer(out)
    for row in rows:
        writer.writerow([csv_cell(v) for v in row])
    return out.getvalue()
