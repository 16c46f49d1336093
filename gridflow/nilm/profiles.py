"""Appliance profiles learned from activations: power clusters and usage windows (Lin & Hu 2018 style).

Activations are grouped by power signature, a 1-D density clustering of ``log(power_w)``
(:func:`power_clusters`). Each group seen often enough becomes an :class:`ApplianceProfile`: median power and
duration, and a usage window from percentiles of the start and end times, in minutes from the start of the
scheduling horizon (``horizon_start_minute`` of the local day; noon in Touhs et al.'s household).

>>> p = profile_from_activations("kettle", np.array([600, 610, 620]), np.array([10, 12, 14]),
...                              np.array([2000.0, 2100, 2050]), n_days=3, percentiles=(0, 100))
>>> p.alpha_minute, p.beta_minute, p.duration_minutes, p.power_w
(600, 634, 12, 2050.0)
>>> p.to_appliance(slot_minutes=15).alpha_slot, p.to_appliance(slot_minutes=15).beta_slot
(40, 43)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from gridflow.scheduling.model import MAX_POWER_W, Appliance


@dataclass(frozen=True)
class ApplianceProfile:
    """A schedulable appliance as learned from its activations (times in minutes from the horizon start).

    ``[alpha_minute, beta_minute)`` is the usual window (low percentile of starts, high percentile of
    ends), ``duration_minutes`` the median run, ``comfort_margin_minutes`` half the inter-quartile range of
    the start times, ``activations_per_day`` the mean use over the learned days.
    """

    name: str
    power_w: float
    duration_minutes: int
    alpha_minute: int
    beta_minute: int
    comfort_margin_minutes: int
    n_activations: int
    activations_per_day: float

    def to_appliance(self, slot_minutes: int) -> Appliance:
        """A deferrable :class:`~gridflow.scheduling.model.Appliance` on slots of ``slot_minutes``."""
        if (
            isinstance(slot_minutes, bool)
            or not isinstance(slot_minutes, int)
            or not 1 <= slot_minutes <= 60
            or 1440 % slot_minutes
        ):
            raise ValueError(f"slot_minutes must be an integer in 1..60 dividing 1440, got {slot_minutes!r}")
        per_day = 1440 // slot_minutes
        duration = min(per_day, max(1, math.ceil(self.duration_minutes / slot_minutes)))
        alpha = min(self.alpha_minute // slot_minutes, per_day - duration)
        beta = min(per_day, max(alpha + duration, math.ceil(self.beta_minute / slot_minutes)))
        return Appliance(
            self.name,
            "deferrable",
            min(self.power_w, MAX_POWER_W),
            duration,
            alpha,
            beta,
            comfort_margin_slots=math.ceil(self.comfort_margin_minutes / slot_minutes),
        )

    def to_record(self, household_id: str, slot_minutes: int, horizon_start_minute: int, updated_ts_ms: int) -> dict:
        """The JSON-ready record an operator publishes on the ``appliances`` topic (key ``household_id``)."""
        appliance = self.to_appliance(slot_minutes)
        return {
            "v": 1,
            "household_id": str(household_id),
            "updated_ts_ms": int(updated_ts_ms),
            "horizon_start_minute": int(horizon_start_minute),
            "slot_minutes": slot_minutes,
            **{k: v for k, v in asdict(self).items()},
            "appliance": {
                "name": appliance.name,
                "kind": appliance.kind,
                "power_w": appliance.power_w,
                "duration_slots": appliance.duration_slots,
                "alpha_slot": appliance.alpha_slot,
                "beta_slot": appliance.beta_slot,
                "comfort_margin_slots": appliance.comfort_margin_slots,
            },
        }


def profile_from_activations(
    name: str, start_minute, duration_minutes, power_w, n_days: int, percentiles: tuple[float, float] = (10.0, 90.0)
) -> ApplianceProfile:
    """Summarise activations of one appliance (starts in minutes from the horizon start, 0..1439).

    Parameters
    ----------
    name : str
        Appliance name.
    start_minute, duration_minutes, power_w : array-like
        One entry per activation (non-empty).
    n_days : int
        Days the activations were collected over (for ``activations_per_day``).
    percentiles : (float, float)
        Percentiles of start and end times for the window, ``0 <= low < high <= 100``.
    """
    start = np.asarray(start_minute, dtype=np.float64)
    duration = np.asarray(duration_minutes, dtype=np.float64)
    power = np.asarray(power_w, dtype=np.float64)
    low, high = percentiles
    if not 0 <= low < high <= 100:
        raise ValueError(f"percentiles must be (low, high) with 0 <= low < high <= 100, got {percentiles!r}")
    if not start.size or start.shape != duration.shape or start.shape != power.shape:
        raise ValueError("start_minute, duration_minutes and power_w must be non-empty and equally long")
    if isinstance(n_days, bool) or not isinstance(n_days, (int, np.integer)) or n_days < 1:
        raise ValueError(f"n_days must be an integer >= 1, got {n_days!r}")
    typical = max(1, int(round(float(np.median(duration)))))
    alpha = int(np.floor(np.percentile(start, low)))
    beta = min(1440, max(alpha + typical, int(np.ceil(np.percentile(start + duration, high)))))
    q25, q75 = np.percentile(start, [25, 75])
    return ApplianceProfile(
        name,
        round(float(np.median(power)), 1),
        typical,
        alpha,
        beta,
        int(math.ceil((q75 - q25) / 2)),
        int(start.size),
        round(start.size / n_days, 3),
    )


def power_clusters(power_w, eps: float = 0.08, min_samples: int = 10) -> np.ndarray:
    """Cluster labels (-1 = too small a group) of activations by power; clusters numbered by rising power.

    The density of ``log(power_w)`` is estimated with a Gaussian kernel of width ``eps`` (so ``eps`` is
    about a relative power difference) and cut at its local minima: each cluster is the basin of one density
    peak. Groups of fewer than ``min_samples`` activations are labelled -1. (Plain DBSCAN on the same axis
    chains everything between 0.8 and 3 kW into one cluster on real houses: activations of overlapping
    loads fill the gaps between the appliance peaks.)

    >>> power_clusters([1000, 1010, 990, 2000, 2040, 1980, 5000], eps=0.05, min_samples=2).tolist()
    [0, 0, 0, 1, 1, 1, -1]
    """
    power = np.asarray(power_w, dtype=np.float64).reshape(-1)
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.number)) or not 0 < eps <= 2:
        raise ValueError(f"eps must be a number in (0, 2], got {eps!r}")
    if isinstance(min_samples, bool) or not isinstance(min_samples, (int, np.integer)) or min_samples < 1:
        raise ValueError(f"min_samples must be an integer >= 1, got {min_samples!r}")
    if power.size == 0:
        return np.zeros(0, np.int64)
    if not np.all(np.isfinite(power) & (power > 0)):
        raise ValueError("power_w must be finite and > 0")
    z = np.log(power)
    grid = np.arange(z.min() - 3 * eps, z.max() + 3 * eps, eps / 5)
    density = np.zeros(grid.size)
    for chunk in np.array_split(z, max(1, z.size // 2000)):
        density += np.exp(-0.5 * ((grid[:, None] - chunk[None, :]) / eps) ** 2).sum(axis=1)
    inner = density[1:-1]
    valleys = grid[1:-1][(inner < density[:-2]) & (inner <= density[2:])]
    segment = np.searchsorted(valleys, z)
    counts = np.bincount(segment, minlength=valleys.size + 1)
    big = np.flatnonzero(counts >= min_samples)
    renumber = np.full(valleys.size + 1, -1)
    renumber[big] = np.arange(big.size)  # segments are in rising power already
    return renumber[segment].astype(np.int64)
