"""The reading checks of ``gridflow.readings`` as Flink SQL, so they run per record on the Java side.

:func:`checked_view_sql` decodes each raw payload with ``JSON_VALUE`` and names the first problem of
a record in one column, ``problem`` = ``"<field>|<reason>"`` (NULL for a good reading; :func:`split_problem`
splits it), with the same field names and wording as :func:`gridflow.readings.validate_reading`. One CASE
serves the good-reading filter and the dead-letter branch alike: no branch evaluates the rules twice. A reading behind the event-time
watermark (it would land in a window that has already been emitted) is a problem too: ``late``.

Checked here: JSON object, schema version, identifiers, ``ts_ms`` (integer, after 2000, not further in
the future than the allowed clock skew), ``power_w`` (required, within the physical bounds) and the
optional ``voltage_v`` and ``current_a`` bounds. Unknown extra fields are tolerated (the bridge rejects
them at the edge; the job only needs the fields it reads).
"""
from __future__ import annotations

from gridflow.readings import _ID, _MIN_TS_MS, SCHEMA_VERSION

ID_PATTERN = _ID.pattern
SEPARATOR = "|"  # between the field and the reason in ``problem``; field names never contain it


def split_problem(problem: str) -> tuple[str, str]:
    """``"<field>|<reason>"`` -> ``(field, reason)``.

    >>> split_problem("power_w|is required"), split_problem("|expected a JSON object")
    (('power_w', 'is required'), ('', 'expected a JSON object'))
    """
    field, _, reason = problem.partition(SEPARATOR)
    return field, reason


def _number(field: str) -> str:
    return f"TRY_CAST(JSON_VALUE(`payload`, '$.{field}') AS DOUBLE)"


def _present(field: str) -> str:
    return f"JSON_EXISTS(`payload`, '$.{field}')"


def checked_view_sql(view: str, source: str, readings, time_column: str, out_of_orderness_ms: int) -> str:
    """``CREATE TEMPORARY VIEW`` with the decoded fields and the first problem of each record.

    ``readings`` is the ``readings`` settings section (physical bounds, clock skew).
    """
    skew_ms = readings.max_clock_skew_s * 1000
    rules = [
        ("''", "`payload` IS NOT JSON OBJECT", "'expected a JSON object'"),
        ("'v'", f"JSON_VALUE(`payload`, '$.v') IS NOT NULL AND JSON_VALUE(`payload`, '$.v') <> '{SCHEMA_VERSION}'",
         f"'unsupported schema version ' || JSON_VALUE(`payload`, '$.v') || '; supported: {SCHEMA_VERSION}'"),
    ]
    for name in ("household_id", "meter_id"):
        rules.append((f"'{name}'", f"NOT COALESCE(REGEXP({name}, '{ID_PATTERN}'), FALSE)",
                      "'must be 1-64 characters of letters, digits, ''._:-'''"))
    rules += [
        ("'ts_ms'", "ts_ms IS NULL", "'must be an integer of epoch milliseconds'"),
        ("'ts_ms'", f"ts_ms < {_MIN_TS_MS}", f"CAST(ts_ms AS STRING) || ' is before 2000-01-01 (meter clock not set?)'"),
        ("'ts_ms'", f"ts_ms > UNIX_TIMESTAMP() * 1000 + {skew_ms}",
         f"CAST(ts_ms AS STRING) || ' is more than {skew_ms} ms in the future'"),
        ("'power_w'", f"NOT {_present('power_w')}", "'is required'"),
        ("'power_w'", "power_w IS NULL", "'must be a finite number'"),
        ("'power_w'", f"power_w < {readings.power_w_min} OR power_w > {readings.power_w_max}",
         f"CAST(power_w AS STRING) || ' is outside the physically possible range "
         f"[{readings.power_w_min}, {readings.power_w_max}]'"),
    ]
    for name, low, high in (("voltage_v", readings.voltage_v_min, readings.voltage_v_max),
                            ("current_a", 0.0, readings.current_a_max)):
        value = _number(name)
        rules += [
            (f"'{name}'", f"{_present(name)} AND {value} IS NULL", "'must be a finite number'"),
            (f"'{name}'", f"{value} < {low} OR {value} > {high}",
             f"CAST({value} AS STRING) || ' is outside the physically possible range [{low}, {high}]'"),
        ]
    rules.append(("'ts_ms'", f"`{time_column}` <= CURRENT_WATERMARK(`{time_column}`)",
                  f"'late: behind the event-time watermark (allowed out-of-orderness {out_of_orderness_ms} ms)'"))
    problem_case = "\n    ".join(f"WHEN {cond} THEN {field} || '{SEPARATOR}' || {reason}" for field, cond, reason in rules)
    return f"""CREATE TEMPORARY VIEW {view} AS
SELECT `payload`, `{time_column}`, household_id, meter_id, ts_ms, power_w,
  CASE
    {problem_case}
  END AS problem
FROM (
  SELECT `payload`, `{time_column}`,
    JSON_VALUE(`payload`, '$.household_id') AS household_id,
    JSON_VALUE(`payload`, '$.meter_id') AS meter_id,
    TRY_CAST(JSON_VALUE(`payload`, '$.ts_ms') AS BIGINT) AS ts_ms,
    {_number('power_w')} AS power_w
  FROM {source}
)"""
