"""Kafka -> PyFlink (local mini-cluster, real Kafka connector) -> Kafka, against the embedded broker."""

import json

import pytest

from gridflow import kafka_io
from gridflow.jobs import reading_summary
from gridflow.runtime import create_env

from pipeline_data import MALFORMED, check_outputs, readings, records

pytestmark = pytest.mark.integration


def test_every_reading_comes_out_summarised_or_dead_lettered(kafka_settings):
    settings = kafka_settings.with_overrides("stream.window_s=60", "stream.out_of_orderness_ms=5000")
    topics = settings.topics
    kafka_io.create_topics(settings, [topics.readings, topics.summaries, topics.dead_letter])
    rows = readings(households=9, minutes=12, seed=3)
    ends = kafka_io.produce(settings, topics.readings, records(rows))
    assert sum(ends.values()) == len(rows) + len(MALFORMED)
    assert len(ends) == settings.kafka.partitions, "the readings topic is read across all its partitions"

    env = create_env(settings)
    reading_summary.build(env, settings, stop_offsets=ends)
    env.execute("reading-summary-test")

    n_windows = len({(r["household_id"], r["ts_ms"] // 60_000) for r in rows})
    summaries = [json.loads(v) for v in kafka_io.read_topic(settings, topics.summaries, expected=n_windows)]
    dead = [json.loads(v) for v in kafka_io.read_topic(settings, topics.dead_letter, expected=len(MALFORMED))]
    check_outputs(summaries, dead, rows, window_ms=60_000)
