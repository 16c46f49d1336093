"""Labelled meter faults injected into simulated readings, so anomaly detection can be scored later.

Kinds (durations and magnitudes drawn uniformly from the ranges):

* ``spike`` -- one reading multiplied by 4..10 (the window is one reading interval);
* ``stuck`` -- for 10..60 min the meter repeats the last value it reported before the window;
* ``dropout`` -- no readings for 5..60 min (``keep_mask`` False, power NaN);
* ``drift`` -- an additive ramp from 0 at the window start to +20..50 % of the household's mean load at
  its end, over 1..6 h;
* ``appliance_left_on`` -- +1500..2500 W constant for 2..8 h.

:func:`plan_faults` draws the faults (Poisson number per household, at most one fault at a time per
household, windows aligned to the reading grid ``start_ms + k * interval_s``; a fault may run past
``end_ms``); :func:`apply_faults` applies one household's faults to its readings; the plan is the ground
truth and goes to JSON Lines with :func:`write_ground_truth`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

FAULT_KINDS = ("spike", "stuck", "dropout", "drift", "appliance_left_on")
DAY_MS = 86_400_000
_DURATION_S = {
    "stuck": (600, 3600),
    "dropout": (300, 3600),
    "drift": (3600, 21_600),
    "appliance_left_on": (7200, 28_800),
}  # spike: one reading interval
_PLACEMENT_TRIES = 20


@dataclass(frozen=True)
class Fault:
    """One injected fault: readings with ``start_ms <= ts_ms < end_ms`` of ``household_id`` are affected.

    ``params``: ``factor`` (spike), ``fraction`` of mean load reached at the end (drift), ``extra_w``
    (appliance_left_on); empty for stuck and dropout.
    """

    household_id: Any
    kind: str
    start_ms: int
    end_ms: int
    params: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "household_id": self.household_id,
            "kind": self.kind,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "params": dict(self.params),
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "Fault":
        return cls(obj["household_id"], obj["kind"], int(obj["start_ms"]), int(obj["end_ms"]), dict(obj["params"]))


def plan_faults(
    household_ids: Iterable[Any],
    start_ms: int,
    end_ms: int,
    rate_per_household_day: float,
    kinds: Sequence[str] = FAULT_KINDS,
    seed: int = 0,
    *,
    interval_s: float = 10.0,
) -> list[Fault]:
    """Draw the faults of a fleet over ``[start_ms, end_ms)``.

    Parameters
    ----------
    household_ids : iterable of int or str
        The households; each one's faults depend only on ``seed`` and its own id.
    start_ms, end_ms : int
        Simulated period (ms since the epoch); fault starts fall inside it.
    rate_per_household_day : float
        Expected faults per household and day (Poisson). A fault that finds no free time in its
        household after several tries (they never overlap) is dropped, so very high rates fall short.
    kinds : sequence of str
        Fault kinds to draw from, uniformly.
    seed : int
        Same seed and arguments, same plan.
    interval_s : float
        Reading interval: windows start on ``start_ms + k * interval_s`` and last whole intervals.

    Returns
    -------
    list of Fault
        In household order, then by start time.
    """
    unknown = sorted(set(kinds) - set(FAULT_KINDS))
    if unknown or not kinds:
        raise ValueError(f"unknown fault kinds {unknown or list(kinds)}; choose from {list(FAULT_KINDS)}")
    if end_ms <= start_ms or rate_per_household_day < 0 or interval_s <= 0:
        raise ValueError("need start_ms < end_ms, rate_per_household_day >= 0 and interval_s > 0")
    interval_ms = max(1, round(interval_s * 1000))
    n_slots = -(-(end_ms - start_ms) // interval_ms)
    expected = rate_per_household_day * (end_ms - start_ms) / DAY_MS
    plan: list[Fault] = []
    for household_id in household_ids:
        household_id = household_id.item() if isinstance(household_id, np.generic) else household_id
        rng = np.random.default_rng([seed & 0xFFFFFFFFFFFFFFFF, _stable_id(household_id)])
        taken: list[tuple[int, int]] = []  # (first slot, end slot) of the household's faults
        faults = []
        for _ in range(rng.poisson(expected)):
            kind = kinds[rng.integers(len(kinds))]
            length = _duration_slots(rng, kind, interval_ms)
            params = _params(rng, kind)
            for first in rng.integers(0, n_slots, size=_PLACEMENT_TRIES):
                if all(first + length <= lo or first >= hi for lo, hi in taken):
                    taken.append((int(first), int(first) + length))
                    begin = start_ms + int(first) * interval_ms
                    faults.append(Fault(household_id, kind, begin, begin + length * interval_ms, params))
                    break
        plan.extend(sorted(faults, key=lambda fault: fault.start_ms))
    return plan


def _stable_id(household_id: Any) -> int:
    return int.from_bytes(hashlib.blake2b(json.dumps(household_id).encode(), digest_size=8).digest(), "little")


def _duration_slots(rng: np.random.Generator, kind: str, interval_ms: int) -> int:
    if kind == "spike":
        return 1
    low_s, high_s = _DURATION_S[kind]
    return max(1, round(rng.uniform(low_s, high_s) * 1000 / interval_ms))


def _params(rng: np.random.Generator, kind: str) -> dict[str, float]:
    if kind == "spike":
        return {"factor": round(float(rng.uniform(4.0, 10.0)), 3)}
    if kind == "drift":
        return {"fraction": round(float(rng.uniform(0.2, 0.5)), 3)}
    if kind == "appliance_left_on":
        return {"extra_w": round(float(rng.uniform(1500.0, 2500.0)), 1)}
    return {}


def apply_faults(
    ts_ms: np.ndarray, power_w: np.ndarray, faults_for_household: Iterable[Fault], mean_power_w: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Apply one household's faults to its readings.

    Parameters
    ----------
    ts_ms : numpy.ndarray
        Reading timestamps (ms), increasing.
    power_w : numpy.ndarray
        The true readings (W), same length.
    faults_for_household : iterable of Fault
        This household's faults (others' are not filtered out: pass only this household's).
    mean_power_w : float, optional
        Mean load the drift amplitude refers to; default the mean of ``power_w`` (pass the household's
        long-run mean when a series is processed in chunks, so a drift ramps the same in every chunk).

    Returns
    -------
    power_w_out : numpy.ndarray
        Faulty readings (float64, a new array); NaN where a dropout removed the reading.
    keep_mask : numpy.ndarray
        False where a dropout removed the reading.
    """
    ts_ms = np.asarray(ts_ms)
    power_w = np.asarray(power_w, dtype=np.float64)
    out = power_w.copy()
    keep = np.ones(len(out), dtype=bool)
    finite = power_w[np.isfinite(power_w)]
    mean_w = float(mean_power_w) if mean_power_w is not None else (float(finite.mean()) if finite.size else 0.0)
    for fault in sorted(faults_for_household, key=lambda f: f.start_ms):
        lo, hi = np.searchsorted(ts_ms, [fault.start_ms, fault.end_ms], side="left")
        if lo == hi:
            continue
        if fault.kind == "spike":
            out[lo] *= fault.params["factor"]
        elif fault.kind == "stuck":
            out[lo:hi] = out[lo - 1] if lo > 0 and keep[lo - 1] else power_w[lo]
        elif fault.kind == "dropout":
            out[lo:hi] = np.nan
            keep[lo:hi] = False
        elif fault.kind == "drift":
            progress = (ts_ms[lo:hi] - fault.start_ms) / (fault.end_ms - fault.start_ms)
            out[lo:hi] += fault.params["fraction"] * mean_w * progress
        elif fault.kind == "appliance_left_on":
            out[lo:hi] += fault.params["extra_w"]
        else:
            raise ValueError(f"unknown fault kind {fault.kind!r}")
    return out, keep


def fault_mask(ts_ms: np.ndarray, faults_for_household: Iterable[Fault]) -> np.ndarray:
    """True for readings inside any of the faults' windows (the labels to score a detector against)."""
    ts_ms = np.asarray(ts_ms)
    mask = np.zeros(len(ts_ms), dtype=bool)
    for fault in faults_for_household:
        mask |= (ts_ms >= fault.start_ms) & (ts_ms < fault.end_ms)
    return mask


def faults_by_household(faults: Iterable[Fault]) -> dict[Any, list[Fault]]:
    """The faults grouped by household, each list in start order."""
    grouped: dict[Any, list[Fault]] = {}
    for fault in sorted(faults, key=lambda f: f.start_ms):
        grouped.setdefault(fault.household_id, []).append(fault)
    return grouped


def write_ground_truth(path: str | Path, faults: Iterable[Fault]) -> None:
    """Write faults as JSON Lines, one object per fault."""
    with open(path, "w", encoding="utf-8") as handle:
        for fault in faults:
            handle.write(json.dumps(fault.to_json(), sort_keys=True) + "\n")


def read_ground_truth(path: str | Path) -> list[Fault]:
    """Read faults written by :func:`write_ground_truth`."""
    with open(path, encoding="utf-8") as handle:
        return [Fault.from_json(json.loads(line)) for line in handle if line.strip()]
