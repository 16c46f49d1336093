"""Home Assistant MQTT discovery end to end: schedules and recommendations on Kafka -> the downlink ->
retained discovery configs and states on the household's own topics of the real broker, read with the
household's own account as its Home Assistant would."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from prometheus_client import CollectorRegistry

from gridflow import kafka_io
from gridflow.connectors.kafka_mqtt_downlink import KafkaMqttDownlink
from gridflow.contracts import CONTRACTS

from conftest import unique_topics
from mqtt_helpers import Collector, running, stack_connect

pytestmark = pytest.mark.integration
HH, OTHER = "h-ha-1", "h-ha-2"
BASE = f"meters/{HH}/homeassistant"
ENTITIES = ("next_recommendation", "planned_runs", "saving_today", "open_alerts")


def schedule(household: str) -> dict:
    runs = [
        {**CONTRACTS["schedule"].example["appliances"][0], "name": "washer", "shift_minutes": -60},
        {**CONTRACTS["schedule"].example["appliances"][0], "name": "dishwasher", "shift_minutes": 0},  # stays
        {**CONTRACTS["schedule"].example["appliances"][0], "name": "dryer", "shift_minutes": 90},
    ]
    return {**CONTRACTS["schedule"].example, "household_id": household, "appliances": runs, "savings": 0.4567}


def advice(household: str, kind: str, text: str, created_ms: int) -> dict:
    return {
        **CONTRACTS["recommendation"].example,
        "household_id": household,
        "kind": kind,
        "text": text,
        "created_ms": created_ms,
    }


def test_a_households_home_assistant_sees_its_advice_as_sensors_and_nothing_of_anyone_else(stack):
    settings = unique_topics(stack.settings).with_overrides(f"bridge.downlink_client_id=down-ha-{uuid.uuid4().hex[:6]}")
    topics = settings.topics
    kafka_io.create_topics(settings, [topics.recommendations, topics.schedules, topics.dead_letter])
    stack.add_meter_accounts({HH: "pw-ha-1-0123456789", OTHER: "pw-ha-2-0123456789"})
    day = 1_768_435_200_000
    kafka_io.produce(settings, topics.schedules, [(HH, json.dumps(schedule(HH))), (OTHER, json.dumps(schedule(OTHER)))])
    recommendations = [
        advice(HH, "alert", "Unusually high load at night.", day - 2 * 86_400_000),  # two days old: closed
        advice(HH, "alert", "The meter in the garage went silent.", day),
        advice(HH, "shift", "Run the washer at 00:00 instead of 01:00: saves 0.20 EUR a day.", day + 60_000),
        advice(OTHER, "shift", "Secret of the other household.", day),
    ]
    kafka_io.produce(settings, topics.recommendations, [(r["household_id"], json.dumps(r)) for r in recommendations])
    registry = CollectorRegistry()
    with running(KafkaMqttDownlink(settings, registry)):  # until every command went out and the count stood still 1 s
        deadline, last, still_since = time.monotonic() + 30, -1.0, time.monotonic()
        while time.monotonic() < deadline:
            sent = registry.get_sample_value("gridflow_downlink_sent_total") or 0.0
            if sent != last:
                last, still_since = sent, time.monotonic()
            elif sent >= 6 and time.monotonic() - still_since > 1.0:
                break
            time.sleep(0.1)
    home = stack_connect(stack, HH, "pw-ha-1-0123456789")  # what the household's Home Assistant reads
    retained = Collector(home, f"{BASE}/#")
    spy = Collector(stack_connect(stack, HH, "pw-ha-1-0123456789"), "meters/h-ha-2/homeassistant/#")
    messages = dict(retained.wait_for(4 + 1 + 4, timeout_s=15))
    configs = {t: json.loads(p) for t, p in messages.items() if t.endswith("/config")}
    assert len(configs) == 4
    for entity in ENTITIES:
        unique = f"gridflow_h-ha-1_{entity}"
        config = configs[f"{BASE}/sensor/{unique}/config"]
        assert config["unique_id"] == unique and config["state_topic"] == f"{BASE}/gridflow/{entity}/state"
        assert config["device"]["identifiers"] == ["gridflow_h-ha-1"]
        assert config["availability_topic"] == f"{BASE}/gridflow/availability"
    assert configs[f"{BASE}/sensor/gridflow_h-ha-1_saving_today/config"]["unit_of_measurement"] == "EUR"
    assert messages[f"{BASE}/gridflow/availability"] == b"online"
    state = {e: json.loads(messages[f"{BASE}/gridflow/{e}/state"]) for e in ENTITIES}
    assert state["planned_runs"]["value"] == 2  # washer and dryer move; the dishwasher stays
    assert [r["name"] for r in state["planned_runs"]["attributes"]["runs"]] == ["washer", "dryer"]
    assert state["saving_today"]["value"] == 0.46
    assert state["next_recommendation"]["value"] == recommendations[2]["text"]
    assert state["open_alerts"]["value"] == 1, "only the alert of the last 24 h is open"
    assert state["open_alerts"]["attributes"]["latest"][0]["text"] == "The meter in the garage went silent."
    time.sleep(1)
    assert spy.messages == [], "a household's account must not read another household's Home Assistant topics"
    assert not [p for p in messages.values() if b"Secret of the other" in p]
