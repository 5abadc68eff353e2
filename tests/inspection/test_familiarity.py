"""The unfamiliar-frame guard's numbers: the shrunk covariance, the held-out calibration, the marking
of an unfamiliar view's checks, the pooling of the vision features, the reference file."""

from __future__ import annotations

import numpy as np
import pytest

from edge_inspect.inspection.checks import CheckOutcome
from edge_inspect.inspection.familiarity import (
    MIN_FRAMES,
    fit_reference,
    held_out_scores,
    mark_unfamiliar,
    shrunk_covariance,
    threshold_for,
)
from edge_inspect.inspection.inspector import Inspection, View
from edge_inspect.station import references
from edge_inspect.verdict import Verdict
from edge_inspect.vlm.features import pool_features


def ledoit_wolf_by_the_book(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit & Wolf (2004), one outer product at a time."""
    n, d = x.shape
    xc = x - x.mean(axis=0)
    s = xc.T @ xc / n
    m = np.trace(s) / d
    d2 = np.sum((s - m * np.eye(d)) ** 2)
    b2 = min(d2, sum(np.sum((np.outer(r, r) - s) ** 2) for r in xc) / n**2)
    a = b2 / d2
    return a * m * np.eye(d) + (1 - a) * s, a


def test_the_shrunk_covariance_is_ledoit_wolf():
    x = np.random.default_rng(1).normal(size=(40, 12)) * np.linspace(0.5, 3, 12)
    _, cov, weight = shrunk_covariance(x)
    expected, a = ledoit_wolf_by_the_book(x)
    assert weight == pytest.approx(a) and 0 < weight < 1
    np.testing.assert_allclose(cov, expected, rtol=1e-10)


def test_the_threshold_holds_its_false_alarm_rate_on_fresh_frames_and_flags_far_ones():
    rng = np.random.default_rng(2)
    d = 48
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    normal = lambda n: rng.normal(size=(n, d)) @ mix + 3.0  # noqa: E731 - correlated, off-centre
    ref = fit_reference(normal(200))
    fresh = np.array([ref.score(v) for v in normal(4000)])
    assert (fresh > ref.threshold).mean() <= 0.005
    assert ref.holdout[2] <= ref.threshold  # never below the highest held-out score
    moved = np.array([ref.score(v + 1.0) for v in normal(200)])  # every channel one spread further
    assert (moved > ref.threshold).mean() > 0.9
    assert ref.score(np.zeros(d)) > 3 * ref.threshold  # a black frame's features: all at zero


def test_held_out_scores_do_not_see_their_own_frame_and_calibration_is_log_normal():
    x = np.random.default_rng(3).normal(size=(60, 8))
    held = held_out_scores(x)
    mean, cov, _ = shrunk_covariance(x)
    inside = np.sqrt(np.einsum("ij,jk,ik->i", x - mean, np.linalg.inv(cov), x - mean))
    assert held.mean() > inside.mean()  # a frame scored against a reference without it is further out
    scores = np.exp(np.random.default_rng(4).normal(1.0, 0.2, 500))
    logs = np.log(scores)
    expected = np.exp(logs.mean() + 3.0902 * logs.std(ddof=1))  # the 0.999 quantile of the fitted log-normal
    assert threshold_for(scores, 0.999) == pytest.approx(max(expected, scores.max()), rel=1e-4)
    assert threshold_for(np.array([1.0, 1.0, 5.0]), 0.6) == 5.0  # never below the highest held-out score


def test_too_few_frames_are_refused():
    with pytest.raises(ValueError, match=f"at least {MIN_FRAMES} frames"):
        fit_reference(np.zeros((MIN_FRAMES - 1, 4)))


def outcome(name: str, status: str = "pass") -> CheckOutcome:
    return CheckOutcome(name, "qa", status, "answered yes", answer="yes", p_yes=0.9, margin=0.8)  # type: ignore[arg-type]


def test_only_the_checks_of_an_unfamiliar_view_are_marked():
    views = [View("frame", (0, 2)), View("crop 0,0,10,10", (1,))]
    inspection = Inspection(Verdict.PASS, [outcome("a"), outcome("b"), outcome("c", "fail")], views=views)
    errored = mark_unfamiliar(inspection, {"frame": "score 40.0 over 20.0"}, "error")
    assert errored.verdict == Verdict.ERROR and errored.outcomes[1] == inspection.outcomes[1]
    assert errored.outcomes[0].reason == "unfamiliar image (score 40.0 over 20.0); model said: answered yes"
    assert errored.outcomes[0].answer == "yes" and errored.error.count("unfamiliar image") == 2
    unsure = mark_unfamiliar(inspection, {"crop 0,0,10,10": "score 40.0 over 20.0"}, "uncertain")
    assert unsure.verdict == Verdict.FAIL and [o.status for o in unsure.outcomes] == ["pass", "fail", "fail"]
    assert unsure.outcomes[1].reason.startswith("uncertain: unfamiliar image (score 40.0")
    assert mark_unfamiliar(inspection, {}, "error") is inspection


def test_pooling_takes_the_global_crops_tokens():
    features = np.concatenate([np.full((4, 3), 2.0), np.full((6, 3), 50.0)]).astype(np.float32)
    features[0] = 4.0
    pooled = pool_features(features, (2, 2, 3, 2))
    np.testing.assert_allclose(pooled, [2.5, 2.5, 2.5, np.sqrt(0.75), np.sqrt(0.75), np.sqrt(0.75)], rtol=1e-6)


def test_a_reference_file_round_trips_and_a_bad_one_is_one_line(tmp_path):
    ref = fit_reference(np.random.default_rng(5).normal(size=(40, 6)))
    path = tmp_path / "v" / "recipe-1.npz"
    references.save(path, references.RecipeReference({"frame": ref}, {"recipe": 1}))
    back = references.load(path)
    assert back.meta["recipe"] == 1 and back.views["frame"].threshold == pytest.approx(ref.threshold)
    probe = np.ones(6)
    assert back.views["frame"].score(probe) == pytest.approx(ref.score(probe), rel=1e-5)
    path.write_bytes(b"not a reference")
    with pytest.raises(ValueError, match=r"recipe-1.npz: not a readable reference") as err:
        references.load(path)
    assert "\n" not in str(err.value)
