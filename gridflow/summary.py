"""Per-household window summaries of power readings (pure functions, no Flink).

An accumulator is a 4-list ``[count, sum_power_w, peak_power_w, min_power_w]`` so that it travels
cheaply between Flink's Python workers. Energy is estimated as mean power x window length, which is
exact for evenly spaced readings and the usual estimate when readings are sparse.
"""

from __future__ import annotations

import math

from gridflow.contracts.core import SCHEMA_VERSION

MS_PER_HOUR = 3_600_000.0


def new_accumulator() -> list:
    return [0, 0.0, -math.inf, math.inf]


def add(accumulator: list, power_w: float) -> list:
    accumulator[0] += 1
    accumulator[1] += power_w
    accumulator[2] = max(accumulator[2], power_w)
    accumulator[3] = min(accumulator[3], power_w)
    return accumulator


def merge(a: list, b: list) -> list:
    return [a[0] + b[0], a[1] + b[1], max(a[2], b[2]), min(a[3], b[3])]


def summary(household_id: str, window_start_ms: int, window_end_ms: int, accumulator: list) -> dict:
    count, total, peak, low = accumulator
    if count == 0:
        raise ValueError("a window summary needs at least one reading")
    mean_power_w = total / count
    return {
        "v": SCHEMA_VERSION,
        "household_id": household_id,
        "window_start_ms": window_start_ms,
        "window_end_ms": window_end_ms,
        "readings": count,
        "mean_power_w": mean_power_w,
        "peak_power_w": peak,
        "min_power_w": low,
        "energy_kwh": mean_power_w * (window_end_ms - window_start_ms) / MS_PER_HOUR / 1000.0,
        "load_factor": mean_power_w / peak if peak > 0 else None,
    }
