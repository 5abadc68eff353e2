"""A synthetic line can start producing a defect kind the demo student never saw
(camera.synthetic.defect_kinds), through the station file and the camera it builds."""

from __future__ import annotations

import pytest

from edge_inspect.camera.sources import SyntheticSource, source_from_config
from edge_inspect.config import load_config
from edge_inspect.errors import UserError
from edge_inspect.sim import ALL_DEFECT_KINDS, DEFECT_KINDS

from ..support.station_yaml import BASE


def _station(tmp_path, tiny_bundle, synthetic: str):
    path = tmp_path / "station.yaml"
    text = BASE.replace("  source: synthetic", f"  source: synthetic\n  synthetic: {synthetic}")
    path.write_text(text.replace("{bundle}", str(tiny_bundle)))
    return path


def _kinds(camera: SyntheticSource, parts: int) -> list[str]:
    kinds = []
    for _ in range(parts):
        camera.read()
        assert camera.last_part is not None
        kinds += [o.kind for o in camera.last_part.defects]
    return kinds


def test_the_line_produces_the_kinds_the_station_file_names(tmp_path, tiny_bundle):
    config, _ = load_config(_station(tmp_path, tiny_bundle, "{defect_rate: 0.6, defect_kinds: [chip]}"))
    assert config.camera.synthetic.defect_kinds == ["chip"]
    camera = source_from_config(config.camera)
    assert isinstance(camera, SyntheticSource)
    kinds = _kinds(camera, 60)
    assert kinds and set(kinds) == {"chip"}

    config, _ = load_config(_station(tmp_path, tiny_bundle, "{defect_kinds: [scratch, crack]}"))  # the generator's mix
    assert set(_kinds(source_from_config(config.camera), 40)) == {"scratch", "crack"}


def test_unset_the_line_draws_the_kinds_it_always_drew(tmp_path, tiny_bundle):
    config, _ = load_config(_station(tmp_path, tiny_bundle, "{defect_rate: 0.6}"))
    assert config.camera.synthetic.defect_kinds is None
    assert set(_kinds(source_from_config(config.camera), 60)) == set(DEFECT_KINDS)


def test_an_unknown_kind_is_refused_with_its_line(tmp_path, tiny_bundle):
    with pytest.raises(UserError, match=r"station.yaml:5: camera.synthetic.defect_kinds.0"):
        load_config(_station(tmp_path, tiny_bundle, "{defect_kinds: [rust]}"))


def test_the_config_knows_every_kind_of_the_generator():
    from typing import get_args

    from edge_inspect.config.devices import DefectKind

    assert get_args(DefectKind) == ALL_DEFECT_KINDS


def test_the_log_names_each_synthetic_frame_by_its_seed_and_the_camera_renders_it_again(tmp_path, tiny_bundle):
    """The seam a script playing QA from ground truth uses: the inspection's frame_id is the seed the
    synthetic camera rendered, and ``part(seed)`` gives that very frame with its truth."""
    import asyncio
    import sqlite3

    import cv2
    import numpy as np

    from ..support.stations import run_station, write_station

    synthetic = {"seed": 700, "defect_rate": 0.6, "defect_kinds": ["chip"]}
    path = write_station(tmp_path, tiny_bundle, camera={"source": "synthetic", "synthetic": synthetic},
                         plc={"enabled": False})  # fmt: skip

    async def scenario(station):
        for _ in range(3):
            await station.inspect(1)

    asyncio.run(run_station(path, scenario))
    db = sqlite3.connect(tmp_path / "data" / "inspections.db")
    rows = db.execute("select frame_id, image_path from inspections order by id").fetchall()
    db.close()
    assert [r[0] for r in rows] == [700, 701, 702]
    camera = SyntheticSource(700, 320, 240, 0.6, ["chip"])
    for seed, image in rows:
        kept = cv2.imread(str(tmp_path / "data" / image)).astype(np.int16)
        again = camera.part(seed).image.astype(np.int16)
        others = camera.part(seed + 10).image.astype(np.int16)
        assert np.abs(kept - again).mean() < 3 < np.abs(kept - others).mean()  # the kept JPEG is that part
