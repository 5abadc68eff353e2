"""``cameras:``: several named cameras, each check's ``view`` — and what the station file refuses, each
with its file:line: a view that is no camera, two cameras with one name or one device (GenICam serial,
user id or address; OpenCV device or URL), several GenICam cameras one of which is not named, and
``camera:`` beside ``cameras:``. ``camera:`` alone keeps meaning one camera named main."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edge_inspect.config import ConfigError, load_config

STATION = """\
station:
  name: two-views
cameras:
  - name: top
    source: genicam
    genicam: {serial: "A100"}
  - name: side
    source: url
    url: rtsp://10.0.0.7/stream
model:
  bundle: {bundle}
recipes:
  - number: 1
    name: plate
    checks:
      - name: label
        kind: qa
        question: Is the label present?
        expect: "yes"
      - name: screws
        kind: count
        prompt: Point to the screws.
        expected: 4
        view: side
plc:
  port: 5020
"""


@pytest.fixture
def write(tmp_path, tiny_bundle):
    def _write(text: str):
        path = tmp_path / "station.yaml"
        path.write_text(text.replace("{bundle}", str(tiny_bundle)))
        return path

    return _write


def _refused(path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.problems


def test_two_named_cameras_and_a_check_on_each(write):
    config, _ = load_config(write(STATION))
    assert [c.name for c in config.camera_list()] == ["top", "side"]
    assert [c.view for c in config.recipes[0].checks] == [None, "side"]
    assert config.camera.source == "genicam" and config.camera.genicam.serial == "A100"  # the first camera
    # a check's view left unset is not part of the recipe's version: recipes written before keep their hash
    one = load_config(write(STATION.replace("        view: side\n", "")))[0].recipes[0]
    assert "view" not in str(one.sha256()) and one.sha256() != config.recipes[0].sha256()


def test_camera_alone_is_one_camera_named_main(write):
    single = (
        STATION[: STATION.index("cameras:")] + "camera:\n  source: synthetic\n" + STATION[STATION.index("model:") :]
    )
    config, _ = load_config(write(single.replace("view: side", "view: main")))
    assert [(c.name, c.source) for c in config.camera_list()] == [("main", "synthetic")]
    assert config.cameras is None


@pytest.mark.parametrize(
    "edit,line,message",
    [
        (lambda t: t.replace("view: side", "view: sid"), 24,
         "recipes.0.checks.1.view (recipe 1 'plate', check 2 'screws'): view 'sid' is not a camera of this station "
         "(cameras: top, side)"),
        (lambda t: t.replace("name: side", "name: top"), 7, "cameras.1.name: camera name 'top' is used twice"),
        (lambda t: t.replace("name: side", "name: Side"), 7,
         "cameras.1.name: 'Side' is not a camera name: 1 to 32 of a-z, 0-9, _ and -"),
        (lambda t: t.replace("view: side", "view: Side"), 24, "recipes.0.checks.1.view (recipe 1 'plate', check 2"),
        (lambda t: t.replace("    source: url\n    url: rtsp://10.0.0.7/stream",
                             '    source: genicam\n    genicam: {serial: "A100"}'), 9,
         "cameras.1.genicam.serial: camera 'side' is camera 'top' again (genicam serial A100)"),
        (lambda t: t.replace('{serial: "A100"}', '{user_id: line1}').replace(
            "    source: url\n    url: rtsp://10.0.0.7/stream", "    source: genicam\n    genicam: {user_id: line1}"), 9,
         "cameras.1.genicam.user_id: camera 'side' is camera 'top' again (genicam user id line1)"),
        (lambda t: t.replace('{serial: "A100"}', '{address: 192.168.3.9}').replace(
            "    source: url\n    url: rtsp://10.0.0.7/stream", "    source: genicam\n    genicam: {address: 192.168.3.9}"),
         9, "cameras.1.genicam.address: camera 'side' is camera 'top' again (genicam address 192.168.3.9)"),
        (lambda t: t.replace("    source: url\n    url: rtsp://10.0.0.7/stream",
                             "    source: genicam\n    genicam: {}"), 9,
         "cameras.1.genicam: camera 'side': with several genicam cameras, name each by serial, user_id or address"),
        (lambda t: t.replace('    source: genicam\n    genicam: {serial: "A100"}',
                             "    source: url\n    url: rtsp://10.0.0.7/stream"), 9,
         "cameras.1.url: camera 'side' is camera 'top' again (url rtsp://10.0.0.7/stream)"),
        (lambda t: t.replace('    source: genicam\n    genicam: {serial: "A100"}', "    source: device\n    device: 3")
         .replace("    source: url\n    url: rtsp://10.0.0.7/stream", "    source: device\n    device: '3'"), 9,
         "cameras.1.device: camera 'side' is camera 'top' again (device /dev/video3)"),
        (lambda t: t.replace("cameras:", "camera:\n  source: synthetic\ncameras:"), 5,
         "cameras: give one camera under camera: or several under cameras:, not both"),
        (lambda t: t.replace("cameras:\n", "cameras: []\nold:\n"), 3, "cameras: List should have at least 1 item"),
    ],
    ids=["unknown view", "name twice", "bad name", "bad view name", "one serial", "one user id", "one address",
         "genicam not named", "one url", "one device", "camera and cameras", "no cameras"],
)  # fmt: skip
def test_refused_with_file_and_line(write, tmp_path, edit, line, message):
    path = write(edit(STATION))
    problems = _refused(path)
    assert any(p.startswith(f"{path}:{line}: {message}") for p in problems), problems


def test_config_validate_refuses_an_unknown_view_with_exit_2(write):
    path = write(STATION.replace("view: side", "view: back"))
    done = subprocess.run(
        [sys.executable, "-m", "edge_inspect.cli", "config", "validate", str(path)], capture_output=True, text=True
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert (
        done.stderr.strip()
        .splitlines()[0]
        .startswith(
            f"{path}:24: recipes.0.checks.1.view (recipe 1 'plate', check 2 'screws'): view 'back' is not a camera"
        )
    ), done.stderr
    ok = subprocess.run(
        [sys.executable, "-m", "edge_inspect.cli", "config", "validate", str(write(STATION))],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and "cameras top, side" in ok.stdout, ok.stderr


def test_the_example_in_docs_cameras_md_is_valid(tmp_path, tiny_bundle):
    from edge_inspect.config.calibration_file import CameraCalibration

    from ..support.paths import REPO_ROOT

    doc = (REPO_ROOT / "docs" / "cameras.md").read_text()
    blocks = [block.split("```", 1)[0] for block in doc.split("```yaml\n")[1:]]
    example = next(b for b in blocks if b.startswith("cameras:\n"))  # the section "Several cameras"
    CameraCalibration((640, 480), [[500, 0, 320], [0, 500, 240], [0, 0, 1]], [0.0] * 5, 0.1, 0.2, (9, 6), 5.0, 12,
                      "plane.png").save(tmp_path / "side-calibration.json")  # fmt: skip
    path = tmp_path / "station.yaml"
    path.write_text(f"model:\n  bundle: {tiny_bundle}\n{example}")
    config, _ = load_config(path)
    assert [(c.name, c.source) for c in config.camera_list()] == [("top", "genicam"), ("side", "genicam")]
    assert [c.view for c in config.recipes[0].checks] == [None, "side", "side"]
