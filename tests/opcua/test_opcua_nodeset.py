"""The server against the Machine Vision nodeset itself (the vendored Opc.Ua.MachineVision.NodeSet2.xml):
every Mandatory node of the types the server implements, found by an asyncua client with its browse
name and its type; what is not found is exactly docs/opcua.md's list of deviations from the nodeset."""

from __future__ import annotations

import asyncio
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from asyncua import ua

from edge_inspect.opcua.model import MV_URI, NODESET

from ..support.opcua_harness import node, opcua_config, running, session
from ..support.paths import REPO_ROOT

DOCS = REPO_ROOT / "docs" / "opcua.md"
U = "{http://opcfoundation.org/UA/2011/03/UANodeSet.xsd}"
MANDATORY = "i=78"
# The components of VisionSystemType this appliance implements (OPC 40100-1 makes them optional): their
# Mandatory nodes are walked too. SafetyStateManagement is listed although the server has none: it is a
# deviation, so it shows in the list below and in docs/opcua.md.
IMPLEMENTED = ["VisionStateMachine.AutomaticModeStateMachine", "VisionStateMachine.SelectModeAutomatic",
               "RecipeManagement", "ResultManagement", "ConfigurationManagement", "SafetyStateManagement"]  # fmt: skip


@dataclass(frozen=True)
class Expected:
    path: str  # below the VisionSystem, browse names joined by dots
    names: tuple[tuple[int, str], ...]  # (nodeset namespace index, name) of each step
    node_class: str  # Object | Variable | Method
    type_def: str | None  # the nodeset's NodeId of its type definition (i=… or ns=1;i=…)


class Nodeset:
    def __init__(self, path: Path):
        root = ET.parse(path).getroot()
        self.aliases = {a.get("Alias"): a.text for a in root.find(f"{U}Aliases")}
        self.nodes = {el.get("NodeId"): el for el in root if el.get("NodeId")}
        self.by_name = {el.get("BrowseName"): el.get("NodeId") for el in root if el.tag == f"{U}UAObjectType"}

    def refs(self, nid: str):
        for r in self.nodes[nid].find(f"{U}References"):
            yield (
                self.aliases.get(r.get("ReferenceType"), r.get("ReferenceType")),
                r.get("IsForward") != "false",
                r.text,
            )

    def target(self, nid: str, ref: str) -> str | None:
        return next((t for rt, fwd, t in self.refs(nid) if fwd and rt in (ref, self.aliases.get(ref))), None)

    def children(self, nid: str) -> list[str]:
        """HasComponent / HasProperty children, of the node and (for a type) of its supertypes in this file."""
        out, seen = [], set()
        while nid in self.nodes:
            for rt, fwd, t in self.refs(nid):
                if fwd and rt in ("i=47", "i=46", "HasComponent", "HasProperty") and t in self.nodes:
                    name = self.nodes[t].get("BrowseName")
                    if name not in seen:
                        seen.add(name)
                        out.append(t)
            nid = next((t for rt, fwd, t in self.refs(nid) if not fwd and rt in ("i=45", "HasSubtype")), None)
        return out

    def rule(self, nid: str) -> str | None:
        return self.target(nid, "i=37")

    def walk(self, decl: str | None, type_id: str | None, path: tuple, optional_ok: set[str]) -> list[Expected]:
        """The Mandatory nodes below an instance declared by ``decl`` of type ``type_id``, recursively;
        Optional children whose path is in ``optional_ok`` are walked as well (and expected)."""
        out, seen = [], set()
        for source in (decl, type_id):
            if source is None or source not in self.nodes:
                continue
            for child in self.children(source):
                el = self.nodes[child]
                ns_name = el.get("BrowseName")
                step = (int(ns_name.split(":")[0]), ns_name.split(":")[1]) if ":" in ns_name else (0, ns_name)
                cpath = (*path, step)
                dotted = ".".join(n for _, n in cpath)
                if step in seen or not (self.rule(child) == MANDATORY or dotted in optional_ok):
                    continue
                seen.add(step)
                tdef = self.target(child, "i=40")
                out.append(Expected(dotted, cpath, el.tag.removeprefix(f"{U}UA"), tdef))
                out += self.walk(child, tdef, cpath, optional_ok)
        return out


def expected_nodes() -> list[Expected]:
    ns = Nodeset(NODESET)
    return ns.walk(None, ns.by_name["1:VisionSystemType"], (), set(IMPLEMENTED))


async def _missing(client, expected: list[Expected]) -> list[str]:
    """The expected nodes not on the server, each ``path (why)``."""
    mv = await client.get_namespace_index(MV_URI)
    system = await node(client, "VisionSystem")

    def server_id(text: str) -> ua.NodeId:
        nid = ua.NodeId.from_string(text)
        return ua.NodeId(nid.Identifier, mv) if nid.NamespaceIndex == 1 else nid

    out = []
    for e in expected:
        try:
            found = await system.get_child([f"{mv if i == 1 else 0}:{name}" for i, name in e.names])
        except ua.UaStatusCodeError:
            out.append(f"{e.path} (missing)")
            continue
        node_class = (await found.read_node_class()).name
        if node_class != e.node_class:
            out.append(f"{e.path} (a {node_class}, not a {e.node_class})")
        elif e.type_def and node_class != "Method" and await found.read_type_definition() != server_id(e.type_def):
            out.append(f"{e.path} (another type than {e.type_def})")
    return out


def documented_deviations() -> list[str]:
    text = DOCS.read_text()
    section = re.search(r"<!-- nodeset-deviations:begin -->(.*?)<!-- nodeset-deviations:end -->", text, re.S)
    assert section, "docs/opcua.md has no nodeset-deviations section"
    return [m.group(1) for m in re.finditer(r"^- `([^`]+)`", section.group(1), re.M)]


def test_mandatory_nodes_of_the_nodeset_are_served_and_the_rest_is_documented(tmp_path):
    expected = expected_nodes()
    assert len(expected) > 60  # the walk reached the components' methods and their arguments
    assert {"VisionStateMachine.Halted", "VisionStateMachine.AutomaticModeStateMachine.StartSingleJob",
            "RecipeManagement.PrepareRecipe.InputArguments", "ResultManagement.GetResultById",
            "ConfigurationManagement.ActiveConfiguration"} <= {e.path for e in expected}  # fmt: skip
    path = opcua_config(tmp_path)

    async def scenario():
        async with running(path) as station, session(station.config.opcua.endpoint, "qa", folder=tmp_path) as c:
            return await _missing(c, expected)

    missing = asyncio.run(scenario())
    print(f"Mandatory nodes found: {len(expected) - len(missing)} of {len(expected)}; missing: {missing}")
    assert [m.split(" (")[0] for m in missing] == documented_deviations(), (
        "docs/opcua.md's nodeset-deviations list differs from what the server lacks; it should read:\n"
        + "\n".join(f"- `{m.split(' (')[0]}` ({m.split(' (', 1)[1]}" for m in missing)
    )
