"""The HTTP edges both webs share (edge_inspect/http): the login form's token (no login CSRF), a
deadline for request heads and bodies on a real uvicorn server, X-Forwarded-For believed only from
the proxies the config names."""

from __future__ import annotations

import asyncio
import socket
import time

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from edge_inspect.config import ConfigError, load_config
from edge_inspect.http.middleware import BodyLimit, client_gone
from edge_inspect.http.server import server_config

from ..support.stations import free_port, write_station
from ..support.web import USERS, login_fields, run_api


def test_a_login_without_the_forms_token_is_refused(tmp_path, tiny_bundle):
    async def scenario(station, client):
        out = {}
        # another site's page posts the attacker's credentials: no token of this browser's login form
        out["forged"] = await client.post("/login", data={"user": "qa", "password": "qa", "next": "/"})
        out["forged_session"] = (await client.get("/api/session")).json()["user"]
        async with httpx.AsyncClient(transport=client._transport, base_url="http://station") as other:
            foreign = (await login_fields(other, "qa", "qa"))["login_token"]  # a token from another browser
        out["foreign"] = await client.post("/login", data={"user": "qa", "password": "qa", "login_token": foreign})
        out["real"] = await client.post("/login", data=await login_fields(client, "qa", "qa"))
        out["session"] = (await client.get("/api/session")).json()["user"]
        return out

    out = run_api(tmp_path, tiny_bundle, scenario)
    assert out["forged"].status_code == 403 and "expired" in out["forged"].text and out["forged_session"] is None
    assert out["foreign"].status_code == 403
    assert out["real"].status_code == 303 and out["session"] == "qa"


async def _echo(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"client": request.client.host if request.client else None, "bytes": len(body)})


def _serve(config: uvicorn.Config):
    """Run ``config`` on its own loop in a thread; the server object, to stop it."""
    import threading

    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    return server, thread


@pytest.fixture
def limited_server():
    """The shared pieces on a real uvicorn: head deadline 0.5 s, body pause limit 0.5 s."""
    app = Starlette(
        routes=[Route("/", _echo, methods=["GET", "POST"])],
        middleware=[Middleware(BodyLimit, read_timeout_s=0.5)],
        exception_handlers={ClientDisconnect: client_gone},
    )
    port = free_port()
    server, thread = _serve(server_config(app, head_timeout_s=0.5, host="127.0.0.1", port=port))
    yield port
    server.should_exit = True
    thread.join(10)


def _closed_after(sock: socket.socket, limit_s: float = 5.0) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it closed."""
    start, data = time.monotonic(), b""
    sock.settimeout(limit_s)
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return data, time.monotonic() - start
        data += chunk


def test_a_request_head_that_stops_arriving_is_dropped(limited_server):
    with socket.create_connection(("127.0.0.1", limited_server)) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # ... and the rest never comes
        data, took = _closed_after(s)
    assert data == b"" and 0.4 < took < 3.0
    with socket.create_connection(("127.0.0.1", limited_server)) as s:  # the same after one kept-alive request
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.2)
        s.sendall(b"GET / HTTP/1.1\r\nHost")
        data, took = _closed_after(s)
    assert data.startswith(b"HTTP/1.1 200") and data.count(b"HTTP/1.1") == 1 and took < 3.0
    with socket.create_connection(("127.0.0.1", limited_server)) as s:  # an idle connection, no byte at all
        data, took = _closed_after(s)
    assert data == b"" and took < 3.0
    assert httpx.get(f"http://127.0.0.1:{limited_server}/").json()["bytes"] == 0  # normal clients unaffected


def test_a_body_that_stops_arriving_is_a_408_not_a_500(limited_server):
    with socket.create_connection(("127.0.0.1", limited_server)) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
        data, took = _closed_after(s)
    assert data.startswith(b"HTTP/1.1 408") and b"did not arrive in time" in data and took < 3.0
    r = httpx.post(f"http://127.0.0.1:{limited_server}/", content=b"y" * 1000)
    assert r.json()["bytes"] == 1000


@pytest.mark.parametrize(("trusted", "seen"), [([], "127.0.0.1"), (["127.0.0.1"], "203.0.113.9")])
def test_forwarded_for_is_believed_only_from_configured_proxies(trusted, seen):
    app = Starlette(routes=[Route("/", _echo)])
    port = free_port()
    server, thread = _serve(server_config(app, trusted_proxies=trusted, host="127.0.0.1", port=port))
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/", headers={"X-Forwarded-For": "203.0.113.9"})
    finally:
        server.should_exit = True
        thread.join(10)
    assert r.json()["client"] == seen


def test_trusted_proxies_must_be_addresses(tmp_path, tiny_bundle):
    path = write_station(tmp_path, tiny_bundle, web={"users": USERS, "trusted_proxies": ["10.0.0.0/24", "proxy.local"]})
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "trusted_proxies" in str(err.value) and "'proxy.local' is not an IP address or network" in str(err.value)
    assert str(path) in str(err.value)


def test_the_station_web_is_served_with_these_settings(tmp_path, tiny_bundle):
    from edge_inspect.daemon import build_station
    from edge_inspect.http.server import HeadTimeoutH11
    from edge_inspect.web.app import serve

    port = free_port()
    web = {"users": USERS, "port": port, "trusted_proxies": ["10.1.2.3"]}
    config, sha = load_config(write_station(tmp_path, tiny_bundle, plc={"enabled": False}, web=web))

    async def main():
        station = build_station(config, sha, tmp_path)
        await station.start()
        web = await serve(station, config)
        try:
            settings = web.server.config
            async with httpx.AsyncClient() as client:
                status = (await client.get(f"http://127.0.0.1:{port}/api/status")).status_code
            return settings, status
        finally:
            await web.stop()
            await station.stop()

    settings, status = asyncio.run(main())
    assert status == 200 and issubclass(settings.http, HeadTimeoutH11)
    assert settings.proxy_headers and settings.forwarded_allow_ips == ["10.1.2.3"]
