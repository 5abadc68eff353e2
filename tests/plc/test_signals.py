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
    assert {
        "trigger",
        "trigger_id",
        "recipe",
        "part_id",
        "results_ack",
        "online",
        "ready",
        "busy",
        "results_valid",
        "pass",
        "fail",
        "error",
        "result_id",
        "verdict",
        "defect_count",
        "failed_checks",
        "error_code",
        "heartbeat",
        "inspection_count",
        "cycle_ms",
    } <= names


def test_override_moves_a_signal():
    m = build_map({"trigger": {"address": 100}, "verdict": {"table": "holding_register", "address": 50}})
    assert m["trigger"].address == 100 and m["verdict"].table == "holding_register"


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"trigger": {"address": 1}}, "overlap"),
        ({"part_id": {"address": 0}}, "overlap"),
        ({"ready": {"table": "input_register"}}, "cannot live"),
        ({"trigger_id": {"table": "input_register"}}, "read-only"),
        ({"nonsense": {"address": 3}}, "unknown signal"),
        ({"part_id": {"address": 65530}}, "outside"),
    ],
)
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
    out = subprocess.run(
        [sys.executable, "-m", "edge_inspect.cli", "modbus", "map", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    signals = {s["name"]: s for s in json.loads(out)["signals"]}
    assert signals["inspection_count"] == {
        **signals["inspection_count"],
        "table": "input_register",
        "count": 2,
        "type": "uint32",
        "direction": "appliance_to_plc",
    }


def test_encodings_round_trip():
    m = build_map()
    assert decode(m["part_id"], encode(m["part_id"], "SN-12345")) == "SN-12345"
    assert m["part_id"].type == "text"
    assert decode(m["inspection_count"], encode(m["inspection_count"], 70000)) == 70000
    assert encode(m["inspection_count"], 70000) == [1, 4464]
    assert len(encode(m["part_id"], "X" * 50)) == m["part_id"].count


def test_client_mode_default_map_puts_outputs_in_writable_tables():
    m = build_map(mode="client")
    outputs = [s for s in m.signals if s.direction == "appliance_to_plc"]
    assert outputs and all(s.table in ("coil", "holding_register") for s in outputs)
    assert (m["results_valid"].table, m["results_valid"].address) == ("coil", 19)
    assert (m["result_id"].table, m["result_id"].address) == ("holding_register", 100)
    with pytest.raises(MapError, match="read-only for a client"):
        build_map({"ready": {"table": "discrete_input", "address": 1}}, mode="client")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "edge_inspect.cli", *args], capture_output=True, text=True, timeout=60)


def test_config_validate_refuses_a_read_only_output_in_client_mode(tmp_path):
    from ..support.errors import assert_one_line_error
    from ..support.plc_harness import fake_station_config

    path = fake_station_config(tmp_path, plc={"mode": "client", "map": {"verdict": {"table": "input_register"}}})
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if text.strip() == "verdict:")
    assert_one_line_error(_cli("config", "validate", str(path)), f"station.yaml:{line}:", "verdict", "read-only")
    # the same map is fine in server mode
    path = fake_station_config(tmp_path, plc={"mode": "server", "map": {"verdict": {"table": "input_register"}}})
    assert _cli("config", "validate", str(path)).returncode == 0


def test_modbus_map_prints_the_effective_map_of_a_config(tmp_path):
    from ..support.plc_harness import fake_station_config

    path = fake_station_config(tmp_path, plc={"mode": "client", "map": {"trigger": {"address": 40}}})
    out = _cli("modbus", "map", "--config", str(path), "--format", "json")
    assert out.returncode == 0, out.stderr
    signals = {s["name"]: s for s in json.loads(out.stdout)["signals"]}
    assert (signals["trigger"]["table"], signals["trigger"]["address"]) == ("coil", 40)
    assert (signals["ready"]["table"], signals["ready"]["address"]) == ("coil", 17)
    assert signals["cycle_ms"]["table"] == "holding_register"
