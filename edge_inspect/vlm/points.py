"""Point answers of Molmo models → normalized points.

Two dialects are understood (see shared DESIGN notes, section 3):

* Molmo2: ``<points coords="1 1 412 630 2 505 611">screw</points>`` — the first number of each
  image group is the 1-based image index, then (object index, x, y) triples with x, y on 0–1000.
  Groups for several images are separated by a tab or ``;``.
* Molmo v1: ``<point x="61.5" y="40.0" alt="screw">screw</point>`` and
  ``<points x1=".." y1=".." x2=".." y2=".." alt="..">screw</points>``, percent 0–100.

Parsing never raises: text that cannot be read gives zero points and ``malformed=True``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_MOLMO2_RE = re.compile(r"<points\s+coords=\"([^\"]*)\"\s*>(.*?)</points>", re.S)
_V1_POINT_RE = re.compile(r"<point\s+([^>]*)>(.*?)</point>", re.S)
_V1_POINTS_RE = re.compile(r"<points\s+((?:(?!coords=)[^>])*)>(.*?)</points>", re.S)
_ATTR_RE = re.compile(r"(\w+)\s*=\s*\"([^\"]*)\"")
_TOTAL_RE = re.compile(r"total of\s+(\d+)", re.I)
_NONE_RE = re.compile(r"\bthere\s+(?:are|is)\s+(?:none|no\b)", re.I)
_ANY_TAG_RE = re.compile(r"</?points?\b", re.I)


@dataclass(frozen=True)
class Point:
    """One pointed object: x, y normalized to [0, 1] of the image (x to the right, y down)."""

    x: float
    y: float
    label: str = ""
    object_index: int | None = None
    image_index: int = 0


@dataclass(frozen=True)
class PointAnswer:
    """Everything read from one answer text."""

    points: list[Point] = field(default_factory=list)
    malformed: bool = False
    none_found: bool = False
    stated_count: int | None = None
    problem: str = ""

    @property
    def count(self) -> int:
        return len(self.points)


class _Malformed(ValueError):
    pass


def parse_points(text: str) -> PointAnswer:
    """Read every point in ``text`` (either dialect)."""
    if not isinstance(text, str):
        return PointAnswer(malformed=True, problem=f"answer is {type(text).__name__}, not text")
    points: list[Point] = []
    consumed: list[tuple[int, int]] = []
    try:
        for match in _MOLMO2_RE.finditer(text):
            points.extend(_molmo2_points(match.group(1), match.group(2).strip()))
            consumed.append(match.span())
        for regex in (_V1_POINT_RE, _V1_POINTS_RE):
            for match in regex.finditer(text):
                if any(a <= match.start() < b for a, b in consumed):
                    continue
                points.extend(_v1_points(match.group(1), match.group(2).strip()))
                consumed.append(match.span())
    except _Malformed as err:
        return PointAnswer(malformed=True, problem=str(err))

    leftover = text
    for a, b in sorted(consumed, reverse=True):
        leftover = leftover[:a] + leftover[b:]
    if _ANY_TAG_RE.search(leftover):
        return PointAnswer(malformed=True, problem="unterminated or unreadable point markup")

    total = _TOTAL_RE.search(text)
    stated = int(total.group(1)) if total else None
    none_found = not points and bool(_NONE_RE.search(text))
    if not points and not none_found and stated != 0:
        return PointAnswer(malformed=True, stated_count=stated, problem="no points and no 'none' answer")
    return PointAnswer(points=points, none_found=none_found, stated_count=stated)


def _number(value: str, what: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise _Malformed(f"{what} {value!r} is not a number") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise _Malformed(f"{what} {value!r} is not finite")
    return number


def _unit(value: float, scale: float, what: str) -> float:
    if not 0.0 <= value <= scale:
        raise _Malformed(f"{what} {value:g} outside 0..{scale:g}")
    return value / scale


def _molmo2_points(coords: str, label: str) -> list[Point]:
    points: list[Point] = []
    for group in re.split(r"[\t;]", coords):
        numbers = group.split()
        if not numbers:
            continue
        if (len(numbers) - 1) % 3 != 0 or len(numbers) < 4:
            raise _Malformed(f"coords group {group.strip()!r} is not: image, then (object, x, y) triples")
        image = int(_number(numbers[0], "image index"))
        if image < 1:
            raise _Malformed(f"image index {image} < 1")
        for i in range(1, len(numbers), 3):
            obj = int(_number(numbers[i], "object index"))
            x = _unit(_number(numbers[i + 1], "x"), 1000.0, "x")
            y = _unit(_number(numbers[i + 2], "y"), 1000.0, "y")
            points.append(Point(x=x, y=y, label=label, object_index=obj, image_index=image - 1))
    return points


def _v1_points(attr_text: str, label: str) -> list[Point]:
    attrs = dict(_ATTR_RE.findall(attr_text))
    label = attrs.get("alt", label) or label
    if "x" in attrs or "y" in attrs:
        if "x" not in attrs or "y" not in attrs:
            raise _Malformed("point needs both x and y")
        x = _unit(_number(attrs["x"], "x"), 100.0, "x")
        y = _unit(_number(attrs["y"], "y"), 100.0, "y")
        return [Point(x=x, y=y, label=label, object_index=1)]
    indices = sorted({int(k[1:]) for k in attrs if re.fullmatch(r"[xy]\d+", k)})
    if not indices:
        raise _Malformed("points tag without coordinates")
    points = []
    for n, i in enumerate(indices, start=1):
        if f"x{i}" not in attrs or f"y{i}" not in attrs:
            raise _Malformed(f"point {i} needs both x{i} and y{i}")
        x = _unit(_number(attrs[f"x{i}"], f"x{i}"), 100.0, f"x{i}")
        y = _unit(_number(attrs[f"y{i}"], f"y{i}"), 100.0, f"y{i}")
        points.append(Point(x=x, y=y, label=label, object_index=n))
    return points


def format_molmo2_points(points: list[tuple[float, float]], label: str, image_index: int = 1) -> str:
    """Molmo2 point text for normalized (x, y) points; "There are none." for an empty list."""
    if not points:
        return "There are none."
    triples = " ".join(
        f"{i} {round(x * 1000):03d} {round(y * 1000):03d}" for i, (x, y) in enumerate(points, start=1)
    )
    return f'<points coords="{image_index} {triples}">{label}</points>'
