"""Setup API (integrator): roles, saving with file:line errors, config versions with diff and
rollback, edits on disk detected and never overwritten, hot apply with `ready` low, try on a frame
or an upload (nothing logged), the I/O monitor — through a real station, its log and the demo model."""

from __future__ import annotations

import base64
import json
import sqlite3
import urllib.parse

import cv2
import numpy as np
import yaml

from edge_inspect.config import load_config
from edge_inspect.sim import render_part

from ..support.plc_peer import PLCServer
from ..support.stations import free_port
from ..support.wait import async_wait_until
from ..support.web import login_headers, run_setup


def test_only_the_integrator_reaches_setup(tmp_path):
    async def scenario(station, client, path):
        out = {"anon": [(await client.get(u)).status_code for u in ("/api/setup/config", "/api/setup/io")]}
        out["anon_page"] = (await client.get("/setup")).status_code
        for role in ("operator", "qa"):
            headers = await login_headers(client, role)
            out[role] = [
                (await client.get(u)).status_code
                for u in (
                    "/setup",
                    "/setup/io",
                    "/setup/config",
                    "/api/setup/config",
                    "/api/setup/io",
                    "/api/setup/versions",
                    "/api/setup/frame.jpg",
                )
            ]
            out[role + "_post"] = [
                (await client.post(u, headers=headers, json=body)).status_code
                for u, body in (
                    ("/api/setup/config", {"yaml": "x", "base_sha256": "x"}),
                    ("/api/setup/try", {"recipe": {}}),
                    ("/api/setup/disk", {"action": "apply"}),
                    ("/api/setup/versions/1/rollback", None),
                )
            ]
            await client.post("/logout", headers=headers)
        headers = await login_headers(client, "integrator")
        out["integrator"] = [
            (await client.get(u)).status_code
            for u in (
                "/setup",
                "/setup/io",
                "/setup/config",
                "/api/setup/config",
                "/api/setup/io",
                "/api/setup/versions",
                "/api/setup/frame.jpg",
            )
        ]
        out["no_csrf"] = (await client.post("/api/setup/disk", json={"action": "apply"})).status_code
        return out

    out = run_setup(tmp_path, scenario)
    assert out["anon"] == [401, 401] and out["anon_page"] == 303  # pages send a browser to the login
    for role in ("operator", "qa"):
        assert out[role] == [403] * 7, out[role]
        assert out[role + "_post"] == [403] * 4, out[role + "_post"]
    assert out["integrator"] == [200] * 7
    assert out["no_csrf"] == 403


def test_save_validates_versions_rollback_and_audit(tmp_path):
    async def scenario(station, client, path):
        h = await login_headers(client, "integrator")
        out = {}
        first = (await client.get("/api/setup/config")).json()
        out["boot_versions"] = (await client.get("/api/setup/versions")).json()["versions"]
        # a typo: one line naming file, line and key; nothing saved, the file untouched
        bad = first["yaml"].replace("expected: 4", "expected: four")
        r = await client.post("/api/setup/config", headers=h, json={"yaml": bad, "base_sha256": first["sha256"]})
        out["bad"] = (r.status_code, r.json())
        out["after_bad"] = path.read_text() == first["yaml"]
        # the recipe editor's save: the screws check limited to an ROI in the top-left corner
        recipes = first["recipes"]
        recipes[0]["checks"][1]["roi"] = [[0.0, 0.0], [0.1, 0.0], [0.1, 0.1]]
        r = await client.post(
            "/api/setup/config",
            headers=h,
            json={"recipes": recipes, "base_sha256": first["sha256"], "comment": "screws ROI"},
        )
        out["saved"] = (r.status_code, r.json())
        rec, _ = await station.inspect(1)
        out["after_save"] = rec
        versions = (await client.get("/api/setup/versions")).json()["versions"]
        out["versions"] = versions
        out["diff"] = (await client.get(f"/api/setup/versions/{versions[0]['id']}")).json()["diff"]
        # a save from the old version is refused: the file changed since
        r = await client.post(
            "/api/setup/config", headers=h, json={"yaml": first["yaml"], "base_sha256": first["sha256"]}
        )
        out["stale"] = r.status_code
        # roll back to the boot version: the ROI is gone again
        r = await client.post(f"/api/setup/versions/{versions[-1]['id']}/rollback", headers=h)
        out["rollback"] = (r.status_code, r.json())
        rec2, _ = await station.inspect(1)
        out["after_rollback"] = rec2
        out["file_after_rollback"] = path.read_text()
        out["first_yaml"] = first["yaml"]
        return out

    out = run_setup(tmp_path, scenario)
    assert [v["source"] for v in out["boot_versions"]] == ["boot"]
    status, body = out["bad"]
    assert status == 422 and body["problems"][0].startswith(f"{tmp_path / 'station.yaml'}:")
    assert "recipes.0.checks.1.expected" in body["problems"][0]
    assert out["after_bad"]
    status, body = out["saved"]
    assert status == 200 and body["applied"] == ["recipes"] and body["restart_needed"] == []
    screws = next(o for o in out["after_save"].outcomes if o.name == "screws")
    assert screws.counted == 0 and screws.status == "fail"  # the ROI applied to the next inspection
    assert [v["source"] for v in out["versions"]] == ["web", "boot"] and out["versions"][0]["author"] == "integrator"
    assert out["versions"][0]["comment"] == "screws ROI"
    changed = [line for line in out["diff"].splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert changed == ["+    roi: [[0.0, 0.0], [0.1, 0.0], [0.1, 0.1]]"], out["diff"]  # that check's ROI, nothing else
    assert out["stale"] == 409
    status, body = out["rollback"]
    assert status == 200 and body["applied"] == ["recipes"]
    assert next(o for o in out["after_rollback"].outcomes if o.name == "screws").counted == 4
    assert out["file_after_rollback"] == out["first_yaml"]
    with sqlite3.connect(tmp_path / "data" / "inspections.db") as db:
        shas = [r[0] for r in db.execute("select recipe_sha256 from inspections order by id")]
        audit = [(r[0], json.loads(r[1])) for r in db.execute("select action, detail from audit order by id")]
    assert shas[0] != shas[1] and len(set(shas)) == 2  # each row names the recipe version it ran
    sources = [d["source"] for a, d in audit if a == "config"]
    assert sources == ["boot", "web", "rollback"]


async def status_if(client, condition) -> dict | None:
    """/api/status where ``condition`` holds for it, else None (for async_wait_until)."""
    status = (await client.get("/api/status")).json()
    return status if condition(status) else None


def test_an_edit_on_disk_is_shown_and_never_overwritten(tmp_path):
    async def scenario(station, client, path):
        h = await login_headers(client, "integrator")
        out = {}
        opened = (await client.get("/api/setup/config")).json()
        text = path.read_text().replace("Is the label present?", "Is the label present on the part?")
        path.write_text(text)
        # the health loop looks every 2 s
        out["status"] = await async_wait_until(
            lambda: status_if(client, lambda s: s["config_on_disk"]), 20, "the edit seen", poll_s=0.1
        )
        # the editor opened before the edit cannot save over it
        r = await client.post(
            "/api/setup/config", headers=h, json={"recipes": opened["recipes"], "base_sha256": opened["sha256"]}
        )
        out["conflict"] = r.status_code
        out["file_kept"] = path.read_text() == text
        r = await client.post("/api/setup/disk", headers=h, json={"action": "apply"})
        out["apply"] = (r.status_code, r.json())
        out["question"] = station.config.recipes[0].checks[2].question
        out["status_after"] = await async_wait_until(
            # cleared (it stays listed, inactive, until an operator acknowledges it)
            lambda: status_if(
                client, lambda s: not any(a["code"] == "config_changed" and a["active"] for a in s["alarms"])
            ),
            20,
            "the config_changed alarm cleared",
            poll_s=0.1,
        )
        return out

    out = run_setup(tmp_path, scenario)
    assert out["status"]["config_on_disk"] and any(a["code"] == "config_changed" for a in out["status"]["alarms"])
    assert out["conflict"] == 409 and out["file_kept"]
    assert out["apply"][0] == 200 and out["apply"][1]["applied"] == ["recipes"]
    assert out["question"] == "Is the label present on the part?"
    assert not out["status_after"]["config_on_disk"]


def test_changes_outside_recipes_wait_for_a_restart(tmp_path):
    async def scenario(station, client, path):
        h = await login_headers(client, "integrator")
        opened = (await client.get("/api/setup/config")).json()
        data = yaml.safe_load(opened["yaml"])
        data["storage"]["retention_days"] = 7
        r = await client.post(
            "/api/setup/config", headers=h, json={"yaml": yaml.safe_dump(data), "base_sha256": opened["sha256"]}
        )
        return r.json(), (await client.get("/api/status")).json()

    body, status = run_setup(tmp_path, scenario)
    assert body["applied"] == [] and body["restart_needed"] == ["storage.retention_days"]
    assert status["restart_needed"] == ["storage.retention_days"]


def test_apply_drops_ready_between_inspections(tmp_path):
    """The PLC's memory (client mode: the station writes its outputs there) is told `ready` low while a
    config is applied, and high again after."""
    port = free_port()

    async def scenario(station, client, path):
        plc = PLCServer(port)
        await plc.start()
        try:
            await plc.wait("ready", True)  # the station reached the PLC and is ready
            before = len(plc.written)
            config, sha = load_config(path)
            await station.apply_config(config, "0" * 64)
            written = [bool(value) for name, value in plc.written[before:] if name == "ready"]
        finally:
            await plc.stop()
        return station.config_sha256, written

    sha, written = run_setup(tmp_path, scenario, plc={"enabled": True, "mode": "client", "port": port})
    assert sha == "0" * 64
    told = [True] + written  # `ready` as the PLC was told it, from high; each change once (refreshes repeat it)
    changes = [v for i, v in enumerate(told) if i == 0 or v != told[i - 1]]
    assert changes[:3] == [True, False, True], written


def test_try_on_frame_and_upload_logs_nothing(tmp_path):
    async def scenario(station, client, path):
        h = await login_headers(client, "integrator")
        recipe = (await client.get("/api/setup/config")).json()["recipes"][0]
        out = {"frame": (await client.post("/api/setup/try", headers=h, json={"recipe": recipe})).json()}
        ok, png = cv2.imencode(".png", render_part(7, 320, 240).image)
        upload = "data:image/png;base64," + base64.b64encode(png.tobytes()).decode()
        out["upload"] = (
            await client.post("/api/setup/try", headers=h, json={"recipe": recipe, "image": upload})
        ).json()
        out["junk"] = await client.post(
            "/api/setup/try", headers=h, json={"recipe": recipe, "image": base64.b64encode(b"no image").decode()}
        )
        recipe["checks"][0]["max"] = -1
        out["bad_recipe"] = await client.post("/api/setup/try", headers=h, json={"recipe": recipe})
        out["rows"] = (await client.get("/api/inspections")).json()["total"]
        out["counters"] = dict(station.counters)
        return out

    out = run_setup(tmp_path, scenario)
    for key in ("frame", "upload"):
        result = out[key]
        assert result["verdict"] in ("PASS", "FAIL") and result["overlay"].startswith("data:image/jpeg;base64,")
        assert [c["name"] for c in result["checks"]] == ["surface", "screws", "label"]
        label = result["checks"][2]
        assert label["answer"] in ("yes", "no") and label["margin"] is not None
    assert out["upload"]["frame_size"] == [320, 240]
    assert out["junk"].status_code == 400 and "not an image" in out["junk"].json()["error"]
    assert out["bad_recipe"].status_code == 400 and "recipe.checks.0.max" in out["bad_recipe"].json()["error"]
    assert out["rows"] == 0 and out["counters"]["total"] == 0
    with sqlite3.connect(tmp_path / "data" / "inspections.db") as db:
        assert [r[0] for r in db.execute("select action from audit where action = 'setup_try'")] == ["setup_try"] * 2


def test_io_monitor_lists_the_effective_map(tmp_path):
    async def scenario(station, client, path):
        await login_headers(client, "integrator")
        return (await client.get("/api/setup/io")).json()

    body = run_setup(tmp_path, scenario)
    names = [s["name"] for s in body["signals"]]
    assert names[:2] == ["trigger", "results_ack"] and "ready" in names
    ready = next(s for s in body["signals"] if s["name"] == "ready")
    assert ready["table"] == "discrete_input" and ready["value"] in (0, 1)


def test_rollback_and_discard_never_lose_an_edit_on_disk(tmp_path):
    async def scenario(station, client, path):
        h = await login_headers(client, "integrator")
        path.chmod(0o600)
        opened = (await client.get("/api/setup/config")).json()
        data = yaml.safe_load(opened["yaml"])
        data["recipes"][0]["name"] = "renamed"
        r = await client.post(
            "/api/setup/config", headers=h, json={"yaml": yaml.safe_dump(data), "base_sha256": opened["sha256"]}
        )
        assert r.status_code == 200
        mode = path.stat().st_mode & 0o777  # a save keeps the file's mode (it holds password hashes)
        edited = path.read_text().replace("renamed", "edited-by-hand")
        path.write_text(edited)
        await async_wait_until(
            lambda: status_if(client, lambda s: s["config_on_disk"]), 20, "the edit seen", poll_s=0.1
        )
        rollback = await client.post("/api/setup/versions/1/rollback", headers=h)
        kept = path.read_text() == edited
        discard = await client.post("/api/setup/disk", headers=h, json={"action": "discard"})
        versions = (await client.get("/api/setup/versions")).json()["versions"]
        texts = [(await client.get(f"/api/setup/versions/{v['id']}")).json()["yaml"] for v in versions]
        return mode, rollback, kept, discard.status_code, versions, texts, path.read_text()

    mode, rollback, kept, discard, versions, texts, final = run_setup(tmp_path, scenario)
    assert mode == 0o600
    assert rollback.status_code == 409 and "apply or discard it first" in rollback.json()["error"] and kept
    assert discard == 200 and "edited-by-hand" not in final
    assert any("edited-by-hand" in t for t in texts)  # the discarded edit is still in the history
    assert [v["source"] for v in versions][:2] == ["web", "disk"]


def test_an_image_that_declares_huge_dimensions_is_a_400(tmp_path):
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )

    async def scenario(station, client, path):
        h = await login_headers(client, "integrator")
        recipe = (await client.get("/api/setup/config")).json()["recipes"][0]
        return await client.post(
            "/api/setup/try", headers=h, json={"recipe": recipe, "image": base64.b64encode(png).decode()}
        )

    r = run_setup(tmp_path, scenario)
    assert r.status_code == 400 and r.json()["error"].startswith("image:")


def test_a_large_upload_is_judged_whole_and_its_overlay_comes_back_screen_sized(tmp_path):
    async def scenario(station, client, path):
        h = await login_headers(client, "integrator")
        recipe = (await client.get("/api/setup/config")).json()["recipes"][0]
        part = cv2.resize(render_part(7, 320, 240).image, (3200, 2400), interpolation=cv2.INTER_NEAREST)
        ok, png = cv2.imencode(".png", part)
        query = urllib.parse.urlencode({"recipe": json.dumps(recipe)})
        headers = {**h, "Content-Type": "image/png"}
        return (await client.post(f"/api/setup/try?{query}", headers=headers, content=png.tobytes())).json()

    result = run_setup(tmp_path, scenario)
    assert result["frame_size"] == [3200, 2400]  # the model saw the whole frame
    jpeg = base64.b64decode(result["overlay"].split(",", 1)[1])
    overlay = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert overlay.shape[1] == 1600  # 3200 wide, halved (the legend strip below adds to its height)
