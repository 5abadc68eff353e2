"""The setup pages in a real browser (Playwright driving Debian's chromium) against a running daemon
with the demo model: draw an ROI with the mouse, save, see it applied to the next inspection, roll
the config back; try on an uploaded image; the I/O monitor showing a trigger written by mbpoll."""

from __future__ import annotations

import difflib
import shutil
import signal
import subprocess

import cv2
import httpx
import pytest
import yaml

from edge_inspect.http.auth import hash_password
from edge_inspect.sim import render_part

from ..support.browser import CHROMIUM, SHOTS
from ..support.browser import start_daemon as _start
from ..support.paths import DEMO_STUDENT
from ..support.stations import free_port, write_station

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian package chromium)")
USERS = [{"name": n, "role": n, "password_hash": hash_password(n)} for n in ("operator", "integrator")]


@pytest.fixture
def daemon(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "part.png"), render_part(5, 320, 240).image)  # one part: counts comparable
    port, plc_port = free_port(), free_port()
    config = write_station(tmp_path, DEMO_STUDENT, model={"bundle": str(DEMO_STUDENT), "max_new_tokens": 96},
                           plc={"enabled": True, "port": plc_port, "timeout_s": 0},
                           camera={"source": "folder", "path": str(frames)},
                           web={"enabled": True, "port": port, "users": USERS})  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    proc = _start(config, base)
    yield {"base": base, "config": config, "plc_port": plc_port, "tmp": tmp_path}
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def login(page, base: str) -> None:
    page.goto(base + "/login?next=/setup")
    page.fill("input[name=user]", "integrator")
    page.fill("input[name=password]", "integrator")
    page.click("button[type=submit]")
    page.wait_for_url(base + "/setup")


def trigger(base: str) -> dict:
    auth = ("integrator", "integrator")
    csrf = httpx.get(base + "/api/session", auth=auth, timeout=30).json()["csrf"]
    r = httpx.post(base + "/api/trigger", json={}, auth=auth, headers={"X-CSRF-Token": csrf}, timeout=60)
    assert r.status_code == 200, r.text
    return httpx.get(f"{base}/api/inspections/{r.json()['id']}", auth=auth, timeout=30).json()


def test_draw_an_roi_save_it_see_it_applied_and_roll_back(daemon, page):
    base = daemon["base"]
    original = daemon["config"].read_text()
    before = trigger(base)
    screws_before = next(c for c in before["checks"] if c["name"] == "screws")["counted"]
    assert screws_before > 0
    login(page, base)
    page.wait_for_selector("#c1-draw")
    page.wait_for_function("document.getElementById('frame').naturalWidth > 0")
    page.click("#c1-draw")  # the screws check: an ROI in the top-left corner, where no screw is
    box = page.locator("#frame").bounding_box()
    for fx, fy in ((0.01, 0.01), (0.12, 0.01), (0.01, 0.12)):
        page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
    page.click("#draw-done")
    assert page.inner_text("#c1-roi") == "ROI: 3 corners"
    # drag a corner with the mouse: it follows
    page.locator("#frame").scroll_into_view_if_needed()
    box = page.locator("#frame").bounding_box()
    corner = page.locator("circle.corner[data-idx='1'][data-corner='1']").bounding_box()
    page.mouse.move(corner["x"] + corner["width"] / 2, corner["y"] + corner["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + 0.15 * box["width"], box["y"] + 0.02 * box["height"], steps=5)
    page.mouse.up()
    page.fill("#comment", "screws only in the corner")
    page.click("#save")
    page.wait_for_selector("#save-result >> text=Saved as version 2")
    assert "Applied now: recipes" in page.inner_text("#save-result")
    page.screenshot(path=str(SHOTS / "setup_roi.png"))
    saved = daemon["config"].read_text()
    assert "roi:" in saved
    after = trigger(base)  # the next inspection runs with the ROI, without a restart
    screws = next(c for c in after["checks"] if c["name"] == "screws")
    assert screws["counted"] == 0 and screws["status"] == "fail"
    assert after["recipe_sha256"] != before["recipe_sha256"] and after["config_sha256"] != before["config_sha256"]
    roi = yaml.safe_load(saved)["recipes"][0]["checks"][1]["roi"]
    assert any(0.14 <= x <= 0.16 for x, _ in roi), roi  # the dragged corner
    changed = [line for line in difflib.unified_diff(original.splitlines(), saved.splitlines(), lineterm="", n=0)
               if line[:1] in "+-" and not line.startswith(("+++", "---"))]  # fmt: skip
    assert len(changed) == 1 and changed[0].startswith("+    roi: [["), changed  # that check's ROI, nothing else

    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(base + "/setup/config")
    page.wait_for_selector("#versions tbody tr[data-version='1'] .rollback")
    assert page.locator("#versions tbody tr").count() == 2
    page.click("#versions tbody tr[data-version='2'] .show-diff")
    page.wait_for_selector("#diff >> text=roi:")
    page.click("#versions tbody tr[data-version='1'] .rollback")
    page.wait_for_selector("#save-result >> text=Saved as version 3")
    page.screenshot(path=str(SHOTS / "setup_versions.png"))
    assert daemon["config"].read_text() == original
    back = trigger(base)
    assert next(c for c in back["checks"] if c["name"] == "screws")["counted"] == screws_before
    assert back["recipe_sha256"] == before["recipe_sha256"]


@pytest.mark.skipif(shutil.which("mbpoll") is None, reason="mbpoll is not installed (Debian package mbpoll)")
def test_try_an_upload_and_watch_mbpoll_on_the_io_monitor(daemon, page):
    base = daemon["base"]
    image = daemon["tmp"] / "upload.png"
    cv2.imwrite(str(image), render_part(7, 320, 240).image)
    login(page, base)
    page.wait_for_selector("#try-upload")
    page.set_input_files("#upload", str(image))
    page.click("#try-upload")
    page.wait_for_selector("#try-verdict", timeout=60000)
    assert page.inner_text("#try-verdict") in ("PASS", "FAIL")
    assert page.locator("#try-checks tr").count() == 4  # header + surface, screws, label
    page.wait_for_function("document.getElementById('try-overlay').naturalWidth == 320")
    page.screenshot(path=str(SHOTS / "setup_try.png"))
    page.set_viewport_size({"width": 1366, "height": 768})  # a laptop: the try's table and overlay fit its width

    sent = []

    def long_answer(route):  # the real try's result, with the longest answer a model may give: no spaces
        sent.append((route.request.url, route.request.headers.get("content-type")))
        body = route.fetch().json()
        body["checks"][0]["answer"] = "<points" + "x1=0.123,y1=0.456;" * 20 + ">"
        route.fulfill(json=body)

    page.route("**/api/setup/try*", long_answer)
    page.click("#try-upload")
    page.wait_for_function(
        "document.getElementById('try-checks') && document.getElementById('try-checks').innerText.includes('x1=0.123')"
    )
    assert "/api/setup/try?recipe=" in sent[0][0] and sent[0][1] == "image/png", sent  # the file as the body
    widths = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
    page.screenshot(path=str(SHOTS / "setup_try_1366.png"), full_page=True)
    assert widths[0] <= widths[1], widths
    auth = ("integrator", "integrator")
    assert httpx.get(base + "/api/inspections", auth=auth).json()["total"] == 0  # a try is not logged

    page.goto(base + "/setup/io")
    page.wait_for_selector("#io-trigger_id")
    port = str(daemon["plc_port"])

    def mbpoll(*args: str) -> None:
        subprocess.run(
            ["mbpoll", "-m", "tcp", "-0", "-1", "-q", "-p", port, *args], check=True, capture_output=True, timeout=10
        )

    mbpoll("-t", "4", "-r", "0", "127.0.0.1", "4321")  # trigger_id
    page.wait_for_selector("#io-trigger_id .value >> text=4321")
    mbpoll("-t", "0", "-r", "0", "127.0.0.1", "1")  # trigger
    page.wait_for_selector("#io-trigger .value >> text=1")
    page.wait_for_selector("#io-results_valid .value >> text=1", timeout=60000)
    page.wait_for_selector("#io-result_id .value >> text=4321")
    page.screenshot(path=str(SHOTS / "setup_io.png"))
    # result registers in words: the verdict, the error code's meaning, in each language
    assert page.inner_text("#io-recipe .value") == "0"  # mbpoll wrote no recipe: recipe 0 is not configured
    assert page.inner_text("#io-error_code .value") == "5 · recipe not configured"
    assert page.inner_text("#io-verdict .value") == "3 · ERROR"
    page.goto(base + "/setup/io?lang=ja")
    page.wait_for_selector("#io-error_code .value >> text=5 · レシピ未設定")
    assert page.inner_text("#io-verdict .value") == "3 · エラー"
    assert "6 internal" in page.inner_text("#io-error_code")  # every code listed, none left to look up


def test_setup_pages_pass_axe(daemon, page):
    from ..support.browser import AXE
    from ..support.browser import audit as _audit

    if not AXE.is_file():
        pytest.skip("axe-core is not installed: npm ci --prefix tests/axe")
    login(page, daemon["base"])
    found = {}
    for path, ready in (
        ("/setup", "#c0-draw"),
        ("/setup/io", "#io-ready"),
        ("/setup/config", "#versions tbody tr"),
        ("/setup?lang=ja", "#c0-draw"),
    ):
        page.goto(daemon["base"] + path)
        page.wait_for_selector(ready)
        bad = [v for v in _audit(page) if v["impact"] in ("serious", "critical") or v["id"] == "color-contrast"]
        if bad:
            found[path] = bad
    assert not found, found
