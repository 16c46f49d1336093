"""The meter reading: schema, parsing and validation (no Flink, no I/O).

A reading is one JSON object published by a meter::

    {"v": 1, "household_id": "h-0042", "meter_id": "m-0042-1", "ts_ms": 1700000000000,
     "power_w": 512.3, "voltage_v": 231.2, "current_a": 2.31, "energy_kwh": 1532.118,
     "channels_w": {"kitchen": 12.0, "laundry": 0.0}}

``household_id``, ``meter_id``, ``ts_ms`` and ``power_w`` are required; the rest are optional.
:func:`parse_reading` either returns a :class:`Reading` or raises :class:`InvalidReading` naming the
field and why, which callers turn into a dead-letter record with :func:`dead_letter`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from gridflow.contracts.core import (  # noqa: F401  (re-exported: the reading is one of the contracts)
    ID,
    ID_RULE,
    encode,
    KEY_FIELDS,
    SCHEMA_VERSION,
    ContractError,
    dead_letter,
    decode_object,
    household_id_of,
    record_key,
)

InvalidReading = ContractError  # the reading's name for a broken contract

_ID = ID
_MIN_TS_MS = 946_684_800_000  # 2000-01-01: older clocks are unset meter clocks


@dataclass(frozen=True)
class ReadingBounds:
    """Physically possible values; see ``readings`` in the settings."""

    power_w_min: float = -30_000.0
    power_w_max: float = 50_000.0
    voltage_v_min: float = 0.0
    voltage_v_max: float = 300.0
    current_a_max: float = 200.0
    max_future_ms: int = 300_000

    @classmethod
    def from_settings(cls, readings) -> "ReadingBounds":
        return cls(
            readings.power_w_min,
            readings.power_w_max,
            readings.voltage_v_min,
            readings.voltage_v_max,
            readings.current_a_max,
            readings.max_clock_skew_s * 1000,
        )


@dataclass(frozen=True)
class Reading:
    household_id: str
    meter_id: str
    ts_ms: int
    power_w: float
    voltage_v: float | None = None
    current_a: float | None = None
    energy_kwh: float | None = None
    channels_w: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> str:
        data: dict[str, Any] = {
            "v": SCHEMA_VERSION,
            "household_id": self.household_id,
            "meter_id": self.meter_id,
            "ts_ms": self.ts_ms,
            "power_w": self.power_w,
        }
        for name in ("voltage_v", "current_a", "energy_kwh"):
            if getattr(self, name) is not None:
                data[name] = getattr(self, name)
        if self.channels_w:
            data["channels_w"] = self.channels_w
        return encode(data)


KNOWN_FIELDS = {
    "v",
    "household_id",
    "meter_id",
    "ts_ms",
    "power_w",
    "voltage_v",
    "current_a",
    "energy_kwh",
    "channels_w",
}


def parse_reading(payload: bytes | str, bounds: ReadingBounds = ReadingBounds(), now_ms: int | None = None) -> Reading:
    """Decode and validate one reading; raises :class:`InvalidReading` naming the bad field."""
    return validate_reading(decode_object(payload), bounds, now_ms)


def validate_reading(data: Any, bounds: ReadingBounds = ReadingBounds(), now_ms: int | None = None) -> Reading:
    """Validate one decoded reading (a dict from JSON); raises :class:`InvalidReading` naming the bad field."""
    if not isinstance(data, dict):
        raise InvalidReading("", f"expected a JSON object, got {type(data).__name__}")
    version = data.get("v", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise InvalidReading("v", f"unsupported schema version {version!r}; supported: {SCHEMA_VERSION}")
    unknown = sorted(set(data) - KNOWN_FIELDS)
    if unknown:
        raise InvalidReading(unknown[0], f"unknown field; allowed fields: {', '.join(sorted(KNOWN_FIELDS))}")
    household_id = _identifier(data, "household_id")
    meter_id = _identifier(data, "meter_id")
    ts_ms = data.get("ts_ms")
    if isinstance(ts_ms, bool) or not isinstance(ts_ms, int):
        raise InvalidReading("ts_ms", f"must be an integer of epoch milliseconds, got {ts_ms!r}")
    if ts_ms < _MIN_TS_MS:
        raise InvalidReading("ts_ms", f"{ts_ms} is before 2000-01-01 (meter clock not set?)")
    if now_ms is not None and ts_ms > now_ms + bounds.max_future_ms:
        raise InvalidReading("ts_ms", f"{ts_ms} is more than {bounds.max_future_ms} ms in the future")
    power_w = _number(data, "power_w", bounds.power_w_min, bounds.power_w_max, required=True)
    voltage_v = _number(data, "voltage_v", bounds.voltage_v_min, bounds.voltage_v_max)
    current_a = _number(data, "current_a", 0.0, bounds.current_a_max)
    energy_kwh = _number(data, "energy_kwh", 0.0, math.inf)
    channels = data.get("channels_w", {})
    if not isinstance(channels, dict):
        raise InvalidReading("channels_w", "must be an object of channel name -> watts")
    channels_w = {}
    for name, value in channels.items():
        if not _ID.match(str(name)):
            raise InvalidReading("channels_w", f"channel name {name!r} must match {_ID.pattern}")
        channels_w[name] = _number(
            channels, name, bounds.power_w_min, bounds.power_w_max, required=True, label=f"channels_w.{name}"
        )
    return Reading(household_id, meter_id, ts_ms, power_w, voltage_v, current_a, energy_kwh, channels_w)


def _identifier(data: dict, name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not _ID.match(value):
        raise InvalidReading(name, f"must be {ID_RULE}, got {value!r}")
    return value


def _number(data: dict, name: str, low: float, high: float, required: bool = False, label: str | None = None):
    label = label or name
    value = data.get(name)
    if value is None:
        if required:
            raise InvalidReading(label, "is required")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidReading(label, f"must be a finite number, got {value!r}")
    if not low <= value <= high:
        raise InvalidReading(label, f"{value} is outside the physically possible range [{low}, {high}]")
    return float(value)
