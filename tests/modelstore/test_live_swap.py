"""A running station follows the alias its config names: a promote is swapped in between inspections
(the log, the identity registers and the events name the new version), a version that crosses its
watch bounds is rolled back by the station itself, and a version that does not load leaves the
running one in place with an alarm — through the real store, real ONNX Runtime sessions and a real
SQLite log."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

from edge_inspect.config.devices import AutoRollback
from edge_inspect.modelstore import ModelStore
from edge_inspect.station.events import ModelChanged
from edge_inspect.station.model_follower import AUTO_USER, Watch

from ..support.stations import run_station, write_station
from ..support.wait import async_wait_until
from .helpers import other_version, unrunnable_copy


def _logged_models(data: Path) -> list[str]:
    with sqlite3.connect(data / "inspections.db") as db:
        return [row[0] for row in db.execute("select model_sha256 from inspections order by id")]


def _two_versions(tmp_path: Path, tiny_bundle: Path) -> tuple[ModelStore, str, str]:
    store = ModelStore(tmp_path / "data" / "models")
    a = store.add(tiny_bundle, "u", alias="production").version.id
    b = store.add(other_version(tiny_bundle, tmp_path / "b", "b"), "u", alias="candidate").version.id
    return store, a, b


def test_a_promote_is_swapped_in_between_inspections_without_a_restart(tmp_path, tiny_bundle):
    store, a, b = _two_versions(tmp_path, tiny_bundle)
    config = write_station(
        tmp_path, Path("production"), model={"max_new_tokens": 2}, plc={"options": {"identity": True}}
    )
    changes: list[ModelChanged] = []

    async def scenario(station):
        station.events.subscribe(lambda e: changes.append(e) if isinstance(e, ModelChanged) else None)
        await station.inspect(1, part_id="P1")
        assert await station.models.check() is False  # the alias has not moved
        store.promote("candidate", "integrator")
        assert await station.models.check() is True
        assert station.model_sha256 == b and station.handshake.outputs["model_id"] == int(b[:8], 16)
        assert not station.handshake.paused
        await station.inspect(1, part_id="P2")
        return station.status()

    status = asyncio.run(run_station(config, scenario))
    assert _logged_models(tmp_path / "data") == [a, b]
    assert [(c.version, c.previous, c.reason) for c in changes] == [(b, a, "promote")]
    assert status["model"] == b[:12] and status["model_follow"]["state"] == "watching"


def test_a_version_past_its_bounds_is_rolled_back_by_the_station(tmp_path, tiny_bundle):
    store, a, b = _two_versions(tmp_path, tiny_bundle)
    rollback = {"parts": 3, "max_cycle_p95_ms": 0.001}  # every part is slower than that
    config = write_station(tmp_path, Path("production"), model={"max_new_tokens": 2, "auto_rollback": rollback})
    changes: list[ModelChanged] = []

    async def scenario(station):
        station.events.subscribe(lambda e: changes.append(e) if isinstance(e, ModelChanged) else None)
        store.promote("candidate", "integrator")
        assert await station.models.check() is True
        for i in range(3):
            await station.inspect(1, part_id=f"N{i}")
        # the rollback runs as a task of the loop's: wait for it, not for a time
        await async_wait_until(lambda: station.model_sha256 == a, 10, "the rollback to a", poll_s=0.05)
        alarm = station.alarms.active("model_rolled_back")
        assert await station.models.check() is False  # production is a again: nothing to swap
        store.promote(b, "integrator")  # promoted anew: tried (and watched) again
        assert await station.models.check() is True
        return alarm, station.model_sha256

    alarm, judging = asyncio.run(run_station(config, scenario))
    assert alarm and judging == b
    assert store.aliases()["production"] == b
    history = store.state()["history"]
    assert [h for h in history if h["action"] == "rollback"][-1]["by"] == AUTO_USER
    assert [(c.version, c.reason) for c in changes] == [(b, "promote"), (a, "auto-rollback"), (b, "promote")]
    assert _logged_models(tmp_path / "data") == [b, b, b]


def test_a_version_that_does_not_load_leaves_the_running_one_with_an_alarm(tmp_path, tiny_bundle):
    store, a, b = _two_versions(tmp_path, tiny_bundle)
    damaged = next(p for p in store.find(b).path.rglob("*.onnx"))
    os.chmod(damaged.parent, 0o755)
    os.chmod(damaged, 0o644)
    damaged.write_bytes(damaged.read_bytes()[:-10] + b"0123456789")  # its sha256 no longer matches
    config = write_station(tmp_path, Path("production"), model={"max_new_tokens": 2})

    async def scenario(station):
        store.promote("candidate", "integrator")
        swapped = [await station.models.check(), await station.models.check()]  # tried once, not again
        await station.inspect(1, part_id="P1")
        return swapped, station.alarms.active("model_swap_failed"), station.status()["model_follow"]

    swapped, alarm, follow = asyncio.run(run_station(config, scenario))
    assert swapped == [False, False] and alarm
    assert b[:12] in follow["failed"] and _logged_models(tmp_path / "data") == [a]


def test_a_version_that_loads_but_cannot_judge_a_frame_is_not_swapped_in(tmp_path, tiny_bundle):
    store = ModelStore(tmp_path / "data" / "models")
    a = store.add(tiny_bundle, "commissioning", alias="production").version.id
    b = store.add(unrunnable_copy(tiny_bundle, tmp_path / "broken"), "qa", alias="candidate").version.id
    config = write_station(tmp_path, Path("production"), model={"max_new_tokens": 2})

    async def scenario(station):
        store.promote("candidate", "integrator")
        swapped = await station.models.check()
        await station.inspect(1, part_id="P1")
        return swapped, station.alarms.get("model_swap_failed"), station.model_sha256

    swapped, alarm, running = asyncio.run(run_station(config, scenario))
    assert swapped is False and running == a != b
    assert alarm is not None and "cannot judge a frame" in alarm.message
    assert _logged_models(tmp_path / "data") == [a]


def test_the_watch_judges_the_error_share_and_the_cycle_p95_once_all_its_parts_are_in():
    watch = Watch("v", AutoRollback(parts=4, max_error_share=0.25, max_cycle_p95_ms=100.0))
    for verdict in ("PASS", "ERROR", "PASS"):
        watch.add(verdict, 50.0)
        assert watch.crossed() is None
    watch.add("FAIL", 50.0)
    assert watch.crossed() == ""  # 1 of 4: at the bound, not over it
    over = Watch("v", AutoRollback(parts=2, max_error_share=0.25))
    over.add("ERROR", 1.0)
    over.add("PASS", 1.0)
    assert "ERROR on 50%" in (over.crossed() or "")
    unsure = Watch("v", AutoRollback(parts=2, max_uncertain_share=0.0))
    unsure.add("PASS", 1.0, uncertain=True)
    unsure.add("PASS", 1.0)
    assert "uncertain on 50%" in (unsure.crossed() or "")
    slow = Watch("v", AutoRollback(parts=2, max_cycle_p95_ms=100.0))
    slow.add("PASS", 90.0)
    slow.add("PASS", 120.0)
    assert "p95 120 ms" in (slow.crossed() or "")


def test_an_integrator_promotes_and_rolls_back_on_the_web_and_the_station_follows(tmp_path, tiny_bundle):
    from ..support.web import USERS, login_headers, run_web

    store, a, b = _two_versions(tmp_path, tiny_bundle)
    path = write_station(
        tmp_path,
        Path("production"),
        model={"max_new_tokens": 2},
        plc={"enabled": False},
        web={"enabled": True, "open_view": True, "users": USERS},
    )

    async def scenario(station, client):
        out = {"listing": (await client.get("/api/models")).status_code}  # no login: 401
        operator = await login_headers(client, "operator")
        out["operator"] = (await client.post("/api/models/rollback", json={}, headers=operator)).status_code
        await client.post("/logout", headers=operator)
        integrator = await login_headers(client, "integrator")
        out["no_csrf"] = (await client.post("/api/models/promote", json={"version": b[:12]})).status_code
        out["bad_body"] = (await client.post("/api/models/promote", json={"version": 7}, headers=integrator)).json()
        out["ungated"] = await client.post("/api/models/promote", json={"version": b[:12]}, headers=integrator)
        out["unknown"] = await client.post("/api/models/promote", json={"version": "deadbeef00"}, headers=integrator)
        out["unbounded"] = await client.post(
            "/api/models/shadow/start", json={"parts": 0, "hours": 0}, headers=integrator
        )
        out["promote"] = (
            await client.post("/api/models/promote", json={"version": b[:12], "force": True}, headers=integrator)
        ).json()
        await station.models.check()
        out["after_promote"] = station.model_sha256
        out["listed"] = (await client.get("/api/models")).json()
        out["rollback"] = (await client.post("/api/models/rollback", json={}, headers=integrator)).json()
        await station.models.check()
        out["after_rollback"] = station.model_sha256
        out["again"] = (await client.post("/api/models/rollback", json={}, headers=integrator)).status_code
        return out

    out = run_web(path, scenario)
    assert out["listing"] == 401 and out["operator"] == 403 and out["no_csrf"] == 403
    assert out["bad_body"]["error"].startswith("version:")
    assert out["ungated"].status_code == 409 and out["ungated"].json() == {
        "error": f"version {b[:12]} has no gate result: run its gate (Run gate), or promote it anyway, "
        "confirming the override (force)",
        "gate_required": True,
    }  # advice for the page and the API, not the command line's
    assert out["unknown"].status_code == 409 and out["unknown"].json()["error"].endswith(
        "(the model versions page and GET /api/models list them)"
    )
    assert (
        out["unbounded"].json()["error"] == "a shadow run needs a bound: parts or hours above 0 (and neither below 0)"
    )
    for said in (out["ungated"], out["unknown"], out["unbounded"]):
        assert "edge-inspect" not in said.json()["error"] and "--" not in said.json()["error"]
    assert out["promote"] == {"alias": "production", "version": b, "previous": a, "forced": True}
    assert out["after_promote"] == b and out["after_rollback"] == a
    listed = out["listed"]
    assert listed["running"] == b and listed["aliases"]["production"] == b and listed["running_in_store"] is True
    assert {v["id"]: v["aliases"] for v in listed["versions"]} == {a: [], b: ["candidate", "production"]}
    assert listed["history"][-1]["by"] == "integrator" and listed["history"][-1]["forced"].endswith("no gate result")
    assert out["rollback"]["version"] == a and out["again"] == 409  # no production before a
    assert [h["by"] for h in store.state()["history"][-2:]] == ["integrator", "integrator"]


def test_opc_ua_names_the_version_that_judges_after_a_swap(tmp_path, tiny_bundle):
    from ..support.opcua_harness import node, session, users
    from ..support.stations import free_port

    store, a, b = _two_versions(tmp_path, tiny_bundle)
    url = f"opc.tcp://127.0.0.1:{free_port()}/edge-inspect"
    config = write_station(
        tmp_path, Path("production"), model={"max_new_tokens": 2}, opcua={"endpoint": url, "users": users()}
    )

    async def scenario(station):
        async with session(url, "int", folder=tmp_path / "client") as client:
            model_id = await node(client, "VisionSystem.Identification.ModelId")
            before = await model_id.read_value()
            store.promote("candidate", "integrator")
            await station.models.check()

            async def changed():
                value = await model_id.read_value()
                return value if value != before else None

            # the address space is written on the OPC UA loop: wait for it
            return before, await async_wait_until(changed, 10, "ModelId changed", poll_s=0.05)

    assert asyncio.run(run_station(config, scenario)) == (a, b)


def _damage(store: ModelStore, version: str) -> None:
    damaged = next(p for p in store.find(version).path.rglob("*.onnx"))
    os.chmod(damaged.parent, 0o755)
    os.chmod(damaged, 0o644)
    damaged.write_bytes(damaged.read_bytes()[:-10] + b"0123456789")


def test_the_station_rolls_back_to_the_version_that_ran_before_not_one_that_never_loaded(tmp_path, tiny_bundle):
    store, a, b = _two_versions(tmp_path, tiny_bundle)
    d = store.add(other_version(tiny_bundle, tmp_path / "d", "d"), "u").version.id
    _damage(store, d)
    rollback = {"parts": 2, "max_cycle_p95_ms": 0.001}
    config = write_station(tmp_path, Path("production"), model={"max_new_tokens": 2, "auto_rollback": rollback})

    async def scenario(station):
        store.promote(d, "integrator")
        assert await station.models.check() is False  # d does not load: a runs on
        store.promote(b, "integrator")
        assert await station.models.check() is True
        for i in range(2):
            await station.inspect(1, part_id=f"N{i}")
        await async_wait_until(lambda: station.model_sha256 == a, 20, "the rollback to a")
        return station.alarms.active("model_swap_failed")

    swap_failed_still = asyncio.run(run_station(config, scenario))
    assert store.aliases()["production"] == a  # the version that ran before b, not d
    assert not swap_failed_still  # back on the version it runs: that alarm is over


def test_an_automatic_rollback_never_undoes_a_promote_that_came_after_the_judged_version(tmp_path, tiny_bundle):
    from edge_inspect.modelstore import ModelStoreError

    store, a, b = _two_versions(tmp_path, tiny_bundle)
    store.promote(b, "integrator")
    c = store.add(other_version(tiny_bundle, tmp_path / "c", "c"), "u", alias="production").version.id
    try:
        store.rollback(AUTO_USER, only_from=b)  # the station judged b; c came since
    except ModelStoreError as err:
        assert "not " + b[:12] in str(err)
    else:
        raise AssertionError("rolled back a production the station did not judge")
    assert store.aliases()["production"] == c


def test_a_version_promoted_while_the_station_was_stopped_is_watched_from_its_first_part(tmp_path, tiny_bundle):
    store, a, b = _two_versions(tmp_path, tiny_bundle)
    rollback = {"parts": 2, "max_cycle_p95_ms": 0.001}
    config = write_station(tmp_path, Path("production"), model={"max_new_tokens": 2, "auto_rollback": rollback})
    asyncio.run(run_station(config, lambda station: station.inspect(1, part_id="A0")))  # a judges a part
    store.promote("candidate", "integrator")  # b, while the station is stopped

    async def scenario(station):
        assert station.model_sha256 == b and station.models.state == "watching"
        for i in range(2):
            await station.inspect(1, part_id=f"B{i}")
        await async_wait_until(lambda: station.model_sha256 == a, 20, "the rollback to a")

    asyncio.run(run_station(config, scenario))
    assert store.aliases()["production"] == a

    async def again(station):  # a has judged parts before: a restart on it is not watched
        return station.models.state

    assert asyncio.run(run_station(config, again)) == "following"


def test_an_unreadable_store_raises_an_alarm_and_keeps_the_running_model(tmp_path, tiny_bundle):
    store, a, b = _two_versions(tmp_path, tiny_bundle)
    config = write_station(tmp_path, Path("production"), model={"max_new_tokens": 2})
    aliases = store.folder / "aliases.json"

    async def scenario(station):
        before = station.status()["model_follow"]["state"]
        good = aliases.read_bytes()
        aliases.write_text("{ half written")
        assert await station.models.check() is False
        await async_wait_until(lambda: station.alarms.active("model_store"), 10, "the model_store alarm")
        unreadable = station.status()["model_follow"]["state"]
        aliases.write_bytes(good)
        await station.models.check()
        await async_wait_until(lambda: not station.alarms.active("model_store"), 10, "the alarm cleared")
        return unreadable, station.status()["model_follow"]["state"] == before, station.model_sha256

    assert asyncio.run(run_station(config, scenario)) == ("store unreadable", True, a)  # its state back, too
