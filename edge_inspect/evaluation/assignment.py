"""The minimum-cost assignment of a small rectangular cost matrix, exact: what the pointing metrics
match predicted to true points with, without SciPy (not an appliance dependency).

The algorithm is the shortest augmenting path of Crouse (2016), step by step as SciPy's
``linear_sum_assignment`` runs it (scipy/optimize/rectangular_lsap): the same order of rows, the
same reverse order of columns and the same tie rule, so it picks the same pairs where several
assignments cost the same, and the gate's figures equal those the SciPy-based evaluator printed
(tests/evaluation/test_assignment.py compares the two on random and tied matrices). The matrices
here are a part's points (a few dozen at most): plain Python is fast enough."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["linear_sum_assignment"]


def _augmenting_path(
    cost: list[list[float]], u: list[float], v: list[float], path: list[int], row4col: list[int],
    shortest: list[float], i: int, sr: list[bool], sc: list[bool],
) -> tuple[int, float]:  # fmt: skip
    nc = len(v)
    min_val = 0.0
    remaining = [nc - it - 1 for it in range(nc)]  # reversed: a constant matrix gives the identity
    num_remaining = nc
    for k in range(len(sr)):
        sr[k] = False
    for k in range(nc):
        sc[k] = False
        shortest[k] = math.inf
    sink = -1
    while sink == -1:
        index, lowest = -1, math.inf
        sr[i] = True
        row = cost[i]
        for it in range(num_remaining):
            j = remaining[it]
            r = min_val + row[j] - u[i] - v[j]
            if r < shortest[j]:
                path[j] = i
                shortest[j] = r
            # among equal lowest costs prefer a column that ends the path (a new sink)
            if shortest[j] < lowest or (shortest[j] == lowest and row4col[j] == -1):
                lowest = shortest[j]
                index = it
        min_val = lowest
        if min_val == math.inf:
            raise ValueError("cost matrix is infeasible")
        j = remaining[index]
        if row4col[j] == -1:
            sink = j
        else:
            i = row4col[j]
        sc[j] = True
        num_remaining -= 1
        remaining[index] = remaining[num_remaining]
    return sink, min_val


def linear_sum_assignment(cost_matrix: np.ndarray | Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray]:
    """(rows, columns) of the assignment of least total cost, rows ascending: as
    ``scipy.optimize.linear_sum_assignment(cost_matrix)`` answers (minimisation)."""
    matrix = np.asarray(cost_matrix, dtype=float)
    if matrix.ndim != 2:
        raise ValueError(f"expected a matrix (2-d array), got a {matrix.ndim}-d array")
    if np.isnan(matrix).any() or np.isneginf(matrix).any():
        raise ValueError("matrix contains invalid numeric entries")
    nr, nc = matrix.shape
    if nr == 0 or nc == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    transpose = nc < nr
    if transpose:
        matrix = matrix.T
        nr, nc = nc, nr
    cost = matrix.tolist()
    u, v = [0.0] * nr, [0.0] * nc
    shortest = [math.inf] * nc
    path, col4row, row4col = [-1] * nc, [-1] * nr, [-1] * nc
    sr, sc = [False] * nr, [False] * nc
    for cur in range(nr):
        sink, min_val = _augmenting_path(cost, u, v, path, row4col, shortest, cur, sr, sc)
        u[cur] += min_val
        for i in range(nr):
            if sr[i] and i != cur:
                u[i] += min_val - shortest[col4row[i]]
        for j in range(nc):
            if sc[j]:
                v[j] -= min_val - shortest[j]
        j = sink
        while True:
            i = path[j]
            row4col[j] = i
            col4row[i], j = j, col4row[i]
            if i == cur:
                break
    if transpose:
        order = sorted(range(nr), key=lambda k: col4row[k])
        return np.array([col4row[k] for k in order], dtype=np.int64), np.array(order, dtype=np.int64)
    return np.arange(nr, dtype=np.int64), np.array(col4row, dtype=np.int64)
