"""A part seen by a GenICam camera and the synthetic line (docs/cameras.md, "Several cameras"): Aravis'
GigE Vision fake camera on loopback, software-triggered, beside a synthetic camera, driven by a PLC
over Modbus TCP. Each trigger sends the GenICam camera its own TriggerSoftware and inspects the frame
that command produced (frame ids one apart, logged for its view); the other view's checks judge the
synthetic part. Two fake cameras cannot share the loopback: both answer on 127.0.0.1:3956 and every
command reaches the same one."""

from __future__ import annotations

import asyncio
import sqlite3

from ..support.genicam_fake import SERIAL
from ..support.stations import run_station_with_plc, write_station


def test_a_software_triggered_genicam_view_beside_a_synthetic_one(fake_camera, tmp_path, tiny_bundle):
    config = write_station(
        tmp_path, tiny_bundle, camera=None,
        cameras=[
            {"name": "top", "source": "genicam", "stall_timeout_s": 10.0, "max_frame_age_ms": 3000.0,
             "genicam": {"serial": SERIAL, "pixel_format": "Mono8", "trigger": "software"}},
            {"name": "side", "source": "synthetic", "synthetic": {"seed": 3, "width": 96, "height": 64}},
        ],
        recipes=[{"number": 1, "name": "plate", "checks": [
            {"name": "surface", "kind": "point", "prompt": "Point to any surface defects.", "max": 0},
            {"name": "label", "kind": "qa", "question": "Is the label present?", "expect": "yes", "view": "side"},
        ]}],
    )  # fmt: skip

    async def scenario(station, plc):
        results = [await plc.cycle(n, 1, f"P{n}") for n in (1, 2, 3)]
        return results, station.cameras.cameras["top"].camera.last_frame.frame_id, station.status()["cameras"]

    results, last_id, cameras = asyncio.run(run_station_with_plc(config, scenario))
    assert [r.error_code for r in results] == [0, 0, 0]
    assert cameras["top"]["source"] == "genicam" and cameras["top"]["counters"]["frames"] >= 3
    db = sqlite3.connect(tmp_path / "data" / "inspections.db")
    rows = db.execute("select id, frame_id from inspections order by id").fetchall()
    views = db.execute("select inspection_id, view, frame_id, width, height from inspection_views order by 1, idx")
    by_part: dict[int, list] = {}
    for inspection_id, *view in views:
        by_part.setdefault(inspection_id, []).append(tuple(view))
    ids, seeds = [], []
    for inspection_id, frame_id in rows:
        top, side = by_part[inspection_id]
        assert top[0] == "top" and top[1] == frame_id and top[2:] == (512, 512)  # the fake's 512 x 512
        assert side[0] == "side" and side[2:] == (96, 64)
        ids.append(frame_id)
        seeds.append(side[1])  # the synthetic camera's id of a frame: the seed it rendered (from 3 on)
    assert seeds[0] >= 3 and seeds == sorted(set(seeds))
    assert ids[-1] == last_id
    assert all(b == (1 if a == 0xFFFF else a + 1) for a, b in zip(ids, ids[1:], strict=False))  # one per trigger
    checks = db.execute("select view from checks order by inspection_id, idx").fetchall()
    assert checks == [("top",), ("side",)] * 3
