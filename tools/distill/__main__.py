"""``python -m tools.distill``: make data, label with a teacher, train a student, evaluate.

sim       render generated parts to images + masks + records.jsonl (ground-truth targets)
label     run a HF Molmo2 teacher checkpoint over a folder of images → records.jsonl
train     train a student from records.jsonl, or from parts generated on the fly; fine-tune a bundle
          (--init-from) on a station's reviewed records (--data EXPORT) mixed with replay
review-sim  play QA on generated parts: an export folder as 'edge-inspect dataset export' writes it
evaluate  pointing P/R/F1, screw counting, yes/no accuracy of a bundle or checkpoint
report    evaluate a trained student's bundle and write REPORT.md / report.json beside it
verify    accuracy gate: candidate bundle (quantized, rebuilt) vs reference bundle (exit 1 on a drop)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge_inspect.cli import show_defaults
from edge_inspect.sim import ALL_DEFECT_KINDS
from edge_inspect.vlm.bundle import BundleError
from tools.args import seed_range
from tools.molmo2.errors import CheckpointError

from .dataset import JsonlError


def _weights(text: str) -> dict[str, float]:
    from .tasks import TASKS

    try:
        weights = {k.strip(): float(v) for k, v in (item.split("=") for item in text.split(","))}
    except ValueError:
        raise argparse.ArgumentTypeError(f"task weights must be task=weight,…, got {text!r}") from None
    unknown = set(weights) - set(TASKS)
    if unknown or not all(w >= 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise argparse.ArgumentTypeError(f"task weights {text!r}: tasks are {', '.join(TASKS)}, weights >= 0")
    return weights


def _counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"defect counts must be whole numbers separated by commas, got {text!r}"
        ) from None
    if not counts or min(counts) < 0 or max(counts) > 6:
        raise argparse.ArgumentTypeError(f"defect counts {text!r}: each between 0 and 6")
    return counts


def _kinds(text: str) -> tuple[str, ...]:
    from edge_inspect.sim import ALL_DEFECT_KINDS

    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    if not kinds or any(k not in ALL_DEFECT_KINDS for k in kinds):
        raise argparse.ArgumentTypeError(f"defect kinds {text!r}: each one of {', '.join(ALL_DEFECT_KINDS)}")
    return kinds


def _shifts(text: str) -> list[str]:
    from .evaluate import SHIFTS

    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in SHIFTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown shift(s) {unknown}; known: {', '.join(SHIFTS)}")
    return names


def _cmd_sim(args) -> int:
    from .dataset import write_sim_set

    path = write_sim_set(Path(args.out), args.seeds)
    print(f"wrote {path}")
    return 0


def _cmd_review_sim(args) -> int:
    from .review_sim import write_review_export

    model = None
    if args.model:
        import hashlib

        model = hashlib.sha256((Path(args.model) / "manifest.json").read_bytes()).hexdigest()
    counts = write_review_export(Path(args.out), args.seeds, args.kinds, args.defect_counts or (1, 1, 2), model=model)
    print(f"wrote {args.out}: {counts['train']} train and {counts['holdout']} holdout records")
    return 0


def _cmd_label(args) -> int:
    from .label import label_folder

    path = label_folder(
        Path(args.teacher), Path(args.images), Path(args.out), args.tasks.split(","), max_new_tokens=args.max_new_tokens
    )
    print(f"wrote {path}")
    return 0


def _cmd_train(args) -> int:
    from .evaluate import TorchPredictor, evaluate_records, headline, sim_records
    from .train import TrainConfig, train

    cfg = TrainConfig(
        out=args.out,
        shape=args.shape,
        steps=args.steps,
        batch=args.batch,
        lr=args.lr,
        seed=args.seed,
        data=args.data,
        save_every=args.save_every,
        eval_every=args.eval_every,
        eval_parts=args.eval_parts,
        threads=args.threads,
        workers=args.workers,
        max_minutes=args.max_minutes,
        grounding=args.grounding,
        task_weights=args.task_weights,
        stop_at=args.stop_at,
        digits=args.digits,
        augment=args.augment,
        bf16=args.bf16,
        warmup=args.warmup,
        init_from=args.init_from,
        defect_counts=args.defect_counts,
        defect_kinds=args.defect_kinds,
        replay=None if args.replay is None else [r for r in args.replay if r != "none"],
        replay_share=args.replay_share,
        corrected_weight=args.corrected_weight,
    )
    validation = sim_records(range(500_000, 500_000 + args.eval_parts)) if args.eval_parts else []

    def evaluate_fn(model, tok, settings, builder, parts):
        metrics = evaluate_records(TorchPredictor(model, tok, settings, builder), validation)
        return headline(metrics)

    checkpoint = train(cfg, resume=args.resume, evaluate_fn=evaluate_fn if validation else None)
    print(f"student checkpoint: {checkpoint}")
    return 0


def _cmd_evaluate(args) -> int:
    from edge_inspect.sim import PartSpec

    from .dataset import read_jsonl
    from .evaluate import BundlePredictor, evaluate_records, headline, robustness, sim_records, write_report

    predictor = BundlePredictor(args.bundle)
    if args.data:
        records = read_jsonl(Path(args.data))
        source = f"records {args.data}"
    else:
        spec = PartSpec(defect_kinds=args.defect_kinds) if args.defect_kinds else None
        records = sim_records(args.seeds, spec=spec)
        source = f"generated parts, seeds {args.seeds.start}:{args.seeds.stop}"
        if args.defect_kinds:
            source += f", defects of kinds {', '.join(args.defect_kinds)}"
    metrics = evaluate_records(predictor, records, dilate_px=args.dilate)
    parts = len({r.seed if r.seed is not None else str(r.image_path) for r in records})
    details = {"bundle": str(args.bundle), "data": source, "parts": parts}
    shifts = None
    if args.robustness:
        shift_seeds = range(args.seeds.start, args.seeds.start + args.robustness)
        shifts = robustness(predictor, shift_seeds, args.shifts, args.dilate)
        details["robustness"] = f"generated parts, seeds {shift_seeds.start}:{shift_seeds.stop}, per camera shift"
    if args.out:
        md = write_report(metrics, Path(args.out), "Student evaluation", details, shifts)
        print(f"report: {md}")
    print(json.dumps(headline(metrics), indent=2))
    if shifts:
        print(json.dumps(shifts, indent=2))
    return 0


def _parent_bundle(args) -> Path | None:
    """``report --compare``: a bundle, or ``parent``: the bundle the run was started from."""
    if not args.compare:
        return None
    if args.compare != "parent":
        return Path(args.compare)
    config = json.loads((Path(args.run) / "train_config.json").read_text())
    if not config.get("init_from"):
        raise ValueError(f"{args.run}: --compare parent: the run did not start from a bundle (--init-from)")
    return Path(config["init_from"])


def _cmd_report(args) -> int:
    from edge_inspect.sim import PartSpec

    from .evaluate import BundlePredictor, evaluate_records, headline, robustness, sim_records
    from .finetune_report import before_after, new_kind_figures
    from .report import write_report

    predictor = BundlePredictor(args.bundle)
    records = sim_records(args.seeds)
    metrics = evaluate_records(predictor, records, dilate_px=args.dilate)
    latency = metrics["seconds"] * 1000 / len(args.seeds)
    shifts, shift_seeds = None, None
    if args.robustness:
        shift_seeds = range(args.seeds.start, args.seeds.start + args.robustness)
        shifts = robustness(predictor, shift_seeds, args.shifts, args.dilate)
    comparison, new_kind = None, None
    parent = _parent_bundle(args)
    before = BundlePredictor(parent) if parent else None
    if before is not None:
        rows = before_after(
            evaluate_records(before, records, dilate_px=args.dilate, bootstrap=0), metrics, args.tolerance
        )
        comparison = {"rows": rows, "tolerance": args.tolerance, "parent": str(parent)}
    if args.new_kind:
        spec = PartSpec(defect_kinds=(args.new_kind,))
        kind_records = sim_records(args.new_kind_seeds, ["defects"], spec=spec)

        def figures(p):
            return new_kind_figures(evaluate_records(p, kind_records, args.dilate, bootstrap=0), args.new_kind)

        new_kind = {
            "after": figures(predictor),
            "before": figures(before) if before is not None else None,
            "seeds": [args.new_kind_seeds.start, args.new_kind_seeds.stop],
        }
    md = write_report(
        Path(args.run),
        Path(args.bundle),
        metrics,
        args.seeds,
        args.command or [],
        latency,
        args.note,
        shifts=shifts,
        shift_seeds=shift_seeds,
        cpu_minutes=args.cpu_minutes,
        comparison=comparison,
        new_kind=new_kind,
    )
    print(json.dumps(headline(metrics), indent=2))
    print(f"report: {md}")
    return 0


def _cmd_verify(args) -> int:
    from .verify import Limits, run_verify

    limits = Limits(
        max_f1_drop=args.max_f1_drop, max_count_drop=args.max_count_drop, min_yes_no_agreement=args.min_yes_no_agreement
    )
    return run_verify(args.reference, args.candidate, args.data, args.seeds, limits, args.json)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.distill", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("sim", help="write generated parts as a labelled set")
    p.add_argument("--out", required=True, help="folder for records.jsonl and images")
    p.add_argument("--seeds", type=seed_range, default=seed_range("0:100"), help="START:STOP")
    p.set_defaults(func=_cmd_sim)

    p = sub.add_parser("review-sim", help="play QA on generated parts: an export folder of corrected defect checks")
    p.add_argument("--out", required=True, help="folder for train.jsonl, holdout.jsonl, images/ and masks/")
    p.add_argument("--seeds", type=seed_range, default=seed_range("3000000:3000100"), help="START:STOP")
    p.add_argument("--kinds", type=_kinds, default=("chip",), help="comma-separated defect kinds the parts hold")
    p.add_argument("--defect-counts", type=_counts, default=None, metavar="1,1,2", help="defects per part, drawn")
    p.add_argument("--model", help="the production bundle the labels were made against (its version is recorded)")
    p.set_defaults(func=_cmd_review_sim)

    p = sub.add_parser("label", help="label images with a teacher checkpoint")
    p.add_argument("--teacher", required=True, help="HF Molmo2 checkpoint folder")
    p.add_argument("--images", required=True, help="folder of images")
    p.add_argument("--out", required=True, help="folder for records.jsonl")
    p.add_argument("--tasks", default="defects,screws,label", help="comma-separated tasks to label")
    p.add_argument("--max-new-tokens", type=int, default=96, help="cap on the teacher's tokens per answer")
    p.set_defaults(func=_cmd_label)

    p = sub.add_parser("train", help="train a student")
    p.add_argument("--out", required=True, help="run folder: checkpoints, log.jsonl, train_config.json")
    p.add_argument(
        "--data",
        help="records.jsonl, or a folder written by 'edge-inspect dataset export' (its train.jsonl; never its "
        "holdout) to fine-tune on (default: generate parts on the fly)",
    )
    p.add_argument(
        "--shape", default="demo", choices=["demo", "test"], help="student size: demo (the bundled one) or test (tiny)"
    )
    p.add_argument("--steps", type=int, default=3000, help="optimizer steps in all")
    p.add_argument("--batch", type=int, default=16, help="examples per step")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    p.add_argument("--seed", type=int, default=0, help="random seed (weights and data order)")
    p.add_argument("--save-every", type=int, default=250, help="checkpoint every N steps")
    p.add_argument("--eval-every", type=int, default=500, help="validation every N steps")
    p.add_argument("--eval-parts", type=int, default=40, help="validation parts per evaluation")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--workers", type=int, default=1, help="data worker processes (0: make batches in this process)")
    p.add_argument("--max-minutes", type=float, default=0.0, help="save and stop after this long (0 = no limit)")
    p.add_argument("--grounding", type=float, default=1.0, help="weight of the auxiliary grounding loss (0 = off)")
    p.add_argument(
        "--task-weights",
        type=_weights,
        default=None,
        metavar="defects=0.5,screws=0.2,holes=0.08,label=0.11,label_missing=0.11",
        help="how often each task is drawn from generated parts",
    )
    p.add_argument("--stop-at", type=int, default=0, help="save and stop after this step (one phase of a schedule)")
    p.add_argument(
        "--digits", type=float, default=0.0, help="weight of the grounding head's coordinate-digit targets (0 = off)"
    )
    p.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="generated parts: random camera geometry/photometry and several phrasings per task",
    )
    p.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bfloat16 autocast (default: only where the CPU has bfloat16 instructions)",
    )
    p.add_argument("--warmup", type=int, default=100, help="learning-rate warm-up steps")
    p.add_argument(
        "--init-from",
        metavar="BUNDLE",
        help="start a new run from an exported bundle's weights (same shape; fresh optimizer and grounding head)",
    )
    p.add_argument(
        "--defect-counts",
        type=_counts,
        default=None,
        metavar="0,1,2,3,3",
        help="defect-pointing parts: draw their number of defects from this list (default: the generator's own)",
    )
    p.add_argument(
        "--defect-kinds",
        type=_kinds,
        default=None,
        metavar="scratch,spot,dent,chip",
        help="generated parts: the defect kinds drawn (default: the generator's own; crack and chip are new kinds)",
    )
    p.add_argument(
        "--replay",
        action="append",
        metavar="generated|RECORDS.jsonl|none",
        help="earlier data mixed in so old skills do not fade: parts generated on the fly, and/or a records file "
        "of earlier (e.g. teacher-labelled) data; repeatable (default with an export folder: generated; with a "
        "records file: none)",
    )
    p.add_argument(
        "--replay-share",
        type=float,
        default=0.5,
        help="share of the examples drawn from replay; the rest are the reviewed records",
    )
    p.add_argument(
        "--corrected-weight",
        type=float,
        default=3.0,
        help="how much likelier a reviewed record whose points a reviewer corrected is drawn than a confirmed one",
    )
    p.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a bundle")
    p.add_argument("--bundle", required=True, help="bundle to evaluate")
    p.add_argument("--data", help="records.jsonl with ground truth (default: generated parts)")
    p.add_argument("--seeds", type=seed_range, default=seed_range("0:500"), help="generated parts START:STOP")
    p.add_argument(
        "--dilate",
        type=int,
        default=3,
        help="hit rule: a matched point within this many px (Euclidean) of its object's mask is a hit",
    )
    p.add_argument(
        "--defect-kinds",
        type=_kinds,
        default=None,
        metavar="chip",
        help="generated parts: the defect kinds drawn (default: the generator's own)",
    )
    p.add_argument("--out", help="report JSON path (a .md is written beside it)")
    p.add_argument(
        "--robustness",
        type=int,
        default=0,
        metavar="N",
        help="robustness suite: the first N parts of --seeds under each camera shift (0 = off)",
    )
    p.add_argument(
        "--shifts", type=_shifts, default=None, help="comma-separated shift names (default: all of evaluate.SHIFTS)"
    )
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("report", help="evaluate a student bundle and write its report")
    p.add_argument("--run", required=True, help="training folder (log.jsonl, train_config.json)")
    p.add_argument("--bundle", required=True, help="the student's exported bundle")
    p.add_argument("--seeds", type=seed_range, default=seed_range("0:500"), help="generated parts START:STOP")
    p.add_argument(
        "--dilate",
        type=int,
        default=3,
        help="hit rule: a matched point within this many px (Euclidean) of its object's mask is a hit",
    )
    p.add_argument("--command", action="append", help="a command line that reproduces the student (repeatable)")
    p.add_argument("--note", action="append", help="a paragraph for the report: how it was trained (repeatable)")
    p.add_argument(
        "--robustness",
        type=int,
        default=0,
        metavar="N",
        help="robustness suite: the first N parts of --seeds under each camera shift (0 = off)",
    )
    p.add_argument(
        "--shifts", type=_shifts, default=None, help="comma-separated shift names (default: all of evaluate.SHIFTS)"
    )
    p.add_argument(
        "--cpu-minutes",
        type=float,
        default=None,
        help="training CPU minutes (all phases, all threads) to state in the report "
        "(default: the run log's last cpu_minutes)",
    )
    p.add_argument(
        "--compare",
        metavar="parent|BUNDLE",
        help="evaluate this bundle too (parent: the one the run started from) and show every check before and after",
    )
    p.add_argument(
        "--tolerance", type=float, default=0.02, help="--compare: flag a figure worse than the parent's by more"
    )
    p.add_argument(
        "--new-kind", choices=ALL_DEFECT_KINDS, help="also evaluate defect pointing on parts holding this kind"
    )
    p.add_argument(
        "--new-kind-seeds", type=seed_range, default=seed_range("920000:920150"), help="--new-kind: parts START:STOP"
    )
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("verify", help="accuracy gate for a candidate bundle")
    p.add_argument("--reference", required=True, help="full-precision bundle")
    p.add_argument("--candidate", required=True, help="quantized or rebuilt bundle")
    p.add_argument("--data", help="records.jsonl with ground truth (default: generated parts)")
    p.add_argument("--seeds", type=seed_range, default=seed_range("600000:600200"), help="generated parts START:STOP")
    p.add_argument("--max-f1-drop", type=float, default=0.01, help="largest allowed drop in pointing F1")
    p.add_argument("--max-count-drop", type=float, default=0.01, help="largest allowed drop in counting exact match")
    p.add_argument(
        "--min-yes-no-agreement", type=float, default=0.99, help="smallest allowed share of identical yes/no answers"
    )
    p.add_argument("--json", help="write the full report here")
    p.set_defaults(func=_cmd_verify)
    return show_defaults(parser)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (JsonlError, BundleError, CheckpointError, ValueError) as err:  # BundleWeightsError is a ValueError
        print(f"tools.distill: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
