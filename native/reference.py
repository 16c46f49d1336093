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
