"""The gate on the model versions page in a real browser (Chromium through Playwright) against a
running daemon: an integrator starts the gate of a worse copy with a click, watches its progress,
opens the report (plots drawn on the server, no script), then makes the copy production only by
confirming the override. The pages read at 800×480 and at desk size, without sideways scrolling, and
pass axe."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from edge_inspect.http.auth import hash_password
from edge_inspect.modelstore import ModelStore

from ..modelstore.helpers import degraded_copy
from ..support.browser import AXE, CHROMIUM, SHOTS, audit, start_daemon
from ..support.paths import DEMO_STUDENT
from ..support.stations import free_port, write_station

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian package chromium)")
USERS = [{"name": "integrator", "role": "integrator", "password_hash": hash_password("integrator")}]
GATE = {"parts": 2, "shift_parts": 1, "shifts": ["blur1.5", "rot+5"], "latency_parts": 2}


@pytest.fixture
def daemon(tmp_path):
    store = ModelStore(tmp_path / "data" / "models")
    production = store.add(DEMO_STUDENT, "commissioning", alias="production").version.id
    worse = store.add(degraded_copy(DEMO_STUDENT, tmp_path / "worse"), "qa", alias="candidate").version.id
    port = free_port()
    config = write_station(tmp_path, Path("production"), model={"max_new_tokens": 96, "gate": GATE},
                           plc={"enabled": False}, web={"enabled": True, "port": port, "users": USERS})  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    proc = start_daemon(config, base)
    yield {"base": base, "production": production, "worse": worse, "store": store}
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def _readable(page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")  # no sideways scroll
    if AXE.is_file():
        bad = [v for v in audit(page) if v["impact"] in ("serious", "critical") or v["id"] == "color-contrast"]
        assert not bad, bad


def test_gate_a_version_read_its_report_and_promote_it_only_with_the_override(daemon, page):
    base, worse = daemon["base"], daemon["worse"]
    page.goto(base + "/login?next=/setup/models")
    page.fill("input[name=user]", "integrator")
    page.fill("input[name=password]", "integrator")
    page.click("button[type=submit]")
    page.wait_for_url(base + "/setup/models")
    row = f"tr[data-version='{worse}']"
    page.wait_for_selector(f"{row} button.gate-start")
    assert page.inner_text(f"{row} td.gate").startswith("none")
    page.click(f"{row} button.gate-start")
    page.wait_for_function("document.getElementById('gate-run').textContent.includes('running')", timeout=30_000)
    page.wait_for_function("document.getElementById('gate-run').textContent.includes('failed')", timeout=300_000)
    page.wait_for_selector(f"{row} td.gate a")
    assert page.inner_text(f"{row} td.gate").startswith("failed")
    page.set_viewport_size({"width": 800, "height": 480})
    page.screenshot(path=str(SHOTS / "setup_models_gate_800x480.png"), full_page=True)
    _readable(page)

    page.click("#gate-run a")
    page.wait_for_url(f"{base}/setup/models/gate/{worse}")
    assert page.inner_text("#gate-verdict h2").startswith("Failed")
    assert page.locator("#gate-problems li").count() >= 1
    assert page.locator("#check-plots svg").count() >= 4  # one per check: F1 or accuracy on every suite
    page.screenshot(path=str(SHOTS / "setup_gate_800x480.png"), full_page=True)
    _readable(page)
    page.set_viewport_size({"width": 1920, "height": 1080})
    page.screenshot(path=str(SHOTS / "setup_gate_1920.png"), full_page=True)

    page.goto(base + "/setup/models")
    page.wait_for_selector(f"{row} button.promote")
    dialogs: list[str] = []

    def answer(dialog):
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", answer)
    page.click(f"{row} button.promote")
    page.wait_for_function("document.getElementById('model-result').textContent.includes('without a passing gate')")
    assert len(dialogs) == 2 and "failed its gate against production" in dialogs[1]
    page.screenshot(path=str(SHOTS / "setup_models_gate_1920.png"), full_page=True)
    assert daemon["store"].aliases()["production"] == worse
    assert daemon["store"].state()["history"][-1]["forced"].startswith(f"version {worse[:12]} failed its gate")
