"""The register map: defaults, overrides, clashes refused, export formats."""

import csv
import io
import json
import subprocess
import sys

import pytest

from edge_inspect.plc.modbus import decode, encode
from edge_inspect.plc.signals import DEFAULT_MAP, MapError, build_map, export_map


def test_default_map_has_no_overlaps_and_every_design_signal():
    names = {s.name for s in build_map().signals}
    assert {"trigger", "trigger_id", "recipe", "part_id", "results_ack", "online", "ready", "busy", "results_valid",
            "pass", "fail", "error", "result_id", "verdict", "defect_count", "failed_checks", "error_code",
            "heartbeat", "inspection_count", "cycle_ms"} <= names


def test_override_moves_a_signal():
    m = build_map({"trigger": {"address": 100}, "verdict": {"table": "holding_register", "address": 50}})
    assert m["trigger"].address == 100 and m["verdict"].table == "holding_register"


@pytest.mark.parametrize("overrides,message", [
    ({"trigger": {"address": 1}}, "overlap"),
    ({"part_id": {"address": 0}}, "overlap"),
    ({"ready": {"table": "input_register"}}, "cannot live"),
    ({"trigger_id": {"table": "input_register"}}, "read-only"),
    ({"nonsense": {"address": 3}}, "unknown signal"),
    ({"part_id": {"address": 65530}}, "outside"),
])
def test_bad_maps_are_refused(overrides, message):
    with pytest.raises(MapError, match=message):
        build_map(overrides)


def test_exports():
    m = build_map()
    data = json.loads(export_map(m, "json"))["signals"]
    assert len(data) == len(DEFAULT_MAP)
    assert set(data[0]) >= {"name", "table", "address", "count", "type", "direction"}
    rows = list(csv.DictReader(io.StringIO(export_map(m, "csv"))))
    assert rows[0]["name"] == "trigger" and rows[0]["address"] == "0"
    assert export_map(m, "md").startswith("| name |")


def test_cli_map_json():
    out = subprocess.run([sys.executable, "-m", "edge_inspect.cli", "modbus", "map", "--format", "json"],
                         capture_output=True, text=True, check=True).stdout
    signals = {s["name"]: s for s in json.loads(out)["signals"]}
    assert signals["inspection_count"] == {**signals["inspection_count"], "table": "input_register", "count": 2,
                                           "type": "uint32", "direction": "appliance_to_plc"}


def test_encodings_round_trip():
    m = build_map()
    assert decode(m["part_id"], encode(m["part_id"], "SN-12345")) == "SN-12345"
    assert decode(m["inspection_count"], encode(m["inspection_count"], 70000)) == 70000
    assert encode(m["inspection_count"], 70000) == [1, 4464]
    assert len(encode(m["part_id"], "X" * 50)) == m["part_id"].count
