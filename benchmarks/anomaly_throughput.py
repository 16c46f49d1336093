"""Anomaly job throughput: ``jobs/anomaly.py`` draining a pre-loaded feature-batch topic.

At 50,000 meters the preprocessing job emits 833 feature records/s (one per meter and minute), all of a
minute at once when its windows close: the anomaly job must work through a minute's records in well under a
second for alerts to leave within the latency targets. The benchmark makes ``--households`` x ``--minutes``
synthetic feature records (lognormal minute means, a spike now and then), groups them into feature batches
as the preprocessing job does (``--buckets``, ``gridflow.feature_batches``), pre-loads them, runs the job
bounded at the loaded offsets, and reports feature records/s over the whole run (job start-up included) and
after start-up (the time of a job over one minute of a few meters, run just before in the same JVM,
subtracted).
Its alerts are checked against the scalar reference detector (``AnomalyDetector``) over the same records.

Anchors in the same run: the scalar detector and the batch detector in one Python loop each (one core, no
Flink), and with ``--old-clone DIR`` the previous anomaly job (one Python call per feature record, on the
features topic) run by that clone's own copy of this benchmark, before the new job.

Variants are settings overrides run one after the other on their own topics:

    python benchmarks/anomaly_throughput.py --households 50000 --minutes 8 --buckets 256 \
        --variant thread=jobs.anomaly.python_execution_mode=thread --old-clone /tmp/anomaly-old
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
from confluent_kafka import Producer

from gridflow import kafka_io
from gridflow.analytics.anomaly import AnomalyDetector, HouseholdState
from gridflow.analytics.anomaly_batch import BatchDetector, MeterTable
from gridflow.feature_batches import batches, decode_batch
from gridflow.jobs import anomaly
from gridflow.runtime import create_env
from gridflow.settings import load_settings
from gridflow.stack import EmbeddedStack

START_MS = 1_768_435_200_000
MINUTE_MS = 60_000


def feature_records(households: int, minutes: int, seed: int = 3) -> list[tuple[str, bytes]]:
    """Minute feature records in time order (all households' minute k before minute k + 1)."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(150, 900, households)
    means = level[:, None] * rng.lognormal(0.0, 0.15, (households, minutes))
    spikes = rng.random((households, minutes)) < 0.002
    out = []
    for k in range(minutes):
        start = START_MS + k * MINUTE_MS
        for h in range(households):
            mean = float(round(means[h, k], 2))
            raw_max = mean * (8.0 if spikes[h, k] else 1.05)
            household = f"h-{h:06d}"
            out.append(
                (
                    household,
                    orjson.dumps(
                        {
                            "v": 1,
                            "household_id": household,
                            "meter_id": f"m-{household}",
                            "window_start_ms": start,
                            "window_end_ms": start + MINUTE_MS,
                            "n_readings": 6,
                            "n_duplicates": 0,
                            "n_missing": 0,
                            "n_interpolated": 0,
                            "n_outliers": int(spikes[h, k]),
                            "coverage": 1.0,
                            "energy_wh": round(mean / 60, 3),
                            "mean_w": mean,
                            "peak_w": round(mean * 1.04, 2),
                            "min_w": round(mean * 0.97, 2),
                            "std_w": round(mean * 0.02, 2),
                            "load_factor": 0.96,
                            "peak_share": 0.0,
                            "raw_max_w": round(raw_max, 2),
                            "stuck_run": 1,
                            "grid_w": [mean] * 6,
                            "outlier_values": [round(raw_max, 2)] if spikes[h, k] else [],
                            "emitted_ms": start + MINUTE_MS + 500,
                        }
                    ),
                )
            )
    return out


def preload(settings, records) -> dict[int, int]:
    topic = settings.topics.feature_batches
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "linger.ms": 20,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 2_000_000,
            "message.max.bytes": 10_000_000,
        }
    )
    for i, (key, value) in enumerate(records):
        producer.produce(topic, key=key.encode(), value=value.encode())
        if i % 1_000 == 0:
            producer.poll(0)
    producer.flush()
    return kafka_io.end_offsets(settings, topic, expected=len(records))


def detector_loop(settings, records) -> float:
    """Records/s of ``AnomalyDetector.update`` alone (parse + state round trip as the operator does it)."""
    detector, states = AnomalyDetector(settings.anomaly), {}
    started = time.perf_counter()
    for key, value in records:
        stored = states.get(key)
        state = HouseholdState() if stored is None else HouseholdState.from_dict(stored)
        detector.update(state, orjson.loads(value))
        states[key] = state.to_dict()
    return len(records) / (time.perf_counter() - started)


def batch_detector_loop(settings, feature_batches) -> float:
    """Feature records/s of the batch detector alone: each batch decoded under its contract, its bucket's
    table from and back to bytes, ``BatchDetector.update`` (as the operator does it)."""
    detector, tables, n = BatchDetector(settings.anomaly), {}, 0
    started = time.perf_counter()
    for key, payload in feature_batches:
        features, _ = decode_batch(payload, key, "bench")
        stored = tables.get(key)
        table = detector.new_table() if stored is None else MeterTable.from_bytes(stored)
        detector.update(table, features)
        tables[key] = table.to_bytes()
        n += len(features)
    return n / (time.perf_counter() - started)


def old_job(clone: Path, households: int, minutes: int) -> list[dict]:
    """The previous job's figures, from the old clone's own benchmark (its own venv and embedded stack)."""
    command = [str(clone / ".venv/bin/python"), "benchmarks/anomaly_throughput.py", "--households", str(households)]
    command += ["--minutes", str(minutes), "--variant", "thread=jobs.anomaly.python_execution_mode=thread"]
    env = {"PATH": f"{clone / '.venv/bin'}:/usr/bin:/bin", "HOME": str(Path.home())}
    done = subprocess.run(command, cwd=clone, env=env, capture_output=True, text=True, check=True)
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def reference_alerts(settings, records) -> list[str]:
    alerts = AnomalyDetector(settings.anomaly).run(orjson.loads(value) for _, value in records)
    return sorted(json.dumps(a, sort_keys=True) for a in alerts)


def run(settings, feature_ends: dict[int, int], overrides: list[str]) -> float:
    settings = settings.with_overrides(*overrides)
    t = settings.topics
    env = create_env(settings)
    anomaly.build(env, settings, stop_offsets={t.feature_batches: feature_ends})
    started = time.monotonic()
    env.execute("anomaly-throughput")
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--households", type=int, default=50_000)
    parser.add_argument("--minutes", type=int, default=12)
    parser.add_argument("--buckets", type=int, default=256, help="preprocess.feature_batch_buckets")
    parser.add_argument("--old-clone", type=Path, help="a clone (set up) of the commit with the per-record job")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME=key=value[,key=value...] (settings overrides); default: the shipped settings",
    )
    args = parser.parse_args()
    variants = {}
    for spec in args.variant or ["default="]:
        name, _, rest = spec.partition("=")
        variants[name] = [o for o in rest.split(",") if o]
    records = feature_records(args.households, args.minutes)
    feature_batches = batches((orjson.loads(value) for _, value in records), args.buckets)
    if args.old_clone:
        for line in old_job(args.old_clone, args.households, args.minutes):
            print(json.dumps({"old_job": line}), flush=True)
    with tempfile.TemporaryDirectory() as run_dir, EmbeddedStack(load_settings(), run_dir, mqtt=False) as stack:
        base = stack.settings.with_overrides(f"preprocess.feature_batch_buckets={args.buckets}")
        print(
            json.dumps(
                {
                    "records": len(records),
                    "households": args.households,
                    "batches": len(feature_batches),
                    "scalar_detector_only_records_per_s": round(detector_loop(base, records)),
                    "batch_detector_only_records_per_s": round(batch_detector_loop(base, feature_batches)),
                }
            ),
            flush=True,
        )
        expected = reference_alerts(base, records)
        # a job over one minute of a few meters first: its time is the job's fixed cost (graph, Python workers)
        # in this JVM, subtracted for the rate after start-up
        tiny = batches((orjson.loads(value) for _, value in records[: args.buckets]), args.buckets)
        for name, overrides in variants.items():
            suffix = name or "default"
            elapsed = {}
            for part, loaded in (("startup", tiny), ("run", feature_batches)):
                settings = base.with_overrides(
                    f"kafka.group_id_prefix=bench-{suffix}-{part}",
                    *(f"topics.{topic}={value}.{suffix}.{part}" for topic, value in base.topics.model_dump().items()),
                )
                t = settings.topics
                kafka_io.create_topics(settings, [t.feature_batches, t.alerts, t.dead_letter])
                elapsed[part] = run(settings, preload(settings, loaded), overrides)
            alerts = sorted(
                json.dumps(json.loads(a), sort_keys=True)
                for a in kafka_io.read_topic(settings, t.alerts, idle_timeout_s=5)
            )
            print(
                json.dumps(
                    {
                        "variant": suffix,
                        "overrides": overrides,
                        "job_s": round(elapsed["run"], 1),
                        "startup_job_s": round(elapsed["startup"], 1),
                        "records_per_s_incl_startup": round(len(records) / elapsed["run"]),
                        "records_per_s_after_startup": round(len(records) / (elapsed["run"] - elapsed["startup"])),
                        "alerts": len(alerts),
                        "alerts_equal_scalar_reference": alerts == expected,
                        "parallelism": settings.flink.parallelism_default,
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
