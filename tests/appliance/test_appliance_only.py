"""``pytest --appliance-only`` (Python 3.10 and 3.12 in .ci/run) leaves out exactly the modules that need
the export toolchain, a browser or the plant side, and nothing the appliance's tests need."""

from __future__ import annotations

import ast
from pathlib import Path

from ..support.appliance_only import BROWSER_TEST_MODULES, EXPORT_TEST_MODULES, LEFT_OUT, PLANT_TEST_MODULES
from ..support.paths import TESTS

EXPORT_ONLY = ("torch", "transformers", "onnx", "scipy", "tools.export", "tools.molmo2", "tools.distill")
RUNS_WITHOUT_TORCH = ("tools.export.prereqs",)  # trt_bench's checks, made to run on a bare Jetson


def _top_level_imports(path: Path) -> set[str]:
    """Modules imported at the top of a test module (or by pytest.importorskip at the top)."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        for call in ast.walk(node) if isinstance(node, (ast.Assign, ast.Expr)) else ():
            if isinstance(call, ast.Call) and getattr(call.func, "attr", "") == "importorskip" and call.args:
                names.add(getattr(call.args[0], "value", ""))
    return names


def _needs_export(path: Path) -> bool:
    names = _top_level_imports(path) - set(RUNS_WITHOUT_TORCH)
    return any(n == m or n.startswith(m + ".") for n in names for m in EXPORT_ONLY)


def test_export_modules_left_out_are_those_that_import_the_toolchain():
    modules = {p.relative_to(TESTS).as_posix() for p in TESTS.glob("*/test_*.py")}
    needing = {m for m in modules if _needs_export(TESTS / m)}
    assert needing == EXPORT_TEST_MODULES, (
        f"import the toolchain but run on every Python: {sorted(needing - EXPORT_TEST_MODULES)}; "
        f"left out without need: {sorted(EXPORT_TEST_MODULES - needing)}"
    )


def test_browser_and_plant_modules_left_out_exist_and_are_what_they_say():
    for name in BROWSER_TEST_MODULES:
        assert "playwright" in (TESTS / name).read_text().lower(), name
    for name in PLANT_TEST_MODULES:
        path = TESTS / name
        assert path.exists(), name
        text = "".join(p.read_text() for p in ([path] if path.is_file() else path.glob("*.py")))
        assert "fleet" in text or "plant" in text, name
    assert LEFT_OUT == EXPORT_TEST_MODULES | BROWSER_TEST_MODULES | PLANT_TEST_MODULES
