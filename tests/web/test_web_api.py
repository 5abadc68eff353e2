"""REST API: filters, pagination, 404s, 401/403 by role, CSRF, path traversal, metrics, CSV."""

import asyncio
import csv
import io
import sqlite3

import httpx
import pytest

from ..support.web import login, login_fields, run_api


def test_list_filters_pagination_and_404(tmp_path, tiny_bundle):
    async def scenario(station, client):
        for i in range(5):
            await station.inspect(1, part_id=f"A{i}")
        for i in range(3):
            await station.inspect(2, part_id=f"B{i}")
        out = {}
        out["all"] = (await client.get("/api/inspections")).json()
        out["page2"] = (await client.get("/api/inspections", params={"per_page": 3, "page": 2})).json()
        out["fail"] = (await client.get("/api/inspections", params={"verdict": "FAIL"})).json()
        out["recipe2"] = (await client.get("/api/inspections", params={"recipe": 2})).json()
        out["part"] = (await client.get("/api/inspections", params={"part_id": "B1"})).json()
        out["check"] = (await client.get("/api/inspections", params={"check": "label_no"})).json()
        out["check_yes"] = (await client.get("/api/inspections", params={"check": "label_yes", "recipe": 1})).json()
        out["future"] = (await client.get("/api/inspections", params={"from": "2999-01-01"})).json()
        out["bad"] = await client.get("/api/inspections", params={"verdict": "MAYBE"})
        out["bad_page"] = await client.get("/api/inspections", params={"page": "0"})
        out["one"] = (await client.get("/api/inspections/1")).json()
        out["missing"] = await client.get("/api/inspections/9999")
        out["missing_img"] = await client.get("/api/inspections/9999/overlay")
        out["csv"] = (await client.get("/api/inspections.csv", params={"recipe": 1})).text
        out["charts"] = (await client.get("/api/charts")).json()
        out["metrics"] = (await client.get("/metrics")).text
        return out

    out = run_api(tmp_path, tiny_bundle, scenario)
    assert out["all"]["total"] == 8 and len(out["all"]["items"]) == 8
    assert out["page2"]["page"] == 2 and len(out["page2"]["items"]) == 3
    assert [i["id"] for i in out["page2"]["items"]] == [5, 4, 3]
    assert out["fail"]["total"] >= 5 and all(i["verdict"] == "FAIL" for i in out["fail"]["items"])
    assert out["recipe2"]["total"] == 3
    assert [i["part_id"] for i in out["part"]["items"]] == ["B1"]
    # every recipe-1 part fails exactly one of its two contradicting checks
    assert all(i["recipe"] == 1 for i in out["check"]["items"])
    assert out["check"]["total"] + out["check_yes"]["total"] == 5
    assert out["future"]["total"] == 0
    assert out["bad"].status_code == 400 and "verdict" in out["bad"].json()["error"]
    assert out["bad_page"].status_code == 400
    assert out["one"]["id"] == 1 and len(out["one"]["checks"]) == 2
    assert out["missing"].status_code == 404 and out["missing_img"].status_code == 404
    rows = list(csv.DictReader(io.StringIO(out["csv"])))
    assert len(rows) == 5 and {r["recipe"] for r in rows} == {"1"}
    assert out["charts"]["pareto"] and out["charts"]["pareto"][0]["n"] >= 1
    assert 'edge_inspect_inspections_total{verdict="FAIL"}' in out["metrics"]
    assert "edge_inspect_cycle_ms_bucket" in out["metrics"] and "edge_inspect_camera_up 1" in out["metrics"]
    assert (
        'edge_inspect_memory_bytes{kind="sqlite"}' in out["metrics"] and "edge_inspect_python_blocks" in out["metrics"]
    )


def test_roles_and_csrf(tmp_path, tiny_bundle):
    async def scenario(station, client):
        await station.inspect(1)
        r = {}
        r["anon_trigger"] = await client.post("/api/trigger", json={})
        r["anon_disp"] = await client.post("/api/inspections/1/disposition", json={"disposition": "false_reject"})
        r["basic_qa_trigger"] = await client.post("/api/trigger", json={}, auth=("qa", "qa"))
        r["basic_wrong_pw"] = await client.post("/api/trigger", json={}, auth=("operator", "nope"))
        r["basic_op_no_csrf"] = await client.post("/api/trigger", json={}, auth=("operator", "operator"))
        r["basic_op_text"] = await client.post(
            "/api/trigger", content="x", headers={"content-type": "text/plain"}, auth=("operator", "operator")
        )
        basic_csrf = (await client.get("/api/session", auth=("operator", "operator"))).json()["csrf"]
        r["basic_op_trigger"] = await client.post(
            "/api/trigger", json={}, auth=("operator", "operator"), headers={"X-CSRF-Token": basic_csrf}
        )
        r["basic_op_disp"] = await client.post(
            "/api/inspections/1/disposition", json={"disposition": "false_reject"}, auth=("operator", "operator")
        )
        csrf = await login(client, "qa")
        r["no_csrf"] = await client.post("/api/inspections/1/disposition", json={"disposition": "false_reject"})
        r["bad_csrf"] = await client.post(
            "/api/inspections/1/disposition", json={"disposition": "false_reject"}, headers={"X-CSRF-Token": "forged"}
        )
        r["ok"] = await client.post(
            "/api/inspections/1/disposition",
            json={"disposition": "false_reject", "comment": "label was fine"},
            headers={"X-CSRF-Token": csrf},
        )
        r["bad_value"] = await client.post(
            "/api/inspections/1/disposition", json={"disposition": "meh"}, headers={"X-CSRF-Token": csrf}
        )
        r["missing"] = await client.post(
            "/api/inspections/999/disposition", json={"disposition": "false_reject"}, headers={"X-CSRF-Token": csrf}
        )
        r["form_no_csrf"] = await client.post("/review/1/disposition", data={"disposition": "confirmed_defect"})
        r["form_ok"] = await client.post(
            "/review/1/disposition", data={"disposition": "confirmed_defect", "csrf": csrf}
        )
        r["detail"] = (await client.get("/api/inspections/1")).json()
        return r

    r = run_api(tmp_path, tiny_bundle, scenario)
    assert r["anon_trigger"].status_code == 401 and r["anon_disp"].status_code == 401
    assert r["basic_qa_trigger"].status_code == 403
    assert r["basic_wrong_pw"].status_code == 401
    assert r["basic_op_no_csrf"].status_code == 403 and r["basic_op_text"].status_code == 403  # CSRF however sent
    assert r["basic_op_trigger"].status_code == 200 and r["basic_op_trigger"].json()["verdict"] in ("PASS", "FAIL")
    assert r["basic_op_disp"].status_code == 403
    assert r["no_csrf"].status_code == 403 and r["bad_csrf"].status_code == 403
    assert r["ok"].status_code == 200 and r["bad_value"].status_code == 400 and r["missing"].status_code == 404
    assert r["form_no_csrf"].status_code == 403 and r["form_ok"].status_code == 303
    audit = r["detail"]["audit"]
    assert [a["action"] for a in audit] == ["disposition", "disposition"]
    assert audit[-1]["user"] == "qa" and r["detail"]["disposition"]["disposition"] == "confirmed_defect"
    assert "false_reject" in audit[-1]["detail"]  # the audit keeps what it was before


def test_login_is_rate_limited(tmp_path, tiny_bundle):
    async def scenario(station, client):
        codes = [
            (await client.post("/login", data=await login_fields(client, "qa", "wrong"))).status_code for _ in range(5)
        ]
        blocked = await client.post("/login", data=await login_fields(client, "qa", "qa"))
        return codes, blocked

    codes, blocked = run_api(tmp_path, tiny_bundle, scenario)
    assert codes == [401] * 5
    assert blocked.status_code == 429 and "too many attempts" in blocked.text
    assert 1 <= int(blocked.headers["retry-after"]) <= 60


def test_closed_view_needs_login(tmp_path, tiny_bundle):
    async def scenario(station, client):
        return [(await client.get(u)).status_code for u in ("/api/status", "/api/inspections", "/metrics")], (
            await client.get("/review")
        ).status_code

    api_codes, page = run_api(tmp_path, tiny_bundle, scenario, open_view=False)
    assert api_codes == [401, 401, 401] and page == 303


@pytest.mark.parametrize(
    "url",
    [
        "/images/../inspections.db",
        "/images/%2e%2e/inspections.db",
        "/images/..%2finspections.db",
        "/images/%2e%2e%2f%2e%2e%2fsetup.cfg",
        "/images//etc/passwd",
        "/images/%2fetc%2fpasswd",
        "/images/..\\inspections.db",
        "/images/C:/Windows/win.ini",
    ],
)
def test_image_paths_cannot_escape_the_data_folder(tmp_path, tiny_bundle, url):
    async def scenario(station, client):
        await station.inspect(1)  # FAIL: images are kept
        good = (await client.get("/api/inspections/1")).json()["overlay_path"]
        ok = await client.get("/" + good)
        raw = httpx.Request("GET", "http://station" + url)
        raw.url = httpx.URL("http://station" + url)
        bad = await client.send(raw)
        return ok, bad

    ok, bad = run_api(tmp_path, tiny_bundle, scenario)
    assert ok.status_code == 200 and ok.headers["content-type"] == "image/jpeg"
    assert bad.status_code in (400, 404), (url, bad.status_code)
    assert b"SQLite" not in bad.content and b"root:" not in bad.content


def test_log_opens_read_only_while_inspecting(tmp_path, tiny_bundle):
    """sqlite3/Datasette can open the log read-only and query it while the daemon writes."""

    async def scenario(station, client):
        db = station.store.path
        counts = []
        for _ in range(4):
            task = asyncio.create_task(station.inspect(1))
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            counts.append(con.execute("select count(*) from inspections").fetchone()[0])
            con.execute("select verdict, count(*) from inspections group by verdict").fetchall()
            con.close()
            await task
        return counts

    counts = run_api(tmp_path, tiny_bundle, scenario)
    assert counts == sorted(counts) and counts[-1] >= 2


PAGES = ["1", "2", " 2 ", "", "0", "1000000", "1000001", "-1", "1.5", "abc", "\u0663", "\u00b2"]


def test_alarm_and_audit_lists_read_page_as_the_review_does(tmp_path, tiny_bundle):
    async def scenario(station, client):
        await station.inspect(1)
        await login(client, "qa")
        codes: dict[str, list[int]] = {}
        for page in PAGES:  # loops, not nested comprehensions with await: Python 3.10 refuses those
            codes[page] = [
                (await client.get(url, params={"page": page})).status_code for url in ("/review", "/alarms", "/audit")
            ]
        return codes

    codes = run_api(tmp_path, tiny_bundle, scenario)
    assert {page: set(c) for page, c in codes.items()} == {
        page: {400 if page.strip() not in ("", "1", "2", "1000000") else 200} for page in PAGES
    }, codes
