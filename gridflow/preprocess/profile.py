"""A household's daily load profile from its cleaned window means (numpy only, no Flink).

The day (in the configured time zone) is cut into ``slots`` equal slots (24, 48 or 96). A slot's value
is the mean of the window means that fall in it, if at least ``min_coverage`` of the slot's windows are
known; otherwise it is missing (None). ``profile_norm`` divides by the mean of the known slots: the
per-household scaling that lets households of different size be clustered by shape.

>>> starts = np.arange(0, DAY_MS, 3_600_000)         # one window an hour: 1 kW, but 3 kW at 18:00
>>> means = np.where(np.arange(24) == 18, 3000.0, 1000.0)
>>> p = daily_profile(starts, means, slots=24, window_ms=3_600_000)
>>> p["profile_w"][17:20], round(p["energy_kwh"], 1), p["coverage"]
([1000.0, 3000.0, 1000.0], 26.0, 1.0)
"""

from __future__ import annotations

import numpy as np

DAY_MS = 86_400_000


def daily_profile(
    time_of_day_ms,
    mean_w,
    *,
    slots: int = 24,
    window_ms: int = 60_000,
    min_coverage: float = 0.5,
    peak_hours=frozenset({17, 18, 19, 20}),
) -> dict:
    """Profile of one day from its window means.

    ``time_of_day_ms`` is each window's local wall-clock start since local midnight, in
    ``[0, 86_400_000)``: on a daylight-saving day the repeated hour shares its slot and the skipped
    hour is missing. NaN means are ignored.
    """
    if slots not in (24, 48, 96):
        raise ValueError(f"slots must be 24, 48 or 96, got {slots}")
    if window_ms <= 0 or (DAY_MS // slots) % window_ms:
        raise ValueError(f"window_ms must divide the slot length {DAY_MS // slots} ms, got {window_ms}")
    offset = np.asarray(time_of_day_ms, dtype=np.int64)
    means = np.asarray(mean_w, dtype=np.float64)
    if offset.shape != means.shape or offset.ndim != 1:
        raise ValueError("time_of_day_ms and mean_w must be 1-D and equally long")
    if offset.size and (offset.min() < 0 or offset.max() >= DAY_MS):
        raise ValueError(f"time_of_day_ms must lie in [0, {DAY_MS}), got {offset.min()}..{offset.max()}")
    slot_ms = DAY_MS // slots
    ok = ~np.isnan(means)
    index = offset[ok] // slot_ms
    sums = np.bincount(index, weights=means[ok], minlength=slots)
    counts = np.bincount(index, minlength=slots)
    known = counts >= min_coverage * (slot_ms // window_ms)
    profile = np.full(slots, np.nan)
    profile[known] = sums[known] / counts[known]
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


def _listed(values: np.ndarray) -> list[float | None]:
    return [None if np.isnan(v) else float(v) for v in values]
