"""The command line: --version, and every option of every subcommand explains itself with its default."""

import argparse
import re
import subprocess
import sys

from edge_inspect import __version__
from edge_inspect.cli import _all_parsers, build_parser

SKIP = (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)


def _parsers():
    from tools.distill.__main__ import build_parser as distill_parser
    from tools.export.__main__ import build_parser as export_parser

    for root in (build_parser(), export_parser(), distill_parser()):
        yield from _all_parsers(root)


def test_every_option_has_help_and_shows_its_default():
    missing, no_default = [], []
    for parser in _parsers():
        assert parser.formatter_class is argparse.ArgumentDefaultsHelpFormatter, parser.prog
        for action in parser._actions:
            if isinstance(action, SKIP):
                continue
            if not action.help:
                missing.append(f"{parser.prog} {action.option_strings or action.dest}")
            elif (
                action.option_strings
                and action.default not in (None, False)
                and "%(default)" not in parser.formatter_class("x")._get_help_string(action)
            ):
                no_default.append(f"{parser.prog} {action.option_strings}")
    assert not missing and not no_default, (missing, no_default)


def test_help_text_shows_defaults():
    out = subprocess.run(
        [sys.executable, "-m", "edge_inspect.cli", "demo", "--help"], capture_output=True, text=True
    ).stdout
    assert re.search(r"--port PORT\s+Modbus TCP port on 127.0.0.1 \(default: 5020\)", out), out


def test_version():
    result = subprocess.run([sys.executable, "-m", "edge_inspect.cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == f"edge-inspect {__version__}"


def _cli(*args: str, code: str | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", code] if code else [sys.executable, "-m", "edge_inspect.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_user_mistakes_are_one_line_and_exit_2(tmp_path):
    (tmp_path / "tokens.yaml").write_text('"*": some-token\n')
    (tmp_path / "users.yaml").write_text("people: []\n")
    for args in (
        ["fleet", "serve", "--db", "postgresql://nowhere/x"],
        ["fleet", "serve", "--db", "postgresql://nowhere/x", "--users", str(tmp_path / "users.yaml")],
        [
            "fleet",
            "collect",
            "--broker",
            "mqtt://127.0.0.1:1",
            "--db",
            "postgresql://nowhere/x",
            "--station-tokens",
            str(tmp_path / "tokens.yaml"),
        ],
        ["fleet", "collect", "--broker", "http://x", "--db", "postgresql://nowhere/x"],
        ["config", "validate", str(tmp_path / "missing.yaml")],
    ):
        result = _cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr


def test_a_reader_that_stops_reading_ends_any_command_quietly(tmp_path):
    """`edge-inspect model shadow status | head -1`: stdout's reader gone before the output is written
    (the pipe's read end closed at once), the command ends without a traceback or an error line, with
    the status a shell gives a command SIGPIPE ended."""
    config = tmp_path / "station.yaml"
    config.write_text(
        "station: {name: s}\nmodel: {bundle: production}\nstorage: {dir: data}\n"
        "recipes: [{number: 1, name: r, checks: [{name: l, kind: qa, question: 'Is it?', expect: 'yes'}]}]\n"
    )
    for args in (["model", "shadow", "status", "--config", str(config)], ["modbus", "map"]):
        process = subprocess.Popen(
            [sys.executable, "-m", "edge_inspect.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        process.stdout.close()
        stderr = process.stderr.read().decode()
        assert process.wait(timeout=120) == 141 and stderr == "", (args, stderr)


def test_anything_else_is_a_bug_with_its_traceback_and_exit_1():
    """A ValueError that no user caused (here: raised by a command the parser is given beside the real
    ones) is not dressed up as a user mistake: its traceback and exit 1, not the one line and exit 2 of
    a user's error."""
    code = (
        "import sys, types, edge_inspect.cli as cli\n"
        "def broken(args): raise ValueError('an internal invariant broke')\n"
        "def register(sub): sub.add_parser('broken').set_defaults(func=broken)\n"
        "commands = (*cli.COMMANDS, types.SimpleNamespace(register=register))\n"
        "sys.exit(cli.main(['broken'], commands))\n"
    )
    result = _cli(code=code)
    assert result.returncode == 1 and "Traceback" in result.stderr and "an internal invariant broke" in result.stderr


def test_help_loads_none_of_the_heavy_libraries():
    """`edge-inspect --help` and usage errors stay fast: building the parser imports no model runtime,
    OpenCV, web stack, PostgreSQL driver or config schema (each command imports those when it runs)."""
    script = (
        "import contextlib, io, sys\n"
        "from edge_inspect import cli\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    cli.main(['--help'])\n"
        "heavy = ['cv2', 'onnxruntime', 'numpy', 'starlette', 'uvicorn', 'psycopg', 'pydantic', 'edge_inspect.vlm']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == ""
