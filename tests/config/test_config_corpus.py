"""A corpus of malformed station files: each is refused with the exact line and key path, in-process
through load_config (fast); a handful go through the CLI to prove exit 2 and one line; fuzzing
proves no input gives anything but ConfigError."""

from __future__ import annotations

import hashlib
import random
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_inspect.config import ConfigError, load_config

from ..support.errors import assert_one_line_error
from ..support.paths import REPO_ROOT
from ..support.plc_harness import fake_bundle

BASE = """\
station:
  name: corpus-station
  language: en
camera:
  source: synthetic
  width: 640
  height: 480
  fps: 30
  stall_timeout_s: 1.5
  reconnect_min_s: 0.5
  reconnect_max_s: 10
  max_frame_age_ms: 500
  frames_after_trigger: 2
  synthetic: {seed: 1, width: 320, height: 240}
model:
  bundle: {bundle}
  providers: cpu
  threads: 0
  max_new_tokens: 96
recipes:
  - number: 1
    name: plate
    checks:
      - name: surface
        kind: point
        prompt: Point to any surface defects.
        min: 0
        max: 0
        roi: [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]]
      - name: screws
        kind: count
        prompt: Point to the screws.
        expected: 4
      - name: label
        kind: qa
        question: Is the label present?
        expect: "yes"
        min_margin: 0.2
triggers:
  plc: true
  interval_s: 0
  recipe: 1
plc:
  enabled: true
  mode: server
  transport: tcp
  host: 127.0.0.1
  port: 5020
  baudrate: 19200
  device_id: 1
  poll_ms: 20
  timeout_s: 5
  response_timeout_s: 0.5
storage:
  dir: data
  save_pass_every: 20
  retention_days: 30
  max_disk_mb: 2048
  min_free_mb: 200
  pending_max: 1000
web:
  enabled: true
  host: 127.0.0.1
  port: 8080
  session_idle_min: 30
  session_max_h: 12
"""

LINE = {key: n for n, key in enumerate(["", *BASE.splitlines()])}  # base line text -> 1-based line number


def line_of(text: str) -> int:
    """Line of a base line, e.g. line_of("  port: 8080") = 64."""
    return LINE[text]


# Every numeric field: (key path, its line in BASE, a value far above any sane bound).
NUMERIC: list[tuple[str, str, str]] = [
    ("camera.width", "  width: 640", "1000000000000"),
    ("camera.height", "  height: 480", "100000"),
    ("camera.fps", "  fps: 30", "100000"),
    ("camera.stall_timeout_s", "  stall_timeout_s: 1.5", "1e9"),
    ("camera.reconnect_min_s", "  reconnect_min_s: 0.5", "1e9"),
    ("camera.reconnect_max_s", "  reconnect_max_s: 10", "1e9"),
    ("camera.max_frame_age_ms", "  max_frame_age_ms: 500", "1e12"),
    ("camera.frames_after_trigger", "  frames_after_trigger: 2", "11"),
    ("model.threads", "  threads: 0", "100000"),
    ("model.max_new_tokens", "  max_new_tokens: 96", "100000"),
    ("recipes.0.number", "  - number: 1", "70000"),
    ("recipes.0.checks.0.min", "        min: 0", "5000"),
    ("recipes.0.checks.0.max", "        max: 0", "5000"),
    ("recipes.0.checks.1.expected", "        expected: 4", "5000"),
    ("recipes.0.checks.2.min_margin", "        min_margin: 0.2", "2"),
    ("triggers.interval_s", "  interval_s: 0", "1e9"),
    ("triggers.recipe", "  recipe: 1", "70000"),
    ("plc.port", "  port: 5020", "70000"),
    ("plc.baudrate", "  baudrate: 19200", "1000000000"),
    ("plc.device_id", "  device_id: 1", "300"),
    ("plc.poll_ms", "  poll_ms: 20", "100000"),
    ("plc.timeout_s", "  timeout_s: 5", "1e9"),
    ("plc.response_timeout_s", "  response_timeout_s: 0.5", "100"),
    ("storage.save_pass_every", "  save_pass_every: 20", "1000000000000"),
    ("storage.retention_days", "  retention_days: 30", "1e9"),
    ("storage.max_disk_mb", "  max_disk_mb: 2048", "1e12"),
    ("storage.min_free_mb", "  min_free_mb: 200", "1e12"),
    ("storage.pending_max", "  pending_max: 1000", "1000000000"),
    ("web.port", "  port: 8080", "70000"),
    ("web.session_idle_min", "  session_idle_min: 30", "1e9"),
    ("web.session_max_h", "  session_max_h: 12", "1e9"),
]
FLOATS = [
    "camera.fps",
    "camera.stall_timeout_s",
    "camera.reconnect_min_s",
    "camera.reconnect_max_s",
    "camera.max_frame_age_ms",
    "recipes.0.checks.2.min_margin",
    "triggers.interval_s",
    "plc.timeout_s",
    "plc.response_timeout_s",
    "storage.retention_days",
    "storage.max_disk_mb",
    "storage.min_free_mb",
    "web.session_idle_min",
    "web.session_max_h",
]


class Case:
    """One malformed file: ``make`` turns BASE (bundle filled in) into the file's bytes, given the folder."""

    def __init__(self, id: str, make: Callable[[str, Path], bytes | str], line: int, key: str, needle: str = ""):
        self.id, self.make, self.line, self.key, self.needle = id, make, line, key, needle


def sub(old: str, new: str) -> Callable[[str, Path], str]:
    def edit(text: str, folder: Path) -> str:
        assert text.count(old) == 1, old
        return text.replace(old, new)

    return edit


def value(base_line: str, new_value: str) -> Callable[[str, Path], str]:
    key = base_line.split(":")[0]
    return sub(base_line + "\n", f"{key}: {new_value}\n")


CASES: list[Case] = []
for key, base_line, big in NUMERIC:
    CASES.append(Case(f"{key} too large", value(base_line, big), line_of(base_line), key, "less than or equal"))
    CASES.append(Case(f"{key} 5000 digits", value(base_line, "9" * 5000), line_of(base_line), key, "5,000 digits"))
for key, base_line, _ in NUMERIC:  # strict types: a boolean is no number, a quoted number is text
    word = "valid number" if key in FLOATS else "valid integer"
    number = base_line.split(":")[1].strip()
    CASES.append(Case(f"{key} true", value(base_line, "true"), line_of(base_line), key, f"{word}, not true"))
    CASES.append(
        Case(f"{key} quoted", value(base_line, f"'{number}'"), line_of(base_line), key, f"not the text '{number}'")
    )
for key in FLOATS:
    base_line = next(b for k, b, _ in NUMERIC if k == key)
    for bad in (".inf", "-.inf", ".nan", "1e999"):
        CASES.append(Case(f"{key} {bad}", value(base_line, bad), line_of(base_line), key, "finite number"))
for key, base_line in [("camera.width", "  width: 640"), ("plc.port", "  port: 5020"), ("web.port", "  port: 8080")]:
    CASES.append(Case(f"{key} .inf", value(base_line, ".inf"), line_of(base_line), key, "valid integer"))

SYN = "  synthetic: {seed: 1, width: 320, height: 240}"
ROI = "        roi: [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]]"
DEEP = "[" * 100 + "]" * 100
BOMB = "".join(f"  l{i}: &l{i} [" + ", ".join([f"*l{i - 1}" if i else "x"] * 9) + "]\n" for i in range(9))


def _bytes_at(old: str, new: bytes) -> Callable[[str, Path], bytes]:
    def edit(text: str, folder: Path) -> bytes:
        return text.encode().replace(old.encode(), new)

    return edit


def _in_folder(template: str, old: str) -> Callable[[str, Path], str]:
    """Replace ``old`` with ``template`` formatted with the file's folder (for paths that must not exist)."""

    def edit(text: str, folder: Path) -> str:
        return text.replace(old, template.format(folder=folder))

    return edit


def _file_in_folder(old: str, new: str, make: str) -> Callable[[str, Path], str]:
    def edit(text: str, folder: Path) -> str:
        (folder / make).write_text("not a folder")
        return text.replace(old, new.format(folder=folder))

    return edit


CASES += [
    # duplicate keys: PyYAML would keep the last silently
    Case("duplicate section", lambda t, f: t + "camera:\n  source: synthetic\n", 67, "camera", "lines 4 and 67"),
    Case(
        "duplicate nested key",
        sub("  height: 480\n", "  height: 480\n  width: 800\n"),
        8,
        "camera.width",
        "lines 6 and 8",
    ),
    Case(
        "duplicate check key",
        sub("        max: 0\n", "        max: 0\n        max: 3\n"),
        29,
        "recipes.0.checks.0.max",
        "lines 28 and 29",
    ),
    Case(
        "duplicate flow key",
        sub(SYN, "  synthetic: {seed: 1, seed: 2}"),
        14,
        "camera.synthetic.seed",
        "lines 14 and 14",
    ),
    Case(
        "duplicate key, other spelling",
        sub("  port: 8080\n", "  port: 8080\n  'port': 8081\n"),
        65,
        "web.port",
        "lines 64 and 65",
    ),
    # bytes that are not UTF-8, control characters
    Case(
        "latin-1 byte in a value",
        _bytes_at("corpus-station", b"corpus-stati\xf3n"),
        2,
        "station.name",
        f"byte 0xf3 at offset {BASE.index('corpus-station') + 12}",
    ),
    Case(
        "invalid byte in a comment",
        _bytes_at("  pending_max: 1000\n", b"  pending_max: 1000  # \xff\xfe\n"),
        60,
        "storage.pending_max",
        "byte 0xff",
    ),
    Case("utf-16 file", lambda t, f: t.encode("utf-16"), 1, "(top)", "byte 0xff at offset 0"),
    Case(
        "truncated utf-8 sequence",
        _bytes_at("  language: en", b"  language: \xe3\x81"),
        3,
        "station.language",
        "not UTF-8",
    ),
    Case("bell character", _bytes_at("name: plate", b"name: pl\x07ate"), 22, "recipes.0.name", "U+0007"),
    Case(
        "NUL byte",
        _bytes_at("  host: 127.0.0.1\n  port: 5020", b"  host: 127.0.0.1\x00\n  port: 5020"),
        47,
        "plc.host",
        "U+0000",
    ),
    # sizes and shapes that exhaust memory, time or the stack
    Case("file over 1 MiB", lambda t, f: t + "#" * (1 << 20) + "\n", 1, "(top)", "at most 1,048,576 bytes"),
    Case(
        "deep flow nesting",
        sub("  name: corpus-station", "  name: " + DEEP),
        2,
        "station.name" + ".0" * 31,
        "nested more than 32 levels",
    ),
    Case(
        "deep block nesting",
        sub(
            "  dir: data\n", "  dir:\n" + "".join("  " * (i + 2) + f"k{i}:\n" for i in range(40)) + "  " * 42 + "leaf\n"
        ),
        87,
        "storage.dir." + ".".join(f"k{i}" for i in range(31)),
        "nested more than 32 levels",
    ),
    Case("alias bomb", lambda t, f: t + "bomb:\n" + BOMB, 72, "bomb.l4", "more than 50,000 values"),
    Case(
        "alias cycle",
        sub("station:\n  name: corpus-station\n", "station: &s\n  name: *s\n"),
        1,
        "station.name",
        "cycle",
    ),
    Case(
        "integer with 5000 digits in a list",
        sub(ROI, "        roi: [[0.1, 0.1], [0.9, 0.1], [0.9, " + "9" * 5000 + "]]"),
        29,
        "recipes.0.checks.0.roi.2.1",
        "5,000 digits",
    ),
    # values the schema refuses
    Case(
        "reconnect min above max",
        value("  reconnect_min_s: 0.5", "20"),
        10,
        "camera.reconnect_min_s",
        "greater than reconnect_max_s",
    ),
    Case(
        "collinear roi",
        sub(ROI, "        roi: [[0.1, 0.1], [0.5, 0.5], [0.9, 0.9]]"),
        29,
        "recipes.0.checks.0.roi",
        "no area",
    ),
    Case(
        "repeated roi point",
        sub(ROI, "        roi: [[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]"),
        29,
        "recipes.0.checks.0.roi",
        "no area",
    ),
    Case(
        "roi with 65 points",
        sub(
            ROI,
            "        roi: ["
            + ", ".join(["[0.1, 0.1]", "[0.9, 0.1]", "[0.9, 0.9]"] * 21 + ["[0.5, 0.5]", "[0.2, 0.2]"])
            + "]",
        ),
        29,
        "recipes.0.checks.0.roi",
        "at most 64 points",
    ),
    Case(
        "roi coordinate .inf",
        sub(ROI, "        roi: [[0.1, .inf], [0.9, 0.1], [0.9, 0.9]]"),
        29,
        "recipes.0.checks.0.roi.0.1",
        "finite number",
    ),
    Case(
        "prompt too long",
        sub("prompt: Point to the screws.", "prompt: " + "x" * 1001),
        32,
        "recipes.0.checks.1.prompt",
        "at most 1000",
    ),
    Case("synthetic seed negative", sub(SYN, "  synthetic: {seed: -1}"), 14, "camera.synthetic.seed", "greater than"),
    Case(
        "synthetic width huge",
        sub(SYN, "  synthetic: {width: 1000000000000}"),
        14,
        "camera.synthetic.width",
        "less than",
    ),
    Case(
        "camera device missing",
        sub("  source: synthetic\n", "  source: device\n  device: /dev/video97\n"),
        6,
        "camera.device",
        "no such device /dev/video97",
    ),
    Case(
        "camera device not a path",
        sub("  source: synthetic\n", "  source: device\n  device: video0\n"),
        6,
        "camera.device",
        "neither an index",
    ),
    Case(
        "camera device index",
        sub("  source: synthetic\n", "  source: device\n  device: 300\n"),
        6,
        "camera.device",
        "out of range",
    ),
    Case(
        "camera folder missing",
        sub("  source: synthetic\n", "  source: folder\n  path: replay\n"),
        6,
        "camera.path",
        "no such folder",
    ),
    Case(
        "camera folder is a file",
        _file_in_folder("  source: synthetic\n", "  source: folder\n  path: {folder}/img\n", "img"),
        6,
        "camera.path",
        "no such folder",
    ),
    Case(
        "camera file missing",
        sub("  source: synthetic\n", "  source: file\n  path: clip.mp4\n"),
        6,
        "camera.path",
        "no such file",
    ),
    Case(
        "serial device missing",
        sub("  transport: tcp\n", "  transport: rtu\n  serial_port: /dev/ttyNOPE9\n"),
        47,
        "plc.serial_port",
        "no such device /dev/ttyNOPE9",
    ),
    Case("rtu without serial port", value("  transport: tcp", "rtu"), 46, "plc.transport", "needs serial_port"),
    Case(
        "tls cert missing",
        _in_folder("  port: 8080\n  tls_cert: {folder}/c.pem\n  tls_key: {folder}/k.pem\n", "  port: 8080\n"),
        65,
        "web.tls_cert",
        "no such file",
    ),
    Case("tls key alone", sub("  port: 8080\n", "  port: 8080\n  tls_key: k.pem\n"), 65, "web.tls_key", "go together"),
    Case("plc port is the web port", value("  port: 5020", "8080"), 64, "web.port", "both the PLC's"),
    Case(
        "plc port is the web port, web on all addresses",
        lambda t, f: t.replace("  port: 5020", "  port: 8080").replace(
            "  host: 127.0.0.1\n  port: 8080\n  session", "  host: 0.0.0.0\n  port: 8080\n  session"
        ),
        64,
        "web.port",
        "both the PLC's",
    ),
    Case(
        "plc port is the web port, localhost",
        lambda t, f: t.replace("  port: 5020", "  port: 8080").replace(
            "  host: 127.0.0.1\n  port: 8080\n  baud", "  host: localhost\n  port: 8080\n  baud"
        ),
        64,
        "web.port",
        "both the PLC's",
    ),
    Case(
        "plc port is the default web port",
        lambda t, f: t.replace("  port: 5020", "  port: 8080").replace("  port: 8080\n  session", "  session"),
        48,
        "plc.port",
        "both the PLC's",
    ),
    Case(
        "plc host not a host",
        value("  host: 127.0.0.1\n  port: 5020", "'not a host!!'\n  port: 5020"),
        47,
        "plc.host",
        "neither an IP address nor a valid host name",
    ),
    Case(
        "web host underscore",
        lambda t, f: t.replace("  host: 127.0.0.1\n  port: 8080", "  host: bad_host\n  port: 8080"),
        63,
        "web.host",
        "valid host name",
    ),
    Case(
        "web host bad ip",
        lambda t, f: t.replace("  host: 127.0.0.1\n  port: 8080", "  host: 999.1.1.1\n  port: 8080"),
        63,
        "web.host",
        "valid host name",
    ),
    Case(
        "web host leading hyphen",
        lambda t, f: t.replace("  host: 127.0.0.1\n  port: 8080", "  host: -plant.example\n  port: 8080"),
        63,
        "web.host",
    ),
    Case(
        "web host label too long",
        lambda t, f: t.replace("  host: 127.0.0.1\n  port: 8080", f"  host: {'a' * 64}.example\n  port: 8080"),
        63,
        "web.host",
    ),
    Case(
        "web host empty",
        lambda t, f: t.replace("  host: 127.0.0.1\n  port: 8080", "  host: ''\n  port: 8080"),
        63,
        "web.host",
    ),
    Case("storage under /proc", value("  dir: data", "/proc/self"), 55, "storage.dir", "under /proc"),
    Case("storage under /sys", value("  dir: data", "/sys/kernel/x"), 55, "storage.dir", "under /sys"),
    Case("storage under /dev", value("  dir: data", "/dev/shm/edge"), 55, "storage.dir", "under /dev"),
    Case(
        "storage relative into /proc",
        value("  dir: data", "../../../../../../../../../../../../proc/x"),
        55,
        "storage.dir",
        "under /proc",
    ),
    Case("bundle with NUL", lambda t, f: re.sub("  bundle: .*", r'  bundle: "a\\0b"', t), 16, "model.bundle"),
    Case(
        "version id of digits unquoted",
        lambda t, f: re.sub("  bundle: .*", "  bundle: 562844178583", t),
        16,
        "model.bundle",
        'quote a version id, e.g. "562844178583"',
    ),
    # YAML that does not parse or construct
    Case("unclosed flow sequence", sub("  name: plate", "  name: [plate"), 23, "recipes.0.name", "YAML syntax error"),
    Case(
        "tab indentation",
        sub("  host: 127.0.0.1\n  port: 5020", "\thost: 127.0.0.1\n  port: 5020"),
        47,
        "plc",
        "YAML syntax error",
    ),
    Case(
        "python tag",
        value("  language: en", "!!python/object/apply:os.system [ls]"),
        3,
        "station.language",
        "YAML syntax error",
    ),
    Case("impossible date", value("  name: corpus-station", "2024-13-45"), 2, "station.name", "cannot read this value"),
    Case(
        "unhashable key", sub("  language: en\n", "  language: en\n  ? [a, b]\n  : 1\n"), 4, "station.?", "unhashable"
    ),
    Case(
        "merge of a scalar", sub("  language: en\n", "  language: en\n  <<: 1\n"), 4, "station.<<", "merges a mapping"
    ),
    Case("undefined alias", value("  language: en", "*nope"), 3, "station.language", "undefined alias"),
    Case("two documents", lambda t, f: t + "---\nstation: {}\n", 67, "(top)", "expected a single document"),
    Case("empty file", lambda t, f: "", 1, "(top)", "must be a mapping"),
    Case("a list", lambda t, f: "- station\n- camera\n", 1, "(top)", "must be a mapping"),
    Case("a string in a number", value("  port: 5020", "five"), 48, "plc.port", "valid integer"),
    Case("unknown key", sub("  language: en", "  langauge: en"), 3, "station.langauge", "unknown key"),
    Case(
        "duplicate user",
        sub("  session_max_h: 12\n", "  session_max_h: 12\n  users:\n    - {name: a, role: qa, password_hash: x}\n"),
        68,
        "web.users.0.password_hash",
        "not a password hash",
    ),
]


@pytest.fixture
def folder(tmp_path) -> Path:
    return tmp_path


PEOPLE = r"(?: \((?:recipe [^)]*)\))?"  # the 1-based names beside a recipe's path


def _write(folder: Path, case: Case) -> Path:
    text = BASE.replace("{bundle}", str(fake_bundle(folder)))
    content = case.make(text, folder)
    path = folder / "station.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_config(path)
    return err.value.problems


def test_corpus_size():
    assert len(CASES) >= 120 and len({c.id for c in CASES}) == len(CASES)


def test_base_is_valid(folder):
    path = folder / "station.yaml"
    path.write_text(BASE.replace("{bundle}", str(fake_bundle(folder))))
    config, sha = load_config(path)
    assert config.camera.width == 640 and LINE["  port: 8080"] == 64


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_refused_with_line_and_key(folder, case):
    path = _write(folder, case)
    problems = _problems(path)
    prefix = rf"{re.escape(str(path))}:{case.line}: {re.escape(case.key)}{PEOPLE}: "  # the path, then (recipe 1 …)
    hits = [p for p in problems if re.match(prefix, p)]
    assert hits, (prefix, problems)
    assert case.needle in hits[0], (case.needle, problems)
    assert all("\n" not in p and re.match(rf"{re.escape(str(path))}:\d+: \S+{PEOPLE}: ", p) for p in problems), problems
    if case.key.startswith("recipes.0."):  # recipes as configured, checks from 1: as the HMI numbers them
        check = re.match(r"recipes\.0\.checks\.(\d+)", case.key)
        named = f"check {int(check[1]) + 1}" if check else "(recipe "
        assert "(recipe " in hits[0] and named in hits[0], hits[0]


def test_duplicate_users_are_refused(folder):
    from edge_inspect.http.auth import hash_password

    h = hash_password("a long passphrase")
    text = BASE.replace("{bundle}", str(fake_bundle(folder))) + (
        f"  users:\n    - {{name: a, role: qa, password_hash: '{h}'}}\n    - {{name: a, role: qa, password_hash: '{h}'}}\n"
    )
    path = folder / "station.yaml"
    path.write_text(text)
    assert _problems(path) == [f"{path}:67: web.users: user 'a' is listed twice"]


def test_ports_on_different_hosts_may_be_equal(folder):
    text = BASE.replace("{bundle}", str(fake_bundle(folder))).replace("  port: 5020", "  port: 8080")
    path = folder / "station.yaml"
    path.write_text(text.replace("  host: 127.0.0.1\n  port: 8080\n  baud", "  host: 127.0.0.2\n  port: 8080\n  baud"))
    load_config(path)
    path.write_text(text.replace("  transport: tcp", "  transport: rtu\n  serial_port: /dev/null"))
    load_config(path)  # an RTU link has no TCP port


def test_paths_relative_to_the_config_file_that_exist_are_accepted(folder):
    (folder / "replay").mkdir()
    (folder / "clip.mp4").write_bytes(b"")
    base = BASE.replace("{bundle}", str(fake_bundle(folder)))
    path = folder / "station.yaml"
    for camera in (
        "  source: folder\n  path: replay\n",
        "  source: file\n  path: clip.mp4\n",
        "  source: device\n  device: /dev/null\n",
        "  source: device\n  device: 0\n",
    ):
        path.write_text(base.replace("  source: synthetic\n", camera))
        load_config(path)


def test_hash_is_of_the_files_bytes(folder):
    path = folder / "station.yaml"
    data = BASE.replace("{bundle}", str(fake_bundle(folder))).replace("\n", "\r\n").encode()
    path.write_bytes(b"\xef\xbb\xbf" + data)  # a BOM and CRLF line ends: text decoding would change both
    assert load_config(path)[1] == hashlib.sha256(path.read_bytes()).hexdigest()


# -- through the CLI: exit 2, one line, no traceback --------------------------------------------------
CLI_CASES = [
    "duplicate nested key",
    "latin-1 byte in a value",
    "file over 1 MiB",
    "deep flow nesting",
    "camera.width 5000 digits",
    "alias bomb",
    "plc port is the web port",
]


@pytest.mark.parametrize("name", CLI_CASES)
def test_cli_exit_2_one_line(folder, name):
    case = next(c for c in CASES if c.id == name)
    path = _write(folder, case)
    result = subprocess.run(
        [sys.executable, "-m", "edge_inspect.cli", "config", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert_one_line_error(result, f"{path}:{case.line}: {case.key}: ", case.needle)


# -- fuzzing: nothing but ConfigError (or a valid config), quickly ------------------------------------
def _only_config_error(path: Path) -> None:
    try:
        load_config(path)
    except ConfigError as err:
        assert err.problems and all("\n" not in p for p in err.problems), err.problems


def test_fuzz_random_bytes(folder):
    rng = random.Random(12)
    path = folder / "station.yaml"
    for _ in range(150):
        path.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400))))
        _only_config_error(path)


def test_fuzz_mutated_and_truncated_examples(folder):
    rng = random.Random(7)
    path = folder / "station.yaml"
    sources = [BASE.replace("{bundle}", str(fake_bundle(folder))).encode()] + [
        (REPO_ROOT / p).read_bytes() for p in ("examples/usb-camera-plc.yaml", "edge_inspect/demo_station.yaml")
    ]
    alphabet = b"[]{}:-,&*!|>'\"#%@`?\t\n \\0.e9x\xff\x00"
    for source in sources:
        for cut in range(0, len(source), max(1, len(source) // 60)):  # truncations
            path.write_bytes(source[:cut])
            _only_config_error(path)
        for _ in range(120):  # mutations
            data = bytearray(source)
            for _ in range(rng.randrange(1, 6)):
                i = rng.randrange(len(data))
                data[i : i + rng.randrange(0, 4)] = bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 4)))
            path.write_bytes(bytes(data))
            _only_config_error(path)


def _random_yaml(rng: random.Random, depth: int = 0) -> str:
    scalars = [
        "1",
        "-1",
        "0x10",
        "1e999",
        ".nan",
        "~",
        "true",
        "''",
        "'a'",
        "2024-01-01",
        "9" * 50,
        "[]",
        "{}",
        "&a 1",
        "*a",
        "!!str 3",
        "!!binary aGk=",
        "0o7",
        "1:30",
        "2024-02-30",
    ]
    if depth > 4 or rng.random() < 0.3:
        return rng.choice(scalars)
    keys = [
        "station",
        "camera",
        "model",
        "recipes",
        "plc",
        "web",
        "storage",
        "triggers",
        "name",
        "port",
        "host",
        "checks",
        "roi",
        "kind",
        "<<",
        "1",
        "source",
        "device",
        "path",
    ]
    if rng.random() < 0.5:
        return (
            "{"
            + ", ".join(f"{rng.choice(keys)}: {_random_yaml(rng, depth + 1)}" for _ in range(rng.randrange(4)))
            + "}"
        )
    return "[" + ", ".join(_random_yaml(rng, depth + 1) for _ in range(rng.randrange(4))) + "]"


def test_fuzz_random_yaml_structures(folder):
    rng = random.Random(3)
    path = folder / "station.yaml"
    base = BASE.replace("{bundle}", str(fake_bundle(folder))).splitlines(keepends=True)
    for _ in range(200):
        lines = list(base)
        for _ in range(rng.randrange(1, 4)):  # replace a value somewhere with a random structure
            i = rng.randrange(len(lines))
            head = lines[i].split(":")[0]
            lines[i] = f"{head}: {_random_yaml(rng)}\n"
        path.write_text("".join(lines))
        _only_config_error(path)


def test_a_large_file_is_refused_quickly(folder):
    import time

    path = folder / "station.yaml"
    path.write_text("a: [" + "1," * 400_000 + "1]\n")  # under 1 MiB, but far too many values
    start = time.monotonic()
    problems = _problems(path)
    assert time.monotonic() - start < 15 and "more than 50,000 values" in problems[0], problems
