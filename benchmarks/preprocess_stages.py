"""Where the preprocessing job spends its time: the job's own SQL cut at each stage, each a separate bounded
job on the same pre-loaded readings (embedded broker, local mini-cluster), readings/s including start-up.

    python benchmarks/preprocess_stages.py [--meters 2500 --samples 200]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

from pyflink.table.udf import udtf

from gridflow import kafka_io
from gridflow.devices.load_shapes import LoadShapeLibrary
from gridflow.jobs import preprocess
from gridflow.operators import preprocess as ops
from gridflow.settings import load_settings
from gridflow.stack import EmbeddedStack
from preprocess_throughput import preload

STAGES = [
    ("kafka raw source", "INSERT INTO bh SELECT `payload`, `payload` FROM readings", "process"),
    ("+ validation", "INSERT INTO bh SELECT household_id, meter_id FROM checked WHERE problem IS NULL", "process"),
    ("+ window ARRAY_AGG", "INSERT INTO bh SELECT household_id, CAST(CARDINALITY(ts_list) AS STRING) FROM meter_windows",
     "process"),
    ("+ trivial Python table function", "INSERT INTO bh SELECT c.record_key, c.payload FROM meter_windows AS w, "
     "LATERAL TABLE(trivial_windows(w.household_id, w.meter_id, 0, w.ts_list, w.power_list)) AS c(kind, record_key, "
     "payload, start_ms, mean_w)", "process"),
    ("+ cleaning and features (blackhole)", "INSERT INTO bh SELECT record_key, payload FROM cleaned WHERE kind = 'features'",
     "process"),
    ("+ keyed Kafka sink", "INSERT INTO features_out SELECT record_key, payload FROM cleaned WHERE kind = 'features'",
     "process"),
    ("whole job", None, "process"),
    ("whole job, thread mode", None, "thread"),
]


@udtf(result_types=ops.ROW_TYPES)
def trivial_windows(household_id, meter_id, start_ms, ts_list, power_list):
    yield "features", household_id, "{}", start_ms, 1.0


def run(settings, ends, index: int, sql: str | None, mode: str) -> float:
    s = settings.with_overrides(f"kafka.group_id_prefix=stage-{index}", f"preprocess.python_execution_mode={mode}")
    tenv = preprocess.create_table_env(s)
    statements = preprocess.build(tenv, s, ends)
    tenv.create_temporary_function("trivial_windows", trivial_windows)
    tenv.execute_sql("CREATE TABLE bh (a STRING, b STRING) WITH ('connector'='blackhole')")
    started = time.monotonic()
    (statements.execute() if sql is None else tenv.execute_sql(sql)).wait()
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meters", type=int, default=2500)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    library = LoadShapeLibrary.load(load_settings())
    with tempfile.TemporaryDirectory() as run_dir, EmbeddedStack(load_settings(), run_dir, mqtt=False) as stack:
        settings = stack.settings
        t = settings.topics
        kafka_io.create_topics(settings, [t.readings, t.features, t.profiles, t.dead_letter])
        sent, ends = preload(settings, library, args.meters, args.samples)
        for index, (name, sql, mode) in enumerate(STAGES):
            elapsed = run(settings, ends, index, sql, mode)
            print(json.dumps({"stage": name, "python_mode": mode, "readings": sent, "seconds": round(elapsed, 1),
                              "readings_per_s": round(sent / elapsed)}), flush=True)


if __name__ == "__main__":
    main()
