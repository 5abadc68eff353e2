"""station.yaml validation: every mistake gives file:line, the key and exit 2, never a traceback."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from ..support.paths import REPO_ROOT
from ..support.station_yaml import BASE

# (name, edit of the base text, expected line, text expected in the message)
BAD = [
    ("yaml syntax", lambda t: t.replace("  name: plate", "  name: [plate"), None, "YAML syntax error"),
    ("unknown top key", lambda t: t + "lights: {}\n", 27, "lights: unknown key"),
    (
        "unknown nested key",
        lambda t: t.replace("  source: synthetic", "  source: synthetic\n  sorce: x"),
        5,
        "camera.sorce: unknown key",
    ),
    ("wrong type", lambda t: t.replace("expected: 4", "expected: four"), 18, "recipes.0.checks.1.expected"),
    ("negative count", lambda t: t.replace("expected: 4", "expected: -1"), 18, "greater than or equal to 0"),
    ("unknown check kind", lambda t: t.replace("kind: qa", "kind: maybe"), 19, "recipes.0.checks.2"),
    ("bad expect", lambda t: t.replace('expect: "yes"', "expect: perhaps"), 22, "expect"),
    (
        "roi outside frame",
        lambda t: t.replace("        max: 0", "        max: 0\n        roi: [[0, 0], [1.5, 0], [1, 1]]"),
        15,
        "outside the frame",
    ),
    (
        "roi too small",
        lambda t: t.replace("        max: 0", "        max: 0\n        roi: [[0, 0], [1, 1]]"),
        15,
        "at least 3 points",
    ),
    (
        "crop without roi",
        lambda t: t.replace("        max: 0", "        max: 0\n        crop: true"),
        11,
        "crop: true needs an roi",
    ),
    (
        "min above max",
        lambda t: t.replace("        max: 0", "        max: 0\n        min: 2"),
        11,
        "min (2) is greater than max (0)",
    ),
    ("duplicate check name", lambda t: t.replace("name: screws", "name: surface"), 8, "unique"),
    (
        "duplicate register",
        lambda t: t.replace("  port: 5020", "  port: 5020\n  map:\n    trigger: {address: 1}"),
        25,
        "overlap",
    ),
    (
        "unknown signal",
        lambda t: t.replace("  port: 5020", "  port: 5020\n  map:\n    trigga: {address: 9}"),
        25,
        "unknown signal",
    ),
    ("port out of range", lambda t: t.replace("port: 5020", "port: 70000"), 24, "plc.port"),
    (
        "rtu without serial port",
        lambda t: t.replace("  port: 5020", "  port: 5020\n  transport: rtu"),
        25,
        "plc.transport: transport 'rtu' needs serial_port",
    ),
    (
        "spin not a boolean",
        lambda t: t.replace("  bundle: {bundle}", "  bundle: {bundle}\n  spin: maybe"),
        7,
        "model.spin: Input should be a valid boolean",
    ),
    ("missing model bundle", lambda t: t.replace("{bundle}", "/nonexistent/bundle"), 6, "no model bundle"),
    ("missing model section", lambda t: t.replace("model:\n  bundle: {bundle}\n", ""), 1, "model: Field required"),
    ("camera device missing", lambda t: t.replace("source: synthetic", "source: device"), 3, "needs 'device'"),
    ("trigger recipe missing", lambda t: t + "triggers:\n  recipe: 9\n", 1, "triggers.recipe 9"),
    ("no recipes", lambda t: t[: t.index("recipes:")] + "recipes: []\nplc:\n  port: 5020\n", 7, "recipes"),
    ("not a mapping", lambda t: "- just\n- a list\n", 1, "must be a mapping"),
    (  # the YAML path stays; beside it the recipe and the check as the HMI numbers them
        "a typo in a check's key",
        lambda t: t.replace("expected: 4", "expeted: 4"),
        18,
        "recipes.0.checks.1.expeted (recipe 1 'plate', check 2 'screws'): unknown key; did you mean `expected`?",
    ),
    (
        "a typo in a section",
        lambda t: t.replace("  source: synthetic", "  sorce: synthetic"),
        4,
        "camera.sorce: unknown key; did you mean `source`?",
    ),  # fmt: skip
    (
        "a typo in a top key",
        lambda t: t.replace("storage:", "storag:"),
        25,
        "storag: unknown key; did you mean `storage`?",
    ),
    ("far from every key", lambda t: t + "zzz: 1\n", 27, "zzz: unknown key\n"),
]


def _validate(path: Path):
    return subprocess.run(
        [sys.executable, "-m", "edge_inspect.cli", "config", "validate", str(path)], capture_output=True, text=True
    )


@pytest.fixture
def write(tmp_path, tiny_bundle):
    def _write(text: str) -> Path:
        path = tmp_path / "station.yaml"
        path.write_text(text.replace("{bundle}", str(tiny_bundle)))
        return path

    return _write


def test_base_is_valid(write):
    result = _validate(write(BASE))
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


@pytest.mark.parametrize("name,edit,line,needle", BAD, ids=[b[0] for b in BAD])
def test_bad_config(write, name, edit, line, needle):
    path = write(edit(BASE))
    result = _validate(path)
    assert result.returncode == 2, (name, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    first = result.stderr.strip().splitlines()[0]
    assert re.match(rf"{re.escape(str(path))}:\d+: ", first), first
    if line is not None:
        assert any(err.startswith(f"{path}:{line}: ") for err in result.stderr.splitlines()), result.stderr
    assert needle in result.stderr, result.stderr


def test_missing_file(tmp_path):
    result = _validate(tmp_path / "nope.yaml")
    assert result.returncode == 2 and "no such file" in result.stderr


def test_a_folder_named_as_the_station_file(tmp_path):
    result = _validate(tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{tmp_path}: is a folder, not a station file" in result.stderr


@pytest.mark.parametrize("example", ["examples/usb-camera-plc.yaml", "edge_inspect/demo_station.yaml"])
def test_examples_are_valid_once_their_placeholders_are_filled(example, tmp_path, tiny_bundle):
    from edge_inspect.http.auth import hash_password

    text = (REPO_ROOT / example).read_text()
    text = re.sub(r"bundle: \S+", f"bundle: {tiny_bundle}", text)
    path = tmp_path / "example.yaml"
    if "device: /dev/video0" in text and not Path("/dev/video0").exists():
        path.write_text(text)  # the example's USB camera is not on this machine: refused at its line
        cameras = [n for n, line in enumerate(text.splitlines(), 1) if "device: /dev/video0" in line]
        assert f"example.yaml:{cameras[0]}: camera.device: no such device /dev/video0" in _validate(path).stderr
        camera = tmp_path / "video0"  # the integrator's edit: a camera this machine has
        camera.touch()
        text = text.replace("device: /dev/video0", f"device: {camera}")
    path.write_text(text)
    placeholders = [n for n, line in enumerate(text.splitlines(), 1) if "REPLACE" in line]
    if placeholders:  # an example ships no usable password: validation names the placeholder's line
        result = _validate(path)
        assert result.returncode == 2 and f"example.yaml:{placeholders[0]}: web.users.0.password_hash" in result.stderr
        text = re.sub(r'"REPLACE[^"]*"', f'"{hash_password("a long passphrase")}"', text)
        path.write_text(text)
    assert "scrypt$16384$8$1$zd06Chbq" not in text  # the old demo hash (password = user name) is gone
    result = _validate(path)
    assert result.returncode == 0, result.stderr


def test_model_settings_reach_the_loaded_model(write):
    """The station, `try` and `tune` load the model through ModelConfig.load: every key applies."""
    from edge_inspect.config import load_config

    path = write(BASE.replace("  bundle: {bundle}", "  bundle: {bundle}\n  threads: 1\n  spin: true"))
    config, _ = load_config(path)
    options = [s.get_session_options() for s in config.model.load().backend._sessions.values()]
    assert {o.intra_op_num_threads for o in options} == {1}
    assert {o.get_session_config_entry("session.intra_op.allow_spinning") for o in options} == {"1"}
