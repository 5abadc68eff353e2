"""Bounded input: an image is refused from its header when it declares more pixels than the station
takes (before any decoding), request bodies are bounded per endpoint from their Content-Length (before
a byte is read, logged in or not), and both webs send the same security headers."""

from __future__ import annotations

import base64
import resource
import socket
import struct

import cv2
import numpy as np

from ..support.web import login_headers, run_setup


def _jpeg_declaring(width: int, height: int) -> bytes:
    """A real 16 × 16 JPEG whose frame header (SOF0) says ``width`` × ``height``."""
    ok, data = cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))
    raw = bytearray(data.tobytes())
    sof = raw.index(b"\xff\xc0")
    struct.pack_into(">HH", raw, sof + 5, height, width)
    return bytes(raw)


def test_an_image_bomb_is_refused_from_its_header(tmp_path):
    bomb = _jpeg_declaring(30000, 30000)
    big = _jpeg_declaring(8000, 7000)  # 56 MP: under Pillow's own bound, over the default 4 × 12 MP
    assert len(bomb) < 1000

    async def scenario(station, client, path):
        h = await login_headers(client, "integrator")
        recipe = (await client.get("/api/setup/config")).json()["recipes"][0]
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        r = await client.post(
            "/api/setup/try", headers=h, json={"recipe": recipe, "image": base64.b64encode(bomb).decode()}
        )
        grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        over = await client.post(
            "/api/setup/try", headers=h, json={"recipe": recipe, "image": base64.b64encode(big).decode()}
        )
        ok = await client.post(
            "/api/setup/try",
            headers=h,
            json={"recipe": recipe, "image": base64.b64encode(_jpeg_declaring(16, 16)).decode()},
        )
        return r, grown_kb, ok.status_code, over.json()

    r, grown_kb, ok, over = run_setup(tmp_path, scenario)
    assert over["error"] == (
        "image: 8000 × 7000 pixels is more than this station takes (48,000,000 pixels, web.max_upload_pixels)"
    )
    assert r.status_code == 400 and "more than this station takes" in r.json()["error"]
    assert grown_kb < 200_000, grown_kb  # nothing near the 2.7 GB a decode would take
    assert ok == 200


def _raw_request(port: int, head: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head.encode())
        s.shutdown(socket.SHUT_WR)
        return s.recv(4096)


def test_bodies_are_bounded_before_they_are_read(tmp_path):
    """Through a real server (uvicorn): a 200 MB body is refused from its Content-Length with no byte of
    it sent, logged in or not; chunked bodies without a length are refused."""
    import asyncio

    from edge_inspect.config import load_config
    from edge_inspect.daemon import Daemon, build_station

    from ..stations import free_port, write_station
    from ..support.web import DEMO_BUNDLE, USERS

    port = free_port()
    path = write_station(
        tmp_path,
        DEMO_BUNDLE,
        plc={"enabled": False},
        web={"enabled": True, "port": port, "open_view": False, "users": USERS},
    )

    async def main():
        config, sha = load_config(path)
        daemon = Daemon(build_station(config, sha, path.parent, config_path=path))
        await daemon.start()
        try:
            loop = asyncio.get_running_loop()
            answers = {}
            for name, head in {
                "trigger_200MB": "POST /api/trigger HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                "Content-Length: 200000000\r\n\r\n",
                "login_multipart_10MB": "POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                "boundary=x\r\nContent-Length: 10000000\r\n\r\n",
                "try_30MB": "POST /api/setup/try HTTP/1.1\r\nHost: x\r\nContent-Length: 30000000\r\n\r\n",
                "chunked": "POST /login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            }.items():
                answers[name] = await loop.run_in_executor(None, _raw_request, port, head)
            return answers
        finally:
            await daemon.stop()

    answers = asyncio.run(main())
    for name in ("trigger_200MB", "login_multipart_10MB", "try_30MB"):
        assert answers[name].startswith(b"HTTP/1.1 413"), (name, answers[name][:200])
        assert b"x-frame-options: DENY" in answers[name].lower().replace(b"deny", b"DENY")
    assert answers["chunked"].startswith(b"HTTP/1.1 411"), answers["chunked"][:200]


def test_the_plant_web_sends_the_same_security_headers_and_bounds_bodies(tmp_path, postgres):
    from starlette.testclient import TestClient

    from edge_inspect.fleet.mqtt import BrokerSettings
    from edge_inspect.plant.collector import Collector
    from edge_inspect.plant.serve import build_app

    dsn = postgres.database("plant_headers")
    Collector(BrokerSettings("127.0.0.1"), dsn).check_database()
    client = TestClient(build_app(dsn, [], open_view=True))
    r = client.get("/")
    assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
    assert (
        client.post(
            "/login", content=b"x" * 100_000, headers={"content-type": "application/x-www-form-urlencoded"}
        ).status_code
        == 413
    )


def test_one_try_at_a_time_and_a_pause_while_the_line_runs(tmp_path):
    """A second try while one runs is a 429 with Retry-After, answered before its body is read and
    with the connection closed; while a PLC is connected, tries are at least TRY_MIN_INTERVAL_S apart."""
    import asyncio
    import time

    from edge_inspect.web.setup import TryGate

    async def scenario(station, client, path):
        h = await login_headers(client, "integrator")
        recipe = (await client.get("/api/setup/config")).json()["recipes"][0]
        first, second = await asyncio.gather(
            client.post("/api/setup/try", headers=h, json={"recipe": recipe}),
            client.post("/api/setup/try", headers=h, json={"recipe": recipe}),
        )
        after = await client.post("/api/setup/try", headers=h, json={"recipe": recipe})  # no PLC: no pause
        return first, second, after

    first, second, after = run_setup(tmp_path, scenario)
    assert first.status_code == 200 and after.status_code == 200
    assert second.status_code == 429 and second.headers["retry-after"] == "1"
    assert second.headers["connection"] == "close" and "another try is running" in second.json()["error"]

    gate = TryGate(min_interval_s=0.3)
    assert gate.enter() == 0 and gate.enter() == 1  # one at a time
    gate.leave()
    assert gate.enter(line_running=True) == 1  # the line runs: wait
    assert gate.enter(line_running=False) == 0  # no PLC connected: back to back
    gate.leave()
    time.sleep(0.35)
    assert gate.enter(line_running=True) == 0
