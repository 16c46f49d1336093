"""The ESP32 smart-meter firmware (devices/firmware), run under CPython with fakes of the hardware.

The fakes in tests/fakes stand in for MicroPython's ``machine``, ``network``, ``ntptime`` and
``umqtt.simple``; the ``hw`` fixture puts them first on ``sys.path`` and forgets them afterwards.
"""

import ast
import doctest
import importlib
import hashlib
import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from gridflow.devices.firmware import drivers, meter
from gridflow.devices.firmware.drivers import (
    CTClamp,
    DriverError,
    PZEM004T,
    crc16_modbus,
    decode_pzem_reply,
    pzem_request,
    rms_current_a,
    with_crc,
)
from gridflow.devices.firmware.meter import Meter, RingBuffer
from gridflow.readings import parse_reading

FAKES = Path(__file__).parent / "fakes"
FIRMWARE = Path(meter.__file__).parent
HARDWARE_MODULES = ("machine", "network", "ntptime", "umqtt", "umqtt.simple")
MAIN = "gridflow.devices.firmware.main"

T0 = 1_768_435_200_000  # 2026-01-15T00:00:00Z
HH, METER_ID = "h-0042", "m-0042-1"
READINGS = b"meters/h-0042/readings"
COMMANDS = b"meters/h-0042/commands"
CREDENTIALS = b"meters/h-0042/credentials"


@pytest.fixture
def hw(monkeypatch):
    """The fake hardware modules, freshly imported from tests/fakes and removed again afterwards."""
    monkeypatch.syspath_prepend(str(FAKES))
    for name in HARDWARE_MODULES + (MAIN,):
        sys.modules.pop(name, None)
    modules = SimpleNamespace(**{name.replace(".", "_"): importlib.import_module(name) for name in HARDWARE_MODULES})
    yield modules
    for name in HARDWARE_MODULES + (MAIN,):
        sys.modules.pop(name, None)


class ScriptedDriver:
    """A metering chip whose readings are given: dicts are returned, exceptions raised, the last repeats."""

    def __init__(self, *script):
        self.script = list(script) or [{"power_w": 500.0, "voltage_v": 230.0, "current_a": 2.174, "energy_kwh": 12.5}]
        self.reads = 0

    def read(self):
        item = self.script[min(self.reads, len(self.script) - 1)]
        self.reads += 1
        if isinstance(item, Exception):
            raise item
        return dict(item)


def make_meter(hw, driver=None, **config):
    settings = {"household_id": HH, "meter_id": METER_ID, "backoff_jitter": 0.0}
    settings.update(config)
    client = hw.umqtt_simple.MQTTClient(METER_ID.encode(), "broker.test")
    return Meter(settings, driver or ScriptedDriver(), client), client


def run_steps(m, start_ms, end_ms, every_ms=1000):
    """Step the meter at ``start_ms``, ``start_ms + every_ms``, ... up to and including ``end_ms``."""
    now = start_ms
    while now <= end_ms:
        m.step(now)
        now += every_ms
    return now


def published_readings(client, topic=READINGS):
    """Every reading published on ``topic``, in order, with the size of the message that carried it."""
    readings, sizes = [], []
    for payload in client.payloads(topic):
        data = json.loads(payload)
        batch = data if isinstance(data, list) else [data]
        sizes.append(len(batch) if isinstance(data, list) else 1)
        readings.extend(batch)
    return readings, sizes


# -- Modbus / PZEM-004T ---------------------------------------------------------------------------


def test_crc16_modbus_known_values(hw):
    # Request "read 10 input registers from 0x0000" to slave 1: CRC 0x0D70, sent low byte first.
    assert crc16_modbus(b"\x01\x04\x00\x00\x00\x0a") == 0x0D70
    assert pzem_request(0x01) == bytes.fromhex("01 04 00 00 00 0a 70 0d")
    assert pzem_request() == bytes.fromhex("f8 04 00 00 00 0a 64 64")  # the general address
    assert crc16_modbus(b"123456789") == 0x4B37  # the catalogue check value of CRC-16/MODBUS
    for data in (b"", b"\x00", bytes(range(256)), b"\xff" * 31):
        assert crc16_modbus(data) == hw.machine.modbus_crc(data)  # the fake's independent CRC


# A reply worked out by hand: registers big-endian, 32-bit values low word first.
#   reg0 voltage  230.1 V   -> 2301   = 0x08FD
#   reg1-2 current 70.000 A -> 70000  = 0x0001_1170 -> 0x1170, 0x0001
#   reg3-4 power 16100.0 W  -> 161000 = 0x0002_74E8 -> 0x74E8, 0x0002
#   reg5-6 energy 123456 Wh -> 123456 = 0x0001_E240 -> 0xE240, 0x0001
#   reg7 50.0 Hz -> 0x01F4, reg8 PF 1.00 -> 0x0064, reg9 alarm 0
HAND_WORKED_REPLY = bytes.fromhex("01 04 1408fd1170 000174e8 0002e240 000101f400640000f3 33")


def test_pzem_decodes_a_hand_worked_frame(hw):
    uart = hw.machine.UART(2)
    uart.reply = HAND_WORKED_REPLY
    values = PZEM004T(uart, address=0x01).read()
    assert uart.requests == [bytes.fromhex("01 04 00 00 00 0a 70 0d")]
    assert values == {
        "voltage_v": pytest.approx(230.1),
        "current_a": pytest.approx(70.0),
        "power_w": pytest.approx(16100.0),
        "energy_kwh": pytest.approx(123.456),
    }
    assert set(values) == {"power_w", "voltage_v", "current_a", "energy_kwh"}


def test_pzem_reads_the_emulated_chip(hw):
    uart = hw.machine.UART(2)
    uart.set(voltage_v=229.7, current_a=12.345, power_w=2789.4, energy_kwh=4321.987)
    uart.chunk = 10  # the reply trickles in over three reads
    uart.line_noise(b"\x00\x13")  # the tail of some earlier reply is still waiting
    assert PZEM004T(uart).read() == {
        "voltage_v": pytest.approx(229.7),
        "current_a": pytest.approx(12.345),
        "power_w": pytest.approx(2789.4),
        "energy_kwh": pytest.approx(4321.987),
    }


@pytest.mark.parametrize(
    "fault, words",
    [
        ({"silent": True}, "timeout"),
        ({"corrupt_crc": True}, "bad CRC"),
        ({"exception_code": 0x02}, "exception reply, code 0x02 (illegal data address)"),
        ({"reply": HAND_WORKED_REPLY[:12]}, "short reply, 12 of 25 bytes"),
        ({"reply": with_crc(bytes([0x01, 0x03, 0x14]) + bytes(20))}, "unexpected reply header"),  # holding registers
    ],
)
def test_pzem_faults_raise_driver_error(hw, fault, words):
    uart = hw.machine.UART(2)
    for name, value in fault.items():
        setattr(uart, name, value)
    with pytest.raises(DriverError, match="PZEM-004T") as error:
        PZEM004T(uart).read()
    assert words in str(error.value)


def test_pzem_rejects_a_reply_from_another_address(hw):
    frame = with_crc(bytes([0x02]) + HAND_WORKED_REPLY[1:-2])
    assert decode_pzem_reply(frame)["voltage_v"] == pytest.approx(230.1)  # the general address takes any
    with pytest.raises(DriverError, match="address 0x02, expected 0x01"):
        decode_pzem_reply(frame, address=0x01)


# -- CT clamp -----------------------------------------------------------------------------------------


def test_ct_clamp_rms_of_a_known_sine_within_one_percent(hw):
    adc = hw.machine.ADC(hw.machine.Pin(34))
    adc.amplitude_counts, adc.offset_counts, adc.samples_per_cycle = 1000.0, 1900.0, 20
    delays = []
    clamp = CTClamp(
        adc,
        samples=200,
        burden_ohms=33.0,
        turns=2000,
        nominal_voltage_v=230.0,
        power_factor=0.9,
        sample_delay=lambda: delays.append(1),
    )
    values = clamp.read()
    # Peak 1000 counts -> RMS 707.1 counts -> 707.1 * 3.3 V / 4095 = 0.5698 V over 33 ohm
    # = 17.27 mA secondary -> x 2000 turns = 34.54 A primary; 230 V * 34.54 A * 0.9 = 7149 W.
    expected_a = 1000 / math.sqrt(2) * 3.3 / 4095 / 33.0 * 2000
    assert expected_a == pytest.approx(34.536, abs=1e-3)
    assert values["current_a"] == pytest.approx(expected_a, rel=0.01)
    assert values["power_w"] == pytest.approx(230.0 * expected_a * 0.9, rel=0.01)
    assert values["voltage_v"] is None and values["energy_kwh"] is None
    assert adc.reads == 200 and len(delays) == 200


def test_ct_clamp_removes_the_dc_offset():
    low = rms_current_a([1000 + 500, 1000 - 500] * 10, burden_ohms=20.0, turns=1000, adc_vref=1.0, adc_max=1000)
    high = rms_current_a([3000 + 500, 3000 - 500] * 10, burden_ohms=20.0, turns=1000, adc_vref=1.0, adc_max=1000)
    assert low == high == pytest.approx(500 / 1000 / 20.0 * 1000)  # 0.5 V RMS / 20 ohm * 1000 turns = 25 A
    assert rms_current_a([2048] * 50, 33.0, 2000) == 0.0  # no load: no current
    with pytest.raises(DriverError):
        rms_current_a([2048], 33.0, 2000)


# -- the meter: sampling, publishing, reconnecting ------------------------------------------------


def test_first_step_connects_subscribes_and_publishes_a_valid_reading(hw):
    m, client = make_meter(hw)
    m.step(T0)
    assert m.connected and client.clean_sessions == [False]
    assert client.subscriptions == [(COMMANDS, 1), (CREDENTIALS, 1)]
    assert len(client.published) == 1
    topic, payload, retain, qos = client.published[0]
    assert (topic, retain, qos) == (READINGS, False, 1)
    assert json.loads(payload) == {
        "v": 1,
        "household_id": HH,
        "meter_id": METER_ID,
        "ts_ms": T0,
        "power_w": 500.0,
        "voltage_v": 230.0,
        "current_a": 2.174,
        "energy_kwh": 12.5,
    }
    reading = parse_reading(payload, now_ms=T0)
    assert (reading.household_id, reading.ts_ms, reading.power_w) == (HH, T0, 500.0)
    assert m.stats == {
        "sampled": 1,
        "published": 1,
        "dropped": 0,
        "buffered": 0,
        "reconnects": 0,
        "driver_errors": 0,
        "bad_commands": 0,
        "password_changes": 0,
    }
    assert m.last_error is None


def test_samples_on_schedule_and_publishes_every_interval(hw):
    m, client = make_meter(hw, sample_interval_ms=1000, publish_interval_ms=10000, batch_max=50)
    run_steps(m, T0, T0 + 20_000, every_ms=250)
    readings, sizes = published_readings(client)
    # first reading at once (nothing published yet), then ten readings every ten seconds
    assert sizes == [1, 10, 10]
    assert [r["ts_ms"] for r in readings] == [T0 + 1000 * i for i in range(21)]
    assert m.stats["sampled"] == 21 and m.stats["published"] == 21 and len(m.buffer) == 0


def test_readings_are_buffered_while_the_broker_is_down_and_published_in_order_after(hw):
    m, client = make_meter(hw, publish_interval_ms=5000, batch_max=20, backoff_max_ms=4000)
    end = run_steps(m, T0, T0 + 10_000)
    client.go_down()
    end = run_steps(m, end, T0 + 70_000)
    assert not m.connected
    assert len(m.buffer) >= 58 and m.stats["buffered"] == len(m.buffer)
    assert [r["ts_ms"] for r in m.pending()] == list(range(end - 1000 * len(m.buffer), end, 1000))
    backlog = len(m.buffer)
    client.come_back()
    run_steps(m, end, end + 10_000)
    assert m.connected and m.stats["reconnects"] == 1
    readings, sizes = published_readings(client)
    stamps = [r["ts_ms"] for r in readings]
    # Everything sampled is either published, in order and once, or still waiting for the next interval.
    assert stamps + [r["ts_ms"] for r in m.pending()] == list(range(T0, end + 11_000, 1000))
    assert stamps[-1] >= end - 1000 + 1000 * 4 and len(m.buffer) < 5  # the backlog went out within seconds
    assert backlog >= 58 and max(sizes) == 20  # the backlog went out in full batches
    assert m.stats["dropped"] == 0 and m.stats["published"] == len(stamps)


def test_a_full_buffer_drops_the_oldest_reading_and_counts_it(hw):
    m, client = make_meter(hw, buffer_capacity=5, publish_interval_ms=100_000)
    client.go_down()
    run_steps(m, T0, T0 + 7000)  # 8 samples into a buffer of 5
    assert m.stats["dropped"] == 3 and len(m.buffer) == 5
    assert [r["ts_ms"] for r in m.pending()] == [T0 + 1000 * i for i in range(3, 8)]
    client.come_back()
    m._next_connect_ms = T0 + 8000  # skip the backoff wait
    m.step(T0 + 8000)  # samples first (dropping one more), then connects and publishes
    readings, _ = published_readings(client)
    assert [r["ts_ms"] for r in readings] == [T0 + 1000 * i for i in range(4, 9)]
    assert m.stats["dropped"] == 4 and m.stats["published"] == 5 and m.stats["sampled"] == 9


def test_ring_buffer():
    ring = RingBuffer(3)
    assert [ring.append(i) for i in range(5)] == [False, False, False, True, True]
    assert list(ring) == [2, 3, 4] and ring.peek(2) == [2, 3]
    ring.discard(2)
    assert list(ring) == [4] and len(ring) == 1
    ring.append(5)
    ring.discard(10)
    assert list(ring) == [] and ring.peek(3) == []
    with pytest.raises(ValueError):
        RingBuffer(0)


def connect_attempt_times(m, client, start, end, every_ms=100):
    attempts, calls, now = [], client.connect_calls, start
    while now <= end:
        m.step(now)
        if client.connect_calls != calls:
            attempts.append(now - start)
            calls = client.connect_calls
        now += every_ms
    return attempts


def test_reconnect_backoff_doubles_caps_and_resets(hw):
    m, client = make_meter(hw, backoff_min_ms=1000, backoff_max_ms=60_000)
    client.go_down()
    attempts = connect_attempt_times(m, client, T0, T0 + 200_000)
    # delays 1, 2, 4, 8, 16, 32 s, then capped at 60 s
    assert attempts == [0, 1000, 3000, 7000, 15000, 31000, 63000, 123000, 183000]
    client.come_back()
    later = connect_attempt_times(m, client, T0 + 200_100, T0 + 250_000)
    assert later == [243_000 - 200_100]  # the next scheduled attempt succeeds
    assert m.connected and m.stats["reconnects"] == 0  # the first successful connect is not a reconnect
    # After a success the backoff starts again from the minimum.
    client.go_down()
    again = connect_attempt_times(m, client, T0 + 250_100, T0 + 260_000)
    assert again == [1000, 3000, 7000]


def test_reconnect_delay_jitter_shortens_by_at_most_twenty_percent(hw):
    m, _ = make_meter(hw, backoff_jitter=0.2)
    m._backoff_ms = 10_000
    delays = [m.reconnect_delay_ms() for _ in range(500)]
    assert all(8000 <= d <= 10_000 for d in delays)
    assert max(delays) - min(delays) > 1500  # really spread, not a constant
    other, _ = make_meter(hw, backoff_jitter=0.2, meter_id="m-0042-2")
    other._backoff_ms = 10_000
    assert [other.reconnect_delay_ms() for _ in range(5)] != delays[:5]  # meters do not reconnect in lockstep


def test_batches_hold_at_most_batch_max_readings_oldest_first(hw):
    m, client = make_meter(hw, batch_max=4, publish_interval_ms=3_600_000, max_messages_per_step=10)
    client.go_down()
    end = run_steps(m, T0, T0 + 9000)  # 10 readings pile up
    client.come_back()
    m._next_connect_ms = end
    m.step(end)
    payloads = [json.loads(p) for p in client.payloads()]
    assert [len(p) if isinstance(p, list) else 1 for p in payloads] == [4, 4, 3]
    assert all(isinstance(p, list) for p in payloads)
    assert [r["ts_ms"] for p in payloads for r in p] == [T0 + 1000 * i for i in range(11)]
    # Connected, a long publish interval: the buffer reaching batch_max triggers a publish.
    run_steps(m, end + 1000, end + 3000)
    assert len(client.published) == 3
    m.step(end + 4000)
    assert len(client.published) == 4 and len(json.loads(client.payloads()[-1])) == 4


def test_catch_up_is_spread_over_steps(hw):
    m, client = make_meter(hw, batch_max=2, max_messages_per_step=2, publish_interval_ms=3_600_000)
    client.go_down()
    end = run_steps(m, T0, T0 + 9000)
    client.come_back()
    m._next_connect_ms = end
    m.step(end)
    assert m.stats["published"] == 4  # two messages of two
    m.step(end + 10)
    m.step(end + 20)
    assert m.stats["published"] == 11 and len(m.buffer) == 0
    # Called directly (the fleet simulator's final flush), everything goes at once.
    client.go_down()
    end = run_steps(m, end + 1000, end + 9000)
    client.come_back()
    m._close_quietly()
    m.mqtt.connect()
    assert m.publish_pending(end) == 9 and len(client.published) == 6 + 5


def test_a_failed_publish_keeps_the_unacknowledged_readings(hw):
    m, client = make_meter(hw, batch_max=3, publish_interval_ms=3_600_000)
    client.go_down()
    end = run_steps(m, T0, T0 + 6000)  # 7 readings
    client.come_back()
    client.fail_publishes = 0
    m._next_connect_ms = end
    original_publish = client.publish
    calls = []

    def publish_then_break(*args, **kwargs):  # the second message dies with the connection
        calls.append(args)
        if len(calls) == 2:
            client.fail_publishes = 1
        return original_publish(*args, **kwargs)

    client.publish = publish_then_break
    m.step(end)
    assert not m.connected and m.stats["published"] == 3 and len(m.buffer) == 5
    assert "mqtt publish" in m.last_error
    m.step(end + 1000)  # reconnects after backoff_min_ms and publishes the rest
    readings, _ = published_readings(client)
    assert [r["ts_ms"] for r in readings] == [T0 + 1000 * i for i in range(9)]


def test_every_published_payload_is_a_valid_reading_for_the_topic_household(hw):
    driver = ScriptedDriver(
        {"power_w": 1234.5678, "voltage_v": 231.26, "current_a": 5.33333, "energy_kwh": None},
        {"power_w": -812.04, "voltage_v": None, "current_a": -3.5, "energy_kwh": 7.123456},
        DriverError("no reply"),
        {"power_w": float("nan"), "voltage_v": 230.0, "current_a": 1.0, "energy_kwh": 1.0},
        {"power_w": 40.0, "voltage_v": float("inf"), "current_a": 0.17, "energy_kwh": None},
    )
    m, client = make_meter(hw, driver, batch_max=3, publish_interval_ms=2000)
    run_steps(m, T0, T0 + 8000)
    readings, _ = published_readings(client)
    for topic in {t for t, _, _, _ in client.published}:
        assert topic == READINGS
    parsed = [parse_reading(json.dumps(r), now_ms=T0 + 8000) for r in readings]
    assert {p.household_id for p in parsed} == {HH} and {p.meter_id for p in parsed} == {METER_ID}
    assert readings[0] == {
        "v": 1,
        "household_id": HH,
        "meter_id": METER_ID,
        "ts_ms": T0,
        "power_w": 1234.6,
        "voltage_v": 231.3,
        "current_a": 5.333,
        "energy_kwh": 0.0,
    }
    assert readings[1] == {
        "v": 1,
        "household_id": HH,
        "meter_id": METER_ID,
        "ts_ms": T0 + 1000,
        "power_w": -812.0,
        "current_a": 3.5,
        "energy_kwh": 7.1235,
    }  # None left out; |I|
    assert "voltage_v" not in readings[2] and readings[2]["power_w"] == 40.0  # a non-finite value is dropped
    assert m.stats["driver_errors"] == 2  # the failed read and the NaN power
    assert m.last_error == "driver: ValueError('driver returned no finite power_w: nan')"


def test_commands_are_received_and_bad_ones_counted(hw):
    received = []
    m, client = make_meter(hw)
    m.on_command = received.append
    m.step(T0)
    client.inject(COMMANDS, b'{"type": "schedule", "appliance": "dishwasher", "start_ms": 1768460400000}')
    client.inject(COMMANDS, b"not json")
    client.inject(COMMANDS, b"[1, 2]")  # JSON, but not an object
    client.inject(COMMANDS, b"\xff\xfe")  # not UTF-8
    client.inject(b"meters/h-0099/commands", b'{"type": "someone else"}')  # not our topic: ignored
    client.inject(COMMANDS, b'{"type": "recommendation", "text": "run the washer after 13:00"}')
    client.inject(COMMANDS.decode(), '{"type": "from a client with str topics"}')  # tolerated as well
    m.step(T0 + 100)
    m.step(T0 + 200)
    assert [c["type"] for c in received] == ["schedule", "recommendation", "from a client with str topics"]
    assert m.last_command == {"type": "from a client with str topics"}
    assert m.stats["bad_commands"] == 3


def test_a_failing_command_hook_does_not_disconnect(hw):
    m, client = make_meter(hw, on_command=None)
    m.on_command = lambda command: 1 / 0
    m.step(T0)
    client.inject(COMMANDS, b'{"type": "schedule"}')
    m.step(T0 + 100)
    assert m.connected and m.last_command == {"type": "schedule"} and "ZeroDivisionError" in m.last_error


def test_a_broken_connection_on_check_msg_schedules_a_reconnect(hw):
    m, client = make_meter(hw, backoff_min_ms=2000)
    m.step(T0)
    client.go_down()
    m.step(T0 + 100)  # nothing to publish; check_msg finds the socket dead
    assert not m.connected and "check_msg" in m.last_error and client.disconnects == 1
    client.come_back()
    m.step(T0 + 2000)
    assert not m.connected  # still waiting out the backoff
    m.step(T0 + 2100)
    assert m.connected and m.stats["reconnects"] == 1
    assert client.subscriptions == [(COMMANDS, 1), (CREDENTIALS, 1)] * 2  # subscribed again


def test_energy_is_integrated_from_power_when_the_driver_has_no_energy_register(hw):
    half_hour = 1_800_000
    driver = ScriptedDriver(
        {"power_w": 1000.0},
        {"power_w": 3000.0},
        {"power_w": 3000.0},
        DriverError("timeout"),
        {"power_w": -500.0},
        {"power_w": -500.0},
    )
    m, _ = make_meter(hw, driver)
    energies = [
        m.sample(T0 + i * half_hour)["energy_kwh"] if i != 3 else m.sample(T0 + i * half_hour) for i in range(6)
    ]
    # trapezoids: (1000 + 3000) / 2 W * 0.5 h = 1.0 kWh; (3000 + 3000) / 2 * 0.5 = 1.5 kWh;
    # the failed read is skipped: (3000 + -500) / 2 W over 1 h = 1.25 kWh; exporting adds nothing.
    assert energies == [0.0, 1.0, 2.5, None, 3.75, 3.75]
    assert m.energy_kwh == pytest.approx(3.75)
    # kWh = W * dt_ms / 3.6e9, kept exact in integer millijoules: 1 W for one second = 1000 mJ.
    m2, _ = make_meter(hw, ScriptedDriver({"power_w": 1.0}))
    for i in range(3601):
        m2.sample(T0 + i * 1000)
    assert m2.energy_kwh == pytest.approx(1.0 / 1000)  # 1 W for one hour = 1 Wh


def test_the_clock_jumping_back_does_not_stall_sampling(hw):
    m, _ = make_meter(hw)
    m.step(T0 + 3_600_000)
    m.step(T0)  # NTP corrected a clock that ran an hour fast
    m.step(T0 + 1000)
    assert m.stats["sampled"] == 3


def test_meter_config_needs_household_and_meter(hw):
    client = hw.umqtt_simple.MQTTClient(b"x", "broker.test")
    with pytest.raises(ValueError, match="household_id"):
        Meter({"meter_id": "m-1"}, ScriptedDriver(), client)


# -- the board entry point, on fake hardware ------------------------------------------------------

BOARD_CONFIG = {
    "household_id": HH,
    "meter_id": METER_ID,
    "wifi": {"ssid": "home-network", "password": "secret"},
    "mqtt": {"host": "broker.test", "port": 1884, "user": "m-0042-1", "password": "pw"},
    "ntp_host": "ntp.test",
    "driver": "pzem",
    "pzem": {"uart": 2, "tx_pin": 17, "rx_pin": 16},
    "sample_interval_ms": 1000,
    "publish_interval_ms": 10000,
    "buffer_capacity": 100,
    "loop_sleep_ms": 0,
    "watchdog_ms": 30000,
}


class StepClock:
    """A board clock that moves on one second each time it is read."""

    def __init__(self, start_ms=T0):
        self.ms = start_ms - 1000

    def now_ms(self):
        self.ms += 1000
        return self.ms


def write_config(tmp_path, **changes):
    config = dict(BOARD_CONFIG, **changes)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


def test_main_runs_the_meter_on_fake_hardware(hw, tmp_path):
    main = importlib.import_module(MAIN)
    meter_ = main.run(str(write_config(tmp_path)), max_steps=3, clock=StepClock())
    wlan = hw.network.WLAN.instances[-1]
    assert wlan.isconnected() and wlan.connects == [("home-network", "secret")]
    assert hw.ntptime.calls == ["ntp.test"]
    uart = hw.machine.UART.instances[-1]
    assert (uart.id, uart.baudrate, uart.tx, uart.rx) == (2, 9600, 17, 16)
    assert uart.requests[0] == bytes.fromhex("f8 04 00 00 00 0a 64 64")
    client = hw.umqtt_simple.MQTTClient.instances[-1]
    assert (client.client_id, client.server, client.port, client.user, client.pswd) == (
        METER_ID.encode(),
        "broker.test",
        1884,
        "m-0042-1",
        "pw",
    )
    assert client.subscriptions == [(COMMANDS, 1), (CREDENTIALS, 1)]
    reading = parse_reading(client.payloads(READINGS)[0])
    assert (reading.household_id, reading.power_w, reading.voltage_v) == (HH, 230.0, 230.0)
    assert meter_.stats["sampled"] == 3 and meter_.stats["driver_errors"] == 0
    assert hw.machine.WDT.instances[-1].feeds == 3


def test_main_with_a_ct_clamp_reports_integrated_energy(hw, tmp_path):
    main = importlib.import_module(MAIN)
    config = write_config(
        tmp_path, driver="ct", ct={"adc_pin": 34, "samples": 40, "sample_period_us": 0}, publish_interval_ms=2000
    )
    meter_ = main.run(str(config), max_steps=3, clock=StepClock())
    client = hw.umqtt_simple.MQTTClient.instances[-1]
    readings, _ = published_readings(client)
    start = readings[0]["ts_ms"]  # setting up also reads the clock
    assert [r["ts_ms"] for r in readings] == [start, start + 1000, start + 2000]
    for reading in readings:
        parse_reading(json.dumps(reading))
        assert "voltage_v" not in reading and reading["current_a"] == pytest.approx(34.536, rel=0.01)
    # constant power P = 230 V x I, so energy after 1 s = P * 1000 ms / 3.6e9, rounded to 4 decimals
    power_w = readings[0]["power_w"]
    assert [r["energy_kwh"] for r in readings] == [
        0.0,
        round(power_w * 1000 / 3.6e9, 4),
        round(power_w * 2000 / 3.6e9, 4),
    ]
    assert hw.machine.ADC.instances[-1].attenuation == hw.machine.ADC.ATTN_11DB
    assert meter_.stats["sampled"] == 3


def test_main_resets_the_board_after_a_fatal_error(hw, tmp_path, monkeypatch):
    main = importlib.import_module(MAIN)
    monkeypatch.setattr(main, "sleep_ms", lambda ms: None)
    monkeypatch.chdir(tmp_path)
    write_config(tmp_path, wifi={"ssid": "home-network", "password": "wrong"})
    hw.network.WLAN.password = "secret"
    main.main()  # cannot join Wi-Fi: reset
    assert hw.machine.resets == [True]


def test_main_refuses_to_meter_without_time(hw, tmp_path, monkeypatch):
    main = importlib.import_module(MAIN)
    monkeypatch.setattr(main, "sleep_ms", lambda ms: None)
    hw.ntptime.fail = 5
    with pytest.raises(OSError, match="NTP"):
        main.run(str(write_config(tmp_path)), max_steps=1)
    assert len(hw.ntptime.calls) == 5


def test_clock_gives_unix_epoch_ms_on_a_2000_epoch_port(hw):
    main = importlib.import_module(MAIN)
    seconds_since_2000 = 1_768_435_200 - 946_684_800  # 2026-01-15 on an ESP32 clock
    esp32_time = SimpleNamespace(
        gmtime=lambda t: (2000, 1, 1, 0, 0, 0, 5, 1), time_ns=lambda: seconds_since_2000 * 10**9 + 123_456_789
    )
    assert main.Clock(esp32_time).now_ms() == T0 + 123
    old_port = SimpleNamespace(gmtime=lambda t: (2000, 1, 1, 0, 0, 0, 5, 1), time=lambda: seconds_since_2000)
    assert main.Clock(old_port).now_ms() == T0
    unix = SimpleNamespace(gmtime=lambda t: (1970, 1, 1, 0, 0, 0, 3, 1), time_ns=lambda: T0 * 10**6)
    assert main.Clock(unix).now_ms() == T0


# -- staying MicroPython-compatible ----------------------------------------------------------------


@pytest.mark.parametrize(
    "name, allowed_imports",
    [
        ("meter.py", {"binascii", "hashlib", "json"}),
        ("drivers.py", set()),
        (
            "main.py",
            {"gc", "json", "os", "ssl", "sys", "time", "machine", "network", "ntptime", "umqtt.simple", "drivers"}
            | {"meter"},
        ),
    ],
)
def test_firmware_sources_use_only_what_micropython_has(name, allowed_imports):
    tree = ast.parse((FIRMWARE / name).read_text())
    imported = set()
    for node in ast.walk(tree):
        assert not isinstance(node, ast.NamedExpr), "walrus at line %d" % node.lineno
        assert not isinstance(node, ast.JoinedStr), "f-string at line %d" % node.lineno
        assert not isinstance(node, ast.AnnAssign), "annotation at line %d" % node.lineno
        if isinstance(node, (ast.FunctionDef, ast.Lambda)):
            assert all(a.annotation is None for a in node.args.args), "annotated argument at line %d" % node.lineno
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module)
    assert imported <= allowed_imports, imported - allowed_imports


def test_firmware_doctests_pass():
    for module in (meter, drivers):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_config_example_is_complete():
    config = json.loads((FIRMWARE / "config.example.json").read_text())
    for key in (
        "household_id",
        "meter_id",
        "wifi",
        "mqtt",
        "driver",
        "sample_interval_ms",
        "publish_interval_ms",
        "buffer_capacity",
    ):
        assert key in config
    assert config["driver"] in ("pzem", "ct") and {"pzem", "ct"} <= set(config)


# -- password rotation and TLS ------------------------------------------------------------------------

STATUS = b"meters/h-0042/status"
NEW_PASSWORD = "n3w-password-0123456789"


def credentials(request_id="r-1", password=NEW_PASSWORD):
    return json.dumps({"type": "credentials", "id": request_id, "password": password}).encode()


def test_a_new_password_is_kept_confirmed_and_used_once_the_broker_takes_it(hw):
    saved = []
    m, client = make_meter(hw)
    m.save_password = lambda password, pending: saved.append((password, pending))
    client.pswd = "old-password"
    m._password = "old-password"
    client.accepted_passwords = {"old-password"}
    m.step(T0)
    assert m.connected and client.connect_passwords == ["old-password"]
    client.inject(CREDENTIALS, credentials())
    m.step(T0 + 1000)
    assert saved == [(NEW_PASSWORD, True)], "the pending password must be stored before it is confirmed"
    ack = json.loads(client.payloads(STATUS)[0])
    proof = hashlib.sha256(f"r-1:{NEW_PASSWORD}".encode()).hexdigest()
    assert ack == {"type": "credentials_ack", "id": "r-1", "proof": proof, "household_id": HH, "meter_id": METER_ID}
    assert m.last_command is None, "a password must never be kept as the last command"
    client.sock = None  # the broker switched: it ends the old session
    client.accepted_passwords = {NEW_PASSWORD}
    run_steps(m, T0 + 2000, T0 + 5000)
    assert m.connected and client.connect_passwords[-1] == NEW_PASSWORD
    assert saved[-1] == (NEW_PASSWORD, False) and m.stats["password_changes"] == 1
    client.sock = None  # later reconnects use the new password directly
    run_steps(m, T0 + 6000, T0 + 9000)
    assert client.connect_passwords[-1] == NEW_PASSWORD and "old-password" not in client.connect_passwords[2:]


def test_a_pending_password_the_broker_never_took_falls_back_to_the_current_one(hw):
    m, client = make_meter(hw)
    client.pswd = m._password = "old-password"
    client.accepted_passwords = {"old-password"}
    m.save_password = lambda password, pending: None
    m.step(T0)
    client.inject(CREDENTIALS, credentials())
    m.step(T0 + 1000)
    client.sock = None  # a network drop, not a switch: the broker still wants the old password
    run_steps(m, T0 + 2000, T0 + 5000)
    assert m.connected and client.connect_passwords[-2:] == [NEW_PASSWORD, "old-password"]
    assert m.stats["password_changes"] == 0 and m._next_password == NEW_PASSWORD


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "credentials", "id": "r-2", "password": "short"},
        {"type": "credentials", "id": 7, "password": NEW_PASSWORD},
        {"type": "credentials", "password": NEW_PASSWORD},
        {"type": "credentials", "id": "r-3", "password": "x" * 500},
    ],
)
def test_a_malformed_credentials_command_changes_nothing(hw, payload):
    saved = []
    m, client = make_meter(hw)
    m.save_password = lambda password, pending: saved.append(password)
    m.step(T0)
    client.inject(CREDENTIALS, json.dumps(payload).encode())
    m.step(T0 + 1000)
    assert saved == [] and client.payloads(STATUS) == [] and m.stats["bad_commands"] == 1


def test_a_password_that_cannot_be_stored_is_not_confirmed(hw):
    def broken_flash(password, pending):
        raise OSError(28, "ENOSPC")

    m, client = make_meter(hw)
    m.save_password = broken_flash
    m.step(T0)
    client.inject(CREDENTIALS, credentials())
    m.step(T0 + 1000)
    assert client.payloads(STATUS) == [] and m._next_password is None and "ENOSPC" in m.last_error


def test_main_keeps_a_new_password_in_config_json_across_a_reboot(hw, tmp_path):
    main = importlib.import_module(MAIN)
    path = write_config(tmp_path)
    config = json.loads(path.read_text())
    save = main.password_saver(config, str(path))
    save(NEW_PASSWORD, True)
    on_flash = json.loads(path.read_text())["mqtt"]
    assert on_flash["next_password"] == NEW_PASSWORD and on_flash["password"] == "pw"
    meter_ = main.run(str(path), max_steps=1, clock=StepClock())  # after a reboot: the pending one first
    client = hw.umqtt_simple.MQTTClient.instances[-1]
    assert client.connect_passwords == [NEW_PASSWORD] and meter_.stats["password_changes"] == 1
    on_flash = json.loads(path.read_text())["mqtt"]
    assert on_flash["password"] == NEW_PASSWORD and "next_password" not in on_flash
    assert not (tmp_path / "config.json.new").exists()


def test_main_builds_a_certificate_checking_tls_client_when_configured(hw, tmp_path):
    import ssl

    from gridflow.stack.tls import ensure_tls

    main = importlib.import_module(MAIN)
    ca = ensure_tls(tmp_path / "tls", "127.0.0.1").ca_der
    config = json.loads(write_config(tmp_path).read_text())
    config["mqtt"] = {"host": "broker.test", "user": HH, "password": "pw", "tls": True, "ca_file": str(ca)}
    client = main.build_mqtt(config)
    assert client.port == 8883 and isinstance(client.ssl, ssl.SSLContext)
    assert client.ssl.verify_mode == ssl.CERT_REQUIRED and client.ssl.check_hostname
    assert len(client.ssl.get_ca_certs()) == 1
    del config["mqtt"]["tls"]
    assert main.build_mqtt(config).ssl is None


def test_a_password_on_the_commands_topic_is_refused(hw):
    """The commands topic is readable by more than the meter (the fleet simulator's account): a password
    sent there is exposed, so the meter never takes one from it."""
    saved = []
    m, client = make_meter(hw)
    m.save_password = lambda password, pending: saved.append(password)
    m.step(T0)
    client.inject(COMMANDS, credentials())
    m.step(T0 + 1000)
    assert saved == [] and client.payloads(STATUS) == [] and m.stats["bad_commands"] == 1
    assert m.last_command is None and (CREDENTIALS, 1) in client.subscriptions
