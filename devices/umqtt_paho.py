"""The ``umqtt.simple.MQTTClient`` API on top of paho-mqtt, so CPython can run the meter firmware.

The fleet simulator runs tens of thousands of firmware ``Meter`` objects; one TCP connection per meter
would exhaust the machine, so meters share a few :class:`SharedConnection` objects. Each meter gets a
:class:`MeterClient` with umqtt's methods; its publishes go out on the shared connection and the
commands addressed to its topics come back through ``check_msg()``.

Differences from umqtt.simple, on purpose: a QoS 1 ``publish`` returns once paho has queued the
message in its persistent session (paho resends it after a reconnect) instead of blocking for the
PUBACK, so one slow acknowledgement does not stall a whole fleet; a publish while the connection is
down raises ``OSError`` exactly like umqtt, so the firmware keeps the reading in its buffer.

No background thread: the owner calls :meth:`SharedConnection.service` regularly (the simulator does
between meters). With paho's own loop thread every publish wakes that thread and the two fight over
the GIL, which cost several times the publish itself.
"""

from __future__ import annotations

import collections
import ssl
import threading
import time

import paho.mqtt.client as mqtt


class SharedConnection:
    """One paho MQTT connection carrying the traffic of many simulated meters."""

    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        username: str | None = None,
        password: str | None = None,
        commands_filter: str = "meters/+/commands",
        ssl_context: ssl.SSLContext | None = None,
    ):
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, clean_session=False
        )
        if username:
            self.client.username_pw_set(username, password)
        if ssl_context is not None:
            self.client.tls_set_context(ssl_context)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *args: self.connected.clear()
        self.client.on_message = self._on_message
        self.connected: threading.Event = threading.Event()
        self._commands_filter = commands_filter
        self._inboxes: dict[str, collections.deque] = {}
        self._lock = threading.Lock()
        self._host, self._port = host, port
        self._last_publish: mqtt.MQTTMessageInfo | None = None

    def start(self, timeout_s: float = 10.0) -> "SharedConnection":
        self.client.connect(self._host, self._port, keepalive=30)
        deadline = time.monotonic() + timeout_s
        while not self.connected.is_set():
            if time.monotonic() > deadline:
                raise ConnectionError(f"no MQTT session with {self._host}:{self._port} within {timeout_s} s")
            self.client.loop(timeout=0.05)
        return self

    def service(self, timeout_s: float = 0.0) -> None:
        """Run paho's network loop once: send queued publishes, read acknowledgements and commands,
        keep the connection alive, reconnect if it dropped."""
        rc = self.client.loop(timeout=timeout_s)
        if rc in (mqtt.MQTT_ERR_NO_CONN, mqtt.MQTT_ERR_CONN_LOST):
            try:
                self.client.reconnect()
            except OSError:
                pass

    def wait_until_sent(self, timeout_s: float = 120.0) -> None:
        """Block until the broker acknowledged the last message published on this connection."""
        deadline = time.monotonic() + timeout_s
        while self._last_publish is not None and not self._last_publish.is_published():
            if time.monotonic() > deadline:
                raise TimeoutError(f"MQTT broker did not acknowledge within {timeout_s} s")
            self.service(0.01)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop(timeout=0.1)

    def client_for(self, client_id: str) -> "MeterClient":
        return MeterClient(self, client_id)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not reason_code.is_failure:
            client.subscribe(self._commands_filter, qos=1)
            self.connected.set()

    def _on_message(self, client, userdata, message) -> None:
        with self._lock:
            inbox = self._inboxes.get(message.topic)
            if inbox is not None:
                inbox.append((message.topic.encode(), message.payload))

    def _register(self, topic: str) -> collections.deque:
        with self._lock:
            return self._inboxes.setdefault(topic, collections.deque(maxlen=100))


class MeterClient:
    """One meter's view of a :class:`SharedConnection`, with the umqtt.simple.MQTTClient methods."""

    def __init__(self, shared: SharedConnection, client_id: str):
        self.shared = shared
        self.client_id = client_id
        self._callback = None
        self._inboxes: list[collections.deque] = []

    def connect(self, clean_session: bool = True) -> int:
        if not self.shared.connected.is_set():
            raise OSError("MQTT connection down")
        return 0

    def disconnect(self) -> None:
        pass

    def ping(self) -> None:
        if not self.shared.connected.is_set():
            raise OSError("MQTT connection down")

    def set_callback(self, callback) -> None:
        self._callback = callback

    def subscribe(self, topic, qos: int = 0) -> None:
        topic = topic.decode() if isinstance(topic, bytes) else topic
        if "+" in topic or "#" in topic:
            raise ValueError("a simulated meter subscribes to its own topics only")
        self._inboxes.append(self.shared._register(topic))

    def publish(self, topic, msg, retain: bool = False, qos: int = 0) -> None:
        if not self.shared.connected.is_set():
            raise OSError("MQTT connection down")
        topic = topic.decode() if isinstance(topic, bytes) else topic
        info = self.shared.client.publish(topic, msg, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise OSError(f"publish failed: {mqtt.error_string(info.rc)}")
        self.shared._last_publish = info

    def check_msg(self) -> None:
        for inbox in self._inboxes:
            while inbox:
                topic, payload = inbox.popleft()
                if self._callback is not None:
                    self._callback(topic, payload)

    def wait_msg(self) -> None:
        self.check_msg()


class MQTTException(Exception):
    """umqtt.simple's error for a refused login (the CONNACK code is its argument)."""


class MQTTClient:
    """umqtt.simple's ``MQTTClient`` on its own paho connection, for running one real meter under CPython
    (with its own account, over TLS when given an ``ssl`` context). Like umqtt.simple it is synchronous:
    ``connect`` waits for the CONNACK, a QoS 1 ``publish`` for the PUBACK, and a dropped connection
    surfaces as ``OSError`` from the next call. ``user`` and ``pswd`` are read at each ``connect``."""

    def __init__(self, client_id, server, port=0, user=None, password=None, keepalive=0, ssl=None, timeout_s=10.0):
        self.client_id = client_id.decode() if isinstance(client_id, bytes) else client_id
        self.server, self.port = server, port or (8883 if ssl else 1883)
        self.user, self.pswd, self.keepalive, self.ssl = user, password, keepalive, ssl
        self.timeout_s = timeout_s
        self.cb = None
        self.sock = None  # not None while connected, like umqtt.simple
        self._client: mqtt.Client | None = None
        self._connack = None
        self._incoming: collections.deque = collections.deque()

    def set_callback(self, callback) -> None:
        self.cb = callback

    def connect(self, clean_session: bool = True) -> bool:
        self._drop()
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv311,
            clean_session=clean_session,
        )
        if self.user:
            client.username_pw_set(self.user, self.pswd)
        if self.ssl is not None:
            client.tls_set_context(self.ssl)
        client.on_connect = lambda c, u, flags, reason_code, p: setattr(self, "_connack", reason_code)
        client.on_message = lambda c, u, message: self._incoming.append((message.topic.encode(), message.payload))
        client.reconnect_delay_set(3600, 3600)  # umqtt.simple never reconnects by itself: the firmware does
        self._connack = None
        client.connect(self.server, self.port, keepalive=self.keepalive or 60)
        self._wait(client, lambda: self._connack is not None, "CONNACK")
        if self._connack.is_failure:
            self._drop(client)
            raise MQTTException(self._connack.value)
        self._client, self.sock = client, True
        return False

    def disconnect(self) -> None:
        if self._client is None:
            raise AttributeError("'NoneType' object has no attribute 'write'")  # as umqtt.simple does
        self._client.disconnect()
        self._drop()

    def ping(self) -> None:
        self._loop()

    def subscribe(self, topic, qos: int = 0) -> None:
        client = self._require()
        done: list = []
        client.on_subscribe = lambda *args: done.append(True)
        client.subscribe(topic.decode() if isinstance(topic, bytes) else topic, qos=qos)
        self._wait(client, lambda: done, "SUBACK")

    def publish(self, topic, msg, retain: bool = False, qos: int = 0) -> None:
        client = self._require()
        info = client.publish(topic.decode() if isinstance(topic, bytes) else topic, bytes(msg), qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self._drop()
            raise OSError(f"publish failed: {mqtt.error_string(info.rc)}")
        if qos:
            self._wait(client, info.is_published, "PUBACK")

    def check_msg(self):
        self._loop()
        if not self._incoming:
            return None
        topic, payload = self._incoming.popleft()
        if self.cb is not None:
            self.cb(topic, payload)
        return True

    def wait_msg(self):
        return self.check_msg()

    def _require(self) -> mqtt.Client:
        if self._client is None:
            raise OSError("MQTT connection down")
        return self._client

    def _loop(self, timeout_s: float = 0.0) -> None:
        client = self._require()
        if client.loop(timeout=timeout_s) != mqtt.MQTT_ERR_SUCCESS or not client.is_connected():
            self._drop()
            raise OSError("MQTT connection lost")

    def _wait(self, client: mqtt.Client, done, what: str) -> None:
        deadline = time.monotonic() + self.timeout_s
        while not done():
            if client.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS or time.monotonic() > deadline:
                self._drop(client)
                raise OSError(f"MQTT connection lost waiting for {what}")

    def _drop(self, client: mqtt.Client | None = None) -> None:
        for each in {id(c): c for c in (client, self._client) if c is not None}.values():
            sock = each.socket()
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass
        self._client, self.sock = None, None
