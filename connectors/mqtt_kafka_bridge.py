"""The uplink: MQTT readings from meters -> Kafka, losing nothing.

Delivery contract (at-least-once end to end):

* the bridge subscribes with QoS 1 under a fixed client id and a persistent session, so the broker
  queues readings while the bridge is down and redelivers what the bridge never acknowledged;
* an MQTT message is acknowledged (PUBACK) only after Kafka acknowledged every record made from it
  (its readings and any dead letters); a Kafka error retries the record, it never drops it;
* so a bridge crash can repeat readings it had forwarded but not yet acknowledged (at most
  ``bridge.max_inflight`` messages), never lose one. Downstream jobs drop duplicates by meter and time.

One thread runs both clients: paho's network loop (MQTT 3.1.1: its per-message cost is far below v5's
property handling) and librdkafka's delivery callbacks, so acknowledgement needs no locking.
Metrics are served for Prometheus on ``bridge.metrics_host:metrics_port``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from confluent_kafka import KafkaException, Producer
from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from gridflow.connectors.routing import Routed, route
from gridflow.readings import KNOWN_FIELDS, ReadingBounds
from gridflow.settings import Settings

log = logging.getLogger(__name__)


class BridgeMetrics:
    """The bridge's Prometheus metrics. Counters are plain integers bumped on the hot path (no lock:
    one thread writes them) and read when Prometheus scrapes."""

    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        self.received = 0
        self.forwarded = 0
        self.kafka_errors = 0
        self.dead_lettered: dict[str, int] = {}
        self.inflight = 0
        self.latency = Histogram(
            "gridflow_bridge_batch_latency_seconds",
            "MQTT receipt to Kafka acknowledgement",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        registry.register(self)

    def collect(self):
        yield CounterMetricFamily("gridflow_bridge_received", "MQTT messages received", value=self.received)
        yield CounterMetricFamily("gridflow_bridge_forwarded", "readings acknowledged by Kafka", value=self.forwarded)
        dead = CounterMetricFamily(
            "gridflow_bridge_dead_lettered", "records sent to the dead-letter topic", labels=["field"]
        )
        for field, count in sorted(self.dead_lettered.items()):
            dead.add_metric([field], count)
        yield dead
        yield CounterMetricFamily(
            "gridflow_bridge_kafka_errors", "Kafka delivery failures (retried)", value=self.kafka_errors
        )
        yield GaugeMetricFamily(
            "gridflow_bridge_inflight_messages",
            "MQTT messages received but not yet acknowledged (the bridge's lag)",
            value=self.inflight,
        )


def _metric_field(field: str) -> str:
    """A bounded label for the dead-letter counter: field names come from untrusted payloads."""
    if field in KNOWN_FIELDS or field in ("payload", "topic"):
        return field
    return "channels_w" if field.startswith("channels_w.") else "unknown_field"


class _InFlight:
    __slots__ = ("mid", "qos", "remaining", "received_s")

    def __init__(self, mid: int, qos: int, remaining: int):
        self.mid, self.qos, self.remaining, self.received_s = mid, qos, remaining, time.monotonic()


class MqttKafkaBridge:
    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None):
        self.settings = settings
        self.bounds = ReadingBounds.from_settings(settings.readings)
        self.metrics = BridgeMetrics(registry or CollectorRegistry())
        self.metrics_address: tuple[str, int] = ("", 0)  # host and port, once started
        self._metrics_server: Any = None
        self._connected = threading.Event()
        self._topics = (settings.topics.readings, settings.topics.dead_letter)
        bridge = settings.bridge
        self.producer = Producer(
            {
                "bootstrap.servers": settings.kafka.bootstrap_servers,
                "linger.ms": bridge.kafka_linger_ms,
                "acks": "all",
                "enable.idempotence": True,
                "compression.type": bridge.kafka_compression,
                "queue.buffering.max.messages": 1_000_000,
                **settings.kafka.client,
                **bridge.kafka_client,
            }
        )
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=bridge.client_id,
            protocol=mqtt.MQTTv311,
            clean_session=False,
            manual_ack=True,
        )
        if bridge.mqtt_username:
            self.client.username_pw_set(bridge.mqtt_username, bridge.mqtt_password)
        self.client.max_inflight_messages_set(1000)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *args: self._connected.clear()
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self, timeout_s: float = 30.0) -> None:
        """Serve metrics, connect to the MQTT broker and wait until subscribed."""
        bridge = self.settings.bridge
        server, _ = start_http_server(bridge.metrics_port, bridge.metrics_host, registry=self.metrics.registry)
        self._metrics_server = server
        host, port = server.server_address[:2]
        self.metrics_address = (str(host), int(port))
        self.client.connect(self.settings.mqtt.host, self.settings.mqtt.port, keepalive=30)
        deadline = time.monotonic() + timeout_s
        while not self._connected.is_set():
            if time.monotonic() > deadline:
                raise ConnectionError(
                    f"no MQTT session with {self.settings.mqtt.host}:{self.settings.mqtt.port} "
                    f"within {timeout_s} s (bad credentials or a refused subscription?)"
                )
            self.client.loop(timeout=0.1)

    def run(self, stop: threading.Event) -> None:
        """Move readings until ``stop`` is set, then deliver what is in flight and return."""
        backoff_s = 0.5
        while not stop.is_set():
            if self.metrics.inflight < self.settings.bridge.max_inflight:
                rc = self.client.loop(timeout=0.01)
                if rc != mqtt.MQTT_ERR_SUCCESS:
                    log.warning("MQTT connection lost (%s); reconnecting in %.1f s", mqtt.error_string(rc), backoff_s)
                    stop.wait(backoff_s)
                    backoff_s = min(backoff_s * 2, 30.0)
                    self._try_reconnect()
                    continue
                backoff_s = 0.5
            else:
                time.sleep(0.001)
            self.producer.poll(0)
        self.close()

    def close(self) -> None:
        """Wait for Kafka to acknowledge what is in flight, acknowledge it to MQTT, disconnect."""
        deadline = time.monotonic() + 30
        while self.metrics.inflight and time.monotonic() < deadline:
            self.producer.poll(0.05)
            self.client.loop(timeout=0.01)
        self.client.disconnect()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server = None

    # -- MQTT side ---------------------------------------------------------------------------------
    def _try_reconnect(self) -> None:
        try:
            self.client.reconnect()
        except OSError as error:
            log.warning("MQTT reconnect failed: %s", error)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("MQTT broker refused the bridge: %s", reason_code)
            return
        client.subscribe(self.settings.bridge.subscription, qos=1)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        # Ready only once the broker has the subscription: a reading published between CONNACK and SUBACK
        # would not be routed to this session (its very first one) and so never reach the bridge.
        if any(code.is_failure for code in reason_codes):
            log.error("MQTT broker refused the subscription %r: %s", self.settings.bridge.subscription, reason_codes)
            return
        self._connected.set()

    def _on_message(self, client, userdata, message) -> None:
        metrics = self.metrics
        metrics.received += 1
        routed = route(
            message.topic,
            message.payload,
            self.settings.mqtt.readings_topic,
            self.bounds,
            now_ms=int(time.time() * 1000),
        )
        token = _InFlight(message.mid, message.qos, len(routed))
        metrics.inflight += 1
        for record in routed:
            self._produce(token, record)

    # -- Kafka side --------------------------------------------------------------------------------
    def _produce(self, token: _InFlight, record: Routed) -> None:
        topic = self._topics[1] if record.dead else self._topics[0]

        def delivered(error, message) -> None:
            self._delivered(token, record, error)

        while True:
            try:
                self.producer.produce(topic, value=record.value, key=record.key, on_delivery=delivered)
                return
            except BufferError:  # local queue full: let deliveries drain
                self.producer.poll(0.05)
            except KafkaException as error:
                self.metrics.kafka_errors += 1
                log.warning("Kafka produce failed (%s); retrying", error)
                self.producer.poll(0.5)

    def _delivered(self, token: _InFlight, record: Routed, error) -> None:
        metrics = self.metrics
        if error is not None:
            metrics.kafka_errors += 1
            log.warning("Kafka delivery failed (%s); retrying", error)
            self._produce(token, record)
            return
        if record.dead:
            label = _metric_field(record.field)
            metrics.dead_lettered[label] = metrics.dead_lettered.get(label, 0) + 1
        else:
            metrics.forwarded += 1
        token.remaining -= 1
        if token.remaining == 0:
            if token.qos > 0:
                self.client.ack(token.mid, token.qos)
            metrics.inflight -= 1
            metrics.latency.observe(time.monotonic() - token.received_s)
