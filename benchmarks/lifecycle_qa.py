"""QA played from the generator's ground truth, for benchmarks/lifecycle_e2e.py.

``Reviewer`` works the station's review queue through the web API as a QA engineer's clicks do: it
logs in with the form (session cookie, CSRF token from ``/api/session``), lists the unreviewed FAILs
and the parts review sampling chose, opens each inspection, looks at its frame, and for every pointing
check removes the model's points that are on no object and adds a point on each object the model
missed (``POST /api/inspections/{id}/corrections``), then sets the part's disposition. What the frame
truly held comes from the synthetic camera: the log names each frame by the seed it was rendered from
(``frame_id``) and ``SyntheticSource.part(seed)`` renders it again with its truth. A point is on an
object where the evaluation's hit rule says so (Hungarian matching, inside the object's mask grown by
3 px: ``edge_inspect.evaluation.metrics.score_points``).

``line_figures`` scores what a model said on the line's parts against the same truth: recall on a
defect kind, false calls, bad parts passed and good parts rejected, each check's status right.
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np

from edge_inspect.camera.sources import SyntheticSource
from edge_inspect.config import CountCheck, PointCheck, QACheck, Recipe
from edge_inspect.evaluation.metrics import score_points
from edge_inspect.evaluation.tasks import point_objects, yes_no_answer
from edge_inspect.inspection.checks import judge_points
from edge_inspect.sim import Part

LOGIN_TOKEN = re.compile(r'name="login_token" value="([^"]+)"')
TASK_OF_PROMPT = {  # the station's prompts are the evaluation's canonical ones (evaluation/tasks.py)
    "Point to any surface defects.": "defects",
    "Point to the screws.": "screws",
    "Point to the empty screw holes.": "holes",
    "Is the label present?": "label",
    "Is the label missing?": "label_missing",
}
DILATE_PX = 3  # the evaluation's hit rule


def check_task(check: Any) -> str:
    prompt = check.question if isinstance(check, QACheck) else check.prompt
    if prompt not in TASK_OF_PROMPT:
        raise ValueError(f"check {check.name}: {prompt!r} is not a question the generator's truth answers")
    return TASK_OF_PROMPT[prompt]


def true_status(check: Any, part: Part) -> str:
    """The check's status on the part's truth, by the check's own rule."""
    task = check_task(check)
    if isinstance(check, QACheck):
        return "pass" if ("yes" if yes_no_answer(part, task) else "no") == check.expect else "fail"
    points = [o.normalized(part.width, part.height) for o in point_objects(part, task)]
    return judge_points(check, points, False, "").status


def point_review(points: list[list[float]], part: Part, task: str) -> tuple[list[list[float]], list[list[float]], Any]:
    """(model points on no object: remove, true points of objects no model point is on: add, the score)."""
    objects = point_objects(part, task)
    truth = [o.normalized(part.width, part.height) for o in objects]
    score = score_points([(p[0], p[1]) for p in points], truth, [o.mask for o in objects], DILATE_PX)
    on_object = {m.prediction for m in score.matches if m.hit}
    found = score.hit_objects()
    remove = [p for k, p in enumerate(points) if k not in on_object]
    add = [[round(x, 4), round(y, 4)] for k, (x, y) in enumerate(truth) if k not in found]
    return remove, add, score


@dataclass
class ReviewReport:
    parts: int = 0
    labelled: int = 0  # parts given a disposition or a correction: what dataset export takes
    dispositions: dict[str, int] = field(default_factory=dict)
    corrected_checks: int = 0  # (inspection, check) pairs whose points were corrected
    points_added: int = 0
    points_removed: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # why each part was in the queue
    queue: int = 0  # parts in the queue when the review began
    frame_mismatches: int = 0  # kept frames unlike the part their seed renders (must stay 0)
    requests: int = 0
    reviewed_ids: list[int] = field(default_factory=list)
    corrected: list[tuple[int, int]] = field(default_factory=list)  # (inspection, check idx)


class Reviewer:
    """A QA engineer at the review pages, with the generator's truth for eyes."""

    def __init__(self, base: str, user: str, password: str, camera: SyntheticSource, recipe: Recipe):
        self.client = httpx.Client(base_url=base, timeout=60)
        self.user, self.password, self.camera, self.recipe = user, password, camera, recipe
        self.csrf = ""
        self.requests = 0

    def _get(self, path: str, **params: Any) -> httpx.Response:
        self.requests += 1
        r = self.client.get(path, params=params)
        r.raise_for_status()
        return r

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.requests += 1
        r = self.client.post(path, json=body, headers={"X-CSRF-Token": self.csrf})
        if r.status_code != 200:
            raise RuntimeError(f"POST {path}: {r.status_code} {r.text[:200]}")
        return r.json()

    def login(self) -> None:
        token = LOGIN_TOKEN.search(self._get("/login").text)
        if token is None:
            raise RuntimeError("the login page has no login_token")
        self.requests += 1
        form = {"user": self.user, "password": self.password, "login_token": token.group(1), "next": "/review"}
        r = self.client.post("/login", data=form)
        if r.status_code != 303:
            raise RuntimeError(f"login as {self.user}: {r.status_code}")
        self.csrf = self._get("/api/session").json()["csrf"]

    def queue(self) -> list[dict[str, Any]]:
        """The unreviewed FAILs and the sampled parts not yet reviewed, oldest first."""
        found: dict[int, dict[str, Any]] = {}
        for params in ({"verdict": "FAIL", "disposition": "none"}, {"sampled": 1, "disposition": "none"}):
            page = 1
            while True:
                got = self._get("/api/inspections", page=page, per_page=200, **params).json()
                for item in got["items"]:
                    found[item["id"]] = item
                if page * got["per_page"] >= got["total"] or not got["items"]:
                    break
                page += 1
        return [found[k] for k in sorted(found)]

    def _frame_is_the_seeds(self, inspection_id: int, part: Part) -> bool:
        jpeg = self._get(f"/api/inspections/{inspection_id}/image").content
        kept = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        return (
            kept is not None
            and kept.shape == part.image.shape
            and float(np.abs(kept.astype(np.int16) - part.image.astype(np.int16)).mean()) < 4.0
        )

    def review(self, limit: int) -> ReviewReport:
        """Review at most ``limit`` parts of the queue, oldest first."""
        report = ReviewReport()
        self.login()
        items = self.queue()
        report.queue = len(items)
        checks = {c.name: c for c in self.recipe.checks}
        for item in items[:limit]:
            detail = self._get(f"/api/inspections/{item['id']}").json()
            if detail.get("frame_id") is None:
                raise RuntimeError(f"inspection {item['id']} has no frame_id: not a synthetic camera's frame")
            part = self.camera.part(int(detail["frame_id"]))
            if not self._frame_is_the_seeds(item["id"], part):
                report.frame_mismatches += 1
                continue
            reason = "FAIL" if item["verdict"] == "FAIL" and not item.get("review_reason") else "sampled"
            report.reasons[reason] = report.reasons.get(reason, 0) + 1
            truly_bad = False
            for c in detail["checks"]:
                check = checks[c["name"]]
                truly_bad |= true_status(check, part) != "pass"
                if isinstance(check, PointCheck | CountCheck):
                    remove, add, _ = point_review(c["points"], part, check_task(check))
                    if remove or add:
                        self._post(
                            f"/api/inspections/{item['id']}/corrections",
                            {"check_idx": c["idx"], "add": add, "remove": remove},
                        )
                        report.corrected_checks += 1
                        report.corrected.append((item["id"], c["idx"]))
                        report.points_added += len(add)
                        report.points_removed += len(remove)
            disposition = None
            if detail["verdict"] == "FAIL":
                disposition = "confirmed_defect" if truly_bad else "false_reject"
            elif detail["verdict"] == "PASS" and truly_bad:
                disposition = "missed_defect"
            if disposition is not None:
                self._post(
                    f"/api/inspections/{item['id']}/disposition",
                    {"disposition": disposition, "comment": "played from the generator's truth"},
                )
                report.dispositions[disposition] = report.dispositions.get(disposition, 0) + 1
            report.parts += 1
            report.labelled += disposition is not None or any(i == item["id"] for i, _ in report.corrected)
            report.reviewed_ids.append(item["id"])
        report.requests = self.requests
        return report


# -- the line's figures against the truth --------------------------------------------------------------


def logged_parts(db_path: Path, first_id: int, last_id: int, shadow_version: str | None = None) -> list[dict]:
    """What the log holds of inspections ``first_id``..``last_id``: frame id, verdict, per check its
    status and points; with ``shadow_version``, only the parts that version shadowed, with its own."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "select id, frame_id, verdict from inspections where id between ? and ? and frame_id is not null "
            "order by id",
            [first_id, last_id],
        ).fetchall()
        out = []
        for inspection_id, frame_id, verdict in rows:
            checks = {
                name: {"idx": idx, "status": status, "points": []}
                for idx, name, status in db.execute(
                    "select idx, name, status from checks where inspection_id = ?", [inspection_id]
                )
            }
            by_idx = {c["idx"]: c for c in checks.values()}
            for idx, x, y in db.execute("select check_idx, x, y from points where inspection_id = ?", [inspection_id]):
                by_idx[idx]["points"].append([x, y])
            entry = {"id": inspection_id, "frame_id": frame_id, "verdict": verdict, "checks": checks}
            if shadow_version is not None:
                got = db.execute(
                    "select verdict from shadow_results where inspection_id = ? and version = ?",
                    [inspection_id, shadow_version],
                ).fetchone()
                if got is None:
                    continue
                entry["shadow"] = {
                    "verdict": got[0],
                    "checks": {
                        name: {"idx": idx, "status": status, "points": json.loads(points or "[]")}
                        for idx, name, status, points in db.execute(
                            "select idx, name, status, points from shadow_checks where inspection_id = ? and version = ?",
                            [inspection_id, shadow_version],
                        )
                    },
                }
            out.append(entry)
        return out
    finally:
        db.close()


def line_figures(parts: list[dict], camera: SyntheticSource, recipe: Recipe, kind: str, which: str = "") -> dict:
    """A model's figures on logged line parts against the truth (``which``: "shadow" scores the shadow's
    verdicts of the same parts). Recall on ``kind``: its objects a defect point is on, over all of them."""
    checks = {c.name: c for c in recipe.checks}
    defect_check = next(c for c in recipe.checks if not isinstance(c, QACheck) and check_task(c) == "defects")
    kind_objects = kind_hits = clean = false_calls = good = good_rejected = bad = bad_passed = 0
    right = {name: 0 for name in checks}
    judged = 0
    for entry in parts:
        said = entry[which] if which else entry
        if said["verdict"] not in ("PASS", "FAIL"):
            continue
        judged += 1
        part = camera.part(int(entry["frame_id"]))
        truly_bad = False
        for name, check in checks.items():
            status = true_status(check, part)
            truly_bad |= status != "pass"
            right[name] += said["checks"].get(name, {}).get("status") == status
        points = said["checks"][defect_check.name]["points"]
        _, _, score = point_review(points, part, "defects")
        objects = point_objects(part, "defects")
        hit = score.hit_objects()
        for k, o in enumerate(objects):
            if o.kind == kind:
                kind_objects += 1
                kind_hits += k in hit
        if not objects:
            clean += 1
            false_calls += bool(points)
        if truly_bad:
            bad += 1
            bad_passed += said["verdict"] == "PASS"
        else:
            good += 1
            good_rejected += said["verdict"] == "FAIL"

    def share(n: int, d: int) -> float | None:
        return round(n / d, 4) if d else None

    return {
        "parts": judged,
        f"{kind}_objects": kind_objects,
        f"{kind}_found": kind_hits,
        f"{kind}_recall": share(kind_hits, kind_objects),
        "clean_parts": clean,
        "false_call_rate": share(false_calls, clean),
        "bad_parts": bad,
        "bad_parts_passed": share(bad_passed, bad),
        "good_parts": good,
        "good_parts_rejected": share(good_rejected, good),
        "check_right": {name: share(n, judged) for name, n in right.items()},
    }
