"""The whole pipeline submitted with `flink run` to the standalone Flink cluster, with a TaskManager crash.

Every job writes with exactly-once delivery (Kafka transactions committed with Flink checkpoints) and reads
committed records only. The preprocessing job is crashed (SIGKILL of the TaskManager and its Python workers)
after it has committed output and while half of the readings have still to arrive; a new TaskManager takes
over, the job restores its last checkpoint, and the outputs must account for every reading exactly once.
The later jobs run on the same cluster, each submitted with `flink run`, reading what the earlier ones wrote.
"""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import orjson
import pytest
import yaml
from kafka.partitioner.default import murmur2

from gridflow import kafka_io
from gridflow.cli_args import format_topic_offsets
from gridflow.cluster import FlinkCluster
from gridflow.demo import DAY_MS, DEMO_DAY_MS, PRICE_DAYS, PRICE_START, _learned_appliances, _start_at_latest

from conftest import unique_topics

pytestmark = [pytest.mark.integration, pytest.mark.cluster, pytest.mark.slow]

HOUSEHOLDS = 4
MALFORMED = [b"not json at all", b'{"household_id": "h-00001", "meter_id": "m-h-00001", "ts_ms": 1715385600000}',
             b'{"household_id": "h-00002", "meter_id": "m-h-00002", "ts_ms": 1715385600000, "power_w": -9e9}']


def _partition(key: bytes, partitions: int) -> int:
    """The partition a keyed record lands on (the Java client's and kafka-python's default partitioner)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def _fleet_records(settings) -> tuple[list[tuple[str, bytes]], set[tuple[str, int]]]:
    """One day of simulated meters (real load shapes, labelled faults) as keyed Kafka records in time order,
    malformed payloads among them; and the (meter, window start) pairs that hold at least one valid reading."""
    from gridflow.devices.load_shapes import LoadShapeLibrary
    from gridflow.devices.simulator import FleetSimulator

    sim = FleetSimulator(settings, HOUSEHOLDS, 86_400, LoadShapeLibrary.load(settings), start_ms=DEMO_DAY_MS)
    window_ms = settings.preprocess.window_s * 1000
    records, windows = [], set()
    for k in range(sim.n):
        ts = int(sim.ts_ms[k])
        for i, household in enumerate(sim.household_ids):
            if sim.keep[i, k]:
                meter = f"m-{household}"
                records.append((household, orjson.dumps({"household_id": household, "meter_id": meter, "ts_ms": ts,
                                                         "power_w": round(float(sim.power_w[i, k]), 2)})))
                windows.add((meter, ts - ts % window_ms))
    for j, payload in enumerate(MALFORMED):  # keyed, so their partition is known in advance
        records.insert((j + 1) * len(records) // 8, (f"h-{j:05d}", payload))
    return records, windows


def _overlay(settings, tmp_path, name: str) -> list[str]:
    """Job arguments: one settings file for every job of the pipeline, as an operator would write it."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "kafka": {"bootstrap_servers": settings.kafka.bootstrap_servers, "delivery_guarantee": "exactly-once",
                  "group_id_prefix": settings.kafka.group_id_prefix},
        "topics": settings.topics.model_dump(),
        "stream": {"out_of_orderness_ms": 30_000, "idle_timeout_ms": 0},
        "clustering": {"warmup_profiles": 2, "n_clusters": 2, "publish_every_s": 1},
        "flink": {"execution.checkpointing.interval": "2 s", "parallelism.default": 1},
    }))
    return ["--config", str(path)]


def _read(settings, topic) -> list[dict]:
    return [json.loads(v) for v in kafka_io.read_topic(settings, topic, idle_timeout_s=3)]


def _ends(settings, topic) -> dict[int, int]:
    return kafka_io.ends_of(kafka_io.read_positioned(settings, topic), settings.kafka.partitions)


def test_pipeline_on_the_cluster_counts_every_reading_once_across_a_taskmanager_crash(flink_stack, tmp_path):
    settings = unique_topics(flink_stack.settings).with_overrides(
        "kafka.delivery_guarantee=exactly-once", "stream.out_of_orderness_ms=30000", "stream.idle_timeout_ms=0",
        "clustering.warmup_profiles=2", "clustering.n_clusters=2", "clustering.publish_every_s=1")
    t = settings.topics
    kafka_io.create_topics(settings, t.model_dump().values())
    cluster = FlinkCluster(flink_stack.info.flink_rest, flink_stack.info.flink_conf_dir)
    job_args = _overlay(settings, tmp_path, "pipeline")
    partitions = settings.kafka.partitions

    # Readings arrive in two halves; the job is bounded at the offsets the whole day will reach.
    records, windows = _fleet_records(settings)
    half = len(records) // 2
    first = kafka_io.produce(settings, t.readings, records[:half])
    later = Counter(_partition(key.encode(), partitions) for key, _ in records[half:])
    stops = {p: first.get(p, 0) + later.get(p, 0) for p in range(partitions)}

    preprocess = cluster.submit("preprocess", [*job_args, "--stop-offsets", ",".join(f"{p}={o}" for p, o in stops.items())])
    cluster.wait_until_running(preprocess.job_id)
    deadline_checkpoints = cluster.wait_for_checkpoint(preprocess.job_id)
    while not kafka_io.read_topic(settings, t.features, expected=1, idle_timeout_s=2):
        deadline_checkpoints = cluster.wait_for_checkpoint(preprocess.job_id, after=deadline_checkpoints)
    committed_before = len(kafka_io.read_topic(settings, t.features, idle_timeout_s=2))
    assert cluster.state(preprocess.job_id) == "RUNNING"

    flink_stack.kill_taskmanager()          # SIGKILL: no chance to flush or commit anything
    flink_stack.start_taskmanager()
    assert kafka_io.produce(settings, t.readings, records[half:]) == {p: stops[p] for p in later}
    preprocess.wait(timeout_s=600)
    failures = cluster.exceptions(preprocess.job_id)
    assert failures, "the job recovered from the TaskManager's loss (its exception history records it)"

    features, profiles, dead = _read(settings, t.features), _read(settings, t.profiles), _read(settings, t.dead_letter)
    assert 0 < committed_before < len(features), "the crash came after committed output and before the end"
    keys = Counter((f["meter_id"], f["window_start_ms"]) for f in features)
    assert max(keys.values()) == 1, "no window was written twice"
    assert set(keys) == windows, "every window with readings was written"
    assert sum(f["n_readings"] + f["n_duplicates"] for f in features) + len(dead) == len(records)
    assert len(dead) == len(MALFORMED) and {d["payload"].encode() for d in dead} == set(MALFORMED)
    assert Counter(p["household_id"] for p in profiles) == {f"h-{i:05d}": 1 for i in range(HOUSEHOLDS)}

    # The rest of the pipeline, each job submitted to the same cluster and bounded at its inputs' ends.
    def run(job: str, **inputs: dict[int, int]) -> None:
        stops = [arg for topic, offsets in inputs.items() for arg in ("--stop-at", format_topic_offsets(topic, offsets))]
        cluster.submit(job, [*job_args, *stops]).wait(timeout_s=600)

    run("clustering", **{t.profiles: _ends(settings, t.profiles), t.features: _ends(settings, t.features)})
    assignments, alerts = _read(settings, t.assignments), _read(settings, t.alerts)
    assert len(assignments) == len(profiles) - 1    # the first profile warms the model up (k-means++ on two)
    assert len({a["household_id"] for a in assignments}) == len(assignments)
    alert_keys = Counter((a["household_id"], a["type"], a["window_start_ms"], a["window_end_ms"]) for a in alerts)
    assert not alerts or max(alert_keys.values()) == 1, "no alert twice"

    from gridflow.datasets import load_prices
    from gridflow.prices_replay import replay_records

    prices = replay_records(load_prices(settings), PRICE_START, PRICE_DAYS, "NL", settings.forecast.slot_minutes)
    kafka_io.produce(settings, t.prices, [("NL", json.dumps(p)) for p in prices])
    run("forecasting", **{t.prices: _ends(settings, t.prices)})
    forecasts = _read(settings, t.price_forecasts)
    days = Counter(f["start_ts_ms"] for f in forecasts)
    assert forecasts and max(days.values()) == 1, "one forecast per day"
    assert DEMO_DAY_MS < max(days) <= DEMO_DAY_MS + DAY_MS, "the last forecast is for the (local) next day"

    appliances = _learned_appliances(settings, HOUSEHOLDS)
    kafka_io.produce(settings, t.appliances, [(h, json.dumps(a)) for h, a in appliances])
    forecast_ends = _start_at_latest(settings, "scheduling", t.price_forecasts)
    run("scheduling", **{t.appliances: _ends(settings, t.appliances), t.price_forecasts: forecast_ends})
    schedules = _read(settings, t.schedules)
    assert {s["household_id"] for s in schedules} == {f"h-{i:05d}" for i in range(HOUSEHOLDS)}
    assert {s["start_ts_ms"] for s in schedules} == {max(days)}, "schedules for the latest forecast's day"

    run("recommendations", **{t.schedules: _ends(settings, t.schedules), t.profiles: _ends(settings, t.profiles),
                              t.alerts: _ends(settings, t.alerts)})
    recommendations = _read(settings, t.recommendations)
    assert {r["household_id"] for r in recommendations if r["kind"] == "shift"} <= {s["household_id"] for s in schedules}
    assert any(r["kind"] == "shift" for r in recommendations)
    ids = Counter(json.dumps({k: v for k, v in r.items() if k != "created_ms"}, sort_keys=True) for r in recommendations)
    assert max(ids.values()) == 1, "no recommendation twice"
    jobs = {job["jid"]: job["state"] for job in cluster.jobs()}
    assert jobs[preprocess.job_id] == "FINISHED"
