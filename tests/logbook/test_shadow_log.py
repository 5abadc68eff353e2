"""Schema 10: the shadow's tables beside production's in a real SQLite log — a schema 9 log migrates,
a run's summary counts agreement per check and on the verdict, lists the disagreements and the cost,
a disagreement sampled afterwards keeps its frame, and retention deletes the shadow's rows with the
inspections they name."""

from __future__ import annotations

import sqlite3
import time

import numpy as np

from edge_inspect.inspection.checks import CheckOutcome
from edge_inspect.logbook import Store, shadow
from edge_inspect.logbook.schema import LATEST, MIGRATIONS, _v11_shadow
from edge_inspect.verdict import Verdict

from ..support.records import record


def test_a_schema_10_log_migrates_to_the_shadow_tables(tmp_path):
    version = MIGRATIONS.index(_v11_shadow) + 1
    assert version == 11
    db = sqlite3.connect(tmp_path / "inspections.db", isolation_level=None)
    for migration in MIGRATIONS[: version - 1]:
        migration(db)
    db.execute(f"PRAGMA user_version = {version - 1}")
    db.execute("INSERT INTO inspections (result_id, verdict) VALUES (1, 'PASS')")
    db.close()
    store = Store(tmp_path, save_pass_every=0)
    assert store.conn.execute("pragma user_version").fetchone()[0] == LATEST >= version
    tables = {r[0] for r in store.conn.execute("select name from sqlite_master where type = 'table'")}
    assert {"shadow_runs", "shadow_results", "shadow_checks"} <= tables
    assert store.conn.execute("select count(*) from inspections").fetchone()[0] == 1
    store.close()


def _outcomes(label: str) -> list[CheckOutcome]:
    return [CheckOutcome("surface", "point", "pass", ""), CheckOutcome("label", "qa", label, "", answer="yes")]


def test_a_runs_summary_agreement_disagreements_cost_and_retention(tmp_path):
    store = Store(tmp_path, save_pass_every=0)
    before = [store.record(record(i, Verdict.PASS), None) for i in range(3)]  # production alone, before the run
    run_id = shadow.open_run(store, "b" * 64, "a" * 64, 4, 0.0, "qa", 1, time.time())
    ids = [store.record(record(10 + i, Verdict.PASS), None) for i in range(4)]
    counts = dict.fromkeys(shadow.COUNTS, 0)
    for n, inspection_id in enumerate(ids):
        differs = n % 2 == 1  # every other part: the candidate fails the label
        counts["shadowed"] += 1
        counts["disagreements"] += differs
        result = shadow.ShadowResult(
            inspection_id=inspection_id, version="b" * 64, run_id=run_id, verdict="FAIL" if differs else "PASS",
            error="", outcomes=_outcomes("fail" if differs else "pass"), agrees_by_check=[True, not differs],
            verdict_agrees=not differs, inspect_ms=100.0 + n, cpu_ms=90.0, waited_ms=1.0, at=2e9,
            differing=["verdict", "label"] if differs else [],
        )  # fmt: skip
        shadow.record(store, result, counts)
    summary = shadow.summary(store, run_id)
    assert summary is not None
    assert (summary["judged"], summary["agreement"], summary["verdict_agreement"]) == (4, 0.5, 0.5)
    assert [(c["name"], c["judged"], c["agree"]) for c in summary["checks"]] == [("surface", 4, 4), ("label", 4, 2)]
    assert [d["inspection_id"] for d in summary["disagreement_list"]] == [ids[3], ids[1]]
    assert summary["disagreement_list"][0]["production_verdict"] == "PASS"
    cost = summary["cost"]
    assert (cost["parts_before"], cost["parts_during"], cost["shadow_ms_p50"], cost["shadow_cpu_ms_p50"]) == (
        3,
        4,
        102.0,
        90.0,
    )
    assert summary["shadowed"] == 4 and summary["disagreements"] == 2

    frame = np.zeros((48, 64, 3), np.uint8)
    assert store.sample_afterwards(ids[1], record(11, Verdict.PASS), frame, "shadow_disagreement: verdict, label")
    reason, image = store.conn.execute(
        "select review_reason, image_path from inspections where id = ?", [ids[1]]
    ).fetchone()
    assert reason == "shadow_disagreement: verdict, label" and (tmp_path / image).is_file()

    shadow.end_run(store, run_id, "4 parts shadowed", time.time(), counts)
    assert shadow.open_runs(store) == [] and shadow.shadowed_versions(store) == {"b" * 64}
    store.conn.execute("update inspections set ts_unix = 0 where id in (?, ?)", ids[:2])  # old enough to go
    store.enforce_retention(now=40 * 86400.0)  # 30 days of retention: those at 0 go
    left = [r[0] for r in store.conn.execute("select inspection_id from shadow_results order by inspection_id")]
    assert (
        left == ids[2:]
        and store.conn.execute("select count(*) from shadow_checks where inspection_id in (?, ?)", ids[:2]).fetchone()[
            0
        ]
        == 0
    )
    assert before and shadow.run(store, run_id)["end_reason"] == "4 parts shadowed"  # runs are kept
    store.close()
