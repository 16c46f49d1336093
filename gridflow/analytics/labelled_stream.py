"""A labelled stream of per-minute feature records from the fleet simulator, and event-level scoring.

:func:`simulate_minutes` replays simulated households (``devices.load_shapes``) with labelled faults
(``devices.faults``) without MQTT: each meter's readings of every minute go through the preprocessing
job's :func:`gridflow.preprocess.clean.clean_window`, giving the feature records the anomaly detector
consumes (a minute without any reading gives no record, as in the streaming job).

:func:`score_alerts` scores alerts against the faults, per fault kind: a fault counts as detected when
an alert of the matching type for its household overlaps the fault's window (widened by
``tolerance_ms`` on both sides); an alert counts as correct when it overlaps a fault of its kind.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from gridflow.devices.faults import FAULT_KINDS, Fault, apply_faults, faults_by_household, plan_faults
from gridflow.devices.load_shapes import LoadShapeLibrary, fleet_series, timestamps_ms
from gridflow.preprocess.clean import CleaningParams, clean_window

ALERT_TO_FAULT = {
    "spike": "spike",
    "stuck": "stuck",
    "dropout": "dropout",
    "drift": "drift",
    "sustained_high": "appliance_left_on",
}


def simulate_minutes(
    library: LoadShapeLibrary,
    n_households: int,
    start_ms: int,
    n_days: float,
    fault_rate_per_day: float,
    seed: int = 0,
    interval_s: float = 10.0,
    kinds: Sequence[str] = FAULT_KINDS,
) -> tuple[list[dict[str, Any]], list[Fault]]:
    """Minute feature records of a simulated fleet with injected faults, and the faults (ground truth).

    Parameters
    ----------
    library : LoadShapeLibrary
        Measured days the households replay.
    n_households : int
        Households ``h-00000``, ``h-00001``, ...
    start_ms : int
        First reading (UTC ms), a whole minute.
    n_days : float
        Length of the stream.
    fault_rate_per_day : float
        Expected faults per household and day.
    seed : int
        Seed of the households and of the fault plan.
    interval_s : float
        Seconds between readings (must divide 60).
    kinds : sequence of str
        Fault kinds to inject.

    Returns
    -------
    records : list of dict
        ``WindowFeatures.to_record`` dicts (without ``grid_w``), ordered by window, then household.
    faults : list of Fault
    """
    if 60 % interval_s or start_ms % 60_000:
        raise ValueError("interval_s must divide 60 and start_ms must be a whole minute")
    per_minute = int(60 // interval_s)
    n_minutes = int(n_days * 1440)
    n = n_minutes * per_minute
    ids = [f"h-{i:05d}" for i in range(n_households)]
    ts = timestamps_ms(start_ms, n, interval_s)
    power = fleet_series(library, np.arange(n_households), start_ms, n, interval_s, seed)
    faults = plan_faults(
        ids, start_ms, start_ms + n_minutes * 60_000, fault_rate_per_day, kinds, seed=seed, interval_s=interval_s
    )
    by_household = faults_by_household(faults)
    params = CleaningParams(window_ms=60_000, step_ms=int(interval_s * 1000))
    per_household = []
    for i, household in enumerate(ids):
        faulty, keep = apply_faults(ts, power[i], by_household.get(household, []), mean_power_w=power[i].mean())
        rows = []
        for m in range(n_minutes):
            part = slice(m * per_minute, (m + 1) * per_minute)
            kept = keep[part]
            if not kept.any():
                continue
            features = clean_window(ts[part][kept], faulty[part][kept], start_ms + m * 60_000, params)
            record = features.to_record(household, f"m-{household}")
            del record["grid_w"]
            rows.append(record)
        per_household.append(rows)
    records = [r for rows in per_household for r in rows]
    records.sort(key=lambda r: (r["window_start_ms"], r["household_id"]))
    return records, faults


def score_alerts(
    alerts: Iterable[Mapping[str, Any]],
    faults: Sequence[Fault],
    tolerance_ms: int = 120_000,
    alert_to_fault: Mapping[str, str] = ALERT_TO_FAULT,
    kinds: Sequence[str] = FAULT_KINDS,
) -> dict[str, dict[str, float]]:
    """Precision, recall and F1 per fault kind (see the module docstring).

    Returns
    -------
    dict
        ``{kind: {"faults", "detected", "alerts", "correct_alerts", "precision", "recall", "f1"}}``.
    """
    counts = {kind: {"alerts": 0, "correct_alerts": 0} for kind in kinds}
    detected: set[int] = set()
    for alert, hits in _matches(alerts, faults, tolerance_ms, alert_to_fault):
        kind = alert_to_fault.get(alert["type"])
        if kind in counts:
            counts[kind]["alerts"] += 1
            counts[kind]["correct_alerts"] += bool(hits)
            detected.update(hits)
    result = {}
    for kind in kinds:
        n_faults = sum(f.kind == kind for f in faults)
        n_detected = sum(1 for k in detected if faults[k].kind == kind)
        result[kind] = _prf(n_faults, n_detected, counts[kind]["alerts"], counts[kind]["correct_alerts"])
    return result


def found_faults(
    alerts: Iterable[Mapping[str, Any]],
    faults: Sequence[Fault],
    tolerance_ms: int = 120_000,
    alert_to_fault: Mapping[str, str] = ALERT_TO_FAULT,
) -> set[int]:
    """Indexes into ``faults`` of the faults an alert of the matching type found."""
    return {k for _, hits in _matches(alerts, faults, tolerance_ms, alert_to_fault) for k in hits}


def _matches(alerts, faults, tolerance_ms, alert_to_fault):
    """Each alert with the indexes of the faults of its kind it overlaps."""
    by_household: dict[Any, list[tuple[int, Fault]]] = {}
    for k, fault in enumerate(faults):
        by_household.setdefault(fault.household_id, []).append((k, fault))
    for alert in alerts:
        kind = alert_to_fault.get(alert["type"])
        yield (
            alert,
            [
                k
                for k, f in by_household.get(alert["household_id"], [])
                if f.kind == kind
                and alert["window_start_ms"] < f.end_ms + tolerance_ms
                and alert["window_end_ms"] > f.start_ms - tolerance_ms
            ],
        )


def score_untyped(
    flags: Iterable[Mapping[str, Any]],
    faults: Sequence[Fault],
    tolerance_ms: int = 120_000,
    kinds: Sequence[str] = FAULT_KINDS,
) -> dict[str, dict[str, float]]:
    """Per-kind scores of alerts without a type (e.g. an anomaly score above a threshold).

    A flag overlapping a fault of kind K counts as a correct alert of K; a flag overlapping no fault is a
    false alert of every kind (so precision of K = flags on K-faults / (those + flags on no fault)).
    """
    by_household = faults_by_household(faults)
    index = {id(f): k for k, f in enumerate(faults)}
    detected: set[int] = set()
    on_kind = dict.fromkeys(kinds, 0)
    false = 0
    for flag in flags:
        kinds_hit = set()
        for fault in by_household.get(flag["household_id"], []):
            if (
                flag["window_start_ms"] < fault.end_ms + tolerance_ms
                and flag["window_end_ms"] > fault.start_ms - tolerance_ms
            ):
                detected.add(index[id(fault)])
                kinds_hit.add(fault.kind)
        for kind in kinds_hit & set(kinds):
            on_kind[kind] += 1
        false += not kinds_hit
    result = {}
    for kind in kinds:
        n_faults = sum(f.kind == kind for f in faults)
        n_detected = sum(1 for k in detected if faults[k].kind == kind)
        result[kind] = _prf(n_faults, n_detected, on_kind[kind] + false, on_kind[kind])
    return result


def _prf(n_faults: int, n_detected: int, n_alerts: int, n_correct: int) -> dict[str, float]:
    precision = n_correct / n_alerts if n_alerts else 0.0
    recall = n_detected / n_faults if n_faults else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "faults": n_faults,
        "detected": n_detected,
        "alerts": n_alerts,
        "correct_alerts": n_correct,
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }
