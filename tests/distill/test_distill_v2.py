"""Object-level metrics, the camera knobs and robustness transforms, phrasings and negations."""

import numpy as np
import pytest

pytest.importorskip("scipy", reason="evaluation needs the 'export' extra")

from edge_inspect.evaluation.metrics import PointScore, bootstrap_micro, micro, score_points, summarize  # noqa: E402
from edge_inspect.sim import Camera, render_part  # noqa: E402


def _box(x0, x1, y0=40, y1=60, size=100):
    m = np.zeros((size, size), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_hungarian_matching_beats_nearest_first():
    """Nearest-first would pair the first prediction with the second object (0.08 away) and score no hit;
    the minimum-cost matching pairs each prediction with the object whose mask holds it."""
    masks = [_box(25, 45), _box(47, 56)]
    s = score_points([(0.42, 0.5), (0.52, 0.5)], [(0.30, 0.5), (0.50, 0.5)], masks, dilate_px=0)
    assert s.hits == 2
    assert sorted((m.prediction, m.obj) for m in s.matches) == [(0, 0), (1, 1)]
    assert [round(m.distance_px, 6) for m in sorted(s.matches, key=lambda m: m.prediction)] == [12.0, 2.0]


def test_micro_counts_objects_and_clean_parts_add_false_positives_only():
    masks = [_box(10, 20), _box(70, 90)]
    a = score_points([(0.15, 0.5), (0.5, 0.5)], [(0.15, 0.5), (0.8, 0.5)], masks)  # 1 hit, 1 miss
    clean_quiet = score_points([], [], [])
    clean_noisy = score_points([(0.3, 0.3), (0.6, 0.6)], [], [])
    assert (a.hits, a.predictions, a.objects) == (1, 2, 2)
    m = micro([a, clean_quiet])
    assert (m["precision"], m["recall"], m["f1"]) == (0.5, 0.5, 0.5)
    m = micro([a, clean_quiet, clean_noisy])  # two false positives, no objects: precision drops, recall stays
    assert m["predictions"] == 4 and m["objects"] == 2 and m["hits"] == 1
    assert m["precision"] == 0.25 and m["recall"] == 0.5 and m["f1"] == pytest.approx(2 * 0.25 * 0.5 / 0.75)
    # the per-image mean counts the quiet clean part as a perfect 1.0
    assert summarize([a, clean_quiet])["f1"] == pytest.approx((0.5 + 1.0) / 2)


def test_bootstrap_interval_holds_the_point_estimate():
    rng = np.random.default_rng(1)
    scores = [PointScore(int(p), int(o), int(min(p, o) * rng.random())) for p, o in rng.integers(0, 4, (80, 2))]
    point = micro(scores)
    ci = bootstrap_micro(scores, samples=500)
    for name in ("precision", "recall", "f1"):
        assert ci[name][0] <= point[name] <= ci[name][1]
        assert ci[name][1] - ci[name][0] > 0.01
    same = bootstrap_micro([PointScore(2, 2, 1)] * 10, samples=100)  # no spread: the interval is the point
    assert same["f1"] == [pytest.approx(0.5), pytest.approx(0.5)]


class Oracle:
    """Answers from the ground truth held in a lookup (to test the evaluation's bookkeeping)."""

    def __init__(self, truth, extra_defect=False):
        self.truth, self.extra_defect, self.last_tokens = truth, extra_defect, None

    def point(self, rgb, prompt):
        points = list(self.truth[(id(rgb), prompt)])
        if self.extra_defect and "defects" in prompt:
            points.append((0.01, 0.01))  # off the plate: never a hit
        self.last_tokens = 5 * len(points) + 2
        return points, "<points/>"

    def yes_no_scores(self, rgb, prompt):
        answer = self.truth[(id(rgb), prompt)]
        return answer, float(answer), 1.0


def test_evaluation_bookkeeping_with_an_oracle():
    from tools.distill.evaluate import evaluate_records, sim_records

    records = sim_records(range(40))
    truth = {(id(r.image), r.prompt): (r.points if r.kind == "point" else r.answer) for r in records}
    m = evaluate_records(Oracle(truth), records, bootstrap=100)
    d = m["pointing"]["defects"]
    assert d["micro"]["f1"] == 1.0 and d["false_call_rate"] == 0.0 and d["escape_rate"] == 0.0
    assert d["median_px_error"] == pytest.approx(0.0, abs=0.6)
    assert d["tokens_per_point"] > 5 and set(d["recall_by_kind"]) <= {"scratch", "spot", "dent"}
    assert m["station"]["good_parts"] > 0 and m["station"]["good_part_reject_rate"] == 0.0
    assert m["station"]["bad_part_pass_rate"] == 0.0 and m["station"]["good_parts"] + m["station"]["bad_parts"] == 40
    assert m["yes_no_accuracy"] == {"label": 1.0, "label_missing": 1.0}
    assert m["screws_missing"]["empty_holes_called_screw"] == 0.0

    noisy = evaluate_records(Oracle(truth, extra_defect=True), records, bootstrap=0)["pointing"]["defects"]
    assert noisy["false_call_rate"] == 1.0 and noisy["micro"]["recall"] == 1.0 and noisy["micro"]["precision"] < 1.0


def test_identity_camera_renders_the_same_bytes():
    assert render_part(5).image.tobytes() == render_part(5, camera=Camera()).image.tobytes()
    with pytest.raises(ValueError):
        Camera(scale=0)
    with pytest.raises(ValueError):
        Camera(jpeg=101)


@pytest.mark.parametrize(
    "camera",
    [
        Camera(scale=0.8),
        Camera(scale=1.2),
        Camera(rotation=10),
        Camera(rotation=-5),
        Camera(shift=(0.1, 0.1)),
        Camera(scale=0.85, rotation=-8, shift=(-0.1, 0.05)),
    ],
)
def test_camera_geometry_moves_masks_and_points_with_the_image(camera):
    for seed in range(6):
        base, moved = render_part(seed), render_part(seed, camera=camera)
        matrix = camera.matrix(base.width, base.height)
        for obj in moved.objects:
            x, y = int(round(obj.point[0])), int(round(obj.point[1]))
            assert obj.mask[y, x], (seed, obj.kind)
        holes = [o for o in base.objects if o.kind in ("screw", "empty_hole")]
        moved_holes = [o for o in moved.objects if o.kind in ("screw", "empty_hole")]
        assert len(holes) == len(moved_holes) == 4  # these shifts keep the plate in the frame
        for a, b in zip(holes, moved_holes, strict=True):
            expected = matrix @ np.array([*a.point, 1.0])
            assert np.hypot(*(expected[:2] - b.point)) < 1.0, (seed, a.kind)
            grey = moved.image[..., 1].astype(float)
            if b.kind == "empty_hole":  # the image moved too: the hole is dark where its mask now is
                assert grey[b.mask].mean() < grey.mean(), seed


def test_camera_photometry_keeps_geometry():
    base = render_part(8)
    for camera in (Camera(brightness=-0.3), Camera(brightness=0.3), Camera(blur=1.5), Camera(noise=8), Camera(jpeg=40)):
        seen = render_part(8, camera=camera)
        assert [o.point for o in seen.objects] == [o.point for o in base.objects]
        assert all((a.mask == b.mask).all() for a, b in zip(seen.objects, base.objects, strict=True))
        assert seen.image.tobytes() != base.image.tobytes()
    dark = render_part(8, camera=Camera(brightness=-0.3))
    assert dark.image.mean() == pytest.approx(0.7 * base.image.mean(), rel=0.03)
    assert render_part(8, camera=Camera(blur=1.5)).image.astype(float).var() < base.image.astype(float).var()


def test_phrasings_and_negated_question_flip_the_answer():
    from tools.distill.dataset import from_part, sim_record
    from tools.distill.tasks import PHRASINGS, TASKS

    flips = 0
    for seed in range(20):
        part = render_part(seed)
        present, missing = from_part(part, "label"), from_part(part, "label_missing")
        assert present.answer == (part.label != "absent") and missing.answer == (not present.answer)
        assert {present.target, missing.target} == {"Yes.", "No."}
        flips += part.label == "absent"
        holes = from_part(part, "holes")
        assert len(holes.points) == 4 - len(part.screws)
    assert flips  # both answers occur
    prompts = {}
    for seed in range(300):
        rec = sim_record(2_000_000 + seed, augment=True)
        assert rec.prompt in PHRASINGS[rec.task]
        prompts.setdefault(rec.task, set()).add(rec.prompt)
        if rec.kind == "yes_no":
            part_label = sim_record(2_000_000 + seed, task="label", augment=True).answer
            assert rec.answer == (part_label if rec.task == "label" else not part_label)
    assert set(prompts) == set(TASKS) and all(len(p) >= 3 for p in prompts.values())
    assert "Point to the defects." in prompts["defects"] and "Is the label missing?" in prompts["label_missing"]


def test_training_cameras_cover_the_robustness_shifts():
    from tools.distill.dataset import sample_camera

    rng = np.random.default_rng(0)
    cams = [sample_camera(rng) for _ in range(400)]
    scales = [c.scale for c in cams]
    assert min(scales) < 0.8 and max(scales) > 1.2
    assert min(c.rotation for c in cams) < -10 and max(c.rotation for c in cams) > 10
    assert min(c.brightness for c in cams) < -0.3 and max(c.brightness for c in cams) > 0.3
    assert max(c.blur for c in cams) > 1.5 and max(c.noise for c in cams) > 8 and min(c.jpeg or 100 for c in cams) < 40
    assert 0.1 < np.mean([c == Camera() for c in cams]) < 0.35  # some parts as the generator draws them


def test_report_states_bars_robustness_prompts_and_commands(tmp_path):
    import json

    from tools.distill.evaluate import evaluate_records, sim_records
    from tools.distill.report import write_report

    records = sim_records(range(40))
    truth = {(id(r.image), r.prompt): (r.points if r.kind == "point" else r.answer) for r in records}
    metrics = evaluate_records(Oracle(truth), records, bootstrap=50)
    run, bundle = tmp_path / "run", tmp_path / "bundle"
    run.mkdir(), bundle.mkdir()
    (run / "log.jsonl").write_text(
        '{"step": 10, "minutes": 1.0, "loss": 2.0}\n{"step": 10, "minutes": 1.5, "eval": {"defect_micro_f1": 0.5}}\n'
    )
    (run / "train_config.json").write_text(
        json.dumps(
            {
                "shape": "demo",
                "shape_values": {"vit_layers": 4, "vit_hidden": 128, "text_layers": 4, "text_hidden": 256, "crop": 224},
            }
        )
    )
    (bundle / "decoder.onnx").write_bytes(b"x" * 1000)
    row = {
        "defect_micro_f1": 1.0,
        "defect_micro_recall": 1.0,
        "false_call_rate": 0.0,
        "escape_rate": 0.0,
        "screw_count_exact": 1.0,
        "label_accuracy": 1.0,
        "label_missing_accuracy": 1.0,
        "good_part_reject_rate": 0.0,
        "bad_part_pass_rate": 0.02,
        "good_parts": 5,
        "bad_parts": 50,
    }
    md = write_report(
        run,
        bundle,
        metrics,
        range(0, 40),
        ["python -m tools.distill train --out R"],
        123.0,
        shifts={"none": row, "scale0.8": row},
        shift_seeds=range(0, 10),
    )
    text = md.read_text()
    for needle in (
        "## Acceptance bars",
        "| defect_micro_f1 | 1.000 | ≥ 0.8 | yes |",
        "| scale0.8: bad_part_pass_rate | 0.020 | ≤ 0.01 | **no** |",
        "rot+5: good_part_reject_rate | – | ≤ 0.05 | not measured",
        "## Robustness",
        "tokens per point",
        "median px error",
        "Is the label missing?",
        "python -m tools.distill train --out R",
        "| 10 | 2 | 0.500 |",
    ):
        assert needle in text, needle
    report = json.loads((bundle / "report.json").read_text())
    assert report["robustness"]["scale0.8"]["bad_part_pass_rate"] == 0.02 and report["prompts"]["label_missing"]


def test_report_of_a_run_started_from_a_bundle_counts_the_earlier_training(tmp_path):
    """A run made with --init-from: steps, minutes, CPU minutes and the validation curve continue
    those in the source bundle's report.json."""
    import json

    from tools.distill.evaluate import evaluate_records, sim_records
    from tools.distill.report import write_report

    records = sim_records(range(6))
    truth = {(id(r.image), r.prompt): (r.points if r.kind == "point" else r.answer) for r in records}
    metrics = evaluate_records(Oracle(truth), records, bootstrap=10)
    source, run, bundle = tmp_path / "v2", tmp_path / "run", tmp_path / "bundle"
    for folder in (source, run, bundle):
        folder.mkdir()
    (source / "report.json").write_text(
        json.dumps(
            {
                "training": {"steps": 8500, "minutes": 325.0, "cpu_minutes": 441.0},
                "learning_curve": {
                    "evaluations": [{"step": 8500, "minutes": 325.0, "eval": {"defect_micro_f1": 0.76}}]
                },
            }
        )
    )
    (run / "log.jsonl").write_text(
        '{"step": 100, "minutes": 4.0, "cpu_minutes": 6.0, "loss": 1.0}\n'
        '{"step": 100, "minutes": 4.5, "eval": {"defect_micro_f1": 0.81}}\n'
    )
    (run / "train_config.json").write_text(
        json.dumps(
            {
                "shape": "demo",
                "init_from": str(source),
                "shape_values": {"vit_layers": 4, "vit_hidden": 128, "text_layers": 4, "text_hidden": 256, "crop": 224},
            }
        )
    )
    (bundle / "decoder.onnx").write_bytes(b"x" * 10)
    text = write_report(run, bundle, metrics, range(0, 6), ["cmd"]).read_text()
    assert "the last 100 steps continued from the bundle" in text and "8600 steps in all" in text
    assert "447 minutes of process CPU time" in text
    assert "| 8500 | 325 | 0.760 |" in text and "| 8600 | 330 | 0.810 |" in text
    training = json.loads((bundle / "report.json").read_text())["training"]
    assert (training["steps"], training["cpu_minutes"], training["earlier"]["steps"]) == (8600, 447.0, 8500)
    (source / "report.json").unlink()  # a source bundle without a report: said, not taken for training from scratch
    text = write_report(run, bundle, metrics, range(0, 6), ["cmd"]).read_text()
    assert "whose training is not counted here (it has no report.json)" in text and "from scratch" not in text
