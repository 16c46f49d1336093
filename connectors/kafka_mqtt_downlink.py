"""The downlink: recommendations and schedules from Kafka -> each household's MQTT command topic.

Records are keyed by household id (or carry ``household_id`` in their JSON). Each is published with
QoS 1 to ``meters/<household_id>/commands``; Kafka offsets are committed only after the broker
acknowledged every publish of a batch, so a restart resends rather than loses. A record naming no
valid household goes to the dead-letter topic with the reason.
"""
from __future__ import annotations

import json
import logging
import threading

import paho.mqtt.client as mqtt
from confluent_kafka import Consumer, Producer
from prometheus_client import CollectorRegistry, Counter

from gridflow.contracts import ID, dead_letter
from gridflow.settings import Settings

log = logging.getLogger(__name__)
_HOUSEHOLD = ID


def household_of(key: bytes | None, value: bytes | None) -> str | None:
    """The household a command is for: the record key, else the ``household_id`` field of its JSON."""
    candidate = None
    if key:
        candidate = key.decode("utf-8", errors="replace")
    elif value:
        try:
            data = json.loads(value)
        except ValueError:
            return None
        candidate = data.get("household_id") if isinstance(data, dict) else None
    return candidate if isinstance(candidate, str) and _HOUSEHOLD.match(candidate) else None


class KafkaMqttDownlink:
    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None):
        self.settings = settings
        registry = registry or CollectorRegistry()
        self.sent = Counter("gridflow_downlink_sent", "commands acknowledged by the MQTT broker", registry=registry)
        self.rejected = Counter("gridflow_downlink_rejected", "command records without a valid household",
                                registry=registry)
        config = {"bootstrap.servers": settings.kafka.bootstrap_servers, **settings.kafka.client}
        self.consumer = Consumer({
            **config, "group.id": f"{settings.kafka.group_id_prefix}.downlink", "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "session.timeout.ms": 6000, **settings.bridge.kafka_client,
        })
        self.dead_letters = Producer({**config, "linger.ms": 5, **settings.bridge.kafka_client})
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=settings.bridge.downlink_client_id,
                                  protocol=mqtt.MQTTv311)
        if settings.bridge.mqtt_username:
            self.client.username_pw_set(settings.bridge.mqtt_username, settings.bridge.mqtt_password)
        self.client.max_inflight_messages_set(1000)

    def start(self) -> None:
        self.client.connect(self.settings.mqtt.host, self.settings.mqtt.port, keepalive=30)
        self.client.loop_start()
        self.consumer.subscribe([self.settings.topics.recommendations, self.settings.topics.schedules])

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                records = self.consumer.consume(num_messages=500, timeout=0.2)
                if records:
                    self._forward(records)
        finally:
            self.consumer.close()
            self.dead_letters.flush(10)
            self.client.loop_stop()
            self.client.disconnect()

    def _forward(self, records) -> None:
        pending = []
        for record in records:
            if record.error():
                log.warning("Kafka consumer error: %s", record.error())
                continue
            household = household_of(record.key(), record.value())
            if household is None:
                self.rejected.inc()
                reason = "no valid household: key it by household id or give a household_id field"
                self.dead_letters.produce(self.settings.topics.dead_letter, value=dead_letter(
                    record.value() or b"", reason, f"kafka:{record.topic()}").encode())
                continue
            topic = self.settings.mqtt.commands_topic.replace("{household_id}", household)
            pending.append(self.client.publish(topic, record.value(), qos=1))
        for info in pending:
            info.wait_for_publish(timeout=60)
            if not info.is_published():
                raise ConnectionError("the MQTT broker did not acknowledge a command; offsets not committed")
            self.sent.inc()
        self.dead_letters.flush(10)
        self.consumer.commit(asynchronous=False)
