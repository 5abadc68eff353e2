"""Faults of a GenICam camera against Aravis' GigE Vision fake on loopback: unplugged and plugged in
again under a running station, packets lost on the stream, a camera another controller holds."""

from __future__ import annotations

import pytest

from edge_inspect.camera.genicam import GenICamCamera
from edge_inspect.camera.live import CameraError
from edge_inspect.config import GenICamSettings
from edge_inspect.web.metrics import camera_lines

from ..support.camera_faults import GAIN, run_rounds
from ..support.genicam_fake import SERIAL, FakeCamera
from ..support.wait import wait_for


def test_a_camera_unplugged_and_plugged_in_again_under_a_station(aravis, tmp_path, tiny_bundle):
    run = run_rounds(aravis, tmp_path, tiny_bundle, rounds=3)
    for r in run.rounds:
        assert r.lost_after_s < 2.0  # camera_lost within 2 s of the camera going away
        assert r.ready_low  # and the PLC saw ready low
        assert r.gain_after == GAIN  # the config's features are set on the camera again
        assert r.results == [0, 0]  # inspections resume without a restart
    assert len(run.rows) == 2 * 4 and all(error == "" for _, error, _, _ in run.rows)
    assert all(frame_id is not None for _, _, frame_id, _ in run.rows)
    assert run.stale == 0 and run.repeated == 0  # every frame taken after its trigger, none inspected twice
    assert run.counters["lost"] == 3 and run.counters["frames"] >= 8
    metrics = "\n".join(camera_lines(run.counters))
    assert (
        "edge_inspect_camera_lost_total 3" in metrics
        and 'edge_inspect_camera_frames_total{arrived="incomplete"} 0' in metrics
    )


def test_lost_packets_are_counted_asked_for_again_and_never_inspected(aravis):
    fake = FakeCamera(aravis, lost_ratio=0.002)  # about one packet in 500 dropped by the camera
    cam = GenICamCamera(GenICamSettings(serial=SERIAL, trigger="software"), stall_timeout_s=5.0)
    try:
        cam.start()
        grabbed, refused = [], []
        while len(grabbed) < 5 or not refused or not cam.counters()["resend_requests"]:
            assert len(grabbed) + len(refused) < 300, f"in 300 triggers: {len(refused)} incomplete, {cam.counters()}"
            try:
                cam.grab()
                grabbed.append(cam.last_frame.frame_id)
            except CameraError as err:
                refused.append(str(err))
        counters = cam.counters()
    finally:
        cam.close()
        fake.stop()
    assert all("arrived incomplete (packets lost)" in message for message in refused)
    assert counters["incomplete"] >= len(refused) and counters["resend_requests"] > 0
    assert counters["missing_packets"] > 0
    assert grabbed == sorted(grabbed)  # each grab a newer frame: the one its trigger produced


def test_a_camera_another_controller_holds_is_named_and_taken_when_free(aravis):
    fake = FakeCamera(aravis)
    aravis.update_device_list()
    device = next(
        aravis.get_device_id(i) for i in range(aravis.get_n_devices()) if aravis.get_device_serial_nbr(i) == SERIAL
    )
    other = aravis.Camera.new(device)  # another vision program holds the control channel
    cam = GenICamCamera(GenICamSettings(serial=SERIAL, trigger="software"), reconnect_max_s=0.5)
    try:
        cam.start()
        assert cam.status == "lost" and "is held by another controller" in cam.detail and SERIAL in cam.detail
        with pytest.raises(CameraError, match="held by another controller"):
            cam.grab()
        other.get_device().leave_control()
        del other
        wait_for(lambda: cam.status == "ok", "the camera taken once the other controller let go", timeout=30)
        cam.grab()
    finally:
        cam.close()
        fake.stop()
