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
