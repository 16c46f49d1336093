"""Small paho-mqtt helpers for tests: connected clients, collecting subscribers, and a service (the bridge,
the downlink) run on a thread of its own."""

from __future__ import annotations

import contextlib
import ssl
import threading
import time

import paho.mqtt.client as mqtt


def connect(
    host: str,
    port: int,
    username: str | None,
    password: str | None,
    client_id: str = "",
    timeout_s: float = 10.0,
    ca_file: str | None = None,
) -> mqtt.Client:
    """A connected client with its network loop running (over TLS, checking the broker's certificate
    against ``ca_file``, when one is given); raises ConnectionRefusedError if refused."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    if username:
        client.username_pw_set(username, password)
    if ca_file:
        client.tls_set_context(ssl.create_default_context(cafile=ca_file))
    client.max_inflight_messages_set(1000)
    client.connect_timeout = timeout_s  # paho's own default (5 s) would cut the TLS handshake short of timeout_s
    result: dict = {}
    done = threading.Event()

    def on_connect(c, userdata, flags, reason_code, properties):
        result["rc"] = reason_code
        done.set()

    client.on_connect = on_connect
    client.connect(host, port)
    client.loop_start()
    if not done.wait(timeout_s):
        client.loop_stop()
        raise TimeoutError("no CONNACK")
    if result["rc"].is_failure:
        client.loop_stop()
        raise ConnectionRefusedError(str(result["rc"]))
    return client


@contextlib.contextmanager
def running(service):
    """``service.start()``, then ``service.run(stop)`` on a thread until the block ends: yields the thread."""
    service.start()
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        thread.join(timeout=60)


def stack_connect(
    stack, username: str | None, password: str | None, client_id: str = "", timeout_s: float = 10.0
) -> mqtt.Client:
    """:func:`connect` to the embedded stack's mosquitto, over TLS when the stack has it."""
    info = stack.info
    return connect(info.mqtt_host, info.mqtt_port, username, password, client_id, timeout_s, ca_file=info.mqtt_ca_file)


class Collector:
    """Subscribes and keeps (topic, payload) of every message received."""

    def __init__(self, client: mqtt.Client, topic: str, qos: int = 1):
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        client.on_message = self._on_message
        subscribed = threading.Event()
        client.on_subscribe = lambda *args: subscribed.set()
        client.subscribe(topic, qos=qos)
        subscribed.wait(5)

    def _on_message(self, client, userdata, message):
        with self._lock:
            self.messages.append((message.topic, message.payload))

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[tuple[str, bytes]]:
        deadline = time.monotonic() + timeout_s
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.messages)
