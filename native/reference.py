"""Plain numpy reference implementations the tests check the Cython kernels against."""

from __future__ import annotations

import numpy as np


def resample_reference(ts_ms, values, start_ms: int, step_ms: int, n_slots: int, max_gap_ms: int) -> np.ndarray:
    ts = np.asarray(ts_ms, dtype=np.int64)
    vals = np.asarray(values, dtype=np.float64)
    grid = start_ms + step_ms * np.arange(n_slots, dtype=np.int64)
    out = np.full(n_slots, np.nan)
    if ts.size == 0:
        return out
    right = np.searchsorted(ts, grid, side="left")
    exact = (right < ts.size) & (ts[np.minimum(right, ts.size - 1)] == grid)
    out[exact] = vals[right[exact]]
    inner = ~exact & (right > 0) & (right < ts.size)
    lo, hi = right[inner] - 1, right[inner]
    near = (ts[hi] - ts[lo]) <= max_gap_ms
    frac = (grid[inner] - ts[lo]) / (ts[hi] - ts[lo])
    idx = np.flatnonzero(inner)
    out[idx[near]] = (vals[lo] + (vals[hi] - vals[lo]) * frac)[near]
    return out


def dbscan_reference(X, eps: float, min_samples: int, return_core_mask: bool = False):
    """Brute-force DBSCAN with scikit-learn's labelling: all pairwise squared distances, summed over
    the dimensions in order and compared with ``eps * eps`` (inclusive); clusters grown depth-first
    from each unlabelled core point in index order, a border point taking the first cluster that
    reaches it. O(n^2) memory: for tests only."""
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    d2 = np.zeros((n, n))
    for j in range(X.shape[1]):
        d2 += (X[:, j, None] - X[None, :, j]) ** 2
    neighbours = [np.flatnonzero(row) for row in d2 <= eps * eps]
    core = np.array([len(nb) >= min_samples for nb in neighbours], dtype=bool)
    labels = np.full(n, -1, dtype=np.int64)
    label = 0
    for i in range(n):
        if labels[i] != -1 or not core[i]:
            continue
        stack = [i]
        while stack:
            p = stack.pop()
            if labels[p] != -1:
                continue
            labels[p] = label
            if core[p]:
                stack.extend(int(v) for v in neighbours[p] if labels[v] == -1)
        label += 1
    return (labels, core) if return_core_mask else labels
