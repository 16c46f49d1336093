"""Decoding and checking raw reading payloads in bulk: the Python half of the job's ``"scan"`` decoder (no Flink).

:func:`decode_batch` reads a batch of payloads with the strict JSON scanner ``native/_decode.pyx`` (one pass
per payload; it reads a payload only where it provably reads it as Flink's ``JSON_VALUE`` + ``TRY_CAST``
would) and checks the readings it read against the rules of ``validation_sql`` that do not depend on the
clock. It returns per payload a rule ``code`` (see :data:`CODES`: 0 = no problem, else the number of the
first rule that fails; ``NOT_READ``/``NOT_READ_LATE`` = left to ``JSON_VALUE``) and the typed fields the
job needs downstream or to word a problem. The SQL in ``validation_sql`` turns codes into the same
``problem`` text its ``JSON_VALUE`` path would produce, adds the clock-dependent rule (``ts_ms`` in the
future) and handles the payloads the scanner left.

Columns use no nulls where Arrow would make them slow: a missing integer is :data:`NULL_INT`
(-2**63, which the scanner never reads), a missing number NaN (which it never reads either). ``interval_s``
is read as a number (so ``900.0`` is a whole number of seconds, as for ``TRY_CAST(... AS DOUBLE)`` in SQL)
and returned as an integer: :data:`NULL_INT` unless it is a whole number of seconds in range.

>>> from gridflow.readings import ReadingBounds
>>> out = decode_batch(['{"household_id":"h-1","meter_id":"m-1","ts_ms":1700000000000,"power_w":9e9}',
...                     '{"household_id":"h-1","meter_id":"m-1","ts_ms":1700000000000,"power_w":5}', '[1]',
...                     '{"v":2,"household_id":"h-1","meter_id":"m-1","ts_ms":1700000000000,"energy_kwh":1532.1,'
...                     '"interval_s":900}'], np.array([False, True, False, False]), ReadingBounds())
>>> out["code"].tolist(), out["household_id"], out["interval_s"].tolist()[3], out["power_w"].tolist()[3]
([10, 15, -1, 0], ['h-1', 'h-1', None, 'h-1'], 900, nan)
"""

from __future__ import annotations

import numpy as np

from gridflow.readings import _MIN_TS_MS, INTERVAL_S_MAX, INTERVAL_S_MIN, READING_VERSIONS, ReadingBounds

NULL_INT = np.iinfo(np.int64).min
NOT_READ, NOT_READ_LATE = -1, -2
# rule number -> (field, the rule in words); the order is the order of the checks, the first failing one counts
CODES = {
    1: ("", "not a JSON object"),
    2: ("v", "unsupported schema version"),
    3: ("household_id", "bad identifier"),
    4: ("meter_id", "bad identifier"),
    5: ("ts_ms", "not an integer"),
    6: ("ts_ms", "before 2000"),
    7: ("ts_ms", "in the future (clock-dependent: checked in SQL only)"),
    8: ("power_w", "required unless energy_kwh is given"),
    9: ("power_w", "not a finite number"),
    10: ("power_w", "out of range"),
    11: ("voltage_v", "not a finite number"),
    12: ("voltage_v", "out of range"),
    13: ("current_a", "not a finite number"),
    14: ("current_a", "out of range"),
    16: ("energy_kwh", "not a finite number"),
    17: ("energy_kwh", "out of range"),
    18: ("interval_s", "not a whole number of seconds in range"),
    15: ("ts_ms", "late"),
}


def decode_batch(payloads, late: np.ndarray, bounds: ReadingBounds) -> dict[str, np.ndarray | list]:
    """Columns ``code`` (int32), ``household_id``, ``meter_id`` (str or None), ``ts_ms``, ``v`` (int64,
    :data:`NULL_INT` when absent), ``power_w``, ``voltage_v``, ``current_a``, ``energy_kwh`` (float64, NaN when
    absent), ``interval_s`` (int64, :data:`NULL_INT` when absent or failing rule 18).
    ``late`` says which records are behind the watermark (rule 15). Fields of unread payloads are unset."""
    from gridflow.native._decode import scan_readings

    s = scan_readings(payloads)
    fast, late = s["fast"], np.asarray(late, dtype=bool)
    power, voltage, current, energy, interval = (
        s[name] for name in ("power_w", "voltage_v", "current_a", "energy_kwh", "interval_s")
    )
    with np.errstate(invalid="ignore"):  # NaN compares False: an absent optional value is never out of range
        whole = (interval >= INTERVAL_S_MIN) & (interval <= INTERVAL_S_MAX) & (interval == np.floor(interval))
        failing = [
            (2, s["v_set"] & ~np.isin(s["v"], READING_VERSIONS)),
            (3, ~s["household_ok"]),
            (4, ~s["meter_ok"]),
            (5, ~s["ts_set"]),
            (6, s["ts_ms"] < _MIN_TS_MS),
            (8, np.isnan(power) & np.isnan(energy)),  # absent or null: JSON_EXISTS is false for both
            (10, (power < bounds.power_w_min) | (power > bounds.power_w_max)),
            (12, (voltage < bounds.voltage_v_min) | (voltage > bounds.voltage_v_max)),
            (14, (current < 0.0) | (current > bounds.current_a_max)),
            (17, (energy < 0.0) | (energy > bounds.energy_kwh_max)),
            (18, ~np.isnan(interval) & ~whole),
            (15, late),
        ]  # 1, 9, 11, 13, 16 cannot fail for a payload the scanner read; 7 is checked in SQL
    code = np.zeros(len(fast), dtype=np.int32)
    for number, fails in reversed(failing):
        code[fails] = number
    code[~fast] = np.where(late[~fast], NOT_READ_LATE, NOT_READ)
    return {
        "code": code,
        "household_id": s["household_id"],
        "meter_id": s["meter_id"],
        "ts_ms": np.where(s["ts_set"], s["ts_ms"], NULL_INT),
        "power_w": power,
        "v": np.where(s["v_set"], s["v"], NULL_INT),
        "voltage_v": voltage,
        "current_a": current,
        "energy_kwh": energy,
        "interval_s": np.where(whole, interval, NULL_INT).astype(np.int64),
    }
