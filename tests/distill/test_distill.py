"""Distillation plumbing: metrics, records, a few training steps, teacher labelling, evaluation."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from ..support.paths import REPO_ROOT

pytest.importorskip("torch", reason="distillation needs the 'export' extra")

from edge_inspect.evaluation.metrics import PointScore, score_points  # noqa: E402


def _mask(h, w, x0, y0, x1, y1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_point_score_rules():
    masks = [_mask(100, 100, 10, 10, 20, 20), _mask(100, 100, 70, 70, 90, 90)]
    truth = [(0.15, 0.15), (0.8, 0.8)]
    assert score_points([(0.12, 0.18), (0.85, 0.75)], truth, masks) == PointScore(2, 2, 2)
    s = score_points([(0.5, 0.5)], truth, masks)  # matched to one object but outside its mask
    assert (s.hits, s.precision, s.recall) == (0, 0.0, 0.0)
    s = score_points([(0.12, 0.18), (0.13, 0.16), (0.5, 0.5)], truth, masks)
    assert s.hits == 1 and s.precision == pytest.approx(1 / 3) and s.recall == 0.5
    assert PointScore(0, 0, 0).f1 == 1.0  # nothing there, nothing predicted
    assert PointScore(1, 0, 0).f1 == 0.0
    assert PointScore(0, 2, 0).f1 == 0.0


def test_dilation_lets_thin_objects_be_hit():
    line = _mask(100, 100, 50, 10, 51, 90)
    assert score_points([(0.53, 0.5)], [(0.505, 0.5)], [line], dilate_px=0).hits == 0
    assert score_points([(0.53, 0.5)], [(0.505, 0.5)], [line], dilate_px=3).hits == 1


def test_dilation_is_a_disk_not_a_square():
    """3 px means a Euclidean distance of 3: a point 3 px right and 3 px below a one-pixel object
    (4.2 px away) is a miss, 3 px straight right is a hit."""
    dot = np.zeros((100, 100), bool)
    dot[50, 50] = True
    assert score_points([(0.53, 0.50)], [(0.50, 0.50)], [dot], dilate_px=3).hits == 1
    assert score_points([(0.53, 0.53)], [(0.50, 0.50)], [dot], dilate_px=3).hits == 0


def test_sim_set_round_trip(tmp_path):
    from tools.distill.dataset import read_jsonl, write_sim_set
    from tools.distill.tasks import TASKS

    jsonl = write_sim_set(tmp_path / "set", range(3))
    records = read_jsonl(jsonl)
    assert len(records) == 3 * len(TASKS)
    for rec in records:
        assert rec.rgb().shape == (240, 320, 3)
        if rec.kind == "point":
            assert len(rec.masks) == len(rec.points)
            for (x, y), mask in zip(rec.points, rec.masks, strict=True):
                assert mask[int(round(y * 239)), int(round(x * 319))] or mask.any()
        else:
            assert rec.target in ("Yes.", "No.")


def test_bad_jsonl_names_file_and_line(tmp_path):
    from tools.distill.dataset import JsonlError, read_jsonl

    path = tmp_path / "bad.jsonl"
    path.write_text('{"image": "a.png", "prompt": "p", "target": "t"}\n{oops\n')
    with pytest.raises(JsonlError, match=r"bad.jsonl:1: image .* not found"):
        read_jsonl(path)
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(JsonlError, match=r"bad.jsonl:2: bad record"):
        read_jsonl(path)


def test_teacher_labels_then_student_trains_then_evaluates(tiny_checkpoint, tmp_path):
    """label (tiny random teacher) → records.jsonl → train a few steps → export → evaluate the bundle."""
    images = tmp_path / "images"
    images.mkdir()
    from edge_inspect.sim import render_part

    for seed in range(3):
        cv2.imwrite(str(images / f"{seed}.png"), render_part(seed).image)

    def run(*args):
        result = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=REPO_ROOT)
        assert result.returncode == 0, result.stderr[-2000:]
        return result

    run(
        "tools.distill",
        "label",
        "--teacher",
        str(tiny_checkpoint),
        "--images",
        str(images),
        "--out",
        str(tmp_path / "labels"),
        "--max-new-tokens",
        "8",
    )
    lines = [json.loads(x) for x in (tmp_path / "labels" / "records.jsonl").read_text().splitlines()]
    assert lines and all(
        r["target"] in ("Yes.", "No.") or "points" in r["target"] or "none" in r["target"] for r in lines
    )

    run(
        "tools.distill",
        "train",
        "--data",
        str(tmp_path / "labels" / "records.jsonl"),
        "--out",
        str(tmp_path / "s"),
        "--shape",
        "test",
        "--steps",
        "3",
        "--batch",
        "2",
        "--eval-parts",
        "0",
    )
    log = (
        [json.loads(x) for x in (tmp_path / "s" / "log.jsonl").read_text().splitlines()]
        if (tmp_path / "s" / "log.jsonl").read_text()
        else []
    )
    assert (tmp_path / "s" / "checkpoint" / "model.safetensors").is_file()
    assert log == [] or all("loss" in r or "eval" in r for r in log)

    # resume continues from the saved step
    run(
        "tools.distill",
        "train",
        "--data",
        str(tmp_path / "labels" / "records.jsonl"),
        "--out",
        str(tmp_path / "s"),
        "--shape",
        "test",
        "--steps",
        "4",
        "--batch",
        "2",
        "--eval-parts",
        "0",
        "--resume",
    )

    run("tools.export", "onnx", "--checkpoint", str(tmp_path / "s" / "checkpoint"), "--out", str(tmp_path / "b"))
    result = run(
        "tools.distill",
        "evaluate",
        "--bundle",
        str(tmp_path / "b"),
        "--seeds",
        "0:2",
        "--out",
        str(tmp_path / "report.json"),
    )
    report = json.loads((tmp_path / "report.json").read_text())
    assert {
        "defect_micro_f1",
        "defect_f1",
        "screw_f1",
        "screw_count_exact",
        "label_accuracy",
        "label_missing_accuracy",
        "false_call_rate",
        "bad_part_pass_rate",
    } <= set(report["headline"])
    assert report["metrics"]["pointing"]["defects"]["micro"]["ci95"]
    assert (tmp_path / "report.md").is_file()
    assert "defect_f1" in result.stdout


def test_training_loss_falls_on_generated_parts(tmp_path):
    from tools.distill.train import TrainConfig, train

    cfg = TrainConfig(
        out=str(tmp_path / "run"), shape="test", steps=30, batch=4, lr=3e-3, warmup=5, save_every=30, workers=0
    )  # no forked worker inside the long-lived test process
    train(cfg)
    losses = [json.loads(x)["loss"] for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert losses[-1] < 0.7 * losses[0], losses


def test_grounding_targets_mark_objects_and_their_points():
    """Per-token targets: each defect's and screw's point lands in a token flagged as its centre,
    whose point target is that point; the label's presence follows the label."""
    from tools.distill.dataset import sim_record
    from tools.distill.grounding import CENTRES, COLUMNS, PRESENCE, token_targets
    from tools.distill.student import SHAPES, image_settings

    settings = image_settings(SHAPES["demo"])
    flags = len(PRESENCE) + len(CENTRES)
    seen_absent = seen_present = 0
    for seed in range(12):
        rec = sim_record(2_000 + seed, task="defects")
        targets = token_targets(rec.region_masks, rec.region_points, rec.rgb().shape[:2], settings)
        views = np.split(targets, 2)  # global view, then the canvas: 8 × 8 tokens each at 224 px
        assert targets.shape == (128, COLUMNS)
        for view in views:
            for c, name in enumerate(CENTRES):
                column = view[:, len(PRESENCE) + c]
                points = rec.region_points[name]
                assert 0 < column.sum() <= len(points) or not points
                for x, y in points:
                    k = min(7, int(y * 8)) * 8 + min(7, int(x * 8))
                    assert column[k] == 1.0 and view[k, PRESENCE.index(name)] == 1.0
                    # the point target is this point, or another one in the same token
                    assert np.isclose(view[k, flags + 2 :], [x, y]).all() or len(points) > 1
            off = view[:, len(PRESENCE) : flags].max(-1) == 0  # tokens without a point regress their centre
            assert np.allclose(view[off, flags : flags + 2], view[off, flags + 2 :])
        if rec.region_masks["label"].any():
            seen_present += 1
            assert views[0][:, PRESENCE.index("label")].sum() >= 4
        else:
            seen_absent += 1
            assert targets[:, PRESENCE.index("label")].sum() == 0
    assert seen_absent and seen_present


def test_point_digits():
    import torch

    from tools.distill.grounding import point_digits

    got = point_digits(torch.tensor([[0.278, 0.4294], [0.0, 0.9996], [0.05, 0.123]]))
    assert got.tolist() == [[2, 7, 4, 2], [0, 0, 9, 9], [0, 5, 1, 2]]


def test_digit_targets_can_be_switched_on_when_resumed(tmp_path):
    """Digit targets can start mid-run (--resume --digits), also from a state saved before the digit
    read-out existed; they train the read-out only while switched on."""
    import torch

    from tools.distill.train import TrainConfig, train

    base = dict(out=str(tmp_path / "run"), shape="test", batch=2, warmup=1, save_every=2, eval_every=1000, workers=0)
    state_path = tmp_path / "run" / "train_state.pt"
    train(TrainConfig(**base, steps=6, stop_at=2))
    before = torch.load(state_path, weights_only=False)["grounding_head"]["digits.weight"]
    train(TrainConfig(**base, steps=6, stop_at=4, digits=0.5), resume=True)
    state = torch.load(state_path, weights_only=False)
    assert state["step"] == 4 and not torch.equal(state["grounding_head"]["digits.weight"], before)

    # a state from before the digit read-out: no digits.* weights, two optimizer groups
    for key in ("digits.weight", "digits.bias"):
        del state["grounding_head"][key]
    dropped = state["optimizer"]["param_groups"][2:]
    state["optimizer"]["param_groups"] = state["optimizer"]["param_groups"][:2]
    for group in dropped:
        for index in group["params"]:
            state["optimizer"]["state"].pop(index, None)
    torch.save(state, state_path)
    train(TrainConfig(**base, steps=6, digits=0.5), resume=True)
    state = torch.load(state_path, weights_only=False)
    assert state["step"] == 6 and len(state["optimizer"]["param_groups"]) == 4


def test_record_masks_follow_the_answer_order():
    """Evaluation looks up masks[i] for the matched points[i]: each point must lie in its own mask,
    also on parts whose objects were generated in another order than the answer lists them."""
    from edge_inspect.sim import render_part
    from tools.distill.dataset import from_part

    reordered = 0
    for seed in range(60):
        part = render_part(seed)
        for task, objects in (("defects", part.defects), ("screws", part.screws)):
            rec = from_part(part, task)
            assert len(rec.points) == len(rec.masks) == len(objects)
            for (x, y), mask in zip(rec.points, rec.masks, strict=True):
                assert mask[int(round(y * part.height)), int(round(x * part.width))], (seed, task)
            reordered += [o.normalized(part.width, part.height) for o in objects] != rec.points
    assert reordered > 5  # the case that matters occurs
