"""README.md holds the two set-up commands, and .ci/run runs the test command exactly as written there."""

from ..support.paths import REPO_ROOT


def _commands() -> list[str]:
    lines = (REPO_ROOT / "README.md").read_text().splitlines()
    return [line for line in lines if line.startswith("python3 -m venv .venv && ")]


def test_readme_has_main_and_test_commands():
    commands = _commands()
    assert any(c.endswith("edge-inspect demo") for c in commands), commands
    assert any(c.endswith("-m pytest -q") for c in commands), commands


def test_ci_runs_the_readme_test_command():
    test_command = next(c for c in _commands() if c.endswith("-m pytest -q"))
    ci_lines = (REPO_ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci_lines
