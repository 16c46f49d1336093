"""The downlink: recommendations and schedules from Kafka -> each household's MQTT command topic.

Only records that keep their topic's contract (``gridflow.contracts``: a recommendation or a schedule,
keyed by its own household) reach a meter; any other goes to the dead-letter topic with the field and the
reason. Each is published with QoS 1 to ``meters/<household_id>/commands``; Kafka offsets are committed
only after the broker acknowledged every publish of a batch, so a restart resends rather than loses.
"""

from __future__ import annotations

import logging
import threading

import paho.mqtt.client as mqtt
from confluent_kafka import Consumer, Producer
from prometheus_client import CollectorRegistry, Counter

from gridflow.contracts import CONTRACTS, Contract, ContractError, dead_letter
from gridflow.connectors.home_assistant import HouseholdStates
from gridflow.mqtt_tls import client_context
from gridflow.settings import Settings

log = logging.getLogger(__name__)


def command_record(contract: Contract, key: bytes | None, value: bytes | None) -> dict:
    """A command record once it keeps its topic's contract (a recommendation or a schedule, its key, if
    any, the household's); raises :class:`ContractError` naming the field."""
    if not value:
        raise ContractError("", "empty record")
    return contract.decode(value, key.decode("utf-8", errors="replace") if key else None)


class KafkaMqttDownlink:
    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None):
        self.settings = settings
        registry = registry or CollectorRegistry()
        self.sent = Counter("gridflow_downlink_sent", "commands acknowledged by the MQTT broker", registry=registry)
        self.rejected = Counter(
            "gridflow_downlink_rejected", "command records that break their contract", registry=registry
        )
        config = {"bootstrap.servers": settings.kafka.bootstrap_servers, **settings.kafka.client}
        self.consumer = Consumer(
            {
                **config,
                "group.id": f"{settings.kafka.group_id_prefix}.downlink",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 6000,
                **settings.bridge.kafka_client,
            }
        )
        self.dead_letters = Producer({**config, "linger.ms": 5, **settings.bridge.kafka_client})
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=settings.bridge.downlink_client_id, protocol=mqtt.MQTTv311
        )
        if settings.bridge.mqtt_username:
            self.client.username_pw_set(settings.bridge.mqtt_username, settings.bridge.mqtt_password)
        context = client_context(settings.mqtt)
        if context is not None:
            self.client.tls_set_context(context)
        self.client.max_inflight_messages_set(1000)
        self.home_assistant = (
            HouseholdStates(settings.mqtt.home_assistant_topic) if settings.bridge.home_assistant else None
        )

    def start(self) -> None:
        self.client.connect(self.settings.mqtt.host, self.settings.mqtt.port, keepalive=30)
        self.client.loop_start()
        topics = self.settings.topics
        self.contracts = {topics.recommendations: CONTRACTS["recommendation"], topics.schedules: CONTRACTS["schedule"]}
        self.consumer.subscribe(list(self.contracts))

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
            contract = self.contracts[record.topic()]
            try:
                command = command_record(contract, record.key(), record.value())
            except ContractError as error:
                self.rejected.inc()
                self.dead_letters.produce(
                    self.settings.topics.dead_letter,
                    key=record.key(),
                    value=dead_letter(record.value() or b"", error, f"kafka:{record.topic()}").encode(),
                )
                continue
            topic = self.settings.mqtt.commands_topic.replace("{household_id}", command["household_id"])
            pending.append(self.client.publish(topic, record.value(), qos=1))
            if self.home_assistant is not None:
                for ha_topic, payload in self.home_assistant.messages(contract.name, command):
                    pending.append(self.client.publish(ha_topic, payload, qos=1, retain=True))
        for info in pending:
            info.wait_for_publish(timeout=60)
            if not info.is_published():
                raise ConnectionError("the MQTT broker did not acknowledge a command; offsets not committed")
            self.sent.inc()
        self.dead_letters.flush(10)
        self.consumer.commit(asynchronous=False)
