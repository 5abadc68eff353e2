"""Web access hardening: server-side sessions (revoked at logout, idle expiry), the same login time
for unknown users, password hashing off the event loop, no 500 for bad input from anyone,
lockout with 429, TLS with Secure cookies and HSTS, a clean error when the web port is taken."""

from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from edge_inspect.http import auth
from edge_inspect.http.sessions import SessionStore

from ..support.errors import assert_one_line_error
from ..support.stations import free_port, write_station
from ..support.web import login, login_fields, login_fields_sync, run_api


def test_a_cookie_saved_before_logout_is_worthless_after_it(tmp_path, tiny_bundle):
    async def scenario(station, client):
        await station.inspect(1)
        await login(client, "qa")
        saved = dict(client.cookies)
        before = (await client.get("/api/session")).json()
        forged = await client.post("/logout")  # another site's form: no CSRF token
        still = (await client.get("/api/session")).json()
        await client.post("/logout", data={"csrf": before["csrf"]})
        client.cookies.clear()
        client.cookies.update(saved)  # an attacker replays the cookie
        after = (await client.get("/api/session")).json()
        replay = await client.post(
            "/api/inspections/1/disposition",
            json={"disposition": "false_reject"},
            headers={"X-CSRF-Token": before["csrf"]},
        )
        return before, after, replay, forged, still

    before, after, replay, forged, still = run_api(tmp_path, tiny_bundle, scenario)
    assert forged.status_code == 403 and still["user"] == "qa"  # logout needs the session's token
    assert before["user"] == "qa" and after["user"] is None
    assert replay.status_code == 401


def test_sessions_expire_when_idle_and_in_all():
    store = SessionStore(idle_s=60, max_s=3600)
    sid, _ = store.create(auth.User("op", "operator"))
    now = time.monotonic()
    assert store.get(sid, now + 59) is not None  # touched: idle time starts again
    assert store.get(sid, now + 59 + 59) is not None
    assert store.get(sid, now + 59 + 59 + 61) is None  # idle too long, and gone for good
    assert store.get(sid, now + 59) is None
    sid, _ = store.create(auth.User("op", "operator"))
    for minutes in range(1, 61):
        assert store.get(sid, now + 59 * minutes) is not None or minutes * 59 > 3600
    assert store.get(sid, now + 3601) is None


def test_login_costs_one_scrypt_whether_or_not_the_user_exists():
    calls = []

    def counting(*args, **kwargs):
        calls.append(kwargs.get("n"))
        return hashlib.scrypt(*args, **kwargs)

    stored = auth.hash_password("right")
    results = [auth.check_login(pw, s, kdf=counting) for pw, s in (("wrong", stored), ("right", stored), ("x", None))]
    assert results == [False, True, False]
    assert calls == [2**14] * 3  # same work, same parameters: the time does not tell whether a user exists


def test_password_checks_run_off_the_event_loop(tmp_path, tiny_bundle):
    threads = []

    def recording(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return hashlib.scrypt(*args, **kwargs)

    def check(password, stored):  # the station's check, its key derivations recorded
        return auth.check_login(password, stored, kdf=recording)

    async def scenario(station, client):
        loop_thread = threading.current_thread().name
        await client.post("/login", data=await login_fields(client, "qa", "qa"))
        await client.post("/login", data=await login_fields(client, "nobody", "x"))
        client.cookies.clear()  # an API client with HTTP Basic, no session
        await client.get("/api/session", auth=("operator", "operator"))
        return loop_thread

    loop_thread = run_api(tmp_path, tiny_bundle, scenario, password_check=check)
    assert len(threads) == 3 and loop_thread not in threads, (loop_thread, threads)


BAD_REQUESTS = [
    ("POST", "/api/trigger", {"content": b"{not json", "headers": {"content-type": "application/json"}}),
    ("POST", "/api/trigger", {"content": b"[1, 2]", "headers": {"content-type": "application/json"}}),
    (
        "POST",
        "/api/inspections/1/disposition",
        {"content": b"\xff\xfe", "headers": {"content-type": "application/json"}},
    ),
    (
        "POST",
        "/login",
        {"content": b"user=%ff%fe&password=\x00", "headers": {"content-type": "application/x-www-form-urlencoded"}},
    ),
    ("POST", "/login", {"content": b"--x\r\nbroken", "headers": {"content-type": "multipart/form-data; boundary=x"}}),
    ("GET", "/images/%00/../../etc/passwd", {}),
    ("GET", "/images/..%2f..%2fweb_secret", {}),
    ("GET", "/api/inspections/1/%00", {}),
    ("GET", "/api/inspections?page=99999999999999999999", {}),
    ("GET", "/api/inspections?from=not-a-date&to=%00", {}),
    ("GET", "/api/inspections?per_page=-1&recipe=x", {}),
    ("GET", "/api/charts?verdict=%ff", {}),
    ("GET", "/api/inspections.csv?from=2026-13-45", {}),
    ("GET", "/api/session", {"headers": {"authorization": "Basic !!!not-base64"}}),
    ("GET", "/api/session", {"headers": {"authorization": "Basic /w=="}}),  # not UTF-8
    ("GET", "/api/status", {"headers": {"cookie": "edge_inspect=garbage.value.here"}}),
    ("GET", "/review?page=0", {}),
    ("GET", "/review/99999999999999999999999", {}),
    (
        "POST",
        "/alarms/%00/ack",
        {"content": b"csrf=x", "headers": {"content-type": "application/x-www-form-urlencoded"}},
    ),
    ("DELETE", "/api/inspections/1", {}),
]


def test_no_request_from_anyone_gets_a_500_or_logs_a_traceback(tmp_path, tiny_bundle, caplog):
    async def scenario(station, client):
        await station.inspect(1)
        return [
            (method, path, (await client.request(method, path, **kw)).status_code) for method, path, kw in BAD_REQUESTS
        ]

    (tmp_path / "open").mkdir()
    results = run_api(tmp_path, tiny_bundle, scenario, open_view=False) + run_api(
        tmp_path / "open", tiny_bundle, scenario, open_view=True
    )
    assert all(code < 500 for _, _, code in results), [r for r in results if r[2] >= 500]
    assert "Traceback" not in caplog.text


def test_login_lockout_answers_429_with_retry_after_for_basic_auth_too(tmp_path, tiny_bundle):
    async def scenario(station, client):
        for _ in range(5):
            await client.get("/api/session", auth=("operator", "wrong"))
        return await client.post("/api/trigger", json={}, auth=("operator", "operator"))

    blocked = run_api(tmp_path, tiny_bundle, scenario)
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1


def _daemon(config, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "edge_inspect.cli", "run", str(config)],
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,
    )


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed (to make a test certificate)")
def test_tls_with_secure_cookies_and_hsts(tmp_path, tiny_bundle):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    port = free_port()
    users = [{"name": "qa", "role": "qa", "password_hash": auth.hash_password("qa")}]
    config = write_station(
        tmp_path,
        tiny_bundle,
        plc={"enabled": False},
        web={"enabled": True, "port": port, "users": users, "tls_cert": str(cert), "tls_key": str(key)},
    )
    proc = _daemon(config)
    try:
        base, deadline, status = f"https://127.0.0.1:{port}", time.monotonic() + 60, None
        while status is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                status = httpx.get(base + "/api/status", verify=False, timeout=2)
            except httpx.HTTPError:
                time.sleep(0.2)
        assert status is not None and status.status_code == 200, proc.stderr.read() if proc.poll() else ""
        assert status.headers["strict-transport-security"].startswith("max-age=")
        with httpx.Client(verify=False, base_url=base) as client:
            r = client.post("/login", data=login_fields_sync(client, "qa", "qa", next="/"))
        assert r.status_code == 303
        cookie = r.headers["set-cookie"].lower()
        assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie
        with pytest.raises(httpx.HTTPError):  # plain HTTP is not served on the TLS port
            httpx.get(f"http://127.0.0.1:{port}/api/status", timeout=2)
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_web_port_in_use_is_one_line_and_exit_2(tmp_path, tiny_bundle):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_station(tmp_path, tiny_bundle, plc={"enabled": False}, web={"enabled": True, "port": port})
        result = subprocess.run(
            [sys.executable, "-m", "edge_inspect.cli", "run", str(config)], capture_output=True, text=True, timeout=120
        )
    assert_one_line_error(result, f"127.0.0.1:{port}", "web")


def test_web_host_that_does_not_resolve_is_one_line_and_exit_2(tmp_path, tiny_bundle):
    config = write_station(
        tmp_path,
        tiny_bundle,
        plc={"enabled": False},
        web={"enabled": True, "host": "no-such-host.invalid", "port": free_port()},
    )
    result = subprocess.run(
        [sys.executable, "-m", "edge_inspect.cli", "run", str(config)], capture_output=True, text=True, timeout=120
    )
    assert_one_line_error(result, "no-such-host.invalid")


def test_web_connections_send_without_waiting_for_acks(tmp_path, tiny_bundle):
    """TCP_NODELAY on the listening socket (accepted connections inherit it): a response on a kept-alive
    connection otherwise waits ~40 ms for the browser's delayed ACK."""
    import asyncio

    from edge_inspect.config import load_config
    from edge_inspect.daemon import build_station
    from edge_inspect.web.app import serve

    config_path = write_station(
        tmp_path, tiny_bundle, plc={"enabled": False}, web={"enabled": True, "port": free_port()}
    )

    async def main():
        config, sha = load_config(config_path)
        station = build_station(config, sha, tmp_path)
        await station.start()
        web = await serve(station, config)
        try:
            listening = [s for server in web.server.servers for s in server.sockets]
            return [s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for s in listening]
        finally:
            await station.stop()
            await web.stop()

    assert asyncio.run(main()) == [1]
