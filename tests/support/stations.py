"""Helpers for station tests: configs on disk, free ports."""

from __future__ import annotations

import socket
from pathlib import Path

import yaml

from edge_inspect.config import load_config
from edge_inspect.daemon import build_station
from edge_inspect.plc.simulated import SimulatedPLC


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_station(tmp_path: Path, bundle: Path, **sections) -> Path:
    """A station.yaml with a synthetic camera and the demo recipe; ``sections`` replace/extend parts
    (None leaves a section out: ``camera=None, cameras=[...]``)."""
    config = {
        "station": {"name": "test-station"},
        "camera": {"source": "synthetic", "synthetic": {"seed": 5}},
        "model": {"bundle": str(bundle), "max_new_tokens": 8},
        "recipes": [{
            "number": 1, "name": "plate", "checks": [
                {"name": "surface", "kind": "point", "prompt": "Point to any surface defects.", "max": 0},
                {"name": "screws", "kind": "count", "prompt": "Point to the screws.", "expected": 4},
                {"name": "label", "kind": "qa", "question": "Is the label present?", "expect": "yes"},
            ]}],
        "plc": {"port": free_port()},
        "storage": {"dir": str(tmp_path / "data"), "save_pass_every": 1},
    }  # fmt: skip
    for key, value in sections.items():
        if value is None:
            config.pop(key, None)
        elif isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


async def run_station(config_path: Path, scenario, **build):
    """Start the station of ``config_path``, run ``scenario(station)``, always stop it. ``build``: what
    build_station takes besides the config (a model or an inspector made by the test)."""
    config, sha = load_config(config_path)
    station = build_station(config, sha, config_path.parent, config_path=config_path, **build)
    await station.start()
    try:
        return await scenario(station)
    finally:
        await station.stop()


async def run_station_with_plc(config_path: Path, scenario):
    """As run_station, with a simulated PLC connected over Modbus TCP: ``scenario(station, plc)``."""

    async def with_plc(station):
        plc = SimulatedPLC(station.signal_map, port=station.config.plc.port)
        await plc.connect()
        try:
            return await scenario(station, plc)
        finally:
            plc.close()

    return await run_station(config_path, with_plc)
