"""A stream of readings for the preprocessing job with every kind of trouble, and what must come out.

Three registered meters read every ~10 s for three hours (timestamps jittered by up to 2 s, arrival out of
order by up to 4 s, inside the 5 s allowance), plus:

- h-01: a 9000 W spike at ~130 s, a redelivered duplicate at ~300 s, a 20 s gap at ~1210 s (interpolated),
  a gap 1825-2400 s (missing, not invented), and one reading for minute 1 arriving after
  minute 10 (late);
- h-02: 2-4 W of sensor noise (below the 5 W noise floor) between 3600 and 4200 s, and a stuck value at the end;
- h-09: an unregistered meter (dead-lettered as unknown);
- malformed payloads, one per validation rule (the version 2 fields too).
"""

from __future__ import annotations

import json
import math
import random

START_MS = 1_768_435_200_000  # 2026-01-15 00:00 UTC
DURATION_S = 3 * 3600
REGISTERED = [("h-01", "m-01"), ("h-02", "m-02"), ("h-03", "m-03")]
UNKNOWN = ("h-09", "m-09")
LATE = {"household_id": "h-01", "meter_id": "m-01", "ts_ms": START_MS + 65_000, "power_w": 333.0}
# a good reading of h-01 keyed as h-02's: the job rejects it like every consumer of a contract
FOREIGN = (
    "h-02",
    b'{"household_id": "h-01", "meter_id": "m-01", "ts_ms": 1768435260000, "power_w": 5}',
    "household_id",
    "'h-01' does not match the record's Kafka key 'h-02'",
)
MALFORMED = [
    (b"{broken json", "", "expected a JSON object"),
    (b"[1, 2]", "", "expected a JSON object"),
    (
        b'{"household_id": "h-01", "meter_id": "m-01", "ts_ms": 1768435200000}',
        "power_w",
        "is required (or an energy_kwh register)",
    ),
    (
        b'{"household_id": "h-01", "meter_id": "m-01", "ts_ms": 1768435200000, "power_w": "abc"}',
        "power_w",
        "must be a finite number",
    ),
    (
        b'{"household_id": "h-02", "meter_id": "m-02", "ts_ms": 1768435200000, "power_w": 1e12}',
        "power_w",
        "1.0E12 is outside the physically possible range [-30000.0, 50000.0]",
    ),
    (
        b'{"household_id": "h 03", "meter_id": "m-03", "ts_ms": 1768435200000, "power_w": 5}',
        "household_id",
        "must be 1-64 characters of letters, digits, '._:-', starting with a letter or digit",
    ),
    (
        b'{"household_id": "h-03", "ts_ms": 1768435200000, "power_w": 5}',
        "meter_id",
        "must be 1-64 characters of letters, digits, '._:-', starting with a letter or digit",
    ),
    (
        b'{"household_id": "h-04", "meter_id": "m-04", "ts_ms": -5, "power_w": 5}',
        "ts_ms",
        "-5 is before 2000-01-01 (meter clock not set?)",
    ),
    (
        b'{"household_id": "h-04", "meter_id": "m-04", "ts_ms": "noon", "power_w": 5}',
        "ts_ms",
        "must be an integer of epoch milliseconds",
    ),
    (
        b'{"household_id": "h-04", "meter_id": "m-04", "ts_ms": 4102444800000, "power_w": 5}',
        "ts_ms",
        "4102444800000 is more than 300000 ms in the future",
    ),
    (
        b'{"v": 3, "household_id": "h-04", "meter_id": "m-04", "ts_ms": 1768435200000, "power_w": 5}',
        "v",
        "unsupported schema version 3; supported: 1, 2",
    ),
    (
        b'{"v": 2, "household_id": "h-04", "meter_id": "m-04", "ts_ms": 1768435200000, "energy_kwh": "abc"}',
        "energy_kwh",
        "must be a finite number",
    ),
    (
        b'{"v": 2, "household_id": "h-04", "meter_id": "m-04", "ts_ms": 1768435200000, "energy_kwh": -1}',
        "energy_kwh",
        "-1.0 is outside the physically possible range [0.0, 1000000000.0]",
    ),
    (
        b'{"v": 2, "household_id": "h-04", "meter_id": "m-04", "ts_ms": 1768435200000, "power_w": 5, "interval_s": 0}',
        "interval_s",
        "must be a whole number of seconds in [1, 86400]",
    ),
    (
        b'{"v": 2, "household_id": "h-04", "meter_id": "m-04", "ts_ms": 1768435200000, "power_w": 5, '
        b'"interval_s": 1.5}',
        "interval_s",
        "must be a whole number of seconds in [1, 86400]",
    ),
    (
        b'{"v": 2, "household_id": "h-04", "meter_id": "m-04", "ts_ms": 1768435200000, "energy_kwh": 7, '
        b'"interval_s": "15min"}',
        "interval_s",
        "must be a whole number of seconds in [1, 86400]",
    ),
    (
        b'{"household_id": "h-04", "meter_id": "m-04", "ts_ms": 1768435200000, "power_w": 5, "voltage_v": 999}',
        "voltage_v",
        "999.0 is outside the physically possible range [0.0, 300.0]",
    ),
]


def _power(household: str, t_s: float) -> float:
    if household == "h-02" and 3600 <= t_s < 4200:
        return 2.0 + (t_s % 3)
    if household == "h-02" and t_s >= DURATION_S - 120:
        return 777.0  # stuck
    base = {"h-01": 400.0, "h-02": 900.0, "h-03": 150.0, "h-09": 50.0}[household]
    return round(base + 0.4 * base * math.sin(t_s / 900.0), 2)


def _skip(household: str, t_s: float) -> bool:
    return household == "h-01" and (1205 <= t_s < 1225 or 1825 <= t_s < 2400)


def stream(seed: int = 7) -> tuple[list[dict], list[tuple[str | None, bytes]]]:
    """``(accepted, records)``: the readings the job must use, and the Kafka records in arrival order."""
    rng = random.Random(seed)
    readings = []
    for household, meter in REGISTERED + [UNKNOWN]:
        for k in range(DURATION_S // 10 if household != "h-09" else 12):
            t_s = k * 10 + rng.uniform(0, 2)
            if _skip(household, t_s):
                continue
            power = 9000.0 if household == "h-01" and k == 13 else _power(household, t_s)
            readings.append(
                {"household_id": household, "meter_id": meter, "ts_ms": START_MS + int(t_s * 1000), "power_w": power}
            )
    arrival = sorted(readings, key=lambda r: r["ts_ms"] + rng.uniform(0, 4000))
    records = [(r["household_id"], json.dumps(r).encode()) for r in arrival]
    duplicate = next(
        i for i, r in enumerate(arrival) if r["household_id"] == "h-01" and r["ts_ms"] >= START_MS + 300_000
    )
    records.insert(duplicate + 1, records[duplicate])
    after_minute_10 = next(
        i for i, r in enumerate(arrival) if r["household_id"] == "h-01" and r["ts_ms"] >= START_MS + 600_000
    )
    records.insert(after_minute_10 + 2, ("h-01", json.dumps(LATE).encode()))
    # where the stream reaches its time: earlier it would move the watermark, later it would be late
    at = next(i for i, (_, payload) in enumerate(records) if json.loads(payload)["ts_ms"] >= START_MS + 60_000)
    records.insert(at, FOREIGN[:2])
    for i, (payload, _, _) in enumerate(MALFORMED):
        records.insert((i + 1) * len(records) // (len(MALFORMED) + 1), (None, payload))
    accepted = [r for r in readings if r["household_id"] != UNKNOWN[0]]
    return accepted, records
