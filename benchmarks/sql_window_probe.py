"""Design probe for the preprocessing job: Flink SQL on the Java side, Kafka -> event-time window.

Drains N pre-loaded JSON readings from the embedded broker through Kafka source -> JSON decoding ->
watermarks -> 1-minute TUMBLE aggregate per household -> blackhole sink, parallelism 2, and reports
readings/s including job start. Two decodings: the ``json`` format (one parse per record) and the
``raw`` format with ``JSON_VALUE`` per field (a parse per field, but malformed records survive as
data so they can be dead-lettered with a reason).

    python benchmarks/sql_window_probe.py [--readings 1000000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from confluent_kafka import Producer

from gridflow import kafka_io
from gridflow.jars import connector_jar_urls
from gridflow.settings import load_settings
from gridflow.stack import EmbeddedStack

SOURCES = {
    "json": (
        "household_id STRING, ts_ms BIGINT, power_w DOUBLE, ts AS TO_TIMESTAMP_LTZ(ts_ms, 3)",
        "'format'='json'",
        "household_id AS hh, power_w AS pw, ts",
    ),
    "raw+JSON_VALUE": (
        "`payload` STRING, ts AS TO_TIMESTAMP_LTZ(CAST(JSON_VALUE(`payload`, '$.ts_ms') AS BIGINT), 3)",
        "'format'='raw'",
        "JSON_VALUE(`payload`, '$.household_id') AS hh, CAST(JSON_VALUE(`payload`, '$.power_w') AS DOUBLE) AS pw, ts",
    ),
}


def preload(settings, topic: str, readings: int) -> dict[int, int]:
    kafka_io.create_topics(settings, [topic], partitions=2)
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "linger.ms": 20,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 2_000_000,
        }
    )
    for i in range(readings):
        h = i % 5000
        producer.produce(
            topic,
            key=f"h-{h:05d}".encode(),
            value=json.dumps(
                {
                    "v": 1,
                    "household_id": f"h-{h:05d}",
                    "meter_id": f"m-{h:05d}",
                    "ts_ms": 1_768_435_200_000 + (i // 5000) * 10_000,
                    "power_w": 100.0 + i % 3000,
                    "voltage_v": 231.4,
                }
            ).encode(),
        )
        if i % 10_000 == 0:
            producer.poll(0)
    producer.flush()
    return kafka_io.end_offsets(settings, topic, expected=readings)


def run(settings, topic: str, ends: dict[int, int], variant: str) -> float:
    from pyflink.table import EnvironmentSettings, TableEnvironment

    columns, fmt, projection = SOURCES[variant]
    tenv = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    tenv.get_config().set("pipeline.jars", ";".join(connector_jar_urls(settings)))
    tenv.get_config().set("parallelism.default", "2")
    offsets = ";".join(f"partition:{p},offset:{o}" for p, o in sorted(ends.items()))
    tenv.execute_sql(f"""CREATE TABLE src ({columns}, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) WITH (
        'connector'='kafka', 'topic'='{topic}', 'properties.bootstrap.servers'='{settings.kafka.bootstrap_servers}',
        'properties.group.id'='probe-{variant}', 'scan.startup.mode'='group-offsets',
        'properties.auto.offset.reset'='earliest', 'scan.bounded.mode'='specific-offsets',
        'scan.bounded.specific-offsets'='{offsets}', {fmt})""")
    tenv.execute_sql(
        "CREATE TABLE sink (hh STRING, ws TIMESTAMP(3), n BIGINT, mean_w DOUBLE, peak_w DOUBLE) "
        "WITH ('connector'='blackhole')"
    )
    tenv.execute_sql(f"CREATE TEMPORARY VIEW parsed AS SELECT {projection} FROM src")
    started = time.monotonic()
    tenv.execute_sql(
        "INSERT INTO sink SELECT hh, window_start, COUNT(*), AVG(pw), MAX(pw) FROM TABLE(TUMBLE("
        "TABLE parsed, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY hh, window_start, window_end"
    ).wait()
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readings", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as run_dir, EmbeddedStack(load_settings(), run_dir, mqtt=False) as stack:
        ends = preload(stack.settings, "probe.readings", args.readings)
        for variant in SOURCES:
            elapsed = run(stack.settings, "probe.readings", ends, variant)
            print(
                json.dumps(
                    {
                        "variant": variant,
                        "readings": args.readings,
                        "seconds": round(elapsed, 1),
                        "readings_per_s": round(args.readings / elapsed),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
