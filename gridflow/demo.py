"""The end-to-end demo on the embedded stack: readings -> Kafka -> PyFlink job -> summaries in Kafka.

Deterministic: the same readings (a fixed seed and a fixed day) give the same summaries on every run.
"""
from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path

from gridflow import kafka_io
from gridflow.settings import Settings
from gridflow.stack import EmbeddedStack

DAY_START_MS = 1_768_435_200_000  # 2026-01-15 00:00 UTC
MALFORMED = [
    b"not json at all",
    b'{"household_id": "h-001", "meter_id": "m-001", "ts_ms": 1768435200000}',
    b'{"household_id": "h-002", "meter_id": "m-002", "ts_ms": 1768435200000, "power_w": -99999999}',
    b'{"household_id": "", "meter_id": "m-003", "ts_ms": 1768435200000, "power_w": 10}',
    b'{"household_id": "h-004", "meter_id": "m-004", "ts_ms": "yesterday", "power_w": 10}',
    b'[1, 2, 3]',
]


def demo_readings(households: int, minutes: int, interval_s: int, seed: int = 7) -> list[tuple[str, str]]:
    """Readings of an evening (17:00 onwards) with a per-household base load, cooking peaks and noise."""
    rng = random.Random(seed)
    records = []
    for h in range(households):
        household_id = f"h-{h:03d}"
        base_w = rng.uniform(150, 450)
        peak_w = rng.uniform(1200, 3500)
        peak_at_min = rng.uniform(10, minutes - 10)
        for step in range(minutes * 60 // interval_s):
            ts_ms = DAY_START_MS + 17 * 3_600_000 + step * interval_s * 1000
            minute = step * interval_s / 60
            power_w = base_w + peak_w * math.exp(-((minute - peak_at_min) / 6) ** 2) + rng.gauss(0, 15)
            reading = {"v": 1, "household_id": household_id, "meter_id": f"m-{h:03d}", "ts_ms": ts_ms,
                       "power_w": round(max(power_w, 0.0), 1), "voltage_v": round(rng.gauss(231, 1.5), 1)}
            records.append((ts_ms, household_id, json.dumps(reading)))
    records.sort(key=lambda record: record[0])  # meters publish concurrently: the stream is in time order
    return [(household_id, payload) for _, household_id, payload in records]


def run_demo(settings: Settings, households: int = 12, minutes: int = 30, keep_stack: bool = False,
             out_dir: Path | None = None) -> dict:
    from gridflow.jobs import reading_summary
    from gridflow.runtime import create_env

    started = time.monotonic()
    stack = EmbeddedStack(settings, flink=False)
    print(f"starting the embedded stack in {stack.run_dir} ...", flush=True)
    stack.up()
    try:
        live = stack.settings
        topics = live.topics
        kafka_io.create_topics(live, [topics.readings, topics.summaries, topics.dead_letter])
        readings = demo_readings(households, minutes, interval_s=10)
        ends = kafka_io.produce(live, topics.readings, readings + [(None, bad) for bad in MALFORMED])
        print(f"produced {len(readings)} readings and {len(MALFORMED)} malformed payloads to '{topics.readings}' "
              f"on {live.kafka.bootstrap_servers}", flush=True)
        print("running the reading-summary PyFlink job on the local mini-cluster ...", flush=True)
        env = create_env(live)
        reading_summary.build(env, live, stop_offsets=ends)
        env.execute(reading_summary.NAME)
        summaries = [json.loads(v) for v in kafka_io.read_topic(live, topics.summaries, idle_timeout_s=3)]
        dead = [json.loads(v) for v in kafka_io.read_topic(live, topics.dead_letter, idle_timeout_s=3)]
        out_dir = out_dir or stack.run_dir / "demo"
        out_dir.mkdir(parents=True, exist_ok=True)
        summaries.sort(key=lambda s: (s["household_id"], s["window_start_ms"]))
        _write_jsonl(out_dir / "summaries.jsonl", summaries)
        _write_jsonl(out_dir / "dead-letter.jsonl", sorted(dead, key=lambda d: d["payload"]))
        result = {
            "readings_in": len(readings), "malformed_in": len(MALFORMED),
            "readings_summarised": sum(s["readings"] for s in summaries), "summaries": len(summaries),
            "dead_lettered": len(dead), "households": len({s["household_id"] for s in summaries}),
            "energy_kwh": round(sum(s["energy_kwh"] for s in summaries), 6),
        }
        _report(result, summaries, dead, live, out_dir, keep_stack, stack, time.monotonic() - started)
        return result
    finally:
        if not keep_stack:
            stack.down()


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row, sort_keys=True) + "\n" for row in rows))


def _report(result, summaries, dead, settings, out_dir, keep_stack, stack, elapsed_s) -> None:
    print("\nresult:", json.dumps(result))
    print("\nfirst summaries (household, window start, readings, mean W, peak W, kWh):")
    for s in summaries[:5]:
        print(f"  {s['household_id']}  {time.strftime('%H:%M', time.gmtime(s['window_start_ms'] / 1000))}  "
              f"{s['readings']:3d}  {s['mean_power_w']:8.1f}  {s['peak_power_w']:8.1f}  {s['energy_kwh']:.4f}")
    print("\ndead letters (field: reason):")
    for d in dead:
        print(f"  {d['field'] or '(payload)'}: {d['reason'][:90]}")
    ok = result["readings_summarised"] == result["readings_in"] and result["dead_lettered"] == result["malformed_in"]
    print(f"\nevery reading accounted for: {'yes' if ok else 'NO'}  ({elapsed_s:.0f} s)")
    print("where to look:")
    print(f"  summaries   {out_dir / 'summaries.jsonl'}  (Kafka topic '{settings.topics.summaries}')")
    print(f"  dead letters {out_dir / 'dead-letter.jsonl'}  (Kafka topic '{settings.topics.dead_letter}')")
    print(f"  logs        {stack.run_dir / 'logs'}")
    if keep_stack:
        print(f"  the stack is still running: Kafka at {settings.kafka.bootstrap_servers}; "
              f"settings overlay {stack.run_dir / 'settings.yaml'}; stop it with 'gridflow stack down'")
    if not ok:
        raise SystemExit("the demo lost readings: see the files above")
