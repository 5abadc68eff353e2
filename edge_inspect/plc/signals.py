"""Named PLC signals, the default Modbus map, and its export (markdown, CSV, JSON).

The names are the contract with the PLC program; tables and 0-based addresses come from the
default map below, overridden per signal by the station config. The map is mode-aware: in server
mode the appliance's outputs sit in the tables a PLC can only read (discrete inputs, input
registers); in client mode the PLC is the server and the outputs must be written into its memory,
so they move to coils (from 16) and holding registers (from 100). See docs/plc.md.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, replace
from typing import Literal

from ..errors import UserError

Table = Literal["coil", "discrete_input", "holding_register", "input_register"]
Kind = Literal["bool", "uint16", "uint32", "text"]
Mode = Literal["server", "client"]
Direction = Literal["plc_to_appliance", "appliance_to_plc"]

BIT_TABLES = ("coil", "discrete_input")
# The tables a Modbus master can write: coils and holding registers. In server mode the master is
# the PLC (it writes the inputs); in client mode it is the appliance (it writes the outputs).
WRITABLE_BY_MASTER = ("coil", "holding_register")
CLIENT_COIL_BASE, CLIENT_REGISTER_BASE = 16, 100


@dataclass(frozen=True)
class Signal:
    name: str
    table: Table
    address: int  # 0-based
    count: int  # registers or bits
    type: Kind
    direction: Direction
    description: str

    @property
    def end(self) -> int:
        return self.address + self.count


def _s(name, table, address, count, kind, direction, description) -> Signal:
    return Signal(name, table, address, count, kind, direction, description)


IN, OUT = "plc_to_appliance", "appliance_to_plc"
PART_ID_REGISTERS = 10  # 20 ASCII characters
MAX_DEFECT_POSITIONS = 8

DEFAULT_MAP: tuple[Signal, ...] = (
    _s("trigger", "coil", 0, 1, "bool", IN, "rising edge starts an inspection"),
    _s("results_ack", "coil", 1, 1, "bool", IN, "PLC has read the results; drops results_valid"),
    _s("trigger_id", "holding_register", 0, 1, "uint16", IN, "echoed back as result_id"),
    _s("recipe", "holding_register", 1, 1, "uint16", IN, "recipe number to run"),
    _s("part_id", "holding_register", 2, PART_ID_REGISTERS, "text", IN, "part serial, 2 bytes per register (plc.part_id_encoding / _byte_order)"),
    _s("online", "discrete_input", 0, 1, "bool", OUT, "appliance running and connected"),
    _s("ready", "discrete_input", 1, 1, "bool", OUT, "a trigger now would be accepted"),
    _s("busy", "discrete_input", 2, 1, "bool", OUT, "inspection in progress"),
    _s("results_valid", "discrete_input", 3, 1, "bool", OUT, "result registers hold the latest inspection"),
    _s("pass", "discrete_input", 4, 1, "bool", OUT, "latest verdict PASS"),
    _s("fail", "discrete_input", 5, 1, "bool", OUT, "latest verdict FAIL"),
    _s("error", "discrete_input", 6, 1, "bool", OUT, "latest verdict ERROR, or an active fault"),
    _s("result_id", "input_register", 0, 1, "uint16", OUT, "trigger_id of the inspection these results belong to"),
    _s("verdict", "input_register", 1, 1, "uint16", OUT, "1 pass, 2 fail, 3 error"),
    _s("defect_count", "input_register", 2, 1, "uint16", OUT, "points found by the recipe's defect checks"),
    _s("failed_checks", "input_register", 3, 1, "uint16", OUT, "bit 0 set = check 1 failed, bit 1 = check 2, …"),
    _s("error_code", "input_register", 4, 1, "uint16", OUT, "0 none, 1 model, 2 camera, 3 missed trigger, 4 disk full, 5 recipe not configured, 6 internal"),
    _s("heartbeat", "input_register", 5, 1, "uint16", OUT, "+1 every second"),
    _s("inspection_count", "input_register", 6, 2, "uint32", OUT, "inspections since start (high word first)"),
    _s("cycle_ms", "input_register", 8, 1, "uint16", OUT, "trigger to results_valid of the latest inspection"),
    _s("missed_triggers", "input_register", 9, 1, "uint16", OUT, "triggers refused because busy"),
)  # fmt: skip

# Optional signals, in the map only when their option is on in station.yaml (plc.options).
OPTIONAL_MAP: dict[str, tuple[Signal, ...]] = {
    "result_buffer": (
        _s("results_overrun", "discrete_input", 7, 1, "bool", OUT, "a result was dropped: the buffer was full"),
        _s("results_queued", "input_register", 10, 1, "uint16", OUT, "results not yet acknowledged (shown + queued)"),
    ),
    "recipe_change": (
        _s("recipe_change", "coil", 2, 1, "bool", IN, "rising edge: switch to the recipe in `recipe`"),
        _s("recipe_change_done", "discrete_input", 8, 1, "bool", OUT, "switch done; drops with recipe_change"),
        _s("recipe_change_failed", "discrete_input", 9, 1, "bool", OUT, "switch refused; drops with recipe_change"),
        _s("recipe_active", "input_register", 11, 1, "uint16", OUT, "recipe that triggers run"),
    ),
    "identity": (
        _s("model_id", "input_register", 12, 2, "uint32", OUT, "first 8 hex digits of the model sha256"),
        _s("config_id", "input_register", 14, 2, "uint32", OUT, "first 8 hex digits of the station.yaml sha256"),
        _s("software_version", "input_register", 16, 4, "text", OUT, "edge-inspect version, e.g. 0.2.0"),
    ),
    "warning": (
        _s("warning", "discrete_input", 10, 1, "bool", OUT, "uncertain answer resolved by policy, or degraded"),
    ),
    # For a rework robot: where the first defects are, in 0.1 mm on the calibrated working plane
    # from the frame's top left. plc.options.defect_positions = N keeps the first N pairs.
    "defect_positions": (
        _s("defect_positions_valid", "input_register", 20, 1, "uint16", OUT,
           "how many defect_i_x/_y pairs hold a position for the latest result"),
        *(_s(f"defect_{i}_{axis}", "input_register", 21 + 2 * (i - 1) + (axis == "y"), 1, "uint16", OUT,
             f"defect {i}: {axis} in 0.1 mm from the frame's top left (0 when not valid)")
          for i in range(1, MAX_DEFECT_POSITIONS + 1) for axis in ("x", "y")),
    ),
}  # fmt: skip
OPTIONS = tuple(OPTIONAL_MAP)
SIGNAL_NAMES = tuple(s.name for s in DEFAULT_MAP)
OPTIONAL_NAMES = {s.name: option for option, signals in OPTIONAL_MAP.items() for s in signals}
DEFAULT_BY_NAME = {s.name: s for signals in (DEFAULT_MAP, *OPTIONAL_MAP.values()) for s in signals}


class MapError(UserError, ValueError):
    """A register map that cannot work: names the signal(s) and the clash."""


@dataclass(frozen=True)
class SignalMap:
    signals: tuple[Signal, ...]

    def __getitem__(self, name: str) -> Signal:
        for s in self.signals:
            if s.name == name:
                return s
        raise KeyError(name)

    def in_table(self, table: str) -> list[Signal]:
        return [s for s in self.signals if s.table == table]

    def span(self, table: str) -> int:
        """Number of addresses a server needs in ``table`` (0 .. highest end)."""
        return max((s.end for s in self.in_table(table)), default=0)


def _kept(signal: Signal, defect_positions: int) -> bool:
    """Of the defect_positions option's signals, the count register and the first N pairs."""
    parts = signal.name.split("_")
    return not (parts[0] == "defect" and parts[1].isdigit()) or int(parts[1]) <= defect_positions


def default_map(
    mode: Mode = "server", options: frozenset[str] | set[str] = frozenset(), defect_positions: int = 0
) -> tuple[Signal, ...]:
    """The default map of a mode (with the signals of ``options``): in client mode discrete inputs →
    coils from 16 and input registers → holding registers from 100 (a PLC's own memory is writable
    there by the appliance). ``defect_positions`` (with the option of that name) keeps that many pairs."""
    signals = DEFAULT_MAP + tuple(
        s for option in OPTIONS if option in options for s in OPTIONAL_MAP[option] if _kept(s, defect_positions)
    )
    if mode == "server":
        return signals
    moved: dict[str, tuple[Table, int]] = {
        "discrete_input": ("coil", CLIENT_COIL_BASE),
        "input_register": ("holding_register", CLIENT_REGISTER_BASE),
    }
    return tuple(
        replace(s, table=moved[s.table][0], address=moved[s.table][1] + s.address) if s.table in moved else s
        for s in signals
    )


def build_map(
    overrides: dict[str, dict] | None = None,
    mode: Mode = "server",
    options: frozenset[str] | set[str] = frozenset(),
    defect_positions: int = 0,
) -> SignalMap:
    """The default map of ``mode`` and ``options`` with per-signal overrides of table and/or address;
    checked for tables that cannot work in that mode and for clashes."""
    overrides = overrides or {}
    unknown = sorted(set(overrides) - set(SIGNAL_NAMES) - set(OPTIONAL_NAMES))
    if unknown:
        raise MapError(
            f"unknown signal(s) {', '.join(unknown)}; known: {', '.join(SIGNAL_NAMES + tuple(OPTIONAL_NAMES))}"
        )
    off = sorted(n for n in overrides if n in OPTIONAL_NAMES and OPTIONAL_NAMES[n] not in options)
    if off:
        raise MapError(f"signal {off[0]} belongs to option {OPTIONAL_NAMES[off[0]]}, which is off in plc.options")
    beyond = sorted(n for n in overrides if n in OPTIONAL_NAMES and not _kept(DEFAULT_BY_NAME[n], defect_positions))
    if beyond:
        raise MapError(f"signal {beyond[0]} is beyond plc.options.defect_positions ({defect_positions})")
    signals = []
    for s in default_map(mode, options, defect_positions):
        change = overrides.get(s.name, {})
        table = change.get("table", s.table)
        if (s.type == "bool") != (table in BIT_TABLES):
            raise MapError(f"signal {s.name} is {s.type}; it cannot live in table {table}")
        if mode == "server" and s.direction == IN and table not in WRITABLE_BY_MASTER:
            raise MapError(f"signal {s.name} is written by the PLC; table {table} is read-only for it")
        if mode == "client" and s.direction == OUT and table not in WRITABLE_BY_MASTER:
            raise MapError(
                f"signal {s.name} is written by the appliance, which is the Modbus client in client mode; "
                f"table {table} is read-only for a client (use coil or holding_register)"
            )
        signals.append(replace(s, table=table, address=int(change.get("address", s.address))))
    check_overlaps(signals)
    return SignalMap(tuple(signals))


def check_overlaps(signals: list[Signal]) -> None:
    for i, a in enumerate(signals):
        if a.address < 0 or a.end > 65536:
            raise MapError(f"signal {a.name}: address {a.address} outside 0..65535")
        for b in signals[i + 1 :]:
            if a.table == b.table and a.address < b.end and b.address < a.end:
                raise MapError(
                    f"signals {a.name} and {b.name} overlap in {a.table} at address {max(a.address, b.address)}"
                )


def export_map(signal_map: SignalMap, fmt: str = "md") -> str:
    rows = [asdict(s) for s in signal_map.signals]
    if fmt == "json":
        return json.dumps({"signals": rows}, indent=2) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue()
    if fmt == "md":
        lines = [
            "| name | table | address (0-based) | count | type | direction | description |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['name']} | {r['table']} | {r['address']} | {r['count']} | {r['type']} | {r['direction']} | "
            f"{r['description']} |"
            for r in rows
        ]
        return "\n".join(lines) + "\n"
    raise ValueError(f"unknown format {fmt!r}; use md, csv or json")
