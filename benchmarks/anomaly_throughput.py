"""Anomaly job throughput: ``jobs/anomaly.py`` draining a pre-loaded features topic.

At 50,000 meters the preprocessing job emits 833 feature records/s (one per meter and minute); this is the
rate the anomaly job must keep up with. The benchmark pre-loads ``--households`` x ``--minutes`` synthetic
feature records (lognormal minute means, a spike now and then), runs the job bounded at the loaded offsets,
and reports records/s over the whole run (job start-up included). The same records through
``AnomalyDetector.update`` in one Python loop, in the same run, give the detector's own cost (the anchor:
one core, no Flink; the job cannot do much better per core).

Variants are settings overrides run one after the other on their own topics:

    python benchmarks/anomaly_throughput.py --households 20000 --minutes 4 \
        --variant process=jobs.anomaly.python_execution_mode=process --variant thread=jobs.anomaly.python_execution_mode=thread
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import orjson
from confluent_kafka import Producer

from gridflow import kafka_io
from gridflow.analytics.anomaly import AnomalyDetector, HouseholdState
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
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "linger.ms": 20,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 2_000_000,
        }
    )
    for i, (key, value) in enumerate(records):
        producer.produce(settings.topics.features, key=key.encode(), value=value)
        if i % 10_000 == 0:
            producer.poll(0)
    producer.flush()
    return kafka_io.end_offsets(settings, settings.topics.features, expected=len(records))


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


def run(settings, feature_ends: dict[int, int], overrides: list[str]) -> float:
    settings = settings.with_overrides(*overrides)
    t = settings.topics
    env = create_env(settings)
    anomaly.build(env, settings, stop_offsets={t.features: feature_ends})
    started = time.monotonic()
    env.execute("anomaly-throughput")
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--households", type=int, default=50_000)
    parser.add_argument("--minutes", type=int, default=12)
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
    with tempfile.TemporaryDirectory() as run_dir, EmbeddedStack(load_settings(), run_dir, mqtt=False) as stack:
        print(
            json.dumps(
                {
                    "records": len(records),
                    "households": args.households,
                    "detector_only_records_per_s": round(detector_loop(stack.settings, records)),
                }
            ),
            flush=True,
        )
        for name, overrides in variants.items():
            suffix = name or "default"
            settings = stack.settings.with_overrides(
                f"kafka.group_id_prefix=bench-{suffix}",
                *(f"topics.{topic}={value}.{suffix}" for topic, value in stack.settings.topics.model_dump().items()),
            )
            t = settings.topics
            kafka_io.create_topics(settings, [t.features, t.alerts, t.dead_letter])
            ends = preload(settings, records)
            elapsed = run(settings, ends, overrides)
            alerts = len(kafka_io.read_topic(settings, t.alerts, idle_timeout_s=5))
            print(
                json.dumps(
                    {
                        "variant": suffix,
                        "overrides": overrides,
                        "job_s": round(elapsed, 1),
                        "records_per_s_incl_startup": round(len(records) / elapsed),
                        "alerts": alerts,
                        "parallelism": settings.flink.parallelism_default,
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
