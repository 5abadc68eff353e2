"""Fine-tune from a production bundle on a station's reviewed records mixed with replay: what is drawn
(the share, the weighting, never the holdout), and the lineage from the run to the report, the
bundle's manifest and the model store's version record. A tiny student, a few steps, seconds."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="distillation needs the 'export' extra")

from edge_inspect.modelstore.store import ModelStore  # noqa: E402
from tools.distill.dataset import JsonlError  # noqa: E402
from tools.distill.mixing import GENERATED, build_mix  # noqa: E402
from tools.distill.review_sim import write_review_export  # noqa: E402

SEEDS = range(3_000_000, 3_000_040)


@pytest.fixture(scope="module")
def parent(tmp_path_factory) -> Path:
    """A tiny production bundle, exported the way every bundle is (with its manifest)."""
    from tools.distill.student import SHAPES, build_student, save_student
    from tools.export.onnx_bundle import export_bundle

    folder = tmp_path_factory.mktemp("parent")
    model, tok = build_student(SHAPES["test"], 1)
    checkpoint = save_student(model, tok, SHAPES["test"], folder / "checkpoint")
    return export_bundle(checkpoint, folder / "bundle")


@pytest.fixture(scope="module")
def export(tmp_path_factory, parent) -> Path:
    """An export folder of parts with chips, QA's corrected points, both splits."""
    out = tmp_path_factory.mktemp("export") / "reviewed"
    version = hashlib.sha256((parent / "manifest.json").read_bytes()).hexdigest()
    counts = write_review_export(out, SEEDS, ("chip",), model=version)
    assert counts["holdout"] and counts["train"]
    return out


def _images(path: Path) -> set[str]:
    return {json.loads(line)["image"] for line in path.open()}


def test_a_fine_tune_mixes_replay_never_trains_on_the_holdout_and_records_its_lineage(parent, export, tmp_path):
    from tools.distill.train import TrainConfig, encode_record, train
    from tools.export.onnx_bundle import export_bundle

    encoded: list[str] = []

    def spy(rec, *args):
        encoded.append(str(rec.image_path.relative_to(export)) if rec.image_path else f"generated:{rec.seed}")
        return encode_record(rec, *args)

    cfg = TrainConfig(
        out=str(tmp_path / "run"), shape="test", steps=4, batch=4, lr=1e-3, warmup=1, save_every=4, eval_every=1000,
        workers=0, init_from=str(parent), data=str(export), grounding=0.0,
    )  # fmt: skip
    checkpoint = train(cfg, encode=spy)
    encoded = encoded[: cfg.steps * cfg.batch]  # the loader made one batch more than was trained on

    reviewed = [e for e in encoded if not e.startswith("generated:")]
    assert reviewed and len(reviewed) < len(encoded)  # both reviewed records and generated replay
    assert set(reviewed) <= _images(export / "train.jsonl")
    assert not set(reviewed) & _images(export / "holdout.jsonl")

    lineage = json.loads((tmp_path / "run" / "lineage.json").read_text())
    parent_version = hashlib.sha256((parent / "manifest.json").read_bytes()).hexdigest()
    assert lineage["parent"] == {"bundle": str(parent.resolve()), "version": parent_version}
    assert lineage["export"]["folder"] == str(export.resolve())
    assert lineage["export"]["stations"] == {"sim-line": len(SEEDS)}
    assert lineage["export"]["reviewers"] == {"qa-sim": len(SEEDS)}
    assert lineage["export"]["models"] == {parent_version: len(SEEDS)}
    assert lineage["replay"]["share"] == 0.5 and lineage["replay"]["sources"][0]["generated"] is True
    assert lineage["drawn"] == {"reviewed": len(reviewed), GENERATED: len(encoded) - len(reviewed)}
    assert (lineage["steps"], lineage["seed"]) == (4, 0)

    # the bundle carries the lineage in its manifest; the model store reads its parent from there
    child = export_bundle(checkpoint, tmp_path / "child")
    manifest = json.loads((child / "manifest.json").read_text())
    assert manifest["lineage"]["parent"]["version"] == parent_version
    store = ModelStore(tmp_path / "store", max_bytes=1 << 30)
    store.add(parent, "integrator", alias="production")
    added = store.add(child, "integrator", alias="candidate")
    assert added.version.info["parent"] == parent_version


def test_the_report_shows_the_lineage_and_every_check_before_and_after(parent, export, tmp_path):
    from tools.distill.__main__ import main
    from tools.distill.train import TrainConfig, train
    from tools.export.onnx_bundle import export_bundle

    run = tmp_path / "run"
    cfg = TrainConfig(
        out=str(run), shape="test", steps=2, batch=2, warmup=1, save_every=2, eval_every=1000, workers=0,
        init_from=str(parent), data=str(export), grounding=0.0,
    )  # fmt: skip
    bundle = export_bundle(train(cfg), tmp_path / "bundle")
    args = ["report", "--run", str(run), "--bundle", str(bundle), "--seeds", "0:2", "--compare", "parent"]
    assert main([*args, "--new-kind", "chip", "--new-kind-seeds", "10:12"]) == 0

    report = json.loads((bundle / "report.json").read_text())
    assert report["lineage"]["export"]["train_records"] + report["lineage"]["export"]["holdout_records"] == len(SEEDS)
    rows = {(r["check"], r["figure"]): r for r in report["before_after"]["rows"]}
    assert {"defects", "screws", "holes", "label", "label_missing", "station"} == {c for c, _ in rows}
    assert report["new_kind"]["after"]["kind"] == "chip" and report["new_kind"]["before"] is not None
    md = (bundle / "REPORT.md").read_text()
    assert md.startswith("# Fine-tuned student")
    for text in ("## Data lineage", str(export.resolve()), "sim-line", "qa-sim", "## Before and after",
                 "## New defect kind: chip", "replay: 50% of the examples"):  # fmt: skip
        assert text in md, text


def test_reviewed_records_fill_their_share_and_corrected_ones_count_more(tmp_path):
    """However few the reviewed records, they fill 1 - share of the draws; a corrected record is drawn
    corrected_weight times as often as a confirmed one."""
    out = tmp_path / "export"
    write_review_export(out, range(3_000_000, 3_000_012), ("chip",))
    rows = [json.loads(line) for line in (out / "train.jsonl").open()]
    for row in rows[::2]:  # half of them confirmed instead of corrected
        row["source"]["corrected"] = False
    (out / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    mix, lineage = build_mix(str(out), None, 0.7, 3.0, seed=0, generated_seed=1_000_000)
    assert mix is not None
    picks = [mix.pick(i) for i in range(6000)]
    reviewed = [k for name, k in picks if name == "reviewed"]
    assert abs(len(reviewed) / len(picks) - 0.3) < 0.03
    corrected = {k for k, r in enumerate(rows) if r["source"]["corrected"]}
    per_corrected = sum(k in corrected for k in reviewed) / len(corrected)
    per_confirmed = sum(k not in corrected for k in reviewed) / (len(rows) - len(corrected))
    assert 2.4 < per_corrected / per_confirmed < 3.6
    share = 3 * len(corrected) / (3 * len(corrected) + len(rows) - len(corrected))
    assert lineage["weighting"]["corrected_draw_share"] == pytest.approx(share, abs=1e-6)
    assert [mix.pick(i) for i in range(50)] == picks[:50]  # the same draws on a resume


def test_a_records_file_replays_beside_generated_parts(tmp_path):
    export = tmp_path / "export"
    write_review_export(export, range(3_000_000, 3_000_010), ("chip",))
    earlier = tmp_path / "earlier"
    write_review_export(earlier, range(3_100_000, 3_100_010), ("scratch",))
    replay_file = str(earlier / "train.jsonl")
    mix, lineage = build_mix(str(export), [GENERATED, replay_file], 0.5, 3.0, seed=1, generated_seed=1_000_000)
    assert mix is not None
    names = {mix.pick(i)[0] for i in range(400)}
    assert names == {"reviewed", GENERATED, replay_file}
    (generated, from_file) = lineage["replay"]["sources"]
    assert generated["generated"] and from_file["records"] == sum(1 for _ in open(replay_file))
    assert isinstance(mix.draw(next(i for i in range(400) if mix.pick(i)[0] == replay_file)).image_path, Path)


def test_the_holdout_is_refused_as_training_data(export, tmp_path):
    with pytest.raises(JsonlError, match="must not be a holdout split"):
        build_mix(str(export / "holdout.jsonl"), None, 0.5, 3.0, seed=0, generated_seed=0)
    with pytest.raises(JsonlError, match="must not be a holdout split"):
        build_mix(str(export), [str(export / "holdout.jsonl")], 0.5, 3.0, seed=0, generated_seed=0)
    edited = tmp_path / "edited"  # an export edited by hand: an image on both sides
    edited.mkdir()
    (edited / "images").symlink_to(export / "images")
    held = (export / "holdout.jsonl").read_text()
    (edited / "holdout.jsonl").write_text(held)
    (edited / "train.jsonl").write_text((export / "train.jsonl").read_text() + held.splitlines()[0] + "\n")
    with pytest.raises(JsonlError, match="train.jsonl: record .*: its image is also in holdout.jsonl"):
        build_mix(str(edited), None, 0.5, 3.0, seed=0, generated_seed=0)


def test_bad_fine_tune_arguments_exit_with_one_line(export, tmp_path, capsys):
    from tools.distill.__main__ import main

    base = ["train", "--out", str(tmp_path / "run"), "--shape", "test", "--steps", "1", "--workers", "0"]
    assert main([*base, "--data", str(tmp_path / "nowhere")]) == 2
    assert main([*base, "--data", str(export), "--replay-share", "1.0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "nowhere: not found" in err[0] and "replay share 1.0" in err[1]
    assert not (tmp_path / "run").exists()


def test_reviewed_points_are_trained_in_the_students_reading_order(tmp_path):
    from edge_inspect.vlm.points import parse_points
    from tools.distill.reviewed import read_export

    out = tmp_path / "export"
    write_review_export(out, range(3_000_000, 3_000_030), ("chip",), defect_counts=(3,))
    reviewed = read_export(out)
    for rec in reviewed.train:
        keys = [(round(y * 10), x) for x, y in rec.points]
        assert keys == sorted(keys)
        said = [v for p in parse_points(rec.target).points for v in (p.x, p.y)]
        assert said == pytest.approx([v for p in rec.points for v in p], abs=1e-3)
    assert np.mean([len(r.points) for r in reviewed.train]) > 2


def test_training_and_evaluation_parts_hold_a_new_kind_only_when_asked():
    from edge_inspect.sim import NEW_KINDS, PartSpec
    from tools.distill.dataset import sim_record
    from tools.distill.evaluate import sim_records

    asked = [sim_record(1_000_000 + s, task="defects", defect_kinds=("chip",), defect_counts=(2,)) for s in range(5)]
    assert all(r.kinds == ["chip", "chip"] for r in asked)
    default = [sim_record(1_000_000 + s, augment=True) for s in range(40)]
    assert not any(k in NEW_KINDS for r in default for k in r.kinds)
    evaluated = sim_records(range(10), ["defects"], spec=PartSpec(defect_kinds=("crack",)))
    assert {k for r in evaluated for k in r.kinds} == {"crack"}
