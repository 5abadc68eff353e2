"""Sessions follow the config, and the login limits hold: a live change of a user's role, password or
removal ends that user's sessions at once (station web through a setup save, plant web through its
users file); failures are counted per address and per account, a success clears only its own
account, and an attempt is reserved before the slow hash, so parallel guesses cannot overrun it."""

from __future__ import annotations

import asyncio
import base64
import hashlib

import httpx
import yaml

from edge_inspect.http.accounts import Accounts
from edge_inspect.http.auth import LoginLimiter, check_login

from ..support.web import login, login_fields, login_fields_sync, login_headers, run_api, run_setup


async def _save_users(client, headers, change) -> None:
    """The integrator's setup save of station.yaml with ``change(users)`` applied to web.users."""
    current = (await client.get("/api/setup/config")).json()
    doc = yaml.safe_load(current["yaml"])
    change(doc["web"]["users"])
    r = await client.post(
        "/api/setup/config",
        headers=headers,
        json={"yaml": yaml.safe_dump(doc, sort_keys=False), "base_sha256": current["sha256"]},
    )
    assert r.status_code == 200, r.text


def _cheap_hash(password: str) -> str:
    """A valid scrypt hash with a small N (the tests change passwords often)."""
    salt = b"0123456789abcdef"
    digest = hashlib.scrypt(password.encode(), salt=salt, n=1024, r=8, p=1, dklen=32)
    return f"scrypt$1024$8$1${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def test_station_sessions_end_when_the_user_is_demoted_given_a_new_password_or_removed(tmp_path):
    async def scenario(station, client, path):
        transport = client._transport
        op = httpx.AsyncClient(transport=transport, base_url="http://station")
        qa = httpx.AsyncClient(transport=transport, base_url="http://station")
        out = {}
        admin = await login_headers(client, "integrator")
        op_csrf = await login(op, "operator")
        await login(qa, "qa")
        out["op_before"] = (await op.get("/api/session")).json()["user"]

        def demote(users):
            next(u for u in users if u["name"] == "operator")["role"] = "qa"

        await _save_users(client, admin, demote)
        out["op_after_demotion"] = (await op.get("/api/session")).json()["user"]
        out["op_trigger"] = (await op.post("/api/trigger", headers={"X-CSRF-Token": op_csrf}, json={})).status_code
        out["op_relogin_role"] = None
        await login(op, "operator")
        out["op_relogin_role"] = (await op.get("/api/session")).json()["role"]

        def new_password(users):
            next(u for u in users if u["name"] == "qa")["password_hash"] = _cheap_hash("fresh")

        out["qa_before"] = (await qa.get("/api/session")).json()["user"]
        await _save_users(client, admin, new_password)
        out["qa_after_password"] = (await qa.get("/api/session")).json()["user"]
        out["qa_new_login"] = (await qa.post("/login", data=await login_fields(qa, "qa", "fresh"))).status_code

        def remove(users):
            users[:] = [u for u in users if u["name"] != "operator"]

        await _save_users(client, admin, remove)
        out["op_after_removal"] = (await op.get("/api/session")).json()["user"]

        def demote_self(users):
            next(u for u in users if u["name"] == "integrator")["role"] = "operator"

        await _save_users(client, admin, demote_self)
        out["admin_setup_after_self_demotion"] = (await client.get("/api/setup/config")).status_code
        out["admin_session"] = (await client.get("/api/session")).json()["user"]
        await op.aclose()
        await qa.aclose()
        return out

    out = run_setup(tmp_path, scenario)
    assert out["op_before"] == "operator"
    assert out["op_after_demotion"] is None and out["op_trigger"] == 401
    assert out["op_relogin_role"] == "qa"
    assert out["qa_before"] == "qa" and out["qa_after_password"] is None and out["qa_new_login"] == 303
    assert out["op_after_removal"] is None
    # The demoted integrator's old session reads no config (hashes included) and saves nothing.
    assert out["admin_setup_after_self_demotion"] == 401 and out["admin_session"] is None


def test_plant_sessions_end_when_the_users_file_changes(tmp_path, postgres):
    from starlette.testclient import TestClient

    from edge_inspect.plant.app import build_app
    from edge_inspect.plant.users import UsersFile

    dsn = postgres.database("plant_sessions")
    from edge_inspect.fleet.mqtt import BrokerSettings
    from edge_inspect.plant.collector import Collector

    Collector(BrokerSettings("127.0.0.1"), dsn).check_database()
    users = tmp_path / "users.yaml"
    users.write_text(yaml.safe_dump({"users": [{"name": "quality", "role": "qa", "password_hash": _cheap_hash("pw")}]}))
    client = TestClient(build_app(dsn, UsersFile(users)))
    assert (
        client.post("/login", data=login_fields_sync(client, "quality", "pw"), follow_redirects=False).status_code
        == 303
    )
    assert client.get("/api/stations").status_code == 200
    users.write_text(
        yaml.safe_dump({"users": [{"name": "quality", "role": "qa", "password_hash": _cheap_hash("new")}]})
    )
    assert client.get("/api/stations").status_code == 401  # the session made under the old password is over
    assert (
        client.post("/login", data=login_fields_sync(client, "quality", "new"), follow_redirects=False).status_code
        == 303
    )
    assert client.get("/api/stations").status_code == 200
    users.write_text(yaml.safe_dump({"users": [{"name": "other", "role": "qa", "password_hash": _cheap_hash("x")}]}))
    assert client.get("/api/stations").status_code == 401


def test_the_reset_trick_no_longer_clears_the_failures(tmp_path, tiny_bundle):
    """4 wrong guesses at the integrator + 1 login with one's own operator account, six rounds: the
    address's failures stay, so the fifth wrong guess is already refused (429)."""

    async def scenario(station, client):
        codes = []
        for _ in range(6):
            for _ in range(4):
                r = await client.post("/login", data=await login_fields(client, "integrator", "guess"))
                codes.append(r.status_code)
            await client.post("/login", data=await login_fields(client, "operator", "operator"))
        return codes

    codes = run_api(tmp_path, tiny_bundle, scenario)
    assert codes[:4] == [401] * 4
    assert codes.count(401) == 5 and set(codes[5:]) == {429}, codes


def test_parallel_guesses_cannot_overrun_the_limit():
    """50 guesses at once: at most the limit's 5 reach the password check; the rest answer 429."""
    checked = []

    class Slow:
        name, role, password_hash = "int", "integrator", _cheap_hash("right")

    def counting(password, stored):
        checked.append(password)
        return check_login(password, stored)

    accounts = Accounts(lambda: {"int": Slow()}, limiter=LoginLimiter(attempts=5, window_s=60), check=counting)

    async def main():
        results = await asyncio.gather(
            *[accounts.verify("int", f"guess{i}", "10.0.0.9") for i in range(50)], return_exceptions=True
        )
        return [getattr(r, "status", 200) for r in results]

    statuses = asyncio.run(main())
    assert len(checked) <= 5 and statuses.count(401) == len(checked) and statuses.count(429) == 50 - len(checked)


def test_a_success_clears_only_its_own_account():
    limiter = LoginLimiter(attempts=5, window_s=60, account_attempts=10)
    for _ in range(4):
        wait, token = limiter.reserve("1.2.3.4", "int", now=0.0)
        assert wait == 0
    wait, token = limiter.reserve("1.2.3.4", "op", now=1.0)
    limiter.succeeded("1.2.3.4", "op", token)
    assert limiter.reserve("1.2.3.4", "int", now=2.0)[0] == 0  # the 5th failure from here
    assert limiter.reserve("1.2.3.4", "int", now=3.0)[0] > 0  # over the address's limit
    # The account is limited from any address too (10 failures), and forgotten after the window.
    for i in range(10):
        limiter.reserve(f"10.0.0.{i}", "int", now=4.0)
    assert limiter.reserve("10.0.0.99", "int", now=5.0)[0] > 0
    assert limiter.reserve("10.0.0.99", "int", now=70.0)[0] == 0


def test_the_limiter_remembers_a_bounded_number_of_keys():
    limiter = LoginLimiter(max_keys=100)
    for i in range(1000):
        limiter.failed(f"10.0.{i // 256}.{i % 256}", f"user{i}")
    assert len(limiter._failures) <= 100
