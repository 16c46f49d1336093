"""What every record between gridflow's topics shares: identifiers, the contract error, the compact JSON
encoder, the dead-letter record and the Kafka key.

A :class:`Contract` binds one topic's record type (a ``TypedDict`` in :mod:`gridflow.contracts.records`) to
the schema versions its consumers read (producers write the newest) and the field that orders it (its Kafka
key). Consumers call :meth:`Contract.decode`: it returns the record as a plain dict or raises
:class:`ContractError` naming the field and the reason, which becomes a dead letter (:func:`dead_letter`).
Consumers are tolerant readers: fields a newer producer added within the same version are kept and ignored;
producers are strict (:meth:`Contract.check_written`, run by the tests over every record a demo run writes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Annotated, Any, Mapping

import orjson
from pydantic import Field, TypeAdapter, ValidationError

SCHEMA_VERSION = 1
# readings come from meters that cannot all be updated at once: consumers read every version still in the field
READING_VERSIONS = (1, 2)
READING_VERSION = READING_VERSIONS[-1]
INTERVAL_S_MIN, INTERVAL_S_MAX = 1, 86_400  # a reading's ``interval_s``: a second to a day
INTERVAL_RULE = f"a whole number of seconds in [{INTERVAL_S_MIN}, {INTERVAL_S_MAX}]"
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"  # JSON Schema and pydantic: '$' is the end of the text
ID = re.compile(ID_PATTERN[:-1] + r"\Z")  # Python's '$' would also match before a final line break
ID_PATTERN_JAVA = ID_PATTERN[:-1] + r"\z"  # Flink SQL's REGEXP (Java): likewise
ID_RULE = "1-64 characters of letters, digits, '._:-', starting with a letter or digit"
Identifier = Annotated[str, Field(pattern=ID_PATTERN, description=f"an identifier: {ID_RULE}")]
EpochMs = Annotated[int, Field(ge=0, description="epoch milliseconds (UTC)")]


class ContractError(ValueError):
    """A record that breaks its contract. ``field`` names the offending field ('' = the whole record)."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason


def encode(record: Mapping[str, Any]) -> str:
    """The one JSON encoding of every record gridflow writes: compact, UTF-8, no NaN (``orjson``)."""
    return orjson.dumps(record).decode()


def decode_object(payload: bytes | str) -> dict:
    """A JSON object from ``payload``; raises :class:`ContractError` (field '') if it is not JSON or not an
    object."""
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise ContractError("", f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ContractError("", f"expected a JSON object, got {type(data).__name__}")
    return data


def dead_letter(payload: bytes | str, error: ContractError | str, source: str, ts_ms: int | None = None) -> str:
    """A dead-letter record: the original payload kept verbatim with the field and the reason it was
    rejected, and where (``source``: the topic or connector that read it)."""
    if isinstance(payload, bytes):
        payload = payload.decode("utf-8", errors="backslashreplace")
    if isinstance(error, ContractError):
        field_name, reason = error.field, error.reason
    else:
        field_name, reason = "", str(error)
    record: dict[str, Any] = {
        "v": SCHEMA_VERSION,
        "source": source,
        "field": field_name,
        "reason": reason,
        "payload": payload,
    }
    if ts_ms is not None:
        record["ts_ms"] = ts_ms
    return encode(record)


# Fields that order an output record, in the order a record's Kafka key is taken from (see record_key).
KEY_FIELDS = ("household_id", "meter_id", "market", "feeder", "cluster")


def record_key(payload: bytes | str) -> str:
    """The Kafka key of a JSON output record: the first of :data:`KEY_FIELDS` it has (the household for
    its records, the market for price forecasts, the cluster for centroids); a dead letter is keyed like the
    record it carries, or by its source when that has no key. '' for a record with none of them.

    >>> record_key('{"household_id": "h-7", "cluster": 2}'), record_key('{"market": "NL"}')
    ('h-7', 'NL')
    >>> record_key('{"source": "kafka:grid.prices", "reason": "...", "payload": "not json"}')
    'kafka:grid.prices'
    """
    try:
        record = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return ""
    if not isinstance(record, dict):
        return ""
    for name in KEY_FIELDS:
        value = record.get(name)
        if value is not None and value != "" and not isinstance(value, (dict, list)):
            return str(value)
    if isinstance(record.get("payload"), str) and "reason" in record:
        return record_key(record["payload"]) or str(record.get("source") or "")
    return ""


def household_id_of(payload: bytes | str) -> str:
    """The ``household_id`` field of a JSON record as a string, '' if the record has none."""
    try:
        record = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return ""
    return str(record.get("household_id") or "") if isinstance(record, dict) else ""


@dataclass(frozen=True)
class Contract:
    """One topic's record: its type, the settings name of its topic, and the field its Kafka key holds.

    ``key_field`` is the field that orders the records (``None``: records are keyed by what they carry,
    as dead letters are). ``example`` is a valid record, shown in the schema and used by the tests.
    ``versions``: the schema versions consumers accept, oldest first (producers write the last).
    ``required_unless``: an optional field -> ``(the field that may stand in for it, the reason when both are
    missing)``, for what a ``TypedDict`` cannot say (the record type's JSON Schema says it with ``anyOf``).
    """

    name: str
    record_type: type
    topic: str
    key_field: str | None
    description: str
    example: Mapping[str, Any] = field(default_factory=dict)
    versions: tuple[int, ...] = (SCHEMA_VERSION,)
    unknown_field_hints: Mapping[str, str] = field(default_factory=dict)  # part of a field's name -> advice
    required_unless: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def version(self) -> int:
        """The version producers write (the newest)."""
        return self.versions[-1]

    @cached_property
    def adapter(self) -> TypeAdapter:
        return TypeAdapter(self.record_type)

    @cached_property
    def fields(self) -> frozenset[str]:
        return frozenset(self.record_type.__annotations__)

    @cached_property
    def closed(self) -> bool:
        """Whether the record refuses unknown fields (readings and prices, which come from outside)."""
        return getattr(self.record_type, "__pydantic_config__", {}).get("extra") == "forbid"

    def decode(self, payload: bytes | str, key: str | None = None) -> dict[str, Any]:
        """Validate one record read from the topic; ``key`` is its Kafka key (``None``/'' when it has none).
        Returns the record as a dict; raises :class:`ContractError` naming the field and the reason."""
        record = decode_object(payload)
        version = record.get("v", self.version)
        if version not in self.versions:
            supported = ", ".join(map(str, self.versions))
            raise ContractError(
                "v", f"unsupported schema version {version!r} of the {self.name} record; supported: {supported}"
            )
        if self.closed:
            unknown = sorted(set(record) - self.fields)
            if unknown:
                hints = [h for part, h in self.unknown_field_hints.items() if part in unknown[0].lower()]
                raise ContractError(
                    unknown[0],
                    f"unknown field{' (' + hints[0] + ')' if hints else ''}; allowed "
                    f"fields: {', '.join(sorted(self.fields))}",
                )
        try:
            self.adapter.validate_python(record, strict=True)
        except ValidationError as error:
            raise _contract_error(error) from None
        for name, (stand_in, reason) in self.required_unless.items():
            if name not in record and stand_in not in record:
                raise ContractError(name, reason)
        if key and self.key_field is not None and str(record[self.key_field]) != key:
            raise ContractError(
                self.key_field, f"{record[self.key_field]!r} does not match the record's Kafka key {key!r}"
            )
        return record

    def check_written(self, record: Mapping[str, Any]) -> None:
        """A producer's check: the record is valid and carries no field outside the contract."""
        extra = sorted(set(record) - self.fields)
        if extra:
            raise ContractError(
                extra[0], f"not a field of the {self.name} record; its fields: {', '.join(sorted(self.fields))}"
            )
        self.decode(encode(record))


def _contract_error(error: ValidationError) -> ContractError:
    first = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"])
    if first["type"] == "missing":
        return ContractError(where, "is required")
    shown = repr(first.get("input"))
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return ContractError(where, f"{first['msg'][0].lower()}{first['msg'][1:]}, got {shown}")
