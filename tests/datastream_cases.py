"""Inputs of the DataStream jobs for the fault tests: for each job, records on its input topics that make its
state matter (history before a spike, days before a forecast, appliances before a plan), and how two runs'
outputs must compare.

A case's records are ``(key, payload)`` in the order a producer would send them; a fault test sends the first
half of each input, stops or crashes the job once it has written output, and sends the second half.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from gridflow.contracts import CONTRACTS
from gridflow.prices_replay import price_record

from contract_cases import feature

H, DAY = 3_600_000, 86_400_000
START_MS = 1_767_571_200_000  # 2026-01-05 00:00 UTC, a Monday; no clock change in the next weeks
WALL_CLOCK = ("emitted_ms", "created_ms", "issued_at_ms")  # stamps of when a record was written, not of its data

Records = list[tuple[str, str]]


def profiles(n_days: int, households: int = 8, seed: int = 5) -> list[dict]:
    """Evening-peak and daytime households: two load shapes plus noise, normalised to mean 1."""
    rng, hours, out = np.random.default_rng(seed), np.arange(24), []
    shapes = [1 + 0.9 * np.exp(-0.5 * ((hours - 19) / 2) ** 2), 1 + 0.9 * np.exp(-0.5 * ((hours - 12) / 3) ** 2)]
    for day in range(n_days):
        for h in range(households):
            values = shapes[h % 2] * (400 + 50 * h) * rng.normal(1, 0.03, 24)
            out.append(
                {
                    "v": 1,
                    "household_id": f"h-{h:02d}",
                    "meter_id": f"m-{h:02d}",
                    "day": f"2026-01-{day + 1:02d}",
                    "day_start_ms": 1_767_225_600_000 + day * DAY,
                    "slots": 24,
                    "coverage": 1.0,
                    "energy_kwh": values.sum() / 1000,
                    "mean_w": values.mean(),
                    "peak_w": values.max(),
                    "load_factor": values.mean() / values.max(),
                    "peak_share": values[17:21].sum() / values.sum(),
                    "profile_w": values.tolist(),
                    "profile_norm": (values / values.mean()).tolist(),
                    "emitted_ms": 1_767_225_600_000 + (day + 1) * DAY,
                }
            )
    return out


def household_power(days: int, seed: int = 11) -> np.ndarray:
    """Minute power of ``days`` local days: 300 W base load with noise, a 120 W fridge, a 2 kW appliance daily
    from about 19:00 (+-15 min) for 60 minutes, and some minutes unknown (NaN)."""
    rng = np.random.default_rng(seed)
    minutes = np.arange(days * 1440)
    power = 300.0 + np.where((minutes // 20) % 3 == 0, 120.0, 0.0) + rng.normal(0.0, 10.0, minutes.size)
    for day in range(days):
        start = day * 1440 + 19 * 60 + int(rng.integers(-15, 16))
        power[start : start + 60] += 2000.0
    power[rng.choice(minutes.size, 40, replace=False)] = np.nan
    return power


def keyed(records: list[dict], key_field: str = "household_id") -> Records:
    return [(str(r[key_field]), json.dumps(r)) for r in records]


def without_wall_clock(payload: bytes | str) -> dict:
    return {k: v for k, v in json.loads(payload).items() if k not in WALL_CLOCK}


@dataclass(frozen=True)
class JobCase:
    """One DataStream job's fault-test input.

    ``compare`` says what two runs over the same input must agree on: ``sequence``: each key's records in
    order (the job's output depends only on each key's own input order); ``latest``: each key's last record
    per ``identity`` (the job joins several topics, whose relative order is up to the sources, so intermediate
    records depend on timing and only the outcome once everything is read is fixed).
    """

    job: str
    inputs: dict[str, Records]  # input topic (settings name) -> records
    outputs: tuple[str, ...]  # output topics (settings names) besides the dead-letter topic
    overrides: tuple[str, ...] = ()
    compare: str = "sequence"
    identity: tuple[str, ...] = ()  # with ``latest``: fields that tell a key's records of different things apart
    one_partition: tuple[str, ...] = ()  # inputs whose cross-key order the job's result depends on
    split: Callable[[Records], int] = field(default=lambda records: len(records) // 2)


def clustering_case() -> JobCase:
    # one online k-means model for the fleet: its result depends on the order of all profiles, so one partition
    return JobCase(
        "clustering",
        {"profiles": keyed(profiles(6, households=6))},
        ("assignments",),  # centroids are published on a wall-clock timer: how many depends on timing
        ("clustering.n_clusters=2", "clustering.warmup_profiles=8", "clustering.publish_every_s=1"),
        one_partition=("profiles",),
    )


def anomaly_case() -> JobCase:
    minutes = []
    for k in range(90):
        for h in range(4):
            if h == 3 and k >= 60:
                continue  # h-3's meter falls silent: a dropout alert once the others' minutes pass its deadline
            spike = k in (40, 70) and h % 2 == 0
            mean = 300.0 + 50 * h
            minutes.append(
                feature(
                    f"h-{h}",
                    f"m-{h}",
                    START_MS + k * 60_000,
                    mean,
                    raw_max_w=4000.0 if spike else mean,
                    outlier_values=[4000.0] if spike else [],
                    n_outliers=int(spike),
                )
            )
    return JobCase("anomaly", {"features": keyed(minutes)}, ("alerts",))


DAY_PRICES = [0.21, 0.19, 0.18, 0.17, 0.17, 0.18, 0.22, 0.29, 0.33, 0.30, 0.26, 0.24]
DAY_PRICES += [0.23, 0.22, 0.23, 0.25, 0.28, 0.35, 0.41, 0.38, 0.31, 0.27, 0.24, 0.22]


def forecasting_case() -> JobCase:
    prices = [price_record("NL", START_MS + h * H, DAY_PRICES[h % 24] + 0.001 * (h // 24), 60) for h in range(24 * 8)]
    return JobCase("forecasting", {"prices": keyed(prices, "market")}, ("price_forecasts",), ("forecast.model=linear",))


def appliance_learning_case() -> JobCase:
    first_ms = START_MS - H  # local midnight in Amsterdam (UTC+1 in January)
    power = household_power(6)
    minutes = [
        feature("h-01", "m-01-1", first_ms + i * 60_000, float(p)) for i, p in enumerate(power) if not np.isnan(p)
    ]
    return JobCase(
        "appliance_learning",
        {"features": keyed(minutes)},
        ("appliances",),
        ("preprocess.timezone=Europe/Amsterdam", "nilm.min_activations=2"),  # a profile from the second day on
    )


def _appliance(household: str, name: str, power_w: float, alpha: int) -> dict:
    return {
        **CONTRACTS["appliance"].example,
        "household_id": household,
        "name": name,
        "power_w": power_w,
        "duration_minutes": 60,
        "alpha_minute": alpha,
        "beta_minute": alpha + 600,
        "updated_ts_ms": START_MS,
    }


def scheduling_case() -> JobCase:
    appliances = [
        _appliance(f"h-{h}", name, 800.0 + 100 * h + 50 * i, 300 + 30 * i)
        for h in range(4)
        for i, name in enumerate(["washer", "dishwasher"])
    ]
    prices = [0.30] * 12 + [0.12] * 6 + [0.25] * 6
    forecasts = [
        {
            **CONTRACTS["price_forecast"].example,
            "start_ts_ms": START_MS + d * DAY + 12 * H,
            "slots": 24,
            "slot_minutes": 60,
            "price_per_kwh": [round(p + 0.01 * d * (i % 5), 4) for i, p in enumerate(prices)],
        }
        for d in range(3)
    ]
    return JobCase(
        "scheduling",
        {"appliances": keyed(appliances), "price_forecasts": keyed(forecasts, "market")},
        ("schedules",),
        compare="latest",
    )


def _shifted(run: dict, offset_ms: int, **fields) -> dict:
    return {k: v + offset_ms if k.endswith("_ts_ms") else v for k, v in run.items()} | fields


def recommendations_case() -> JobCase:
    schedules, profile_records, alerts = [], [], []
    example = CONTRACTS["schedule"].example
    for h in range(4):
        for d in range(2):
            offset = d * DAY + h * H
            runs = [_shifted(example["appliances"][0], offset, power_w=1000.0 + 100 * h + 10 * d)]
            schedules.append(
                {
                    **example,
                    "household_id": f"h-{h}",
                    "appliances": runs,
                    "start_ts_ms": example["start_ts_ms"] + offset,
                }
            )
        profile_records.append({**CONTRACTS["profile"].example, "household_id": f"h-{h}", "peak_share": 0.2 + 0.1 * h})
        alerts.append({**CONTRACTS["alert"].example, "household_id": f"h-{h}", "type": "stuck", "ts_ms": START_MS + h})
    # keeps the contract, but its run starts a day before its horizon: a dead letter, not a crash
    stale = {**schedules[1], "start_ts_ms": schedules[1]["start_ts_ms"] + DAY}
    schedules.insert(3, stale)
    return JobCase(
        "recommendations",
        {"schedules": keyed(schedules), "profiles": keyed(profile_records), "alerts": keyed(alerts)},
        ("recommendations",),
        ("balancing.feeder_capacity_kw=1.5",),
        compare="latest",
        identity=("kind",),
    )


CASES: dict[str, Callable[[], JobCase]] = {
    "clustering": clustering_case,
    "anomaly": anomaly_case,
    "forecasting": forecasting_case,
    "appliance_learning": appliance_learning_case,
    "scheduling": scheduling_case,
    "recommendations": recommendations_case,
}


def by_key(records: list[tuple[bytes | None, bytes]]) -> dict[str, list[dict]]:
    """Each Kafka key's records in order, wall-clock stamps left out."""
    out: dict[str, list[dict]] = {}
    for key, value in records:
        out.setdefault((key or b"").decode(), []).append(without_wall_clock(value))
    return out


def comparable(case: JobCase, records: list[tuple[bytes | None, bytes]]) -> dict[str, object]:
    """What two runs of ``case`` over the same input must agree on, for one output topic."""
    keyed_records = by_key(records)
    if case.compare == "sequence":
        return dict(keyed_records)
    return {
        f"{key} {[value.get(f) for f in case.identity]}": value
        for key, values in keyed_records.items()
        for value in values
    }
