"""The HMI and QA review in a real browser: Playwright driving Debian's chromium, headless.

Screenshots go to artifacts/screenshots/ (kept by CI as test artifacts)."""

import signal
import time
from pathlib import Path

import cv2
import httpx
import pytest

from ..support.browser import CHROMIUM, SHOTS, trigger
from ..support.browser import login as _login
from ..support.browser import start_daemon as _start

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian package chromium)")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")


def test_hmi_shows_each_new_verdict(daemon, page):
    page.goto(daemon["base"] + "/")
    page.wait_for_selector('body[data-live="1"]')  # the event stream is connected
    latencies = []
    for _ in range(3):
        result = trigger(daemon["base"])
        done = time.monotonic()
        page.wait_for_selector(f'#verdict[data-result-id="{result["result_id"]}"]', timeout=20000)
        latencies.append(time.monotonic() - done)
        assert page.inner_text("#verdict") in ("FAIL", "PASS", "ERROR")
        page.wait_for_function(
            "document.getElementById('frame').complete && document.getElementById('frame').naturalWidth > 0",
            timeout=20000,
        )
        assert f"id={result['result_id']}" in page.get_attribute("#frame", "src")
    assert page.locator("#checks li").count() == 2
    page.screenshot(path=str(SHOTS / "hmi_verdict.png"))
    print(
        f"HMI update latency after the inspection finished: max {max(latencies) * 1000:.0f} ms, "
        f"all {[round(x * 1000) for x in latencies]} ms"
    )
    page.goto(daemon["base"] + "/?lang=ja")
    page.wait_for_selector("text=アラーム")
    page.screenshot(path=str(SHOTS / "hmi_japanese.png"))


def test_alarm_appears_when_the_camera_fails_and_clears_after_ack(daemon, page):
    page.goto(daemon["base"] + "/login")
    page.fill("input[name=user]", "operator")
    page.fill("input[name=password]", "operator")
    page.click("#login-submit")
    page.wait_for_url(daemon["base"] + "/")
    frames, unplugged = daemon["frames"], daemon["tmp"] / "unplugged"
    frames.rename(unplugged)
    alarm = page.locator('#alarms li.alarm[data-code="camera_lost"]')
    alarm.wait_for(timeout=5000)
    assert "active" in alarm.get_attribute("class")
    assert "fault" in page.get_attribute("#light-camera", "class")
    page.screenshot(path=str(SHOTS / "hmi_camera_alarm.png"))
    unplugged.rename(frames)
    page.wait_for_selector('#alarms li.alarm.cleared[data-code="camera_lost"]', timeout=10000)
    assert "fault" not in page.get_attribute("#light-camera", "class")
    page.click('#alarms button.ack[data-code="camera_lost"]')
    alarm.wait_for(state="detached", timeout=5000)
    page.screenshot(path=str(SHOTS / "hmi_alarm_acknowledged.png"))
    page.goto(daemon["base"] + "/alarms")  # the history: raised, cleared, acknowledged by whom
    row = page.locator("#alarm-history tr.closed").first
    text = row.inner_text()
    assert "Camera lost" in text and "operator" in text and text.count(":") >= 4, text


def test_qa_filters_fails_records_a_disposition_and_exports_it(daemon, page):
    ids = [trigger(daemon["base"])["id"] for _ in range(3)]
    page.goto(daemon["base"] + "/login?next=/review")
    page.fill("input[name=user]", "qa")
    page.fill("input[name=password]", "qa")
    page.click("#login-submit")
    page.wait_for_url(daemon["base"] + "/review")
    page.select_option("#f-verdict", "FAIL")
    page.click("#apply-filters")
    page.wait_for_url("**/review?*verdict=FAIL*")
    rows = page.locator("#inspections tr.FAIL")
    assert rows.count() == 3 and page.locator("#inspections tr.PASS").count() == 0
    page.screenshot(path=str(SHOTS / "review_fails.png"), full_page=True)
    for lang in ("en", "ja"):  # every chart label whole: not cut by its bar nor by the card
        page.goto(f"{daemon['base']}/review?verdict=FAIL&lang={lang}")
        cut = page.evaluate("""[...document.querySelectorAll('.bars .label')].filter((l) => {
            const r = l.getBoundingClientRect(), card = l.closest('.card').getBoundingClientRect();
            return l.scrollWidth > l.clientWidth + 1 || r.right > card.right + 0.5 || r.width < 10; })
          .map((l) => l.textContent)""")
        labels = page.locator("#yield-hours .label").all_inner_texts()
        assert labels and not cut, (lang, cut, labels)
        assert any(("0% · 3 parts" if lang == "en" else "0% · 3個") in label for label in labels), labels
    page.goto(daemon["base"] + "/review?verdict=FAIL&lang=en")
    rows.first.locator("a.open").click()
    page.wait_for_selector("#disposition-form")
    opened = int(page.url.split("?")[0].rsplit("/", 1)[1])
    assert opened == max(ids)
    page.check("input[value=false_reject]")
    page.fill("textarea[name=comment]", "label present, model unsure")
    page.click("#save-disposition")
    page.wait_for_selector("#audit tr:nth-child(2)")
    audit = page.inner_text("#audit")
    assert "qa" in audit and "disposition" in audit and "— → False reject" in audit and "false_reject" not in audit
    assert "label present, model unsure" in page.inner_text("#current-disposition")
    page.screenshot(path=str(SHOTS / "review_detail_disposition.png"), full_page=True)
    page.goto(daemon["base"] + "/review?verdict=FAIL")
    with page.expect_download() as download:
        page.click("#export-csv")
    text = Path(download.value.path()).read_text()
    line = next(row for row in text.splitlines() if row.startswith(f"{opened},"))
    assert "false_reject" in line and "qa" in line and "label present, model unsure" in line
    assert "100%" in page.inner_text("#false-reject-rate")


def test_sigterm_with_three_hmis_open_stops_gracefully_within_5_s(daemon):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
        )
        pages = [browser.new_context().new_page() for _ in range(3)]
        for page in pages:
            page.goto(daemon["base"] + "/")
            page.wait_for_selector('body[data-live="1"]')
        trigger(daemon["base"])
        proc = daemon["proc"]
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0]
        took = time.monotonic() - started
        pages[0].wait_for_selector("#conn-lost:not([hidden])", timeout=10000)  # the HMIs say so
        browser.close()
    print(f"SIGTERM with 3 HMIs open: exit after {took:.2f} s")
    assert proc.returncode == 0 and "[stopped]" in out, out
    assert took <= 5.0, took


def test_hmi_says_connection_lost_within_3_s_and_recovers_by_itself(daemon, page):
    page.goto(daemon["base"] + "/")
    page.wait_for_selector('body[data-live="1"]')
    trigger(daemon["base"])
    page.wait_for_function("document.getElementById('age').textContent.includes('s')")
    proc = daemon["proc"]
    proc.kill()  # the station dies (kill -9): no goodbye on the event stream
    killed = time.monotonic()
    page.wait_for_selector("#conn-lost:not([hidden])", timeout=6000)
    noticed = time.monotonic() - killed
    assert "unknown" in page.get_attribute("#light-camera", "class")
    page.screenshot(path=str(SHOTS / "hmi_connection_lost.png"))
    proc.wait()
    daemon["proc"] = _start(daemon["config"], daemon["base"])
    page.wait_for_selector("#conn-lost[hidden]", state="attached", timeout=30000)  # EventSource reconnects itself
    assert "unknown" not in page.get_attribute("#light-camera", "class")
    print(f"connection lost shown {noticed:.2f} s after the kill")
    assert noticed <= 3.0  # 2 s of silence, checked every 0.25 s


def test_sixty_alarm_acknowledge_presses_of_80_to_600_ms_all_register(daemon, page):
    import random

    _login(page, daemon["base"], "operator")
    daemon["frames"].rename(daemon["tmp"] / "unplugged")
    button = page.locator('#alarms button.ack[data-code="camera_lost"]')
    button.wait_for(timeout=10000)
    sent = []

    def answer(route):  # count the presses; keep the alarm unacknowledged so the button stays
        sent.append(route.request.url)
        route.fulfill(status=503, body="{}", content_type="application/json")

    page.route("**/api/alarms/*/ack", answer)
    rng = random.Random(7)
    for _ in range(60):
        box = button.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.down()
        page.wait_for_timeout(rng.randint(80, 600))  # a finger held on a touch panel
        page.mouse.up()
        page.wait_for_function("!document.querySelector('#alarms button.ack').disabled")
    assert len(sent) == 60, len(sent)


def test_error_without_a_frame_shows_the_reason_not_an_old_image(daemon, page):
    trigger(daemon["base"])
    page.goto(daemon["base"] + "/")
    page.wait_for_selector('body[data-live="1"]')
    daemon["frames"].rename(daemon["tmp"] / "unplugged")
    page.wait_for_selector('#alarms li.alarm[data-code="camera_lost"]', timeout=10000)
    result = trigger(daemon["base"])
    assert result["verdict"] == "ERROR"
    page.wait_for_selector(f'#verdict[data-result-id="{result["result_id"]}"]', timeout=20000)
    assert page.is_visible("#no-frame") and not page.is_visible("#frame")
    assert "camera" in page.inner_text("#no-frame-reason")
    page.screenshot(path=str(SHOTS / "hmi_error_no_frame.png"))


def test_inspect_now_only_for_roles_that_may_and_busy_while_it_runs(daemon, page):
    page.goto(daemon["base"] + "/")
    assert page.locator("#trigger").count() == 0  # nobody logged in
    _login(page, daemon["base"], "qa")
    assert page.locator("#trigger").count() == 0  # qa may not trigger
    page.click("form[action='/logout'] button")
    _login(page, daemon["base"], "operator")
    page.route("**/api/trigger", lambda route: (time.sleep(1.0), route.continue_()))
    page.click("#trigger")
    page.wait_for_selector("#trigger:disabled", timeout=2000)
    page.wait_for_selector("#trigger:enabled", timeout=30000)
    assert "plc" in page.inner_text("#light-plc").lower() and "off" in page.get_attribute("#light-plc", "class")


def test_qa_keyboard_review_through_the_unreviewed_queue_and_the_audit_page(daemon, page):
    ids = [trigger(daemon["base"])["id"] for _ in range(3)]  # every part FAILs in this recipe
    _login(page, daemon["base"], "qa")
    page.goto(daemon["base"] + "/review")
    page.click("#queue")
    page.wait_for_url("**/review?verdict=FAIL&disposition=none")
    assert page.locator("#inspections tr.FAIL").count() == 3
    page.locator("#inspections a.open").first.click()  # the newest
    page.wait_for_selector("#disposition-form")
    assert int(page.url.split("?")[0].rsplit("/", 1)[1]) == ids[-1]
    page.keyboard.press("2")  # false reject
    page.keyboard.press("c")
    page.keyboard.type("label fine")
    page.keyboard.press("Escape")
    page.keyboard.press("s")  # save and on to the next unreviewed one
    page.wait_for_url(f"**/review/{ids[-2]}?*")
    assert "disposition=none" in page.url
    page.keyboard.press("1")
    page.keyboard.press("s")
    page.wait_for_url(f"**/review/{ids[-3]}?*")
    page.keyboard.press("ArrowLeft")  # back up the list: the second is reviewed, not in the queue any more
    page.goto(f"{daemon['base']}/review/{ids[-1]}")
    assert page.input_value("textarea[name=comment]") == "label fine"  # kept for the next change
    assert page.is_checked("input[value=false_reject]")
    page.goto(daemon["base"] + "/review?disposition=none&verdict=FAIL")
    assert page.locator("#inspections tr.FAIL").count() == 1
    page.goto(daemon["base"] + "/review?disposition=false_reject")
    assert page.locator("#inspections tr").count() == 2  # header + one
    page.goto(daemon["base"] + "/audit")
    text = page.inner_text("#audit-list")
    assert "software trigger" in text and "disposition" in text and "— → False reject" in text
    assert "recipe: 1, result: " in text and "result_id" not in text  # details in words, not field names
    page.goto(daemon["base"] + "/audit?lang=ja")
    text = page.inner_text("#audit-list")
    assert "— → 過検出" in text and "レシピ: 1, 結果番号: " in text and "手動トリガ" in text
    page.select_option("#f-action", "trigger")
    page.click("form.filters button")
    page.wait_for_url("**/audit?action=trigger")
    assert page.locator("#audit-list tr").count() == 4  # header + three triggers
    page.screenshot(path=str(SHOTS / "audit_triggers.png"), full_page=True)


def test_a_reviewer_corrects_the_models_points_for_retraining(daemon, page):
    from edge_inspect.inspection.checks import CheckOutcome
    from edge_inspect.logbook import InspectionRecord, Store
    from edge_inspect.verdict import Verdict

    store = Store(daemon["tmp"] / "data", save_pass_every=1)
    outcomes = [
        CheckOutcome("surface", "point", "fail", "found 2, allowed 0..0", [(0.25, 0.25), (0.75, 0.75)], 2),
        CheckOutcome("label", "qa", "pass", "answered yes (p_yes 0.99, margin 0.98), expected yes"),
    ]
    frame = cv2.imread(str(next(daemon["frames"].iterdir())))
    row_id = store.record(
        InspectionRecord(
            77, "s", 1, "plate", "P77", "plc", Verdict.FAIL, "", outcomes, {}, "m" * 64, "c" * 64, [None, None]
        ),
        frame,
    )
    store.close()
    _login(page, daemon["base"], "qa")
    page.goto(f"{daemon['base']}/review/{row_id}")
    marks = page.locator("#correct-marks")
    page.wait_for_function(
        "document.getElementById('correct-image').complete && document.getElementById('correct-image').naturalWidth > 0"
    )
    marks.scroll_into_view_if_needed()
    box = marks.bounding_box()
    click = lambda x, y: page.mouse.click(box["x"] + x * box["width"], box["y"] + y * box["height"])  # noqa: E731
    click(0.751, 0.749)  # the model's second point was not a defect: remove it
    click(0.5, 0.2)  # a missed one: add it
    state = (
        marks.get_attribute("data-added"),
        marks.get_attribute("data-removed"),
        box,
        page.evaluate("document.getElementById('correct-check').value"),
        page.inner_html("#correct-marks"),
    )
    assert state[:2] == ("1", "1"), state
    page.click("#save-corrections")
    page.wait_for_selector("#corrections-list")
    assert page.locator("#corrections-list tr").count() == 3  # header + add + remove
    page.screenshot(path=str(SHOTS / "review_corrections.png"), full_page=True)
    records = httpx.get(daemon["base"] + "/api/corrections.json").json()
    record = next(r for r in records if r["id"] == row_id)
    surface = record["checks"][0]
    assert surface["model_points"] == [[0.25, 0.25], [0.75, 0.75]]
    assert surface["corrected_points"][0] == [0.25, 0.25] and len(surface["corrected_points"]) == 2
    assert abs(surface["corrected_points"][1][0] - 0.5) < 0.01 and abs(surface["corrected_points"][1][1] - 0.2) < 0.01
    assert record["image_path"] and record["checks"][1]["kind"] == "qa"
    text = httpx.get(daemon["base"] + "/api/corrections.csv").text
    assert f"{row_id}," in text and "surface" in text
    page.goto(daemon["base"] + "/audit?action=correction")
    assert "qa" in page.inner_text("#audit-list")
