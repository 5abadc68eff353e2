"""``edge-inspect fleet dataset export OUT --db … --images …``: the reviewed inspections of every station
in the plant's database as training records (docs/model-lifecycle.md, "Labels from review"; docs/fleet.md).

The stations' review arrives with their fleet messages (``review``: dispositions, corrections of
points, and the checks as each inspection's recipe defined them); the images are the collector's,
content-addressed. The records are made and written by the station's own export code
(commands/dataset.py), so a station's reviewed part gives the same labels here as there; a frame two
stations saw alike is one image and its question one record (the earliest inspection's), and the
holdout split is decided by the image's hash as on the station. Each record's ``source`` adds the
station's ``site`` and ``line`` (a station's name is unique on its line only)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timezone
from pathlib import Path

import psycopg

from ..errors import UserError
from ..logbook.corrections import apply_corrections
from ..plant import pg_schema
from ..plant.images import ImageStore, open_store
from .dataset import HOLDOUT_PERCENT, ExportReport, Frame, Reviewed, labelled, write

REVIEW_SCHEMA = 4  # the fleet schema version that added the review tables (plant/pg_schema.py)
SUFFIX = ".jpg"  # the collector's image store keeps every image under <sha256>.jpg

_REVIEWED = (
    "SELECT i.msg_id, i.station_key, s.site, s.line, s.station, i.inspection_id, i.ts, i.model_sha256, "
    "i.image_sha256, d.disposition, d.reviewer, rc.definitions FROM inspections i "
    "JOIN stations s ON s.station_key = i.station_key "
    "LEFT JOIN review_dispositions d ON d.station_key = i.station_key AND d.inspection_id = i.inspection_id "
    "LEFT JOIN review_checks rc ON rc.station_key = i.station_key AND rc.inspection_id = i.inspection_id "
    "WHERE i.image_path IS NOT NULL AND (d.disposition IS NOT NULL OR EXISTS (SELECT 1 FROM review_corrections c "
    "WHERE c.station_key = i.station_key AND c.inspection_id = i.inspection_id)){stations} "
    "ORDER BY i.ts, i.station_key, i.inspection_id"
)


def reviewed(conn: psycopg.Connection, images: ImageStore, stations: list[str] | None = None) -> Iterator[Reviewed]:
    """Every station's inspections with a kept frame and a disposition or a correction of points, oldest
    first (then by station and id): as the station's export reads its own log. A frame the image store
    does not hold (not fetched yet, fetching failed, or deleted) leaves the inspection out, counted."""
    where = " AND i.station_key = ANY(%s)" if stations else ""
    rows = conn.execute(_REVIEWED.format(stations=where), [stations] if stations else []).fetchall()
    for msg_id, key, site, line, station, inspection_id, ts, model, image_sha256, disposition, who, defined in rows:
        data = images.get(image_sha256) if image_sha256 else None
        item = Reviewed(
            inspection_id,
            ts.astimezone(timezone.utc).isoformat(timespec="milliseconds"),  # the station's own spelling
            station,
            model,
            disposition,
            who,
            Frame(image_sha256, SUFFIX, data=data) if data is not None else None,
            provenance={"site": site, "line": line},
        )
        if item.frame is None:
            yield item
            continue
        for idx, name, kind, status, answer, points in conn.execute(
            "SELECT idx, name, kind, status, answer, points FROM checks WHERE msg_id = %s ORDER BY idx", [msg_id]
        ):
            item.checks.append({"idx": idx, "name": name, "kind": kind, "status": status, "answer": answer})
            if points:
                item.model_points[idx] = [[x, y] for x, y in points]
        changes = conn.execute(
            "SELECT check_idx, x, y, action, reviewer FROM review_corrections WHERE station_key = %s AND "
            "inspection_id = %s ORDER BY correction_id",
            [key, inspection_id],
        ).fetchall()
        after = apply_corrections(item.model_points, [c[:4] for c in changes])
        touched = {c[0] for c in changes}
        item.corrected = {idx: pts for idx, pts in after.items() if idx in touched}
        if item.reviewer is None and changes:
            item.reviewer = changes[-1][4]
        item.definitions = {
            d["name"]: {k: d.get(k) for k in ("prompt", "kind", "max", "expect", "settings")} for d in defined or []
        }
        yield item


def connect(dsn: str) -> psycopg.Connection:
    """A read-only connection to a database the collector has migrated to the review tables; UserError
    (one line) otherwise."""
    try:
        conn = psycopg.connect(dsn, connect_timeout=10)
    except psycopg.Error as err:
        raise UserError(f"--db: {' '.join(str(err).split())}") from None
    try:
        version = pg_schema.version(conn)
        conn.rollback()
    except psycopg.Error as err:
        conn.close()
        raise UserError(f"--db: {' '.join(str(err).split())}") from None
    if version < REVIEW_SCHEMA or version > pg_schema.LATEST:
        conn.close()
        if version > pg_schema.LATEST:
            raise UserError(
                f"--db: database schema version {version} is newer than this release knows "
                f"({pg_schema.LATEST}); upgrade edge-inspect"
            )
        raise UserError(
            f"--db: database schema version {version} holds no review (it came with version {REVIEW_SCHEMA}): "
            "run this release's `edge-inspect fleet collect` on it first"
        )
    conn.read_only = True
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ  # one snapshot for the whole export
    return conn


def image_store(where: str) -> ImageStore:
    """The collector's image store, which must exist (an export never makes an empty one)."""
    if not where.startswith("s3://") and not Path(where).is_dir():
        raise UserError(f"--images {where}: no such folder (the collector's --images)")
    return open_store(where)


def export(
    dsn: str, images: str, out: Path, stations: list[str] | None = None, holdout_percent: int = HOLDOUT_PERCENT
) -> ExportReport:
    """Write ``out``/train.jsonl, ``out``/holdout.jsonl and ``out``/images/<sha256>.jpg from the plant's
    database, as the station's export writes its own (``holdout_percent``: its split, the same)."""
    for key in stations or []:
        if key.count("/") != 2 or not all(key.split("/")):
            raise UserError(f"--station {key!r}: name one station as site/line/station")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: not a folder (dataset export writes train.jsonl, holdout.jsonl and images/ into one)")
    store = image_store(images)
    conn = connect(dsn)
    report = ExportReport()
    try:
        with conn.transaction():
            return write(labelled(reviewed(conn, store, stations), report), out, report, holdout_percent)
    except psycopg.OperationalError as err:
        raise UserError(f"--db: {' '.join(str(err).split())}") from None
    finally:
        conn.close()
