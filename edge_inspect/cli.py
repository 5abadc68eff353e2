"""The ``edge-inspect`` command: the top-level parser, built from each command's ``register``
(its arguments beside its handler, in ``commands/``), and the errors mapped to exit codes.

User mistakes (a bad bundle, a missing image) print one line on stderr and exit with 2; anything
else is a bug: its traceback, exit 1. A reader that stops reading (``| head -1``) ends any command
quietly, with the status a shell gives a command SIGPIPE ended (141), as ``ls`` or ``cat`` does.
Building the parser imports no model, camera or web code: each handler imports what it needs.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Protocol

from .commands import (
    bench_command,
    calibrate,
    config_validate,
    dataset_command,
    demo_command,
    doctor,
    fleet,
    modbus_map,
    model,
    run,
    try_command,
    tune_command,
    user,
)
from .errors import UserError

EXIT_USAGE = 2
EXIT_PIPE = 128 + 13  # SIGPIPE's: stdout's reader went away


class Command(Protocol):
    """A command's module: ``register`` adds its subparser, whose ``func`` default is its handler."""

    def register(self, sub: argparse._SubParsersAction) -> None: ...


COMMANDS: tuple[Command, ...] = (
    model,
    config_validate,
    modbus_map,
    run,
    doctor,
    try_command,
    tune_command,
    calibrate,
    bench_command,
    user,
    demo_command,
    fleet,
    dataset_command,
)


def build_parser(commands: Sequence[Command] = COMMANDS) -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="edge-inspect", description="Line-side vision inspection appliance.")
    parser.add_argument("--version", action="version", version=f"edge-inspect {__version__}")
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="what reaches stderr (the journal under systemd); unexpected errors come with a traceback",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command in commands:
        command.register(sub)
    return show_defaults(parser)


def show_defaults(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Every option's help, in ``parser`` and all its subcommands, shows its default."""
    for each in _all_parsers(parser):
        each.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    return parser


def _all_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                found += _all_parsers(child)
    return found


def main(argv: list[str] | None = None, commands: Sequence[Command] = COMMANDS) -> int:
    """Run the command ``argv`` names; ``commands``: the commands the parser knows (COMMANDS)."""
    try:
        return _main(argv, commands)
    except BrokenPipeError:  # `edge-inspect … | head -1`: nothing to say, and nobody to say it to
        _drop_stdout()
        return EXIT_PIPE


def _drop_stdout() -> None:
    """stdout to /dev/null, so that the interpreter's flush at exit does not fail on the closed pipe again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no stdout file descriptor (an embedding caller's stream)
        pass


def _main(argv: list[str] | None, commands: Sequence[Command]) -> int:
    args = build_parser(commands).parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from .config import ConfigError  # after parsing: --help, --version and a usage error load no config code

    try:
        status = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's flush at exit
        return status
    except BrokenPipeError:
        raise  # an OSError, but not a mistake of the user's: main ends quietly
    except ConfigError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        return EXIT_USAGE
    except UserError as err:  # anything else is a bug: its traceback, exit 1
        print(f"edge-inspect: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as err:  # the system refused a file, port or device the user named
        print(f"edge-inspect: error: {err}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
