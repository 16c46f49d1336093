"""The fleet simulator drives the real firmware over real MQTT, through the bridge into Kafka."""

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from gridflow import kafka_io
from gridflow.devices.faults import read_ground_truth
from gridflow.devices.load_shapes import LoadShapeLibrary
from gridflow.devices.simulator import FleetSimulator, phase_offsets_ms
from gridflow.readings import parse_reading
from gridflow.stack.mqtt_auth import BRIDGE_USER

from mqtt_helpers import stack_connect
from test_bridge import bridge_settings, running_bridge

pytestmark = pytest.mark.integration
START_MS = 1_768_464_000_000  # 2026-01-15 08:00 UTC


@pytest.fixture(scope="module")
def library(base_settings):
    return LoadShapeLibrary.load(base_settings, ["citylearn"])


def run_through_bridge(settings, simulator):
    """Run ``simulator`` with a bridge running; its summary and the readings it put into Kafka."""
    with running_bridge(settings):
        try:
            summary = simulator.run(progress=False)
            records = kafka_io.read_records(settings, settings.topics.readings, expected=summary.published)
            if len(set(records)) < len(records):  # copies (at-least-once) took the place of records still to come
                records = kafka_io.read_records(settings, settings.topics.readings)
            return summary, records
        finally:
            simulator.close()


def test_simulated_meters_replay_their_series_through_mqtt_and_the_bridge_into_kafka(stack, library, tmp_path):
    settings = bridge_settings(stack).with_overrides(
        "simulator.speed=100000", "simulator.fault_rate_per_day=40", "simulator.connections=3"
    )
    faults_path = tmp_path / "faults.jsonl"
    simulator = FleetSimulator(
        settings, meters=24, duration_s=1800, library=library, start_ms=START_MS, faults_path=faults_path
    )
    summary, records = run_through_bridge(settings, simulator)

    assert summary.meters == 24 and summary.samples_per_meter == 180
    assert summary.published == summary.sampled == int(simulator.keep.sum()), "every non-dropout sample published"
    assert summary.dropouts == int((~simulator.keep).sum())
    # QoS 1 is at-least-once: a connection lost under load (a stalled broker holds the PUBACKs back) has the
    # broker send again what Kafka may already hold; such a record must be an exact copy, and none missing
    assert len(set(records)) == summary.published <= len(records)
    got = {}
    for key, value in dict.fromkeys(records):
        reading = parse_reading(value)
        assert key.decode() == reading.household_id
        got[(reading.household_id, reading.ts_ms)] = reading.power_w
    index = {h: i for i, h in enumerate(simulator.household_ids)}
    expected = {
        (h, int(ts)): round(float(simulator.power_w[index[h], k]), 1)
        for h in simulator.household_ids
        for k, ts in enumerate(simulator.ts_ms)
        if simulator.keep[index[h], k]
    }
    assert got == expected, "Kafka holds exactly the replayed (faulted) series"

    faults = read_ground_truth(faults_path)
    assert faults == simulator.faults and len(faults) >= 5
    kinds = {fault.kind for fault in faults}
    assert {"spike", "stuck"} & kinds


def test_phases_deal_meters_evenly_over_the_interval():
    phases = phase_offsets_ms(1003, 10_000, 100)
    counts = np.bincount(phases // 100)
    assert len(counts) == 100 and counts.min() == 10 and counts.max() == 11
    assert phases.min() == 0 and phases.max() == 9_900
    assert phase_offsets_ms(3, 10_000, 100).tolist() == [0, 3_333, 6_666], "fewer meters than slots"
    assert phase_offsets_ms(5, 10_000, 1).tolist() == [0] * 5


@pytest.mark.parametrize("spread", [True, False])
def test_real_time_meters_publish_at_their_own_phase(stack, library, spread):
    # real time (no start given, speed 1): 1 s samples, so the run takes ~3 s of wall clock
    settings = bridge_settings(stack).with_overrides(
        "simulator.sample_interval_s=1",
        "simulator.publish_interval_s=1",
        "simulator.fault_rate_per_day=0",
        f"simulator.spread_publish={str(spread).lower()}",
        f"simulator.client_id_prefix=sim-phase-{spread}",
    )
    prefix = f"ph{int(spread)}-"
    simulator = FleetSimulator(settings, meters=7, duration_s=3, library=library, prefix=prefix)
    assert simulator.realtime
    summary, records = run_through_bridge(settings, simulator)
    stamps = {}
    for _, value in records:
        reading = parse_reading(value)
        if reading.household_id.startswith(prefix):
            stamps.setdefault(reading.household_id, []).append(reading.ts_ms - simulator.start_ms)
    assert len(stamps) == 7 and all(len(v) == 3 for v in stamps.values())
    for i, household in enumerate(simulator.household_ids):
        phase = (i * 1000 // 7) if spread else 0
        assert sorted(stamps[household]) == [phase, 1000 + phase, 2000 + phase], household


def test_meters_in_the_simulator_receive_their_commands(stack, library):
    settings = stack.settings.with_overrides(
        "simulator.speed=100000", "simulator.fault_rate_per_day=0", "simulator.client_id_prefix=sim-cmd"
    )
    simulator = FleetSimulator(settings, meters=3, duration_s=30, library=library, start_ms=START_MS, prefix="cmd-")
    simulator.connect()
    try:
        simulator.run(progress=False)  # meters connect and subscribe to their command topics
        bridge = stack_connect(stack, BRIDGE_USER, stack.info.mqtt_accounts[BRIDGE_USER])
        command = {"household_id": "cmd-00001", "text": "shift the washing machine to 02:00"}
        bridge.publish("meters/cmd-00001/commands", json.dumps(command).encode(), qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 10
        while simulator.meters[1].last_command is None and time.monotonic() < deadline:
            simulator.step_all(int(simulator.ts_ms[-1]) + 10_000)
            time.sleep(0.05)
        assert simulator.meters[1].last_command == command
        assert simulator.meters[0].last_command is None and simulator.meters[2].last_command is None
        bridge.loop_stop()
    finally:
        simulator.close()


def test_simulate_command_prints_a_summary_and_writes_ground_truth(stack, tmp_path):
    config = tmp_path / "stack.yaml"
    config.write_text((stack.run_dir / "settings.yaml").read_text())
    faults = tmp_path / "faults.jsonl"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gridflow.cli",
            "simulate",
            "--meters",
            "10",
            "--duration-s",
            "600",
            "--sources",
            "citylearn",
            "--faults-out",
            str(faults),
            "--config",
            str(config),
            "--set",
            "simulator.speed=100000",
            "--set",
            "simulator.fault_rate_per_day=100",
            "--set",
            "simulator.client_id_prefix=sim-cli",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "simulated 10 meters x 60 samples" in result.stdout
    assert "readings published" in result.stdout and faults.exists()
    assert "simulating" in result.stderr  # the progress bar
