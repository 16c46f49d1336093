"""Preprocessing job: raw meter readings -> clean per-meter window features and daily load profiles.

    readings --decode_readings (vectorised scan, rule codes)--> valid --TUMBLE(window_s) per meter, ARRAY_AGG-->
        |                                                     clean_windows (vectorised) --> features topic
        |                          feature batches topic <--TUMBLE(window_s) per bucket of meters, LISTAGG--|
        |                                                  daily_profiles <--TUMBLE(1 day)--|
        |                                                        \\--> profiles topic
        \\--> dead-letter topic: malformed, impossible, late (SQL) and unknown-meter readings (Python)

Design (measured, see BENCHMARKS.md, "Preprocessing job"): per-record Python operators top out at 6-18k
records/s here, and every ``JSON_VALUE`` parses the whole payload again (four of them per record capped the
first version of this job at ~15k readings/s), so nothing runs in Python per record, and besides the
source's event-time read of ``ts_ms`` a payload is decoded once:

- Flink SQL on the Java side: Kafka source, event time (one ``JSON_VALUE`` of ``ts_ms``) and watermarks,
  the late check (``CURRENT_WATERMARK``, right after the source), the wording of problems, the window
  aggregation (one row per meter window holding its readings as two arrays) and the sinks;
- ``decode_readings``, a pandas (Arrow-batched) function: batches of up to 10,000 payloads go through one
  strict JSON scanner in Cython (``native/_decode.pyx``) that reads each payload once and returns the typed
  fields and the number of the first failing rule. It reads only payloads it provably reads as
  ``JSON_VALUE`` + ``TRY_CAST`` would (tested against them on hundreds of edge cases); the rest (not an
  object, escaped keys, numbers given as strings, ...) fall back to the ``JSON_VALUE`` rules in SQL, so a
  malformed record still becomes a dead letter with its reason;
- ``clean_windows``, a pandas function over batches of meter windows: all readings of a batch go through one
  Cython cleaning pass (``native/_clean.pyx``) and each window becomes one feature record;
- the daily profile: a second, cascaded event-time window over the window means, once per meter and day;
- feature batches for the anomaly job (``gridflow.feature_batches``): a cascaded window of the same length
  over the feature records, one record per bucket of meters, out with the watermark that closed the windows.

Measured on the 2-million-reading drain: ~58k readings/s steady (~39k/s including job start-up), 3-4x the
previous per-window design in the same run (before the feature batches were added). Sinks are keyed by household
(feature batches by their bucket).

Interval and register readings (spans, :data:`SAMPLES` says which are not) skip the fixed windows: each
meets its meter's previous reading in an event-time ``OVER`` window, then one pandas function
(``clean_spans``, ``gridflow.preprocess.intervals``) turns the spans ending in each job window into one
feature record; the daily profile weighs every window by its duration.

Accounting: every reading read is in exactly one of: a feature record's ``n_readings``, its
``n_duplicates``, the dead-letter topic, or, for spans only, the metrics ``readings_span_start`` (a
register reading that starts a span and ends none) and ``readings_duplicate`` (a redelivery in a window
with no feature); the same counts are Flink metrics (group ``gridflow``).
A late reading is one behind the watermark (event time minus ``stream.out_of_orderness_ms``): its
window may already be out. Idle partitions stop holding the watermark after ``stream.idle_timeout_ms``.

Run locally on the mini-cluster:      python jobs/preprocess.py --config <stack>/settings.yaml
Submit to a cluster:                  flink run -py jobs/preprocess.py -- --config ...
"""

from __future__ import annotations

import sys

from gridflow.cli_args import job_argument_parser, settings_from_args
from gridflow.connectors.kafka_tables import keyed_sink_ddl, raw_source_ddl
from gridflow.feature_batches import bucket_sql
from gridflow.operators import preprocess as ops
from gridflow.preprocess.validation_sql import checked_view_sql, decoded_view_sql
from gridflow.runtime import configure_job, create_env
from gridflow.settings import Settings

NAME = "preprocess"
# Readings that are samples of instantaneous power (cleaned in fixed windows); the others are spans: interval
# readings (``interval_s``: the average power over the interval ending at ``ts_ms``) and register readings
# (``energy_kwh`` alone), see ``gridflow.preprocess.intervals``.
SAMPLES = "interval_s IS NULL AND power_w IS NOT NULL"
NAN = "CAST('NaN' AS DOUBLE)"


def _epoch_ms(local_timestamp: str) -> str:
    """SQL: epoch ms of a window bound (a local TIMESTAMP in the session zone, whole seconds)."""
    return f"1000 * UNIX_TIMESTAMP(DATE_FORMAT({local_timestamp}, 'yyyy-MM-dd HH:mm:ss'))"


def build(tenv, settings: Settings, stop_offsets: dict[int, int] | None = None, decoder: str = "scan"):
    """Declare the job on a StreamTableEnvironment; returns the StatementSet to execute.

    ``decoder`` chooses how payloads are read (``gridflow.preprocess.validation_sql``): ``"scan"`` (vectorised,
    one strict JSON scan per payload in Python) or ``"json"`` (one ``JSON_VALUE`` per field on the Java side).
    """
    stream, topics = settings.stream, settings.topics
    config = tenv.get_config()
    config.set("table.local-time-zone", settings.preprocess.timezone)
    # Table-API Python functions report metrics only from separate worker processes (thread mode drops
    # them); with one call per meter window the process boundary costs little. The functions are vectorised:
    # Arrow batches of up to jobs.preprocess.arrow_batch_size rows (Flink's default 1,000 makes the per-batch
    # overhead of the Python side dominate).
    configure_job(tenv, settings.jobs.preprocess)
    # The views below are used by several INSERTs; optimise each shared view once, so the Python function
    # (and the JSON decoding) runs once per row and not once per sink.
    config.set("table.optimizer.reuse-optimize-block-with-digest-enabled", "true")
    # Every operator here is a Flink SQL operator or a Python function that copies its input: chained
    # operators can pass rows on without a defensive copy.
    config.set("pipeline.object-reuse", "true")
    if stream.idle_timeout_ms:
        config.set("table.exec.source.idle-timeout", f"{stream.idle_timeout_ms} ms")
    ops.register(tenv, settings, f"kafka:{topics.readings}")
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
            span_end_before=True,
        )
    )
    for table, topic in (
        ("features_out", topics.features),
        ("feature_batches_out", topics.feature_batches),
        ("profiles_out", topics.profiles),
        ("dead_letter_out", topics.dead_letter),
    ):
        tenv.execute_sql(keyed_sink_ddl(settings, table, topic, NAME))
    tenv.execute_sql(decoded_view_sql("decoded", "readings", "event_time", decoder))
    for view, where, columns in (
        (
            "valid",
            "problem IS NULL",
            ("household_id", "meter_id", "ts_ms", "power_w", "energy_kwh", "interval_s", "event_time"),
        ),
        ("rejected", "problem IS NOT NULL", ("payload", "household_id", "ts_ms", "problem")),
    ):
        tenv.execute_sql(
            checked_view_sql(
                view,
                "decoded",
                settings.readings,
                "event_time",
                stream.out_of_orderness_ms,
                where=where,
                columns=columns,
                decoder=decoder,
            )
        )
    window = f"INTERVAL '{settings.preprocess.window_s}' SECOND(4)"
    tenv.execute_sql(f"CREATE TEMPORARY VIEW samples AS SELECT * FROM valid WHERE {SAMPLES}")
    tenv.execute_sql(f"""CREATE TEMPORARY VIEW meter_windows AS
        SELECT household_id, meter_id, window_start, window_time, ARRAY_AGG(ts_ms) AS ts_list,
               ARRAY_AGG(power_w) AS power_list
        FROM TABLE(TUMBLE(TABLE samples, DESCRIPTOR(event_time), {window}))
        GROUP BY household_id, meter_id, window_start, window_end, window_time""")
    # Interval and register readings (spans): each with its meter's previous one, in event time
    tenv.execute_sql(f"""CREATE TEMPORARY VIEW span_readings AS
        SELECT household_id, meter_id, ts_ms, power_w, energy_kwh, interval_s, event_time,
               FIRST_VALUE(ts_ms) OVER w AS prev_ts_ms, FIRST_VALUE(COALESCE(energy_kwh, -1.0)) OVER w AS prev_kwh,
               COUNT(*) OVER w AS n_rows
        FROM valid WHERE NOT ({SAMPLES})
        WINDOW w AS (PARTITION BY household_id, meter_id ORDER BY event_time ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)""")
    tenv.execute_sql(f"""CREATE TEMPORARY VIEW spans AS
        SELECT household_id, meter_id, window_time, c.kind AS kind, c.payload AS payload, c.mean_w AS mean_w,
               c.dead AS dead, c.start_ms AS start_ms, c.end_ms AS end_ms
        FROM (SELECT household_id, meter_id, window_time,
                     clean_spans(household_id, meter_id, {_epoch_ms("window_start")}, ts_list, power_list, kwh_list,
                                 interval_list, prev_ts_list, prev_kwh_list, rows_list) AS c
              FROM (SELECT household_id, meter_id, window_start, window_time, ARRAY_AGG(ts_ms) AS ts_list,
                           ARRAY_AGG(COALESCE(power_w, {NAN})) AS power_list,
                           ARRAY_AGG(COALESCE(energy_kwh, {NAN})) AS kwh_list,
                           ARRAY_AGG(CAST(COALESCE(interval_s, 0) AS BIGINT)) AS interval_list,
                           ARRAY_AGG(prev_ts_ms) AS prev_ts_list, ARRAY_AGG(prev_kwh) AS prev_kwh_list,
                           ARRAY_AGG(n_rows) AS rows_list
                    FROM TABLE(TUMBLE(TABLE span_readings, DESCRIPTOR(event_time), {window}))
                    GROUP BY household_id, meter_id, window_start, window_end, window_time))""")
    tenv.execute_sql(f"""CREATE TEMPORARY VIEW cleaned AS
        SELECT household_id, meter_id, window_time, start_ms, c.kind AS kind, c.payload AS payload,
               c.mean_w AS mean_w, c.dead AS dead
        FROM (SELECT household_id, meter_id, window_time, start_ms,
                     clean_windows(household_id, meter_id, start_ms, ts_list, power_list) AS c
              FROM (SELECT household_id, meter_id, window_time, ts_list, power_list,
                           {_epoch_ms("window_start")} AS start_ms FROM meter_windows))""")
    window_ms = settings.preprocess.window_s * 1000
    tenv.execute_sql(f"""CREATE TEMPORARY VIEW window_means AS
        SELECT household_id, meter_id, window_time, start_ms, start_ms + {window_ms} AS end_ms, mean_w FROM cleaned
        WHERE kind = 'features' AND mean_w IS NOT NULL
        UNION ALL
        SELECT household_id, meter_id, window_time, start_ms, end_ms, mean_w FROM spans WHERE kind = 'features'""")
    tenv.execute_sql(f"""CREATE TEMPORARY VIEW meter_days AS
        SELECT household_id, meter_id, {_epoch_ms("window_start")} AS day_start_ms,
               DATE_FORMAT(window_start, 'yyyy-MM-dd') AS day_label,
               ARRAY_AGG(start_ms) AS starts, ARRAY_AGG(end_ms) AS ends, ARRAY_AGG(mean_w) AS means
        FROM TABLE(TUMBLE(TABLE window_means, DESCRIPTOR(window_time), INTERVAL '1' DAY))
        GROUP BY household_id, meter_id, window_start, window_end""")
    tenv.execute_sql("""CREATE TEMPORARY VIEW feature_rows AS
        SELECT household_id, meter_id, window_time, payload FROM cleaned WHERE kind = 'features'
        UNION ALL
        SELECT household_id, meter_id, window_time, payload FROM spans WHERE kind = 'features'""")
    # the same features again, a record per bucket of meters and window (gridflow.feature_batches): cut by a
    # cascaded window on the features' own window time, so each batch leaves with the watermark that closed
    # its windows
    buckets = settings.preprocess.feature_batch_buckets
    tenv.execute_sql(f"""CREATE TEMPORARY VIEW bucketed_features AS
        SELECT {bucket_sql("household_id", "meter_id", buckets)} AS bucket, window_time, payload FROM feature_rows""")
    tenv.execute_sql(f"""CREATE TEMPORARY VIEW feature_batches AS
        SELECT bucket, {_epoch_ms("window_start")} AS start_ms, {_epoch_ms("window_end")} AS end_ms,
               LISTAGG(payload, ',') AS features
        FROM TABLE(TUMBLE(TABLE bucketed_features, DESCRIPTOR(window_time), {window}))
        GROUP BY bucket, window_start, window_end""")
    statements = tenv.create_statement_set()
    statements.add_insert_sql("INSERT INTO features_out SELECT household_id, payload FROM feature_rows")
    statements.add_insert_sql("""INSERT INTO feature_batches_out
        SELECT CAST(bucket AS STRING), CONCAT('{"v":1,"bucket":', CAST(bucket AS STRING), ',"window_start_ms":',
               CAST(start_ms AS STRING), ',"window_end_ms":', CAST(end_ms AS STRING), ',"features":[', features, ']}')
        FROM feature_batches""")
    statements.add_insert_sql("""INSERT INTO profiles_out SELECT p.record_key, p.payload
        FROM meter_days AS d, LATERAL TABLE(daily_profiles(d.household_id, d.meter_id, d.day_start_ms, d.day_label,
             d.starts, d.ends, d.means)) AS p(kind, record_key, payload, start_ms, mean_w)""")
    statements.add_insert_sql("""INSERT INTO dead_letter_out
        SELECT household_id, dead_letter(`payload`, problem, ts_ms) FROM rejected
        UNION ALL
        SELECT c.household_id, d.payload FROM cleaned AS c CROSS JOIN UNNEST(c.dead) AS d(payload)
        WHERE c.kind = 'dead_letter'
        UNION ALL
        SELECT s.household_id, d.payload FROM spans AS s CROSS JOIN UNNEST(s.dead) AS d(payload)
        WHERE s.dead IS NOT NULL""")
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
