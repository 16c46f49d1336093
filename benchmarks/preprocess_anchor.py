"""The preprocessing job as it was before the vectorised redesign (issue 4), frozen as the benchmark anchor.

A verbatim copy of ``jobs/preprocess.py: build`` and of the parts of ``operators/preprocess.py`` that changed
(one Python table-function call per meter window through the row coder); what did not change is imported. ``benchmarks/preprocess_variants.py`` runs it
next to the current job in the same run, so the speed-up is a ratio measured under the same load.
"""

from __future__ import annotations

import sys
import time

import cloudpickle
import orjson
from pyflink.table import DataTypes
from pyflink.table.udf import FunctionContext, TableFunction, udf, udtf

# unchanged since: the daily profile and dead-letter functions and the Kafka table DDL
from gridflow.connectors.kafka_tables import keyed_sink_ddl, raw_source_ddl
from gridflow.operators.preprocess import DailyProfiles, DeadLetter
from gridflow.preprocess import CleaningParams, clean_window
from gridflow.preprocess.localtime import LocalClock
from gridflow.preprocess.validation_sql import SEPARATOR
from gridflow.readings import _MIN_TS_MS, SCHEMA_VERSION
from gridflow.readings import _ID, dead_letter
from gridflow.registry import load_registry
from gridflow.settings import Settings

NAME = "preprocess"
ID_PATTERN = _ID.pattern

# the job's functions live in this module, which the Python workers cannot import: ship them by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])

FEATURES, PROFILE, DEAD_LETTER = "features", "profile", "dead_letter"
ROW_TYPES = [DataTypes.STRING(), DataTypes.STRING(), DataTypes.STRING(), DataTypes.BIGINT(), DataTypes.DOUBLE()]
METRIC_GROUP = "gridflow"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class CleanWindows(TableFunction):
    """A meter's window of readings -> one feature record; readings of unregistered meters -> dead letters.

    Metrics (group ``gridflow``): ``readings_clean``, ``readings_duplicate``, ``readings_unknown_meter``,
    ``outliers_replaced``, ``windows``.
    """

    def __init__(self, settings: Settings, source: str):
        self.params = CleaningParams.from_settings(settings.preprocess)
        self.registry_file = settings.readings.registry_file
        self.timezone = settings.preprocess.timezone
        self.source = source
        self.registry = None

    def open(self, function_context: FunctionContext):
        self.registry = load_registry(self.registry_file) if self.registry_file else None
        self.clock = LocalClock(self.timezone)
        group = function_context.get_metric_group().add_group(METRIC_GROUP)
        self.clean = group.counter("readings_clean")
        self.duplicates = group.counter("readings_duplicate")
        self.unknown = group.counter("readings_unknown_meter")
        self.outliers = group.counter("outliers_replaced")
        self.windows = group.counter("windows")

    def eval(self, household_id: str, meter_id: str, start_ms: int, ts_ms: list, power_w: list):
        if self.registry is not None and (household_id, meter_id) not in self.registry:
            self.unknown.inc(len(ts_ms))
            reason = f"unknown meter {meter_id!r} of household {household_id!r}: not in the meter registry"
            for ts, power in zip(ts_ms, power_w):
                payload = orjson.dumps(
                    {"household_id": household_id, "meter_id": meter_id, "ts_ms": ts, "power_w": power}
                ).decode()
                yield DEAD_LETTER, household_id, dead_letter(payload, reason, self.source, ts), None, None
            return
        features = clean_window(ts_ms, power_w, start_ms, self.params, self.clock.utc_offset_ms(start_ms))
        record = features.to_record(household_id, meter_id)
        record["emitted_ms"] = _now_ms()
        self.windows.inc()
        self.clean.inc(features.n_readings)
        if features.n_duplicates:
            self.duplicates.inc(features.n_duplicates)
        if features.n_outliers:
            self.outliers.inc(features.n_outliers)
        yield FEATURES, household_id, orjson.dumps(record).decode(), start_ms, features.mean_w


class FixedWindowProfiles(DailyProfiles):
    """The job's daily profile, which now takes each window's end too: the anchor's windows all last
    ``preprocess.window_s``."""

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self.window_ms = settings.preprocess.window_s * 1000

    def eval(self, household_id, meter_id, day_start_ms, day, start_ms, mean_w):  # type: ignore[override]
        ends = [s + self.window_ms for s in start_ms]
        yield from super().eval(household_id, meter_id, day_start_ms, day, start_ms, ends, mean_w)


def register(tenv, settings: Settings, source: str) -> None:
    """Register the functions under the names the job's SQL uses."""
    tenv.create_temporary_function("clean_windows", udtf(CleanWindows(settings, source), result_types=ROW_TYPES))
    tenv.create_temporary_function("daily_profiles", udtf(FixedWindowProfiles(settings), result_types=ROW_TYPES))
    tenv.create_temporary_function("dead_letter", udf(DeadLetter(source), result_type=DataTypes.STRING()))


def _epoch_ms(local_timestamp: str) -> str:
    """SQL: epoch ms of a window bound (a local TIMESTAMP in the session zone, whole seconds)."""
    return f"1000 * UNIX_TIMESTAMP(DATE_FORMAT({local_timestamp}, 'yyyy-MM-dd HH:mm:ss'))"


def build(tenv, settings: Settings, stop_offsets: dict[int, int] | None = None):
    """Declare the job on a StreamTableEnvironment; returns the StatementSet to execute."""
    stream, topics = settings.stream, settings.topics
    config = tenv.get_config()
    config.set("table.local-time-zone", settings.preprocess.timezone)
    # Table-API Python functions report metrics only from separate worker processes (thread mode drops
    # them); with one call per meter window the process boundary costs little.
    config.set("python.execution-mode", settings.jobs.preprocess.python_execution_mode)
    config.set("python.fn-execution.bundle.time", str(settings.jobs.preprocess.bundle_time_ms))  # was in config.yaml
    if stream.idle_timeout_ms:
        config.set("table.exec.source.idle-timeout", f"{stream.idle_timeout_ms} ms")
    register(tenv, settings, f"kafka:{topics.readings}")
    tenv.execute_sql(
        raw_source_ddl(
            settings,
            "readings",
            topics.readings,
            NAME,
            time_column="event_time",
            out_of_orderness_ms=stream.out_of_orderness_ms,
            max_future_ms=settings.readings.max_clock_skew_s * 1000,
            stop_offsets=stop_offsets,
            watermark_emit=stream.watermark_emit,
        )
    )
    for table, topic in (
        ("features_out", topics.features),
        ("profiles_out", topics.profiles),
        ("dead_letter_out", topics.dead_letter),
    ):
        tenv.execute_sql(keyed_sink_ddl(settings, table, topic, NAME))
    tenv.execute_sql(
        checked_view_sql("checked", "readings", settings.readings, "event_time", stream.out_of_orderness_ms)
    )
    tenv.execute_sql(
        "CREATE TEMPORARY VIEW valid AS SELECT household_id, meter_id, ts_ms, power_w, event_time "
        "FROM checked WHERE problem IS NULL"
    )
    tenv.execute_sql(f"""CREATE TEMPORARY VIEW meter_windows AS
        SELECT household_id, meter_id, window_start, window_time, ARRAY_AGG(ts_ms) AS ts_list,
               ARRAY_AGG(power_w) AS power_list
        FROM TABLE(TUMBLE(TABLE valid, DESCRIPTOR(event_time), INTERVAL '{settings.preprocess.window_s}' SECOND(4)))
        GROUP BY household_id, meter_id, window_start, window_end, window_time""")
    tenv.execute_sql(f"""CREATE TEMPORARY VIEW cleaned AS
        SELECT w.household_id, w.meter_id, w.window_time, c.kind, c.record_key, c.payload, c.start_ms, c.mean_w
        FROM meter_windows AS w, LATERAL TABLE(clean_windows(w.household_id, w.meter_id,
             {_epoch_ms("w.window_start")}, w.ts_list, w.power_list)) AS c(kind, record_key, payload, start_ms, mean_w)""")
    tenv.execute_sql("""CREATE TEMPORARY VIEW window_means AS
        SELECT household_id, meter_id, window_time, start_ms, mean_w FROM cleaned
        WHERE kind = 'features' AND mean_w IS NOT NULL""")
    tenv.execute_sql(f"""CREATE TEMPORARY VIEW meter_days AS
        SELECT household_id, meter_id, {_epoch_ms("window_start")} AS day_start_ms,
               DATE_FORMAT(window_start, 'yyyy-MM-dd') AS day_label,
               ARRAY_AGG(start_ms) AS starts, ARRAY_AGG(mean_w) AS means
        FROM TABLE(TUMBLE(TABLE window_means, DESCRIPTOR(window_time), INTERVAL '1' DAY))
        GROUP BY household_id, meter_id, window_start, window_end""")
    statements = tenv.create_statement_set()
    statements.add_insert_sql(
        "INSERT INTO features_out SELECT record_key, payload FROM cleaned WHERE kind = 'features'"
    )
    statements.add_insert_sql("""INSERT INTO profiles_out SELECT p.record_key, p.payload
        FROM meter_days AS d, LATERAL TABLE(daily_profiles(d.household_id, d.meter_id, d.day_start_ms, d.day_label,
             d.starts, d.means)) AS p(kind, record_key, payload, start_ms, mean_w)""")
    statements.add_insert_sql("""INSERT INTO dead_letter_out
        SELECT household_id, dead_letter(`payload`, problem, ts_ms) FROM checked WHERE problem IS NOT NULL
        UNION ALL
        SELECT record_key, payload FROM cleaned WHERE kind = 'dead_letter'""")
    return statements


# validation_sql.checked_view_sql at the time
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
        (
            "'v'",
            f"JSON_VALUE(`payload`, '$.v') IS NOT NULL AND JSON_VALUE(`payload`, '$.v') <> '{SCHEMA_VERSION}'",
            f"'unsupported schema version ' || JSON_VALUE(`payload`, '$.v') || '; supported: {SCHEMA_VERSION}'",
        ),
    ]
    for name in ("household_id", "meter_id"):
        rules.append(
            (
                f"'{name}'",
                f"NOT COALESCE(REGEXP({name}, '{ID_PATTERN}'), FALSE)",
                "'must be 1-64 characters of letters, digits, ''._:-'''",
            )
        )
    rules += [
        ("'ts_ms'", "ts_ms IS NULL", "'must be an integer of epoch milliseconds'"),
        ("'ts_ms'", f"ts_ms < {_MIN_TS_MS}", "CAST(ts_ms AS STRING) || ' is before 2000-01-01 (meter clock not set?)'"),
        (
            "'ts_ms'",
            f"ts_ms > UNIX_TIMESTAMP() * 1000 + {skew_ms}",
            f"CAST(ts_ms AS STRING) || ' is more than {skew_ms} ms in the future'",
        ),
        ("'power_w'", f"NOT {_present('power_w')}", "'is required'"),
        ("'power_w'", "power_w IS NULL", "'must be a finite number'"),
        (
            "'power_w'",
            f"power_w < {readings.power_w_min} OR power_w > {readings.power_w_max}",
            f"CAST(power_w AS STRING) || ' is outside the physically possible range "
            f"[{readings.power_w_min}, {readings.power_w_max}]'",
        ),
    ]
    for name, low, high in (
        ("voltage_v", readings.voltage_v_min, readings.voltage_v_max),
        ("current_a", 0.0, readings.current_a_max),
    ):
        value = _number(name)
        rules += [
            (f"'{name}'", f"{_present(name)} AND {value} IS NULL", "'must be a finite number'"),
            (
                f"'{name}'",
                f"{value} < {low} OR {value} > {high}",
                f"CAST({value} AS STRING) || ' is outside the physically possible range [{low}, {high}]'",
            ),
        ]
    rules.append(
        (
            "'ts_ms'",
            f"`{time_column}` <= CURRENT_WATERMARK(`{time_column}`)",
            f"'late: behind the event-time watermark (allowed out-of-orderness {out_of_orderness_ms} ms)'",
        )
    )
    problem_case = "\n    ".join(
        f"WHEN {cond} THEN {field} || '{SEPARATOR}' || {reason}" for field, cond, reason in rules
    )
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
    {_number("power_w")} AS power_w
  FROM {source}
)"""


# connectors/kafka_tables.py at the time
def _literal(value) -> str:
    return "'" + str(value).replace("'", "''") + "'"
