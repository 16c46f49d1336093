"""Preprocessing job: raw meter readings -> clean per-meter window features and daily load profiles.

    readings --JSON_VALUE checks, event time--> valid --TUMBLE(window_s) per meter, ARRAY_AGG--> clean_windows
        |                                                                        |--> features topic
        |                                                  daily_profiles <--TUMBLE(1 day)--|
        |                                                        \\--> profiles topic
        \\--> dead-letter topic: malformed, impossible, late (SQL) and unknown-meter readings (Python)

Design (measured, see BENCHMARKS.md): per-record Python operators top out at 6-18k records/s here, so
nothing per reading runs in Python. Flink SQL does the per-record work on the Java side: Kafka source,
decoding with JSON_VALUE (a malformed record stays a row, so it can be dead-lettered with its reason),
the validation rules, watermarks, the late check (CURRENT_WATERMARK) and the window aggregation, which
hands Python one row per meter window holding the window's readings as two arrays. Python is called
once per window (6 readings at the 10 s meter cadence) and cleans it in one Cython pass
(``native/_clean.pyx``); the daily profile is a second, cascaded event-time window over the window
means, once per meter and day. Only rejected records pass through Python one by one (to format and
count them). Sinks are keyed by household.

Accounting: every reading read is in exactly one of: a feature record's ``n_readings``, its
``n_duplicates``, or the dead-letter topic; the same counts are Flink metrics (group ``gridflow``).
A late reading is one behind the watermark (event time minus ``stream.out_of_orderness_ms``): its
window may already be out. Idle partitions stop holding the watermark after ``stream.idle_timeout_ms``.

Run locally on the mini-cluster:      python jobs/preprocess.py --config <stack>/settings.yaml
Submit to a cluster:                  flink run -py jobs/preprocess.py -- --config ...
"""
from __future__ import annotations

import sys

from gridflow.cli_args import job_argument_parser, settings_from_args
from gridflow.connectors.kafka_tables import keyed_sink_ddl, raw_source_ddl
from gridflow.operators import preprocess as ops
from gridflow.preprocess.validation_sql import checked_view_sql
from gridflow.runtime import create_env
from gridflow.settings import Settings

NAME = "preprocess"


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
    config.set("python.execution-mode", settings.preprocess.python_execution_mode)
    if stream.idle_timeout_ms:
        config.set("table.exec.source.idle-timeout", f"{stream.idle_timeout_ms} ms")
    ops.register(tenv, settings, f"kafka:{topics.readings}")
    tenv.execute_sql(raw_source_ddl(settings, "readings", topics.readings, NAME, time_column="event_time",
                                    out_of_orderness_ms=stream.out_of_orderness_ms,
                                    max_future_ms=settings.readings.max_clock_skew_s * 1000, stop_offsets=stop_offsets,
                                    watermark_emit=stream.watermark_emit))
    for table, topic in (("features_out", topics.features), ("profiles_out", topics.profiles),
                         ("dead_letter_out", topics.dead_letter)):
        tenv.execute_sql(keyed_sink_ddl(settings, table, topic, NAME))
    tenv.execute_sql(checked_view_sql("checked", "readings", settings.readings, "event_time",
                                      stream.out_of_orderness_ms))
    tenv.execute_sql("CREATE TEMPORARY VIEW valid AS SELECT household_id, meter_id, ts_ms, power_w, event_time "
                     "FROM checked WHERE problem IS NULL")
    tenv.execute_sql(f"""CREATE TEMPORARY VIEW meter_windows AS
        SELECT household_id, meter_id, window_start, window_time, ARRAY_AGG(ts_ms) AS ts_list,
               ARRAY_AGG(power_w) AS power_list
        FROM TABLE(TUMBLE(TABLE valid, DESCRIPTOR(event_time), INTERVAL '{settings.preprocess.window_s}' SECOND(4)))
        GROUP BY household_id, meter_id, window_start, window_end, window_time""")
    tenv.execute_sql(f"""CREATE TEMPORARY VIEW cleaned AS
        SELECT w.household_id, w.meter_id, w.window_time, c.kind, c.record_key, c.payload, c.start_ms, c.mean_w
        FROM meter_windows AS w, LATERAL TABLE(clean_windows(w.household_id, w.meter_id,
             {_epoch_ms('w.window_start')}, w.ts_list, w.power_list)) AS c(kind, record_key, payload, start_ms, mean_w)""")
    tenv.execute_sql("""CREATE TEMPORARY VIEW window_means AS
        SELECT household_id, meter_id, window_time, start_ms, mean_w FROM cleaned
        WHERE kind = 'features' AND mean_w IS NOT NULL""")
    tenv.execute_sql(f"""CREATE TEMPORARY VIEW meter_days AS
        SELECT household_id, meter_id, {_epoch_ms('window_start')} AS day_start_ms,
               DATE_FORMAT(window_start, 'yyyy-MM-dd') AS day_label,
               ARRAY_AGG(start_ms) AS starts, ARRAY_AGG(mean_w) AS means
        FROM TABLE(TUMBLE(TABLE window_means, DESCRIPTOR(window_time), INTERVAL '1' DAY))
        GROUP BY household_id, meter_id, window_start, window_end""")
    statements = tenv.create_statement_set()
    statements.add_insert_sql("INSERT INTO features_out SELECT record_key, payload FROM cleaned WHERE kind = 'features'")
    statements.add_insert_sql("""INSERT INTO profiles_out SELECT p.record_key, p.payload
        FROM meter_days AS d, LATERAL TABLE(daily_profiles(d.household_id, d.meter_id, d.day_start_ms, d.day_label,
             d.starts, d.means)) AS p(kind, record_key, payload, start_ms, mean_w)""")
    statements.add_insert_sql("""INSERT INTO dead_letter_out
        SELECT household_id, dead_letter(`payload`, problem, ts_ms) FROM checked WHERE problem IS NOT NULL
        UNION ALL
        SELECT record_key, payload FROM cleaned WHERE kind = 'dead_letter'""")
    return statements


def create_table_env(settings: Settings):
    from pyflink.table import StreamTableEnvironment

    return StreamTableEnvironment.create(create_env(settings))


def main(argv: list[str] | None = None) -> None:
    args = job_argument_parser(__doc__).parse_args(argv)
    settings = settings_from_args(args)
    build(create_table_env(settings), settings, args.stop_offsets).execute().wait()


if __name__ == "__main__":
    main(sys.argv[1:])
