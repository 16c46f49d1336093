"""The bridge's meter payload adapters on their documented formats (``tests/fixtures/meters``): each
reading checked against the values worked out by hand from the fixture, and every broken payload named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridflow.connectors.adapters import match_topic
from gridflow.connectors.routing import route
from gridflow.readings import ReadingBounds
from gridflow.settings import load_settings

FIXTURES = Path(__file__).parent / "fixtures" / "meters"
NOW = 1_768_435_200_000
ADAPTERS = load_settings().bridge.adapters
TEMPLATE = "meters/{household_id}/readings"


def routed(topic: str, payload: bytes) -> list:
    return route(topic, payload, TEMPLATE, ReadingBounds(), now_ms=NOW, adapters=ADAPTERS)


def readings(topic: str, payload: bytes) -> list[dict]:
    out = routed(topic, payload)
    assert [r.dead for r in out] == [False] * len(out), [r.value for r in out]
    assert {r.key for r in out} == {topic.split("/")[1].encode()}
    return [json.loads(r.value) for r in out]


def dead_reason(topic: str, payload: bytes) -> tuple[str, str]:
    (record,) = routed(topic, payload)
    assert record.dead
    letter = json.loads(record.value)
    return letter["field"], letter["reason"]


def test_a_dsmr5_p1_telegram_becomes_the_meters_reading():
    telegram = (FIXTURES / "dsmr5_p1_telegram.txt").read_bytes()
    (reading,) = readings("meters/h-p1/p1", telegram)
    # 1-0:1.7.0 01.193 kW delivered, 1-0:2.7.0 00.000 kW returned; tariffs 1 + 2: 2 x 123456.789 kWh;
    # 0-0:1.0.0 101209113020W = 2010-12-09 11:30:20 CET (winter) = 10:30:20 UTC
    assert reading == {
        "v": 1,
        "household_id": "h-p1",
        "meter_id": "K8EG004046395507",  # 0-0:96.1.1, hex-encoded ASCII
        "ts_ms": 1_291_890_620_000,
        "power_w": 1193.0,
        "voltage_v": 220.1,
        "energy_kwh": 246913.578,
        "channels_w": {"l1": 1.111e3 - 4.444e3, "l2": 2.222e3 - 5.555e3, "l3": 3.333e3 - 6.666e3},
    }


def test_a_p1_telegram_with_a_broken_crc_or_no_telegram_is_dead_lettered_with_the_reason():
    telegram = (FIXTURES / "dsmr5_p1_telegram.txt").read_bytes()
    tampered = telegram.replace(b"1-0:1.7.0(01.193*kW)", b"1-0:1.7.0(09.193*kW)")
    assert dead_reason("meters/h-p1/p1", tampered)[1].startswith("dsmr: P1 telegram CRC mismatch")
    assert "not a DSMR 5 P1 telegram" in dead_reason("meters/h-p1/p1", b"hello")[1]
    assert dead_reason("meters/h-p1/p1", "/é".encode())[1] == "dsmr: a P1 telegram is ASCII text"


def test_an_sml_transmission_becomes_the_meters_reading():
    payload = bytes.fromhex((FIXTURES / "sml_iskra_mt175.hex").read_text().strip())
    (reading,) = readings("meters/h-sml/sml", payload)
    # 1-0:16.7.0: 0x0860 = 2144, scaler 0 -> 2144 W; 1-0:1.8.0: 0x0C1361 = 791393, scaler -1 -> 79139.3 Wh
    assert reading == {
        "v": 1,
        "household_id": "h-sml",
        "meter_id": "sml-0a0149534b00047a5544",
        "ts_ms": NOW,
        "power_w": 2144.0,
        "energy_kwh": 79.1393,
    }
    broken = bytearray(payload)
    broken[-3] ^= 0xFF  # the CRC of the transmission
    assert "SML CRC mismatch" in dead_reason("meters/h-sml/sml", bytes(broken))[1]
    assert "not a complete SML transmission" in dead_reason("meters/h-sml/sml", payload[:40])[1]


def test_tasmota_energy_telemetry_becomes_a_reading():
    (reading,) = readings("meters/h-t/tele/SENSOR", (FIXTURES / "tasmota_sensor.json").read_bytes())
    assert reading == {
        "v": 1,
        "household_id": "h-t",
        "meter_id": "h-t-tasmota",
        "ts_ms": NOW,  # Tasmota's "Time" has no time zone: the bridge's receive time
        "power_w": 123.0,
        "voltage_v": 230.0,
        "current_a": 0.565,
        "energy_kwh": 12.345,
    }
    two = json.dumps({"ENERGY": {"Power": [100, 50], "Voltage": [231, 231], "Total": 3.5}}).encode()
    (both,) = readings("meters/h-t/tele/SENSOR", two)
    assert both["power_w"] == 150.0 and both["channels_w"] == {"ch1": 100.0, "ch2": 50.0}
    assert dead_reason("meters/h-t/tele/SENSOR", b'{"Time": "x", "AM2301": {}}')[0] == "ENERGY"
    assert dead_reason("meters/h-t/tele/SENSOR", b'{"ENERGY": {"Power": "lots"}}')[0] == "power_w"


def test_shelly_gen2_em_status_and_notify_status_become_readings():
    (three,) = readings("meters/h-s/shelly/status/em:0", (FIXTURES / "shelly_pro3em_status_em0.json").read_bytes())
    assert three == {
        "v": 1,
        "household_id": "h-s",
        "meter_id": "h-s-em0",
        "ts_ms": NOW,
        "power_w": 715.502,
        "voltage_v": 236.1,
        "current_a": 11.083,
        "channels_w": {"a": 951.2, "b": -951.1, "c": 715.4},
    }
    (one,) = readings("meters/h-s/shelly/events/rpc", (FIXTURES / "shelly_notifystatus_em1.json").read_bytes())
    assert one == {
        "v": 1,
        "household_id": "h-s",
        "meter_id": "shellyproem50-08f9e0e5ca38-em10",
        "ts_ms": 1_700_000_000_550,  # params.ts
        "power_w": -475.8,  # exporting
        "voltage_v": 223.9,
        "current_a": 2.237,
    }
    assert dead_reason("meters/h-s/shelly/status/switch:0", b'{"id": 0}')[0] == "topic"
    assert dead_reason("meters/h-s/shelly/status/em:0", b'{"id": 0}') == (
        "power_w",
        "shelly: 'total_act_power' is missing",
    )


def test_readings_out_of_range_from_an_adapter_are_dead_lettered_like_any_reading():
    huge = json.dumps({"ENERGY": {"Power": 9e9}}).encode()
    field, reason = dead_reason("meters/h-t/tele/SENSOR", huge)
    assert field == "power_w" and reason.startswith("tasmota: ")


@pytest.mark.parametrize(
    "topic",
    ["meters/h/x/p1", "meters//p1", "meters/h/p1/extra", "meters/h/shelly/", "elsewhere/h/p1", "meters/..h/p1"],
)
def test_topics_that_fit_no_adapter_are_dead_lettered(topic):
    field, reason = dead_reason(topic, b"{}")
    assert field == "topic" and "matches none of" in reason


def test_topic_templates_match_one_household_level():
    assert match_topic("meters/h-1/tele/SENSOR", ADAPTERS["tasmota"]) == ("h-1", "")
    assert match_topic("meters/h-1/shelly/a/b", ADAPTERS["shelly"]) == ("h-1", "a/b")
    assert match_topic("meters/h+1/p1", ADAPTERS["dsmr"]) is None


def _crc16(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def with_crc(telegram: bytes) -> bytes:
    body = telegram[: telegram.rindex(b"!") + 1]
    return body + b"%04X\r\n" % _crc16(body)


def test_values_a_parser_library_chokes_on_are_dead_lettered_not_raised():
    telegram = (FIXTURES / "dsmr5_p1_telegram.txt").read_bytes()
    bad_value = with_crc(telegram.replace(b"1-0:1.7.0(01.193*kW)", b"1-0:1.7.0(abc*kW)"))
    assert "dsmr: " in dead_reason("meters/h-p1/p1", bad_value)[1]
    far_future = json.dumps({"method": "NotifyStatus", "params": {"ts": 1e308, "em1:0": {"act_power": 1}}})
    assert dead_reason("meters/h-s/shelly/events/rpc", far_future.encode())[0] == "ts_ms"


@settings(max_examples=300, deadline=None)
@given(
    topic=st.sampled_from(
        [
            "meters/h/p1",
            "meters/h/sml",
            "meters/h/tele/SENSOR",
            "meters/h/shelly/status/em:0",
            "meters/h/shelly/status/em1:0",
            "meters/h/shelly/events/rpc",
        ]
    ),
    payload=st.one_of(
        st.binary(max_size=400),
        st.recursive(
            st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=12),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(
                    st.sampled_from(
                        [
                            "ENERGY",
                            "Power",
                            "Voltage",
                            "Total",
                            "method",
                            "params",
                            "ts",
                            "em1:0",
                            "em:0",
                            "act_power",
                            "total_act_power",
                            "a_act_power",
                            "current",
                            "src",
                        ]
                    ),
                    inner,
                    max_size=5,
                )
            ),
            max_leaves=20,
        ).map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=300).map(lambda b: with_crc(b"/ISk5\\2MT382-1000\r\n\r\n" + b + b"\r\n!")),
        st.binary(min_size=1, max_size=60).map(
            lambda b: bytes.fromhex((FIXTURES / "sml_iskra_mt175.hex").read_text().strip())[:150] + b
        ),
    ),
)
def test_no_payload_makes_an_adapter_raise(topic, payload):
    for record in routed(topic, payload):  # every outcome is a reading or a dead letter, never an exception
        assert record.dead or json.loads(record.value)["household_id"] == "h"
