"""Payloads of the meters people already own, turned into gridflow readings (pure: no clients, no I/O).

Each format has a topic under the household's own ``meters/<household_id>/`` tree (``bridge.adapters``,
whose defaults the table shows),
so the broker's ACL lets a device publish there only with its household's account. Units are converted
to the reading contract's (W, V, A, kWh of the import register); a payload that cannot be read raises
:class:`~gridflow.readings.InvalidReading` naming the field, which the bridge dead-letters.

========  ====================================  =====================================================
format    default topic                         payload
========  ====================================  =====================================================
dsmr      ``meters/{household_id}/p1``          a DSMR 5 P1 telegram as text, CRC checked (dsmr-parser)
sml       ``meters/{household_id}/sml``         SML 1.04 binary, one transmission, CRC checked (smllib)
tasmota   ``meters/{household_id}/tele/SENSOR`` Tasmota's telemetry JSON with its ``ENERGY`` object
shelly    ``meters/{household_id}/shelly/#``    Shelly Gen2+ ``status/em:N`` / ``status/em1:N`` JSON, or
                                                an ``events/rpc`` NotifyStatus carrying them
========  ====================================  =====================================================

Time stamps: the telegram's own for DSMR (the meter's clock, winter/summer flag included) and the
NotifyStatus ``ts`` for Shelly; Tasmota's ``Time`` has no time zone and SML carries none, so those get
the time the bridge received them.
"""

from __future__ import annotations

from typing import Any, Callable


from gridflow.contracts import ID
from gridflow.contracts.core import decode_object
from gridflow.readings import SCHEMA_VERSION, InvalidReading

SML_POWER, SML_IMPORT = "0100100700ff", "0100010800ff"  # OBIS 1-0:16.7.0 (W) and 1-0:1.8.0 (Wh)
UNIT_W, UNIT_WH = 27, 30  # DLMS/COSEM unit codes


def match_topic(topic: str, template: str) -> tuple[str, str] | None:
    """``(household id, the rest below a trailing /#)`` when ``topic`` fits ``template``, else None.

    >>> match_topic("meters/h-1/shelly/status/em:0", "meters/{household_id}/shelly/#")
    ('h-1', 'status/em:0')
    >>> match_topic("meters/h-1/p1", "meters/{household_id}/p1"), match_topic("meters/a/b/p1", "meters/{household_id}/p1")
    (('h-1', ''), None)
    """
    prefix, _, suffix = template.partition("{household_id}")
    below = suffix.endswith("/#")
    if below:
        suffix = suffix[:-1]  # keep the slash: "/shelly/"
    if not topic.startswith(prefix):
        return None
    rest_of_topic = topic[len(prefix) :]
    household, slash, tail = rest_of_topic.partition("/")
    if not household or not ID.match(household):
        return None
    tail = slash + tail
    if below:
        return (household, tail[len(suffix) :]) if tail.startswith(suffix) and len(tail) > len(suffix) else None
    return (household, "") if tail == suffix else None


def _meter_id(candidate: str | None, household: str, kind: str) -> str:
    if candidate and ID.match(candidate):
        return candidate
    return f"{household}-{kind}"[:64]


def _reading(household: str, meter_id: str, ts_ms: int, power_w: float, **optional) -> dict:
    reading = {"v": SCHEMA_VERSION, "household_id": household, "meter_id": meter_id, "ts_ms": int(ts_ms)}
    reading["power_w"] = round(float(power_w), 3)
    for name, value in optional.items():
        if value is not None:
            reading[name] = value if isinstance(value, dict) else round(float(value), 4)
    return reading


def _number(data: dict, name: str, field: str) -> float | None:
    value = data.get(name)
    if isinstance(value, list):  # a multi-channel Tasmota device: one value per channel
        value = value[0] if value else None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidReading(field, f"{name!r} must be a number, got {value!r}")
    return float(value)


def _required(data: dict, name: str, field: str) -> float:
    value = _number(data, name, field)
    if value is None:
        raise InvalidReading(field, f"{name!r} is missing")
    return value


def parse_tasmota(payload: bytes, household: str, rest: str, now_ms: int) -> list[dict]:
    """Tasmota ``tele/<topic>/SENSOR``: ``{"Time": ..., "ENERGY": {"Power": W, "Voltage": V, "Current": A,
    "Total": kWh, ...}}``; a multi-channel device's lists are summed (power) or its first channel taken."""
    energy = decode_object(payload).get("ENERGY")
    if not isinstance(energy, dict):
        raise InvalidReading("ENERGY", "a Tasmota SENSOR message needs its ENERGY object (an energy-monitoring device)")
    power = energy.get("Power")
    channels = None
    if isinstance(power, list):
        if not power or not all(isinstance(p, (int, float)) and not isinstance(p, bool) for p in power):
            raise InvalidReading("power_w", f"'Power' must be a number or a list of numbers, got {power!r}")
        channels = {f"ch{i + 1}": float(p) for i, p in enumerate(power)}
        power_w = float(sum(power))
    else:
        power_w = _required(energy, "Power", "power_w")
    return [
        _reading(
            household,
            _meter_id(None, household, "tasmota"),
            now_ms,
            power_w,
            voltage_v=_number(energy, "Voltage", "voltage_v"),
            current_a=_number(energy, "Current", "current_a"),
            energy_kwh=_number(energy, "Total", "energy_kwh"),
            channels_w=channels,
        )
    ]


def _shelly_component(name: str, status: dict, household: str, source: str | None, ts_ms: int) -> dict:
    kind, _, index = name.partition(":")
    if not isinstance(status, dict):
        raise InvalidReading(name, "a Shelly component status must be an object")
    meter_id = _meter_id(f"{source}-{kind}{index}" if source else None, household, f"{kind}{index}")
    if kind == "em":  # three phases (Pro 3EM): totals, per-phase power as channels
        channels = {p: _number(status, f"{p}_act_power", "channels_w") for p in "abc"}
        return _reading(
            household,
            meter_id,
            ts_ms,
            _required(status, "total_act_power", "power_w"),
            voltage_v=_number(status, "a_voltage", "voltage_v"),
            current_a=_number(status, "total_current", "current_a"),
            channels_w={p: w for p, w in channels.items() if w is not None} or None,
        )
    return _reading(  # em1: one channel (Pro EM, EM Gen3)
        household,
        meter_id,
        ts_ms,
        _required(status, "act_power", "power_w"),
        voltage_v=_number(status, "voltage", "voltage_v"),
        current_a=_number(status, "current", "current_a"),
    )


def parse_shelly(payload: bytes, household: str, rest: str, now_ms: int) -> list[dict]:
    """Shelly Gen2+ energy meters over MQTT: ``status/em:N`` or ``status/em1:N`` (the component's status),
    or ``events/rpc`` with ``NotifyStatus`` (its ``params.ts`` is the time)."""
    data = decode_object(payload)
    if rest.startswith("status/"):
        component = rest[len("status/") :]
        if component.partition(":")[0] not in ("em", "em1"):
            raise InvalidReading("topic", f"Shelly component {component!r} is no energy meter (em:N or em1:N)")
        return [_shelly_component(component, data, household, None, now_ms)]
    if rest == "events/rpc" and data.get("method") == "NotifyStatus":
        params = data.get("params")
        if not isinstance(params, dict):
            raise InvalidReading("params", "NotifyStatus without params")
        ts = params.get("ts")
        if ts is None:
            ts_ms = now_ms
        elif isinstance(ts, bool) or not isinstance(ts, (int, float)) or not 0 < ts < 1e11:
            raise InvalidReading("ts_ms", f"NotifyStatus ts must be Unix seconds, got {ts!r}")
        else:
            ts_ms = int(ts * 1000)
        source = data.get("src") if isinstance(data.get("src"), str) else None
        names = [n for n in params if n.partition(":")[0] in ("em", "em1")]
        if not names:
            raise InvalidReading("params", "NotifyStatus carries no em:N or em1:N status")
        return [_shelly_component(n, params[n], household, source, ts_ms) for n in sorted(names)]
    raise InvalidReading("topic", f"Shelly topic '.../{rest}' carries no energy-meter status")


def parse_dsmr(payload: bytes, household: str, rest: str, now_ms: int) -> list[dict]:
    """A DSMR 5 P1 telegram: net power (delivered minus returned), the import registers (tariffs 1 + 2),
    L1 voltage and current, per-phase net power as channels, the meter's own time stamp."""
    from dsmr_parser import telegram_specifications
    from dsmr_parser.exceptions import InvalidChecksumError, ParseError
    from dsmr_parser.parsers import TelegramParser

    try:
        text = payload.decode("ascii")
    except UnicodeDecodeError:
        raise InvalidReading("", "a P1 telegram is ASCII text") from None
    try:
        telegram = TelegramParser(telegram_specifications.V5).parse(text, throw_ex=True)
    except InvalidChecksumError as exc:
        raise InvalidReading("", f"P1 telegram CRC mismatch: {exc}") from None
    except (ParseError, ValueError, ArithmeticError) as exc:  # ArithmeticError: decimal.InvalidOperation
        raise InvalidReading("", f"not a DSMR 5 P1 telegram: {type(exc).__name__}: {exc}") from None

    def value(name: str) -> Any:  # Decimal for numbers, datetime for time stamps, str for identifiers
        item = getattr(telegram, name, None)
        return getattr(item, "value", None)

    used, returned = value("CURRENT_ELECTRICITY_USAGE"), value("CURRENT_ELECTRICITY_DELIVERY")
    stamp = value("P1_MESSAGE_TIMESTAMP")
    if used is None:
        raise InvalidReading("power_w", "the telegram has no 1-0:1.7.0 (power delivered)")
    if stamp is None:
        raise InvalidReading("ts_ms", "the telegram has no 0-0:1.0.0 (time stamp)")
    tariffs = [value("ELECTRICITY_USED_TARIFF_1"), value("ELECTRICITY_USED_TARIFF_2")]
    channels = {}
    for phase in ("L1", "L2", "L3"):
        plus = value(f"INSTANTANEOUS_ACTIVE_POWER_{phase}_POSITIVE")
        minus = value(f"INSTANTANEOUS_ACTIVE_POWER_{phase}_NEGATIVE")
        if plus is not None:
            channels[phase.lower()] = float((plus - (minus or 0)) * 1000)
    identifier = value("EQUIPMENT_IDENTIFIER")
    try:
        serial = bytes.fromhex(str(identifier)).decode("ascii") if identifier else None
    except (ValueError, UnicodeDecodeError):
        serial = None
    single_phase = value("INSTANTANEOUS_VOLTAGE_L2") is None
    return [
        _reading(
            household,
            _meter_id(serial, household, "p1"),
            int(stamp.timestamp() * 1000),
            float((used - (returned or 0)) * 1000),
            voltage_v=value("INSTANTANEOUS_VOLTAGE_L1"),
            current_a=value("INSTANTANEOUS_CURRENT_L1") if single_phase else None,
            energy_kwh=sum(tariffs) if all(t is not None for t in tariffs) else None,
            channels_w=channels or None,
        )
    ]


def parse_sml(payload: bytes, household: str, rest: str, now_ms: int) -> list[dict]:
    """One SML transmission: 1-0:16.7.0 (active power, W) and 1-0:1.8.0 (import register, Wh)."""
    from smllib import SmlStreamReader
    from smllib.errors import CrcError

    reader = SmlStreamReader()
    reader.add(payload)
    try:
        frame = reader.get_frame()
        if frame is None:
            raise InvalidReading("", "not a complete SML transmission (escape sequence, version, end and CRC)")
        values: dict[str, Any] = {str(entry.obis): entry for entry in frame.get_obis()}
        bodies = [m.message_body for m in frame.parse_frame()]
        server = next((getattr(b, "server_id") for b in bodies if getattr(b, "server_id", None)), None)
    except CrcError as exc:
        raise InvalidReading("", f"SML CRC mismatch: {exc}") from None
    except InvalidReading:
        raise
    except Exception as exc:  # smllib's decoding errors have no common base
        raise InvalidReading("", f"not SML: {type(exc).__name__}: {exc}") from None
    power = values.get(SML_POWER)
    if power is None:
        raise InvalidReading("power_w", "the transmission has no 1-0:16.7.0 (active power)")
    if power.unit not in (None, UNIT_W):
        raise InvalidReading("power_w", f"1-0:16.7.0 in unit {power.unit}, expected W ({UNIT_W})")
    register = values.get(SML_IMPORT)
    if register is not None and register.unit not in (None, UNIT_WH):
        raise InvalidReading("energy_kwh", f"1-0:1.8.0 in unit {register.unit}, expected Wh ({UNIT_WH})")
    power_w, energy_wh = _sml_number(power, "power_w"), _sml_number(register, "energy_kwh")
    assert power_w is not None  # power is present: checked above
    return [
        _reading(
            household,
            _meter_id(f"sml-{server}" if isinstance(server, str) else None, household, "sml"),
            now_ms,
            power_w,
            energy_kwh=energy_wh / 1000.0 if energy_wh is not None else None,
        )
    ]


def _sml_number(entry, field: str) -> float | None:
    if entry is None:
        return None
    value, scaler = entry.value, entry.scaler or 0
    if isinstance(value, bool) or not isinstance(value, int) or not isinstance(scaler, int) or abs(scaler) > 9:
        raise InvalidReading(field, f"SML {entry.obis} must be an integer with a small scaler, got {value!r}")
    return float(value) * 10.0**scaler


PARSERS: dict[str, Callable[[bytes, str, str, int], list[dict]]] = {
    "dsmr": parse_dsmr,
    "sml": parse_sml,
    "tasmota": parse_tasmota,
    "shelly": parse_shelly,
}
