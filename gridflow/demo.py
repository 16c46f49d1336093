"""The end-to-end demo on the embedded stack.

    simulated meters (firmware code, real load shapes, labelled faults)
      -> mosquitto (per-device ACL) -> MQTT->Kafka bridge -> Kafka
      -> PyFlink reading-summary job (mini-cluster) -> per-household summaries in Kafka

Deterministic: a fixed seed and a fixed evening give the same summaries on every run.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from gridflow import kafka_io
from gridflow.settings import Settings
from gridflow.stack import EmbeddedStack

EVENING_START_MS = 1_768_496_400_000  # 2026-01-15 17:00 UTC
# What a misbehaving meter might send; the bridge dead-letters each with the reason.
MALFORMED = [
    ("meters/h-00000/readings", b"not json at all"),
    ("meters/h-00001/readings", b'{"household_id": "h-00001", "meter_id": "m-1", "ts_ms": 1768496400000}'),
    ("meters/h-00002/readings", b'{"household_id": "h-00002", "meter_id": "m-2", "ts_ms": 1768496400000, "power_w": -9e9}'),
    ("meters/h-00003/readings", b'{"household_id": "h-00004", "meter_id": "m-4", "ts_ms": 1768496400000, "power_w": 5}'),
    ("meters/h-00005/readings", b'{"household_id": "h-00005", "meter_id": "m-5", "ts_ms": "yesterday", "power_w": 5}'),
]


def run_demo(settings: Settings, households: int = 12, minutes: int = 30, keep_stack: bool = False,
             out_dir: Path | None = None) -> dict:
    from gridflow.connectors.mqtt_kafka_bridge import MqttKafkaBridge
    from gridflow.devices.load_shapes import LoadShapeLibrary
    from gridflow.devices.simulator import FleetSimulator
    from gridflow.jobs import reading_summary
    from gridflow.runtime import create_env

    started = time.monotonic()
    stack = EmbeddedStack(settings)
    print(f"starting the embedded stack in {stack.run_dir} ...", flush=True)
    stack.up()
    try:
        live = stack.settings.with_overrides("simulator.speed=100000", "simulator.fault_rate_per_day=20",
                                             "bridge.metrics_port=0")
        topics = live.topics
        kafka_io.create_topics(live, [topics.readings, topics.summaries, topics.dead_letter])

        bridge = MqttKafkaBridge(live)
        bridge.start()
        stop = threading.Event()
        bridge_thread = threading.Thread(target=bridge.run, args=(stop,), daemon=True)
        bridge_thread.start()
        out_dir = out_dir or stack.run_dir / "demo"
        out_dir.mkdir(parents=True, exist_ok=True)
        try:
            library = LoadShapeLibrary.load(live)
            simulator = FleetSimulator(live, households, minutes * 60, library, start_ms=EVENING_START_MS,
                                       faults_path=out_dir / "faults.jsonl")
            simulator.connect()
            print(f"{households} simulated meters publishing {minutes} minutes of readings over MQTT "
                  f"(bridge metrics on http://{bridge.metrics_address[0]}:{bridge.metrics_address[1]}/metrics) ...",
                  flush=True)
            fleet = simulator.run(progress=False)
            misbehaving = simulator.connections[0].client_for("demo-misbehaving-meter")
            for topic, payload in MALFORMED:
                misbehaving.publish(topic, payload, qos=1)
            for connection in simulator.connections:
                connection.wait_until_sent()
            simulator.close()
            print("  " + fleet.line(), flush=True)
            _wait_for_bridge(bridge, fleet.published, len(MALFORMED))
            ends = kafka_io.end_offsets(live, topics.readings, expected=fleet.published)
        finally:
            stop.set()
            bridge_thread.join(timeout=60)

        print("running the reading-summary PyFlink job on the local mini-cluster ...", flush=True)
        env = create_env(live)
        reading_summary.build(env, live, stop_offsets=ends)
        env.execute(reading_summary.NAME)
        summaries = [json.loads(v) for v in kafka_io.read_topic(live, topics.summaries, idle_timeout_s=3)]
        dead = [json.loads(v) for v in kafka_io.read_topic(live, topics.dead_letter, idle_timeout_s=3)]
        summaries.sort(key=lambda s: (s["household_id"], s["window_start_ms"]))
        _write_jsonl(out_dir / "summaries.jsonl", summaries)
        _write_jsonl(out_dir / "dead-letter.jsonl", sorted(dead, key=lambda d: d["payload"]))
        result = {
            "meters": households, "readings_published": fleet.published, "malformed_published": len(MALFORMED),
            "labelled_faults": fleet.faults, "readings_summarised": sum(s["readings"] for s in summaries),
            "summaries": len(summaries), "dead_lettered": len(dead),
            "households": len({s["household_id"] for s in summaries}),
            "energy_kwh": round(sum(s["energy_kwh"] for s in summaries), 6),
        }
        _report(result, summaries, dead, live, out_dir, keep_stack, stack, time.monotonic() - started)
        return result
    finally:
        if not keep_stack:
            stack.down()


def _wait_for_bridge(bridge, readings: int, dead_letters: int, timeout_s: float = 120.0) -> None:
    """Until the bridge forwarded every reading and dead-lettered every malformed message."""
    metrics = bridge.metrics
    deadline = time.monotonic() + timeout_s
    while (metrics.forwarded < readings or sum(metrics.dead_lettered.values()) < dead_letters or metrics.inflight):
        if time.monotonic() > deadline:
            raise TimeoutError(f"bridge forwarded {metrics.forwarded}/{readings} readings and "
                               f"{sum(metrics.dead_lettered.values())}/{dead_letters} dead letters in {timeout_s} s")
        time.sleep(0.05)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row, sort_keys=True) + "\n" for row in rows))


def _report(result, summaries, dead, settings, out_dir, keep_stack, stack, elapsed_s) -> None:
    print("\nresult:", json.dumps(result))
    print("\nfirst summaries (household, window start UTC, readings, mean W, peak W, kWh):")
    for s in summaries[:5]:
        print(f"  {s['household_id']}  {time.strftime('%H:%M', time.gmtime(s['window_start_ms'] / 1000))}  "
              f"{s['readings']:3d}  {s['mean_power_w']:8.1f}  {s['peak_power_w']:8.1f}  {s['energy_kwh']:.4f}")
    print("\ndead letters (field: reason):")
    for d in dead:
        print(f"  {d['field'] or '(payload)'}: {d['reason'][:100]}")
    ok = (result["readings_summarised"] == result["readings_published"]
          and result["dead_lettered"] == result["malformed_published"])
    print(f"\nevery reading accounted for: {'yes' if ok else 'NO'}  ({elapsed_s:.0f} s)")
    print("where to look:")
    print(f"  summaries     {out_dir / 'summaries.jsonl'}  (Kafka topic '{settings.topics.summaries}')")
    print(f"  dead letters  {out_dir / 'dead-letter.jsonl'}  (Kafka topic '{settings.topics.dead_letter}')")
    print(f"  fault labels  {out_dir / 'faults.jsonl'}  (ground truth of the injected meter faults)")
    print(f"  logs          {stack.run_dir / 'logs'}")
    if keep_stack:
        print(f"  the stack is still running: Kafka at {settings.kafka.bootstrap_servers}, MQTT at "
              f"{settings.mqtt.host}:{settings.mqtt.port}; settings overlay {stack.run_dir / 'settings.yaml'}; "
              f"stop it with 'gridflow stack down'")
    if not ok:
        raise SystemExit("the demo lost readings: see the files above")
