"""The clustering and anomaly jobs on the mini-cluster: profiles in, assignments and centroids out; the
k-means model survives a stop-with-savepoint and restart; a spike in the features becomes an alert (the
anomaly job, in thread-mode Python workers); records that break the profile or feature contract become
dead letters naming the field."""

import json
import time

import pytest

from gridflow import kafka_io
from gridflow.analytics.clustering import LoadProfileClusterer
from gridflow.contracts import encode
from gridflow.feature_batches import batches, bucket_of
from gridflow.jobs import anomaly, clustering
from gridflow.runtime import create_env

from contract_cases import breaking, check_dead_letters
from datastream_cases import profiles

pytestmark = pytest.mark.integration
DAY_MS = 86_400_000


def _wait_for(settings, topic: str, n: int, timeout_s: float = 180.0) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = kafka_io.read_topic(settings, topic, expected=n, idle_timeout_s=3, max_wait_s=20)
        if len(got) >= n:
            return [json.loads(v) for v in got]
    raise TimeoutError(f"{topic}: fewer than {n} records after {timeout_s} s")


def _stop_with_savepoint(job, folder) -> str:
    """PyFlink's JobClient.stop_with_savepoint calls a signature Flink 2 no longer has: call Java directly."""
    from pyflink.java_gateway import get_gateway

    canonical = get_gateway().jvm.org.apache.flink.core.execution.SavepointFormatType.CANONICAL
    return job._j_job_client.stopWithSavepoint(False, str(folder), canonical).get()


def _minute(k: int, mean: float, raw_max: float | None = None, meter: str = "m-77") -> dict:
    return {
        "household_id": "h-77",
        "meter_id": meter,
        "window_start_ms": k * 60_000,
        "window_end_ms": (k + 1) * 60_000,
        "n_readings": 6,
        "n_duplicates": 0,
        "n_outliers": int(bool(raw_max)),
        "n_interpolated": 0,
        "n_missing": 0,
        "coverage": 1.0,
        "energy_wh": mean / 60,
        "mean_w": mean,
        "peak_w": mean * 1.02,
        "min_w": mean * 0.98,
        "std_w": mean * 0.01,
        "raw_max_w": raw_max or mean * 1.02,
        "outlier_values": [raw_max] if raw_max else [],
        "stuck_run": 1,
        "load_factor": 0.98,
        "peak_share": 0.0,
        "grid_w": [mean] * 6,
        "emitted_ms": (k + 1) * 60_000 + 500,
        "v": 1,
    }


def test_assignments_centroids_and_alerts_and_the_model_survives_a_savepoint(kafka_settings, tmp_path):
    settings = kafka_settings.with_overrides(
        "clustering.n_clusters=2", "clustering.warmup_profiles=16", "clustering.publish_every_s=1"
    )
    t = settings.topics
    kafka_io.create_topics(settings, [t.profiles], partitions=1)  # one partition: the model sees a fixed order
    kafka_io.create_topics(settings, [t.assignments, t.centroids, t.dead_letter])
    days = profiles(10)
    first, second = days[:48], days[48:]
    reference = LoadProfileClusterer.from_settings(settings)
    expected = [reference.learn_record(r) for r in days]

    broken = breaking(first[0], first[0]["household_id"], drop="profile_norm", mistype="slots")
    kafka_io.produce(
        settings,
        t.profiles,
        [(r["household_id"], json.dumps(r)) for r in first]
        + [(None, "not a profile")]
        + [(k, p) for k, p, _ in broken],
    )
    env = create_env(settings)
    clustering.build(env, settings, stop_offsets={t.profiles: None})
    job = env.execute_async("clustering-part-1")
    n_first = sum(a is not None for a in expected[:48])
    got = _wait_for(settings, t.assignments, n_first)
    savepoint = _stop_with_savepoint(job, tmp_path / "savepoints")

    kafka_io.produce(settings, t.profiles, [(r["household_id"], json.dumps(r)) for r in second])
    resumed = settings.with_overrides(f"flink.execution.savepoint.path={savepoint}")
    env = create_env(resumed)
    # unbounded again: restored Kafka splits keep the stopping offsets they were saved with (none)
    clustering.build(env, resumed, stop_offsets={t.profiles: None})
    job = env.execute_async("clustering-part-2")
    try:
        got = _wait_for(settings, t.assignments, n_first + len(second))
    finally:
        job.cancel().result()
    want = [a for a in expected if a is not None]

    def per_household(assignments):  # records are keyed by household: ordered within a household only
        grouped: dict[str, list] = {}
        for a in assignments:
            grouped.setdefault(a["household_id"], []).append(a)
        return grouped

    got_by, want_by = per_household(got), per_household(want)
    assert sorted(got_by) == sorted(want_by)
    for household, wanted in want_by.items():
        assert [a["cluster"] for a in got_by[household]] == [a["cluster"] for a in wanted], household
        assert [a["distance"] for a in got_by[household]] == pytest.approx([a["distance"] for a in wanted])
    fresh = LoadProfileClusterer.from_settings(settings)
    assert [fresh.learn_record(r) for r in second][0] is None, "a model without the restored state would still warm up"
    clusters = {a["household_id"]: a["cluster"] for a in got}
    evening, daytime = ({clusters[f"h-{h:02d}"] for h in range(start, 8, 2)} for start in (0, 1))
    assert len(evening) == len(daytime) == 1 and evening != daytime, "the two load shapes are two clusters"

    centroids = [json.loads(v) for v in kafka_io.read_topic(settings, t.centroids, until_end=True)]
    assert {c["cluster"] for c in centroids} == {0, 1} and all(len(c["shape"]) == 24 for c in centroids)
    dead = [json.loads(v) for v in kafka_io.read_topic(settings, t.dead_letter, until_end=True)]
    assert len(dead) == 1 + len(broken)
    check_dead_letters(dead, broken, f"kafka:{t.profiles}")
    (not_json,) = [d for d in dead if d["payload"] == "not a profile"]
    assert not_json["field"] == "" and not_json["reason"].startswith("not JSON")


def test_a_spike_becomes_one_alert_and_unusable_batches_and_features_dead_letters(kafka_settings):
    """Feature batches in, as the preprocessing job writes them. A batch that breaks its contract (a field
    missing or mistyped, an unknown version, keyed as another bucket) is one dead letter; a broken feature
    inside a good batch is a dead letter of its own (naming ``features.<i>.<field>``) while the batch's other
    feature is judged."""
    settings = kafka_settings
    assert settings.jobs.anomaly.python_execution_mode == "thread"
    t = settings.topics
    kafka_io.create_topics(settings, [t.feature_batches, t.alerts, t.dead_letter])
    buckets = settings.preprocess.feature_batch_buckets
    minutes = [_minute(k, 400.0) for k in range(20)] + [_minute(20, 400.0, raw_max=5000.0)]
    key, good = batches([minutes[3]], buckets)[0]
    good_batch = json.loads(good)
    broken = breaking(good_batch, key, drop="window_end_ms", mistype="bucket", key_field="bucket", intruder="999")
    # minute 11 of a second meter, broken, in the same batch as minute 11 of m-77
    bad_feature = {k: v for k, v in _minute(11, 300.0, meter="m-78").items() if k != "mean_w"}
    mixed_key, mixed = batches([minutes[11]], buckets)[0]
    mixed = json.loads(mixed)
    mixed["features"].append(bad_feature)
    records = batches(minutes[:10], buckets) + [(k, p) for k, p, _ in broken]
    records += [(mixed_key, encode(mixed))] + batches(minutes[12:], buckets)
    ends = kafka_io.produce(settings, t.feature_batches, records)
    env = create_env(settings)
    anomaly.build(env, settings, stop_offsets={t.feature_batches: ends})
    env.execute("anomaly")
    alerts = [json.loads(v) for v in kafka_io.read_topic(settings, t.alerts, until_end=True)]
    assert [a["type"] for a in alerts] == ["spike"] and alerts[0]["household_id"] == "h-77"
    assert alerts[0]["window_start_ms"] == 20 * 60_000
    dead = [json.loads(v) for v in kafka_io.read_topic(settings, t.dead_letter, until_end=True)]
    assert len(dead) == len(broken) + 1
    check_dead_letters(dead, broken, f"kafka:{t.feature_batches}")
    (letter,) = [d for d in dead if d["payload"] == encode(bad_feature)]
    assert letter["field"] == "features.1.mean_w" and letter["reason"] == "is required"


def test_each_meter_of_a_household_is_judged_and_a_silent_meter_raises_a_dropout(kafka_settings):
    """h-77 has two meters. m-1 reports every minute and spikes at minute 25; m-2 stops after minute 9 and
    is back at minute 32. Both meters' minutes count (before, the second meter's minutes were dropped as
    'already judged'); m-2's silence is one alert while it lasts (from the watermark the other meter moves)
    and its return a back-online record; the end of the input is no silence for m-1."""
    settings = kafka_settings.with_overrides("stream.out_of_orderness_ms=0")
    t = settings.topics
    kafka_io.create_topics(settings, [t.feature_batches], partitions=1)  # one partition: the watermark follows m-1
    kafka_io.create_topics(settings, [t.alerts, t.dead_letter])
    minutes = []
    for k in range(40):
        minutes.append(_minute(k, 400.0, raw_max=5000.0 if k == 25 else None, meter="m-1"))
        if k < 10 or k >= 32:
            minutes.append(_minute(k, 250.0, meter="m-2"))
    # one bucket per meter (else the two meters share each minute's batch)
    buckets = 2
    assert len({bucket_of("h-77", m, buckets) for m in ("m-1", "m-2")}) == 2
    settings = settings.with_overrides(f"preprocess.feature_batch_buckets={buckets}")
    ends = kafka_io.produce(settings, t.feature_batches, batches(minutes, buckets))
    env = create_env(settings)
    # The source's watermark follows m-1 record by record, so m-2's silence shows while m-1 flows; the
    # watermark of the finished input (end of the replay) is not silence.
    anomaly.build(env, settings, stop_offsets={t.feature_batches: ends})
    env.execute("anomaly-two-meters")
    alerts = [json.loads(v) for v in kafka_io.read_topic(settings, t.alerts, until_end=True)]
    by_meter = sorted((a["meter_id"], a["type"]) for a in alerts)
    assert by_meter == [("m-1", "spike"), ("m-2", "back_online"), ("m-2", "dropout")], alerts
    (back,) = [a for a in alerts if a["type"] == "back_online"]
    assert (back["window_start_ms"], back["window_end_ms"]) == (10 * 60_000, 32 * 60_000)
    (dropout,) = [a for a in alerts if a["type"] == "dropout"]
    dropout_minutes = settings.anomaly.dropout_minutes
    assert dropout["household_id"] == "h-77" and dropout["evidence"]["still_silent"] is True
    assert dropout["window_start_ms"] == 10 * 60_000, "silent since the end of its last minute"
    assert dropout["window_end_ms"] == (10 + dropout_minutes) * 60_000
    (spike,) = [a for a in alerts if a["type"] == "spike"]
    assert spike["window_start_ms"] == 25 * 60_000
