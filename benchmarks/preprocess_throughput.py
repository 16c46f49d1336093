"""Preprocessing job throughput and latency on the embedded broker and the local mini-cluster.

Drain: pre-loads a topic with simulator readings (real load shapes, labelled faults; by default 5,000
meters x 400 samples = 2 M readings), runs the job bounded at the loaded offsets, and reports readings/s
over the whole run (job start-up included) and over the steady middle of the run (from the feature
records' emit stamps).

Live: a producer process publishes readings with event time = wall clock at a fixed rate (by default
200,000 meters every 10 s = 20,000 readings/s) while the job runs; latency is ``emitted_ms - window_end_ms``
of each feature record (the window's end in event time to the record leaving the job's Python function;
the watermark delay ``stream.out_of_orderness_ms`` is part of it). Percentiles are over the windows the
watermark closed (the last window of the bounded run closes only when its input ends).

    python benchmarks/preprocess_throughput.py [--meters 5000 --samples 404] [--skip-drain --live-meters 200000 --live-s 240]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time

import numpy as np
import orjson
from confluent_kafka import Producer

from gridflow import kafka_io
from gridflow.devices.load_shapes import LoadShapeLibrary
from gridflow.devices.simulator import FleetSimulator
from gridflow.jobs import preprocess
from gridflow.settings import load_settings
from gridflow.stack import EmbeddedStack

START_MS = 1_768_435_200_000


def _producer(settings) -> Producer:
    return Producer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "linger.ms": 20,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 2_000_000,
            "batch.size": 1_000_000,
        }
    )


def _payload(household: str, ts_ms: int, power_w: float) -> bytes:
    return orjson.dumps(
        {
            "v": 1,
            "household_id": household,
            "meter_id": f"m-{household}",
            "ts_ms": ts_ms,
            "power_w": round(float(power_w), 2),
            "voltage_v": 230.0,
        }
    )


def preload(settings, library, meters: int, samples: int) -> tuple[int, dict[int, int]]:
    sim = FleetSimulator(settings, meters, samples * settings.simulator.sample_interval_s, library, start_ms=START_MS)
    producer, topic, sent = _producer(settings), settings.topics.readings, 0
    for k in range(sim.n):
        ts = int(sim.ts_ms[k])
        for i, household in enumerate(sim.household_ids):
            if sim.keep[i, k]:
                producer.produce(topic, key=household.encode(), value=_payload(household, ts, sim.power_w[i, k]))
                sent += 1
        producer.poll(0)
    producer.flush()
    return sent, kafka_io.end_offsets(settings, topic, expected=sent)


def run_job(settings, stop_offsets) -> float:
    started = time.monotonic()
    preprocess.build(preprocess.create_table_env(settings), settings, stop_offsets).execute().wait()
    return time.monotonic() - started


def features(settings) -> list[dict]:
    return [orjson.loads(v) for v in kafka_io.read_topic(settings, settings.topics.features, idle_timeout_s=10)]


def steady_rate(records: list[dict]) -> float:
    """Readings/s between the 10th and 90th percentile of emit times (start-up and tail excluded)."""
    emitted = np.array([r["emitted_ms"] for r in records])
    used = np.array([r["n_readings"] + r["n_duplicates"] for r in records])
    low, high = np.percentile(emitted, [10, 90])
    inside = (emitted >= low) & (emitted <= high)
    return float(used[inside].sum() / max((high - low) / 1000, 1e-3))


def _produce_live(
    bootstrap: str,
    topic: str,
    partitions: int,
    households: list[str],
    power: np.ndarray,
    ticks: int,
    interval_s: float,
    started_wall: float,
    out,
) -> None:
    """Producer process: every ``interval_s`` one reading per household, event time = wall clock (its own
    process, so it does not compete for the GIL with the Python functions of the local mini-cluster)."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 2_000_000,
            "batch.size": 1_000_000,
        }
    )
    behind = 0.0
    for k in range(ticks):
        due = started_wall + k * interval_s
        wait = due - time.time()
        if wait > 0:
            time.sleep(wait)
        else:
            behind = max(behind, -wait)
        now_ms = int(time.time() * 1000)
        for i, household in enumerate(households):
            producer.produce(
                topic,
                partition=i % partitions,
                key=household.encode(),
                value=_payload(household, now_ms, float(power[i % power.shape[0], k % power.shape[1]])),
            )
            if i % 20_000 == 0:
                producer.poll(0)
    producer.flush()
    out.put({"produce_s": time.time() - started_wall, "max_behind_s": round(behind, 2)})


def live(settings, library, meters: int, seconds: float, interval_s: float) -> dict:
    """Readings with event time = now, ``meters`` every ``interval_s``, for ``seconds``; job runs alongside."""
    import multiprocessing

    topic, partitions = settings.topics.readings, settings.kafka.partitions
    ticks = int(seconds / interval_s)
    sim = FleetSimulator(
        settings.with_overrides("simulator.fault_rate_per_day=0"),
        min(meters, 2000),
        ticks * settings.simulator.sample_interval_s,
        library,
        start_ms=START_MS,
    )
    households = [f"l-{i:06d}" for i in range(meters)]
    counts = np.zeros(partitions, dtype=np.int64)
    for i in range(meters):
        counts[i % partitions] += ticks
    offsets = kafka_io.end_offsets(settings, topic, expected=0)
    stop = {p: offsets.get(p, 0) + int(counts[p]) for p in range(partitions)}
    job = threading.Thread(target=run_job, args=(settings, stop), daemon=True)
    job.start()
    time.sleep(20)  # job start-up, so the first windows are not waiting for the job
    # start on a window boundary + 1 s, so every window but the last is full
    window_s = settings.preprocess.window_s
    started_wall = (int(time.time()) // window_s + 1) * window_s + 1.0
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    producer = context.Process(
        target=_produce_live,
        args=(
            settings.kafka.bootstrap_servers,
            topic,
            partitions,
            households,
            sim.power_w,
            ticks,
            interval_s,
            started_wall,
            results,
        ),
    )
    producer.start()
    produced = results.get()
    producer.join()
    job.join()
    records = features(settings)
    window_ms = window_s * 1000
    latency = np.array([r["emitted_ms"] - r["window_end_ms"] for r in records])
    # the last window closes only when the bounded input ends: report the windows closed by the watermark apart
    last_end = max(r["window_end_ms"] for r in records)
    closed = np.array([r["emitted_ms"] - r["window_end_ms"] for r in records if r["window_end_ms"] < last_end])
    used = sum(r["n_readings"] + r["n_duplicates"] for r in records)
    return {
        "meters": meters,
        "interval_s": interval_s,
        "readings": int(counts.sum()),
        "readings_in_features": used,
        "offered_readings_per_s": round(counts.sum() / produced["produce_s"]),
        "producer_max_behind_s": produced["max_behind_s"],
        "windows": len(records),
        "latency_ms_p50": int(np.percentile(closed, 50)),
        "latency_ms_p95": int(np.percentile(closed, 95)),
        "latency_ms_p99": int(np.percentile(closed, 99)),
        "latency_ms_max": int(closed.max()),
        "latency_ms_p50_all_windows": int(np.percentile(latency, 50)),
        "window_ms": window_ms,
        "watermark_delay_ms": settings.stream.out_of_orderness_ms,
    }


def drain(settings, library, args) -> None:
    started = time.monotonic()
    sent, ends = preload(settings, library, args.meters, args.samples)
    preload_s = time.monotonic() - started
    elapsed = run_job(settings, ends)
    records = features(settings)
    print(
        json.dumps(
            {
                "phase": "drain",
                "readings": sent,
                "preload_s": round(preload_s, 1),
                "job_s": round(elapsed, 1),
                "readings_per_s_incl_startup": round(sent / elapsed),
                "readings_per_s_steady": round(steady_rate(records)),
                "feature_records": len(records),
                "readings_in_features": sum(r["n_readings"] + r["n_duplicates"] for r in records),
                "parallelism": settings.flink.parallelism_default,
                "python_mode": settings.jobs.preprocess.python_execution_mode,
            }
        ),
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meters", type=int, default=5000)
    parser.add_argument("--samples", type=int, default=404, help="per meter; 5000 x 404 gives >= 2 M readings")
    parser.add_argument("--live-meters", type=int, default=200_000)
    parser.add_argument("--live-s", type=float, default=240.0)
    parser.add_argument(
        "--live-interval-s",
        type=float,
        default=10.0,
        help="the simulator's meters report every 10 s (6 readings per 1-minute window)",
    )
    parser.add_argument("--skip-live", action="store_true")
    parser.add_argument("--skip-drain", action="store_true")
    args = parser.parse_args()
    library = LoadShapeLibrary.load(load_settings())
    with tempfile.TemporaryDirectory() as run_dir, EmbeddedStack(load_settings(), run_dir, mqtt=False) as stack:
        settings = stack.settings.with_overrides("kafka.group_id_prefix=bench-drain")
        topics = settings.topics
        kafka_io.create_topics(settings, [topics.readings, topics.features, topics.profiles, topics.dead_letter])
        if not args.skip_drain:
            drain(settings, library, args)
        if not args.skip_live:
            suffix = "live"
            live_settings = stack.settings.with_overrides(
                f"kafka.group_id_prefix=bench-{suffix}",
                *(f"topics.{name}={value}.{suffix}" for name, value in stack.settings.topics.model_dump().items()),
            )
            t = live_settings.topics
            kafka_io.create_topics(live_settings, [t.readings, t.features, t.profiles, t.dead_letter])
            print(
                json.dumps(
                    {
                        "phase": "live",
                        **live(live_settings, library, args.live_meters, args.live_s, args.live_interval_s),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
