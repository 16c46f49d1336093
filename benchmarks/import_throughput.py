"""Throughput of ``gridflow import readings`` from Parquet and CSV into the readings topic (embedded Kafka).

A synthetic export (``--meters`` meters x ``--steps`` 15-minute steps, local Amsterdam times across the
autumn clock change, power in kW) is written once as Parquet and as CSV; each is imported (with
``--again``, so every run sends every row), and the anchor in the same run is the plain kafka-python
producer (``gridflow.kafka_io.produce``, the project's other bulk path) sending the same, already encoded
readings. Reported: rows, seconds and readings/s of each, and whether every record arrived.

    python benchmarks/import_throughput.py [--meters 2000 --steps 500]
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from gridflow import kafka_io
from gridflow.importing.readings import import_readings
from gridflow.settings import load_settings
from gridflow.stack import EmbeddedStack


def export(meters: int, steps: int, folder: Path) -> tuple[Path, Path, int]:
    rng = np.random.default_rng(7)
    start = pd.Timestamp("2025-10-25 12:00")
    local = pd.date_range(start, periods=steps, freq="15min")  # wall-clock times, the repeated hour included once
    households = np.repeat([f"h-{i:06d}" for i in range(meters)], steps)
    table = pa.table(
        {
            "household_id": households,
            "meter_id": np.char.add(households.astype(str), "-1"),
            "time": pa.array(np.tile(local.to_numpy(dtype="datetime64[ms]"), meters), pa.timestamp("ms")),
            "power": np.round(rng.gamma(2.0, 0.25, meters * steps), 3),
        }
    )
    parquet, csv = folder / "export.parquet", folder / "export.csv"
    pq.write_table(table, parquet)
    table.to_pandas().to_csv(csv, index=False)
    return parquet, csv, table.num_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meters", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedStack(load_settings(), tmp, mqtt=False) as stack:
        parquet, csv, rows = export(args.meters, args.steps, Path(tmp))
        results = []
        for name, path in (("import parquet", parquet), ("import csv", csv)):
            settings = stack.settings.with_overrides(
                f"topics.readings=bench.{name.split()[1]}",
                "import_readings.power_column=power",
                "import_readings.power_unit=kW",
                "import_readings.timezone=Europe/Amsterdam",
            )
            started = time.perf_counter()
            summary = import_readings(settings, [path], again=True, progress=False, out=io.StringIO())[0]
            seconds = time.perf_counter() - started
            arrived = sum(kafka_io.end_offsets(settings, settings.topics.readings, summary.records).values())
            results.append((name, summary.records, seconds, arrived == rows))
        # the anchor: kafka-python sending the same readings, encoded beforehand (encoding not timed)
        frame = pq.read_table(parquet).to_pandas()
        payloads = [
            (h, orjson.dumps({"v": 2, "household_id": h, "meter_id": m, "ts_ms": 0, "power_w": p * 1000}))
            for h, m, p in zip(frame["household_id"], frame["meter_id"], frame["power"])
        ]
        settings = stack.settings.with_overrides("topics.readings=bench.anchor")
        kafka_io.create_topics(settings, [settings.topics.readings])
        started = time.perf_counter()
        ends = kafka_io.produce(settings, settings.topics.readings, payloads)
        seconds = time.perf_counter() - started
        results.append(("anchor: kafka-python produce", len(payloads), seconds, sum(ends.values()) == rows))
    for name, count, seconds, complete in results:
        print(
            json.dumps(
                {
                    "run": name,
                    "readings": count,
                    "seconds": round(seconds, 2),
                    "readings_per_s": round(count / seconds),
                    "all_arrived": complete,
                }
            )
        )


if __name__ == "__main__":
    main()
