"""Every DataStream job survives an upgrade: stop with a savepoint mid-stream at parallelism 2, resume from
it at parallelism 1, and the outputs equal those of one uninterrupted run over the same input.

The first half of the input goes in, the job runs until it has written some output (its state is not
empty), stops with a savepoint; the second half goes in and the job resumes from the savepoint with the
other parallelism, until it has written what the uninterrupted run wrote, then stops draining (the end of
its input, as for the bounded run). Outputs are compared per Kafka key (each key's records in order) with
wall-clock stamps left out. The clustering job's own savepoint test is in tests/test_clustering_job.py."""

from __future__ import annotations

import json
import time

import pytest

from gridflow import kafka_io
from gridflow.contracts import CONTRACTS
from gridflow.jobs import anomaly, forecasting, recommendations, scheduling
from gridflow.prices_replay import price_record
from gridflow.runtime import create_env

from conftest import unique_topics
from contract_cases import feature

pytestmark = [pytest.mark.integration, pytest.mark.slow]
WALL_CLOCK = ("emitted_ms", "created_ms", "issued_at_ms")
H, DAY = 3_600_000, 86_400_000
START_MS = 1_767_571_200_000  # 2026-01-05 00:00 UTC


def _stop_with_savepoint(job, folder, drain: bool = False) -> str:
    """PyFlink's JobClient.stop_with_savepoint calls a signature Flink 2 no longer has: call Java directly."""
    from pyflink.java_gateway import get_gateway

    canonical = get_gateway().jvm.org.apache.flink.core.execution.SavepointFormatType.CANONICAL
    return job._j_job_client.stopWithSavepoint(drain, str(folder), canonical).get()


def _outputs(settings, topics: list[str]) -> dict[str, dict[str, list[dict]]]:
    """topic -> key -> that key's records in order, without wall-clock fields."""
    out: dict[str, dict[str, list[dict]]] = {}
    for topic in topics:
        by_key = out.setdefault(topic, {})
        for key, value in kafka_io.read_records(settings, topic, idle_timeout_s=2):
            record = {k: v for k, v in json.loads(value).items() if k not in WALL_CLOCK}
            by_key.setdefault((key or b"").decode(), []).append(record)
    return out


def _count(outputs) -> int:
    return sum(len(records) for by_key in outputs.values() for records in by_key.values())


def _run_bounded(module, settings, inputs) -> None:
    stops = {topic: kafka_io.produce(settings, topic, records) for topic, records in inputs.items()}
    env = create_env(settings)
    module.build(env, settings, stop_offsets=stops)
    env.execute(f"{module.NAME}-uninterrupted")


def _fresh(settings, module_topics):
    s = unique_topics(settings)
    kafka_io.create_topics(s, [getattr(s.topics, name) for name in module_topics])
    return s


def rescaled_equals_uninterrupted(
    module,
    base,
    inputs_of,
    input_names,
    output_names,
    tmp_path,
    split=lambda records: len(records) // 2,
    deadline_s: float = 180.0,
):
    """Run ``module`` both ways on the same input and return (uninterrupted, rescaled) outputs."""
    names = [*input_names, *output_names, "dead_letter"]
    whole = _fresh(base.with_overrides("flink.parallelism.default=2"), names)
    inputs = inputs_of(whole)
    _run_bounded(module, whole, {getattr(whole.topics, n): inputs[n] for n in input_names})
    outputs = [getattr(whole.topics, n) for n in [*output_names, "dead_letter"]]
    reference = _outputs(whole, outputs)
    assert _count(reference) > 0, "the uninterrupted run wrote nothing: no test"

    first = _fresh(base.with_overrides("flink.parallelism.default=2"), names)
    topics_of = {n: getattr(first.topics, n) for n in names}
    halves = {n: (inputs[n][: split(inputs[n])], inputs[n][split(inputs[n]) :]) for n in input_names}
    for n in input_names:
        kafka_io.produce(first, topics_of[n], halves[n][0])
    env = create_env(first)
    module.build(env, first, stop_offsets={topics_of[n]: None for n in input_names})
    job = env.execute_async(f"{module.NAME}-part-1")
    out_topics = [topics_of[n] for n in [*output_names, "dead_letter"]]
    deadline = time.monotonic() + deadline_s
    while _count(_outputs(first, out_topics)) == 0:
        assert time.monotonic() < deadline, "the first part wrote nothing"
    savepoint = _stop_with_savepoint(job, tmp_path / "savepoints")

    for n in input_names:
        kafka_io.produce(first, topics_of[n], halves[n][1])
    resumed = first.with_overrides("flink.parallelism.default=1", f"flink.execution.savepoint.path={savepoint}")
    env = create_env(resumed)
    module.build(env, resumed, stop_offsets={topics_of[n]: None for n in input_names})
    job = env.execute_async(f"{module.NAME}-part-2")
    try:
        while _count(_outputs(first, out_topics)) < _count(reference):
            assert time.monotonic() < deadline, "the resumed job did not catch up with the uninterrupted run"
    finally:
        _stop_with_savepoint(job, tmp_path / "savepoints", drain=True)
    got = _outputs(first, out_topics)
    # the two runs wrote to topics with different suffixes: compare by position in the topic list
    rename = dict(zip(out_topics, outputs))
    return reference, {rename[t]: v for t, v in got.items()}


def _keyed(records: list[dict], field: str = "household_id") -> list[tuple[str, str]]:
    return [(str(r[field]), json.dumps(r)) for r in records]


def test_anomaly_detection(kafka_settings, tmp_path):
    def inputs(s):
        minutes = []
        for k in range(90):
            for h in range(4):
                spike = k in (40, 70) and h % 2 == 0
                minutes.append(
                    feature(
                        f"h-{h}",
                        f"m-{h}",
                        START_MS + k * 60_000,
                        300.0 + 50 * h,
                        raw_max_w=4000.0 if spike else 300.0 + 50 * h,
                        outlier_values=[4000.0] if spike else [],
                        n_outliers=int(spike),
                    )
                )
        return {"features": _keyed(minutes)}

    settings = kafka_settings.with_overrides("stream.out_of_orderness_ms=0")
    reference, rescaled = rescaled_equals_uninterrupted(anomaly, settings, inputs, ["features"], ["alerts"], tmp_path)
    assert rescaled == reference


def test_price_forecasting(kafka_settings, tmp_path):
    def inputs(s):
        day = [
            0.21,
            0.19,
            0.18,
            0.17,
            0.17,
            0.18,
            0.22,
            0.29,
            0.33,
            0.30,
            0.26,
            0.24,
            0.23,
            0.22,
            0.23,
            0.25,
            0.28,
            0.35,
            0.41,
            0.38,
            0.31,
            0.27,
            0.24,
            0.22,
        ]
        prices = [price_record("NL", START_MS + h * H, day[h % 24] + 0.001 * (h // 24), 60) for h in range(24 * 8)]
        return {"prices": _keyed(prices, "market")}

    settings = kafka_settings.with_overrides("forecast.model=linear")
    reference, rescaled = rescaled_equals_uninterrupted(
        forecasting, settings, inputs, ["prices"], ["price_forecasts"], tmp_path
    )
    assert rescaled == reference


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


def test_scheduling(kafka_settings, tmp_path):
    def inputs(s):
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
                "price_per_kwh": [p + 0.01 * d for p in prices],
            }
            for d in range(2)
        ]
        return {"appliances": _keyed(appliances), "price_forecasts": _keyed(forecasts, "market")}

    reference, rescaled = rescaled_equals_uninterrupted(
        scheduling, kafka_settings, inputs, ["appliances", "price_forecasts"], ["schedules"], tmp_path
    )
    assert rescaled.keys() == reference.keys()
    for topic, by_key in reference.items():
        for key, records in by_key.items():
            # each household's last schedule per day is the one that counts (later ones replace earlier ones)
            last = {r["start_ts_ms"]: r for r in records}
            assert {r["start_ts_ms"]: r for r in rescaled[topic].get(key, [])} == last, key


def test_recommendations(kafka_settings, tmp_path):
    def inputs(s):
        schedules = []
        for h in range(4):
            schedule = dict(CONTRACTS["schedule"].example)
            runs = [{**schedule["appliances"][0], "power_w": 1000.0 + 100 * h}]
            schedules.append(
                {
                    **schedule,
                    "household_id": f"h-{h}",
                    "appliances": runs,
                    "start_ts_ms": schedule["start_ts_ms"] + h * H,
                }
            )
        profiles = [
            {**CONTRACTS["profile"].example, "household_id": f"h-{h}", "peak_share": 0.2 + 0.1 * h} for h in range(4)
        ]
        alerts = [
            {**CONTRACTS["alert"].example, "household_id": f"h-{h}", "type": "stuck", "ts_ms": START_MS + h}
            for h in range(4)
        ]
        return {"schedules": _keyed(schedules), "profiles": _keyed(profiles), "alerts": _keyed(alerts)}

    settings = kafka_settings.with_overrides("balancing.feeder_capacity_kw=1.5")
    reference, rescaled = rescaled_equals_uninterrupted(
        recommendations, settings, inputs, ["schedules", "profiles", "alerts"], ["recommendations"], tmp_path
    )
    assert rescaled == reference
