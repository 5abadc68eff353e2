"""A real station (the model, its log) with its web app in process, driven through httpx."""

import asyncio
import re
from pathlib import Path

import httpx

from edge_inspect.config import load_config
from edge_inspect.daemon import build_station
from edge_inspect.http.auth import hash_password
from edge_inspect.web.app import build_app

from .paths import DEMO_STUDENT
from .stations import write_station

USERS = [{"name": n, "role": n, "password_hash": hash_password(n)} for n in ("operator", "qa", "integrator")]
DEMO_BUNDLE = DEMO_STUDENT
# Two yes/no checks that contradict each other: every part FAILs one of them (readable, deterministic).
RECIPES = [
    {"number": 1, "name": "always-fail", "checks": [
        {"name": "label_yes", "kind": "qa", "question": "Is the label present?", "expect": "yes", "min_margin": 0.0, "min_mass": 0.0},
        {"name": "label_no", "kind": "qa", "question": "Is the label present?", "expect": "no", "min_margin": 0.0, "min_mass": 0.0}]},
    {"number": 2, "name": "label", "checks": [
        {"name": "label_yes", "kind": "qa", "question": "Is the label present?", "expect": "yes", "min_margin": 0.0, "min_mass": 0.0}]},
]  # fmt: skip


def run_web(path: Path, scenario, with_file: bool = False, **app_options):
    """Start the station of ``path`` with its web app; ``scenario(station, client[, path])`` runs against it.
    ``with_file``: started from the file (config versions, setup saves) and the scenario gets the path.
    ``app_options``: passed to build_app (e.g. ``password_check``)."""

    async def main():
        config, sha = load_config(path)
        station = build_station(config, sha, path.parent, config_path=path if with_file else None)
        await station.start()
        transport = httpx.ASGITransport(app=build_app(station, config, **app_options))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://station") as client:
                return await (scenario(station, client, path) if with_file else scenario(station, client))
        finally:
            await station.stop()

    return asyncio.run(main())


def run_api(tmp_path, bundle, scenario, open_view=True, **app_options):
    """The REST API's station: RECIPES, no PLC, the three users; ``app_options`` go to build_app."""
    path = write_station(
        tmp_path,
        bundle,
        recipes=RECIPES,
        plc={"enabled": False},
        web={"enabled": True, "open_view": open_view, "users": USERS},
    )
    return run_web(path, scenario, **app_options)


def run_setup(tmp_path, scenario, **sections):
    """The setup pages' station: the demo student, started from its file; no PLC unless ``sections`` name one."""
    path = write_station(
        tmp_path,
        DEMO_BUNDLE,
        **{
            "plc": {"enabled": False},
            "model": {"bundle": str(DEMO_BUNDLE), "max_new_tokens": 96},
            "web": {"enabled": True, "open_view": True, "users": USERS},
            **sections,
        },
    )
    return run_web(path, scenario, with_file=True)


LOGIN_TOKEN = re.compile(r'name="login_token" value="([^"]+)"')


async def login_fields(client, user: str, password: str, **extra) -> dict[str, str]:
    """The login form's fields as a browser sends them: the form's token from GET /login included."""
    token = LOGIN_TOKEN.search((await client.get("/login")).text).group(1)
    return {"user": user, "password": password, "login_token": token, **extra}


def login_fields_sync(client, user: str, password: str, **extra) -> dict[str, str]:
    token = LOGIN_TOKEN.search(client.get("/login").text).group(1)
    return {"user": user, "password": password, "login_token": token, **extra}


async def login(client, name, password=None) -> str:
    """Log in (the password is the name, as in USERS); the session's CSRF token."""
    r = await client.post("/login", data=await login_fields(client, name, password or name, next="/"))
    assert r.status_code == 303, r.text
    return (await client.get("/api/session")).json()["csrf"]


async def login_headers(client, name) -> dict[str, str]:
    return {"X-CSRF-Token": await login(client, name)}
