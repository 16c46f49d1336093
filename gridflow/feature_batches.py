"""Feature batches: one window's feature records of a bucket of meters in one Kafka record.

The preprocessing job writes every feature record twice: alone to ``topics.features`` (keyed by household,
for the clustering job and analysts) and in its bucket's batch to ``topics.feature_batches`` (keyed by the
bucket, for the anomaly job). A batch is cut by the same event-time window that made its features, in the
same job, so it goes out as soon as its window closes: no processing-time wait, and a bounded input loses
nothing. A meter's bucket comes from Flink SQL's ``HASH_CODE('household/meter')`` (Java's string hash, whose
low bits repeat for ids such as ``h-000123/m-h-000123``), spread by Knuth's multiplicative hash and scaled to
``buckets`` by its high bits, so any bucket count, a power of two too, spreads the meters evenly;
:func:`bucket_of` is the same function in Python, for other producers (tests, benchmarks, a backfill).

>>> bucket_of("h-0042", "m-0042-1", 256) == bucket_of("h-0042", "m-0042-1", 256) < 256
True
>>> [key for key, _ in batches([{"household_id": "h-1", "meter_id": "m-1", "window_start_ms": 0,
...                               "window_end_ms": 60_000}], 8)]
['0']
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from pydantic import ValidationError

from gridflow.contracts import CONTRACTS, SCHEMA_VERSION, ContractError, dead_letter, decode_object, encode


def hash_code(text: str) -> int:
    """Flink SQL's ``HASH_CODE`` of a string: ``Math.abs`` of Java's ``String.hashCode`` (a 32-bit int;
    ``Math.abs`` leaves -2**31 as it is).

    >>> hash_code("hello"), hash_code("h-01/m-01"), hash_code("polygenelubricants")
    (99162322, 1074587062, -2147483648)
    """
    h, data = 0, text.encode("utf-16-le")  # UTF-16 code units, as Java strings hold them
    for i in range(0, len(data), 2):
        h = (31 * h + (data[i] | data[i + 1] << 8)) & 0xFFFFFFFF
    h = h - (1 << 32) if h >= 1 << 31 else h
    return h if h == -(1 << 31) else abs(h)


# producers write ``window_end_ms`` within the first characters of a batch: the anomaly job reads its event time
# there without parsing the batch (a batch with it further on is judged, but does not move the watermark)
TIME_WITHIN_CHARS = 200
_KNUTH = 2_654_435_761  # Knuth's multiplicative hash constant, about 2**32 / golden ratio
_WORD = 2**32


def bucket_of(household_id: str, meter_id: str, buckets: int) -> int:
    """The bucket of a meter's feature records (as the preprocessing job's SQL computes it)."""
    spread = hash_code(f"{household_id}/{meter_id}") * _KNUTH % _WORD  # Python's % is never negative
    return spread * buckets // _WORD


def bucket_sql(household: str, meter: str, buckets: int) -> str:
    """Flink SQL for :func:`bucket_of`. BIGINT throughout (|hash| <= 2**31, so the product stays below
    2**63; ``spread * buckets`` below 2**53, so the DOUBLE division by 2**32 is exact); MOD keeps the
    dividend's sign, so it is lifted to 0..2**32-1."""
    h = f"CAST(HASH_CODE(CONCAT({household}, '/', {meter})) AS BIGINT)"
    spread = f"MOD(MOD({h} * CAST({_KNUTH} AS BIGINT), {_WORD}) + {_WORD}, {_WORD})"
    return f"CAST(FLOOR(CAST({spread} * {buckets} AS DOUBLE) / {_WORD}.0) AS INT)"


def batch_record(bucket: int, window_start_ms: int, window_end_ms: int, features: Iterable[Mapping[str, Any]]) -> str:
    """A feature batch's payload (the preprocessing job writes the same fields with SQL)."""
    return encode(
        {
            "v": SCHEMA_VERSION,
            "bucket": bucket,
            "window_start_ms": window_start_ms,
            "window_end_ms": window_end_ms,
            "features": list(features),
        }
    )


def batches(features: Iterable[Mapping[str, Any]], buckets: int) -> list[tuple[str, str]]:
    """``(key, payload)`` feature batches of ``features`` as the preprocessing job would write them: one
    per bucket and window, windows in time order (then buckets), each batch's features in input order."""
    grouped: dict[tuple[int, int, int], list[Mapping[str, Any]]] = {}
    for feature in features:
        bucket = bucket_of(str(feature["household_id"]), str(feature["meter_id"]), buckets)
        window = (int(feature["window_end_ms"]), int(feature["window_start_ms"]), bucket)
        grouped.setdefault(window, []).append(feature)
    return [
        (str(bucket), batch_record(bucket, start, end, grouped[(end, start, bucket)]))
        for end, start, bucket in sorted(grouped)
    ]


def decode_batch(payload: str, key: str | None, source: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The feature records of a batch that keep the feature contract, and dead letters for the rest: a
    batch that breaks its own contract is one dead letter, a bad feature inside a good batch is one dead
    letter (its field as ``features.<i>.<field>``) while the batch's other features go on."""
    contract = CONTRACTS["feature_batch"]
    try:  # the common case in one call: pydantic parses and checks the JSON (a third faster than parse, then check)
        batch = contract.adapter.validate_json(payload, strict=True)
    except ValidationError:
        batch = None
    if batch is not None and batch.get("v", contract.version) in contract.versions:
        if not key or str(batch["bucket"]) == key:
            return batch["features"], []
    try:  # the precise reason, as every consumer words it
        return contract.decode(payload, key)["features"], []
    except ContractError as error:
        if not error.field.startswith("features."):
            return [], [dead_letter(payload, error, source)]
    batch = decode_object(payload)  # it parsed above: only a feature broke the contract
    good, dead = [], []
    feature_contract = CONTRACTS["feature"]
    for i, feature in enumerate(batch["features"]):
        text = encode(feature)
        try:
            good.append(feature_contract.decode(text))
        except ContractError as error:
            where = f"features.{i}.{error.field}" if error.field else f"features.{i}"
            dead.append(dead_letter(text, ContractError(where, error.reason), source))
    return good, dead
