"""The broker side of security on the real embedded mosquitto: TLS with a certificate check, meters'
own accounts (removal disconnects at once, rotation never locks a meter out nor loses a reading),
floods of bad passwords, oversized packets and user names that would reach into topics."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import paho.mqtt.client as mqtt
import pytest

from gridflow.devices.firmware.meter import Meter
from gridflow.devices.umqtt_paho import MQTTClient
from gridflow.mqtt_tls import client_context
from gridflow.stack import StackError
from gridflow.stack.mqtt_auth import BRIDGE_USER, SIMULATOR_USER
from gridflow.stack.tls import ensure_tls

from mqtt_helpers import Collector, connect, stack_connect

pytestmark = pytest.mark.integration


def bridge_view(stack, topic: str = "meters/+/readings") -> tuple[mqtt.Client, Collector]:
    client = stack_connect(stack, BRIDGE_USER, stack.info.mqtt_accounts[BRIDGE_USER])
    return client, Collector(client, topic)


def watched(stack, user: str, password: str) -> tuple[mqtt.Client, threading.Event]:
    """A connected client and an event set when the broker drops it (no automatic reconnect)."""
    dropped = threading.Event()
    client = stack_connect(stack, user, password)
    client.reconnect_delay_set(3600, 3600)
    client.on_disconnect = lambda *args: dropped.set()
    return client, dropped


def gridflow_meter(stack, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gridflow.cli", "meter", *args, "--run-dir", str(stack.run_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_stack_listens_with_tls_only_and_meters_check_its_certificate(stack, tmp_path):
    config = (stack.run_dir / "mosquitto" / "mosquitto.conf").read_text()
    assert config.count("listener ") == 1 and "certfile" in config and "tls_version tlsv1.2" in config
    assert stack.settings.mqtt.tls and stack.settings.mqtt.ca_file == stack.info.mqtt_ca_file
    stack.add_meter_accounts({"h-tls": "pw-tls-0123456789"})
    meter = stack_connect(stack, "h-tls", "pw-tls-0123456789")
    assert meter.is_connected()
    meter.loop_stop()
    meter.disconnect()
    host, port = stack.info.mqtt_host, stack.info.mqtt_port
    impostor_ca = ensure_tls(tmp_path / "impostor", host).ca_cert
    with pytest.raises(ssl.SSLCertVerificationError):  # a broker signed by another CA is not trusted
        connect(host, port, "h-tls", "pw-tls-0123456789", ca_file=str(impostor_ca))
    context = ssl.create_default_context(cafile=stack.info.mqtt_ca_file)
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch|doesn't match"):
        with socket.create_connection((host, port), timeout=5) as raw:
            context.wrap_socket(raw, server_hostname="mqtt.evil.example")  # the certificate names the stack
    connect_packet = bytes.fromhex("101800044d5154540402003c000c706c61696e2d636c69656e74")  # MQTT 3.1.1 CONNECT
    with socket.create_connection((host, port), timeout=5) as plain:
        plain.sendall(connect_packet)
        try:
            answer = plain.recv(16)
        except ConnectionResetError:
            answer = b""
    assert not answer.startswith(b"\x20"), "a plain-TCP client must never get a CONNACK from the TLS listener"


def test_a_removed_meter_is_disconnected_at_once_and_cannot_log_in_again(stack):
    stack.add_meter_accounts({"h-rm": "pw-rm-0123456789", "h-stay": "pw-stay-0123456789"})
    bridge, readings = bridge_view(stack)
    leaving, left = watched(stack, "h-rm", "pw-rm-0123456789")
    staying, stay_dropped = watched(stack, "h-stay", "pw-stay-0123456789")
    removed = gridflow_meter(stack, "remove", "h-rm")
    assert removed.returncode == 0, removed.stderr
    assert left.wait(10), "the removed meter must be disconnected"
    with pytest.raises(ConnectionRefusedError):
        stack_connect(stack, "h-rm", "pw-rm-0123456789")
    staying.publish("meters/h-stay/readings", b"still here", qos=1).wait_for_publish(5)
    assert readings.wait_for(1) == [("meters/h-stay/readings", b"still here")] and not stay_dropped.is_set()
    assert "h-rm" not in gridflow_meter(stack, "list").stdout.split()
    assert gridflow_meter(stack, "remove", "h-rm").returncode != 0, "removing an unknown meter must say so"
    for client in (bridge, leaving, staying):
        client.loop_stop()


def test_a_flood_of_bad_passwords_is_refused_while_meters_keep_publishing(stack):
    stack.add_meter_accounts({"h-flood": "pw-flood-0123456789"})
    bridge, readings = bridge_view(stack, "meters/h-flood/readings")
    meter = stack_connect(stack, "h-flood", "pw-flood-0123456789")
    refused = []

    def guess(n: int) -> None:
        # The flood loads the machine on purpose (eight clients' TLS handshakes in one Python process, next to
        # whatever else the machine runs): an attacker may wait, but every guess must end in a refusal.
        try:
            stack_connect(stack, "h-flood", f"guess-{n}", timeout_s=60).loop_stop()
        except ConnectionRefusedError:
            refused.append(n)

    def publish_all() -> None:
        for i in range(100):
            meter.publish("meters/h-flood/readings", f"r{i}".encode(), qos=1).wait_for_publish(10)

    publisher = threading.Thread(target=publish_all)
    publisher.start()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(guess, range(200)))
    publisher.join(60)
    assert len(refused) == 200, "every wrong password must be refused"
    assert [payload for _, payload in readings.wait_for(100)] == [f"r{i}".encode() for i in range(100)]
    assert meter.is_connected() and stack_connect(stack, "h-flood", "pw-flood-0123456789").is_connected()
    for client in (bridge, meter):
        client.loop_stop()


def test_an_oversized_packet_disconnects_its_sender_and_never_reaches_the_bridge(stack):
    stack.add_meter_accounts({"h-big": "pw-big-0123456789"})
    bridge, readings = bridge_view(stack, "meters/h-big/readings")
    meter, dropped = watched(stack, "h-big", "pw-big-0123456789")
    meter.publish("meters/h-big/readings", b"[" + b"1," * 200_000 + b"1]", qos=1)
    assert dropped.wait(10), "a packet over stack.mqtt_max_packet_bytes must cost the sender its connection"
    again = stack_connect(stack, "h-big", "pw-big-0123456789")
    again.publish("meters/h-big/readings", b"small", qos=1).wait_for_publish(5)
    assert readings.wait_for(1) == [("meters/h-big/readings", b"small")]
    for client in (bridge, meter, again):
        client.loop_stop()


@pytest.mark.parametrize("user", ["h+", "h#", "h/x", "..", "-rf", "hh-bravо", "", "h x"])
def test_user_names_that_would_reach_into_topics_are_refused(stack, user):
    with pytest.raises(StackError, match="MQTT user names must be"):
        stack.add_meter_accounts({user: "pw-0123456789abcdef"})


def test_a_topic_path_trick_reaches_no_other_households_topic(stack):
    stack.add_meter_accounts({"h-path": "pw-path-0123456789"})
    bridge, readings = bridge_view(stack, "meters/#")
    meter = stack_connect(stack, "h-path", "pw-path-0123456789")
    for topic in ("meters/h-path/../h-victim/readings", "meters/h-path/readings/../../h-victim/readings"):
        meter.publish(topic, b"forged", qos=1).wait_for_publish(5)
    meter.publish("meters/h-path/readings", b"genuine", qos=1).wait_for_publish(5)
    assert readings.wait_for(1) == [("meters/h-path/readings", b"genuine")]
    assert readings.messages == [("meters/h-path/readings", b"genuine")]
    for client in (bridge, meter):
        client.loop_stop()


class RealClock:
    def now_ms(self) -> int:
        return int(time.time() * 1000)


def test_rotation_gives_a_running_meter_a_new_password_without_losing_a_reading(stack):
    old = "pw-rot-old-0123456789"
    stack.add_meter_accounts({"h-rot": old})
    bridge, readings = bridge_view(stack, "meters/h-rot/readings")
    saved: list[tuple[str, bool]] = []
    client = MQTTClient(
        b"m-rot", stack.info.mqtt_host, stack.info.mqtt_port, "h-rot", old, ssl=client_context(stack.settings.mqtt)
    )
    config = {
        "household_id": "h-rot",
        "meter_id": "m-rot",
        "sample_interval_ms": 100,
        "publish_interval_ms": 300,
        "backoff_min_ms": 200,
        "backoff_jitter": 0.0,
    }
    meter = Meter(config, FixedDriver(), client, clock=RealClock(), save_password=lambda p, q: saved.append((p, q)))
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            meter.step(RealClock().now_ms())
            time.sleep(0.02)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not meter.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)
        rotated = gridflow_meter(stack, "rotate", "h-rot", "--timeout-s", "20")
        assert rotated.returncode == 0, rotated.stderr
        assert "confirmed" in rotated.stdout
        deadline = time.monotonic() + 20
        while meter.stats["password_changes"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert meter.stats["password_changes"] == 1 and meter.stats["reconnects"] >= 1
        time.sleep(1.0)
    finally:
        stop.set()
        thread.join(30)
    meter.publish_pending(RealClock().now_ms())  # the final flush
    new = saved[-1][0]
    assert saved == [(new, True), (new, False)] and new != old
    assert new not in rotated.stdout + rotated.stderr, "the new password must not be printed"
    sent = meter.stats["sampled"] - meter.stats["dropped"]
    arrived = readings.wait_for(1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        stamps = {r["ts_ms"] for _, payload in readings.messages for r in as_list(json.loads(payload))}
        if len(stamps) >= sent:
            break
        time.sleep(0.2)
    assert arrived and len(stamps) == sent == meter.stats["sampled"], "no reading may be lost over the rotation"
    with pytest.raises(ConnectionRefusedError):
        stack_connect(stack, "h-rot", old)
    assert stack_connect(stack, "h-rot", new).is_connected()
    bridge.loop_stop()


def test_rotating_a_meter_that_does_not_answer_keeps_its_password(stack):
    stack.add_meter_accounts({"h-offline": "pw-offline-0123456789"})
    rotated = gridflow_meter(stack, "rotate", "h-offline", "--timeout-s", "2")
    assert rotated.returncode != 0 and "did not confirm" in rotated.stderr and "unchanged" in rotated.stderr
    assert stack_connect(stack, "h-offline", "pw-offline-0123456789").is_connected()


def as_list(value):
    return value if isinstance(value, list) else [value]


class FixedDriver:
    def read(self) -> dict:
        return {"power_w": 420.0, "voltage_v": 230.0}


def test_a_confirmation_without_the_new_password_does_not_switch_the_broker(stack):
    """Only the meter can prove it holds the new password; the fleet simulator's account, which reads
    every meter's commands, cannot even see the credentials topic."""
    stack.add_meter_accounts({"h-forge": "pw-forge-0123456789"})
    simulator = stack_connect(stack, SIMULATOR_USER, stack.info.mqtt_accounts[SIMULATOR_USER])
    snoop = Collector(simulator, "meters/+/credentials")
    meter = stack_connect(stack, "h-forge", "pw-forge-0123456789")

    def answer_without_the_password(client, userdata, message) -> None:
        request = json.loads(message.payload)
        forged = {"type": "credentials_ack", "id": request["id"], "proof": "0" * 64}
        client.publish("meters/h-forge/status", json.dumps(forged), qos=1)

    meter.on_message = answer_without_the_password
    meter.subscribe("meters/h-forge/credentials", qos=1)
    time.sleep(0.5)
    rotated = gridflow_meter(stack, "rotate", "h-forge", "--timeout-s", "3")
    assert rotated.returncode != 0 and "did not confirm" in rotated.stderr
    assert stack_connect(stack, "h-forge", "pw-forge-0123456789").is_connected(), "the password is unchanged"
    assert snoop.messages == [], "the simulator's account must never see a new password"
    for client in (simulator, meter):
        client.loop_stop()


def test_rotation_refuses_to_send_a_password_over_plain_tcp(stack):
    from gridflow.stack.meters import MeterAccounts

    stack.add_meter_accounts({"h-plain": "pw-plain-0123456789"})
    plain = stack.settings.with_overrides("mqtt.tls=false")
    with pytest.raises(StackError, match="needs mqtt.tls"):
        MeterAccounts(stack.run_dir, stack.launcher).rotate(plain, "h-plain", timeout_s=1)
