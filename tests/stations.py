"""Helpers for station tests: configs on disk, free ports."""

from __future__ import annotations

import socket
from pathlib import Path

import yaml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_station(tmp_path: Path, bundle: Path, **sections) -> Path:
    """A station.yaml with a synthetic camera and the demo recipe; ``sections`` replace/extend parts."""
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
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
