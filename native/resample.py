"""Resampling of irregular meter readings onto a fixed grid, backed by the Cython kernel."""

from __future__ import annotations

import numpy as np

from gridflow.native._resample import resample_linear


def resample(ts_ms, values, start_ms: int, step_ms: int, n_slots: int, max_gap_ms: int) -> np.ndarray:
    """Values on the grid ``start_ms + k * step_ms`` for ``k < n_slots``.

    A grid point between two readings at most ``max_gap_ms`` apart is linearly interpolated; a point
    inside a longer gap, or outside the readings, is NaN (missing, not invented).

    >>> resample([0, 10, 40], [0.0, 10.0, 40.0], start_ms=0, step_ms=5, n_slots=9, max_gap_ms=10)
    array([ 0.,  5., 10., nan, nan, nan, nan, nan, 40.])
    """
    ts = np.ascontiguousarray(ts_ms, dtype=np.int64)
    vals = np.ascontiguousarray(values, dtype=np.float64)
    if ts.ndim != 1 or vals.ndim != 1 or ts.shape != vals.shape:
        raise ValueError(f"ts_ms and values must be 1-D of equal length, got shapes {ts.shape} and {vals.shape}")
    if ts.size > 1 and not np.all(np.diff(ts) > 0):
        raise ValueError("ts_ms must be strictly increasing (sort and drop duplicates first)")
    if not np.all(np.isfinite(vals)):
        raise ValueError("values must be finite")
    if step_ms <= 0:
        raise ValueError(f"step_ms must be > 0, got {step_ms}")
    if n_slots < 0:
        raise ValueError(f"n_slots must be >= 0, got {n_slots}")
    if max_gap_ms < 0:
        raise ValueError(f"max_gap_ms must be >= 0, got {max_gap_ms}")
    out = np.empty(n_slots, dtype=np.float64)
    resample_linear(ts, vals, int(start_ms), int(step_ms), int(max_gap_ms), out)
    return out
