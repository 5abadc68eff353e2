"""Point answers of Molmo models → normalized points.

Two dialects are understood (formats in models/README.md):

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

# One pass over the text finds every tag start and every '>'; the parser walks these events in
# order, so its time is linear in the text (no regex rescans from each unclosed tag).
_EVENT_RE = re.compile(r"<(/?)(points?)\b|>", re.I)
_ATTR_RE = re.compile(r"(?<![\w-])([A-Za-z_]\w{0,15})\s*=\s*\"([^\"]*)\"")
_NUMBER_RE = re.compile(r"[+-]?(?:\d{1,10}(?:\.\d{0,10})?|\.\d{1,10})")
_INDEX_RE = re.compile(r"[xy](\d{1,6})")
_TOTAL_RE = re.compile(r"total of\s{1,10}(\d+)", re.I)
_NONE_RE = re.compile(r"\bthere\s{1,10}(?:are|is)\s{1,10}(?:none|no\b)", re.I)
MAX_DIGITS = 10  # numbers and indices longer than this are refused (an answer, not an attack surface)


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
    """Read every point in ``text`` (either dialect). Linear in the length of the text; never raises."""
    if not isinstance(text, str):
        return PointAnswer(malformed=True, problem=f"answer is {type(text).__name__}, not text")
    try:
        points = _read_tags(text)
    except _Malformed as err:
        return PointAnswer(malformed=True, problem=str(err))

    total = _TOTAL_RE.search(text)
    digits = total.group(1) if total else ""
    stated = int(digits) if digits and len(digits) <= MAX_DIGITS else None
    none_found = not points and bool(_NONE_RE.search(text))
    if not points and not none_found and stated != 0:
        return PointAnswer(malformed=True, stated_count=stated, problem="no points and no 'none' answer")
    return PointAnswer(points=points, none_found=none_found, stated_count=stated)


def _read_tags(text: str) -> list[Point]:
    """Walk the tag events: each opening tag needs its '>' and then its own closing tag."""
    # (start, end, kind): kind is ">", or the tag as written: "point", "points", "/point", "/points", …
    events = [
        (m.start(), m.end(), m.group(0) if m.group(0) == ">" else m.group(1) + m.group(2))
        for m in _EVENT_RE.finditer(text)
    ]
    tags = [i for i, e in enumerate(events) if e[2] != ">"]
    points: list[Point] = []
    for t in range(0, len(tags), 2):
        i = tags[t]
        start, end, kind = events[i]
        if kind not in ("point", "points"):
            raise _Malformed(f"unreadable point markup at {start}")
        close = tags[t + 1] if t + 1 < len(tags) else None
        if i + 1 >= len(events) or events[i + 1][2] != ">":
            raise _Malformed(f"<{kind} tag at {start} is not closed with '>'")
        if close is None or events[close][2] != "/" + kind:
            raise _Malformed(f"<{kind} tag at {start} has no </{kind}>")
        attrs = text[end : events[i + 1][0]]
        label = text[events[i + 1][1] : events[close][0]].strip()
        points.extend(_molmo2_points(attrs, label) if "coords=" in attrs else _v1_points(attrs, label))
    return points


def _number(value: str, what: str) -> float:
    if not _NUMBER_RE.fullmatch(value.strip()):
        shown = value if len(value) <= 24 else value[:20] + "..."
        raise _Malformed(f"{what} {shown!r} is not a number of at most {MAX_DIGITS} digits")
    return float(value)


def _index(value: str, what: str) -> int:
    number = _number(value, what)
    if number != int(number):
        raise _Malformed(f"{what} {value!r} is not a whole number")
    return int(number)


def _unit(value: float, scale: float, what: str) -> float:
    if not 0.0 <= value <= scale:
        raise _Malformed(f"{what} {value:g} outside 0..{scale:g}")
    return value / scale


def _molmo2_points(attr_text: str, label: str) -> list[Point]:
    attrs = dict(_ATTR_RE.findall(attr_text))
    if "coords" not in attrs:
        raise _Malformed("points tag with an unreadable coords attribute")
    coords = attrs["coords"]
    points: list[Point] = []
    for group in re.split(r"[\t;]", coords):
        numbers = group.split()
        if not numbers:
            continue
        if (len(numbers) - 1) % 3 != 0 or len(numbers) < 4:
            raise _Malformed(f"coords group {group.strip()!r} is not: image, then (object, x, y) triples")
        image = _index(numbers[0], "image index")
        if image < 1:
            raise _Malformed(f"image index {image} < 1")
        for i in range(1, len(numbers), 3):
            obj = _index(numbers[i], "object index")
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
    keys = [k for k in attrs if k[:1] in "xy" and k[1:].isdigit()]
    if any(not _INDEX_RE.fullmatch(k) for k in keys):
        raise _Malformed("point index longer than 6 digits")
    indices = sorted({int(k[1:]) for k in keys})
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
    triples = " ".join(f"{i} {round(x * 1000):03d} {round(y * 1000):03d}" for i, (x, y) in enumerate(points, start=1))
    return f'<points coords="{image_index} {triples}">{label}</points>'
