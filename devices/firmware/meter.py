"""The smart meter's core: sample, buffer, publish, reconnect, receive commands.

Hardware-independent: runs unchanged on MicroPython (ESP32) and CPython (tests, fleet simulator).
Everything it touches comes in from outside: a metering-chip driver with ``read() -> dict``, an MQTT
client with the ``umqtt.simple.MQTTClient`` API, and the time, passed to :meth:`Meter.step` as Unix
epoch milliseconds. Nothing here blocks except the MQTT client's own calls.

MicroPython constraints kept here: no dataclasses, no typing, no walrus, no f-strings; ``json``,
``hashlib`` and ``binascii`` (built into MicroPython) are the only imports. Floats are single precision on most ESP32 builds, so the energy integrator keeps
its running total as an integer (millijoules) and converts only when reporting.

Password rotation: a ``{"type": "credentials", "id", "password"}`` message on the meter's own
credentials topic (the ACL lets only the broker's service account write it and only this meter read
it) is stored through ``save_password`` as the pending password and confirmed on the status topic with
``proof`` = SHA-256 of ``id:password`` (so a confirmation cannot be forged without the password); it is
never kept in ``last_command`` or passed to ``on_command``, and refused on the commands topic. The next
login tries the pending password first and the current one after it, so the meter gets in whether or
not the broker has switched yet; a login with the pending one makes it the current one.

Delivery is at least once: a reading leaves the buffer only after the QoS 1 publish that carried it
returned (umqtt.simple waits for the broker's PUBACK); if the connection drops between the broker
storing it and the PUBACK arriving, the reading is published again after reconnecting. Consumers
de-duplicate by ``(meter_id, ts_ms)``.
"""

import binascii
import hashlib
import json

SCHEMA_VERSION = 1

_MJ_PER_KWH = 3600000000  # 1 kWh = 3.6e6 J = 3.6e9 mJ; 1 W for 1 ms = 1 mJ

DEFAULTS = {
    "sample_interval_ms": 1000,
    "publish_interval_ms": 10000,
    "batch_max": 20,
    "buffer_capacity": 600,
    "backoff_min_ms": 1000,
    "backoff_max_ms": 60000,
    "backoff_jitter": 0.2,  # a reconnect delay is shortened by up to this fraction, at random
    "readings_topic": "meters/{household_id}/readings",
    "commands_topic": "meters/{household_id}/commands",
    "credentials_topic": "meters/{household_id}/credentials",
    "status_topic": "meters/{household_id}/status",
    "clean_session": False,  # keep the broker session, so commands sent while offline still arrive
    "max_messages_per_step": 10,  # catch-up after an outage is spread over steps, sampling goes on
    "max_commands_per_step": 5,
}


def _dumps(obj):
    """Compact JSON (MicroPython's ``json.dumps`` takes ``separators`` only in recent versions)."""
    try:
        return json.dumps(obj, separators=(",", ":"))
    except TypeError:
        return json.dumps(obj)


def _round(value, digits):
    """``value`` rounded, or None when it is missing or not a finite number (NaN, inf)."""
    if value is None:
        return None
    value = float(value)
    if not -1e15 < value < 1e15:  # false for NaN and both infinities
        return None
    return round(value, digits)


class RingBuffer:
    """Bounded FIFO of fixed capacity; appending to a full buffer overwrites the oldest item.

    A preallocated list with a head index: no allocation per reading and O(1) at both ends, which
    matters on a board with ~100 kB of heap.

    >>> ring = RingBuffer(2)
    >>> ring.append("a"), ring.append("b"), ring.append("c")
    (False, False, True)
    >>> ring.peek(5)
    ['b', 'c']
    """

    def __init__(self, capacity):
        if capacity < 1:
            raise ValueError("buffer capacity must be at least 1, got %r" % (capacity,))
        self.capacity = capacity
        self._items = [None] * capacity
        self._head = 0  # index of the oldest item
        self._count = 0

    def __len__(self):
        return self._count

    def __iter__(self):
        return iter(self.peek(self._count))

    def append(self, item):
        """Add ``item`` as the newest; returns True when the oldest item was dropped to make room."""
        tail = (self._head + self._count) % self.capacity
        self._items[tail] = item
        if self._count == self.capacity:
            self._head = (self._head + 1) % self.capacity
            return True
        self._count += 1
        return False

    def peek(self, n):
        """The ``n`` oldest items (fewer if the buffer holds fewer), oldest first, left in place."""
        n = min(n, self._count)
        return [self._items[(self._head + i) % self.capacity] for i in range(n)]

    def discard(self, n):
        """Remove the ``n`` oldest items."""
        n = min(n, self._count)
        for i in range(n):
            self._items[(self._head + i) % self.capacity] = None  # let the reading be collected
        self._head = (self._head + n) % self.capacity
        self._count -= n


class Meter:
    """One smart meter: a driver sampled on a schedule, readings buffered and published over MQTT.

    Parameters
    ----------
    config : dict
        ``household_id`` and ``meter_id`` (required) and the optional keys of :data:`DEFAULTS`.
    driver : object
        ``read()`` returning ``power_w``, ``voltage_v``, ``current_a``, ``energy_kwh`` (float or None);
        raises on a failed read.
    mqtt : object
        A client with the ``umqtt.simple.MQTTClient`` API; topics and messages are bytes.
    clock : object, optional
        Anything with ``now_ms()``; only seeds the reconnect jitter, so meters booted together
        spread their reconnects. Time itself is passed to :meth:`step`.
    on_command : callable, optional
        Called with each valid command (a dict); also settable later as ``meter.on_command``.

    Attributes
    ----------
    buffer : RingBuffer
        Readings not yet acknowledged by the broker, as compact tuples; :meth:`pending` decodes them.
    stats : dict
        Counters ``sampled``, ``published`` (readings), ``dropped`` (buffer overflow), ``buffered``
        (now), ``reconnects`` (successful connects after the first), ``driver_errors``, ``bad_commands``.
    connected : bool
    last_command : dict or None
        The latest valid command from the commands topic.
    last_error : str or None
        The latest driver, MQTT or command-hook error, for diagnostics.
    """

    def __init__(self, config, driver, mqtt, clock=None, on_command=None, save_password=None, next_password=None):
        for key in ("household_id", "meter_id"):
            if not config.get(key):
                raise ValueError("meter config needs %r" % key)
        settings = {}
        for key in DEFAULTS:
            settings[key] = config.get(key, DEFAULTS[key])
        self.household_id = str(config["household_id"])
        self.meter_id = str(config["meter_id"])
        self.sample_interval_ms = int(settings["sample_interval_ms"])
        self.publish_interval_ms = int(settings["publish_interval_ms"])
        self.batch_max = max(1, int(settings["batch_max"]))
        self.backoff_min_ms = int(settings["backoff_min_ms"])
        self.backoff_max_ms = max(self.backoff_min_ms, int(settings["backoff_max_ms"]))
        self.backoff_jitter = float(settings["backoff_jitter"])
        self.clean_session = bool(settings["clean_session"])
        self.max_messages_per_step = max(1, int(settings["max_messages_per_step"]))
        self.max_commands_per_step = max(1, int(settings["max_commands_per_step"]))
        self.readings_topic = settings["readings_topic"].format(household_id=self.household_id).encode()
        self.commands_topic = settings["commands_topic"].format(household_id=self.household_id).encode()
        self.credentials_topic = settings["credentials_topic"].format(household_id=self.household_id).encode()
        self.status_topic = settings["status_topic"].format(household_id=self.household_id).encode()

        self.driver = driver
        self.mqtt = mqtt
        self.on_command = on_command
        self.save_password = save_password  # (password, pending) -> None: keeps it across reboots
        self._password = getattr(mqtt, "pswd", None)  # umqtt.simple's attribute
        self._next_password = next_password
        self.buffer = RingBuffer(int(settings["buffer_capacity"]))
        self.stats = {
            "sampled": 0,
            "published": 0,
            "dropped": 0,
            "buffered": 0,
            "reconnects": 0,
            "driver_errors": 0,
            "bad_commands": 0,
            "password_changes": 0,
        }
        self.connected = False
        self.last_command = None
        self.last_error = None

        # Schedules, in epoch ms; None = due at the next step.
        self._next_sample_ms = None
        self._next_connect_ms = None
        self._last_publish_ms = None
        self._last_now_ms = None
        self._backoff_ms = self.backoff_min_ms
        self._ever_connected = False

        # Energy integrator for drivers without an energy register (CT clamps).
        self._energy_mj = 0  # integer millijoules: exact on single-precision float boards
        self._last_power_w = None
        self._last_power_ms = None

        self._rand_state = self._seed(clock)
        # umqtt.simple requires the callback before subscribe(); set it once, it survives reconnects.
        mqtt.set_callback(self._on_message)

    # -- the cooperative loop ---------------------------------------------------------------------

    def step(self, now_ms):
        """One iteration: sample if due, (re)connect if due, publish if due, then take commands.

        Parameters
        ----------
        now_ms : int
            Current Unix epoch time in milliseconds.
        """
        now_ms = int(now_ms)
        if self._last_now_ms is not None and now_ms < self._last_now_ms:
            self._clock_went_back(now_ms)
        self._last_now_ms = now_ms

        if self._next_sample_ms is None or now_ms >= self._next_sample_ms:
            self.sample(now_ms)
            self._schedule_next_sample(now_ms)

        if not self.connected and (self._next_connect_ms is None or now_ms >= self._next_connect_ms):
            self._connect(now_ms)

        if self.connected and len(self.buffer) and self._publish_due(now_ms):
            self.publish_pending(now_ms, self.max_messages_per_step)

        if self.connected:
            self._check_commands(now_ms)

    def _schedule_next_sample(self, now_ms):
        # Keep a steady cadence (no drift from step jitter), but after a stall (a long blocking
        # publish, a clock jump forward) start again from now instead of sampling in a burst.
        if self._next_sample_ms is None:
            self._next_sample_ms = now_ms
        self._next_sample_ms += self.sample_interval_ms
        if self._next_sample_ms <= now_ms:
            self._next_sample_ms = now_ms + self.sample_interval_ms

    def _clock_went_back(self, now_ms):
        """The wall clock jumped backwards (NTP correction): restart every schedule from now."""
        self._next_sample_ms = now_ms
        if self._next_connect_ms is not None:
            self._next_connect_ms = min(self._next_connect_ms, now_ms + self._backoff_ms)
        if self._last_publish_ms is not None:
            self._last_publish_ms = now_ms
        self._last_power_ms = None  # do not integrate energy over a negative interval

    # -- sampling ---------------------------------------------------------------------------------

    def sample(self, now_ms):
        """Read the driver once and buffer the reading.

        Parameters
        ----------
        now_ms : int
            The reading's timestamp, Unix epoch ms.

        Returns
        -------
        dict or None
            The reading as published (see :meth:`reading_dict`), or None when the driver failed
            (counted in ``stats["driver_errors"]``).
        """
        now_ms = int(now_ms)
        try:
            values = self.driver.read()
            power_w = _round(values.get("power_w"), 6)
            if power_w is None:
                raise ValueError("driver returned no finite power_w: %r" % (values.get("power_w"),))
        except Exception as exc:  # any failure of the chip or its bus: no reading this time
            self.stats["driver_errors"] += 1
            self.last_error = "driver: %r" % (exc,)
            return None

        energy_kwh = values.get("energy_kwh")
        if energy_kwh is None:
            energy_kwh = self._integrate(now_ms, power_w)
        current_a = _round(values.get("current_a"), 3)
        if current_a is not None:
            current_a = abs(current_a)  # RMS current is a magnitude; the sign of power_w gives the direction
        record = (now_ms, _round(power_w, 1), _round(values.get("voltage_v"), 1), current_a, _round(energy_kwh, 4))
        if self.buffer.append(record):
            self.stats["dropped"] += 1
        self.stats["sampled"] += 1
        self.stats["buffered"] = len(self.buffer)
        return self.reading_dict(record)

    def _integrate(self, now_ms, power_w):
        """Running import energy in kWh, by the trapezoid rule between consecutive samples.

        kWh = W * dt_ms / 3.6e9 with W the mean of the two samples' power. Exported power (negative)
        does not run the counter backwards: the total is the energy imported since boot.
        """
        if self._last_power_ms is not None and now_ms > self._last_power_ms:
            mean_w = (self._last_power_w + power_w) / 2.0
            if mean_w > 0:
                self._energy_mj += int(mean_w * (now_ms - self._last_power_ms) + 0.5)
        self._last_power_w = power_w
        self._last_power_ms = now_ms
        return self._energy_mj / _MJ_PER_KWH

    @property
    def energy_kwh(self):
        """Energy integrated from power since boot, kWh (used when the driver has no energy register)."""
        return self._energy_mj / _MJ_PER_KWH

    def reading_dict(self, record):
        """The JSON object of one buffered reading; keys whose value is None are left out."""
        reading = {
            "v": SCHEMA_VERSION,
            "household_id": self.household_id,
            "meter_id": self.meter_id,
            "ts_ms": record[0],
            "power_w": record[1],
        }
        names = ("voltage_v", "current_a", "energy_kwh")
        for i in range(3):
            if record[2 + i] is not None:
                reading[names[i]] = record[2 + i]
        return reading

    def pending(self):
        """Buffered readings not yet acknowledged by the broker, oldest first, as dicts."""
        return [self.reading_dict(record) for record in self.buffer]

    # -- publishing -------------------------------------------------------------------------------

    def _publish_due(self, now_ms):
        return (
            self._last_publish_ms is None
            or now_ms - self._last_publish_ms >= self.publish_interval_ms
            or len(self.buffer) >= self.batch_max
        )

    def publish_pending(self, now_ms, max_messages=None):
        """Publish buffered readings with QoS 1, oldest first, at most ``batch_max`` per message.

        A message carries one reading as a JSON object, several as a JSON array. Stops at the first
        failed publish (the meter is then disconnected and the rest stays buffered).

        Parameters
        ----------
        now_ms : int
            Current Unix epoch ms (starts the next publish interval).
        max_messages : int, optional
            At most this many messages (:meth:`step` passes ``max_messages_per_step``, so a
            catch-up is spread over steps); None publishes everything (a final flush).

        Returns
        -------
        int
            Readings published (and removed from the buffer).
        """
        sent = 0
        messages = 0
        while max_messages is None or messages < max_messages:
            batch = self.buffer.peek(self.batch_max)
            if not batch:
                break
            if len(batch) == 1:
                payload = _dumps(self.reading_dict(batch[0]))
            else:
                payload = _dumps([self.reading_dict(record) for record in batch])
            try:
                self.mqtt.publish(self.readings_topic, payload.encode(), retain=False, qos=1)
            except Exception as exc:  # OSError from the socket, MQTTException from umqtt
                self._lost(now_ms, "publish", exc)
                return sent
            # Only now, with the PUBACK in, may the readings leave the buffer.
            self.buffer.discard(len(batch))
            messages += 1
            sent += len(batch)
            self.stats["published"] += len(batch)
            self.stats["buffered"] = len(self.buffer)
        # Everything sent: the next publish waits a full interval. Cut short by the per-step limit:
        # leave the publish due, so the catch-up goes on at the next step.
        self._last_publish_ms = None if len(self.buffer) else now_ms
        return sent

    # -- connection -------------------------------------------------------------------------------

    def _connect(self, now_ms):
        passwords = [self._password]
        if self._next_password is not None:
            passwords.insert(0, self._next_password)  # the broker may have switched already
        for n, password in enumerate(passwords):
            if password is not None:
                self.mqtt.pswd = password
            try:
                self.mqtt.connect(clean_session=self.clean_session)
                self.mqtt.subscribe(self.commands_topic, qos=1)
                self.mqtt.subscribe(self.credentials_topic, qos=1)
            except Exception as exc:
                if n + 1 < len(passwords):
                    self._close_quietly()
                    continue
                self._lost(now_ms, "connect", exc)
                return False
            if password is not None and password == self._next_password:
                self._promote(password)
            break
        self.connected = True
        if self._ever_connected:
            self.stats["reconnects"] += 1
        self._ever_connected = True
        self._backoff_ms = self.backoff_min_ms
        self._next_connect_ms = None
        self._last_publish_ms = None  # flush what piled up while offline right away
        return True

    def _promote(self, password):
        """The broker took the pending password: it is the meter's password from now on."""
        self._password, self._next_password = password, None
        self.stats["password_changes"] += 1
        self._save(password, False)

    def _save(self, password, pending):
        if self.save_password is not None:
            try:
                self.save_password(password, pending)
            except Exception as exc:
                self.last_error = "save_password: %r" % (exc,)
                return False
        return True

    def _on_credentials(self, command):
        """Store a new password as pending and confirm it; the broker switches only after this."""
        request_id, password = command.get("id"), command.get("password")
        if not isinstance(request_id, str) or not isinstance(password, str) or not 16 <= len(password) <= 128:
            self.stats["bad_commands"] += 1
            return
        if not self._save(password, True):
            return  # not kept: confirming would lock the meter out after its next reboot
        self._next_password = password
        proof = binascii.hexlify(hashlib.sha256((request_id + ":" + password).encode()).digest()).decode()
        answer = {"type": "credentials_ack", "id": request_id, "proof": proof, "household_id": self.household_id}
        answer["meter_id"] = self.meter_id
        try:
            self.mqtt.publish(self.status_topic, _dumps(answer).encode(), qos=1)
        except Exception as exc:
            self._lost(self._last_now_ms or 0, "publish", exc)

    def _lost(self, now_ms, what, exc):
        """Mark the meter disconnected and schedule the next connect attempt (exponential backoff)."""
        self.last_error = "mqtt %s: %r" % (what, exc)
        self.connected = False
        self._close_quietly()
        self._next_connect_ms = now_ms + self.reconnect_delay_ms()
        self._backoff_ms = min(self._backoff_ms * 2, self.backoff_max_ms)

    def reconnect_delay_ms(self):
        """The current backoff delay shortened by up to ``backoff_jitter`` of it, at random."""
        jitter = int(self._backoff_ms * self.backoff_jitter * self._random())
        return self._backoff_ms - jitter

    def _close_quietly(self):
        # Free the broken socket (an ESP32 has only a handful) without caring whether DISCONNECT
        # could still be sent.
        try:
            self.mqtt.disconnect()
        except Exception:
            sock = getattr(self.mqtt, "sock", None)
            if sock is not None:
                try:
                    sock.close()
                except Exception:
                    pass

    # -- commands ---------------------------------------------------------------------------------

    def _check_commands(self, now_ms):
        try:
            for _ in range(self.max_commands_per_step):
                if self.mqtt.check_msg() is None:  # nothing (more) waiting
                    break
        except Exception as exc:
            self._lost(now_ms, "check_msg", exc)

    def _on_message(self, topic, msg):
        """MQTT callback: keep the latest valid command (a JSON object), count the invalid ones."""
        if isinstance(topic, str):
            topic = topic.encode()
        topic = bytes(topic)
        if topic != self.commands_topic and topic != self.credentials_topic:
            return
        try:
            command = json.loads(msg if isinstance(msg, str) else bytes(msg).decode())
        except Exception:  # not UTF-8 or not JSON
            command = None
        if not isinstance(command, dict):
            self.stats["bad_commands"] += 1
            return
        if (command.get("type") == "credentials") != (topic == self.credentials_topic):
            self.stats["bad_commands"] += 1  # a password only on the credentials topic, and only that there
            return
        if topic == self.credentials_topic:
            self._on_credentials(command)
            return
        self.last_command = command
        if self.on_command is not None:
            try:
                self.on_command(command)
            except Exception as exc:  # a faulty hook must not take the meter offline
                self.last_error = "on_command: %r" % (exc,)

    # -- jitter randomness ------------------------------------------------------------------------

    def _seed(self, clock):
        """A per-meter seed: the meter id's characters, plus boot time when a clock is given."""
        seed = 2463534242
        for ch in self.meter_id:
            seed = (seed * 31 + ord(ch)) & 0xFFFFFFFF
        if clock is not None:
            try:
                seed ^= int(clock.now_ms()) & 0xFFFFFFFF
            except Exception:
                pass
        return seed or 2463534242  # xorshift must not start at zero

    def _random(self):
        """Uniform in [0, 1) from a xorshift32 generator (no ``random`` module needed)."""
        x = self._rand_state
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self._rand_state = x
        return x / 4294967296.0
