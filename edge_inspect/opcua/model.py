"""The address space: OPC 40100-1 (Machine Vision) on the official nodeset, and the station's extensions.

``nodesets/Opc.Ua.MachineVision.NodeSet2.xml`` (OPCFoundation/UA-Nodeset, unchanged; it needs only
the base nodeset) is imported; the VisionSystem is an instance of its ``VisionSystemType`` with the
components this appliance implements (docs/opcua.md, "Node tree"). Instance nodes live in the
station's namespace (``urn:edge-inspect:vision``) with string NodeIds made of their browse path
(asyncua's instantiate: ``ns=2;s=VisionSystem.VisionStateMachine.CurrentState``); the browse names
of the specification's nodes are in its namespace, those of the station's extensions in the
station's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from asyncua import Node, Server, ua
from asyncua.common.instantiate_util import instantiate

from ..config import StationConfig
from .arguments import checked, expected_arguments

NODESET = Path(__file__).resolve().parent / "nodesets" / "Opc.Ua.MachineVision.NodeSet2.xml"
MV_URI = "http://opcfoundation.org/UA/MachineVision"
# NodeIds of the nodeset's types (its NodeIds.csv): the ones this server instantiates.
MV_TYPES = {
    "VisionSystemType": 1003,
    "VisionAutomaticModeStateMachineType": 1021,
    "RecipeManagementType": 1004,
    "ResultManagementType": 1007,
    "ConfigurationManagementType": 1006,
    "ResultReadyEventType": 1024,
}
# Optional components instantiated below the VisionSystem (path, type); the mandatory ones come with it.
COMPONENTS = [
    ("VisionStateMachine.AutomaticModeStateMachine", "VisionAutomaticModeStateMachineType"),
    ("RecipeManagement", "RecipeManagementType"),
    ("ResultManagement", "ResultManagementType"),
    ("ConfigurationManagement", "ConfigurationManagementType"),
]
SELECT_MODE_AUTOMATIC = 7095  # VisionStateMachineType's optional SelectModeAutomatic method (instance declaration)

# VisionStateMachine states; the nodeset's StateNumber of each is on its state node.
STATES = ("Preoperational", "Halted", "Error", "Operational")
# Result states: the Modbus verdict codes (docs/plc.md), positive = a complete result.
RESULT_STATES = {"PASS": 1, "FAIL": 2, "ERROR": 3}

V = ua.VariantType

# The station's own fields of LastResult and of its result event (besides the specification's).
RESULT_FIELDS: list[tuple[str, ua.VariantType, bool]] = [
    ("ResultId", V.String, False), ("JobId", V.String, False), ("LogId", V.Int64, False),
    ("PartId", V.String, False), ("RecipeId", V.String, False), ("Trigger", V.String, False),
    ("Verdict", V.String, False), ("ResultState", V.Int32, False), ("ErrorCode", V.UInt16, False),
    ("Error", V.String, False), ("DefectCount", V.UInt32, False), ("FailedChecks", V.UInt32, False),
    ("CheckNames", V.String, True), ("CheckOutcomes", V.String, True), ("CheckReasons", V.String, True),
    ("CreationTime", V.DateTime, False), ("ProcessingTimeMs", V.Double, False),
]  # fmt: skip
# Fields the specification's ResultReadyEventType has already (ResultId, JobId, PartId as its
# structures, whose Id is the same text): the station's result event does not repeat them.
EVENT_SPEC_FIELDS = {"ResultId", "JobId", "PartId", "ResultState", "CreationTime"}
# The nodeset's ResultReadyEventType fields have no values, from which asyncua takes their types.
SPEC_EVENT_TYPES = {
    "CreationTime": V.DateTime, "IsPartial": V.Boolean, "IsSimulated": V.Boolean, "ResultState": V.Int32,
    "InternalConfigurationId": V.ExtensionObject, "ExternalConfigurationId": V.ExtensionObject,
    "InternalRecipeId": V.ExtensionObject, "ExternalRecipeId": V.ExtensionObject, "ResultContent": V.Variant,
}  # fmt: skip
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

    ns: int  # the station's namespace
    mv: int  # the Machine Vision namespace
    system: Node
    variables: dict[str, Node] = field(default_factory=dict)  # path below VisionSystem -> node
    methods: dict[str, Node] = field(default_factory=dict)  # path below VisionSystem -> method node
    states: dict[str, ua.NodeId] = field(default_factory=dict)  # VisionStateMachine state -> its node
    auto_states: dict[str, ua.NodeId] = field(default_factory=dict)  # AutomaticModeStateMachine state -> node
    result_events: list[Any] = field(default_factory=list)  # generators: the VisionSystem and the Server
    alarm_events: list[Any] = field(default_factory=list)

    def var(self, path: str) -> Node:
        return self.variables[path]


class Builder:
    def __init__(self, server: Server, model: VisionModel):
        self.server, self.model, self.ns = server, model, model.ns

    def nid(self, path: str) -> ua.NodeId:
        return ua.NodeId(path, self.ns)

    def node(self, path: str) -> Node:
        return self.server.get_node(self.nid(f"VisionSystem.{path}"))

    async def obj(self, parent: Node, path: str) -> Node:
        return await parent.add_object(self.nid(path), ua.QualifiedName(path.rsplit(".", 1)[-1], self.ns))

    async def var(self, parent: Node, path: str, vtype: ua.VariantType, value: Any = None, array: bool = False) -> Node:
        name = path.rsplit(".", 1)[-1]
        value = _default(vtype, array) if value is None else value
        node = await parent.add_variable(
            self.nid(path),
            ua.QualifiedName(name, self.ns),
            variant(value, vtype, array),
            datatype=ua.NodeId(vtype.value),
        )
        if array:
            await node.write_value_rank(1)
            await node.write_array_dimensions([0])
        self.model.variables[path.removeprefix("VisionSystem.")] = node
        return node

    async def link(self, path: str, func) -> None:
        """The handler of a method node (the specification's or the station's), behind the argument checks."""
        node = self.node(path)
        self.server.link_method(
            node, checked(path.rsplit(".", 1)[-1], await expected_arguments(self.server, node), func)
        )
        self.model.methods[path] = node

    async def own_method(self, parent: Node, path: str, func, inputs: list, outputs: list) -> None:
        name = path.rsplit(".", 1)[-1]
        await parent.add_method(self.nid(path), ua.QualifiedName(name, self.ns), None, inputs, outputs)
        await self.link(path.removeprefix("VisionSystem."), func)

    async def event_type(self, base: Node, name: str, fields: list[tuple[str, ua.VariantType, bool]]) -> Node:
        etype = await base.add_object_type(self.nid(f"Types.{name}"), ua.QualifiedName(name, self.ns))
        for fname, vtype, array in fields:
            prop = await etype.add_property(
                self.nid(f"Types.{name}.{fname}"),
                ua.QualifiedName(fname, self.ns),
                variant(_default(vtype, array), vtype, array),
                datatype=ua.NodeId(vtype.value),
            )
            if array:
                await prop.write_value_rank(1)
        return etype


async def _state_nodes(parent: Node) -> dict[str, ua.NodeId]:
    """The state objects (FiniteStateType's StateType subtypes) below ``parent``, by name."""
    out = {}
    for child in await parent.get_children(refs=ua.ObjectIds.HasComponent, nodeclassmask=ua.NodeClass.Object):
        tdef = await child.read_type_definition()
        if tdef in (ua.NodeId(ua.ObjectIds.StateType), ua.NodeId(ua.ObjectIds.InitialStateType)):
            out[(await child.read_browse_name()).Name] = child.nodeid
    return out


async def _decode_field_less_subtypes(server: Server, mv: int) -> None:
    """asyncua gives a structure subtype without fields of its own (RecipeIdExternalDataType,
    RecipeIdInternalDataType, ConfigurationIdDataType) its base's class but does not decode its
    encoding: a client that sends one (node-opcua does) would get BadTypeMismatch. Its binary
    encoding is decoded as the base class (encoding stays the base's)."""
    base = server.get_node(ua.NodeId(ua.ObjectIds.Structure))
    todo = list(await base.get_children(refs=ua.ObjectIds.HasSubtype))
    while todo:
        dtype = todo.pop()
        todo += await dtype.get_children(refs=ua.ObjectIds.HasSubtype)
        if dtype.nodeid.NamespaceIndex != mv or dtype.nodeid in ua.extension_objects_by_datatype:
            continue
        cls = getattr(ua, (await dtype.read_browse_name()).Name, None)
        for enc in await dtype.get_referenced_nodes(refs=ua.ObjectIds.HasEncoding):
            if cls is not None and (await enc.read_browse_name()).Name == "Default Binary":
                ua.extension_objects_by_typeid.setdefault(enc.nodeid, cls)


async def _add_station_extensions(
    b: Builder,
    ns: int,
    system: Node,
    vsm: Node,
    config: StationConfig,
    identity: dict[str, str],
    handlers: dict[str, Any],
) -> None:
    """The station's own nodes (its namespace ``ns``): the error reason, identification, recipes,
    the last result, statistics and active alarms."""
    await b.var(vsm, "VisionSystem.VisionStateMachine.ErrorReason", V.String, "")
    ident = await b.obj(system, "VisionSystem.Identification")
    for key, value in identity.items():
        await b.var(ident, f"VisionSystem.Identification.{key}", V.String, value)

    rm = b.node("RecipeManagement")
    recipes = await rm.add_folder(b.nid("VisionSystem.RecipeManagement.Recipes"), ua.QualifiedName("Recipes", ns))
    for r in config.recipes:
        base = f"VisionSystem.RecipeManagement.Recipes.Recipe_{r.number}"
        node = await b.obj(recipes, base)
        await b.var(node, f"{base}.RecipeId", V.String, str(r.number))
        await b.var(node, f"{base}.Name", V.String, r.name)
        await b.var(node, f"{base}.Checks", V.String, [c.name for c in r.checks], array=True)
    await b.var(rm, "VisionSystem.RecipeManagement.ActiveRecipeId", V.String, str(config.triggers.recipe))
    active = config.recipe(config.triggers.recipe)
    await b.var(rm, "VisionSystem.RecipeManagement.ActiveRecipeName", V.String, active.name if active else "")
    await b.own_method(
        rm,
        "VisionSystem.RecipeManagement.GetRecipeList",
        handlers["VisionSystem.RecipeManagement.GetRecipeList"],
        [],
        [_arg("RecipeIds", V.String, "recipe numbers", array=True), _arg("Names", V.String, "recipe names", True)],
    )

    last = await b.obj(b.node("ResultManagement"), "VisionSystem.ResultManagement.LastResult")
    for name, vtype, array in RESULT_FIELDS:
        await b.var(last, f"VisionSystem.ResultManagement.LastResult.{name}", vtype, array=array)
    stats = await b.obj(system, "VisionSystem.Statistics")
    for name, _ in COUNTERS:
        await b.var(stats, f"VisionSystem.Statistics.{name}", V.UInt32, 0)
    await b.var(system, "VisionSystem.ActiveAlarms", V.String, [], array=True)


async def build(
    server: Server, namespace: str, config: StationConfig, identity: dict[str, str], handlers: dict[str, Any]
) -> VisionModel:
    """Import the nodeset, instantiate the VisionSystem and add the station's extensions; ``handlers``
    are the method callbacks by path below the VisionSystem (e.g. ``RecipeManagement.PrepareRecipe``)."""
    ns = await server.register_namespace(namespace)  # first: the station's namespace keeps index 2
    await server.import_xml(str(NODESET))
    mv = await server.get_namespace_index(MV_URI)
    await _decode_field_less_subtypes(server, mv)
    mv_type = {name: server.get_node(ua.NodeId(i, mv)) for name, i in MV_TYPES.items()}
    system_id = ua.NodeId("VisionSystem", ns)
    system = (
        await instantiate(
            server.nodes.objects,
            mv_type["VisionSystemType"],
            nodeid=system_id,
            bname=ua.QualifiedName("VisionSystem", ns),
            instantiate_optional=False,
        )
    )[0]
    model = VisionModel(ns, mv, system)
    b = Builder(server, model)
    for path, type_name in COMPONENTS:
        parent, name = (f"VisionSystem.{path}".rsplit(".", 1)[0], path.rsplit(".", 1)[-1])
        await instantiate(
            server.get_node(b.nid(parent)),
            mv_type[type_name],
            nodeid=b.nid(f"VisionSystem.{path}"),
            bname=ua.QualifiedName(name, mv),
            instantiate_optional=False,
        )
    vsm = b.node("VisionStateMachine")
    await instantiate(
        vsm,
        server.get_node(ua.NodeId(SELECT_MODE_AUTOMATIC, mv)),
        nodeid=b.nid("VisionSystem.VisionStateMachine.SelectModeAutomatic"),
        bname=ua.QualifiedName("SelectModeAutomatic", mv),
    )
    model.states = await _state_nodes(vsm)
    model.auto_states = await _state_nodes(mv_type["VisionAutomaticModeStateMachineType"])
    for sm in ("VisionStateMachine", "VisionStateMachine.AutomaticModeStateMachine"):
        model.variables[f"{sm}.CurrentState"] = b.node(f"{sm}.CurrentState")
        model.variables[f"{sm}.CurrentState.Id"] = b.node(f"{sm}.CurrentState.Id")
    for path in ("ConfigurationManagement.ActiveConfiguration",):
        model.variables[path] = b.node(path)
    for path, func in handlers.items():
        if path.startswith("VisionSystem."):
            continue  # the station's own methods, added below
        await b.link(path, func)

    await _add_station_extensions(b, ns, system, vsm, config, identity, handlers)

    own_fields = [f for f in RESULT_FIELDS if f[0] not in EVENT_SPEC_FIELDS]
    result_type = await b.event_type(mv_type["ResultReadyEventType"], "VisionResultReadyEventType", own_fields)
    alarm_type = await b.event_type(server.nodes.base_event_type, "VisionAlarmEventType", ALARM_FIELDS)
    for emitter in (system, server.nodes.server):
        model.result_events.append(gen := await server.get_event_generator(result_type, emitter))
        gen.event.data_types.update(SPEC_EVENT_TYPES)
        model.alarm_events.append(await server.get_event_generator(alarm_type, emitter))
    return model


def variant(value: Any, vtype: ua.VariantType, array: bool = False) -> ua.Variant:
    return ua.Variant(value, vtype, is_array=array) if array else ua.Variant(value, vtype)
