"""The appliances of simulated households: each home owns its own set, runs them on its own routine.

The measured load shapes (:mod:`gridflow.devices.load_shapes`) are whole-house averages: the CityLearn
homes are hourly, so they hold no appliance steps at all, and the UCI home is one home. Real homes differ
in what they own and when they use it, which is what personal advice is about. Each simulated household
therefore owns a subset of :data:`CATALOGUE` (washing machine, dishwasher, tumble dryer, oven, EV charger,
water heater), each with a power and a run length of its own (drawn once per household), and runs it on
days and at start times drawn per day from the appliance's usual hours. A run is a rectangle of its power
(plus the meter noise of the base load), added on top of the load shape.

Like the load shapes, everything is a counter-based hash of (seed, household index, appliance, day): a
household's appliance power at an instant never depends on which households or time window were asked for,
and :func:`appliance_runs` lists the runs of any window (the labels the appliance learner is scored on).
Times of day are UTC, like the load shapes'.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from gridflow.devices.load_shapes import _household_keys, _mix, _uniform_pair

DAY_MS = 86_400_000
MINUTE_MS = 60_000


@dataclass(frozen=True)
class ApplianceKind:
    """One kind of appliance: who owns one, how strong and long its runs are, when it runs.

    ``power_w`` and ``minutes`` are (low, high) ranges a household's own appliance is drawn from;
    ``start_hours`` the (first, last) hour of day a run may start; ``runs_per_week`` how often it runs.
    """

    name: str
    ownership: float
    power_w: tuple[float, float]
    minutes: tuple[int, int]
    start_hours: tuple[float, float]
    runs_per_week: float


CATALOGUE: tuple[ApplianceKind, ...] = (
    ApplianceKind("washing machine", 0.85, (1800.0, 2200.0), (90, 120), (8.0, 20.0), 4.0),
    ApplianceKind("dishwasher", 0.65, (1500.0, 1900.0), (60, 100), (19.0, 22.5), 5.0),
    ApplianceKind("tumble dryer", 0.4, (2300.0, 2800.0), (50, 80), (10.0, 21.0), 3.0),
    ApplianceKind("oven", 0.6, (2000.0, 2600.0), (30, 60), (16.5, 19.0), 4.0),
    ApplianceKind("EV charger", 0.3, (3600.0, 7400.0), (150, 240), (17.5, 20.5), 4.0),
    ApplianceKind("water heater", 0.3, (2800.0, 3200.0), (40, 70), (5.0, 7.5), 7.0),
)
_STREAM = 10  # hash streams 10.. (the load shapes use 0..2)


@dataclass(frozen=True)
class OwnedAppliance:
    """One household's own appliance of ``kind``: its power and usual run length."""

    kind: str
    power_w: float
    minutes: int


def owned_appliances(household_index: int, seed: int) -> list[OwnedAppliance]:
    """What simulated household ``household_index`` owns (in :data:`CATALOGUE` order; at least one)."""
    return [a for a in _owned(np.array([household_index]), seed)[0] if a is not None]


def _drawn(indices: np.ndarray, seed: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per kind of :data:`CATALOGUE`, arrays over the households: whether each owns one, its power (W) and
    its usual run length (minutes). A household that drew none of them owns a washing machine."""
    drawn = []
    for k, kind in enumerate(CATALOGUE):
        u_own, u_power = _uniform_pair(_household_keys(indices, seed, stream=_STREAM + 2 * k))
        u_minutes, _ = _uniform_pair(_household_keys(indices, seed, stream=_STREAM + 2 * k + 1))
        low, high = kind.power_w
        power = np.round(low + (high - low) * u_power, -1)
        minutes = np.round(kind.minutes[0] + (kind.minutes[1] - kind.minutes[0]) * u_minutes).astype(np.int64)
        drawn.append((u_own < kind.ownership, power, minutes))
    owns_any = np.any([owns for owns, _, _ in drawn], axis=0)
    drawn[0] = (drawn[0][0] | ~owns_any, drawn[0][1], drawn[0][2])
    return drawn


def _owned(indices: np.ndarray, seed: int) -> list[list[OwnedAppliance | None]]:
    """Per household, one entry per kind of :data:`CATALOGUE`: its own appliance of that kind, or None."""
    drawn = _drawn(indices, seed)
    return [
        [
            OwnedAppliance(kind.name, float(power[i]), int(minutes[i])) if owns[i] else None
            for kind, (owns, power, minutes) in zip(CATALOGUE, drawn)
        ]
        for i in range(len(indices))
    ]


def _runs_of_day(indices: np.ndarray, days: np.ndarray, seed: int, k: int):
    """For appliance kind ``k``: whether each (household, day) runs it, and the run's start (ms) and length
    (ms), arrays broadcast over ``indices[:, None]`` and ``days``."""
    kind = CATALOGUE[k]
    keys = _household_keys(indices, seed, stream=_STREAM + 40 + k)[:, None] ^ _mix(days.astype(np.uint64))
    u_run, u_start = _uniform_pair(keys)
    u_length, _ = _uniform_pair(_mix(keys ^ np.uint64(0xA5A5A5A5)))
    runs = u_run < min(1.0, kind.runs_per_week / 7.0)
    first, last = kind.start_hours
    start_ms = days * DAY_MS + np.round((first + (last - first) * u_start) * 60.0) * MINUTE_MS
    return runs, start_ms.astype(np.int64), (0.9 + 0.2 * u_length)  # a run lasts 90-110 % of the usual


def appliance_power(household_indices: Sequence[int] | np.ndarray, ts_ms: np.ndarray, seed: int) -> np.ndarray:
    """Power (W) the households' own appliances draw at ``ts_ms``: ``(len(household_indices), len(ts_ms))``."""
    indices = np.asarray(household_indices, dtype=np.int64).reshape(-1)
    ts = np.asarray(ts_ms, dtype=np.int64)
    out = np.zeros((len(indices), len(ts)))
    # the runs are drawn per day: once for each day the timestamps fall on, then spread over them
    days, day_of_ts = np.unique(ts // DAY_MS, return_inverse=True)
    for k, (owns, power, minutes) in enumerate(_drawn(indices, seed)):
        if not owns.any():
            continue
        for back in (0, 1):  # runs of the day before can last past midnight
            runs, start, factor = _runs_of_day(indices, days - back, seed, k)
            end = start + np.round(minutes[:, None] * factor) * MINUTE_MS
            on = (runs & owns[:, None])[:, day_of_ts] & (ts >= start[:, day_of_ts]) & (ts < end[:, day_of_ts])
            out += np.where(on, power[:, None], 0.0)
    return out


def appliance_runs(household_index: int, start_ms: int, end_ms: int, seed: int) -> list[dict]:
    """The runs of household ``household_index``'s appliances that start in ``[start_ms, end_ms)``, in time
    order: ``{"kind", "power_w", "start_ms", "end_ms"}`` (the labels of the simulated fleet)."""
    indices = np.array([household_index])
    owned = _owned(indices, seed)[0]
    days = np.arange(start_ms // DAY_MS, (end_ms - 1) // DAY_MS + 1)
    out = []
    for k, appliance in enumerate(owned):
        if appliance is None:
            continue
        runs, start, factor = _runs_of_day(indices, days, seed, k)
        for j in np.flatnonzero(runs[0] & (start[0] >= start_ms) & (start[0] < end_ms)):
            length = int(np.round(appliance.minutes * factor[0, j])) * MINUTE_MS
            out.append(
                {
                    "kind": appliance.kind,
                    "power_w": appliance.power_w,
                    "start_ms": int(start[0, j]),
                    "end_ms": int(start[0, j]) + length,
                }
            )
    return sorted(out, key=lambda r: (r["start_ms"], r["kind"]))
