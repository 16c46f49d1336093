"""Kafka tables for Flink SQL jobs: a raw-payload source with event time, and a keyed raw sink.

The same rules as the DataStream factory in ``flink_kafka.py``: sources resume at the job's committed
group offsets (earliest for a new group), bounded runs stop at explicit offsets (never "latest"), raw
client properties from ``kafka.client`` pass through, and the sink's delivery guarantee is configured.
Sink records are keyed (``key.fields``), so one household's records stay in order on one partition.
"""

from __future__ import annotations

from collections.abc import Mapping

from gridflow.connectors.flink_kafka import consumer_properties, group_id, producer_properties
from gridflow.settings import Settings


# the record's key bytes in column record_key, its value bytes in payload, both unparsed
_RAW_KEY_AND_VALUE = {
    "key.format": "raw",
    "key.fields": "record_key",
    "value.format": "raw",
    "value.fields-include": "EXCEPT_KEY",
}


def _keyed_table(table: str, options: Mapping[str, object]) -> str:
    """``CREATE TABLE`` of ``(record_key STRING, payload STRING)`` with ``options``."""
    return f"""CREATE TABLE {table} (
  `record_key` STRING,
  `payload` STRING
) WITH (
  {_options(options)}
)"""


def _literal(value) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _options(options: Mapping[str, object]) -> str:
    return ",\n  ".join(f"{_literal(k)} = {_literal(v)}" for k, v in options.items())


def raw_source_ddl(
    settings: Settings,
    table: str,
    topic: str,
    job_name: str,
    *,
    time_column: str,
    out_of_orderness_ms: int,
    max_future_ms: int,
    stop_offsets: dict[int, int] | None = None,
    watermark_emit: str = "on-periodic",
    time_field: str = "ts_ms",
    time_offset_ms: int = 0,
    span_end_before: bool = False,
    time_within_chars: int | None = None,
) -> str:
    """``CREATE TABLE`` of a topic as ``payload STRING`` (the record value, unparsed) and ``record_key``
    (the record's Kafka key, NULL when it has none) plus the computed event-time column ``time_column``
    (``time_field`` of the JSON plus ``time_offset_ms``; 0 when unreadable or more than ``max_future_ms``
    ahead of the clock, so a malformed record never moves the watermark) with a bounded out-of-orderness
    watermark. ``span_end_before``: a reading that stands for the span ending at its ``ts_ms`` (an interval
    or register reading: its payload names ``interval_s`` or has no ``power_w``) gets the event time 1 ms
    earlier, so it lands in the window (and the day) its span ends in, not the next one. The source
    generates the watermark per Kafka partition and takes the minimum: a partition read ahead of the others
    never makes their records late. ``time_within_chars``: the producers write ``time_field`` as one of the
    first so many characters of the payload, where a pattern finds it without parsing the rest (records of
    hundreds of kilobytes, such as feature batches: ``JSON_VALUE`` parsed each of them whole).
    """
    options = {
        **_source_options(settings, topic, job_name, stop_offsets),
        **_RAW_KEY_AND_VALUE,
        "value.raw.charset": "UTF-8",
        "scan.watermark.emit.strategy": watermark_emit,
    }
    seconds = f"{out_of_orderness_ms // 1000}.{out_of_orderness_ms % 1000:03d}"
    if time_within_chars is None:
        ts_ms = f"TRY_CAST(JSON_VALUE(`payload`, '$.{time_field}') AS BIGINT)"
    else:
        prefix = f"SUBSTRING(`payload`, 1, {time_within_chars})"
        ts_ms = f"""TRY_CAST(REGEXP_EXTRACT({prefix}, '"{time_field}": *([0-9]+)', 1) AS BIGINT)"""
    if time_offset_ms:
        ts_ms = f"({ts_ms} + {time_offset_ms})"
    shifted = ts_ms
    if span_end_before:
        # a substring test, not a parse: the event time only places the record, the checks decide what it is
        shifted = (
            f"{ts_ms} - CASE WHEN POSITION('\"interval_s\"' IN `payload`) > 0 "
            f"OR POSITION('\"power_w\"' IN `payload`) = 0 THEN 1 ELSE 0 END"
        )
    return f"""CREATE TABLE {table} (
  `record_key` STRING,
  `payload` STRING,
  `{time_column}` AS TO_TIMESTAMP_LTZ(CASE WHEN {ts_ms} <= UNIX_TIMESTAMP() * 1000 + {max_future_ms}
                                          THEN {shifted} ELSE 0 END, 3),
  WATERMARK FOR `{time_column}` AS `{time_column}` - INTERVAL '{seconds}' SECOND
) WITH (
  {_options(options)}
)"""


def keyed_source_ddl(
    settings: Settings, table: str, topic: str, job_name: str, stop_offsets: dict[int, int] | None = None
) -> str:
    """``CREATE TABLE`` of a topic as ``(record_key STRING, payload STRING)``: each record's key and value,
    unparsed (a null key reads as NULL), resuming at the job's committed group offsets."""
    options = {**_source_options(settings, topic, job_name, stop_offsets), **_RAW_KEY_AND_VALUE}
    return _keyed_table(table, options)


def _source_options(settings: Settings, topic: str, job_name: str, stop_offsets: dict[int, int] | None) -> dict:
    options = {
        "connector": "kafka",
        "topic": topic,
        "properties.bootstrap.servers": settings.kafka.bootstrap_servers,
        "properties.group.id": group_id(settings, job_name),
        "properties.client.id.prefix": group_id(settings, job_name),
        "scan.startup.mode": "group-offsets",
        "properties.auto.offset.reset": "earliest",
        **{f"properties.{key}": value for key, value in consumer_properties(settings).items()},
    }
    if stop_offsets is not None:
        options["scan.bounded.mode"] = "specific-offsets"
        options["scan.bounded.specific-offsets"] = ";".join(
            f"partition:{p},offset:{o}" for p, o in sorted(stop_offsets.items())
        )
    return options


def keyed_sink_ddl(settings: Settings, table: str, topic: str, job_name: str) -> str:
    """``CREATE TABLE`` of ``(record_key STRING, payload STRING)`` written as key and value bytes."""
    guarantee = settings.kafka.delivery_guarantee
    options = {
        "connector": "kafka",
        "topic": topic,
        "properties.bootstrap.servers": settings.kafka.bootstrap_servers,
        **_RAW_KEY_AND_VALUE,
        "sink.delivery-guarantee": guarantee,
        # feature records are large and many: batch and compress (kafka.client overrides either)
        "properties.compression.type": "lz4",
        "properties.linger.ms": "50",
        "properties.batch.size": "262144",
        **{f"properties.{key}": value for key, value in producer_properties(settings).items()},
    }
    if guarantee == "exactly-once":
        options["sink.transactional-id-prefix"] = f"{group_id(settings, job_name)}.{topic}"
    return _keyed_table(table, options)
