"""Kafka transactions on the embedded Apache Kafka broker: what exactly-once delivery builds on.

Flink's exactly-once Kafka sink writes each checkpoint's records in a transaction and commits it when the
checkpoint completes; after a crash the open transaction is aborted. Consumers that read with
``isolation.level=read_committed`` (every gridflow job and tool does under exactly-once) must never see
an aborted record, and must not see an open transaction's records before it commits.
"""

import pytest
from confluent_kafka import Producer

from gridflow import kafka_io
from gridflow.connectors.flink_kafka import consumer_properties, producer_properties

pytestmark = pytest.mark.integration


def _transactional_producer(settings, transactional_id: str) -> Producer:
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "transactional.id": transactional_id,
            "transaction.timeout.ms": settings.kafka.transaction_timeout_ms,
        }
    )
    producer.init_transactions(30)
    return producer


def _write(producer: Producer, topic: str, values: list[str]) -> None:
    """Open a transaction and write ``values`` to the log in it (keyed h-0, h-1, ...); the caller ends it."""
    producer.begin_transaction()
    for i, value in enumerate(values):
        producer.produce(topic, key=f"h-{i}", value=value)
    producer.flush(30)


def _values(settings, topic, isolation: str, expected=None) -> list[str]:
    guarantee = "exactly-once" if isolation == "read_committed" else "at-least-once"
    return kafka_io.read_topic(
        settings.with_overrides(f"kafka.delivery_guarantee={guarantee}"), topic, expected=expected, idle_timeout_s=2.0
    )


def test_aborted_and_open_transactions_are_invisible_to_read_committed_consumers(kafka_settings):
    topic = kafka_settings.topics.features
    kafka_io.create_topics(kafka_settings, [topic])
    producer = _transactional_producer(kafka_settings, f"{topic}.writer")

    _write(producer, topic, [f"committed-{i}" for i in range(5)])
    producer.commit_transaction(30)

    _write(producer, topic, [f"aborted-{i}" for i in range(5)])  # written to the log ...
    producer.abort_transaction(30)  # ... and then aborted, as after a TaskManager crash

    _write(producer, topic, ["open"])  # written, not yet committed

    uncommitted = _values(kafka_settings, topic, "read_uncommitted", expected=11)
    assert sorted(uncommitted) == sorted(
        [f"committed-{i}" for i in range(5)] + [f"aborted-{i}" for i in range(5)] + ["open"]
    ), "every record is in the log"
    assert sorted(_values(kafka_settings, topic, "read_committed")) == [f"committed-{i}" for i in range(5)]

    producer.commit_transaction(30)
    assert sorted(_values(kafka_settings, topic, "read_committed", expected=6)) == sorted(
        [f"committed-{i}" for i in range(5)] + ["open"]
    ), "a committed transaction becomes visible"


def test_a_new_producer_with_the_same_transactional_id_aborts_the_crashed_ones_transaction(kafka_settings):
    """What Flink relies on after a crash: the restarted sink fences its predecessor and its open
    transaction is aborted, so the records it wrote never become visible."""
    topic = kafka_settings.topics.features
    kafka_io.create_topics(kafka_settings, [topic])
    crashed = _transactional_producer(kafka_settings, f"{topic}.sink-0")
    _write(crashed, topic, [f"lost-{i}" for i in range(3)])  # the crash: never committed, never aborted

    restarted = _transactional_producer(kafka_settings, f"{topic}.sink-0")  # fences and aborts
    _write(restarted, topic, ["replayed"])
    restarted.commit_transaction(30)

    assert _values(kafka_settings, topic, "read_committed", expected=1) == ["replayed"]
    assert sorted(_values(kafka_settings, topic, "read_uncommitted", expected=4)) == sorted(
        ["lost-0", "lost-1", "lost-2", "replayed"]
    )


def test_exactly_once_sinks_ask_for_a_transaction_timeout_the_broker_accepts(kafka_settings):
    settings = kafka_settings.with_overrides("kafka.delivery_guarantee=exactly-once")
    assert producer_properties(settings)["transaction.timeout.ms"] == "900000"
    assert consumer_properties(settings)["isolation.level"] == "read_committed"
    assert "transaction.timeout.ms" not in producer_properties(kafka_settings)  # at-least-once: no transactions
    # A timeout above the broker's transaction.max.timeout.ms (15 min by default) is refused by Kafka itself:
    # Flink's default of one hour would fail every exactly-once job on a default broker.
    too_long = Producer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "transactional.id": "too-long",
            "transaction.timeout.ms": 3_600_000,
        }
    )
    with pytest.raises(Exception, match="(?i)transaction timeout|INVALID_TRANSACTION_TIMEOUT"):
        too_long.init_transactions(30)


def test_a_read_to_the_end_stops_at_the_last_stable_offset_past_commit_markers(kafka_settings):
    """``until_end``: the read of a finished job's output takes what the topic holds when it begins (for
    read_committed, up to the last stable offset), and does not wait for the idle timeout to end."""
    import time

    topic = kafka_settings.topics.features
    kafka_io.create_topics(kafka_settings, [topic])
    committed = kafka_settings.with_overrides("kafka.delivery_guarantee=exactly-once")
    assert kafka_io.read_records(committed, topic, idle_timeout_s=300, max_wait_s=300, until_end=True) == []
    producer = _transactional_producer(kafka_settings, f"{topic}.writer")
    _write(producer, topic, [f"committed-{i}" for i in range(5)])
    producer.commit_transaction(30)
    _write(producer, topic, [f"aborted-{i}" for i in range(5)])
    producer.abort_transaction(30)
    _write(producer, topic, ["open"])

    def read_to_end() -> tuple[list[bytes], float]:
        started = time.monotonic()
        records = kafka_io.read_records(committed, topic, idle_timeout_s=300, max_wait_s=300, until_end=True)
        return sorted(value for _, value in records), time.monotonic() - started

    values, took_s = read_to_end()  # the open transaction holds the last stable offset back
    assert values == [f"committed-{i}".encode() for i in range(5)] and took_s < 60, took_s
    producer.commit_transaction(30)  # its commit marker is now the topic's last offset
    values, took_s = read_to_end()
    assert values == sorted([f"committed-{i}".encode() for i in range(5)] + [b"open"]) and took_s < 60, took_s
