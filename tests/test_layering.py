"""Dependencies run one way: the tools' layers (molmo2 <- export <- distill), the appliance's rules
(vlm knows no PLC, log or web; plc knows no model; verdict.py is a leaf; no import cycles), the
appliance names no tool; the transformers bench row is a tools command."""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imports(folder: str) -> set[str]:
    names = set()
    for path in (ROOT / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
    return names


def test_tools_layers_depend_one_way():
    assert not {m for m in _imports("tools/export") if m.startswith("tools.distill")}
    assert not {m for m in _imports("tools/molmo2") if m.startswith(("tools.export", "tools.distill"))}


def test_appliance_never_names_the_tools():
    """`edge-inspect bench` runs no tool (it ran tools.export.hf_bench by module name before)."""
    assert not re.search(r"\btools\b", (ROOT / "edge_inspect/bench.py").read_text())
    assert not {m for m in _imports("edge_inspect") if m.startswith("tools")}


def test_no_design_notes_outside_the_repository():
    """Code and docs point to the project's own docs (docs/, models/README.md), nothing outside it."""
    for folder in ("tools", "edge_inspect", "docs", "systemd", "examples", "models"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".md", ".yaml", ".service", ".html", ".js"):
                assert "DESIGN.md" not in path.read_text(), path
    assert "DESIGN.md" not in (ROOT / "README.md").read_text()


def _module_imports() -> dict[str, set[str]]:
    """edge_inspect module → the edge_inspect modules it imports (relative imports resolved)."""
    graph: dict[str, set[str]] = {}
    for path in (ROOT / "edge_inspect").rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_pkg else parts)
        package = parts[:-1] if is_pkg else parts[:-1]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                if module.startswith("edge_inspect"):
                    found.add(module)
                    found.update(f"{module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("edge_inspect"))
        graph[name] = found
    known = set(graph)
    return {m: {i for i in deps if i in known and i != m} for m, deps in graph.items()}


def _deps_of(graph: dict[str, set[str]], prefix: str) -> set[str]:
    return {d for m, deps in graph.items() if m == prefix or m.startswith(prefix + ".") for d in deps}


def test_appliance_layers():
    graph = _module_imports()
    assert not graph["edge_inspect.verdict"], graph["edge_inspect.verdict"]
    assert not {d for d in _deps_of(graph, "edge_inspect.vlm") if d.startswith(
        ("edge_inspect.plc", "edge_inspect.log", "edge_inspect.web", "edge_inspect.station"))}
    assert not {d for d in _deps_of(graph, "edge_inspect.plc") if d.startswith(("edge_inspect.vlm", "edge_inspect.web"))}
    assert not {d for d in _deps_of(graph, "edge_inspect.log") if d.startswith(
        ("edge_inspect.plc", "edge_inspect.web", "edge_inspect.station"))}
    for leafish in ("edge_inspect.checks", "edge_inspect.overlay", "edge_inspect.events", "edge_inspect.alarms"):
        assert not {d for d in graph[leafish] if d.startswith(("edge_inspect.plc", "edge_inspect.station"))}, leafish


def test_no_import_cycles_at_module_level():
    graph = _module_imports()
    # a package's __init__ re-exporting its own modules is not a cycle between concerns
    edges = {m: {d for d in deps if not m.startswith(d + ".") and not d.startswith(m + ".")}
             for m, deps in graph.items()}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(edges.get(node, ())):
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path, node, dep]))
            if dep not in state:
                visit(dep, [*path, node])
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [])


def test_manifest_schema_is_shared_by_writer_and_reader():
    assert "edge_inspect.vlm.manifest" in _imports("tools/export")
    assert "from .manifest import" in (ROOT / "edge_inspect/vlm/bundle.py").read_text()


def test_hf_bench_command(tiny_checkpoint, tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "hf.json"
    result = subprocess.run([sys.executable, "-m", "tools.export", "hf-bench", "--hf-checkpoint", str(tiny_checkpoint),
                             "--frames", "1", "--runs", "1", "--warmup", "0", "--max-new-tokens", "4",
                             "--json", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    row = json.loads(out.read_text())["rows"][0]
    assert row["backend"].startswith("transformers") and row["inspection_ms"]["p50"] > 0
    assert "p50" in result.stdout
