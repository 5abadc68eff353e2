"""``edge-inspect model list | add | promote | rollback | remove``: the station's model store
(docs/model-lifecycle.md, "The model store"). Each finds the store through ``--config``'s
``storage.dir``; a refusal is one line and exit 2."""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..modelstore import ModelStore

ALIASES = ("production", "candidate")  # as modelstore.ALIASES; named here so that `--help` loads no model code


def _store(args: argparse.Namespace) -> ModelStore:
    from ..config import load_storage
    from ..modelstore import ModelStore

    storage, folder = load_storage(args.config)
    return ModelStore(folder, storage.models_max_mb * 1e6)


def _user() -> str:
    from ..modelstore import default_user

    return default_user()


def _mb(size: float) -> str:
    return f"{size / 1e6:,.1f} MB"


def _when(at: str | None) -> str:
    if not at:
        return "-"
    try:
        return datetime.strptime(at, "%Y-%m-%dT%H:%M:%SZ").strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return at


def cmd_list(args: argparse.Namespace) -> int:
    store = _store(args)
    versions = store.versions()
    if not versions:
        print(f"{store.folder}: no model versions (edge-inspect model add BUNDLE --config {args.config})")
        return 0
    aliases = store.aliases()
    for v in versions:
        named = ",".join(a for a in ALIASES if aliases.get(a) == v.id) or "-"
        parent = (v.info.get("parent") or "-")[:12]
        print(
            f"{v.short}  {named:<20} {_mb(v.size):>11}  added {_when(v.info.get('added_at'))} "
            f"by {v.info.get('added_by', '-')}  parent {parent}  from {v.info.get('source', '-')}"
        )
    budget = "no budget" if store.max_bytes == float("inf") else f"budget {_mb(store.max_bytes)}"
    print(f"{len(versions)} version(s), {_mb(store.used_bytes())} of {budget} in {store.folder}")
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    args.user = args.user or _user()
    added = _store(args).add(Path(args.bundle), args.user, parent=args.parent, alias=args.alias)
    v = added.version
    if added.new:
        print(f"added version {v.id} ({_mb(v.size)})" + (f", now {args.alias}" if args.alias else ""))
    else:
        print(f"already stored as version {v.id}; nothing copied" + (f", now {args.alias}" if args.alias else ""))
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    args.user = args.user or _user()
    version, previous = _store(args).promote(args.version, args.user, to=args.to)
    was = f" (was {previous[:12]})" if previous and previous != version.id else ""
    print(f"{args.to} is version {version.id}{was}; a running station takes it at its next start")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    args.user = args.user or _user()
    version, replaced = _store(args).rollback(args.user)
    print(
        f"production is version {version.id} again (was {replaced[:12]}); a running station takes it at its next start"
    )
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    args.user = args.user or _user()
    version = _store(args).remove(args.version, args.user)
    print(f"removed version {version.id} ({_mb(version.size)} freed)")
    return 0


def add_parsers(model: argparse._SubParsersAction) -> None:
    """The store's subcommands under ``edge-inspect model``."""

    def command(name: str, help: str, func) -> argparse.ArgumentParser:
        parser = model.add_parser(name, help=help)
        parser.add_argument("--config", required=True, help="the station.yaml whose storage.dir holds the store")
        parser.set_defaults(func=func)
        return parser

    command("list", "the model store's versions, their aliases, sizes and where they came from", cmd_list)
    add = command("add", "copy a bundle into the model store as an immutable version", cmd_add)
    add.add_argument("bundle", help="bundle folder (with manifest.json)")
    add.add_argument("--as", dest="alias", choices=ALIASES, help="point this alias at the version too")
    add.add_argument("--parent", help="the version it was trained from (alias or version id)")
    promote = command("promote", "point production (or --to candidate) at a version", cmd_promote)
    promote.add_argument("version", help="version id (8+ hex digits) or alias (candidate)")
    promote.add_argument("--to", choices=ALIASES, default="production", help="the alias to point at it")
    command("rollback", "production back to the production before it", cmd_rollback)
    remove = command("remove", "delete a version no alias names", cmd_remove)
    remove.add_argument("version", help="version id (8+ hex digits)")
    for name in ("add", "promote", "rollback", "remove"):
        model.choices[name].add_argument(
            "--user", default=None, help="who is named in the store's history (default: $USER)"
        )
