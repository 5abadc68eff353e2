"""The address space after OPC 40100-1 (Machine Vision), as far as it fits this appliance.

Built in the station's own namespace (docs/opcua.md, "Deviations"): the node names and the
structure follow the companion specification (VisionSystem with its state machine, recipe
management and result management, StartSingleJob, a result event per inspection); the
types are simplified object and event types, not the specification's nodeset.

NodeIds are strings, stable across restarts: ``ns=<ns>;s=VisionSystem/ResultManagement/LastResult/Verdict``
(``ns`` is the index of the configured namespace URI; clients look it up by URI).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from asyncua import Node, Server, ua

from ..config import StationConfig

# VisionSystemStateMachine states (OPC 40100-1) and the numbers CurrentStateNumber carries.
STATES = {"Preoperational": 1, "Halted": 2, "Error": 3, "Operational": 4}
# Result states: the Modbus verdict codes (docs/plc.md), positive = a complete result.
RESULT_STATES = {"PASS": 1, "FAIL": 2, "ERROR": 3}

V = ua.VariantType

# (browse name, variant type, array) of LastResult and of the ResultReadyEventType's fields.
RESULT_FIELDS: list[tuple[str, ua.VariantType, bool]] = [
    ("ResultId", V.String, False), ("JobId", V.String, False), ("LogId", V.Int64, False),
    ("PartId", V.String, False), ("RecipeId", V.String, False), ("Trigger", V.String, False),
    ("Verdict", V.String, False), ("ResultState", V.Int32, False), ("ErrorCode", V.UInt16, False),
    ("Error", V.String, False), ("DefectCount", V.UInt32, False), ("FailedChecks", V.UInt32, False),
    ("CheckNames", V.String, True), ("CheckOutcomes", V.String, True), ("CheckReasons", V.String, True),
    ("CreationTime", V.DateTime, False), ("ProcessingTimeMs", V.Double, False),
]  # fmt: skip
ALARM_FIELDS: list[tuple[str, ua.VariantType, bool]] = [
    ("AlarmCode", V.String, False),
    ("AlarmState", V.String, False),
    ("User", V.String, False),
]
COUNTERS = [
    ("InspectionCount", "total"),
    ("PassCount", "PASS"),
    ("FailCount", "FAIL"),
    ("ErrorCount", "ERROR"),
    ("MissedTriggers", "missed_triggers"),
    ("RefusedTriggers", "refused_triggers"),
]


def _arg(name: str, vtype: ua.VariantType, description: str, array: bool = False) -> ua.Argument:
    arg = ua.Argument()
    arg.Name = name
    arg.DataType = ua.NodeId(vtype.value)
    arg.ValueRank = 1 if array else -1
    arg.ArrayDimensions = [0] if array else []
    arg.Description = ua.LocalizedText(description)
    return arg


def _default(vtype: ua.VariantType, array: bool) -> Any:
    if array:
        return []
    if vtype == V.DateTime:
        return datetime(1601, 1, 1, tzinfo=timezone.utc)  # OPC UA's "no time"
    return ua.get_default_value(vtype)


@dataclass
class VisionModel:
    """Handles on the nodes the server updates, and the event generators."""

    ns: int
    system: Node
    variables: dict[str, Node] = field(default_factory=dict)  # path below VisionSystem -> node
    methods: dict[str, Node] = field(default_factory=dict)  # browse name -> method node
    result_events: list[Any] = field(default_factory=list)  # generators: the VisionSystem and the Server
    alarm_events: list[Any] = field(default_factory=list)

    def var(self, path: str) -> Node:
        return self.variables[path]


class Builder:
    def __init__(self, server: Server, ns: int):
        self.server, self.ns = server, ns
        self.model: VisionModel | None = None

    def nid(self, path: str) -> ua.NodeId:
        return ua.NodeId(path, self.ns)

    async def obj(self, parent: Node, path: str, type_node: Node | None = None) -> Node:
        name = path.rsplit("/", 1)[-1]
        if type_node is None:
            return await parent.add_object(self.nid(path), ua.QualifiedName(name, self.ns))
        return await parent.add_object(self.nid(path), ua.QualifiedName(name, self.ns), objecttype=type_node.nodeid)

    async def var(self, parent: Node, path: str, vtype: ua.VariantType, value: Any = None, array: bool = False) -> Node:
        name = path.rsplit("/", 1)[-1]
        value = _default(vtype, array) if value is None else value
        node = await parent.add_variable(
            self.nid(path),
            ua.QualifiedName(name, self.ns),
            ua.Variant(value, vtype, is_array=array) if array else ua.Variant(value, vtype),
            datatype=ua.NodeId(vtype.value),
        )
        if array:
            await node.write_value_rank(1)
            await node.write_array_dimensions([0])
        self.model.variables[path.removeprefix("VisionSystem/")] = node
        return node

    async def method(
        self, parent: Node, path: str, func, inputs: list[ua.Argument], outputs: list[ua.Argument]
    ) -> Node:
        name = path.rsplit("/", 1)[-1]
        node = await parent.add_method(self.nid(path), ua.QualifiedName(name, self.ns), func, inputs, outputs)
        self.model.methods[name] = node
        return node

    async def event_type(self, name: str, fields: list[tuple[str, ua.VariantType, bool]]) -> Node:
        etype = await self.server.nodes.base_event_type.add_object_type(
            self.nid(f"Types/{name}"), ua.QualifiedName(name, self.ns)
        )
        for fname, vtype, array in fields:
            prop = await etype.add_property(
                self.nid(f"Types/{name}/{fname}"),
                ua.QualifiedName(fname, self.ns),
                ua.Variant(_default(vtype, array), vtype, is_array=array)
                if array
                else ua.Variant(_default(vtype, array), vtype),
                datatype=ua.NodeId(vtype.value),
            )
            if array:
                await prop.write_value_rank(1)
        return etype


async def build(
    server: Server, namespace: str, config: StationConfig, identity: dict[str, str], handlers: dict[str, Any]
) -> VisionModel:
    """Create the VisionSystem object with everything below it; ``handlers`` are the method
    callbacks (StartSingleJob, PrepareRecipe, GetRecipeList)."""
    ns = await server.register_namespace(namespace)
    b = Builder(server, ns)
    types = server.nodes.base_object_type
    system_type = await types.add_object_type(b.nid("Types/VisionSystemType"), ua.QualifiedName("VisionSystemType", ns))
    system = await b.obj(server.nodes.objects, "VisionSystem", system_type)
    b.model = model = VisionModel(ns, system)

    ident = await b.obj(system, "VisionSystem/Identification")
    for key, value in identity.items():
        await b.var(ident, f"VisionSystem/Identification/{key}", V.String, value)

    sm = await b.obj(system, "VisionSystem/VisionSystemStateMachine")
    await b.var(
        sm,
        "VisionSystem/VisionSystemStateMachine/CurrentState",
        V.LocalizedText,
        ua.LocalizedText("Preoperational", "en"),
    )
    await b.var(sm, "VisionSystem/VisionSystemStateMachine/CurrentStateNumber", V.UInt32, STATES["Preoperational"])
    await b.var(sm, "VisionSystem/VisionSystemStateMachine/OperationalState", V.String, "")
    await b.var(sm, "VisionSystem/VisionSystemStateMachine/ErrorReason", V.String, "")
    await b.method(
        sm,
        "VisionSystem/VisionSystemStateMachine/StartSingleJob",
        handlers["StartSingleJob"],
        [
            _arg("PartId", V.String, "part id, at most 20 characters (may be empty)"),
            _arg("RecipeId", V.String, "recipe number as text; empty: the active recipe"),
        ],
        [_arg("JobId", V.String, "the job's id; the ResultReadyEvent and LastResult carry it as JobId and ResultId")],
    )

    rm = await b.obj(system, "VisionSystem/RecipeManagement")
    recipes = await rm.add_folder(b.nid("VisionSystem/RecipeManagement/Recipes"), ua.QualifiedName("Recipes", ns))
    for r in config.recipes:
        base = f"VisionSystem/RecipeManagement/Recipes/Recipe_{r.number}"
        node = await b.obj(recipes, base)
        await b.var(node, f"{base}/RecipeId", V.String, str(r.number))
        await b.var(node, f"{base}/Name", V.String, r.name)
        await b.var(node, f"{base}/Checks", V.String, [c.name for c in r.checks], array=True)
    await b.var(rm, "VisionSystem/RecipeManagement/ActiveRecipeId", V.String, str(config.triggers.recipe))
    active = config.recipe(config.triggers.recipe)
    await b.var(rm, "VisionSystem/RecipeManagement/ActiveRecipeName", V.String, active.name if active else "")
    await b.method(
        rm,
        "VisionSystem/RecipeManagement/PrepareRecipe",
        handlers["PrepareRecipe"],
        [_arg("RecipeId", V.String, "recipe number as text")],
        [_arg("IsCompleted", V.Boolean, "true: the recipe is active")],
    )
    await b.method(
        rm,
        "VisionSystem/RecipeManagement/GetRecipeList",
        handlers["GetRecipeList"],
        [],
        [
            _arg("RecipeIds", V.String, "recipe numbers", array=True),
            _arg("Names", V.String, "recipe names", array=True),
        ],
    )

    res = await b.obj(system, "VisionSystem/ResultManagement")
    last = await b.obj(res, "VisionSystem/ResultManagement/LastResult")
    for name, vtype, array in RESULT_FIELDS:
        await b.var(last, f"VisionSystem/ResultManagement/LastResult/{name}", vtype, array=array)

    stats = await b.obj(system, "VisionSystem/Statistics")
    for name, _ in COUNTERS:
        await b.var(stats, f"VisionSystem/Statistics/{name}", V.UInt32, 0)
    await b.var(system, "VisionSystem/ActiveAlarms", V.String, [], array=True)

    result_type = await b.event_type("ResultReadyEventType", RESULT_FIELDS)
    alarm_type = await b.event_type("VisionAlarmEventType", ALARM_FIELDS)
    for emitter in (system, server.nodes.server):
        model.result_events.append(await server.get_event_generator(result_type, emitter))
        model.alarm_events.append(await server.get_event_generator(alarm_type, emitter))
    return model


def variant(value: Any, vtype: ua.VariantType, array: bool = False) -> ua.Variant:
    return ua.Variant(value, vtype, is_array=array) if array else ua.Variant(value, vtype)
