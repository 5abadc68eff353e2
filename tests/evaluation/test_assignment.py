"""The evaluation's own minimum-cost assignment: optimal on hand-made cases, and the very pairs SciPy's
linear_sum_assignment picks (ties included) on random matrices, square, wide and tall."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edge_inspect.evaluation.assignment import linear_sum_assignment


def _best(cost: np.ndarray) -> float:
    rows, cols = cost.shape
    if rows <= cols:
        return min(
            sum(cost[r, c] for r, c in zip(range(rows), p, strict=True))
            for p in itertools.permutations(range(cols), rows)
        )
    return _best(cost.T)


def test_optimal_against_brute_force():
    rng = np.random.default_rng(1)
    for _ in range(300):
        cost = rng.random(tuple(rng.integers(1, 6, 2))) * 10
        rows, cols = linear_sum_assignment(cost)
        assert len(rows) == min(cost.shape) and len(set(cols.tolist())) == len(cols)
        assert cost[rows, cols].sum() == pytest.approx(_best(cost))


def test_nearest_first_is_not_optimal_here():
    cost = np.array([[1.0, 2.0], [1.5, 10.0]])  # greedy takes (0,0) then (1,1): 11; optimal (0,1),(1,0): 3.5
    rows, cols = linear_sum_assignment(cost)
    assert rows.tolist() == [0, 1] and cols.tolist() == [1, 0]


def test_trivial_and_invalid_inputs():
    rows, cols = linear_sum_assignment(np.zeros((0, 3)))
    assert rows.size == cols.size == 0
    with pytest.raises(ValueError, match="invalid numeric entries"):
        linear_sum_assignment(np.array([[np.nan, 1.0]]))


def test_the_same_pairs_as_scipy_ties_included():
    scipy_optimize = pytest.importorskip("scipy.optimize", reason="SciPy (the 'export' extra) is the reference")
    rng = np.random.default_rng(7)
    for trial in range(3000):
        shape = tuple(rng.integers(1, 9, 2))
        cost = rng.integers(0, 3, shape).astype(float) if trial % 2 else rng.random(shape) * 200
        ours, theirs = linear_sum_assignment(cost), scipy_optimize.linear_sum_assignment(cost)
        assert ours[0].tolist() == theirs[0].tolist() and ours[1].tolist() == theirs[1].tolist(), cost
