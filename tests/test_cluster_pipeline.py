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

import pytest

from gridflow import kafka_io
from gridflow.cli_args import format_topic_offsets
from gridflow.cluster import FlinkCluster
from gridflow.demo import DAY_MS, DEMO_DAY_MS, PRICE_DAYS, PRICE_START, _learned_appliances, _start_at_latest

from cluster_data import HOUSEHOLDS, TwoHalves, ends, job_overlay, read
from conftest import unique_topics

pytestmark = [pytest.mark.integration, pytest.mark.cluster, pytest.mark.slow]


def test_pipeline_on_the_cluster_counts_every_reading_once_across_a_taskmanager_crash(flink_stack, tmp_path):
    settings = unique_topics(flink_stack.settings).with_overrides(
        "kafka.delivery_guarantee=exactly-once",
        "stream.out_of_orderness_ms=30000",
        "stream.idle_timeout_ms=0",
        "clustering.warmup_profiles=2",
        "clustering.n_clusters=2",
        "clustering.publish_every_s=1",
    )
    t = settings.topics
    kafka_io.create_topics(settings, t.model_dump().values())
    cluster = FlinkCluster(flink_stack.info.flink_rest, flink_stack.info.flink_conf_dir)
    job_args = job_overlay(settings, tmp_path, "pipeline")

    day = TwoHalves(settings)
    preprocess = cluster.submit("preprocess", [*job_args, *day.stop_arg()])
    cluster.wait_until_running(preprocess.job_id)
    committed_before = day.wait_for_committed_output(cluster, preprocess.job_id)
    assert cluster.state(preprocess.job_id) == "RUNNING"

    flink_stack.kill_taskmanager()  # SIGKILL: no chance to flush or commit anything
    flink_stack.start_taskmanager()
    day.produce_second_half()
    preprocess.wait(timeout_s=600)
    assert cluster.exceptions(preprocess.job_id), "the job recovered from a failure (its exception history)"

    features, profiles, dead = day.check_every_reading_once()
    assert 0 < committed_before < len(features), "the crash came after committed output and before the end"

    # The rest of the pipeline, each job submitted to the same cluster and bounded at its inputs' ends.
    def run(job: str, **inputs: dict[int, int]) -> None:
        stops = [
            arg for topic, offsets in inputs.items() for arg in ("--stop-at", format_topic_offsets(topic, offsets))
        ]
        cluster.submit(job, [*job_args, *stops]).wait(timeout_s=600)

    run("clustering", **{t.profiles: ends(settings, t.profiles)})
    run("anomaly", **{t.features: ends(settings, t.features)})  # thread-mode Python workers in the TaskManager
    assignments, alerts = read(settings, t.assignments), read(settings, t.alerts)
    assert len(assignments) == len(profiles) - 1  # the first profile warms the model up (k-means++ on two)
    assert len({a["household_id"] for a in assignments}) == len(assignments)
    alert_keys = Counter((a["household_id"], a["type"], a["window_start_ms"], a["window_end_ms"]) for a in alerts)
    assert not alerts or max(alert_keys.values()) == 1, "no alert twice"

    from gridflow.datasets import load_prices
    from gridflow.prices_replay import replay_records

    prices = replay_records(load_prices(settings), PRICE_START, PRICE_DAYS, "NL", settings.forecast.slot_minutes)
    kafka_io.produce(settings, t.prices, [("NL", json.dumps(p)) for p in prices])
    run("forecasting", **{t.prices: ends(settings, t.prices)})
    forecasts = read(settings, t.price_forecasts)
    days = Counter(f["start_ts_ms"] for f in forecasts)
    assert forecasts and max(days.values()) == 1, "one forecast per day"
    assert DEMO_DAY_MS < max(days) <= DEMO_DAY_MS + DAY_MS, "the last forecast is for the (local) next day"

    appliances = _learned_appliances(settings, HOUSEHOLDS)
    kafka_io.produce(settings, t.appliances, [(h, json.dumps(a)) for h, a in appliances])
    forecast_ends = _start_at_latest(settings, "scheduling", t.price_forecasts)
    run("scheduling", **{t.appliances: ends(settings, t.appliances), t.price_forecasts: forecast_ends})
    schedules = read(settings, t.schedules)
    assert {s["household_id"] for s in schedules} == {f"h-{i:05d}" for i in range(HOUSEHOLDS)}
    assert {s["start_ts_ms"] for s in schedules} == {max(days)}, "schedules for the latest forecast's day"

    run(
        "recommendations",
        **{
            t.schedules: ends(settings, t.schedules),
            t.profiles: ends(settings, t.profiles),
            t.alerts: ends(settings, t.alerts),
        },
    )
    recommendations = read(settings, t.recommendations)
    assert {r["household_id"] for r in recommendations if r["kind"] == "shift"} <= {
        s["household_id"] for s in schedules
    }
    assert any(r["kind"] == "shift" for r in recommendations)
    ids = Counter(
        json.dumps({k: v for k, v in r.items() if k != "created_ms"}, sort_keys=True) for r in recommendations
    )
    assert max(ids.values()) == 1, "no recommendation twice"
    jobs = {job["jid"]: job["state"] for job in cluster.jobs()}
    assert jobs[preprocess.job_id] == "FINISHED"
