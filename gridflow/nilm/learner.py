"""Online appliance learner: one day of whole-house readings at a time in, appliance profiles out.

Real power alone is enough; reactive power, when the meter gives it, adds a dimension to each edge's and
activation's signature (Hart 1992) and to the grouping (:func:`~gridflow.nilm.signatures.signature_clusters`).

>>> import numpy as np
>>> learner = ApplianceLearner(horizon_start_minute=0, min_activations=2)
>>> for day in range(3):
...     power = np.full(1440, 250.0)
...     power[19 * 60:19 * 60 + 90] += 2000.0           # a 2 kW load from 19:00 for 90 minutes
...     _ = learner.learn_day(day * 86_400_000, power)
>>> [(p.power_w, p.duration_minutes, p.alpha_minute, p.beta_minute) for p in learner.profiles()]
[(2000.0, 90, 1140, 1230)]
"""

from __future__ import annotations

from collections import deque

import numpy as np

from gridflow.nilm.events import Activations, _count, _positive, _readings, detect_edges, pair_edges
from gridflow.nilm.profiles import ApplianceProfile, profile_from_activations
from gridflow.nilm.signatures import signature_clusters

_DAY_MS = 86_400_000


class ApplianceLearner:
    """Detects appliance activations in daily whole-house readings and learns their profiles.

    Parameters
    ----------
    edge_threshold_w : float
        Smallest on/off step considered (W); below it loads are not worth scheduling.
    tolerance_w : float
        Largest change between consecutive readings inside a steady state (W).
    min_steady_minutes : int
        Shortest steady state (minutes); 1 keeps short loads, one-reading ramps are still transitions.
    power_tolerance : float
        Largest relative size difference of an on/off pair, in (0, 1].
    max_duration_minutes : int
        Longest activation (minutes); also how much of the previous day is carried over midnight.
    cluster_eps : float
        Kernel width of the grouping on log power (about a relative power difference).
    min_activations : int
        Activations a power cluster needs to become a profile.
    history_days : int
        Days of activations kept (older days are forgotten).
    horizon_start_minute : int
        Local minute of day the scheduling horizon starts at (720 = noon, as in Touhs et al.).
    percentiles : (float, float)
        Percentiles of start and end times that bound the learned window.
    tolerance_var : float
        Largest change of reactive power inside a steady state (var), when reactive power is given.
    reactive_eps_var : float
        Kernel width of the grouping on reactive power (var), when every activation has it.
    duration_eps : float
        Kernel width of the grouping on log duration (about a relative duration difference).
    core_fraction : float
        Activations where the signature density is below this share of their group's peak are left out of
        every group (they are mixtures of loads more often than not), in [0, 1).

    Raises
    ------
    ValueError
        A parameter is out of range; the message names it.
    """

    def __init__(
        self,
        edge_threshold_w: float = 500.0,
        tolerance_w: float = 100.0,
        min_steady_minutes: int = 1,
        power_tolerance: float = 0.25,
        max_duration_minutes: int = 240,
        cluster_eps: float = 0.08,
        min_activations: int = 10,
        history_days: int = 60,
        horizon_start_minute: int = 720,
        percentiles: tuple[float, float] = (10.0, 90.0),
        *,
        tolerance_var: float = 200.0,
        reactive_eps_var: float = 60.0,
        duration_eps: float = 0.4,
        core_fraction: float = 0.2,
    ):
        self.edge_threshold_w = _positive("edge_threshold_w", edge_threshold_w)
        self.tolerance_w = _positive("tolerance_w", tolerance_w)
        self.min_steady_minutes = _count("min_steady_minutes", min_steady_minutes, 1, 60)
        self.power_tolerance = _positive("power_tolerance", power_tolerance, 1.0)
        self.max_duration_minutes = _count("max_duration_minutes", max_duration_minutes, 1, 1440)
        self.cluster_eps = _positive("cluster_eps", cluster_eps, 2.0)
        self.min_activations = _count("min_activations", min_activations, 1)
        self.history_days = _count("history_days", history_days, 1, 3650)
        self.horizon_start_minute = _count("horizon_start_minute", horizon_start_minute, 0, 1439)
        if (
            not hasattr(percentiles, "__len__")
            or len(percentiles) != 2
            or not 0 <= percentiles[0] < percentiles[1] <= 100
        ):
            raise ValueError(f"percentiles must be (low, high) with 0 <= low < high <= 100, got {percentiles!r}")
        self.percentiles = (float(percentiles[0]), float(percentiles[1]))
        self.tolerance_var = _positive("tolerance_var", tolerance_var)
        self.reactive_eps_var = _positive("reactive_eps_var", reactive_eps_var, 5000.0)
        self.duration_eps = _positive("duration_eps", duration_eps, 5.0)
        if (
            isinstance(core_fraction, bool)
            or not isinstance(core_fraction, (int, float, np.number))
            or not 0 <= core_fraction < 1
        ):
            raise ValueError(f"core_fraction must be a number in [0, 1), got {core_fraction!r}")
        self.core_fraction = float(core_fraction)
        self._days: deque[tuple[int, Activations]] = deque(maxlen=self.history_days)
        self._tail: np.ndarray = np.zeros(0)  # last readings of the previous day, for loads across midnight
        self._tail_var: np.ndarray = np.zeros(0)
        self._last_day_ms: int | None = None

    @classmethod
    def from_settings(cls, nilm) -> "ApplianceLearner":
        """A learner configured by a ``gridflow.settings.NilmSettings`` section."""
        return cls(
            nilm.edge_threshold_w,
            nilm.tolerance_w,
            nilm.min_steady_minutes,
            nilm.power_tolerance,
            nilm.max_duration_minutes,
            nilm.cluster_eps,
            nilm.min_activations,
            nilm.history_days,
            nilm.horizon_start_minute,
            tuple(nilm.window_percentiles),
            tolerance_var=nilm.tolerance_var,
            reactive_eps_var=nilm.cluster_reactive_eps_var,
            duration_eps=nilm.cluster_duration_eps,
            core_fraction=nilm.cluster_core_fraction,
        )

    def detect(self, power_w, reactive_var=None) -> Activations:
        """Activations in a reading series (no learning); ``reactive_var`` (var, optional) as in :meth:`learn_day`."""
        edges = detect_edges(
            power_w,
            reactive_var,
            tolerance_w=self.tolerance_w,
            min_steady_minutes=self.min_steady_minutes,
            edge_threshold_w=self.edge_threshold_w,
            tolerance_var=self.tolerance_var,
        )
        return pair_edges(*edges, power_tolerance=self.power_tolerance, max_duration_minutes=self.max_duration_minutes)

    def learn_day(self, day_start_ms: int, power_w, reactive_var=None) -> Activations:
        """Learn one day of one-minute readings.

        Parameters
        ----------
        day_start_ms : int
            Local midnight of the day (local clock as UTC milliseconds, like the UCI household); days must
            come in increasing order. A day right after the previous one also finds loads that ran over
            midnight (they count for the day they end on).
        power_w : array-like of 1440 float
            Whole-house active power per minute (W), NaN where missing.
        reactive_var : array-like of 1440 float, optional
            Whole-house reactive power per minute (var), NaN where missing; a meter without it passes None.

        Returns
        -------
        Activations
            The day's activations, minutes from ``day_start_ms`` (negative starts began the day before);
            ``reactive_var`` is NaN where unknown.

        Raises
        ------
        ValueError
            ``day_start_ms`` is not a whole minute or not after the previous day, or ``power_w`` (or
            ``reactive_var``) is not 1440 readings.
        """
        if isinstance(day_start_ms, bool) or not isinstance(day_start_ms, (int, np.integer)) or day_start_ms % 60_000:
            raise ValueError(f"day_start_ms must be an integer number of whole minutes, got {day_start_ms!r}")
        if self._last_day_ms is not None and day_start_ms <= self._last_day_ms:
            raise ValueError(f"day_start_ms {day_start_ms} must be after the previous day {self._last_day_ms}")
        power = np.asarray(power_w, dtype=np.float64)
        if power.shape != (1440,):
            raise ValueError(f"power_w must hold 1440 one-minute readings, got shape {power.shape}")
        reactive = np.full(1440, np.nan) if reactive_var is None else _readings(reactive_var, "reactive_var", 1440)
        follows = self._last_day_ms == day_start_ms - _DAY_MS
        carried = self._tail if follows else np.zeros(0)
        carried_var = self._tail_var if follows else np.zeros(0)
        found = self.detect(np.r_[carried, power], np.r_[carried_var, reactive])
        offset = carried.size
        found = found.select(found.stop > offset)  # loads that ended yesterday were learned yesterday
        day = found.shift(-offset)
        self._days.append((int(day_start_ms), day))
        self._tail = power[-self.max_duration_minutes :].copy()
        self._tail_var = reactive[-self.max_duration_minutes :].copy()
        self._last_day_ms = int(day_start_ms)
        return day

    def activations(self) -> tuple[Activations, np.ndarray]:
        """All remembered activations with their start as minutes from the horizon start (0..1439)."""
        parts, starts = [], []
        for day_ms, day in self._days:
            parts.append(day)
            local_minute = (day_ms // 60_000 + day.start) % 1440
            starts.append((local_minute - self.horizon_start_minute) % 1440)
        joined = Activations.concat(parts)
        return joined, (np.concatenate(starts).astype(np.int64) if starts else np.zeros(0, np.int64))

    def cluster_labels(self) -> np.ndarray:
        """Signature-cluster label of each remembered activation (order of :meth:`activations`), -1 = none.

        Reactive power joins power and duration in the signature when every remembered activation has it.
        """
        joined, _ = self.activations()
        return signature_clusters(
            joined.power_w,
            joined.duration,
            joined.reactive_var,
            power_eps=self.cluster_eps,
            reactive_eps_var=self.reactive_eps_var,
            duration_eps=self.duration_eps,
            min_samples=self.min_activations,
            core_fraction=self.core_fraction,
        )

    def profiles(self) -> list[ApplianceProfile]:
        """One profile per signature cluster with at least ``min_activations`` activations, by rising power."""
        joined, start = self.activations()
        labels = self.cluster_labels()
        found = []
        for k in range(labels.max() + 1 if labels.size else 0):
            mask = labels == k
            if mask.sum() < self.min_activations:
                continue
            power = float(np.median(joined.power_w[mask]))
            found.append(
                profile_from_activations(
                    f"load_{k}_{power:.0f}w",
                    start[mask],
                    joined.duration[mask],
                    joined.power_w[mask],
                    len(self._days),
                    self.percentiles,
                )
            )
        return found

    @property
    def n_days(self) -> int:
        """Days remembered."""
        return len(self._days)
