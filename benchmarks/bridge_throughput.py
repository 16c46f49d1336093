"""MQTT -> Kafka bridge throughput on the embedded stack.

Method: the bridge process connects once (so the broker holds its persistent session) and stops;
publisher processes fill the broker with N readings; then the bridge process starts again and we time
how long it takes until Kafka acknowledged every reading (the bridge's own forwarded counter). This
measures the bridge alone, not the publishers. Run for one-reading messages (a meter publishing in
real time) and for batches (a meter publishing every 10 s with 1 s sampling, or catching up), for each
MQTT client of the bridge (``bridge.mqtt_client``) in the same run.

    python benchmarks/bridge_throughput.py [--readings 200000] [--batch 1 10] [--clients gmqtt paho] \
        [--transport tls tcp]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

from gridflow import kafka_io
from gridflow.mqtt_tls import client_context
from gridflow.settings import load_settings
from gridflow.stack import EmbeddedStack
from gridflow.stack.mqtt_auth import SIMULATOR_USER
from gridflow.stack.processes import free_port

START_MS = 1_768_435_200_000


def publish(args) -> None:
    mqtt_settings, password, worker, messages, batch = args
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{worker}", protocol=mqtt.MQTTv311)
    client.username_pw_set(SIMULATOR_USER, password)
    context = client_context(mqtt_settings)
    if context is not None:
        client.tls_set_context(context)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(mqtt_settings.host, mqtt_settings.port)
    client.loop_start()
    last = None
    for m in range(messages):
        h = (worker * 7919 + m) % 5000
        readings = [
            {
                "v": 1,
                "household_id": f"h-{h:05d}",
                "meter_id": f"m-{h:05d}",
                "ts_ms": START_MS + (m * batch + i) * 1000,
                "power_w": 100.0 + (m + i) % 3000,
                "voltage_v": 231.4,
                "current_a": 1.234,
                "energy_kwh": 1532.118,
            }
            for i in range(batch)
        ]
        payload = json.dumps(readings[0] if batch == 1 else readings).encode()
        last = client.publish(f"meters/h-{h:05d}/readings", payload, qos=1)
    last.wait_for_publish(600)
    client.loop_stop()


def forwarded(url: str) -> float:
    try:
        text = urllib.request.urlopen(url, timeout=2).read().decode()
    except OSError:
        return 0.0
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("gridflow_bridge_forwarded_total")
    )


def run_case(stack, readings: int, batch: int, publishers: int, client: str) -> dict:
    settings = stack.settings.with_overrides(
        f"topics.readings=bench.readings.b{batch}.{client}",
        f"topics.dead_letter=bench.dead.b{batch}.{client}",
        f"bridge.client_id=bench-bridge-b{batch}-{client}",
        f"bridge.mqtt_client={client}",
        "bridge.metrics_port=0",
    )
    kafka_io.create_topics(settings, [settings.topics.readings, settings.topics.dead_letter])
    metrics_port = free_port()
    settings = settings.with_overrides(f"bridge.metrics_port={metrics_port}")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as config:
        yaml.safe_dump(settings.model_dump(mode="json", by_alias=True), config)
    command = [sys.executable, "-m", "gridflow.cli", "bridge", "--no-downlink", "--config", config.name]
    url = f"http://127.0.0.1:{metrics_port}/metrics"

    bridge = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    bridge.stdout.readline()  # connected and subscribed: the session exists
    bridge.terminate()
    bridge.wait(30)

    messages = readings // batch
    per_worker = messages // publishers
    started = time.monotonic()
    with multiprocessing.Pool(publishers) as pool:
        pool.map(
            publish,
            [(settings.mqtt, settings.simulator.mqtt_password, w, per_worker, batch) for w in range(publishers)],
        )
    fill_s = time.monotonic() - started
    total = per_worker * publishers * batch

    bridge = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    bridge.stdout.readline()  # subscribed: from here on the bridge drains the backlog
    started = time.monotonic()
    cpu_before = _cpu_seconds(bridge.pid)
    while forwarded(url) < total:
        if time.monotonic() - started > 900:
            raise TimeoutError("bridge did not drain the backlog in 15 minutes")
        time.sleep(0.05)
    drain_s = time.monotonic() - started
    cpu_s = _cpu_seconds(bridge.pid) - cpu_before
    bridge.terminate()
    bridge.wait(60)
    os.unlink(config.name)
    return {
        "client": client,
        "batch": batch,
        "readings": total,
        "messages": total // batch,
        "publish_fill_s": round(fill_s, 1),
        "drain_s": round(drain_s, 2),
        "readings_per_s": round(total / drain_s),
        "messages_per_s": round(total / batch / drain_s),
        "bridge_cpu_s": round(cpu_s, 1),
    }


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readings", type=int, default=200_000)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--publishers", type=int, default=4)
    parser.add_argument("--clients", nargs="+", choices=["gmqtt", "paho"], default=["gmqtt", "paho"])
    parser.add_argument(
        "--transport", nargs="+", choices=["tls", "tcp"], default=["tls"], help="tls: the stack's default; tcp: plain"
    )
    args = parser.parse_args()
    for transport in args.transport:
        settings = load_settings().with_overrides(f"stack.mqtt_tls={str(transport == 'tls').lower()}")
        with tempfile.TemporaryDirectory() as run_dir:
            with EmbeddedStack(settings, run_dir) as stack:
                for batch in args.batch:
                    for client in args.clients:
                        case = run_case(stack, args.readings, batch, args.publishers, client)
                        print(json.dumps({"transport": transport, **case}), flush=True)


if __name__ == "__main__":
    main()
