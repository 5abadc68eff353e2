"""A station whose model.bundle is `production` runs that version and logs its id in every row; a
restart after `promote` runs (and logs) the new production. Two versions never share an engine cache."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from edge_inspect.modelstore import ModelStore
from edge_inspect.vlm.backends import provider_options
from edge_inspect.vlm.engines import Environment

from ..support.stations import run_station, write_station
from .helpers import other_version


def _logged_models(data: Path) -> list[str]:
    with sqlite3.connect(data / "inspections.db") as db:
        return [row[0] for row in db.execute("select model_sha256 from inspections order by id")]


def test_a_station_on_production_logs_the_version_that_judged_each_part(tmp_path, tiny_bundle):
    store = ModelStore(tmp_path / "data" / "models")
    a = store.add(tiny_bundle, "u", alias="production").version
    b = store.add(other_version(tiny_bundle, tmp_path / "b", "b"), "u", alias="candidate").version
    config = write_station(tmp_path, Path("production"), model={"max_new_tokens": 2})

    async def two_parts(station):
        assert station.model.bundle.path == a.path and station.model_sha256 == a.id
        for part in ("P1", "P2"):
            await station.inspect(1, part_id=part)

    asyncio.run(run_station(config, two_parts))
    assert _logged_models(tmp_path / "data") == [a.id, a.id]

    store.promote("candidate", "u")  # promoted while the station is stopped: the next start runs it
    asyncio.run(run_station(config, lambda station: station.inspect(1, part_id="P3")))
    assert _logged_models(tmp_path / "data") == [a.id, a.id, b.id]


def test_two_versions_never_share_an_engine_cache_folder(tmp_path, tiny_bundle):
    store = ModelStore(tmp_path / "models")
    versions = [store.add(other_version(tiny_bundle, tmp_path / n, n), "u").version.id for n in "ab"]
    providers = ["TensorrtExecutionProvider", "CPUExecutionProvider"]
    orin = Environment("10.3.0", "Orin", "8.7", "36.4.3", "1.23.0")
    folders = {
        provider_options(providers, version, tmp_path / "cache", env, build=True)[0][0][1]["trt_engine_cache_path"]
        for version in versions
        for env in (orin, Environment("10.3.0", "Orin", "8.7", "36.4.3", "1.24.1"))  # another ONNX Runtime
    }
    assert len(folders) == 4
