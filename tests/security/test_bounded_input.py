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

from ..support.clock import FakeClock
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

    from ..support.stations import free_port, write_station
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
    from edge_inspect.plant.app import build_app
    from edge_inspect.plant.collector import Collector

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

    from edge_inspect.web.setup_state import TryGate

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

    clock = FakeClock()
    gate = TryGate(min_interval_s=0.3, clock=clock)
    assert gate.enter() == 0 and gate.enter() == 1  # one at a time
    gate.leave()
    assert gate.enter(line_running=True) == 1  # the line runs: wait
    assert gate.enter(line_running=False) == 0  # no PLC connected: back to back
    gate.leave()
    clock.now += 0.29
    assert gate.enter(line_running=True) == 1
    clock.now += 0.02
    assert gate.enter(line_running=True) == 0


def _png_declaring(width: int, height: int, size: int) -> bytes:
    """A PNG whose header (IHDR) says ``width`` × ``height``, padded with junk to ``size`` bytes."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    head = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return head + chunk(b"IDAT", b"\0" * (size - len(head) - 12))


def _serving(tmp_path, fn):
    """``fn(port, headers)`` in a thread while a real server (uvicorn) serves the setup station;
    ``headers``: an integrator's HTTP Basic and CSRF token."""
    import asyncio

    import httpx

    from edge_inspect.config import load_config
    from edge_inspect.daemon import Daemon, build_station

    from ..support.stations import free_port, write_station
    from ..support.web import DEMO_BUNDLE, USERS

    port = free_port()
    path = write_station(
        tmp_path,
        DEMO_BUNDLE,
        plc={"enabled": False},
        model={"bundle": str(DEMO_BUNDLE), "max_new_tokens": 96},
        web={"enabled": True, "port": port, "open_view": False, "users": USERS},
    )

    def with_headers():
        auth = {"Authorization": "Basic " + base64.b64encode(b"integrator:integrator").decode()}
        csrf = httpx.get(f"http://127.0.0.1:{port}/api/session", headers=auth).json()["csrf"]
        return fn(port, {**auth, "X-CSRF-Token": csrf})

    async def main():
        config, sha = load_config(path)
        daemon = Daemon(build_station(config, sha, path.parent, config_path=path))
        await daemon.start()
        try:
            return await asyncio.get_running_loop().run_in_executor(None, with_headers)
        finally:
            await daemon.stop()

    return asyncio.run(main())


def _answer_to_a_partial_body(port: int, head: str, first: bytes) -> tuple[bytes, bytes]:
    """Sends a request head and the first bytes of its body, then nothing more: (the answer, what
    the server sent after it before closing). A server that waits for the whole body times out."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head.encode() + first)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += s.recv(65536)
        length = int(answer.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
        while len(answer.split(b"\r\n\r\n", 1)[1]) < length:
            answer += s.recv(65536)
        rest = s.recv(65536)  # b"": the server closed the connection, the rest of the body unread
        return answer, rest


def test_binary_uploads_through_the_server(tmp_path):
    """The binary form of try through uvicorn: an image that declares too many pixels is refused from
    its first bytes, the rest of its body never read; an upload without a login is refused before a
    byte of its body is read; a normal image is inspected; the connection of a refusal is closed."""
    import json
    import urllib.parse

    import httpx

    ok, part = cv2.imencode(".png", np.full((240, 320, 3), 128, np.uint8))
    recipe = {"number": 1, "name": "one", "checks": [{"name": "label", "kind": "qa", "question": "Is the label present?", "expect": "yes"}]}  # fmt: skip
    target = "/api/setup/try?" + urllib.parse.urlencode({"recipe": json.dumps(recipe)})
    bomb = _png_declaring(9000, 9000, 5_000_000)  # 81 MP: over the default 48 MP

    def requests(port, headers):
        def head(length, auth=True):
            lines = [f"POST {target} HTTP/1.1", "Host: x", "Content-Type: image/png", f"Content-Length: {length}"]
            lines += [f"{k}: {v}" for k, v in headers.items()] if auth else []
            return "\r\n".join(lines) + "\r\n\r\n"

        out = {
            "bomb": _answer_to_a_partial_body(port, head(len(bomb)), bomb[:100_000]),
            "anonymous": _answer_to_a_partial_body(port, head(10_000_000, auth=False), b""),
            "too_long": _answer_to_a_partial_body(
                port, head(25_000_000), b""
            ),  # over 20 MB, under the JSON form's limit
        }
        r = httpx.post(
            f"http://127.0.0.1:{port}{target}",
            headers={**headers, "Content-Type": "image/png"},
            content=part.tobytes(),
            timeout=120,
        )
        out["ok"] = r.status_code, r.json()
        return out

    out = _serving(tmp_path, requests)
    answer, rest = out["bomb"]
    assert answer.startswith(b"HTTP/1.1 400") and b"9000 \xc3\x97 9000 pixels is more than" in answer, answer
    assert b"connection: close" in answer.lower() and rest == b""
    answer, rest = out["anonymous"]
    assert answer.startswith(b"HTTP/1.1 401") and b"connection: close" in answer.lower() and rest == b"", answer
    answer, rest = out["too_long"]
    assert answer.startswith(b"HTTP/1.1 413") and b"connection: close" in answer.lower() and rest == b"", answer
    status, result = out["ok"]
    assert status == 200, result
    assert result["verdict"] in ("PASS", "FAIL") and result["frame_size"] == [320, 240]
    overlay = base64.b64decode(result["overlay"].split(",", 1)[1])
    assert cv2.imdecode(np.frombuffer(overlay, np.uint8), cv2.IMREAD_COLOR).shape[1] == 320


def test_the_binary_form_checks_before_it_decodes(tmp_path):
    """In the app: a JPEG that declares too many pixels is refused from its header (nothing near a
    decode's memory), so is one whose header lies beyond the first 64 KiB; the recipe is checked
    before the body is read; a body over 20 MB is a 413 from its Content-Length."""
    import json
    import urllib.parse

    bomb = _jpeg_declaring(30000, 30000)
    plain = _jpeg_declaring(16, 16)
    # an APP1 segment of 65,000 bytes before the frame header: the size is not in the first 64 KiB
    far = plain[:2] + b"\xff\xe1" + struct.pack(">H", 65002) + b"\0" * 65000 + bomb[2:]

    async def scenario(station, client, path):
        h = await login_headers(client, "integrator")
        recipe = (await client.get("/api/setup/config")).json()["recipes"][0]
        url = "/api/setup/try?" + urllib.parse.urlencode({"recipe": json.dumps(recipe)})
        jpeg = {**h, "content-type": "image/jpeg"}
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out = {"bomb": await client.post(url, headers=jpeg, content=bomb)}
        out["far"] = await client.post(url, headers=jpeg, content=far)
        out["grown_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        out["ok"] = await client.post(url, headers={**h, "content-type": "application/octet-stream"}, content=plain)
        bad = {**recipe, "checks": [{**recipe["checks"][0], "max": -1}]}
        out["bad_recipe"] = await client.post(
            "/api/setup/try?" + urllib.parse.urlencode({"recipe": json.dumps(bad)}), headers=jpeg, content=plain
        )
        out["no_recipe"] = await client.post("/api/setup/try", headers=jpeg, content=plain)
        out["junk"] = await client.post(url, headers=jpeg, content=b"no image")
        out["large"] = await client.post(
            url, headers={**jpeg, "content-length": str(25 * 1024 * 1024)}, content=b"\xff\xd8"
        )
        return out

    out = run_setup(tmp_path, scenario)
    for key in ("bomb", "far"):
        assert out[key].status_code == 400 and "more than this station takes" in out[key].json()["error"], key
    assert out["grown_kb"] < 200_000, out["grown_kb"]
    assert out["ok"].status_code == 200 and out["ok"].json()["frame_size"] == [16, 16]
    assert out["bad_recipe"].status_code == 400 and out["bad_recipe"].json()["error"].startswith("recipe.checks")
    assert out["no_recipe"].status_code == 400 and "?recipe=" in out["no_recipe"].json()["error"]
    assert out["junk"].status_code == 400 and out["junk"].json()["error"].startswith("image:")
    assert out["large"].status_code == 413 and out["large"].headers["connection"] == "close"


def test_tries_take_at_most_their_share_of_the_line_while_a_plc_is_connected():
    """A try of a maximum-size image holds the model for a while: the next one waits nine times as
    long while the line runs (10 % share), at least TRY_MIN_INTERVAL_S; with no PLC, none."""
    from edge_inspect.web.setup_state import TryGate

    clock = FakeClock()
    gate = TryGate(min_interval_s=1.0, line_share=0.1, clock=clock)
    assert gate.enter(line_running=True) == 0
    clock.now += 2.0  # that try takes 2 s
    gate.leave()
    assert gate.interval() == 18.0
    assert gate.enter(line_running=True) == 18  # seconds to wait, told to the client (Retry-After)
    assert gate.enter(line_running=False) == 0  # no PLC: the integrator's tries are not held back
    clock.now += 0.01
    gate.leave()
    assert gate.interval() == 1.0
