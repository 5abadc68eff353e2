"""What goes over MQTT (docs/fleet.md): topics and the JSON payloads, each with a message id.

Every message the station publishes carries ``id`` (a UUID made when the outbox row is written, kept
across redeliveries): the collector upserts on it, so a message delivered twice is stored once.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..logbook import InspectionRecord

SCHEMA = 1  # the payloads' "v"; a collector ignores (and logs) a version it does not know
KINDS = ("inspection", "alarm", "review")  # what the outbox carries; status is retained, never queued


@dataclass(frozen=True)
class Topics:
    """``<prefix>/<site>/<line>/<station>/…`` for one station."""

    prefix: str
    site: str
    line: str
    station: str

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.site}/{self.line}/{self.station}"

    @property
    def key(self) -> str:
        """The station's key in the central database: site/line/station."""
        return f"{self.site}/{self.line}/{self.station}"

    def of(self, kind: str) -> str:
        return f"{self.base}/{kind}"  # inspection | alarm | review | status | ack


def parse_topic(topic: str) -> tuple[str, str, str, str, str] | None:
    """(prefix, site, line, station, kind) of a station topic, or None."""
    parts = topic.split("/")
    return tuple(parts) if len(parts) == 5 and all(parts) else None  # type: ignore[return-value]


def new_id() -> str:
    return str(uuid.uuid4())


def dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _num(value: Any) -> Any:
    """A float that JSON can carry (NaN and infinities become null)."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    return value


def inspection_payload(
    msg_id: str, topics: Topics, inspection_id: int, row: dict, rec: InspectionRecord, image_base_url: str | None
) -> dict[str, Any]:
    """The message of one logged inspection: ``row`` is the inspections row just inserted, ``rec``
    the InspectionRecord (checks with their answers and points)."""
    image = None
    if row.get("image_path") or row.get("overlay_path"):
        image = {"path": row.get("image_path"), "overlay_path": row.get("overlay_path")}
        if image_base_url:
            base = f"{image_base_url}/api/inspections/{inspection_id}"
            image["url"] = f"{base}/image" if row.get("image_path") else None
            image["overlay_url"] = f"{base}/overlay" if row.get("overlay_path") else None
    checks = [{
        "idx": i, "name": o.name, "kind": o.kind, "status": o.status, "reason": o.reason, "counted": o.counted,
        "answer": o.answer, "p_yes": _num(o.p_yes), "margin": _num(o.margin), "mass": _num(getattr(o, "mass", None)),
        "ms": round(float(o.ms), 2), "points": [[_num(float(x)), _num(float(y))] for x, y in o.points],
    } for i, o in enumerate(rec.outcomes)]  # fmt: skip
    return {
        "v": SCHEMA, "type": "inspection", "id": msg_id, "station": topics.station, "site": topics.site,
        "line": topics.line, "inspection_id": inspection_id, "result_id": row["result_id"], "ts": row["ts"],
        "ts_unix": row["ts_unix"], "recipe": row["recipe"], "recipe_name": row["recipe_name"],
        "recipe_sha256": row.get("recipe_sha256"), "part_id": row["part_id"], "trigger": row["trigger"],
        "verdict": row["verdict"], "error": row["error"], "defect_count": row["defect_count"],
        "failed_checks": row["failed_checks"], "checks": checks,
        "timings_ms": {k: _num(v) for k, v in row.items() if k.endswith("_ms")},
        "model_sha256": row["model_sha256"], "config_sha256": row["config_sha256"], "image": image,
    }  # fmt: skip


def review_payload(
    msg_id: str, topics: Topics, inspection_id: int, event: dict, definitions: list[dict]
) -> dict[str, Any]:
    """QA's review of one logged inspection: ``event`` as the log wrote it (logbook/review.py
    set_disposition, logbook/corrections.py add): ``event`` (disposition | correction), ``seq`` (the
    review's audit row id: a later review has a higher one), ``at``, ``reviewer`` and ``disposition``
    {disposition, comment} or ``correction`` {check_idx, points [{id, x, y, action}]}. ``definitions``:
    the inspection's checks as its recipe defined them (name, prompt, kind, max, expect, settings), so
    the plant turns the review into the same labels as the station (docs/model-lifecycle.md)."""
    return {
        "v": SCHEMA, "type": "review", "id": msg_id, "station": topics.station, "site": topics.site,
        "line": topics.line, "inspection_id": inspection_id, "event": event["event"], "seq": event["seq"],
        "at": event["at"], "reviewer": event["reviewer"], "disposition": event.get("disposition"),
        "correction": event.get("correction"), "definitions": definitions,
    }  # fmt: skip


def alarm_payload(
    msg_id: str, topics: Topics, event: str, code: str, message: str = "", user: str = "", at: float = 0.0
) -> dict[str, Any]:
    """An alarm raised, cleared or acknowledged (``event``)."""
    return {
        "v": SCHEMA,
        "type": "alarm",
        "id": msg_id,
        "station": topics.station,
        "site": topics.site,
        "line": topics.line,
        "event": event,
        "code": code,
        "message": message,
        "user": user,
        "at": at,
    }


def status_payload(
    topics: Topics, online: bool, at: float, status: dict | None = None, reason: str = "", outbox: dict | None = None
) -> dict[str, Any]:
    """The retained status: the station's /api/status essentials, or offline (the last will)."""
    body: dict[str, Any] = {
        "v": SCHEMA,
        "type": "status",
        "station": topics.station,
        "site": topics.site,
        "line": topics.line,
        "online": online,
        "at": at,
    }
    if reason:
        body["reason"] = reason
    if status is not None:
        body.update(
            {
                k: status.get(k)
                for k in (
                    "ready",
                    "busy",
                    "camera",
                    "plc",
                    "model",
                    "model_status",
                    "model_follow",
                    "shadow",
                    "counters",
                    "disk",
                    "last_result_at",
                    "last_cycle_ms",
                )
            }
        )
        body["alarms"] = [
            {
                "code": a["code"],
                "message": a["message"],
                "since": a["since"],
                "active": a["active"],
                "acknowledged": a["acknowledged"],
            }
            for a in status.get("alarms", [])
        ]
    if outbox is not None:
        body["outbox"] = outbox
    return body


def will_payload(topics: Topics, connected_at: float) -> dict[str, Any]:
    """The last will: the retained status the broker publishes when the connection is lost. It is
    registered when the station connects, so its only time is ``connected_at`` (no ``at``: a
    subscriber takes the time it arrives as the time of the loss, as the collector does)."""
    body = status_payload(topics, False, connected_at, reason="connection lost")
    body["connected_at"] = body.pop("at")
    return body
