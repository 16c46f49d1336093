import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridflow.readings import InvalidReading, Reading, ReadingBounds, dead_letter, parse_reading
from gridflow.settings import load_settings

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
        ({"power_w": None, "energy_kwh": None}, "power_w", "is required (or an energy_kwh register)"),
        ({"power_w": "1", "energy_kwh": 5.0}, "power_w", "finite number"),
        ({"power_w": 1e9}, "power_w", "[-30000.0, 50000.0]"),
        ({"power_w": "NaN"}, "power_w", "finite number"),
        ({"voltage_v": 900}, "voltage_v", "[0.0, 300.0]"),
        ({"current_a": -1}, "current_a", "[0.0, 200.0]"),
        ({"v": 3}, "v", "unsupported schema version 3; supported: 1, 2"),
        ({"v": "2"}, "v", "supported: 1, 2"),
        ({"energy_kwh": "1532"}, "energy_kwh", "finite number"),
        ({"energy_kwh": True}, "energy_kwh", "finite number"),
        ({"energy_kwh": -0.5}, "energy_kwh", "-0.5 is outside the physically possible range [0.0, 1000000000.0]"),
        ({"energy_kwh": 2e9}, "energy_kwh", "[0.0, 1000000000.0]"),
        ({"interval_s": 0}, "interval_s", "must be a whole number of seconds in [1, 86400], got 0"),
        ({"interval_s": 86_401}, "interval_s", "[1, 86400]"),
        ({"interval_s": 1.5}, "interval_s", "whole number of seconds"),
        ({"interval_s": 900.0}, "interval_s", "whole number of seconds"),
        ({"interval_s": "900"}, "interval_s", "whole number of seconds"),
        ({"interval_s": True}, "interval_s", "whole number of seconds"),
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


REGISTER_ONLY = {
    "v": 2,
    "household_id": "h-001",
    "meter_id": "m-001",
    "ts_ms": 1_768_435_200_000,
    "energy_kwh": 1532.118,
}
INTERVAL = {"v": 2, "household_id": "h-001", "meter_id": "m-001", "ts_ms": 1_768_435_200_000, "power_w": 512.5}


@pytest.mark.parametrize(
    "data",
    [
        REGISTER_ONLY,
        {k: v for k, v in REGISTER_ONLY.items() if k != "v"},
        {**REGISTER_ONLY, "v": 1, "power_w": None},
        {**INTERVAL, "interval_s": 900},
        {**INTERVAL, "interval_s": 1, "energy_kwh": 0},
        {**INTERVAL, "interval_s": 86_400, "v": 1},
    ],
)
def test_register_only_and_interval_readings_are_accepted_and_written_as_version_2(data):
    reading = parse_reading(json.dumps(data))
    assert (reading.power_w, reading.energy_kwh, reading.interval_s) == tuple(
        data.get(name) for name in ("power_w", "energy_kwh", "interval_s")
    )
    written = json.loads(reading.to_json())
    assert written["v"] == 2 and ("power_w" in written) == (data.get("power_w") is not None)
    assert parse_reading(reading.to_json()) == reading


def test_the_energy_register_bound_comes_from_the_settings():
    settings = load_settings(overrides=["readings.energy_kwh_max=100"])
    bounds = ReadingBounds.from_settings(settings.readings)
    assert bounds.energy_kwh_max == 100.0 and ReadingBounds().energy_kwh_max == 1e9
    assert parse_reading(json.dumps({**REGISTER_ONLY, "energy_kwh": 100}), bounds).energy_kwh == 100.0
    with pytest.raises(InvalidReading, match=r"100.5 is outside the physically possible range \[0.0, 100.0\]"):
        parse_reading(json.dumps({**REGISTER_ONLY, "energy_kwh": 100.5}), bounds)


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
