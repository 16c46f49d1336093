"""Inputs of the DataStream jobs for the fault tests: for each job, records on its input topics that make its
state matter (history before a spike, days before a forecast, appliances before a plan), and how two runs'
outputs must compare.

A case's records are ``(key, payload)`` in the order a producer would send them; a fault test sends the first
half of each input, stops or crashes the job once it has written output, and sends the second half.
"""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from gridflow import kafka_io
from gridflow.cli_args import format_topic_offsets
from gridflow.connectors.flink_kafka import group_id
from gridflow.contracts import CONTRACTS
from gridflow.feature_batches import batches
from gridflow.prices_replay import price_record
from gridflow.runtime import create_env

from cluster_data import partition
from conftest import unique_topics
from contract_cases import feature

H, DAY = 3_600_000, 86_400_000
START_MS = 1_767_571_200_000  # 2026-01-05 00:00 UTC, a Monday; no clock change in the next weeks
WALL_CLOCK = ("emitted_ms", "created_ms", "issued_at_ms")  # stamps of when a record was written, not of its data
# Every run of the fault tests, the reference run among them: the event-time settings of the cluster tests
# (``cluster_data.job_overlay``) and exactly-once delivery. Read with read_committed, a run's output is then
# the same whether or not Flink restarted a task along the way (a restart replays the input since the last
# checkpoint; with at-least-once delivery the replayed part would be written twice).
RUN_SETTINGS = (
    "stream.out_of_orderness_ms=30000",
    "stream.idle_timeout_ms=0",
    "flink.execution.checkpointing.interval=1 s",
    "kafka.delivery_guarantee=exactly-once",
)
# All seven jobs side by side in one Flink job share one Python execution mode, process; the anomaly and
# appliance-learning jobs' default, thread mode, runs in the cluster fail-over test, where each job is a
# Flink job of its own.
SIDE_BY_SIDE = (
    "jobs.anomaly.python_execution_mode=process",
    "jobs.appliance_learning.python_execution_mode=process",
)

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
    # eight buckets: h-2 and h-3 share one (h-3 falls silent in a bucket that carries on), and the buckets' keys
    # land on both partitions of a two-partition topic (with idleness off, RUN_SETTINGS, a partition without
    # records would hold the watermark back until the end of the input)
    return JobCase(
        "anomaly", {"feature_batches": batches(minutes, 8)}, ("alerts",), ("preprocess.feature_batch_buckets=8",)
    )


DAY_PRICES = [0.21, 0.19, 0.18, 0.17, 0.17, 0.18, 0.22, 0.29, 0.33, 0.30, 0.26, 0.24]
DAY_PRICES += [0.23, 0.22, 0.23, 0.25, 0.28, 0.35, 0.41, 0.38, 0.31, 0.27, 0.24, 0.22]


def forecasting_case() -> JobCase:
    prices = [price_record("NL", START_MS + h * H, DAY_PRICES[h % 24] + 0.001 * (h // 24), 60) for h in range(24 * 8)]
    return JobCase("forecasting", {"prices": keyed(prices, "market")}, ("price_forecasts",), ("forecast.model=linear",))


def appliance_learning_case() -> JobCase:
    first_ms = START_MS - H  # local midnight in Amsterdam (UTC+1 in January)
    # two households whose keys land on different partitions of a two-partition topic: with idleness off
    # (RUN_SETTINGS), a partition without records would hold the watermark back until the end of the input
    minutes = [
        (i, feature(household, f"m-{household[2:]}-1", first_ms + i * 60_000, float(p)))
        for household, seed in (("h-01", 11), ("h-03", 12))
        for i, p in enumerate(household_power(4, seed))
        if not np.isnan(p)
    ]
    minutes.sort(key=lambda pair: pair[0])  # in time order, the households interleaved as meters send
    return JobCase(
        "appliance_learning",
        {"features": keyed([m for _, m in minutes])},
        ("appliances",),
        ("preprocess.timezone=Europe/Amsterdam", "nilm.min_activations=1"),  # a profile from the first day on
    )


def load_forecasting_case() -> JobCase:
    # each household's river model lives in keyed state; its forecasts depend on its own days only, in order.
    # A forecast needs 7 days: the first half of the input (8 days) already gives some.
    return JobCase(
        "load_forecasting",
        {"profiles": keyed(profiles(16, households=4))},
        ("load_forecasts",),
        ("load_forecast.model=linear", "preprocess.timezone=Europe/Amsterdam"),
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
    # two homes' own load tomorrow, heavy enough in the night to move runs under the breaker
    loads = [
        {
            **CONTRACTS["load_forecast"].example,
            "household_id": f"h-{h}",
            "start_ts_ms": START_MS + 2 * DAY,
            "slot_minutes": 60,
            "slots": 24,
            "load_w": [7500.0 if hour < 6 else 400.0 for hour in range(24)],
        }
        for h in (1, 3)
    ]
    return JobCase(
        "scheduling",
        {
            "appliances": keyed(appliances),
            "price_forecasts": keyed(forecasts, "market"),
            "load_forecasts": keyed(loads),
            "home_energy": keyed([]),  # homes with PV, a battery or an EV: tests/test_home_scheduling_job.py
        },
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
    # forecasts of a day after the schedules' horizons: the feeders' requests must not depend on whether a
    # forecast or a schedule is read first (tests/test_recommendations.py shows a forecast moving a run)
    load_forecasts = [
        {**CONTRACTS["load_forecast"].example, "household_id": f"h-{h}", "start_ts_ms": START_MS + 5 * DAY}
        for h in range(4)
    ]
    # keeps the contract, but its run starts a day before its horizon: a dead letter, not a crash
    stale = {**schedules[1], "start_ts_ms": schedules[1]["start_ts_ms"] + DAY}
    schedules.insert(3, stale)
    return JobCase(
        "recommendations",
        {
            "schedules": keyed(schedules),
            "profiles": keyed(profile_records),
            "alerts": keyed(alerts),
            "load_forecasts": keyed(load_forecasts),
        },
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
    "load_forecasting": load_forecasting_case,
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


def dead_letters(outputs: dict[str, list]) -> list[tuple]:
    letters = [without_wall_clock(value) for _, value in outputs["dead_letter"]]
    return sorted((d["payload"], d["field"], d["reason"]) for d in letters)


class CaseTopics:
    """One case's job on topics of its own: its inputs in halves, the offsets they reach, its outputs."""

    def __init__(self, case: JobCase, base):
        self.case, self.module = case, importlib.import_module(f"gridflow.jobs.{case.job}")
        self.settings = unique_topics(base).with_overrides(*RUN_SETTINGS, *case.overrides)
        self.partitions = {}
        for name in [*case.inputs, *case.outputs, "dead_letter"]:
            self.partitions[name] = 1 if name in case.one_partition else self.settings.kafka.partitions
            kafka_io.create_topics(self.settings, [self.topic(name)], partitions=self.partitions[name])
        self.halves = {n: (r[: case.split(r)], r[case.split(r) :]) for n, r in case.inputs.items()}
        self.ends = {}  # input -> partition -> offset its whole input reaches (counted from the keys)
        for name, records in case.inputs.items():
            ends = dict.fromkeys(range(self.partitions[name]), 0)
            for key, _ in records:
                ends[partition(key.encode(), self.partitions[name])] += 1
            self.ends[name] = ends

    def topic(self, name: str) -> str:
        return getattr(self.settings.topics, name)

    def produce(self, half: int | None = None) -> None:
        """Both halves of every input (``half`` None), or the first (0) or second (1)."""
        for name, records in self.case.inputs.items():
            chosen = records if half is None else self.halves[name][half]
            kafka_io.produce(self.settings, self.topic(name), chosen)

    def build(self, env, bounded: bool) -> None:
        stops = {self.topic(n): (self.ends[n] if bounded else None) for n in self.case.inputs}
        self.module.build(env, self.settings.with_overrides(*SIDE_BY_SIDE), stop_offsets=stops)

    def stop_args(self) -> list[str]:
        """``--stop-at`` arguments of a job submitted with ``flink run``: the ends of the whole inputs."""
        return [a for n, ends in self.ends.items() for a in ("--stop-at", format_topic_offsets(self.topic(n), ends))]

    def outputs(self, idle_timeout_s: float = 2.0) -> dict[str, list]:
        return {
            name: kafka_io.read_records(self.settings, self.topic(name), idle_timeout_s=idle_timeout_s, until_end=True)
            for name in [*self.case.outputs, "dead_letter"]
        }

    def has_output(self) -> bool:
        first = self.topic(self.case.outputs[0])
        return bool(kafka_io.read_records(self.settings, first, expected=1, idle_timeout_s=0.5, until_end=True))

    def consumed_everything(self) -> bool:
        """The job's consumer group committed (with a checkpoint) the ends of all its inputs."""
        group = group_id(self.settings, self.module.NAME)
        for name, ends in self.ends.items():
            committed = kafka_io.committed_offsets(self.settings, self.topic(name), group)
            if any(committed.get(p, 0) < offset for p, offset in ends.items() if offset):
                return False
        return True


def wait_for_all(parts: dict[str, CaseTopics], condition, what: str, timeout_s: float = 240.0) -> None:
    """Until ``condition`` holds for every part (polled every 2 s), else fail naming the parts still waiting."""
    deadline, waiting = time.monotonic() + timeout_s, set(parts)
    while waiting:
        assert time.monotonic() < deadline, f"{what}: {sorted(waiting)}"
        waiting = {name for name in waiting if not condition(parts[name])}
        if waiting:
            time.sleep(2)  # each check opens a consumer: do not hammer the broker the jobs are using


def run_side_by_side(parts: dict[str, CaseTopics], settings, bounded: bool, name: str):
    """All the parts' jobs built into one Flink job on the mini-cluster; bounded: run to the inputs' ends
    (returns when done), else start it (returns the job client; see :func:`cancelled_on_failure`)."""
    env = create_env(settings.with_overrides(*SIDE_BY_SIDE))
    for part in parts.values():
        part.build(env, bounded)
    return env.execute(name) if bounded else env.execute_async(name)


@contextmanager
def cancelled_on_failure(job):
    """Cancel a started job when the block raises: a failed test leaves no job running in the mini-cluster
    for the rest of the session."""
    try:
        yield job
    except BaseException:
        try:
            job.cancel().result()
        except Exception:  # already stopped (or stopping): nothing left to cancel
            pass
        raise


def uninterrupted_outputs(base) -> dict[str, dict[str, list]]:
    """Every case's outputs from one uninterrupted bounded run over its whole input (parallelism 2)."""
    parts = {name: CaseTopics(make(), base) for name, make in CASES.items()}
    for part in parts.values():
        part.produce()
    run_side_by_side(parts, base.with_overrides(*RUN_SETTINGS, "flink.parallelism.default=2"), True, "uninterrupted")
    outputs = {name: part.outputs() for name, part in parts.items()}
    for name, got in outputs.items():
        assert all(got[o] for o in parts[name].case.outputs), f"{name}: the uninterrupted run wrote nothing"
    return outputs
