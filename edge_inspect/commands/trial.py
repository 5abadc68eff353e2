"""``edge-inspect try``: a recipe on image files, for commissioning — no PLC, nothing logged.

Writes an overlay PNG per image (each check in its own colour, with a legend), prints a table
(image, check, answer, points, status, verdict) and writes JSON. A bad image or an unknown recipe
is reported in one line and the rest go on; the exit code is 2 when anything was reported. When
nothing ran, only the errors are printed.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import cv2

from ..camera.images import images_in
from ..config import StationConfig
from ..inspection.inspector import Inspector
from ..inspection.overlay import draw_overlay
from ..vlm import VisionLanguageModel


def image_files(inputs: list[Path]) -> tuple[list[Path], list[str]]:
    """Image files named or found (not recursively) in the folders given, and one problem line per bad input."""
    files, problems = [], []
    for item in inputs:
        if item.is_dir():
            found = images_in(item)
            if not found:
                problems.append(f"{item}: no image files in this folder")
            files += found
        elif item.is_file():
            files.append(item)
        else:
            problems.append(f"{item}: no such file or folder")
    return files, problems


def run_try(
    config: StationConfig, model: VisionLanguageModel, inputs: list[Path], recipes: list[int], out: Path
) -> int:
    problems: list[str] = []
    chosen = []
    for number in recipes or [config.triggers.recipe]:
        recipe = config.recipe(number)
        if recipe is None:
            problems.append(
                f"recipe {number} is not configured (recipes: {', '.join(str(r.number) for r in config.recipes)})"
            )
        else:
            chosen.append(recipe)
    files, bad_inputs = image_files(inputs)
    problems += bad_inputs
    for line in problems:
        print(f"edge-inspect: error: {line}", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    inspector = Inspector(model, config.model.max_new_tokens)
    results = []
    table = [("image", "recipe", "check", "answer", "points", "status", "verdict")]
    for path in files:
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None:
            line = f"{path}: not an image OpenCV can read"
            print(f"edge-inspect: error: {line}", file=sys.stderr)
            problems.append(line)
            continue
        for recipe in chosen:
            inspection = inspector.run(frame, recipe)
            overlay = out / f"{path.stem}_r{recipe.number}_overlay.png"
            cv2.imwrite(
                str(overlay),
                draw_overlay(frame, inspection.outcomes, inspection.verdict, [c.roi for c in recipe.checks]),
            )
            results.append(
                {
                    "image": str(path),
                    "recipe": recipe.number,
                    "verdict": inspection.verdict.name,
                    "error": inspection.error,
                    "overlay": str(overlay),
                    "timings_ms": inspection.timings_ms,
                    "checks": [asdict(o) for o in inspection.outcomes],
                }
            )
            for o in inspection.outcomes:
                answer = (
                    o.answer
                    if o.kind != "qa"
                    else f"{o.answer} (p_yes {o.p_yes:.2f})"
                    if o.p_yes is not None
                    else o.answer
                )
                pts = " ".join(f"({x:.3f},{y:.3f})" for x, y in o.points) or "-"
                table.append(
                    (
                        path.name,
                        str(recipe.number),
                        o.name,
                        answer[:40].replace("\n", " "),
                        pts[:60],
                        o.status,
                        inspection.verdict.name,
                    )
                )
    report = out / "try.json"
    report.write_text(json.dumps({"results": results, "problems": problems}, indent=2))
    if not results:  # nothing ran: the errors above say why, no empty table under them
        return 2
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print(f"{len(results)} inspection(s); overlays and {report.name} in {out}")
    return 2 if problems else 0
