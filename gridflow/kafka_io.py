"""Plain Kafka client helpers (kafka-python) for tools, the demo and tests: topics, produce, read back."""

from __future__ import annotations

import time
from typing import Iterable

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import InvalidReplicationFactorError, TopicAlreadyExistsError

from gridflow.settings import Settings


def _client_options(settings: Settings) -> dict:
    # kafka-python takes snake_case options; map the dotted Java-style names operators write in kafka.client.
    return {key.replace(".", "_"): value for key, value in settings.kafka.client.items()}


FENCED_WAIT_S = 60.0  # how long a topic creation waits for a fenced broker to be let back in


def create_topics(settings: Settings, topics: Iterable[str], partitions: int | None = None) -> None:
    """Create topics that do not exist yet (existing topics are left alone).

    A broker that missed its heartbeats to the controller (a starved machine) is fenced until it catches up;
    a creation refused for that alone is tried again for up to ``FENCED_WAIT_S``. Too few brokers for the
    replication factor is refused at once.
    """
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers, **_client_options(settings))
    try:
        existing = set(admin.list_topics())
        wanted = [
            NewTopic(name, partitions or settings.kafka.partitions, settings.kafka.replication_factor)
            for name in dict.fromkeys(topics)
            if name not in existing
        ]
        for topic in wanted:
            deadline = time.monotonic() + FENCED_WAIT_S
            while True:
                try:
                    admin.create_topics([topic])
                    break
                except TopicAlreadyExistsError:
                    break
                except InvalidReplicationFactorError as error:
                    if "fenced" not in str(error) or time.monotonic() > deadline:
                        raise
                    time.sleep(1)
    finally:
        admin.close()


def produce(settings: Settings, topic: str, records: Iterable[tuple[str | None, bytes | str]]) -> dict[int, int]:
    """Send ``(key, value)`` records and wait for every acknowledgement.

    Returns the end offset (last acknowledged offset + 1) per partition written to, which bounds a
    later read exactly: these records and no others, whatever else is written to the topic meanwhile.
    """
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers, acks="all", linger_ms=5, **_client_options(settings)
    )
    futures = []
    try:
        for key, value in records:
            futures.append(
                producer.send(
                    topic,
                    key=key.encode() if isinstance(key, str) else key,
                    value=value.encode() if isinstance(value, str) else value,
                )
            )
        producer.flush()
        ends: dict[int, int] = {}
        for future in futures:
            metadata = future.get(timeout=30)
            ends[metadata.partition] = max(ends.get(metadata.partition, 0), metadata.offset + 1)
        return ends
    finally:
        producer.close()


def read_topic(
    settings: Settings,
    topic: str,
    expected: int | None = None,
    idle_timeout_s: float = 5.0,
    max_wait_s: float = 120.0,
    until_end: bool = False,
) -> list[str]:
    """All values in ``topic`` from the beginning, as text (see :func:`read_records`)."""
    return [
        value.decode("utf-8", errors="backslashreplace")
        for _, value in read_records(settings, topic, expected, idle_timeout_s, max_wait_s, until_end)
    ]


def read_records(
    settings: Settings,
    topic: str,
    expected: int | None = None,
    idle_timeout_s: float = 5.0,
    max_wait_s: float = 120.0,
    until_end: bool = False,
) -> list[tuple[bytes | None, bytes]]:
    """All ``(key, value)`` records in ``topic`` from the beginning.

    Stops once ``expected`` records were read, or when nothing new arrived for ``idle_timeout_s``, or (with
    ``until_end``) once it has read up to the end offsets the topic had when the read began (for exactly-once
    delivery, its last stable offsets): what the topic holds now, without waiting for more. That is the read
    of a finished job's output.
    """
    records = _read(settings, topic, expected, idle_timeout_s, max_wait_s, until_end)
    return [(key, value) for _, _, key, value in records]


def read_positioned(
    settings: Settings, topic: str, idle_timeout_s: float = 2.0, max_wait_s: float = 120.0, until_end: bool = False
) -> list[tuple[int, int, bytes | None, bytes]]:
    """All records of ``topic`` from the beginning as ``(partition, offset, key, value)``."""
    return _read(settings, topic, None, idle_timeout_s, max_wait_s, until_end)


def end_offsets(settings: Settings, topic: str, expected: int, max_wait_s: float = 120.0) -> dict[int, int]:
    """Per-partition end offsets once ``topic`` holds ``expected`` records, found by reading them; bounds a
    later job's read exactly. Counting records, not offsets: in a topic written with transactions every
    commit marker takes an offset too, so the log's end offset says nothing about how many records it holds."""
    records = _read(settings, topic, expected, idle_timeout_s=max_wait_s, max_wait_s=max_wait_s)
    if len(records) < expected:
        raise TimeoutError(f"{topic} holds {len(records)} records, expected {expected}")
    return ends_of(records)


def committed_offsets(settings: Settings, topic: str, group: str) -> dict[int, int]:
    """The offsets consumer group ``group`` committed on ``topic`` (a Flink job commits at each checkpoint)."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        group_id=group,
        enable_auto_commit=False,
        **_client_options(settings),
    )
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        committed = {p: consumer.committed(TopicPartition(topic, p)) for p in sorted(partitions)}
        return {p: o for p, o in committed.items() if o is not None}
    finally:
        consumer.close()


def ends_of(records: Iterable[tuple[int, int, bytes | None, bytes]], partitions: int = 0) -> dict[int, int]:
    """Per-partition end offsets (last offset + 1) of ``(partition, offset, key, value)`` records; partitions
    ``0 .. partitions-1`` without records get 0."""
    ends = dict.fromkeys(range(partitions), 0)
    for partition, offset, _, _ in records:
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    return ends


def _read(
    settings: Settings,
    topic: str,
    expected: int | None,
    idle_timeout_s: float,
    max_wait_s: float,
    until_end: bool = False,
) -> list[tuple[int, int, bytes | None, bytes]]:
    # With exactly-once delivery jobs write in transactions: read only what they committed.
    isolation = "read_committed" if settings.kafka.delivery_guarantee == "exactly-once" else "read_uncommitted"
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        enable_auto_commit=False,
        group_id=None,
        isolation_level=isolation,
        **_client_options(settings),
    )
    try:
        deadline = time.monotonic() + max_wait_s
        partitions = None
        while partitions is None and time.monotonic() < deadline:
            partitions = consumer.partitions_for_topic(topic)
            if partitions is None:
                time.sleep(0.2)
        if not partitions:
            return []
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        # read_committed: the last stable offsets (nothing past an open transaction); commit markers take
        # offsets too, and the consumer's position moves past them
        ends = {tp: end for tp, end in consumer.end_offsets(assigned).items() if end} if until_end else None
        consumer.seek_to_beginning()
        records: list[tuple[int, int, bytes | None, bytes]] = []
        last_new = time.monotonic()
        while time.monotonic() < deadline:
            if ends is not None and all(consumer.position(tp) >= end for tp, end in ends.items()):
                break
            batch = consumer.poll(timeout_ms=500)
            for polled in batch.values():
                records.extend((r.partition, r.offset, r.key, r.value) for r in polled)
            if batch:
                last_new = time.monotonic()
            if expected is not None and len(records) >= expected:
                break
            if time.monotonic() - last_new > idle_timeout_s:
                break
        return records
    finally:
        consumer.close()
