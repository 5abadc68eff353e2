"""``edge-inspect user hash-password``: a password read from stdin (or a prompt), its hash printed for
station.yaml's ``web.users``."""

from __future__ import annotations

import argparse
import sys

from ..errors import UserError


def cmd_hash_password(args: argparse.Namespace) -> int:
    import getpass

    from ..http.auth import hash_password

    password = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else getpass.getpass("password: ")
    if len(password) < 4:
        raise UserError("the password must have at least 4 characters")
    print(hash_password(password))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    user = sub.add_parser("user", help="HMI users").add_subparsers(dest="user_command", required=True)
    hp = user.add_parser("hash-password", help="read a password (stdin or prompt), print its hash for station.yaml")
    hp.set_defaults(func=cmd_hash_password)
