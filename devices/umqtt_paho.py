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
    ):
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, clean_session=False
        )
        if username:
            self.client.username_pw_set(username, password)
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
