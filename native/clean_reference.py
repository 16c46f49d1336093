"""numpy reference of the window cleaning kernel (``native/_clean.pyx``), for the tests.

Same steps and results as :func:`gridflow.preprocess.clean.clean_window`, written for clarity.
"""

from __future__ import annotations

import numpy as np

from gridflow.native.resample import resample
from gridflow.preprocess.clean import MAD_TO_SIGMA, CleaningParams, WindowFeatures


def hampel(values: np.ndarray, window: int, n_sigmas: float, min_sigma: float) -> np.ndarray:
    """Boolean mask of outliers among ``values`` (endpoints never flagged, see the module docstring).

    >>> hampel(np.array([1.0, 1.0, 9.0, 1.0, 1.0]), window=3, n_sigmas=3.0, min_sigma=0.5).tolist()
    [False, False, True, False, False]
    """
    n = values.size
    flags = np.zeros(n, dtype=bool)
    if n < 3:
        return flags
    width = min(window, n if n % 2 else n - 1)
    half = width // 2
    windows = np.lib.stride_tricks.sliding_window_view(values, width)
    medians = np.median(windows, axis=1)
    sigmas = np.maximum(MAD_TO_SIGMA * np.median(np.abs(windows - medians[:, None]), axis=1), min_sigma)
    centre = np.clip(np.arange(n) - half, 0, medians.size - 1)  # edge readings use the first/last full window
    flags[1:-1] = (np.abs(values - medians[centre]) > n_sigmas * sigmas[centre])[1:-1]
    return flags


def hampel_medians(values: np.ndarray, window: int) -> np.ndarray:
    """The median of each reading's Hampel window (the replacement value of an outlier)."""
    n = values.size
    width = min(window, n if n % 2 else n - 1)
    medians = np.median(np.lib.stride_tricks.sliding_window_view(values, width), axis=1)
    return medians[np.clip(np.arange(n) - width // 2, 0, medians.size - 1)]


def _stuck_run(values: np.ndarray) -> int:
    """Number of identical readings at the end of the window (a stuck sensor repeats its last value)."""
    if not values.size:
        return 0
    changed = np.flatnonzero(values != values[-1])
    return int(values.size - (changed[-1] + 1 if changed.size else 0))


def clean_window_reference(
    ts_ms, power_w, start_ms: int, params: CleaningParams = CleaningParams(), utc_offset_ms: int = 0
) -> WindowFeatures:
    """Clean the readings of one meter in one window and compute its features.

    Parameters
    ----------
    ts_ms, power_w : sequence
        Reading times (epoch ms, any order, duplicates allowed) and power (W), same length, at least one.
    start_ms : int
        Window start; every ``ts_ms`` must lie in ``[start_ms, start_ms + params.window_ms)``.
    """
    ts = np.asarray(ts_ms, dtype=np.int64)
    raw = np.asarray(power_w, dtype=np.float64)
    end_ms = start_ms + params.window_ms
    if ts.ndim != 1 or ts.shape != raw.shape or not ts.size:
        raise ValueError(f"ts_ms and power_w must be 1-D, equally long and non-empty, got {ts.shape}, {raw.shape}")
    if ts.min() < start_ms or ts.max() >= end_ms:
        raise ValueError(f"ts_ms must lie in the window [{start_ms}, {end_ms}), got {ts.min()}..{ts.max()}")
    order = np.argsort(ts, kind="stable")
    ts, raw = ts[order], raw[order]
    first = np.ones(ts.size, dtype=bool)
    first[1:] = ts[1:] != ts[:-1]
    n_duplicates = int(ts.size - first.sum())
    ts, raw = ts[first], raw[first]

    outliers = hampel(raw, params.hampel_window, params.hampel_n_sigmas, params.hampel_min_sigma_w)
    clean = raw.copy()
    if outliers.any():
        clean[outliers] = hampel_medians(raw, params.hampel_window)[outliers]
    clean[np.abs(clean) < params.noise_floor_w] = 0.0

    n_grid = params.window_ms // params.step_ms
    grid = resample(ts, clean, start_ms, params.step_ms, n_grid, params.max_gap_ms)
    grid_ts = start_ms + params.step_ms * np.arange(n_grid, dtype=np.int64)
    before = grid_ts < ts[0]
    grid[before & (ts[0] - grid_ts < params.step_ms)] = clean[0]
    after = grid_ts > ts[-1]
    grid[after & (grid_ts - ts[-1] < params.step_ms)] = clean[-1]

    known = ~np.isnan(grid)
    # a grid point is measured if a reading falls in its step [t, t + step), else interpolated
    measured = np.zeros(n_grid, dtype=bool)
    measured[(ts - start_ms) // params.step_ms] = True
    values = grid[known]
    step_h = params.step_ms / 3_600_000.0
    energy_wh = float(values.sum() * step_h)
    hours = ((grid_ts[known] + utc_offset_ms) // 3_600_000) % 24
    peak_energy = float(values[np.isin(hours, list(params.peak_hours))].sum() * step_h)
    mean = float(values.mean()) if values.size else None
    peak = float(values.max()) if values.size else None
    return WindowFeatures(
        window_start_ms=int(start_ms),
        window_end_ms=int(end_ms),
        n_readings=int(ts.size),
        n_duplicates=n_duplicates,
        n_outliers=int(outliers.sum()),
        n_interpolated=int((known & ~measured).sum()),
        n_missing=int(n_grid - known.sum()),
        coverage=float(known.mean()),
        energy_wh=energy_wh,
        mean_w=mean,
        peak_w=peak,
        min_w=float(values.min()) if values.size else None,
        std_w=float(values.std()) if values.size else None,
        load_factor=mean / peak if mean is not None and peak else None,
        peak_share=(peak_energy / energy_wh if energy_wh > 0 else None),
        raw_max_w=float(raw.max()),
        stuck_run=_stuck_run(raw),
        outlier_values=[float(v) for v in raw[outliers]],
        grid_w=[None if np.isnan(v) else float(v) for v in grid],
    )
