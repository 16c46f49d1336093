"""Kafka sources and sinks for gridflow's DataStream jobs: contract-checked JSON records in, keyed JSON
records out.

Sources start from the consumer group's committed offsets (falling back to the earliest offset for a new
group), never from "latest"; a bounded run stops at explicit per-partition offsets. Every record a job
writes is keyed by the household, market or cluster that orders it (:func:`sink_json`). Raw client
properties from ``kafka.client`` pass through to both.
"""

from __future__ import annotations

from pyflink.common import Types

from gridflow.settings import Settings


def group_id(settings: Settings, job_name: str) -> str:
    return f"{settings.kafka.group_id_prefix}.{job_name}"


def consumer_properties(settings: Settings) -> dict[str, str]:
    """Client properties of every gridflow consumer: ``kafka.client``, and with exactly-once delivery
    ``isolation.level=read_committed`` (a job reads only what upstream jobs committed with a checkpoint)."""
    properties = {"isolation.level": "read_committed"} if settings.kafka.delivery_guarantee == "exactly-once" else {}
    return {**properties, **settings.kafka.client}


def read_contract(
    env,
    settings: Settings,
    contract,
    job_name: str,
    stop_offsets: dict[str, dict[int, int]] | None = None,
    event_time: tuple[str, int] | None = None,
):
    """The records of ``contract``'s topic that keep the contract, as JSON strings, and the ones that break
    it as dead letters naming the field and the reason: a ``(records, dead_letters)`` pair of DataStreams.

    Records are read with their Kafka key (through a Flink SQL Kafka table: PyFlink's DataStream source
    reads values only), so a record keyed as another household's is caught here too. ``stop_offsets`` maps
    topics to partition offsets (exclusive): a listed topic is read up to them (bounded), an unlisted one
    (or ``None``) without end.

    ``event_time = (field, offset_ms)``: each record's timestamp is its ``field`` plus ``offset_ms`` and
    the source emits watermarks (``stream.out_of_orderness_ms``; idle partitions released after
    ``stream.idle_timeout_ms``), generated per Kafka partition after every record: records of a partition the job reads behind
    the others are never late for that reason, so event-time results do not depend on how fast each
    partition happens to be read."""
    from gridflow.operators.contracts import REJECTED, AcceptRecords

    topic = getattr(settings.topics, contract.topic)
    rows = read_rows(env, settings, topic, job_name, stop_offsets, event_time, name=contract.name)
    accepted = (
        rows.process(AcceptRecords(contract.name, f"kafka:{topic}"), output_type=Types.STRING())
        .name(f"accept {contract.name} records")
        .uid(f"{job_name}-accept-{contract.name}")  # unique also where jobs share one environment
    )
    return accepted, accepted.get_side_output(REJECTED)


def read_rows(
    env,
    settings: Settings,
    topic: str,
    job_name: str,
    stop_offsets: dict[str, dict[int, int]] | None = None,
    event_time: tuple[str, int] | None = None,
    name: str = "records",
    time_within_chars: int | None = None,
):
    """The records of ``topic`` as ``Row(record_key, payload)`` (key and value unparsed), for a function that
    checks them itself; ``stop_offsets`` and ``event_time`` as for :func:`read_contract`,
    ``time_within_chars`` as for :func:`gridflow.connectors.kafka_tables.raw_source_ddl`."""
    from gridflow.connectors.kafka_tables import keyed_source_ddl, raw_source_ddl

    tables = _tables(env)
    table = f"gridflow_source_{name}_{len(tables.list_tables())}"
    stops = None if stop_offsets is None else stop_offsets.get(topic)
    if event_time is None:
        tables.execute_sql(keyed_source_ddl(settings, table, topic, job_name, stops))
    else:
        stream = settings.stream
        if stream.idle_timeout_ms:
            tables.get_config().set("table.exec.source.idle-timeout", f"{stream.idle_timeout_ms} ms")
        field, offset_ms = event_time
        ddl = raw_source_ddl(
            settings,
            table,
            topic,
            job_name,
            time_column="event_time",
            out_of_orderness_ms=stream.out_of_orderness_ms,
            max_future_ms=settings.readings.max_clock_skew_s * 1000,
            stop_offsets=stops,
            # after every record: the timers of these jobs (a silent meter, a day's end) see each watermark the
            # input reaches, also when a bounded input ends within one periodic interval (a replay, a restart)
            watermark_emit="on-event",
            time_field=field,
            time_offset_ms=offset_ms,
            time_within_chars=time_within_chars,
        )
        tables.execute_sql(ddl)
    return tables.to_data_stream(tables.from_path(table))


def _tables(env):
    """The StreamTableEnvironment of ``env`` (one per job, created on first use)."""
    from pyflink.table import StreamTableEnvironment

    tables = getattr(env, "_gridflow_tables", None)
    if tables is None:
        tables = env._gridflow_tables = StreamTableEnvironment.create(env)
    return tables


def sink_json(stream, settings: Settings, topic: str, job_name: str, name: str | None = None) -> None:
    """Write ``stream`` (JSON strings) to ``topic``, every record keyed by
    :func:`gridflow.contracts.record_key` (the household, market or cluster that orders it; the job's name
    for a record that has none), with the configured delivery guarantee.

    PyFlink's DataStream Kafka sink can only serialise a whole element as the key, so the records go out
    through a Flink SQL Kafka table with ``key.fields`` (the same sink as the preprocessing job's), attached
    to the DataStream job: one job, one ``env.execute``."""
    from pyflink.common import Row

    from gridflow.connectors.kafka_tables import keyed_sink_ddl
    from gridflow.contracts import record_key

    tables = _tables(stream.get_execution_environment())
    table = f"gridflow_sink_{len(tables.list_tables())}"
    tables.execute_sql(keyed_sink_ddl(settings, table, topic, job_name))
    rows = stream.map(
        lambda payload: Row(record_key(payload) or job_name, payload),
        output_type=Types.ROW_NAMED(["record_key", "payload"], [Types.STRING(), Types.STRING()]),
    )
    rows.name(f"key {name or topic}")
    statements = tables.create_statement_set()
    statements.add_insert(table, tables.from_data_stream(rows))
    statements.attach_as_datastream()


def producer_properties(settings: Settings) -> dict[str, str]:
    """Client properties of every gridflow sink: with exactly-once delivery the transaction timeout from
    ``kafka.transaction_timeout_ms``, then ``kafka.client`` (which may override it)."""
    properties = (
        {"transaction.timeout.ms": str(settings.kafka.transaction_timeout_ms)}
        if settings.kafka.delivery_guarantee == "exactly-once"
        else {}
    )
    return {**properties, **settings.kafka.client}
