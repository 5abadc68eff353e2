"""The gate from the setup page's API: an integrator starts the gate of a version; it runs as
``edge-inspect model gate`` in a process of its own at the lowest priority while the station keeps
inspecting; the progress and then the result are served, the report page reads without a script, and
a promote of the failed version needs the explicit override, which the history keeps."""

from __future__ import annotations

import asyncio
from pathlib import Path

from edge_inspect.modelstore import ModelStore

from ..modelstore.helpers import degraded_copy
from ..support.paths import DEMO_STUDENT
from ..support.stations import write_station
from ..support.wait import async_wait_until
from ..support.web import USERS, login_headers, run_web

GATE = {"parts": 2, "shift_parts": 1, "shifts": ["blur1.5"], "latency_parts": 2}


def _nice(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])
    except (OSError, IndexError, ValueError):
        return None


def test_an_integrator_gates_a_version_while_the_line_keeps_inspecting(tmp_path):
    store = ModelStore(tmp_path / "data" / "models")
    production = store.add(DEMO_STUDENT, "commissioning", alias="production").version.id
    worse = store.add(degraded_copy(DEMO_STUDENT, tmp_path / "worse"), "qa", alias="candidate").version.id
    path = write_station(
        tmp_path, Path("production"), model={"max_new_tokens": 96, "gate": GATE},
        plc={"enabled": False}, web={"enabled": True, "open_view": True, "users": USERS},
    )  # fmt: skip

    async def scenario(station, client, path):
        out: dict = {}
        operator = await login_headers(client, "operator")
        out["operator"] = (await client.post("/api/models/gate", json={"version": worse}, headers=operator)).status_code
        await client.post("/logout", headers=operator)
        integrator = await login_headers(client, "integrator")
        out["none_yet"] = (await client.get("/api/models/gate")).json()
        started = await client.post("/api/models/gate", json={"version": worse[:12]}, headers=integrator)
        out["started"] = (started.status_code, started.json())
        out["busy"] = (await client.post("/api/models/gate", json={"version": worse}, headers=integrator)).json()

        async def running_child():  # the child has written its own progress (it lowers its priority first)
            run = (await client.get("/api/models/gate")).json()["run"]
            return run if run["state"] != "running" or run.get("against") else None

        run = await async_wait_until(running_child, timeout=60, what="the gate process")
        out["nice"] = _nice(run["pid"]) if run["state"] == "running" else "ended"
        inspected = 0

        async def ended():
            nonlocal inspected
            await station.inspect(1, part_id=f"during-gate-{inspected}")  # the line keeps running meanwhile
            inspected += 1
            run = (await client.get("/api/models/gate")).json()["run"]
            return run if run["state"] != "running" else None

        out["run"] = await async_wait_until(ended, timeout=300, what="the gate's end", poll_s=0.1)
        out["inspected"] = inspected
        out["listing"] = (await client.get("/api/models")).json()
        out["page"] = (await client.get(f"/setup/models/gate/{worse[:12]}")).text
        out["page_none"] = (await client.get(f"/setup/models/gate/{production[:12]}")).text
        out["refused"] = await client.post("/api/models/promote", json={"version": worse}, headers=integrator)
        forced = await client.post("/api/models/promote", json={"version": worse, "force": True}, headers=integrator)
        out["forced"] = forced.json()
        await asyncio.sleep(0)
        return out

    out = run_web(path, scenario, with_file=True)
    assert out["operator"] == 403 and out["none_yet"] == {"run": None}
    assert out["started"] == (202, {"started": worse})
    assert out["busy"]["error"].startswith(f"a gate of {worse[:12]} is running")
    assert out["nice"] in (19, "ended")  # the lowest priority: the station's work comes first
    assert out["inspected"] >= 1
    run = out["run"]
    assert run["state"] == "done" and run["passed"] is False and run["version"] == worse and run["by"] == "integrator"
    listed = {v["id"]: v["gate"] for v in out["listing"]["versions"]}
    assert listed[worse]["passed"] is False and listed[worse]["against"] == production and listed[production] is None
    page = out["page"]
    assert "Failed" in page and f"<code>{production[:12]}</code>" in page and page.count("<svg") >= 4
    assert "Generated parts" in page and "Camera shift blur1.5" in page and "worse" in page
    assert "has no gate result yet" in out["page_none"]
    assert out["refused"].status_code == 409 and out["refused"].json()["gate_required"] is True
    assert out["forced"]["forced"] is True and out["forced"]["version"] == worse
    history = ModelStore(tmp_path / "data" / "models").state()["history"]
    assert history[-1]["forced"].startswith(f"version {worse[:12]} failed its gate")
    assert history[-2]["action"] == "gate" and history[-2]["by"] == "integrator"


def test_the_gate_page_of_a_version_the_store_does_not_hold_is_a_page_that_says_so_with_404(tmp_path):
    store = ModelStore(tmp_path / "data" / "models")
    production = store.add(DEMO_STUDENT, "commissioning", alias="production").version.id
    path = write_station(
        tmp_path, Path("production"), model={"max_new_tokens": 8}, plc={"enabled": False},
        web={"enabled": True, "open_view": True, "users": USERS},
    )  # fmt: skip

    async def scenario(station, client):
        await login_headers(client, "integrator")
        return [await client.get(f"/setup/models/gate/{name}") for name in ("deadbeef00", "candidate", production[:12])]

    unknown, no_candidate, known = run_web(path, scenario)
    for page in (unknown, no_candidate):
        assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
        assert '<a href="/setup/models">' in page.text and 'id="gate-missing"' in page.text  # the setup layout
        assert "edge-inspect" not in page.text.split('id="gate-missing"')[1].split("</p>")[0]
    assert "No such model version here: no model version deadbeef00 in " in unknown.text
    assert "(the model versions page and GET /api/models list them)" in unknown.text
    assert "<code>deadbeef00</code>" in unknown.text
    assert "No such model version here: no version is candidate in " in no_candidate.text
    assert known.status_code == 200 and "has no gate result yet" in known.text


def test_the_gate_page_on_a_station_without_a_model_store_is_a_page_that_says_so_with_404(tmp_path):
    path = write_station(
        tmp_path, DEMO_STUDENT, model={"max_new_tokens": 8}, plc={"enabled": False},
        web={"enabled": True, "open_view": True, "users": USERS},
    )  # fmt: skip

    async def scenario(station, client):
        await login_headers(client, "integrator")
        return await client.get("/setup/models/gate/deadbeef00")

    page = run_web(path, scenario)
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert 'id="gate-missing"' in page.text and "names no alias of the model store" in page.text
