"""Interval and register meters: readings that each stand for a span of time, turned into feature records
(numpy only, no Flink).

Most meters send instantaneous power every few seconds, and the job cleans them in fixed windows
(:mod:`gridflow.preprocess.clean`). Utility meters instead report once per interval (15, 30 or 60 minutes),
and many meters only report a cumulative energy register. Their readings are **spans**, not samples:

- an **interval reading** carries ``interval_s``: its ``power_w`` is the average power over the
  ``interval_s`` seconds ending at ``ts_ms``;
- a **register reading** carries ``energy_kwh`` (and no ``power_w``): the energy since the meter's
  previous register reading, divided by the time between them, is the average power over that span.

Each span becomes part of a feature record whose window is the span itself (``window_start_ms`` to
``window_end_ms``; one record per meter and job window, holding the spans that end in it, usually one),
fully covered, with its energy counted once and fully. The job hands each reading its meter's previous
reading (``prev_ts_ms``, ``prev_kwh``: a Flink SQL ``OVER`` window in event-time order), so the spans of
one meter are computed independently per reading and in any batch.

Register arithmetic, per reading and its predecessor:

- same ``ts_ms`` as the predecessor: a redelivery (``n_duplicates``);
- no predecessor, a predecessor without a register, or one more than ``max_interval_ms`` before: the
  reading **starts** a span and ends none (counted, see :attr:`IntervalWindows.n_starts`): the energy
  before it is unknown, or known only over so long a span that when it was used is not;
- the register went down: a **rollover** when the register wrapped at the next power of ten above the
  previous value (``99_999.9 -> 0.4`` is 0.5 kWh on a 5-digit register) and the resulting average power
  is possible; otherwise a **reset** (a new meter, a cleared register): the energy since the predecessor
  is unknown, so the reading is dead-lettered with the reason (and, as every reading, is its successor's
  predecessor);
- an average power above ``power_w_max`` is impossible: dead-lettered with the reason.

>>> p = IntervalParams()
>>> out = interval_windows(ts_ms=[900_000, 1_800_000], power_w=[np.nan, np.nan], energy_kwh=[100.0, 100.25],
...                        interval_s=[0, 0], prev_ts_ms=[0, 900_000], prev_kwh=[np.nan, 100.0],
...                        has_prev=[False, True], offsets=[0, 1, 2], params=p)
>>> out.features[0] is None, out.n_starts, out.features[1]["mean_w"], out.features[1]["energy_wh"]
(True, 1, 1000.0, 250.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MS_PER_HOUR = 3_600_000
WH_PER_KWH = 1000.0


@dataclass(frozen=True)
class IntervalParams:
    """``max_interval_ms``: the longest span between two register readings that is turned into one average
    (``preprocess.max_interval_s``); ``power_w_max``: the physical bound (``readings.power_w_max``)."""

    max_interval_ms: int = 3_600_000
    power_w_max: float = 50_000.0
    peak_hours: frozenset[int] = frozenset({17, 18, 19, 20})

    @classmethod
    def from_settings(cls, settings) -> "IntervalParams":
        return cls(
            settings.preprocess.max_interval_s * 1000,
            settings.readings.power_w_max,
            frozenset(settings.preprocess.peak_hours),
        )


@dataclass
class IntervalWindows:
    """Per window: its feature fields (``None`` when no span ends in it) and its dead letters as
    ``(reading index, field, reason)``; over the batch: the readings that started a span and ended none,
    and the redeliveries in windows without a feature (they are in no record's ``n_duplicates``)."""

    features: list[dict | None]
    dead: list[list[tuple[int, str, str]]]
    n_starts: int = 0
    n_duplicates_unreported: int = 0


def _rolled_over(prev_kwh: float, kwh: float) -> float | None:
    """The energy of a register that wrapped at the next power of ten above ``prev_kwh``, if it can have."""
    if prev_kwh <= 0:
        return None
    modulus = 10.0 ** (math.floor(math.log10(prev_kwh)) + 1)
    return kwh + modulus - prev_kwh if kwh < modulus else None


def _span(i: int, ts, power, kwh, interval_s, prev_ts, prev_kwh, has_prev, params: IntervalParams):
    """``("span", start, mean)``, ``("duplicate",)``, ``("start",)`` or ``("dead", field, reason)``."""
    t = int(ts[i])
    if has_prev[i] and int(prev_ts[i]) == t:
        return ("duplicate",)
    if interval_s[i] > 0 and not math.isnan(power[i]):
        return ("span", t - int(interval_s[i]) * 1000, float(power[i]))
    e, e0, t0 = float(kwh[i]), float(prev_kwh[i]), int(prev_ts[i])
    if not has_prev[i] or math.isnan(e0) or t - t0 > params.max_interval_ms:
        return ("start",)
    hours = (t - t0) / MS_PER_HOUR
    delta = e - e0
    if delta < 0:
        rolled = _rolled_over(e0, e)
        if rolled is None or rolled * WH_PER_KWH / hours > params.power_w_max:
            return (
                "dead",
                "energy_kwh",
                f"the register went back from {e0} to {e} kWh, which is no rollover: a reset or a new meter; "
                f"the energy since the previous reading ({(t - t0) / 1000:g} s before) is unknown, and the next "
                "interval starts here",
            )
        delta = rolled
    mean = delta * WH_PER_KWH / hours
    if mean > params.power_w_max:
        return (
            "dead",
            "energy_kwh",
            f"the register rose by {delta:.6g} kWh in {(t - t0) / 1000:g} s: an average of {mean:.0f} W, above "
            f"readings.power_w_max ({params.power_w_max:g} W)",
        )
    return ("span", t0, mean)


def _peak_energy_wh(start: int, end: int, mean: float, utc_offset_ms: int, peak: np.ndarray) -> float:
    """Energy of a constant-power span inside the local peak hours, split at local hour boundaries."""
    total, t = 0.0, start
    while t < end:
        local = t + utc_offset_ms
        next_hour = local - local % MS_PER_HOUR + MS_PER_HOUR - utc_offset_ms
        stop = min(end, next_hour)
        if peak[(local // MS_PER_HOUR) % 24]:
            total += mean * (stop - t) / MS_PER_HOUR
        t = stop
    return total


def _features(spans: list[tuple[int, int, float]], n_duplicates: int, utc_offset_ms: int, peak: np.ndarray) -> dict:
    starts = np.array([s for s, _, _ in spans], dtype=np.int64)
    ends = np.array([e for _, e, _ in spans], dtype=np.int64)
    means = np.array([m for _, _, m in spans], dtype=np.float64)
    durations = (ends - starts).astype(np.float64)
    covered = float(durations.sum())
    energy_wh = float((means * durations).sum() / MS_PER_HOUR)
    mean = energy_wh * MS_PER_HOUR / covered
    peak_w, low = float(means.max()), float(means.min())
    window_start, window_end = int(starts.min()), int(ends.max())
    peak_wh = sum(_peak_energy_wh(s, e, m, utc_offset_ms, peak) for s, e, m in spans)
    return {
        "window_start_ms": window_start,
        "window_end_ms": window_end,
        "n_readings": len(spans),
        "n_duplicates": n_duplicates,
        "n_outliers": 0,
        "n_interpolated": 0,
        "n_missing": 0,
        "coverage": min(1.0, covered / (window_end - window_start)),
        "energy_wh": energy_wh,
        "mean_w": mean,
        "peak_w": peak_w,
        "min_w": low,
        "std_w": float(math.sqrt(max(0.0, float((durations * (means - mean) ** 2).sum()) / covered))),
        "load_factor": mean / peak_w if peak_w else None,
        "peak_share": peak_wh / energy_wh if energy_wh > 0 else None,
        "raw_max_w": peak_w,
        "stuck_run": 0,
        "outlier_values": [],
        "grid_w": [],
    }


def interval_windows(
    *,
    ts_ms,
    power_w,
    energy_kwh,
    interval_s,
    prev_ts_ms,
    prev_kwh,
    has_prev,
    offsets,
    params: IntervalParams = IntervalParams(),
    utc_offsets_ms=None,
) -> IntervalWindows:
    """The feature fields of a batch of windows of interval and register readings.

    Window ``w`` holds readings ``offsets[w]:offsets[w + 1]`` of the concatenated per-reading columns:
    ``power_w`` and ``energy_kwh`` (NaN when absent), ``interval_s`` (0 when absent), and the meter's
    previous reading in event time, ``prev_ts_ms``/``prev_kwh`` (NaN: it had no register), valid where
    ``has_prev``. ``utc_offsets_ms`` (per window, default 0) places the local peak hours.
    """
    ts = np.asarray(ts_ms, dtype=np.int64)
    columns = (
        np.asarray(power_w, dtype=np.float64),
        np.asarray(energy_kwh, dtype=np.float64),
        np.asarray(interval_s, dtype=np.int64),
        np.asarray(prev_ts_ms, dtype=np.int64),
        np.asarray(prev_kwh, dtype=np.float64),
        np.asarray(has_prev, dtype=bool),
    )
    bounds = np.asarray(offsets, dtype=np.int64)
    n_windows = bounds.size - 1
    utc = np.zeros(n_windows, dtype=np.int64) if utc_offsets_ms is None else np.asarray(utc_offsets_ms, np.int64)
    peak = np.zeros(24, dtype=bool)
    peak[list(params.peak_hours)] = True
    out = IntervalWindows([], [])
    for w in range(n_windows):
        spans: list[tuple[int, int, float]] = []
        dead: list[tuple[int, str, str]] = []
        duplicates = 0
        for i in range(int(bounds[w]), int(bounds[w + 1])):
            result = _span(i, ts, *columns, params)
            if result[0] == "span":
                spans.append((int(result[1]), int(ts[i]), float(result[2])))
            elif result[0] == "duplicate":
                duplicates += 1
            elif result[0] == "start":
                out.n_starts += 1
            else:
                dead.append((i, str(result[1]), str(result[2])))
        spans.sort()
        out.dead.append(dead)
        if spans:
            out.features.append(_features(spans, duplicates, int(utc[w]), peak))
        else:
            out.features.append(None)
            out.n_duplicates_unreported += duplicates
    return out
