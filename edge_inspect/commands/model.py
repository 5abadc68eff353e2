"""``edge-inspect model``: a bundle's files checked (``verify``), prompts run on an image file
(``ask``), the station's model store (``list | add | promote | gate | rollback | remove``, and
``shadow start | stop | status`` in shadow_command.py, docs/model-lifecycle.md, "The model store")
and the unfamiliar-frame guard's ``reference``. The store's commands find it through ``--config``'s
``storage.dir``; a refusal is one line and exit 2. The model code is imported by the handlers only."""

from __future__ import annotations

import argparse
import json
import os
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError
from . import shadow_command

if TYPE_CHECKING:
    from ..modelstore import ModelStore

ALIASES = ("production", "candidate")  # as modelstore.ALIASES; named here so that `--help` loads no model code


def cmd_verify(args: argparse.Namespace) -> int:
    from ..vlm.bundle import load_bundle_files

    bundle = load_bundle_files(args.bundle)
    files = bundle.manifest["files"]
    print(f"{bundle.path}: ok ({len(files)} files verified, manifest sha256 {bundle.sha256[:16]})")
    return 0


def _read_image(path: Path):
    import cv2

    if not path.is_file():
        raise UserError(f"{path}: no such image file")
    frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if frame is None:
        raise UserError(f"{path}: not an image OpenCV can read")
    return frame


def cmd_ask(args: argparse.Namespace) -> int:
    from ..vlm import load_bundle

    if not (args.point or args.yes_no or args.generate):
        raise UserError("give at least one of --point, --yes-no or --generate")
    model = load_bundle(args.bundle, providers=args.provider)
    frame = _read_image(Path(args.image))
    image = model.encode(frame, order="bgr")
    results = []
    for prompt in args.point or []:
        p = model.point(image, prompt, max_new_tokens=args.max_new_tokens)
        results.append({
            "kind": "point", "prompt": prompt, "text": p.text, "count": p.answer.count,
            "points": [[round(pt.x, 4), round(pt.y, 4)] for pt in p.answer.points],
            "malformed": p.answer.malformed, "timings_ms": p.timings_ms,
        })  # fmt: skip
    for question in args.yes_no or []:
        a = model.ask_yes_no(image, question)
        results.append({
            "kind": "yes_no", "prompt": question, "answer": "yes" if a.answer else "no",
            "p_yes": round(a.p_yes, 4), "margin": round(a.margin, 4), "mass": round(a.mass, 4), "timings_ms": a.timings_ms,
        })  # fmt: skip
    for prompt in args.generate or []:
        g = model.generate(image, prompt, max_new_tokens=args.max_new_tokens)
        results.append({"kind": "generate", "prompt": prompt, "text": g.text, "timings_ms": g.timings_ms})
    print(json.dumps({"image": args.image, "encode_ms": image.timings_ms, "results": results}, indent=2))
    return 0


def _store(args: argparse.Namespace) -> ModelStore:
    from ..config import load_storage
    from ..modelstore import ModelStore

    storage, folder = load_storage(args.config)
    return ModelStore(folder, storage.models_max_mb * 1e6)


def _user() -> str:
    from ..modelstore import default_user

    return default_user()


def _when(at: str | None) -> str:
    if not at:
        return "-"
    try:
        return datetime.strptime(at, "%Y-%m-%dT%H:%M:%SZ").strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return at


def cmd_list(args: argparse.Namespace) -> int:
    from ..modelstore import megabytes

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
            f"{v.short}  {named:<20} {megabytes(v.size):>11}  added {_when(v.info.get('added_at'))} "
            f"by {v.info.get('added_by', '-')}  parent {parent}  from {v.info.get('source', '-')}"
        )
    budget = "no budget" if store.max_bytes == float("inf") else f"budget {megabytes(store.max_bytes)}"
    print(f"{len(versions)} version(s), {megabytes(store.used_bytes())} of {budget} in {store.folder}")
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    from ..modelstore import megabytes

    args.user = args.user or _user()
    added = _store(args).add(Path(args.bundle), args.user, parent=args.parent, alias=args.alias)
    v = added.version
    if added.new:
        print(f"added version {v.id} ({megabytes(v.size)})" + (f", now {args.alias}" if args.alias else ""))
    else:
        print(f"already stored as version {v.id}; nothing copied" + (f", now {args.alias}" if args.alias else ""))
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from ..modelstore import gate_problem

    args.user = args.user or _user()
    store = _store(args)
    version, previous = store.promote(args.version, args.user, to=args.to, require_gate=True, force=args.force)
    if previous == version.id:
        print(f"version {version.id} is already {args.to}; nothing changed")
        return 0
    was = f" (was {previous[:12]})" if previous and previous != version.id else ""
    forced = gate_problem(version, previous) if args.force and args.to == "production" else None
    if forced:
        print(f"forced: {forced} (kept in the store's history)")
    print(
        f"{args.to} is version {version.id}{was}; a station that follows the alias swaps it in within seconds, a stopped one starts on it"
    )
    return 0


def cmd_gate(args: argparse.Namespace) -> int:
    """Exit 0: the version passed its gate against production; 1: it did not; 2: bad input."""
    if args.nice:
        os.nice(args.nice)  # below the station's inspections: the line keeps its cycle time
    from ..config import load_gate
    from ..modelstore import ModelStore
    from .gate import GateSettings, finish_progress, run_gate, summary_lines

    progress = Path(args.progress) if args.progress else None
    try:
        storage, folder, cfg, recipes = load_gate(args.config)
        store = ModelStore(folder, storage.models_max_mb * 1e6)
        candidate, production = store.find(args.version), store.find(args.against)
        if args.parts is not None and args.parts < 1:
            raise UserError(f"--parts {args.parts}: give 1 or more")
        parts = args.parts if args.parts is not None else cfg.parts
        settings = GateSettings(cfg, parts, cfg.shift_parts, args.threads)
        user = args.user or _user()
        report = run_gate(candidate, production, settings, folder.parent, recipes, user, progress)
        store.set_gate(candidate.id, report)
    except Exception as err:
        finish_progress(progress, "failed", error=str(err).splitlines()[0] if str(err) else type(err).__name__)
        raise
    print("\n".join(summary_lines(report)))
    finish_progress(progress, "done", passed=report["passed"], problems=report["problems"])
    return 0 if report["passed"] else 1


def cmd_rollback(args: argparse.Namespace) -> int:
    args.user = args.user or _user()
    version, replaced = _store(args).rollback(args.user)
    print(
        f"production is version {version.id} again (was {replaced[:12]}); a station that follows the alias swaps it in within seconds, a stopped one starts on it"
    )
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    from ..modelstore import megabytes

    args.user = args.user or _user()
    version = _store(args).remove(args.version, args.user)
    print(f"removed version {version.id} ({megabytes(version.size)} freed)")
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
    promote.add_argument(
        "--force", action="store_true", help="production without a passing gate against it (kept in the history)"
    )
    gate = command("gate", "judge a version against production: holdout, generated parts, camera shifts", cmd_gate)
    gate.add_argument("version", help="version id (8+ hex digits) or alias (candidate)")
    gate.add_argument("--against", default="production", help="the version it must not be worse than")
    gate.add_argument("--parts", type=int, default=None, help="generated parts (default: model.gate.parts)")
    gate.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads per graph (0: its default)")
    gate.add_argument("--nice", type=int, default=0, help="lower this process's priority by this much first")
    gate.add_argument("--progress", default=None, help=argparse.SUPPRESS)  # the setup page's progress file
    command("rollback", "production back to the production before it", cmd_rollback)
    remove = command("remove", "delete a version no alias names", cmd_remove)
    remove.add_argument("version", help="version id (8+ hex digits)")
    for name in ("add", "promote", "rollback", "remove", "gate"):
        model.choices[name].add_argument(
            "--user", default=None, help="who is named in the store's history (default: $USER)"
        )


def register(sub: argparse._SubParsersAction) -> None:
    model = sub.add_parser("model", help="model bundles").add_subparsers(dest="model_command", required=True)
    verify = model.add_parser("verify", help="check a bundle's files against its manifest")
    verify.add_argument("bundle", help="bundle folder (with manifest.json)")
    verify.set_defaults(func=cmd_verify)

    ask = model.add_parser("ask", help="run prompts on one image file")
    ask.add_argument("bundle", help="bundle folder (with manifest.json)")
    ask.add_argument("image", help="image file (PNG, JPEG, …)")
    ask.add_argument("--point", action="append", metavar="PROMPT", help='e.g. "Point to any scratches."')
    ask.add_argument("--yes-no", action="append", metavar="QUESTION", help='e.g. "Is the label present?"')
    ask.add_argument("--generate", action="append", metavar="PROMPT", help="free-text answer")
    ask.add_argument("--provider", default="cpu", help="ONNX Runtime provider: tensorrt, cuda, cpu or auto")
    ask.add_argument("--max-new-tokens", type=int, default=64, help="cap on generated tokens per prompt")
    ask.set_defaults(func=cmd_ask)
    add_parsers(model)  # list, add, promote, rollback, remove
    shadow_command.add_parsers(model)  # shadow start | stop | status
    from .reference import add_parser as add_reference

    add_reference(model)  # the unfamiliar-frame guard's reference
