import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridflow.readings import InvalidReading, Reading, ReadingBounds, dead_letter, parse_reading

GOOD = {
    "v": 1,
    "household_id": "h-001",
    "meter_id": "m-001",
    "ts_ms": 1_768_435_200_000,
    "power_w": 512.5,
    "voltage_v": 231.0,
    "current_a": 2.2,
    "energy_kwh": 1532.1,
    "channels_w": {"kitchen": 40.0},
}


def test_a_valid_reading_round_trips():
    reading = parse_reading(json.dumps(GOOD))
    assert reading == Reading("h-001", "m-001", 1_768_435_200_000, 512.5, 231.0, 2.2, 1532.1, {"kitchen": 40.0})
    assert parse_reading(reading.to_json()) == reading


@pytest.mark.parametrize(
    "change, field, words",
    [
        ({"household_id": ""}, "household_id", "1-64 characters"),
        ({"meter_id": 7}, "meter_id", "1-64 characters"),
        ({"ts_ms": "yesterday"}, "ts_ms", "epoch milliseconds"),
        ({"ts_ms": True}, "ts_ms", "epoch milliseconds"),
        ({"ts_ms": 1000}, "ts_ms", "before 2000-01-01"),
        ({"power_w": None}, "power_w", "is required"),
        ({"power_w": 1e9}, "power_w", "[-30000.0, 50000.0]"),
        ({"power_w": "NaN"}, "power_w", "finite number"),
        ({"voltage_v": 900}, "voltage_v", "[0.0, 300.0]"),
        ({"current_a": -1}, "current_a", "[0.0, 200.0]"),
        ({"v": 2}, "v", "supported: 1"),
        ({"colour": "red"}, "colour", "allowed fields"),
        ({"channels_w": {"kitchen": "hot"}}, "channels_w.kitchen", "finite number"),
        ({"channels_w": [1]}, "channels_w", "object of channel name"),
    ],
)
def test_invalid_readings_name_the_field(change, field, words):
    with pytest.raises(InvalidReading) as error:
        parse_reading(json.dumps({**GOOD, **change}))
    assert error.value.field == field
    assert words in error.value.reason


def test_payloads_that_are_not_objects():
    for payload in [b"\xff\xfe", b"not json", b"[1,2]", b"null", b""]:
        with pytest.raises(InvalidReading) as error:
            parse_reading(payload)
        assert error.value.field == ""


def test_future_readings_beyond_the_clock_skew_are_rejected():
    bounds = ReadingBounds(max_future_ms=1000)
    now = GOOD["ts_ms"] - 1000
    assert parse_reading(json.dumps(GOOD), bounds, now_ms=now).ts_ms == GOOD["ts_ms"]
    with pytest.raises(InvalidReading, match="in the future"):
        parse_reading(json.dumps(GOOD), bounds, now_ms=now - 1)


def test_dead_letter_keeps_the_payload_verbatim_with_the_reason():
    payload = b'{"household_id": "h-1", "power_w": 1}\xff'
    try:
        parse_reading(payload)
    except InvalidReading as error:
        record = json.loads(dead_letter(payload, error, "kafka:meter.readings"))
    assert record["source"] == "kafka:meter.readings"
    assert record["reason"].startswith("not JSON")
    assert record["payload"] == payload.decode("utf-8", errors="backslashreplace")


@given(
    st.one_of(
        st.binary(max_size=200),
        st.recursive(
            st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
            lambda children: (
                st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=6)
            ),
            max_leaves=20,
        ).map(lambda v: json.dumps(v).encode()),
    )
)
def test_arbitrary_input_either_parses_or_raises_invalid_reading(payload):
    try:
        reading = parse_reading(payload)
    except InvalidReading as error:
        json.loads(dead_letter(payload, error, "fuzz"))
    else:
        assert parse_reading(reading.to_json()) == reading
