"""The tools' layers depend one way (molmo2 <- export <- distill); the appliance names no tool; the
transformers bench row is a tools command."""

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


def test_no_design_notes_outside_the_repository_in_my_area():
    for folder in ("tools", "edge_inspect/vlm"):
        for path in (ROOT / folder).rglob("*.py"):
            assert "DESIGN" not in path.read_text(), path


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
