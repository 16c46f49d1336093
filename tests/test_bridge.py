"""The MQTT <-> Kafka bridge against real mosquitto and the embedded Kafka-protocol broker."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from gridflow import kafka_io
from gridflow.connectors.mqtt_kafka_bridge import MqttKafkaBridge
from gridflow.stack.mqtt_auth import SIMULATOR_USER

from gridflow.contracts import CONTRACTS

from conftest import unique_topics
from contract_cases import breaking, check_dead_letters
from mqtt_helpers import Collector, running, stack_connect

pytestmark = pytest.mark.integration
START_MS = 1_768_435_200_000


def bridge_settings(stack, mqtt_client: str = "gmqtt"):
    settings = unique_topics(stack.settings).with_overrides(
        f"bridge.client_id=bridge-{uuid.uuid4().hex[:8]}", "bridge.metrics_port=0", f"bridge.mqtt_client={mqtt_client}"
    )
    topics = settings.topics
    kafka_io.create_topics(settings, [topics.readings, topics.dead_letter, topics.recommendations, topics.schedules])
    return settings


@contextlib.contextmanager
def running_bridge(settings):
    bridge = MqttKafkaBridge(settings)
    with running(bridge) as thread:
        yield bridge, thread


def publisher(stack):
    return stack_connect(stack, SIMULATOR_USER, stack.info.mqtt_accounts[SIMULATOR_USER])


def reading(h: int, i: int) -> dict:
    return {
        "v": 1,
        "household_id": f"h-{h:03d}",
        "meter_id": f"m-{h:03d}",
        "ts_ms": START_MS + i * 1000,
        "power_w": round(100 + h * 7.5 + i * 0.25, 2),
        "voltage_v": 230.0 + (i % 7) / 10,
    }


def canonical(value: bytes) -> str:
    return json.dumps(json.loads(value), sort_keys=True)


def metric(bridge, name: str) -> float:
    host, port = bridge.metrics_address
    text = urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5).read().decode()
    samples = [line for line in text.splitlines() if line.startswith(name)]
    assert len(samples) <= 20, f"unbounded label values on {name}"
    return sum(float(line.rsplit(" ", 1)[1]) for line in samples)


CLIENTS = pytest.mark.parametrize("mqtt_client", ["gmqtt", "paho"])


@CLIENTS
def test_every_valid_reading_arrives_exactly_as_sent_and_bad_ones_are_dead_lettered(stack, mqtt_client):
    settings = bridge_settings(stack, mqtt_client)
    sent_single, sent_batched, malformed = [], [], []
    client = publisher(stack)
    with running_bridge(settings) as (bridge, _):
        infos = []
        for h in range(40):
            topic = f"meters/h-{h:03d}/readings"
            for i in range(10):  # one reading per message, as a meter sends in real time
                payload = json.dumps(reading(h, i)).encode()
                sent_single.append(payload)
                infos.append(client.publish(topic, payload, qos=1))
            batch = [reading(h, i) for i in range(10, 25)]  # a meter catching up after being offline
            sent_batched.extend(batch)
            infos.append(client.publish(topic, json.dumps(batch).encode(), qos=1))
        malformed = [
            ("meters/h-000/readings", b"\x00\x01 not json"),
            ("meters/h-001/readings", json.dumps(reading(2, 99)).encode()),  # another household's reading
            ("meters/h-003/readings", json.dumps({**reading(3, 98), "power_w": 9e9}).encode()),
            ("meters/h-004/readings", json.dumps([reading(4, 97), {"oops": 1}]).encode()),  # 1 good, 1 bad
            ("meters/h-005/readings", b"[" * 3000 + b"]" * 3000),  # nested deeper than any reading
        ]
        for topic, payload in malformed:
            infos.append(client.publish(topic, payload, qos=1))
        for info in infos:
            info.wait_for_publish(10)
        expected_good = len(sent_single) + len(sent_batched) + 1
        records = kafka_io.read_records(settings, settings.topics.readings, expected=expected_good)
        dead = kafka_io.read_records(settings, settings.topics.dead_letter, expected=5)
        deadline = time.monotonic() + 10
        # the counters move after the records are handed on: wait until they settle (or the deadline)
        while (
            metric(bridge, "gridflow_bridge_inflight_messages")
            or metric(bridge, "gridflow_bridge_received_total") < len(infos)
        ) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert metric(bridge, "gridflow_bridge_received_total") == len(infos)
        assert metric(bridge, "gridflow_bridge_forwarded_total") == expected_good
        assert metric(bridge, "gridflow_bridge_dead_lettered_total") == 5
        assert metric(bridge, "gridflow_bridge_inflight_messages") == 0
        assert metric(bridge, "gridflow_bridge_batch_latency_seconds_count") == len(infos)
    client.loop_stop()

    values = [value for _, value in records]
    assert len(values) == expected_good, "nothing lost, nothing duplicated"
    assert set(sent_single) <= set(values), "single readings are forwarded byte for byte"
    expected = sorted(
        [canonical(p) for p in sent_single]
        + [json.dumps(r, sort_keys=True) for r in sent_batched]
        + [json.dumps(reading(4, 97), sort_keys=True)]
    )
    assert sorted(canonical(v) for v in values) == expected
    assert all(key.decode() == json.loads(value)["household_id"] for key, value in records), "keyed by household"
    fields = sorted(json.loads(value)["field"] for _, value in dead)
    assert fields == ["", "", "household_id", "oops", "power_w"]  # not JSON (twice); foreign household; unknown; range
    assert any("depth" in json.loads(value)["reason"] for _, value in dead), "the nesting must be named as the reason"


@CLIENTS
def test_no_reading_is_lost_when_the_bridge_is_killed_mid_stream(stack, tmp_path, mqtt_client):
    settings = bridge_settings(stack, mqtt_client)
    config = tmp_path / "bridge.yaml"
    config.write_text(yaml.safe_dump(settings.model_dump(mode="json", by_alias=True)))
    command = [sys.executable, "-m", "gridflow.cli", "bridge", "--no-downlink", "--config", str(config)]

    def start_bridge():
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = process.stdout.readline()
        if not line.startswith("bridge:"):
            process.kill()  # no bridge left behind by a failed start
            process.wait(10)
            pytest.fail(f"the bridge did not start: {line}")
        return process

    total, published = 6000, []
    client = publisher(stack)
    bridge = start_bridge()
    try:
        for i in range(total):
            h = i % 50
            payload = json.dumps(reading(h, i)).encode()
            published.append(client.publish(f"meters/h-{h:03d}/readings", payload, qos=1))
            if i == total // 3:
                bridge.send_signal(signal.SIGKILL)  # no goodbye: in-flight readings are unacknowledged
                bridge.wait(10)
            if i == total // 2:
                bridge = start_bridge()
            if i % 500 == 0:
                time.sleep(0.05)
        for info in published:
            info.wait_for_publish(30)
        sent = {json.dumps(reading(i % 50, i), sort_keys=True) for i in range(total)}
        # Poll until every reading is in Kafka (or the deadline): counting records is not enough, since the
        # readings redelivered after the kill are in the topic twice, and a count of `total` was reached
        # while the restarted bridge was still forwarding the last readings.
        deadline = time.monotonic() + 120
        while True:
            got = [
                canonical(value)
                for _, value in kafka_io.read_records(settings, settings.topics.readings, idle_timeout_s=2)
            ]
            if sent <= set(got) or time.monotonic() > deadline:
                break
    finally:
        bridge.send_signal(signal.SIGTERM)
        bridge.wait(30)
        client.loop_stop()
    assert sent <= set(got), f"{len(sent - set(got))} readings lost"
    duplicates = len(got) - len(set(got))
    assert duplicates <= settings.bridge.max_inflight
    assert bridge.returncode == 0


@CLIENTS
def test_a_bridge_with_a_wrong_password_says_so_at_start(stack, mqtt_client):
    settings = bridge_settings(stack, mqtt_client).with_overrides("bridge.mqtt_password=not-the-password")
    bridge = MqttKafkaBridge(settings)
    with pytest.raises(ConnectionError, match=rf"no MQTT session with {settings.mqtt.host}:{settings.mqtt.port}"):
        bridge.start(timeout_s=20)
    bridge.close()


def test_downlink_delivers_only_contract_keeping_commands_to_the_households_meter(stack):
    settings = bridge_settings(stack).with_overrides(f"bridge.downlink_client_id=down-{uuid.uuid4().hex[:6]}")
    stack.add_meter_accounts({"h-dl-1": "pw-1", "h-dl-2": "pw-2"})
    meter_1, meter_2 = stack_connect(stack, "h-dl-1", "pw-1"), stack_connect(stack, "h-dl-2", "pw-2")
    inbox_1, inbox_2 = Collector(meter_1, "meters/h-dl-1/commands"), Collector(meter_2, "meters/h-dl-2/commands")
    from gridflow.connectors.kafka_mqtt_downlink import KafkaMqttDownlink

    try:
        with running(KafkaMqttDownlink(settings)):
            advice = {**CONTRACTS["recommendation"].example, "household_id": "h-dl-1"}
            schedule = {**CONTRACTS["schedule"].example, "household_id": "h-dl-2"}
            kafka_io.produce(settings, settings.topics.recommendations, [("h-dl-1", json.dumps(advice))])
            kafka_io.produce(settings, settings.topics.schedules, [(None, json.dumps(schedule))])
            broken = [
                *breaking(advice, "h-dl-1", drop="text", mistype="saving_per_day", intruder="h-dl-2"),
                (None, '{"text": "for nobody"}', "household_id"),
            ]
            kafka_io.produce(settings, settings.topics.recommendations, [(k, p) for k, p, _ in broken])
            assert [json.loads(p) for _, p in inbox_1.wait_for(1, timeout_s=30)] == [advice]
            assert [json.loads(p) for _, p in inbox_2.wait_for(1, timeout_s=30)] == [schedule]
            dead = kafka_io.read_topic(settings, settings.topics.dead_letter, expected=len(broken), max_wait_s=30)
            check_dead_letters([json.loads(d) for d in dead], broken, f"kafka:{settings.topics.recommendations}")
            assert len(inbox_1.messages) == len(inbox_2.messages) == 1, "a broken record reached a meter"
    finally:
        for client in (meter_1, meter_2):
            client.loop_stop()


@pytest.fixture(scope="module")
def fuzz_bridge(stack):
    settings = bridge_settings(stack)
    client = publisher(stack)
    with running_bridge(settings) as (bridge, thread):
        yield settings, bridge, thread, client, []
    client.loop_stop()


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)


@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    payload=st.one_of(st.binary(max_size=500), json_values.map(lambda v: json.dumps(v).encode())),
    household=st.sampled_from(["h-1", "h-2", "x"]),
)
def test_fuzz_random_bytes_and_json_never_crash_the_bridge(fuzz_bridge, payload, household):
    settings, bridge, thread, client, sent = fuzz_bridge
    client.publish(f"meters/{household}/readings", payload, qos=1).wait_for_publish(10)
    sent.append(payload)
    assert thread.is_alive()


def test_fuzzed_bridge_accounted_for_every_message(fuzz_bridge):
    settings, bridge, thread, client, sent = fuzz_bridge
    assert len(sent) >= 100 and thread.is_alive()
    deadline = time.monotonic() + 20
    while metric(bridge, "gridflow_bridge_inflight_messages") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert metric(bridge, "gridflow_bridge_received_total") == len(sent)
    assert metric(bridge, "gridflow_bridge_inflight_messages") == 0
    outputs = metric(bridge, "gridflow_bridge_forwarded_total") + metric(bridge, "gridflow_bridge_dead_lettered_total")
    assert outputs >= len(sent)


FIXTURES = Path(__file__).parent / "fixtures" / "meters"


def test_meters_people_own_reach_the_readings_topic_through_their_adapters(stack):
    """P1, SML, Tasmota and Shelly payloads published with the household's own account, through the real
    broker (ACL, TLS) and bridge, land as gridflow readings keyed by the household; broken ones are
    dead-lettered with the format and the reason; another household's adapter topic is refused."""
    settings = bridge_settings(stack)
    stack.add_meter_accounts({"h-own": "pw-own-0123456789", "h-other": "pw-other-0123456789"})
    meter = stack_connect(stack, "h-own", "pw-own-0123456789")
    telegram = (FIXTURES / "dsmr5_p1_telegram.txt").read_bytes()
    sent = [
        ("meters/h-own/p1", telegram),
        ("meters/h-own/sml", bytes.fromhex((FIXTURES / "sml_iskra_mt175.hex").read_text().strip())),
        ("meters/h-own/tele/SENSOR", (FIXTURES / "tasmota_sensor.json").read_bytes()),
        ("meters/h-own/shelly/status/em:0", (FIXTURES / "shelly_pro3em_status_em0.json").read_bytes()),
        ("meters/h-own/shelly/events/rpc", (FIXTURES / "shelly_notifystatus_em1.json").read_bytes()),
        ("meters/h-own/p1", telegram.replace(b"(01.193*kW)", b"(09.193*kW)")),  # CRC no longer holds
        ("meters/h-other/p1", telegram),  # not h-own's topic: the broker drops it
    ]
    with running_bridge(settings) as (bridge, _):
        for topic, payload in sent:
            meter.publish(topic, payload, qos=1).wait_for_publish(10)
        records = kafka_io.read_records(settings, settings.topics.readings, expected=5)
        dead = kafka_io.read_records(settings, settings.topics.dead_letter, expected=1)
        deadline = time.monotonic() + 10
        while metric(bridge, "gridflow_bridge_received_total") < 6 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert metric(bridge, "gridflow_bridge_received_total") == 6, "the forged topic must never arrive"
    meter.loop_stop()
    readings = [json.loads(value) for _, value in records]
    assert {key for key, _ in records} == {b"h-own"} and len(readings) == 5
    by_meter = {r["meter_id"]: r for r in readings}
    assert (
        by_meter["K8EG004046395507"]["power_w"] == 1193.0 and by_meter["K8EG004046395507"]["ts_ms"] == 1_291_890_620_000
    )
    assert by_meter["sml-0a0149534b00047a5544"]["energy_kwh"] == 79.1393
    assert by_meter["h-own-tasmota"]["power_w"] == 123.0
    assert (
        by_meter["h-own-em0"]["power_w"] == 715.502 and by_meter["shellyproem50-08f9e0e5ca38-em10"]["power_w"] == -475.8
    )
    (letter,) = [json.loads(value) for _, value in dead]
    assert letter["reason"].startswith("dsmr: P1 telegram CRC mismatch") and letter["source"] == "mqtt:meters/h-own/p1"
