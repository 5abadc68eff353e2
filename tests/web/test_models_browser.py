"""The model versions page in a real browser against a running daemon on `production`: an integrator
makes the candidate production with a click, the daemon swaps it in and the page says so, then rolls
back; the page passes axe and reads at 800×480 and at desk size, live and after a reload."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from edge_inspect.http.auth import hash_password
from edge_inspect.modelstore import ModelStore

from ..modelstore.helpers import other_version
from ..support.browser import AXE, CHROMIUM, SHOTS, audit, start_daemon
from ..support.stations import free_port, write_station

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian package chromium)")
USERS = [{"name": "integrator", "role": "integrator", "password_hash": hash_password("integrator")}]


@pytest.fixture
def daemon(tmp_path, tiny_bundle):
    store = ModelStore(tmp_path / "data" / "models")
    a = store.add(tiny_bundle, "commissioning", alias="production").version.id
    b = store.add(other_version(tiny_bundle, tmp_path / "b", "b"), "qa", parent=a, alias="candidate").version.id
    port = free_port()
    config = write_station(tmp_path, Path("production"), model={"max_new_tokens": 2},
                           plc={"enabled": False}, web={"enabled": True, "port": port, "users": USERS})  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    proc = start_daemon(config, base)
    yield {"base": base, "a": a, "b": b, "store": store}
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_make_the_candidate_production_and_roll_back_from_the_page(daemon, page):
    base, a, b = daemon["base"], daemon["a"], daemon["b"]
    page.goto(base + "/login?next=/setup/models")
    page.fill("input[name=user]", "integrator")
    page.fill("input[name=password]", "integrator")
    page.click("button[type=submit]")
    page.wait_for_url(base + "/setup/models")
    page.wait_for_selector(f"tr[data-version='{b}'] button.promote")
    assert page.inner_text("#follow").startswith(f"Runs {a[:12]}, following production")
    page.on("dialog", lambda dialog: dialog.accept())
    page.click(f"tr[data-version='{b}'] button.promote")
    page.wait_for_function(f"document.getElementById('follow').textContent.startsWith('Runs {b[:12]}')", timeout=30_000)
    assert "production is now" in page.inner_text("#model-result")  # both confirms accepted: ungated, forced
    assert "without a passing gate" in page.inner_text("#model-result")
    page.set_viewport_size({"width": 800, "height": 480})
    page.screenshot(path=str(SHOTS / "setup_models_800x480.png"), full_page=True)
    page.reload()  # what the page shows after a reload is what it showed live
    page.wait_for_function(f"document.getElementById('follow').textContent.startsWith('Runs {b[:12]}')")
    assert f"{b[:12]} (running)" in page.inner_text(f"tr[data-version='{b}']")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")  # no sideways scroll
    # nor inside the versions table's wrapper: every column and button in view at 800 px
    assert page.evaluate(
        "(() => { const t = document.getElementById('models'); return t.offsetWidth <= t.parentElement.clientWidth + 1; })()"
    )
    if AXE.is_file():
        bad = [v for v in audit(page) if v["impact"] in ("serious", "critical") or v["id"] == "color-contrast"]
        assert not bad, bad
    page.set_viewport_size({"width": 1920, "height": 1080})
    page.click("#model-rollback")
    page.wait_for_function(f"document.getElementById('follow').textContent.startsWith('Runs {a[:12]}')", timeout=30_000)
    page.screenshot(path=str(SHOTS / "setup_models_1920.png"), full_page=True)
    history = page.inner_text("#model-history tbody")
    assert "rollback" in history and "promote" in history
    assert daemon["store"].aliases()["production"] == a
