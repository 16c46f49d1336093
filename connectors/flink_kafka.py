"""Kafka sources and sinks for gridflow's DataStream jobs: JSON strings in, keyed JSON records out.

Sources start from the consumer group's committed offsets (falling back to the earliest offset for a new
group), never from "latest"; a bounded run stops at explicit per-partition offsets. Every record a job
writes is keyed by the household, market or cluster that orders it (:func:`sink_json`). Raw client
properties from ``kafka.client`` pass through to both.
"""
from __future__ import annotations

from pyflink.common import Types
from pyflink.common.serialization import SimpleStringSchema
from pyflink.datastream.connectors.kafka import (
    KafkaOffsetResetStrategy,
    KafkaOffsetsInitializer,
    KafkaSource,
    KafkaTopicPartition,
)

from gridflow.settings import Settings


def group_id(settings: Settings, job_name: str) -> str:
    return f"{settings.kafka.group_id_prefix}.{job_name}"


def json_source(settings: Settings, topic: str, job_name: str, stop_offsets: dict[int, int] | None = None) -> KafkaSource:
    """A source of UTF-8 strings from ``topic``, resuming at the job's committed group offsets.

    ``stop_offsets`` (partition -> offset, exclusive) makes the source bounded: the job finishes once
    every listed partition is read up to its offset.
    """
    builder = (
        KafkaSource.builder()
        .set_bootstrap_servers(settings.kafka.bootstrap_servers)
        .set_topics(topic)
        .set_group_id(group_id(settings, job_name))
        .set_starting_offsets(KafkaOffsetsInitializer.committed_offsets(KafkaOffsetResetStrategy.EARLIEST))
        .set_value_only_deserializer(SimpleStringSchema())
        .set_property("client.id.prefix", group_id(settings, job_name))
    )
    if stop_offsets is not None:
        builder.set_bounded(KafkaOffsetsInitializer.offsets(
            {KafkaTopicPartition(topic, partition): offset for partition, offset in stop_offsets.items()}))
    for key, value in consumer_properties(settings).items():
        builder.set_property(key, value)
    return builder.build()


def consumer_properties(settings: Settings) -> dict[str, str]:
    """Client properties of every gridflow consumer: ``kafka.client``, and with exactly-once delivery
    ``isolation.level=read_committed`` (a job reads only what upstream jobs committed with a checkpoint)."""
    properties = {"isolation.level": "read_committed"} if settings.kafka.delivery_guarantee == "exactly-once" else {}
    return {**properties, **settings.kafka.client}


def read_strings(env, settings: Settings, topic: str, job_name: str,
                 stop_offsets: dict[str, dict[int, int]] | None = None):
    """``topic`` as a DataStream of strings, without watermarks. ``stop_offsets`` maps topics to partition
    offsets: a listed topic is read up to them (bounded), an unlisted one (or ``None``) without end."""
    from pyflink.common import WatermarkStrategy

    stops = None if stop_offsets is None else stop_offsets.get(topic)
    return env.from_source(json_source(settings, topic, job_name, stops), WatermarkStrategy.no_watermarks(),
                           f"kafka:{topic}")


def event_time(stream, assigner):
    """Watermark strategy from the ``stream`` settings: bounded out-of-orderness, idle partitions released
    after ``idle_timeout_ms`` (0: never), timestamps from ``assigner``."""
    from pyflink.common import Duration, WatermarkStrategy

    watermarks = WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_millis(stream.out_of_orderness_ms))
    if stream.idle_timeout_ms:  # before the assigner: PyFlink's with_idleness drops a Python assigner
        watermarks = watermarks.with_idleness(Duration.of_millis(stream.idle_timeout_ms))
    return watermarks.with_timestamp_assigner(assigner)


def sink_json(stream, settings: Settings, topic: str, job_name: str, name: str | None = None) -> None:
    """Write ``stream`` (JSON strings) to ``topic``, every record keyed by
    :func:`gridflow.readings.record_key` (the household, market or cluster that orders it; the job's name
    for a record that has none), with the configured delivery guarantee.

    PyFlink's DataStream Kafka sink can only serialise a whole element as the key, so the records go out
    through a Flink SQL Kafka table with ``key.fields`` (the same sink as the preprocessing job's), attached
    to the DataStream job: one job, one ``env.execute``."""
    from pyflink.common import Row
    from pyflink.table import StreamTableEnvironment

    from gridflow.connectors.kafka_tables import keyed_sink_ddl
    from gridflow.readings import record_key

    env = stream.get_execution_environment()
    tables = getattr(env, "_gridflow_tables", None)
    if tables is None:
        tables = env._gridflow_tables = StreamTableEnvironment.create(env)
    table = f"gridflow_sink_{len(tables.list_tables())}"
    tables.execute_sql(keyed_sink_ddl(settings, table, topic, job_name))
    rows = stream.map(lambda payload: Row(record_key(payload) or job_name, payload),
                      output_type=Types.ROW_NAMED(["record_key", "payload"], [Types.STRING(), Types.STRING()]))
    rows.name(f"key {name or topic}")
    statements = tables.create_statement_set()
    statements.add_insert(table, tables.from_data_stream(rows))
    statements.attach_as_datastream()


def producer_properties(settings: Settings) -> dict[str, str]:
    """Client properties of every gridflow sink: with exactly-once delivery the transaction timeout from
    ``kafka.transaction_timeout_ms``, then ``kafka.client`` (which may override it)."""
    properties = ({"transaction.timeout.ms": str(settings.kafka.transaction_timeout_ms)}
                  if settings.kafka.delivery_guarantee == "exactly-once" else {})
    return {**properties, **settings.kafka.client}
