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
            elif action.option_strings and action.default not in (None, False) and \
                    "%(default)" not in parser.formatter_class("x")._get_help_string(action):
                no_default.append(f"{parser.prog} {action.option_strings}")
    assert not missing and not no_default, (missing, no_default)


def test_help_text_shows_defaults():
    out = subprocess.run([sys.executable, "-m", "edge_inspect.cli", "demo", "--help"], capture_output=True,
                         text=True).stdout
    assert re.search(r"--port PORT\s+Modbus TCP port on 127.0.0.1 \(default: 5020\)", out), out


def test_version():
    result = subprocess.run([sys.executable, "-m", "edge_inspect.cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == f"edge-inspect {__version__}"
