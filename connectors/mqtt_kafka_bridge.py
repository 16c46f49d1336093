"""The uplink: MQTT readings from meters -> Kafka, losing nothing.

Delivery contract (at-least-once end to end):

* the bridge subscribes with QoS 1 under a fixed client id and a persistent session, so the broker
  queues readings while the bridge is down and redelivers what the bridge never acknowledged;
* an MQTT message is acknowledged (PUBACK) only after Kafka acknowledged every record made from it
  (its readings and any dead letters); a Kafka error retries the record, it never drops it;
* so a bridge crash can repeat readings it had forwarded but not yet acknowledged (at most
  ``bridge.max_inflight`` messages), never lose one. Downstream jobs drop duplicates by meter and time.

One thread runs both clients, the MQTT session (MQTT 3.1.1) and librdkafka's delivery callbacks, so
acknowledgement needs no locking. The MQTT side is ``bridge.mqtt_client``:

* ``gmqtt`` (default): gmqtt's asyncio protocol reads the socket in large chunks; the bridge takes each
  QoS 1 PUBLISH from gmqtt's packet handler and sends the PUBACKs itself once Kafka has the records, those
  of one poll in one write (gmqtt's own "ack after the callback" path costs a task per message, as much as
  paho). About 8-10 us of CPU per message received against paho's 35-41 (BENCHMARKS.md). It relies on
  gmqtt's packet handler and connection internals, so gmqtt is pinned and the bridge checks for them.
* ``paho``: paho-mqtt's network loop with manual acknowledgement (a few syscalls per message).

C-backed clients on libmosquitto (pymosquitto, ctypes-mosquitto) are not an option: libmosquitto 2.0
sends the PUBACK before the message callback runs, which would acknowledge readings Kafka never got.
Metrics are served for Prometheus on ``bridge.metrics_host:metrics_port``.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import logging
import threading
import time
from typing import Any, Callable

import gmqtt
import paho.mqtt.client as mqtt
from confluent_kafka import KafkaException, Producer
from gmqtt.mqtt.connection import MQTTConnection
from gmqtt.mqtt.constants import MQTTCommands, MQTTv311
from gmqtt.mqtt.package import CommandWithMidPacket
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from gridflow.connectors.routing import Routed, route
from gridflow.mqtt_tls import client_context
from gridflow.readings import KNOWN_FIELDS, ReadingBounds
from gridflow.settings import Settings

log = logging.getLogger(__name__)


LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


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
        # MQTT receipt to Kafka acknowledgement: counted by hand (prometheus_client's Histogram takes a lock
        # per observation, 1.5 us of the ~25 us the bridge spends per message)
        self.latency_counts = [0] * (len(LATENCY_BUCKETS_S) + 1)
        self.latency_sum_s = 0.0
        registry.register(self)

    def observe_latency(self, seconds: float) -> None:
        self.latency_counts[bisect.bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        self.latency_sum_s += seconds

    def collect(self):
        cumulative, buckets = 0, []
        for bound, count in zip((*(str(b) for b in LATENCY_BUCKETS_S), "+Inf"), list(self.latency_counts)):
            cumulative += count
            buckets.append((bound, cumulative))
        yield HistogramMetricFamily(
            "gridflow_bridge_batch_latency_seconds",
            "MQTT receipt to Kafka acknowledgement",
            buckets=buckets,
            sum_value=self.latency_sum_s,
        )
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
    __slots__ = ("ack", "remaining", "received_s")

    def __init__(self, ack: Callable[[], None] | None, remaining: int):
        self.ack, self.remaining, self.received_s = ack, remaining, time.monotonic()


class BridgeError(RuntimeError):
    """The bridge cannot start as configured."""


class MqttKafkaBridge:
    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None):
        self.settings = settings
        self.bounds = ReadingBounds.from_settings(settings.readings)
        self.metrics = BridgeMetrics(registry or CollectorRegistry())
        self.metrics_address: tuple[str, int] = ("", 0)  # host and port, once started
        self._metrics_server: Any = None
        self._topics = (settings.topics.readings, settings.topics.dead_letter)
        self._template = settings.mqtt.readings_topic
        self._adapters = dict(settings.bridge.adapters)
        self.subscriptions = settings.bridge.subscriptions()
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
        session = _GmqttSession if bridge.mqtt_client == "gmqtt" else _PahoSession
        self.mqtt: _PahoSession | _GmqttSession = session(self)

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self, timeout_s: float = 30.0) -> None:
        """Serve metrics, connect to the MQTT broker and wait until subscribed."""
        bridge = self.settings.bridge
        server, _ = start_http_server(bridge.metrics_port, bridge.metrics_host, registry=self.metrics.registry)
        self._metrics_server = server
        host, port = server.server_address[:2]
        self.metrics_address = (str(host), int(port))
        self.mqtt.start(timeout_s)

    def run(self, stop: threading.Event) -> None:
        """Move readings until ``stop`` is set, then deliver what is in flight and return."""
        self.mqtt.run(stop)
        self.close()

    def close(self) -> None:
        """Wait for Kafka to acknowledge what is in flight, acknowledge it to MQTT, disconnect."""
        self.mqtt.close(deadline_s=30.0)
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server = None

    def refused(self, what: str) -> ConnectionError:
        mqtt_settings = self.settings.mqtt
        return ConnectionError(
            f"no MQTT session with {mqtt_settings.host}:{mqtt_settings.port} {what} "
            "(bad credentials or a refused subscription?)"
        )

    # -- one MQTT message --------------------------------------------------------------------------
    def received(self, topic: str, payload: bytes, ack: Callable[[], None] | None) -> None:
        """Route one MQTT message to Kafka; ``ack`` (None for QoS 0) runs once Kafka has all its records."""
        metrics = self.metrics
        metrics.received += 1
        routed = route(
            topic, payload, self._template, self.bounds, now_ms=int(time.time() * 1000), adapters=self._adapters
        )
        token = _InFlight(ack, len(routed))
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
            if token.ack is not None:
                token.ack()
            metrics.inflight -= 1
            metrics.observe_latency(time.monotonic() - token.received_s)


class _PahoSession:
    """paho-mqtt's network loop, driven by the bridge's thread, with manual acknowledgement."""

    def __init__(self, bridge: MqttKafkaBridge):
        self.bridge = bridge
        settings = bridge.settings.bridge
        self._connected = threading.Event()
        self._refused: str | None = None
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            protocol=mqtt.MQTTv311,
            clean_session=False,
            manual_ack=True,
        )
        if settings.mqtt_username:
            self.client.username_pw_set(settings.mqtt_username, settings.mqtt_password)
        context = client_context(bridge.settings.mqtt)
        if context is not None:
            self.client.tls_set_context(context)
        self.client.max_inflight_messages_set(1000)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *args: self._connected.clear()
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def start(self, timeout_s: float) -> None:
        mqtt_settings = self.bridge.settings.mqtt
        self.client.connect(mqtt_settings.host, mqtt_settings.port, keepalive=30)
        deadline = time.monotonic() + timeout_s
        while not self._connected.is_set():
            if self._refused:
                raise self.bridge.refused(f"({self._refused})")
            if time.monotonic() > deadline:
                raise self.bridge.refused(f"within {timeout_s} s")
            self.client.loop(timeout=0.1)

    def run(self, stop: threading.Event) -> None:
        bridge, backoff_s = self.bridge, 0.5
        while not stop.is_set():
            if bridge.metrics.inflight < bridge.settings.bridge.max_inflight:
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
            bridge.producer.poll(0)

    def close(self, deadline_s: float) -> None:
        deadline = time.monotonic() + deadline_s
        while self.bridge.metrics.inflight and time.monotonic() < deadline:
            self.bridge.producer.poll(0.05)
            self.client.loop(timeout=0.01)
        self.client.disconnect()

    def _try_reconnect(self) -> None:
        try:
            self.client.reconnect()
        except OSError as error:
            log.warning("MQTT reconnect failed: %s", error)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("MQTT broker refused the bridge: %s", reason_code)
            self._refused = f"the broker refused the connection: {reason_code}"
            return
        client.subscribe([(topic, 1) for topic in self.bridge.subscriptions])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        # Ready only once the broker has the subscriptions: a reading published between CONNACK and SUBACK
        # would not be routed to this session (its very first one) and so never reach the bridge.
        refused = [t for t, code in zip(self.bridge.subscriptions, reason_codes) if code.is_failure]
        if refused:
            log.error("MQTT broker refused the subscriptions %r: %s", refused, reason_codes)
            self._refused = f"the broker refused the subscriptions {refused!r}"
            return
        self._connected.set()

    def _on_message(self, client, userdata, message) -> None:
        mid, qos = message.mid, message.qos
        ack = (lambda: client.ack(mid, qos)) if qos > 0 else None
        self.bridge.received(message.topic, message.payload, ack)


class _GmqttSession:
    """gmqtt's asyncio protocol on an event loop of the bridge's own, run by the bridge's thread.

    QoS 1 PUBLISH packets are taken from gmqtt's packet handler (``_handle_qos_1_publish_packet``); once
    Kafka has a message's records its packet id joins the acknowledgements due, and after each poll of
    librdkafka's delivery callbacks (between socket reads) the PUBACKs due go out in one write (gmqtt's
    packet builder, its connection's ``send_package``): one write per message cost ~3 us. QoS 0 messages
    come through ``on_message``. PUBACKs due when the connection drops are not sent; the broker redelivers
    those messages (at-least-once).
    """

    POLL_S = 0.002  # how often Kafka's delivery callbacks (and so the PUBACKs) run

    def __init__(self, bridge: MqttKafkaBridge):
        self.bridge = bridge
        settings = bridge.settings.bridge
        logging.getLogger("gmqtt").setLevel(logging.WARNING)  # it logs every connection at INFO
        self.loop = asyncio.new_event_loop()
        self._subscribed = asyncio.Event()
        self._refused: str | None = None
        self._paused = False
        self.client = gmqtt.Client(settings.client_id, clean_session=False, optimistic_acknowledgement=False)
        handler = self.client._package_handler
        missing = [name for name in ("_handle_qos_1_publish_packet",) if not callable(getattr(handler, name, None))] + [
            name for name in ("send_package",) if not callable(getattr(MQTTConnection, name, None))
        ]
        if missing:
            raise BridgeError(
                f"gmqtt {getattr(gmqtt, '__version__', '?')} has no {', '.join(missing)} (the bridge needs gmqtt "
                "0.8); install the pinned version or set bridge.mqtt_client=paho"
            )
        self._acks_due: list[int] = []
        handler._handle_qos_1_publish_packet = self._on_qos1
        self.client.on_message = self._on_qos0
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect
        if settings.mqtt_username:
            self.client.set_auth_credentials(settings.mqtt_username, settings.mqtt_password)

    def start(self, timeout_s: float) -> None:
        mqtt_settings = self.bridge.settings.mqtt

        async def connect() -> None:
            await self.client.connect(
                mqtt_settings.host,
                mqtt_settings.port,
                ssl=client_context(mqtt_settings) or False,
                keepalive=30,
                version=MQTTv311,
            )
            await self._subscribed.wait()

        try:
            self.loop.run_until_complete(asyncio.wait_for(connect(), timeout_s))
        except asyncio.TimeoutError:
            raise self.bridge.refused(f"within {timeout_s} s") from None
        except Exception as error:  # gmqtt's MQTTConnectError and socket errors
            raise self.bridge.refused(f"({error})") from error
        if self._refused:
            raise self.bridge.refused(f"({self._refused})")

    def run(self, stop: threading.Event) -> None:
        self.loop.run_until_complete(self._pump(stop))

    async def _pump(self, stop: threading.Event) -> None:
        bridge = self.bridge
        limit = bridge.settings.bridge.max_inflight
        while not stop.is_set():
            bridge.producer.poll(0)
            self._send_acks()
            full = bridge.metrics.inflight >= limit
            if full != self._paused:
                self._pause_reading(full)
            await asyncio.sleep(self.POLL_S)

    def _pause_reading(self, pause: bool) -> None:
        connection = getattr(self.client, "_connection", None)
        transport = getattr(connection, "_transport", None)
        if transport is None or transport.is_closing():
            return
        transport.pause_reading() if pause else transport.resume_reading()
        self._paused = pause

    def close(self, deadline_s: float) -> None:
        async def drain() -> None:
            if self._paused:
                self._pause_reading(False)
            deadline = time.monotonic() + deadline_s
            while self.bridge.metrics.inflight and time.monotonic() < deadline:
                self.bridge.producer.poll(0)
                self._send_acks()
                await asyncio.sleep(0.01)
            self.bridge.producer.poll(0)
            self._send_acks()
            self.client.reconnect_retries = 0
            try:
                await asyncio.wait_for(self.client.disconnect(), 5)
            except (asyncio.TimeoutError, OSError) as error:
                log.warning("MQTT disconnect: %s", error)

        self.loop.run_until_complete(drain())
        self.loop.close()

    def _on_qos1(self, mid, payload, topic, properties) -> None:
        self.bridge.received(topic, payload, functools.partial(self._acks_due.append, mid))

    def _send_acks(self) -> None:
        due = self._acks_due
        if not due:
            return
        connection = self.client._connection
        if connection is not None and not connection.is_closing():
            build = CommandWithMidPacket.build_package
            connection.send_package(
                b"".join([build(MQTTCommands.PUBACK, mid, False, proto_ver=MQTTv311) for mid in due])
            )
        due.clear()

    def _on_qos0(self, client, topic, payload, qos, properties) -> int:
        self.bridge.received(topic, payload, None)
        return 0

    def _on_connect(self, client, flags, rc, properties) -> None:
        client.subscribe([gmqtt.Subscription(topic, qos=1) for topic in self.bridge.subscriptions])

    def _on_subscribe(self, client, mid, qos, properties) -> None:
        # Ready only once the broker has the subscriptions (see _PahoSession._on_subscribe).
        refused = [t for t, code in zip(self.bridge.subscriptions, qos) if code >= 0x80]
        if refused:
            self._refused = f"the broker refused the subscriptions {refused!r}"
            log.error("MQTT broker refused the subscriptions %r", refused)
        self._subscribed.set()

    def _on_disconnect(self, client, packet, exc=None) -> None:
        if self.loop.is_running() and self._subscribed.is_set():
            log.warning("MQTT connection lost; gmqtt reconnects")
