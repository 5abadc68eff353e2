"""The shadow on the model versions page, in a real browser against a running daemon (`edge-inspect
run`) whose interval trigger inspects by itself: an integrator starts a shadow of the candidate (the
demo student with its yes/no answers swapped) for 4 parts, watches it run and end by itself, reads the
agreement per check, follows a disagreement into review; then starts another and stops it. The page
passes axe and reads at 800×480 and at desk size, live and after a reload."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from edge_inspect.http.auth import hash_password

from ..support.browser import AXE, CHROMIUM, SHOTS, audit, start_daemon
from ..support.shadow_bundles import store_with_candidate
from ..support.stations import free_port, write_station

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian package chromium)")
USERS = [{"name": "integrator", "role": "integrator", "password_hash": hash_password("integrator")}]
RECIPE = [{"number": 1, "name": "plate", "checks": [
    {"name": "surface", "kind": "point", "prompt": "Point to any surface defects.", "max": 0},
    {"name": "label", "kind": "qa", "question": "Is the label present?", "expect": "yes"}]}]  # fmt: skip


@pytest.fixture
def daemon(tmp_path):
    _, production, candidate = store_with_candidate(tmp_path / "data", tmp_path / "candidate")
    port = free_port()
    config = write_station(
        tmp_path, Path("production"), model={"max_new_tokens": 24}, recipes=RECIPE, plc={"enabled": False},
        camera={"source": "synthetic", "synthetic": {"seed": 3, "defect_rate": 0.0}},
        triggers={"plc": False, "recipe": 1, "interval_s": 0.4}, storage={"save_pass_every": 0},
        web={"enabled": True, "port": port, "users": USERS},
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    proc = start_daemon(config, base)
    yield {"base": base, "candidate": candidate, "production": production}
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def _state(page) -> str:
    return page.inner_text("#shadow-state")


def test_start_a_shadow_watch_it_end_by_itself_and_stop_another(daemon, page):
    base, candidate = daemon["base"], daemon["candidate"]
    page.goto(base + "/login?next=/setup/models")
    page.fill("input[name=user]", "integrator")
    page.fill("input[name=password]", "integrator")
    page.click("button[type=submit]")
    page.wait_for_url(base + "/setup/models")
    page.wait_for_function("document.getElementById('shadow-state').textContent.startsWith('Shadow off. No version')")
    page.fill("#shadow-parts", "4")
    page.fill("#shadow-hours", "1")
    page.set_viewport_size({"width": 800, "height": 480})
    page.click("#shadow-start")
    page.wait_for_function(
        "document.getElementById('shadow-state').textContent.startsWith('Shadow running')", timeout=60_000
    )
    assert f"Shadow running: {candidate[:12]} judges live frames (SCHED_IDLE)" in _state(page)
    page.screenshot(path=str(SHOTS / "shadow_running_800x480.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")  # no sideways scroll
    page.wait_for_function(
        "document.getElementById('shadow-state').textContent.includes('4 parts shadowed')", timeout=90_000
    )
    assert "Shadow off. Last run 1" in _state(page) and "It shadowed 4 parts" in _state(page)
    assert "agreement 0.0 %" in _state(page)  # every part: the candidate answers the label the other way
    page.wait_for_selector("#shadow-checks tbody tr")
    rows = page.inner_text("#shadow-checks tbody")
    assert "surface\t4\t4\t100.0 %" in rows and "label\t4\t0\t0.0 %" in rows
    assert "Cost: the shadow takes" in page.inner_text("#shadow-cost")
    links = page.locator("#shadow-disagreements tbody a")
    assert links.count() == 4
    first = links.first.get_attribute("href")
    page.screenshot(path=str(SHOTS / "shadow_ended_800x480.png"), full_page=True)
    if AXE.is_file():
        bad = [v for v in audit(page) if v["impact"] in ("serious", "critical") or v["id"] == "color-contrast"]
        assert not bad, bad
    page.set_viewport_size({"width": 1920, "height": 1080})
    page.reload()  # what the page showed live it shows after a reload
    page.wait_for_function("document.getElementById('shadow-state').textContent.includes('4 parts shadowed')")
    page.wait_for_selector("#shadow-disagreements tbody a")
    assert page.locator("#shadow-disagreements tbody a").first.get_attribute("href") == first
    page.screenshot(path=str(SHOTS / "shadow_ended_1920.png"), full_page=True)
    page.click(f"#shadow-disagreements a[href='{first}']")  # into review: sampled, with its frame
    page.wait_for_url(base + first)
    assert "shadow_disagreement: verdict, label" in page.inner_text("main")
    inspection = httpx.get(
        base + "/api/inspections/" + first.rsplit("/", 1)[1], auth=("integrator", "integrator")
    ).json()
    assert inspection["review_reason"] == "shadow_disagreement: verdict, label" and inspection["image_path"]

    page.goto(base + "/setup/models")
    page.fill("#shadow-parts", "0")
    page.click("#shadow-start")
    page.wait_for_function(
        "document.getElementById('shadow-state').textContent.startsWith('Shadow running')", timeout=60_000
    )
    page.click("#shadow-stop")
    page.wait_for_function("document.getElementById('shadow-state').textContent.includes('stopped by integrator')")
    assert "Stopped: stopped by integrator." in page.inner_text("#shadow-result")
    page.screenshot(path=str(SHOTS / "shadow_stopped_1920.png"), full_page=True)
