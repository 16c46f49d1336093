"""What the MQTT -> Kafka bridge does with one MQTT message (pure: no clients, no I/O).

A meter publishes to ``meters/<household_id>/readings`` either one reading (a JSON object) or, when
it has several pending (catching up after being offline, or sampling faster than it publishes), a
JSON array of readings. Every valid reading becomes one Kafka record keyed by household; a single
reading is forwarded byte for byte. Anything else becomes a dead-letter record with the reason: a
payload that is not JSON, a reading that fails validation, or a reading whose household differs from
the topic it was published on (meters may only speak for themselves).
"""

from __future__ import annotations

import time
from typing import Mapping

import orjson

from gridflow.connectors.adapters import PARSERS, match_topic
from gridflow.readings import InvalidReading, ReadingBounds, dead_letter, validate_reading

MAX_BATCH = 1000


class Routed:
    """One Kafka record to produce: ``dead`` selects the dead-letter topic. (A plain slotted class: one is
    made per reading on the bridge's hot path, where a frozen dataclass cost a microsecond each.)"""

    __slots__ = ("key", "value", "dead", "field")

    def __init__(self, key: bytes | None, value: bytes, dead: bool, field: str = ""):
        self.key, self.value, self.dead, self.field = key, value, dead, field

    def __repr__(self) -> str:
        return f"Routed(key={self.key!r}, value={self.value!r}, dead={self.dead}, field={self.field!r})"


def household_from_topic(topic: str, template: str) -> str | None:
    """The ``{household_id}`` part of ``topic`` for a template like ``meters/{household_id}/readings``."""
    prefix, _, suffix = template.partition("{household_id}")
    if not topic.startswith(prefix) or not topic.endswith(suffix) or len(topic) <= len(prefix) + len(suffix):
        return None
    household = topic[len(prefix) : len(topic) - len(suffix)]
    return household if "/" not in household else None


def route(
    topic: str,
    payload: bytes,
    template: str,
    bounds: ReadingBounds,
    now_ms: int | None = None,
    source: str = "mqtt",
    adapters: Mapping[str, str] = {},
) -> list[Routed]:
    """Kafka records for one MQTT message: forwarded readings and dead letters, never an exception.
    ``adapters`` maps payload formats to their topics (``bridge.adapters``): a message on one of those
    is read by :mod:`gridflow.connectors.adapters` and forwarded as gridflow readings."""
    household = household_from_topic(topic, template)
    key = household.encode() if household else None
    where = f"{source}:{topic}"
    if household is None:
        for kind, adapter_template in adapters.items():
            matched = match_topic(topic, adapter_template)
            if matched is not None:
                return _adapted(kind, payload, *matched, bounds, now_ms, where)
        expected = ", ".join([template, *adapters.values()])
        return [_dead(payload, InvalidReading("topic", f"topic {topic!r} matches none of {expected}"), where, key)]
    try:
        data = orjson.loads(payload)  # strict JSON (no NaN/Infinity), UTF-8 only, bounded nesting
    except orjson.JSONDecodeError as exc:
        return [_dead(payload, InvalidReading("", f"not JSON: {exc}"), where, key)]
    if isinstance(data, list):
        if not data or len(data) > MAX_BATCH:
            return [
                _dead(
                    payload, InvalidReading("", f"a batch holds 1..{MAX_BATCH} readings, got {len(data)}"), where, key
                )
            ]
        return [_one(orjson.dumps(item), item, household, template, bounds, now_ms, where, key) for item in data]
    return [_one(payload, data, household, template, bounds, now_ms, where, key)]


def _one(raw: bytes, data, household: str, template: str, bounds, now_ms, where: str, key: bytes | None) -> Routed:
    try:
        reading = validate_reading(data, bounds, now_ms)
    except InvalidReading as error:
        return _dead(raw, error, where, key)
    if reading.household_id != household:
        expected = template.replace("{household_id}", reading.household_id)
        return _dead(
            raw,
            InvalidReading(
                "household_id",
                f"{reading.household_id!r} published on another household's topic; it belongs on {expected!r}",
            ),
            where,
            key,
        )
    return Routed(key, raw, dead=False)


def _adapted(
    kind: str, payload: bytes, household: str, rest: str, bounds: ReadingBounds, now_ms: int | None, where: str
) -> list[Routed]:
    key = household.encode()
    try:
        readings = PARSERS[kind](payload, household, rest, now_ms if now_ms is not None else int(time.time() * 1000))
    except InvalidReading as error:
        return [_dead(payload, InvalidReading(error.field, f"{kind}: {error.reason}"), where, key)]
    except Exception as error:  # a parser library's own error: the bridge must never stop on a payload
        reason = f"{kind}: unreadable payload ({type(error).__name__}: {error})"[:500]
        return [_dead(payload, InvalidReading("", reason), where, key)]
    routed = []
    for data in readings:
        try:
            validate_reading(data, bounds, now_ms)
        except InvalidReading as error:
            routed.append(_dead(payload, InvalidReading(error.field, f"{kind}: {error.reason}"), where, key))
            continue
        routed.append(Routed(key, orjson.dumps(data), dead=False))
    return routed


def _dead(raw: bytes, error: InvalidReading, where: str, key: bytes | None) -> Routed:
    return Routed(key, dead_letter(raw, error, where).encode(), dead=True, field=error.field or "payload")
