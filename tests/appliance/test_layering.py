"""Dependencies run one way: the tools' layers (molmo2 <- export <- distill), the appliance's packages
as docs/architecture.md allows (no import circles between modules or packages), the appliance names
no tool; the transformers bench row is a tools command."""

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ..support.paths import REPO_ROOT


def _imports(folder: str) -> set[str]:
    names = set()
    for path in (REPO_ROOT / folder).rglob("*.py"):
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
    """The appliance names no tool, not even by module name as text (`edge-inspect bench` runs none)."""
    assert not re.search(r"\btools\b", (REPO_ROOT / "edge_inspect/commands/bench.py").read_text())
    assert not {m for m in _imports("edge_inspect") if m.startswith("tools")}


def test_no_design_notes_outside_the_repository():
    """Code and docs point to the project's own docs (docs/, models/README.md), nothing outside it."""
    for folder in ("tools", "edge_inspect", "docs", "systemd", "examples", "models"):
        for path in (REPO_ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".md", ".yaml", ".service", ".html", ".js"):
                assert "DESIGN.md" not in path.read_text(), path
    assert "DESIGN.md" not in (REPO_ROOT / "README.md").read_text()


def module_graph(root: Path, top: str) -> dict[str, set[str]]:
    """module → the modules of ``top`` it imports: type-only imports, imports inside functions and
    relative imports included. ``from pkg import name`` is an edge to ``pkg.name`` where that is a
    module, else to ``pkg`` (its __init__)."""
    files = {}
    for path in (root / top).rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = (path, parts[:-1])
    graph: dict[str, set[str]] = {}
    for name, (path, package) in files.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                module = ".".join(base + ([node.module] if node.module else []))
                found.update(f"{module}.{a.name}" if f"{module}.{a.name}" in files else module for a in node.names)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
        graph[name] = {d for d in found if d in files and d != name}
    return graph


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One circle of imports as a path (first = last), or None."""
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for dep in sorted(edges.get(node, ())):
            if state.get(dep) == 1:
                stack = [*path, node]
                return [*stack[stack.index(dep) :], dep]
            if dep not in state and (cycle := visit(dep, [*path, node])):
                return cycle
        state[node] = 2
        return None

    for module in sorted(edges):
        if module not in state and (cycle := visit(module, [])):
            return cycle
    return None


def unit_of(module: str) -> str:
    """The package (or top-level module) of ``edge_inspect`` a module belongs to; "(root)" for the package itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "(root)"


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for module, deps in graph.items():
        out.setdefault(unit_of(module), set()).update(unit_of(d) for d in deps if unit_of(d) != unit_of(module))
    return out


def architecture_rules() -> dict[str, set[str] | None]:
    """docs/architecture.md's table: package → the packages it may import (None: everything)."""
    rules: dict[str, set[str] | None] = {}
    text = (REPO_ROOT / "docs/architecture.md").read_text()
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            name = cells[0].strip("`")
            rules[name] = None if cells[2] == "everything" else set(re.findall(r"`([^`]+)`", cells[2]))
    return rules


def imported_everywhere() -> set[str]:
    """The packages docs/architecture.md lets every package import ("Every package may import …")."""
    text = (REPO_ROOT / "docs/architecture.md").read_text()
    line = next(line for line in text.splitlines() if "Every package may import" in line)
    return set(re.findall(r"`([^`]+)`", line.split("Every package may import", 1)[1].split(".")[0]))


def check_appliance(root: Path) -> None:
    graph = module_graph(root, "edge_inspect")
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
    packages = package_graph(graph)
    cycle = find_cycle(packages)
    assert cycle is None, "packages import each other in a circle: " + " -> ".join(cycle)
    rules = architecture_rules()
    everywhere = imported_everywhere()
    assert set(packages) - {"(root)"} <= set(rules), (
        f"packages missing from docs/architecture.md: {set(packages) - set(rules)}"
    )
    for package, deps in packages.items():
        allowed = rules.get(package, set())
        if allowed is not None:
            assert deps <= allowed | everywhere, (
                f"{package} imports {sorted(deps - allowed - everywhere)}, which docs/architecture.md does not allow"
            )


def test_appliance_layers_follow_docs_architecture():
    check_appliance(REPO_ROOT)


def test_the_rules_name_real_packages():
    units = {unit_of(m) for m in module_graph(REPO_ROOT, "edge_inspect")}
    rules = architecture_rules()
    assert set(rules) == units - {"(root)"}
    for deps in rules.values():
        assert deps is None or deps <= units, deps - units


def test_no_import_cycles_in_the_tools():
    cycle = find_cycle(module_graph(REPO_ROOT, "tools"))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize(
    "module, added",
    [
        ("edge_inspect/inspection/checks.py", "from ..logbook import store  # added\n"),  # a cycle through two packages
        ("edge_inspect/vlm/points.py", "from .model import load_bundle  # added\n"),  # inside one package
        ("edge_inspect/plc/codec.py", "if False:\n    from ..web import app  # added\n"),  # not allowed by the table
    ],
)
def test_the_check_fails_on_a_deliberately_added_import(tmp_path, module, added):
    shutil.copytree(REPO_ROOT / "edge_inspect", tmp_path / "edge_inspect", ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / module
    target.write_text(target.read_text() + added)
    with pytest.raises(AssertionError, match="cycle|circle|does not allow"):
        check_appliance(tmp_path)


def test_manifest_schema_is_shared_by_writer_and_reader():
    assert "edge_inspect.vlm.manifest" in _imports("tools/export")
    assert "from .manifest import" in (REPO_ROOT / "edge_inspect/vlm/bundle.py").read_text()


def test_hf_bench_command(tiny_checkpoint, tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "hf.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.export",
            "hf-bench",
            "--hf-checkpoint",
            str(tiny_checkpoint),
            "--frames",
            "1",
            "--runs",
            "1",
            "--warmup",
            "0",
            "--max-new-tokens",
            "4",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr
    row = json.loads(out.read_text())["rows"][0]
    assert row["backend"].startswith("transformers") and row["inspection_ms"]["p50"] > 0
    assert "p50" in result.stdout
