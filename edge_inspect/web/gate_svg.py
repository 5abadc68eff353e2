"""The gate report's plots as inline SVG, drawn on the server (the HMI works offline: no chart
library). Every label is escaped; the colours are the overlay's Okabe–Ito pair (production grey,
candidate blue, a failed rule vermilion), so the plots read without colour vision too: production is a
hollow circle, the candidate a filled one."""

from __future__ import annotations

from html import escape
from typing import Any

PROD, CAND, BAD = "#5f5f5f", "#0072b2", "#d55e00"
FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def _num(v: float) -> str:
    return f"{v:.1f}"


def dumbbell(title: str, rows: list[tuple[str, float | None, float | None, bool | None]]) -> str:
    """One line per suite on a 0–1 axis: production (hollow) and candidate (filled), joined; a row
    whose rule failed is drawn in vermilion and marked "worse"."""
    label_w, plot_w, right_w, row_h, top = 150, 300, 60, 22, 26
    height = top + row_h * len(rows) + 24
    width = label_w + plot_w + right_w
    x = lambda v: label_w + v * plot_w  # noqa: E731
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
        f'style="max-width:{width}px" role="img" aria-label="{escape(title)}" {FONT}>',
        f'<text x="0" y="14" font-weight="700">{escape(title)}</text>',
    ]
    for tick in (0, 0.25, 0.5, 0.75, 1):
        out.append(f'<line x1="{_num(x(tick))}" y1="{top - 4}" x2="{_num(x(tick))}" y2="{height - 20}" stroke="#bbb"/>')
        out.append(f'<text x="{_num(x(tick))}" y="{height - 6}" text-anchor="middle">{tick:g}</text>')
    for i, (label, prod, cand, ok) in enumerate(rows):
        y = top + row_h * i + row_h / 2
        colour = BAD if ok is False else CAND
        out.append(f'<text x="{label_w - 6}" y="{_num(y + 4)}" text-anchor="end">{escape(label)}</text>')
        if prod is not None and cand is not None:
            out.append(
                f'<line x1="{_num(x(prod))}" y1="{_num(y)}" x2="{_num(x(cand))}" y2="{_num(y)}" stroke="{colour}" stroke-width="2"/>'
            )
        if prod is not None:
            out.append(
                f'<circle cx="{_num(x(prod))}" cy="{_num(y)}" r="5" fill="#fff" stroke="{PROD}" stroke-width="2"/>'
            )
        if cand is not None:
            out.append(f'<circle cx="{_num(x(cand))}" cy="{_num(y)}" r="4" fill="{colour}"/>')
        if ok is False:
            out.append(
                f'<text x="{label_w + plot_w + 8}" y="{_num(y + 4)}" fill="{BAD}" font-weight="700">worse</text>'
            )
    out.append("</svg>")
    return "".join(out)


def latency_ecdf(samples: dict[str, list[float]], p95: dict[str, float]) -> str:
    """The share of parts done within t ms, per version (a step line each), with each p95 marked."""
    every = [v for ms in samples.values() for v in ms]
    if not every:
        return ""
    width, height, left, bottom, top = 460, 206, 44, 50, 22
    hi = max(every) * 1.05 or 1.0
    x = lambda v: left + (width - left - 10) * v / hi  # noqa: E731
    y = lambda share: top + (height - top - bottom) * (1 - share)  # noqa: E731
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
        f'style="max-width:{width}px" role="img" aria-label="latency per part, share of parts within a time" {FONT}>',
        '<text x="0" y="14" font-weight="700">Latency per part (share of parts done within t ms)</text>',
        f'<line x1="{left}" y1="{y(0)}" x2="{width - 10}" y2="{y(0)}" stroke="#888"/>',
    ]
    for i in range(5):
        t = hi * i / 4
        out.append(f'<text x="{_num(x(t))}" y="{height - bottom + 16}" text-anchor="middle">{t:.0f}</text>')
    for share in (0, 0.5, 1):
        out.append(f'<text x="{left - 4}" y="{_num(y(share) + 4)}" text-anchor="end">{share:g}</text>')
        out.append(f'<line x1="{left}" y1="{_num(y(share))}" x2="{width - 10}" y2="{_num(y(share))}" stroke="#ddd"/>')
    out.append(f'<text x="{width - 10}" y="{height - bottom + 16}" text-anchor="end">ms</text>')
    for who, colour, dash in (("production", PROD, ' stroke-dasharray="5 3"'), ("candidate", CAND, "")):
        ms = sorted(samples.get(who, []))
        if not ms:
            continue
        points = [f"{_num(x(0))},{_num(y(0))}"]
        for i, v in enumerate(ms):
            points += [f"{_num(x(v))},{_num(y(i / len(ms)))}", f"{_num(x(v))},{_num(y((i + 1) / len(ms)))}"]
        out.append(f'<polyline points="{" ".join(points)}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        if who in p95:
            out.append(
                f'<line x1="{_num(x(p95[who]))}" y1="{top}" x2="{_num(x(p95[who]))}" y2="{y(0)}" stroke="{colour}" stroke-width="1"{dash}/>'
            )
    out.append(
        f'<text x="{left}" y="{height - 6}"><tspan fill="{CAND}">— candidate</tspan>   '
        f'<tspan fill="{PROD}">- - production</tspan>   (vertical lines: p95)</text>'
    )
    out.append("</svg>")
    return "".join(out)


def bars(title: str, values: dict[str, float | None], unit: str) -> str:
    """Two horizontal bars (production, candidate) of a cost, labelled with their value."""
    known = [v for v in values.values() if v is not None]
    if not known:
        return ""
    width, row_h, left = 460, 24, 90
    hi = max(known) * 1.15 or 1.0
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {26 + row_h * len(values)}" width="100%" '
        f'style="max-width:{width}px" role="img" aria-label="{escape(title)}" {FONT}>',
        f'<text x="0" y="14" font-weight="700">{escape(title)}</text>',
    ]
    for i, (who, v) in enumerate(values.items()):
        y = 22 + row_h * i
        out.append(f'<text x="{left - 6}" y="{y + 15}" text-anchor="end">{escape(who)}</text>')
        if v is None:
            continue
        w = (width - left - 80) * v / hi
        colour = CAND if who == "candidate" else PROD
        out.append(f'<rect x="{left}" y="{y + 3}" width="{_num(w)}" height="16" fill="{colour}"/>')
        out.append(f'<text x="{_num(left + w + 6)}" y="{y + 15}">{v:.0f} {escape(unit)}</text>')
    out.append("</svg>")
    return "".join(out)


def check_plots(report: dict[str, Any]) -> list[str]:
    """One dumbbell per check: its F1 (pointing) or accuracy (yes/no) on every suite."""
    per_check: dict[str, list[tuple[str, float | None, float | None, bool | None]]] = {}
    for suite in report.get("suites", []):
        for row in suite["rows"]:
            if row["figure"] in ("f1", "accuracy"):
                label = suite["title"].removeprefix("Camera shift ")
                per_check.setdefault(f"{row['check']}: {row['figure'].replace('f1', 'F1')}", []).append(
                    (label, row["production"], row["candidate"], row["ok"])
                )
    return [dumbbell(title, rows) for title, rows in per_check.items()]
