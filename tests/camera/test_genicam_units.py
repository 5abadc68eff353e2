"""The parts of the genicam camera that need no camera: pixel formats to BGR, the frame-to-trigger
matcher, and camera.genicam in station.yaml (strict, file:line errors)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_inspect.camera.matching import Frame, for_hardware_trigger, for_software_trigger, is_after
from edge_inspect.camera.pixels import PixelFormatError, format_name, to_bgr
from edge_inspect.config import ConfigError, config_from_bytes

BGR = (30, 120, 220)


def mosaic(pattern: str, height: int = 8, width: int = 8) -> bytes:
    """A flat BGR colour sampled as a Bayer sensor whose first 2×2 cells are ``pattern`` (GenICam naming)."""
    channel = {"B": 0, "G": 1, "R": 2}
    raw = np.zeros((height, width), np.uint8)
    for (dy, dx), colour in zip([(0, 0), (0, 1), (1, 0), (1, 1)], pattern, strict=True):
        raw[dy::2, dx::2] = BGR[channel[colour]]
    return raw.tobytes()


@pytest.mark.parametrize(
    ("fmt", "pattern"), [("BayerRG8", "RGGB"), ("BayerGB8", "GBRG"), ("BayerGR8", "GRBG"), ("BayerBG8", "BGGR")]
)
def test_bayer_formats_demosaic_to_the_right_colours(fmt, pattern):
    frame = to_bgr(mosaic(pattern), 8, 8, fmt)
    assert frame.shape == (8, 8, 3)
    assert tuple(int(v) for v in frame[4, 4]) == BGR  # inside the image, away from the border


def test_mono_and_rgb_formats():
    assert to_bgr(bytes([7, 9]), 2, 1, "Mono8").tolist() == [[[7, 7, 7], [9, 9, 9]]]
    assert to_bgr(np.array([0x1234, 0xFF00], "<u2").tobytes(), 2, 1, "Mono16").tolist() == [[[18] * 3, [255] * 3]]
    assert to_bgr(bytes([1, 2, 3]), 1, 1, "RGB8").tolist() == [[[3, 2, 1]]]
    assert to_bgr(bytes([1, 2, 3]), 1, 1, "BGR8").tolist() == [[[1, 2, 3]]]
    assert format_name(0x01080009) == "BayerRG8"
    with pytest.raises(PixelFormatError, match="0x0110000c is not one the station converts"):
        format_name(0x0110000C)  # Mono12
    with pytest.raises(PixelFormatError, match="needs 4 bytes"):
        to_bgr(bytes(3), 2, 2, "Mono8")


def frame(frame_id: int, arrived: float = 0.0, host_ns: int = 0) -> Frame:
    return Frame(frame_id, 0, host_ns, arrived, np.zeros(1, np.uint8), 1, 1, "Mono8")


def test_frame_ids_wrap_at_16_bits():
    assert is_after(2, 1) and not is_after(1, 2) and not is_after(5, 5)
    assert is_after(1, 0xFFFF) and is_after(3, 0xFFF0)  # past the wrap (0 is skipped)
    assert not is_after(0xFFFF, 1)  # from before the wrap
    assert is_after(7, None)
    assert is_after(10**12 + 1, 10**12)  # 64-bit ids (GigE Vision 2, USB3 Vision)


def test_software_trigger_takes_the_first_frame_after_the_command():
    frames = [frame(10, host_ns=100), frame(11, host_ns=190), frame(12, host_ns=260), frame(13, host_ns=300)]
    # 11 was received before the command was sent (it is last_id); 12 began to arrive after it.
    assert for_software_trigger(frames, 11, 200).frame_id == 12
    # A frame after last_id that began to arrive before the command is an older trigger's: skipped.
    assert for_software_trigger(frames, 10, 200).frame_id == 12
    assert for_software_trigger(frames, 13, 200) is None
    assert for_software_trigger([frame(1, host_ns=500)], 0xFFFF, 400).frame_id == 1


def test_hardware_trigger_takes_a_frame_near_the_trigger_and_never_an_older_one():
    frames = [frame(20, arrived=9.0), frame(21, arrived=10.05), frame(22, arrived=10.30)]
    assert for_hardware_trigger(frames, 10.0, 0.1, last_used=19).frame_id == 21  # 20 is 1 s too old
    assert for_hardware_trigger(frames, 10.0, 0.1, last_used=21) is None  # 21 used; 22 is too late
    assert for_hardware_trigger(frames, 10.28, 0.1, last_used=21).frame_id == 22
    assert for_hardware_trigger(frames, 10.28, 0.1, last_used=22) is None  # never 21 again, nor 20
    assert for_hardware_trigger(frames, 10.04, 0.1, last_used=None).frame_id == 21  # arrived before the PLC saw it


STATION = """\
station:
  name: line-1
camera:
  source: genicam
{camera}
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
"""


def check(camera: str, tiny_bundle, tmp_path):
    path = tmp_path / "station.yaml"
    return config_from_bytes(STATION.format(camera=camera, bundle=tiny_bundle).encode(), path)


def test_a_genicam_camera_in_station_yaml(tiny_bundle, tmp_path):
    config, _ = check(
        "  genicam:\n    serial: A1\n    pixel_format: BayerRG8\n    exposure_us: 800\n    trigger: hardware\n"
        "    trigger_source: Line1\n    features:\n      BalanceWhiteAuto: Continuous\n      GevSCPSPacketSize: 8192",
        tiny_bundle,
        tmp_path,
    )
    g = config.camera.genicam
    assert (g.serial, g.pixel_format, g.exposure_us, g.trigger, g.trigger_source) == (
        "A1",
        "BayerRG8",
        800,
        "hardware",
        "Line1",
    )
    assert g.features == {"BalanceWhiteAuto": "Continuous", "GevSCPSPacketSize": 8192}


@pytest.mark.parametrize(
    ("camera", "problem"),
    [
        (
            "  genicam:\n    serial: A1\n    address: 10.0.0.9",
            ":7: camera.genicam.address: name the camera one way: serial and address are both given",
        ),
        ("  genicam:\n    trigger: hardware", ":6: camera.genicam.trigger: trigger 'hardware' needs trigger_source"),
        (
            "  genicam:\n    trigger_source: Line0",
            ":6: camera.genicam.trigger_source: trigger_source is for trigger 'hardware', not 'free_run'",
        ),
        ("  genicam:\n    pixel_format: Mono12", ":6: camera.genicam.pixel_format: Input should be 'Mono8', 'Mono16'"),
        (
            "  genicam:\n    features:\n      TriggerMode: 'On'",
            ":6: camera.genicam.features: TriggerMode is set by camera.genicam.trigger, not under features",
        ),
        (
            "  genicam:\n    features:\n      Bad-Name: 1",
            ":6: camera.genicam.features: 'Bad-Name' is not a GenICam node name",
        ),
        ("  genicam:\n    address: camera-1", ":6: camera.genicam.address: 'camera-1' is not an IPv4 address"),
        ("  genicam:\n    exposur_us: 5", ":6: camera.genicam.exposur_us: unknown key; did you mean `exposure_us`?"),
        ("  width: 640", ":5: camera.width: a genicam camera takes camera.genicam.width, not camera.width"),
    ],
)
def test_genicam_mistakes_are_refused_at_their_line(camera, problem, tiny_bundle, tmp_path):
    with pytest.raises(ConfigError) as refused:
        check(camera, tiny_bundle, tmp_path)
    assert len(refused.value.problems) == 1
    assert problem in refused.value.problems[0], refused.value.problems


def test_the_example_in_docs_cameras_md_is_valid(tiny_bundle, tmp_path):
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "cameras.md").read_text()
    blocks = [block.split("```", 1)[0] for block in doc.split("```yaml\n")[1:]]
    example = next(b for b in blocks if b.startswith("camera:\n  source: genicam\n"))  # the GenICam section's
    station = STATION.replace("camera:\n  source: genicam\n{camera}\n", example)
    config, _ = config_from_bytes(station.format(bundle=tiny_bundle).encode(), tmp_path / "station.yaml")
    g = config.camera.genicam
    assert (g.serial, g.trigger, g.features["GevSCPSPacketSize"]) == ("23045821", "software", 8972)
