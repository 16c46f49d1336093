"""The reading checks of ``gridflow.readings`` as Flink SQL, so they run per record on the Java side.

Two views. :func:`decoded_view_sql` reads the fields of each raw payload once, and :func:`checked_view_sql`
names the first problem of a record in one column, ``problem`` = ``"<field>|<reason>"`` (NULL for a good
reading; :func:`split_problem` splits it), with the same field names and wording as
:func:`gridflow.readings.validate_reading`. A reading behind the event-time watermark (it would land in a
window that has already been emitted) is a problem too: ``late``.

What a field *is* is defined by Flink's ``JSON_VALUE`` (and ``TRY_CAST`` of its text, ``JSON_EXISTS`` for
presence). Parsing is the most expensive thing the job does per record (every ``JSON_VALUE`` parses the whole
payload again), so the decoded view reads each payload once, in one of two ways (``decoder``):

- ``"scan"`` (the job's choice): the vectorised Python function ``decode_readings``
  (``gridflow.preprocess.decode``: a strict JSON scanner in Cython, ``native/_decode.pyx``) reads batches
  of payloads where it can prove it reads them as Flink would, and checks them: it returns a rule code per
  payload, which the SQL words exactly as below; the clock-dependent rule (``ts_ms`` in the future) stays in
  SQL; payloads the scanner leaves (not an object, escaped keys, a number given as a string, ...) go through
  the ``JSON_VALUE`` rules;
- ``"json"``: one ``JSON_VALUE`` per field and the rules below.

``JSON_EXISTS`` runs only for a field without a scalar value whose name occurs in the payload. The decoded
view has to stay an operator of its own (the planner would otherwise inline it into the checks and evaluate
a field once per mention): the job reads it from two views, the good readings and the rejected ones
(``checked_view_sql(..., where=..., columns=...)`` with different columns), and enables
``table.optimizer.reuse-optimize-block-with-digest-enabled``, so it is planned once and shared.

Checked here: JSON object, schema version (1 or 2), identifiers, the Kafka key (a reading keyed as another
household's is rejected on ``household_id``, as every consumer of a contract does), ``ts_ms`` (integer, after 2000,
not further in the future than the allowed clock skew), ``power_w`` (required unless the reading carries an
``energy_kwh`` register, a finite number within the physical bounds), the optional ``voltage_v``, ``current_a``
and ``energy_kwh`` bounds and ``interval_s`` (a whole number of seconds, 1 to 86400: read as a number, so
``900.0`` is whole too, in both decoders). Unknown extra fields are tolerated (the
bridge rejects them at the edge; the job only needs the fields it reads).
"""

from __future__ import annotations

from gridflow.preprocess.decode import NOT_READ_LATE, NULL_INT
from gridflow.contracts.core import ID_PATTERN_JAVA
from gridflow.readings import _MIN_TS_MS, ID_RULE, INTERVAL_RULE, INTERVAL_S_MAX, INTERVAL_S_MIN, READING_VERSIONS

ID_PATTERN = ID_PATTERN_JAVA  # Flink's REGEXP is Java's: \z ends the text, '$' would pass a final line break
SEPARATOR = "|"  # between the field and the reason in ``problem``; field names never contain it
DECODED = ("v", "household_id", "meter_id", "ts_ms", "power_w", "voltage_v", "current_a", "energy_kwh", "interval_s")
DECODERS = ("scan", "json")
# decode_readings' columns: what the job reads downstream, and the code. The values only a rejected record's
# problem quotes (v, voltage_v, current_a) stay out: each column crossing from Python costs every record JVM CPU,
# and the few records that fail rules 2, 12 or 14 are worded from JSON_VALUE (as the scanner read them alike).
SCANNED = ("code", "household_id", "meter_id", "ts_ms", "power_w", "energy_kwh", "interval_s")
# power_w, energy_kwh (DOUBLE) and interval_s (BIGINT) are NULL when absent
CHECKED_COLUMNS = (
    "payload",
    "event_time",
    "household_id",
    "meter_id",
    "ts_ms",
    "power_w",
    "energy_kwh",
    "interval_s",
    "problem",
)


def split_problem(problem: str) -> tuple[str, str]:
    """``"<field>|<reason>"`` -> ``(field, reason)``.

    >>> split_problem("power_w|is required"), split_problem("|expected a JSON object")
    (('power_w', 'is required'), ('', 'expected a JSON object'))
    """
    field, _, reason = problem.partition(SEPARATOR)
    return field, reason


def _whole_seconds(value: str) -> str:
    """SQL: the DOUBLE ``value`` is an ``interval_s``: a whole number of seconds within its bounds (false for NaN,
    NULL for NULL)."""
    return f"{value} >= {INTERVAL_S_MIN} AND {value} <= {INTERVAL_S_MAX} AND {value} = FLOOR({value})"


def _nan(value: str) -> str:
    """SQL: the DOUBLE ``value`` is NaN (which the JSON string "NaN" casts to). Not ``value <> value``: the
    planner simplifies that to FALSE."""
    return f"CAST({value} AS STRING) = 'NaN'"


def _json_value(field: str) -> str:
    return f"JSON_VALUE(`payload`, '$.{field}')"


def _json_present(field: str, text: str) -> str:
    """SQL: the payload has the key ``field`` (whatever its value), given its ``JSON_VALUE`` text. ``JSON_EXISTS``
    parses the payload again, so it runs only when the value is no scalar and the key's name occurs in the
    payload (or a backslash escape could spell it)."""
    return (
        f"({text} IS NOT NULL OR ((POSITION('\"{field}\"' IN `payload`) > 0 "
        f"OR POSITION('\\' IN `payload`) > 0) AND JSON_EXISTS(`payload`, '$.{field}')))"
    )


class _JsonFields:
    """The fields as ``JSON_VALUE`` reads them: columns ``j_<field>`` of the ``json`` decoder's view, or, as
    the fallback of the ``scan`` decoder (``inline``), computed where they are used."""

    def __init__(self, inline: bool = False):
        self.inline = inline

    @staticmethod
    def columns() -> list[str]:
        return [f"{_json_value(name)} AS `j_{name}`" for name in DECODED]

    def text(self, field: str) -> str:
        return _json_value(field) if self.inline else f"`j_{field}`"

    def number(self, field: str) -> str:
        return f"TRY_CAST({self.text(field)} AS DOUBLE)"

    def ts(self) -> str:
        return f"TRY_CAST({self.text('ts_ms')} AS BIGINT)"

    def interval(self) -> str:
        """``interval_s`` as BIGINT where it is one (rule 18 holds), else NULL: as ``decode_readings`` returns it."""
        value = self.number("interval_s")
        return f"CASE WHEN {_whole_seconds(value)} THEN CAST({value} AS BIGINT) END"

    def present(self, field: str) -> str:
        return _json_present(field, self.text(field))

    def id_ok(self, field: str) -> str:
        return f"COALESCE(REGEXP({self.text(field)}, '{ID_PATTERN}'), FALSE)"

    def not_object(self) -> str:
        # JSON_VALUE and IS JSON OBJECT parse alike: a household_id was read only from an object
        return f"{self.text('household_id')} IS NULL AND `payload` IS NOT JSON OBJECT"

    def late(self) -> str:
        return f"`s_code` = {NOT_READ_LATE}" if self.inline else "`late`"


class _ScannedValues:
    """The values ``decode_readings`` read (columns ``s_<name>`` of :data:`SCANNED`), to word the problems it
    found; the others are read with ``JSON_VALUE`` (only for the records whose problem quotes them)."""

    @staticmethod
    def text(field: str) -> str:  # of the text fields, only v is worded
        return _json_value(field)

    @staticmethod
    def number(field: str) -> str:
        return f"`s_{field}`" if field in SCANNED else f"TRY_CAST({_json_value(field)} AS DOUBLE)"

    @staticmethod
    def ts() -> str:
        return f"NULLIF(`s_ts_ms`, {NULL_INT})"


def _quoted(expression: str) -> str:
    """SQL: the string ``expression`` in single quotes, as Python's ``repr`` shows an identifier."""
    return "'''' || " + expression + " || ''''"


def _check_decoder(decoder: str) -> None:
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")


def decoded_view_sql(view: str, source: str, time_column: str, decoder: str = "scan") -> str:
    """``CREATE TEMPORARY VIEW`` of the raw payloads with the fields the checks need, each read once, and
    whether the record is behind the watermark (``late``). Lateness is decided right after the source, before
    the (asynchronous) Python decoder: a Python operator holds watermarks back until its bundle is done, so
    downstream a late record could look on time. (So ``decode_readings`` takes ``late`` and folds it into its
    code: as an argument of the Python call it is computed before it; the planner would move it otherwise.)"""
    _check_decoder(decoder)
    checked_time = (
        f"SELECT `record_key`, `payload`, `{time_column}`, "
        f"`{time_column}` <= CURRENT_WATERMARK(`{time_column}`) AS `late` FROM {source}"
    )
    if decoder == "json":
        fields = ",\n  ".join(["`late`", *_JsonFields.columns()])
        inner = f"({checked_time})"
    else:
        fields = ",\n  ".join(f"r.scanned.{name} AS `s_{name}`" for name in SCANNED)
        inner = (
            f"(SELECT `record_key`, `payload`, `{time_column}`, decode_readings(`payload`, `late`) AS scanned "
            f"FROM ({checked_time}))"
        )
    return f"""CREATE TEMPORARY VIEW {view} AS
SELECT `record_key`, `payload`, `{time_column}`,
  {fields}
FROM {inner} AS r"""


def _rules(f, readings, out_of_orderness_ms: int) -> list[tuple[int, str, str, str]]:
    """``(code, field, condition, reason)`` of every check, in order (the codes of ``gridflow.preprocess.decode``).
    ``f`` reads the fields and words the reasons: :class:`_JsonFields`, or :class:`_ScannedValues` (which
    only words them: its conditions are empty except for the clock-dependent rule 7)."""
    checks = isinstance(f, _JsonFields)
    skew_ms = readings.max_clock_skew_s * 1000
    ts_ms, power_w, version = f.ts(), f.number("power_w"), f.text("v")
    versions = ", ".join(f"'{v}'" for v in READING_VERSIONS)
    rules = [
        (1, "''", f.not_object() if checks else "", "'expected a JSON object'"),
        (
            2,
            "'v'",
            f"{version} IS NOT NULL AND {version} NOT IN ({versions})",
            f"'unsupported schema version ' || {version} || '; supported: {', '.join(map(str, READING_VERSIONS))}'",
        ),
    ]
    for code, name in ((3, "household_id"), (4, "meter_id")):
        rules.append(
            (
                code,
                f"'{name}'",
                f"NOT {f.id_ok(name)}" if checks else "",
                "'must be " + ID_RULE.replace("'", "''") + "'",
            )
        )
    rules += [
        (5, "'ts_ms'", f"{ts_ms} IS NULL", "'must be an integer of epoch milliseconds'"),
        (
            6,
            "'ts_ms'",
            f"{ts_ms} < {_MIN_TS_MS}",
            f"CAST({ts_ms} AS STRING) || ' is before 2000-01-01 (meter clock not set?)'",
        ),
        (
            7,
            "'ts_ms'",
            f"{ts_ms} > UNIX_TIMESTAMP() * 1000 + {skew_ms}",
            f"CAST({ts_ms} AS STRING) || ' is more than {skew_ms} ms in the future'",
        ),
        (
            8,
            "'power_w'",
            f"NOT {f.present('power_w')} AND NOT {f.present('energy_kwh')}" if checks else "",
            "'is required (or an energy_kwh register)'",
        ),
        # NaN (the JSON string "NaN" casts to it) is no finite number either, and would fail the cleaning
        (
            9,
            "'power_w'",
            f"({power_w} IS NULL AND {f.present('power_w')}) OR {_nan(power_w)}" if checks else "",
            "'must be a finite number'",
        ),
        (
            10,
            "'power_w'",
            f"{power_w} < {readings.power_w_min} OR {power_w} > {readings.power_w_max}",
            f"CAST({power_w} AS STRING) || ' is outside the physically possible range "
            f"[{readings.power_w_min}, {readings.power_w_max}]'",
        ),
    ]
    for (finite, ranged), name, low, high in (
        ((11, 12), "voltage_v", readings.voltage_v_min, readings.voltage_v_max),
        ((13, 14), "current_a", 0.0, readings.current_a_max),
    ):
        value = f.number(name)
        rules += [
            (
                finite,
                f"'{name}'",
                f"{value} IS NULL AND {f.present(name)}" if checks else "",
                "'must be a finite number'",
            ),
            (
                ranged,
                f"'{name}'",
                f"{value} < {low} OR {value} > {high}",
                f"CAST({value} AS STRING) || ' is outside the physically possible range [{low}, {high}]'",
            ),
        ]
    energy_kwh, interval_s = f.number("energy_kwh"), f.number("interval_s")
    rules += [
        (
            16,
            "'energy_kwh'",
            f"({energy_kwh} IS NULL AND {f.present('energy_kwh')}) OR {_nan(energy_kwh)}" if checks else "",
            "'must be a finite number'",
        ),
        # the INT 0, not 0.0: Flink compares a DOUBLE with a DECIMAL literal as Double.compare does, so the -0.0
        # it reads -1e-999 as would be below 0.0 (NaN, above every bound, fails rule 16 first)
        (
            17,
            "'energy_kwh'",
            f"{energy_kwh} < 0 OR {energy_kwh} > {readings.energy_kwh_max}",
            f"CAST({energy_kwh} AS STRING) || ' is outside the physically possible range "
            f"[0.0, {readings.energy_kwh_max}]'",
        ),
        (
            18,
            "'interval_s'",
            f"({interval_s} IS NULL AND {f.present('interval_s')}) OR NOT ({_whole_seconds(interval_s)})"
            if checks
            else "",
            f"'must be {INTERVAL_RULE}'",
        ),
    ]
    rules.append(
        (
            15,
            "'ts_ms'",
            f.late() if checks else "",
            f"'late: behind the event-time watermark (allowed out-of-orderness {out_of_orderness_ms} ms)'",
        )
    )
    return rules


def _problem(rules) -> str:
    return (
        "CASE\n      "
        + "\n      ".join(f"WHEN {cond} THEN {field} || '{SEPARATOR}' || {reason}" for _, field, cond, reason in rules)
        + "\n    END"
    )


def _scanned_problem(readings, out_of_orderness_ms: int) -> str:
    """The problem of a payload from ``decode_readings``'s code (the clock-dependent rule 7 checked here, between
    rules 6 and 8); the ``JSON_VALUE`` rules for the payloads it did not read."""
    scanned = _rules(_ScannedValues(), readings, out_of_orderness_ms)
    worded = {code: f"{field} || '{SEPARATOR}' || {reason}" for code, field, _, reason in scanned}
    future = next(cond for code, _, cond, _ in scanned if code == 7)
    fallback = _problem(_rules(_JsonFields(inline=True), readings, out_of_orderness_ms))

    def by_code(codes) -> str:
        return "CASE `s_code` " + " ".join(f"WHEN {c} THEN {worded[c]}" for c in codes) + " END"

    return (
        f"CASE\n      WHEN `s_code` < 0 THEN {fallback}\n"
        f"      WHEN `s_code` BETWEEN 1 AND 6 THEN {by_code(range(1, 7))}\n"
        f"      WHEN {future} THEN {worded[7]}\n"
        f"      WHEN `s_code` BETWEEN 8 AND 18 THEN {by_code(range(8, 19))}\n    END"
    )


def checked_view_sql(
    view: str,
    decoded: str,
    readings,
    time_column: str,
    out_of_orderness_ms: int,
    where: str | None = None,
    columns: tuple[str, ...] = CHECKED_COLUMNS,
    decoder: str = "scan",
) -> str:
    """``CREATE TEMPORARY VIEW`` over :func:`decoded_view_sql`'s view (same ``decoder``): the typed fields and
    the first problem of each record (``columns`` of :data:`CHECKED_COLUMNS`, with ``time_column`` for
    ``event_time``), optionally filtered (``where``, e.g. ``"problem IS NULL"``). Two views over one decoded
    view that differ in ``columns`` keep the decoded view a shared operator of its own (module docstring).

    ``readings`` is the ``readings`` settings section (physical bounds, clock skew).
    """
    _check_decoder(decoder)
    if decoder == "json":
        f = _JsonFields()
        problem = _problem(_rules(f, readings, out_of_orderness_ms))
        typed = {
            "household_id": f.text("household_id"),
            "meter_id": f.text("meter_id"),
            "ts_ms": f.ts(),
            "power_w": f.number("power_w"),
            "energy_kwh": f.number("energy_kwh"),
            "interval_s": f.interval(),
        }
    else:
        f, read = _JsonFields(inline=True), "`s_code` >= 0"
        problem = _scanned_problem(readings, out_of_orderness_ms)
        typed = {
            "household_id": f"IF({read}, `s_household_id`, {f.text('household_id')})",
            "meter_id": f"IF({read}, `s_meter_id`, {f.text('meter_id')})",
            "ts_ms": f"IF({read}, {_ScannedValues.ts()}, {f.ts()})",
            "power_w": f"IF({read}, `s_power_w`, {f.number('power_w')})",
            "energy_kwh": f"IF({read}, `s_energy_kwh`, {f.number('energy_kwh')})",
            "interval_s": f"IF({read}, NULLIF(`s_interval_s`, {NULL_INT}), {f.interval()})",
        }
    # a good reading keyed as another household's (the bridge keys by the publishing meter's household)
    household = typed["household_id"]
    foreign_key = (
        f"CASE WHEN `record_key` <> '' AND `record_key` <> {household} "
        f"THEN 'household_id{SEPARATOR}' || {_quoted(household)} || "
        f"' does not match the record''s Kafka key ' || {_quoted('`record_key`')} END"
    )
    problem = f"COALESCE({problem}, {foreign_key})"
    expressions = {"payload": "`payload`", "event_time": f"`{time_column}`", **typed, "problem": problem}
    unknown = set(columns) - set(expressions)
    if unknown:
        raise ValueError(f"unknown columns {sorted(unknown)}; choose from {CHECKED_COLUMNS}")
    inner = [expressions[c] + (f" AS `{time_column}`" if c == "event_time" else f" AS {c}") for c in columns]
    if where and "problem" not in columns:
        inner.append(f"{expressions['problem']} AS problem")
    outer = ", ".join(f"`{time_column}`" if c == "event_time" else c for c in columns)
    selected = ",\n    ".join(inner)
    return f"""CREATE TEMPORARY VIEW {view} AS
SELECT {outer} FROM (
  SELECT {selected}
  FROM {decoded}
){f" WHERE {where}" if where else ""}"""
