"""Scoring the disaggregation against sub-meters (the UCI household's three).

Ground truth: a sub-meter is *on* while it reads above its activation threshold; every run of at least
``min_minutes`` such readings is a true activation whose power is the run's median minus the sub-meter's
level before it, the lowest of the ``base_minutes`` readings before the run. (With ``base_minutes=1``, the
reading just before the run, a load switched on in the middle of that minute leaves a part-minute reading
there, e.g. ``60, 300 | 720, 660, ...``, and the true step is understated by that much: a 660 W load would
count as 420 W.) Thresholds for the UCI house (:data:`UCI_THRESHOLDS_W`) sit at about half the rating of the load
each sub-meter is dominated by, above the standing loads on the same circuit: kitchen and laundry readings
above 200 W are almost all 1.5-2.5 kW heating elements (dishwasher, oven; washing machine, tumble drier),
while the laundry circuit's fridge and light stay at 60-180 W; the water heater draws about 1.0-1.1 kW and a
minute in which it ran for over half the minute reads above 500 W.

A detected activation *matches* a true one when they start within ``time_tolerance_minutes`` and their
powers differ by at most ``power_tolerance`` of the larger (one-to-one, closest in time first). Learned
clusters are named after the sub-meter whose activations make up at least half of a cluster's matches and
at least ``min_share`` of the cluster's activations on the learning days (a cluster of mostly other loads
stays unnamed however its few matches fall; ``min_share=0`` is the first protocol); precision and recall
per sub-meter are then counted on the later days.

>>> a = submeter_activations(np.r_[0, 600, 2000, 2000, 2000, 60, 0.0], threshold_w=1000)
>>> a.start.tolist(), a.stop.tolist(), a.power_w.tolist()
([2], [5], [2000.0])
>>> submeter_activations(np.r_[0, 600, 2000, 2000, 2000, 60, 0.0], threshold_w=1000, base_minutes=1).power_w.tolist()
[1400.0]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gridflow.nilm.events import Activations, _count, _positive
from gridflow.nilm.learner import ApplianceLearner
from gridflow.nilm.profiles import ApplianceProfile, profile_from_activations

UCI_THRESHOLDS_W = {"kitchen_w": 1000.0, "laundry_w": 1000.0, "water_heater_ac_w": 500.0}


def submeter_activations(power_w, threshold_w: float, min_minutes: int = 2, base_minutes: int = 2) -> Activations:
    """True activations of one sub-meter: runs above ``threshold_w`` of at least ``min_minutes`` readings.

    The power of a run is its median minus the lowest of the ``base_minutes`` readings before it (0 at the
    start of the series; missing readings are skipped).
    """
    threshold_w = _positive("threshold_w", threshold_w, 1e5)
    min_minutes = _count("min_minutes", min_minutes, 1, 1440)
    base_minutes = _count("base_minutes", base_minutes, 1, 60)
    x = np.asarray(power_w, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        on = np.r_[False, x > threshold_w, False]
    starts, stops = np.flatnonzero(np.diff(on.astype(np.int8)) == 1), np.flatnonzero(np.diff(on.astype(np.int8)) == -1)
    keep = stops - starts >= min_minutes
    starts, stops = starts[keep], stops[keep]
    padded = np.r_[np.full(base_minutes, np.inf), np.where(np.isnan(x), np.inf, x)]
    before = np.array([padded[a : a + base_minutes].min() for a in starts.tolist()])  # padded[a + base] = x[a]
    before = np.where(np.isfinite(before), before, 0.0)
    power = np.array([np.median(x[a:b]) for a, b in zip(starts.tolist(), stops.tolist())]) - before
    return Activations(starts.astype(np.int64), stops.astype(np.int64), power.reshape(-1).astype(np.float64))


def match_events(
    detected: Activations, true: Activations, time_tolerance_minutes: int = 2, power_tolerance: float = 0.3
) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matches of detected to true on-events; returns (detected index, true index) arrays."""
    time_tolerance_minutes = _count("time_tolerance_minutes", time_tolerance_minutes, 0, 1440)
    power_tolerance = _positive("power_tolerance", power_tolerance, 1.0)
    pairs = []
    for i, (s, p) in enumerate(zip(detected.start.tolist(), detected.power_w.tolist())):
        low, high = np.searchsorted(true.start, [s - time_tolerance_minutes, s + time_tolerance_minutes + 1])
        for j in range(low, high):
            q = float(true.power_w[j])
            if abs(p - q) <= power_tolerance * max(abs(p), abs(q)):
                pairs.append((abs(s - int(true.start[j])), abs(p - q), i, j))
    used_i: set[int] = set()
    used_j: set[int] = set()
    out_i: list[int] = []
    out_j: list[int] = []
    for _, _, i, j in sorted(pairs):
        if i not in used_i and j not in used_j:
            used_i.add(i)
            used_j.add(j)
            out_i.append(i)
            out_j.append(j)
    return np.array(out_i, dtype=np.int64), np.array(out_j, dtype=np.int64)


@dataclass(frozen=True)
class SubmeterScore:
    """Scores of one sub-meter: event detection on the test days, and windows learned over all days."""

    name: str
    n_true: int  # true activations on the test days
    detection_recall: float  # share matched by any detected activation
    precision: float  # of detected activations in clusters named after this sub-meter
    recall: float  # share of true activations matched by those
    clusters: tuple[int, ...]  # power clusters named after this sub-meter
    reference: ApplianceProfile | None  # learned from the sub-meter
    learned: ApplianceProfile | None  # learned from the whole-house activations of its clusters


def evaluate_household(
    day_start_ms,
    power_w,
    submeters: dict[str, np.ndarray],
    learner: ApplianceLearner,
    thresholds_w: dict[str, float],
    learn_days: int,
    time_tolerance_minutes: int = 2,
    power_tolerance: float = 0.3,
    reactive_var=None,
    base_minutes: int = 2,
    min_share: float = 0.1,
) -> list[SubmeterScore]:
    """Run ``learner`` over the days and score it against each sub-meter.

    Parameters
    ----------
    day_start_ms : array-like of int
        Local midnight of each day (consecutive days).
    power_w : array-like of shape (n_days, 1440)
        Whole-house readings (W).
    submeters : dict of str to array of shape (n_days, 1440)
        Sub-meter readings (W) by name.
    learner : ApplianceLearner
        A fresh learner with ``history_days >= n_days`` (it learns every day).
    thresholds_w : dict of str to float
        Activation threshold of each sub-meter (W).
    learn_days : int
        Days used to name the clusters; precision and recall are counted on the rest.
    time_tolerance_minutes, power_tolerance : int, float
        Matching tolerances (see the module docstring).
    reactive_var : array-like of shape (n_days, 1440), optional
        Whole-house reactive power (var), passed to the learner with each day.
    base_minutes : int
        Readings before a sub-meter run that give its level before (see :func:`submeter_activations`).
    min_share : float
        Share of a cluster's activations on the learning days its sub-meter must match, in [0, 1].
    """
    if isinstance(min_share, bool) or not isinstance(min_share, (int, float, np.number)) or not 0 <= min_share <= 1:
        raise ValueError(f"min_share must be a number in [0, 1], got {min_share!r}")
    days = [int(d) for d in day_start_ms]
    power_w = np.asarray(power_w, dtype=np.float64)
    if power_w.shape != (len(days), 1440) or any(np.shape(v) != power_w.shape for v in submeters.values()):
        raise ValueError(f"power_w and every sub-meter must have shape (n_days, 1440) = ({len(days)}, 1440)")
    if reactive_var is not None and np.shape(reactive_var) != power_w.shape:
        raise ValueError(f"reactive_var must have the shape of power_w, ({len(days)}, 1440)")
    learn_days = _count("learn_days", learn_days, 1, max(1, len(days) - 1))
    if learner.history_days < len(days):
        raise ValueError(f"learner.history_days={learner.history_days} must cover the {len(days)} days")
    if reactive_var is None:
        detected_by_day = [learner.learn_day(day, readings) for day, readings in zip(days, power_w)]
    else:
        detected_by_day = [
            learner.learn_day(day, readings, reactive)
            for day, readings, reactive in zip(days, power_w, np.asarray(reactive_var, np.float64))
        ]
    joined, start = learner.activations()
    labels = learner.cluster_labels()
    day_of = np.repeat(np.arange(len(days)), [d.start.size for d in detected_by_day])
    offsets = [k * 1440 for k in range(len(days))]
    detected = Activations.concat(detected_by_day, offsets)  # minutes from the first day
    truth, truth_start, truth_day, matched = {}, {}, {}, {}
    for name, readings in submeters.items():
        parts = [
            submeter_activations(r, thresholds_w[name], base_minutes=base_minutes)
            for r in np.asarray(readings, dtype=np.float64)
        ]
        truth[name] = Activations.concat(parts, offsets)
        truth_day[name] = np.repeat(np.arange(len(days)), [p.start.size for p in parts])
        truth_start[name] = (
            (
                np.repeat(days, [p.start.size for p in parts]) // 60_000
                + truth[name].start
                - np.repeat(offsets, [p.start.size for p in parts])
            )
            - learner.horizon_start_minute
        ) % 1440
        matched[name] = match_events(detected, truth[name], time_tolerance_minutes, power_tolerance)
    n_clusters = labels.max() + 1 if labels.size else 0
    owner = {}
    for k in range(n_clusters):
        in_learning = (labels == k) & (day_of < learn_days)
        counts = {name: int(np.isin(np.flatnonzero(in_learning), i).sum()) for name, (i, _) in matched.items()}
        best = max(counts, key=lambda name: counts[name]) if counts else None
        if (
            best is not None
            and counts[best] > 0
            and counts[best] >= 0.5 * sum(counts.values())
            and counts[best] >= min_share * in_learning.sum()
        ):
            owner[k] = best
    scores = []
    for name, (det_i, true_j) in matched.items():
        clusters = tuple(k for k, v in owner.items() if v == name)
        testing = day_of >= learn_days
        true_test = truth_day[name] >= learn_days
        hit_true = np.zeros(truth[name].start.size, bool)
        hit_true[true_j] = True
        hit_det = np.zeros(detected.start.size, bool)
        hit_det[det_i] = True
        mine = np.isin(labels, clusters)
        predicted = mine & testing
        own_matches = true_j[np.isin(det_i, np.flatnonzero(predicted))]
        n_true = int(true_test.sum())
        reference = learned = None
        if truth[name].start.size:
            reference = profile_from_activations(
                name, truth_start[name], truth[name].duration, truth[name].power_w, len(days), learner.percentiles
            )
        if mine.any():
            learned = profile_from_activations(
                name, start[mine], joined.duration[mine], joined.power_w[mine], len(days), learner.percentiles
            )
        scores.append(
            SubmeterScore(
                name,
                n_true,
                float(hit_true[true_test].mean()) if n_true else float("nan"),
                float(hit_det[predicted].mean()) if predicted.any() else float("nan"),
                len(own_matches) / n_true if n_true else float("nan"),
                clusters,
                reference,
                learned,
            )
        )
    return scores
