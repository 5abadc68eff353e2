"""The browser tests' shared parts: Debian's chromium, a daemon started as a user would, logging in, and
axe-core's audit."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

from edge_inspect.http.auth import hash_password

from .paths import REPO_ROOT, TESTS

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

SHOTS = Path(os.environ.get("EDGE_INSPECT_ARTIFACTS", REPO_ROOT / "artifacts")) / "screenshots"
USERS = [{"name": n, "role": n, "password_hash": hash_password(n)} for n in ("operator", "qa")]
RECIPES = [
    {
        "number": 1,
        "name": "plate",
        "checks": [
            {
                "name": "label_yes",
                "kind": "qa",
                "question": "Is the label present?",
                "expect": "yes",
                "min_margin": 0.0,
                "min_mass": 0.0,
            },
            {
                "name": "label_no",
                "kind": "qa",
                "question": "Is the label present?",
                "expect": "no",
                "min_margin": 0.0,
                "min_mass": 0.0,
            },
        ],
    }
]
AXE = TESTS / "axe" / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def start_daemon(config: Path, base: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_inspect.cli", "run", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(base + "/api/status", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline and proc.poll() is None, "daemon did not start"
        time.sleep(0.2)


def login(page, base: str, user: str) -> None:
    page.goto(base + "/login")
    page.fill("input[name=user]", user)
    page.fill("input[name=password]", user)
    page.click("#login-submit")
    page.wait_for_url(base + "/")


def audit(page) -> list[dict]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("""async () => {
        const r = await axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21aa']},
                                           rules: {'color-contrast': {enabled: true}}});
        return r.violations.map((v) => ({id: v.id, impact: v.impact, help: v.help,
                                         nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ') + ' ' + n.failureSummary)}));
    }""")
    return result


def trigger(base: str) -> dict:
    """A software trigger by an API client with HTTP Basic (its CSRF token from /api/session)."""
    auth = ("operator", "operator")
    csrf = httpx.get(base + "/api/session", auth=auth, timeout=30).json()["csrf"]
    r = httpx.post(base + "/api/trigger", json={}, auth=auth, headers={"X-CSRF-Token": csrf}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()
