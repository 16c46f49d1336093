"""A household's daily load profile from its cleaned window means (numpy only, no Flink).

The day (in the configured time zone) is cut into ``slots`` equal slots (24, 48 or 96). Each feature
window ``[start, start + duration)`` has a constant mean power. A slot's value is the duration-weighted
mean power of the window parts inside it, if those parts cover at least ``min_coverage`` of the slot;
otherwise it is missing (None). Interval meters (15, 30, 60 minutes, irregular register reads) thus
spread a long window over every slot it spans instead of piling it into its start slot. Without
``duration_ms`` every window lasts ``window_ms`` and a slot is the plain mean of the windows starting in
it, known when at least ``min_coverage`` of its windows are present. ``profile_norm`` divides by the
mean of the known slots: the per-household scaling that lets households of different size be clustered
by shape.

>>> starts = np.arange(0, DAY_MS, 3_600_000)         # one window an hour: 1 kW, but 3 kW at 18:00
>>> means = np.where(np.arange(24) == 18, 3000.0, 1000.0)
>>> p = daily_profile(starts, means, slots=24, window_ms=3_600_000)
>>> p["profile_w"][17:20], round(p["energy_kwh"], 1), p["coverage"]
([1000.0, 3000.0, 1000.0], 26.0, 1.0)

An hourly meter read into quarter-hour slots: each hour fills its four slots.

>>> p = daily_profile(starts, means, slots=96, duration_ms=np.full(24, 3_600_000))
>>> p["profile_w"][71:77], round(p["energy_kwh"], 1), p["coverage"]
([1000.0, 3000.0, 3000.0, 3000.0, 3000.0, 1000.0], 26.0, 1.0)
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import numpy.typing as npt

DAY_MS = 86_400_000


def daily_profile(
    time_of_day_ms: npt.ArrayLike,
    mean_w: npt.ArrayLike,
    *,
    slots: int = 24,
    window_ms: int = 60_000,
    duration_ms: npt.ArrayLike | None = None,
    min_coverage: float = 0.5,
    peak_hours: Collection[int] = frozenset({17, 18, 19, 20}),
) -> dict:
    """Profile of one day from its window means.

    ``time_of_day_ms`` is each window's local wall-clock start since local midnight, in
    ``[0, 86_400_000)``: on a daylight-saving day the repeated hour shares its slot and the skipped
    hour is missing. ``duration_ms`` (positive ms per window, default ``window_ms`` each) lets windows
    cross slots and midnight; the part past midnight is dropped. NaN means are ignored.
    """
    if slots not in (24, 48, 96):
        raise ValueError(f"slots must be 24, 48 or 96, got {slots}")
    slot_ms = DAY_MS // slots
    if duration_ms is None and (window_ms <= 0 or slot_ms % window_ms):
        raise ValueError(f"window_ms must divide the slot length {slot_ms} ms, got {window_ms}")
    offset = np.asarray(time_of_day_ms, dtype=np.int64)
    means = np.asarray(mean_w, dtype=np.float64)
    if offset.shape != means.shape or offset.ndim != 1:
        raise ValueError("time_of_day_ms and mean_w must be 1-D and equally long")
    if offset.size and (offset.min() < 0 or offset.max() >= DAY_MS):
        raise ValueError(f"time_of_day_ms must lie in [0, {DAY_MS}), got {offset.min()}..{offset.max()}")
    ok = ~np.isnan(means)
    if duration_ms is None:
        # fixed-length windows: each counts once, in the slot it starts in
        index = offset[ok] // slot_ms
        sums = np.bincount(index, weights=means[ok], minlength=slots)
        weights = np.bincount(index, minlength=slots).astype(np.float64)
        known = weights >= min_coverage * (slot_ms // window_ms)
    else:
        sums, weights = _spread(offset[ok], _durations(duration_ms, means.shape)[ok], means[ok], slot_ms, slots)
        known = np.minimum(weights, slot_ms) >= min_coverage * slot_ms
    profile = np.full(slots, np.nan)
    profile[known] = sums[known] / weights[known]
    slot_h = slot_ms / 3_600_000
    values = profile[known]
    energy_kwh = float(values.sum() * slot_h / 1000.0)
    slot_hours = (np.arange(slots) * slot_ms) // 3_600_000
    in_peak = known & np.isin(slot_hours, list(peak_hours))
    mean = float(values.mean()) if values.size else 0.0
    peak = float(values.max()) if values.size else 0.0
    norm = profile / mean if mean > 0 else np.full(slots, np.nan)
    return {
        "slots": slots,
        "profile_w": _listed(profile),
        "profile_norm": _listed(norm),
        "energy_kwh": energy_kwh,
        "peak_w": peak,
        "mean_w": mean,
        "load_factor": mean / peak if peak > 0 else None,
        "peak_share": float(profile[in_peak].sum() * slot_h / 1000.0 / energy_kwh) if energy_kwh > 0 else None,
        "coverage": float(known.mean()),
    }


def _durations(duration_ms: npt.ArrayLike, shape: tuple[int, ...]) -> np.ndarray:
    """Validated window lengths: a silent cast of 0.5 or -1 ms would corrupt coverage."""
    raw = np.asarray(duration_ms)
    if raw.shape != shape:
        raise ValueError(f"duration_ms must have the shape of mean_w {shape}, got {raw.shape}")
    if raw.size and (raw.dtype.kind not in "iuf" or not np.all(np.isfinite(raw)) or np.any(raw != np.floor(raw))):
        raise ValueError("duration_ms must hold whole numbers of milliseconds")
    if raw.size and raw.min() <= 0:
        raise ValueError(f"duration_ms must be positive, got minimum {raw.min()}")
    return np.minimum(raw, DAY_MS).astype(np.int64)  # longer than a day cannot matter; avoids overflow


def _spread(
    start: np.ndarray, duration: np.ndarray, means: np.ndarray, slot_ms: int, slots: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-slot power-ms and covered ms of windows cut at slot bounds and midnight (no loop per window)."""
    end = np.minimum(start + duration, DAY_MS)
    first = start // slot_ms
    spans = (end - 1) // slot_ms - first + 1
    window = np.repeat(np.arange(start.size), spans)
    # k-th piece of a window lies in slot first + k; k counts up from 0 within each window's run
    run_start = np.cumsum(spans) - spans
    slot = first[window] + np.arange(window.size) - run_start[window]
    part = np.minimum(end[window], (slot + 1) * slot_ms) - np.maximum(start[window], slot * slot_ms)
    sums = np.bincount(slot, weights=part * means[window], minlength=slots)
    covered = np.bincount(slot, weights=part, minlength=slots)
    return sums, covered


def _listed(values: np.ndarray) -> list[float | None]:
    return [None if np.isnan(v) else float(v) for v in values]
