"""The shadow's part of the log (docs/log.md, "Shadow"): its runs, and per shadowed inspection and
candidate version the verdict and per-check results, beside production's row. Written by the shadow's
own thread, never on the station's event loop; read by the setup page, the CLI and the fleet status."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..inspection.checks import CheckOutcome
from .store import Store, inserted_id, utc_stamp

COUNTS = ("shadowed", "skipped_line", "skipped_shadow", "disagreements")
BEFORE_PARTS = 200  # production's cycle before a run: this many parts before it started


@dataclass
class ShadowResult:
    """What the candidate said about one inspection production judged, and how it compares."""

    inspection_id: int
    version: str
    run_id: int
    verdict: str
    error: str
    outcomes: list[CheckOutcome]
    agrees_by_check: list[bool]
    verdict_agrees: bool
    inspect_ms: float
    cpu_ms: float
    waited_ms: float  # from production's result out to the shadow starting on the frame
    at: float = 0.0
    differing: list[str] = field(default_factory=list)  # "verdict" and the names of the checks that differ
    # False: production's unfamiliar-frame guard flagged the frame, so production's verdict is the
    # guard's, not its model's; the shadow's answer is logged, its agreement columns are NULL and the
    # part counts in no agreement (summary: ``unfamiliar``)
    compared: bool = True

    @property
    def agrees(self) -> bool:
        return self.verdict_agrees and all(self.agrees_by_check)


def open_run(
    store: Store, version: str, production: str, parts: int, hours: float, by: str, request_seq: int, now: float
) -> int:
    with store.transaction() as db:
        cursor = db.execute(
            "INSERT INTO shadow_runs (version, production, started_at, parts_bound, hours_bound, started_by, request_seq) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [version, production, now, parts, hours, by, request_seq],
        )
        return inserted_id(cursor)


def _rows(store: Store, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
    with store.lock:
        cursor = store.conn.execute(sql, list(args))
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def open_runs(store: Store) -> list[dict[str, Any]]:
    """Runs not ended (a stop cut them short), oldest first."""
    return _rows(store, "SELECT * FROM shadow_runs WHERE ended_at IS NULL ORDER BY id")


def run(store: Store, run_id: int) -> dict[str, Any] | None:
    found = _rows(store, "SELECT * FROM shadow_runs WHERE id = ?", [run_id])
    return found[0] if found else None


def latest_run(store: Store) -> dict[str, Any] | None:
    found = _rows(store, "SELECT * FROM shadow_runs ORDER BY id DESC LIMIT 1")
    return found[0] if found else None


def shadowed_versions(store: Store) -> set[str]:
    """Every version a run was ever opened for (``model.shadow.auto`` shadows each once)."""
    return {r["version"] for r in _rows(store, "SELECT DISTINCT version FROM shadow_runs")}


def save_counts(store: Store, run_id: int, counts: dict[str, int]) -> None:
    with store.transaction() as db:
        db.execute(
            f"UPDATE shadow_runs SET {', '.join(f'{k} = ?' for k in COUNTS)} WHERE id = ?",
            [counts[k] for k in COUNTS] + [run_id],
        )


def end_run(store: Store, run_id: int, reason: str, now: float, counts: dict[str, int] | None = None) -> None:
    with store.transaction() as db:
        if counts is not None:
            db.execute(
                f"UPDATE shadow_runs SET {', '.join(f'{k} = ?' for k in COUNTS)} WHERE id = ?",
                [counts[k] for k in COUNTS] + [run_id],
            )
        db.execute(
            "UPDATE shadow_runs SET ended_at = ?, end_reason = ? WHERE id = ? AND ended_at IS NULL",
            [now, reason, run_id],
        )


def record(store: Store, result: ShadowResult, counts: dict[str, int]) -> None:
    """The shadow's verdict and checks, and its run's counts, in one transaction."""
    r = result

    def flag(value: bool) -> int | None:  # NULL where the part is not compared
        return int(value) if r.compared else None

    with store.transaction() as db:
        db.execute(
            "INSERT OR REPLACE INTO shadow_results (inspection_id, version, run_id, ts, ts_unix, verdict, error, "
            "verdict_agrees, agrees, differing, inspect_ms, cpu_ms, waited_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [r.inspection_id, r.version, r.run_id, utc_stamp(r.at), r.at, r.verdict, r.error, flag(r.verdict_agrees),
             flag(r.agrees), ", ".join(r.differing), round(r.inspect_ms, 2), round(r.cpu_ms, 2), round(r.waited_ms, 2)],
        )  # fmt: skip
        db.execute("DELETE FROM shadow_checks WHERE inspection_id = ? AND version = ?", [r.inspection_id, r.version])
        db.executemany(
            "INSERT INTO shadow_checks (inspection_id, version, idx, name, kind, status, reason, counted, answer, p_yes, "
            "margin, ms, points, agrees) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(r.inspection_id, r.version, i, o.name, o.kind, o.status, o.reason, o.counted, o.answer, o.p_yes, o.margin,
              round(o.ms, 2), json.dumps([[round(x, 4), round(y, 4)] for x, y in o.points]), flag(agrees))
             for i, (o, agrees) in enumerate(zip(r.outcomes, r.agrees_by_check, strict=False))],
        )  # fmt: skip
        db.execute(
            f"UPDATE shadow_runs SET {', '.join(f'{k} = ?' for k in COUNTS)} WHERE id = ?",
            [counts[k] for k in COUNTS] + [r.run_id],
        )


def unfamiliar_count(store: Store, run_id: int) -> int:
    """The parts of a run left out of its agreement: production's unfamiliar-frame guard judged them."""
    with store.lock:
        return int(
            store.conn.execute(
                "SELECT count(*) FROM shadow_results WHERE run_id = ? AND agrees IS NULL", [run_id]
            ).fetchone()[0]
        )


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def summary(store: Store, run_id: int, disagreements: int = 50) -> dict[str, Any] | None:
    """A run as the setup page, the CLI and the fleet show it: its counts, agreement per check and
    on the verdict, the latest disagreements (inspection ids for review), the shadow's time per part
    (wall time, which includes the time it was stopped while production inspected, and its CPU time)
    and production's cycle time during the run beside the ``BEFORE_PARTS`` parts before it."""
    found = run(store, run_id)
    if found is None:
        return None
    with store.lock:
        checks = store.conn.execute(  # count(agrees): the parts compared (unfamiliar ones hold NULL)
            "SELECT c.idx, c.name, count(c.agrees), sum(c.agrees) FROM shadow_checks c JOIN shadow_results r "
            "ON r.inspection_id = c.inspection_id AND r.version = c.version WHERE r.run_id = ? GROUP BY c.idx, c.name "
            "ORDER BY c.idx",
            [run_id],
        ).fetchall()
        judged, verdicts, agreeing, unfamiliar = store.conn.execute(
            "SELECT count(agrees), coalesce(sum(verdict_agrees), 0), coalesce(sum(agrees), 0), "
            "count(*) - count(agrees) FROM shadow_results WHERE run_id = ?",
            [run_id],
        ).fetchone()
        times = store.conn.execute(
            "SELECT inspect_ms, cpu_ms FROM shadow_results WHERE run_id = ? ORDER BY inspection_id DESC LIMIT 2000",
            [run_id],
        ).fetchall()
        shadow_ms, cpu_ms = [t[0] for t in times], [t[1] for t in times]
        end = found["ended_at"] if found["ended_at"] is not None else float("inf")
        during = [r[0] for r in store.conn.execute(
            "SELECT cycle_ms FROM inspections WHERE ts_unix >= ? AND ts_unix <= ? AND trigger != 'try' "
            "ORDER BY ts_unix DESC LIMIT 2000", [found["started_at"], end],
        )]  # fmt: skip
        before = [r[0] for r in store.conn.execute(
            "SELECT cycle_ms FROM inspections WHERE ts_unix < ? ORDER BY ts_unix DESC LIMIT ?",
            [found["started_at"], BEFORE_PARTS],
        )]  # fmt: skip
    listed = _rows(
        store,
        "SELECT r.inspection_id, r.verdict, i.verdict AS production_verdict, r.differing, r.ts_unix "
        "FROM shadow_results r LEFT JOIN inspections i ON i.id = r.inspection_id "
        "WHERE r.run_id = ? AND r.agrees = 0 ORDER BY r.inspection_id DESC LIMIT ?",
        [run_id, disagreements],
    )
    return {
        **found,
        "judged": judged,  # the parts compared: shadowed, less those production's guard flagged
        "unfamiliar": unfamiliar,
        "agreement": round(agreeing / judged, 4) if judged else None,
        "verdict_agreement": round(verdicts / judged, 4) if judged else None,
        "checks": [
            {"idx": idx, "name": name, "judged": n, "agree": int(agree or 0), "agreement": round((agree or 0) / n, 4)}
            for idx, name, n, agree in checks
            if n
        ],
        "disagreement_list": listed,
        "cost": {
            "shadow_ms_p50": _percentile(shadow_ms, 0.5),
            "shadow_ms_p95": _percentile(shadow_ms, 0.95),
            "shadow_cpu_ms_p50": _percentile(cpu_ms, 0.5),
            "cycle_ms_p50_before": _percentile(before, 0.5),
            "cycle_ms_p95_before": _percentile(before, 0.95),
            "parts_before": len(before),
            "cycle_ms_p50_during": _percentile(during, 0.5),
            "cycle_ms_p95_during": _percentile(during, 0.95),
            "parts_during": len(during),
        },
    }
