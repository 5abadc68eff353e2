"""The genicam camera through the real protocol: Aravis' GigE Vision fake camera on loopback
(GVCP control, GVSP stream over UDP). Waits are on conditions (a frame count reached), never on
sleeps; each test starts its own fake camera and stops it."""

from __future__ import annotations

import time

import pytest

from edge_inspect.camera.genicam import GenICamCamera
from edge_inspect.camera.live import CameraError
from edge_inspect.camera.matching import is_after
from edge_inspect.config import CameraConfig, GenICamSettings
from edge_inspect.errors import UserError

from ..support.genicam_fake import SERIAL, FakeCamera, line_trigger_xml, user_id_xml

WAIT_S = 10.0  # generous: the machine may be busy; nothing here waits this long when it works


def camera(max_frame_age_ms: float = 2000.0, **settings) -> GenICamCamera:
    return GenICamCamera(
        GenICamSettings(serial=SERIAL, **settings), stall_timeout_s=WAIT_S, max_frame_age_ms=max_frame_age_ms
    )


def wait_frames(cam: GenICamCamera, count: int) -> None:
    """Until the camera's thread has received ``count`` frames in all."""
    deadline = time.monotonic() + WAIT_S
    with cam._cond:
        while cam.frames < count:
            assert time.monotonic() < deadline, f"only {cam.frames} of {count} frames arrived"
            cam._cond.wait(0.1)


def next_id(frame_id: int) -> int:
    """The id after ``frame_id`` on a GigE Vision 1 camera (16 bits, 0 skipped)."""
    return 1 if frame_id == 0xFFFF else frame_id + 1


def test_software_trigger_inspects_the_frame_its_command_produced(fake_camera):
    cam = camera(trigger="software", pixel_format="Mono8", features={"ExposureTimeAbs": 2000.0, "GainRaw": 3})
    cam.start()
    try:
        assert cam.status == "ok"
        ids = []
        for _ in range(4):
            frame = cam.grab()
            assert frame.shape == (512, 512, 3) and frame.dtype.name == "uint8"
            assert cam.last_frame is not None
            ids.append(cam.last_frame.frame_id)
        assert ids[1:] == [next_id(i) for i in ids[:-1]]  # one frame per command, in order (ids wrap at 65535)
        # A frame the station did not ask for (a stray trigger) is received and buffered first...
        before = cam.frames
        fake_camera.fake.write_register(0x30C, 1)
        wait_frames(cam, before + 1)
        stray = cam._received[-1].frame_id
        assert is_after(stray, ids[-1])
        # ...and is never the one inspected: the next grab gets the frame of its own command.
        cam.grab()
        assert cam.last_frame.frame_id == next_id(stray)
        assert cam.last_frame.camera_ts_ns > 0
    finally:
        cam.close()
    assert cam.status == "closed" and not cam._thread.is_alive()


def test_free_run_returns_a_frame_that_arrived_after_the_grab(fake_camera):
    cam = camera(trigger="free_run", pixel_format="BayerRG8", frame_rate=50.0)
    cam.start()
    try:
        first = cam.grab()
        first_id = cam.last_frame.frame_id
        assert first.shape == (512, 512, 3)
        received = cam.frames
        cam.grab()
        assert is_after(cam.last_frame.frame_id, first_id)
        assert cam.frames >= received + cam.frames_after_trigger
    finally:
        cam.close()


def test_hardware_trigger_matches_the_lines_frame_and_never_an_older_one(aravis, tmp_path):
    fake = FakeCamera(aravis, line_trigger_xml(aravis, tmp_path))
    window = 1.5  # max_frame_age_ms; generous, the machine may be busy: the negative case waits it out
    cam = camera(max_frame_age_ms=1000 * window, trigger="hardware", trigger_source="Line0")
    cam.start()
    try:
        trigger_at = time.monotonic()  # the PLC sees the photo-eye as the camera's line does
        fake.line_pulse()
        cam.grab(trigger_at)
        first = cam.last_frame.frame_id
        # A pulse no trigger answers (a stray), then a trigger with no pulse of its own, later than
        # the window: no frame for it; neither the stray's frame nor the first is inspected.
        before = cam.frames
        fake.line_pulse()
        wait_frames(cam, before + 1)
        stray = cam._received[-1]
        assert stray.frame_id == next_id(first)
        with pytest.raises(CameraError, match="no frame within 1500 ms of the trigger"):
            cam.grab(stray.arrived + window + 0.05)
        assert cam.last_frame.frame_id == first
        trigger_at = time.monotonic()
        fake.line_pulse()
        cam.grab(trigger_at)
        assert cam.last_frame.frame_id == next_id(stray.frame_id)  # the third pulse's frame
    finally:
        cam.close()
        fake.stop()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"features": {"NoSuchNode": 1}}, "feature NoSuchNode: no such node in the camera's feature tree"),
        ({"features": {"GainRaw": 99}}, "feature GainRaw: 99 is out of its range 0..10"),
        ({"width": 60000}, "feature Width: 60000 is out of its range"),
        (
            {"features": {"AcquisitionMode": "Burst"}},
            "feature AcquisitionMode: 'Burst' is not one of its values: Continuous, SingleFrame, MultiFrame",
        ),
        ({"exposure_us": 1.0}, "feature ExposureTimeAbs: 1 is out of its range 10..1e+07"),
        (
            {"trigger": "hardware", "trigger_source": "Line7"},
            "feature TriggerSource: 'Line7' is not one of its values: Line0, Software",
        ),
    ],
)
def test_a_feature_the_camera_refuses_stops_the_start_in_one_line(fake_camera, settings, message):
    cam = camera(**settings)
    with pytest.raises(UserError) as refused:
        cam.start()
    text = str(refused.value)
    assert text.startswith(f"camera genicam:serial {SERIAL}: ") and message in text
    assert "\n" not in text
    assert not cam._thread.is_alive()


@pytest.mark.parametrize("way", ["address", "user_id"])
def test_a_camera_chosen_by_address_or_user_id(aravis, tmp_path, way):
    fake = FakeCamera(aravis, user_id_xml(aravis, tmp_path))
    fake.set_user_id("line1-top")
    given = {"address": "127.0.0.1"} if way == "address" else {"user_id": "line1-top"}
    cam = GenICamCamera(GenICamSettings(frame_rate=50.0, **given), stall_timeout_s=WAIT_S)
    try:
        cam.start()
        assert cam.status == "ok" and cam.grab().shape == (512, 512, 3)
    finally:
        cam.close()
    wrong = GenICamCamera(GenICamSettings(user_id="line2-side"), reconnect_min_s=5.0)
    try:
        wrong.start()
        assert wrong.status == "lost" and "no camera with user id line2-side found" in wrong.detail
    finally:
        wrong.close()
        fake.stop()


def test_a_camera_not_there_is_lost_and_looked_for_again(aravis):
    cam = GenICamCamera(GenICamSettings(serial="NOT-THERE"), reconnect_min_s=0.05, reconnect_max_s=0.1)
    try:
        cam.start()  # no exception: the station starts with camera_lost raised
        assert cam.status == "lost" and "no camera with serial NOT-THERE" in cam.detail
        assert not cam.probe()
        with pytest.raises(CameraError, match="lost"):
            cam.grab()
    finally:
        cam.close()


def test_without_aravis_a_genicam_source_is_refused_naming_what_to_install(monkeypatch):
    from edge_inspect.camera.sources import make_camera

    monkeypatch.setitem(__import__("sys").modules, "gi", None)  # import gi fails as where it is not installed
    with pytest.raises(UserError) as refused:
        make_camera(CameraConfig(source="genicam"))
    assert "gir1.2-aravis-0.8" in str(refused.value) and "PyGObject" in str(refused.value)
    assert "\n" not in str(refused.value)


def wait_status(cam: GenICamCamera, status: str) -> None:
    deadline = time.monotonic() + 3 * WAIT_S
    with cam._cond:
        while cam.status != status:
            assert time.monotonic() < deadline, f"camera still {cam.status} ({cam.detail})"
            cam._cond.wait(0.1)


def test_a_camera_that_goes_away_is_lost_and_taken_back_when_it_returns(aravis):
    fake = FakeCamera(aravis)
    cam = GenICamCamera(
        GenICamSettings(serial=SERIAL, frame_rate=50.0), stall_timeout_s=1.0, reconnect_min_s=0.1, reconnect_max_s=0.5
    )
    try:
        cam.start()
        cam.grab()
        fake.stop()  # the camera is unplugged while it streams
        wait_status(cam, "lost")
        assert cam.failures >= 1
        fake = FakeCamera(aravis)  # and plugged in again
        wait_status(cam, "ok")
        received = cam.frames
        cam.grab()
        assert cam.frames > received
    finally:
        cam.close()
        fake.stop()
