"""Throughput of the history writer (``gridflow history write``) on feature records (embedded Kafka).

``--records`` feature records as the preprocessing job writes them (about 600 bytes each, keyed by household)
are pre-loaded into the features topic; the writer drains them into Parquet (``--until-caught-up``), and a
DuckDB query counts them back. The 50,000-meter scale run (``scale_pipeline.py``) produces 833 feature
records/s; the writer must keep up with that and with the other topics it keeps.

    python benchmarks/history_writer.py [--records 500000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import orjson
from confluent_kafka import Producer

from gridflow import kafka_io
from gridflow.history.query import query
from gridflow.history.writer import HistoryWriter
from gridflow.settings import load_settings
from gridflow.stack import EmbeddedStack


def feature(i: int) -> dict:
    household = f"h-{i % 50_000:05d}"
    start = 1_765_000_000_000 + 60_000 * (i // 50_000)
    return {
        "v": 1,
        "household_id": household,
        "meter_id": f"{household}-1",
        "window_start_ms": start,
        "window_end_ms": start + 60_000,
        "n_readings": 6,
        "n_missing": 0,
        "n_interpolated": 0,
        "n_duplicates": 0,
        "coverage": 1.0,
        "mean_w": 412.5 + i % 97,
        "min_w": 380.1,
        "peak_w": 455.0,
        "std_w": 21.3,
        "raw_max_w": 455.0,
        "energy_wh": 6.875,
        "outlier_values": [],
        "stuck_run": 0,
        "grid_w": [400.0, 410.0, 420.0, 415.0, 412.0, 418.0],
        "utc_offset_minutes": 60,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=500_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedStack(load_settings(), tmp, mqtt=False) as stack:
        settings = stack.settings.with_overrides(
            f"history.path={Path(tmp) / 'history'}", "history.topics=[features]", "topics.features=bench.features"
        )
        kafka_io.create_topics(settings, [settings.topics.features])
        producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers, **settings.kafka.client})
        for i in range(args.records):
            record = feature(i)
            while True:
                try:
                    producer.produce(settings.topics.features, orjson.dumps(record), record["household_id"].encode())
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.flush(120)
        started = time.perf_counter()
        stats = HistoryWriter(settings).run(until_caught_up=True, idle_s=5.0)
        seconds = time.perf_counter() - started
        counted = query(settings, "SELECT count(*) FROM features")[1][0][0]
    print(
        json.dumps(
            {
                "records": stats.records,
                "files": stats.files,
                "seconds": round(seconds, 2),
                "records_per_s": round(stats.records / seconds),
                "counted_by_duckdb": counted,
                "x_the_50000_meter_feature_rate": round(stats.records / seconds / 833, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
