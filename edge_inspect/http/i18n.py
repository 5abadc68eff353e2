"""Labels in English and Japanese, translation of check reasons and alarm messages, and the choice
of language: a person's choice on the page (kept in a cookie) > the station's pinned language >
the browser's Accept-Language > English."""

from __future__ import annotations

import re

LABELS = {
    "en": {
        "station": "Station", "verdict": "Verdict", "waiting": "Waiting for a part", "PASS": "PASS", "FAIL": "FAIL",
        "ERROR": "ERROR", "checks": "Checks", "shift": "This shift", "total": "Total", "yield": "Yield",
        "camera": "Camera", "plc": "PLC", "model": "Model", "disk": "Disk", "alarms": "Alarms",
        "acknowledge": "Acknowledge", "trigger": "Inspect now", "review": "QA review", "hmi": "HMI",
        "login": "Log in", "logout": "Log out", "user": "User", "password": "Password", "no_alarms": "No alarms",
        "filter": "Filter", "from": "From", "to": "To", "recipe": "Recipe", "check": "Failed check",
        "part_id": "Part ID", "export_csv": "Export CSV", "disposition": "Disposition", "comment": "Comment",
        "save": "Save", "audit": "Audit trail", "timings": "Timings (ms)", "answer": "Model answer",
        "confirmed_defect": "Confirmed defect", "false_reject": "False reject", "missed_defect": "Missed defect",
        "pareto": "Failures by check", "yield_per_hour": "Yield per hour", "agreement": "Reviewer agreement",
        "false_reject_rate": "False reject rate", "escape_rate": "Escape rate", "any": "any", "image": "Image",
        "overlay": "Overlay", "time": "Time", "defects": "Defects", "reviewer": "Reviewer", "prev": "Previous",
        "next": "Next", "hashes": "Model / config", "camera_lost": "Camera lost", "plc_lost": "PLC link lost",
        "disk_full": "Disk full", "missed_trigger": "Missed trigger", "log_error": "Log write failed",
        "disk_low": "Disk almost full: images not kept", "model_error": "Model gave no usable answer",
        "model_fallback": "TensorRT refused: running on ONNX Runtime", "plc_absent": "No PLC polling",
        "internal": "Internal error", "connection_lost": "Connection to the station lost — reconnecting",
        "last_result": "Last result", "seconds_ago": "s ago", "recipe_active": "Recipe", "cycle": "Cycle",
        "off": "off", "busy": "Inspecting…", "no_frame": "No image", "acknowledged_by": "acknowledged by",
        "since": "since", "st_ok": "ok", "st_lost": "lost", "st_off": "off", "st_fallback": "fallback",
        "st_error": "error", "st_low": "low", "st_full": "full", "st_absent": "no PLC", "st_starting": "starting",
        "st_closed": "closed", "language": "Language",
        "unreviewed": "not reviewed", "queue": "Review queue (unreviewed FAILs)", "action": "Action",
        "act_disposition": "disposition", "act_trigger": "software trigger", "act_ack_alarm": "alarm acknowledged",
        "act_retention": "retention", "act_config": "config change",
        "keys_help": "keys: ← → previous/next · 1 2 3 disposition · c comment · s save and next",
        "alarm_history": "Alarm history", "alarm": "Alarm", "raised": "Raised", "cleared": "Cleared",
        "correct_check": "Correct the points of", "corrections": "Corrections", "save_corrections": "Save corrections",
        "correct_help": "Click where a defect was missed to add a point; click a point to remove it.",
        "corr_add": "added", "corr_remove": "removed", "act_correction": "point correction",
    },
    "ja": {
        "station": "ステーション", "verdict": "判定", "waiting": "ワーク待ち", "PASS": "合格", "FAIL": "不合格",
        "ERROR": "エラー", "checks": "検査項目", "shift": "シフト", "total": "合計", "yield": "良品率",
        "camera": "カメラ", "plc": "PLC", "model": "モデル", "disk": "ディスク", "alarms": "アラーム",
        "acknowledge": "確認", "trigger": "今すぐ検査", "review": "品質レビュー", "hmi": "HMI",
        "login": "ログイン", "logout": "ログアウト", "user": "ユーザー", "password": "パスワード",
        "no_alarms": "アラームなし", "filter": "絞り込み", "from": "開始", "to": "終了", "recipe": "レシピ",
        "check": "不合格項目", "part_id": "部品ID", "export_csv": "CSV出力", "disposition": "処置",
        "comment": "コメント", "save": "保存", "audit": "監査履歴", "timings": "処理時間 (ms)",
        "answer": "モデルの回答", "confirmed_defect": "不良確定", "false_reject": "過検出",
        "missed_defect": "見逃し", "pareto": "項目別不合格", "yield_per_hour": "時間別良品率",
        "agreement": "レビューとの一致", "false_reject_rate": "過検出率", "escape_rate": "流出率", "any": "すべて",
        "image": "画像", "overlay": "検出表示", "time": "時刻", "defects": "欠陥数", "reviewer": "レビュー担当",
        "prev": "前へ", "next": "次へ", "hashes": "モデル / 設定", "camera_lost": "カメラ喪失",
        "plc_lost": "PLC通信断", "disk_full": "ディスク容量不足", "missed_trigger": "トリガ取りこぼし",
        "log_error": "ログ書込み失敗", "disk_low": "ディスク残量わずか: 画像は保存されません",
        "model_error": "モデルの回答が読めません", "model_fallback": "TensorRT不可: ONNX Runtimeで実行中",
        "plc_absent": "PLCからの通信なし", "internal": "内部エラー", "connection_lost": "ステーションとの接続が切れました — 再接続中",
        "last_result": "最終結果", "seconds_ago": "秒前", "recipe_active": "レシピ", "cycle": "サイクル",
        "off": "オフ", "busy": "検査中…", "no_frame": "画像なし", "acknowledged_by": "確認者", "since": "発生",
        "st_ok": "正常", "st_lost": "喪失", "st_off": "オフ", "st_fallback": "代替実行", "st_error": "エラー",
        "st_low": "残量少", "st_full": "満杯", "st_absent": "PLCなし", "st_starting": "起動中", "st_closed": "停止",
        "language": "言語",
        "unreviewed": "未レビュー", "queue": "レビュー待ち (未レビューの不合格)", "action": "操作",
        "act_disposition": "処置", "act_trigger": "手動トリガ", "act_ack_alarm": "アラーム確認",
        "act_retention": "保存期間による削除", "act_config": "設定変更",
        "keys_help": "キー: ← → 前/次 · 1 2 3 処置 · c コメント · s 保存して次へ",
        "alarm_history": "アラーム履歴", "alarm": "アラーム", "raised": "発生", "cleared": "解除",
        "correct_check": "点を修正する項目", "corrections": "修正", "save_corrections": "修正を保存",
        "correct_help": "見逃した欠陥をクリックして点を追加、点をクリックして削除します。",
        "corr_add": "追加", "corr_remove": "削除", "act_correction": "点の修正",
    },
}


def pick_language(configured: str | None, accept_language: str | None, override: str | None = None,
                  cookie: str | None = None) -> str:
    for candidate in (override, cookie, configured):
        if candidate in LABELS:
            return candidate
    for part in (accept_language or "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LABELS:
            return code
    return "en"


# Check reasons and alarm messages are made in English by checks.py and station.py; these patterns
# give the Japanese for each shape (anything else is shown as it is).
_JA_PATTERNS: list[tuple[re.Pattern, str]] = [
    (re.compile(r"^counted (\d+), expected (\d+)$"), r"\1個 (期待値 \2)"),
    (re.compile(r"^found (\d+), allowed (\d+)\.\.(\d+)$"), r"\1個検出 (許容 \2〜\3)"),
    (re.compile(r"^answered (yes|no) \(p_yes ([\d.]+), margin ([\d.]+)\), expected (yes|no)$"),
     r"回答 \1 (p_yes \2, マージン \3), 期待 \4"),
    (re.compile(r"^unreadable model answer: (.*)$"), r"モデルの回答が読めません: \1"),
    (re.compile(r"^model failed: (.*)$"), r"モデル失敗: \1"),
    (re.compile(r"^camera: (.*)$"), r"カメラ: \1"),
    (re.compile(r"^recipe (\d+) is not configured$"), r"レシピ \1 は設定されていません"),
    (re.compile(r"^trigger while busy \((\d+) so far\)$"), r"検査中のトリガ (累計 \1)"),
    (re.compile(r"^(.*): disk almost full; images are not kept$"), r"\1: ディスク残量わずか、画像は保存されません"),
]
_JA_WORDS = {"yes": "はい", "no": "いいえ"}


def translate(text: str, lang: str) -> str:
    """A reason or alarm message in ``lang`` (English text is the source)."""
    if lang != "ja" or not text:
        return text
    if text.startswith("uncertain: "):
        return "判定不確か: " + translate(text.removeprefix("uncertain: "), lang)
    for pattern, replacement in _JA_PATTERNS:
        if pattern.match(text):
            out = pattern.sub(replacement, text)
            for en, ja in _JA_WORDS.items():
                out = re.sub(rf"\b{en}\b", ja, out)
            return out
    return text
