"""The meter reading: schema, parsing and validation (no Flink, no I/O).

A reading is one JSON object published by a meter::

    {"v": 2, "household_id": "h-0042", "meter_id": "m-0042-1", "ts_ms": 1700000000000,
     "power_w": 512.3, "voltage_v": 231.2, "current_a": 2.31, "energy_kwh": 1532.118,
     "channels_w": {"kitchen": 12.0, "laundry": 0.0}}

``household_id``, ``meter_id`` and ``ts_ms`` are required, and ``power_w`` unless ``energy_kwh`` is given;
the rest are optional. Version 2 (writers write it; version 1 and readings without ``v`` are read too) carries
interval and register-only meters:

- ``interval_s`` (1 to 86400 seconds): ``power_w`` is the average power over the ``interval_s`` seconds
  ending at ``ts_ms`` (e.g. 900 for a 15-minute meter), not an instantaneous sample;
- ``energy_kwh`` (0 to ``readings.energy_kwh_max``): the meter's cumulative import register. A reading may
  carry it instead of ``power_w``: the preprocessing job turns consecutive register readings of a meter into
  the average power over the interval between them.

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
    INTERVAL_RULE,
    INTERVAL_S_MAX,
    INTERVAL_S_MIN,
    encode,
    KEY_FIELDS,
    READING_VERSION,
    READING_VERSIONS,
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
    energy_kwh_max: float = 1e9

    @classmethod
    def from_settings(cls, readings) -> "ReadingBounds":
        return cls(
            readings.power_w_min,
            readings.power_w_max,
            readings.voltage_v_min,
            readings.voltage_v_max,
            readings.current_a_max,
            readings.max_clock_skew_s * 1000,
            readings.energy_kwh_max,
        )


@dataclass(frozen=True)
class Reading:
    household_id: str
    meter_id: str
    ts_ms: int
    power_w: float | None  # None: a register-only reading (energy_kwh)
    voltage_v: float | None = None
    current_a: float | None = None
    energy_kwh: float | None = None
    channels_w: dict[str, float] = field(default_factory=dict)
    interval_s: int | None = None

    def to_json(self) -> str:
        data: dict[str, Any] = {
            "v": READING_VERSION,
            "household_id": self.household_id,
            "meter_id": self.meter_id,
            "ts_ms": self.ts_ms,
        }
        for name in ("power_w", "voltage_v", "current_a", "energy_kwh", "interval_s"):
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
    "interval_s",
    "channels_w",
}


def parse_reading(payload: bytes | str, bounds: ReadingBounds = ReadingBounds(), now_ms: int | None = None) -> Reading:
    """Decode and validate one reading; raises :class:`InvalidReading` naming the bad field."""
    return validate_reading(decode_object(payload), bounds, now_ms)


def validate_reading(data: Any, bounds: ReadingBounds = ReadingBounds(), now_ms: int | None = None) -> Reading:
    """Validate one decoded reading (a dict from JSON); raises :class:`InvalidReading` naming the bad field."""
    if not isinstance(data, dict):
        raise InvalidReading("", f"expected a JSON object, got {type(data).__name__}")
    version = data.get("v", READING_VERSION)
    if version not in READING_VERSIONS:
        supported = ", ".join(map(str, READING_VERSIONS))
        raise InvalidReading("v", f"unsupported schema version {version!r}; supported: {supported}")
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
    if data.get("power_w") is None and data.get("energy_kwh") is None:
        raise InvalidReading("power_w", "is required (or an energy_kwh register)")
    power_w = _number(data, "power_w", bounds.power_w_min, bounds.power_w_max)
    voltage_v = _number(data, "voltage_v", bounds.voltage_v_min, bounds.voltage_v_max)
    current_a = _number(data, "current_a", 0.0, bounds.current_a_max)
    energy_kwh = _number(data, "energy_kwh", 0.0, bounds.energy_kwh_max)
    interval_s = data.get("interval_s")
    if interval_s is not None and (
        isinstance(interval_s, bool)
        or not isinstance(interval_s, int)
        or not INTERVAL_S_MIN <= interval_s <= INTERVAL_S_MAX
    ):
        raise InvalidReading("interval_s", f"must be {INTERVAL_RULE}, got {interval_s!r}")
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
    return Reading(household_id, meter_id, ts_ms, power_w, voltage_v, current_a, energy_kwh, channels_w, interval_s)


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
