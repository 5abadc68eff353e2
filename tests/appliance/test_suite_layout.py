"""The test suite's layout: test modules in folders that mirror the packages they test, shared code in
tests/support/ and conftest.py, and no test module importing another."""

from __future__ import annotations

import ast

from ..support.paths import REPO_ROOT, TESTS

# Folders under tests/ that are not named after a package: the CLI, daemon, install and repository checks,
# the attacks, and what the tests share or use (harnesses, data files, the npm packages of axe and node-opcua).
NOT_PACKAGES = {"appliance", "security", "support", "data", "axe", "node", "__pycache__"}


def _test_modules():
    return sorted(p for p in TESTS.rglob("test_*.py") if "node_modules" not in p.parts)


def test_every_test_module_sits_in_a_folder_named_after_a_package():
    assert not sorted(p.name for p in TESTS.glob("test_*.py")), "test modules flat in tests/"
    packages = {p.parent.name for p in (REPO_ROOT / "edge_inspect").glob("*/__init__.py")}
    packages |= {p.parent.name for p in (REPO_ROOT / "tools").glob("*/__init__.py")}
    folders = {p.name for p in TESTS.iterdir() if p.is_dir() and not p.name.startswith(".")}
    assert folders - NOT_PACKAGES <= packages, sorted(folders - NOT_PACKAGES - packages)
    for module in _test_modules():
        assert (module.parent / "__init__.py").is_file(), module.relative_to(TESTS)


def _imported(path):
    """The modules ``path`` imports, relative imports spelled out from tests/ (``.x`` in tests/plc: plc.x)."""
    package = path.parent.relative_to(TESTS).parts
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            yield module
            yield from (f"{module}.{a.name}" if module else a.name for a in node.names)


def test_no_test_module_imports_another_or_conftest():
    python = [p for p in TESTS.rglob("*.py") if "node_modules" not in p.parts]
    for path in python:
        for name in _imported(path):
            last = name.rsplit(".", 1)[-1]
            assert not last.startswith("test_") and last != "conftest", f"{path.relative_to(TESTS)} imports {name}"
