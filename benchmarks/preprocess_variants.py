"""Variants of the preprocessing job against the frozen anchor, in the same run on the same pre-loaded topic.

The machine is shared, so absolute rates drift from run to run: every variant runs next to the anchor
(``benchmarks/preprocess_anchor.py``: the job before the vectorised redesign), in rotating order, several
times; the summary gives each variant's rate and its ratio to the anchor run of the same round.

Per run: the job drains the readings topic (bounded at the pre-loaded offsets) into fresh output topics;
reported are the wall time (job start-up included), readings/s over it, readings/s in the steady middle of
the run (10th-90th percentile of the feature records' ``emitted_ms``), and the accounting check (readings
in feature records + dead letters == readings sent). Variants that end in a blackhole sink report wall time only.

    python benchmarks/preprocess_variants.py --variants anchor,job [--meters 5000 --samples 404 --repeats 2]
    python benchmarks/preprocess_variants.py --list
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import orjson
import psutil
from confluent_kafka import Consumer, TopicPartition

sys.path.insert(0, str(Path(__file__).parent))

from gridflow import kafka_io  # noqa: E402
from gridflow.devices.load_shapes import LoadShapeLibrary  # noqa: E402
from gridflow.jobs import preprocess  # noqa: E402
from gridflow.settings import load_settings  # noqa: E402
from gridflow.stack import EmbeddedStack  # noqa: E402

import preprocess_anchor  # noqa: E402
from preprocess_throughput import preload  # noqa: E402


def _run_statements(statements) -> None:
    statements.execute().wait()


def _anchor(settings, ends):
    tenv = preprocess.create_table_env(settings)
    _run_statements(preprocess_anchor.build(tenv, settings, ends))


def _job(settings, ends, table_config: dict[str, str] | None = None, **build_options):
    tenv = preprocess.create_table_env(settings)
    statements = preprocess.build(tenv, settings, ends, **build_options)
    for key, value in (table_config or {}).items():
        tenv.get_config().set(key, value)
    _run_statements(statements)


def _job_with(table_config: dict[str, str]):
    return lambda settings, ends: _job(settings, ends, table_config)


def _blackhole(sql: str, views=None, span_end_before: bool = False):
    """A stage probe: the readings source (with the job's event-time shift of span readings when
    ``span_end_before``), optional views, ``sql`` inserting into ``bh (a STRING, b STRING)``."""

    def run(settings, ends):
        from gridflow.connectors.kafka_tables import raw_source_ddl

        tenv = preprocess.create_table_env(settings)
        tenv.get_config().set("table.local-time-zone", settings.preprocess.timezone)
        tenv.get_config().set("table.optimizer.reuse-optimize-block-with-digest-enabled", "true")
        stream = settings.stream
        tenv.execute_sql(
            raw_source_ddl(
                settings,
                "readings",
                settings.topics.readings,
                "probe",
                time_column="event_time",
                out_of_orderness_ms=stream.out_of_orderness_ms,
                max_future_ms=settings.readings.max_clock_skew_s * 1000,
                stop_offsets=ends,
                watermark_emit=stream.watermark_emit,
                span_end_before=span_end_before,
            )
        )
        if views is not None:
            for statement in views(settings, ends):
                tenv.execute_sql(statement)
        tenv.execute_sql("CREATE TABLE bh (a STRING, b STRING) WITH ('connector'='blackhole')")
        tenv.execute_sql(sql).wait()

    return run


def _job_stage(sql: str, shift: bool = True, **build_options):
    """A cut of the job: its own tables and views (``jobs/preprocess.py: build``), ``sql`` into a blackhole;
    without ``shift``, the source does not move span readings' event time (a bisection probe)."""

    def run(settings, ends):
        tenv = preprocess.create_table_env(settings)
        source_ddl = preprocess.raw_source_ddl
        if not shift:
            preprocess.raw_source_ddl = lambda *a, **k: source_ddl(*a, **{**k, "span_end_before": False})
        try:
            preprocess.build(tenv, settings, ends, **build_options)
        finally:
            preprocess.raw_source_ddl = source_ddl
        tenv.execute_sql("CREATE TABLE bh (a STRING, b STRING) WITH ('connector'='blackhole')")
        tenv.execute_sql(sql).wait()

    return run


def _plain_source(settings, ends) -> list[str]:
    """The readings topic as ``plain (payload STRING)``: no event time, no watermark (a baseline for probes)."""
    return [
        "CREATE TEMPORARY TABLE plain (`payload` STRING) WITH ('connector'='kafka', 'topic'='"
        + settings.topics.readings
        + "', 'properties.bootstrap.servers'='"
        + settings.kafka.bootstrap_servers
        + "', 'properties.group.id'='plain-"
        + settings.kafka.group_id_prefix
        + "', "
        "'scan.startup.mode'='earliest-offset', 'format'='raw', 'scan.bounded.mode'='specific-offsets', "
        "'scan.bounded.specific-offsets'='"
        + ";".join(f"partition:{p},offset:{o}" for p, o in sorted(ends.items()))
        + "')"
    ]


def _probe(expression: str):
    """Per-record cost of one SQL expression over the payload: plain source -> expression -> blackhole."""
    return _blackhole(f"INSERT INTO bh SELECT CAST({expression} AS STRING), '' FROM plain", _plain_source)


def _anchor_checked(settings, ends):
    s = settings
    return [
        preprocess_anchor.checked_view_sql(
            "checked", "readings", s.readings, "event_time", s.stream.out_of_orderness_ms
        )
    ]


_FIELDS = ["household_id", "meter_id", "ts_ms", "power_w", "v", "voltage_v", "current_a", "nothere"]


def _json_values(k: int) -> str:
    return " || ".join(f"COALESCE(JSON_VALUE(`payload`, '$.{f}'), '')" for f in _FIELDS[:k])


# name -> (runner(settings, stop_offsets), settings overrides, writes features?)
VARIANTS = {
    "anchor": (_anchor, [], True),
    "job": (_job, [], True),
    "job-json-decoder": (lambda settings, ends: _job(settings, ends, decoder="json"), [], True),
    "job-arrow-batch-1k": (_job_with({"python.fn-execution.arrow.batch.size": "1000"}), [], True),
    "job-no-object-reuse": (_job_with({"pipeline.object-reuse": "false"}), [], True),
    "stage-valid-json-decoder": (
        _job_stage("INSERT INTO bh SELECT household_id, meter_id FROM valid", decoder="json"),
        [],
        False,
    ),
    "job-one-phase-agg": (_job_with({"table.optimizer.agg-phase-strategy": "ONE_PHASE"}), [], True),
    "job-arrow-batch-10k": (
        _job_with({"python.fn-execution.arrow.batch.size": "10000", "python.fn-execution.bundle.size": "100000"}),
        [],
        True,
    ),
    "job-thread": (_job, ["jobs.preprocess.python_execution_mode=thread"], True),
    "job-object-reuse": (_job, ["flink.pipeline.object-reuse=true"], True),
    "stage-valid-object-reuse": (
        _job_stage("INSERT INTO bh SELECT household_id, meter_id FROM valid"),
        ["flink.pipeline.object-reuse=true"],
        False,
    ),
    "stage-windows-object-reuse": (
        _job_stage("INSERT INTO bh SELECT household_id, CAST(CARDINALITY(ts_list) AS STRING) FROM meter_windows"),
        ["flink.pipeline.object-reuse=true"],
        False,
    ),
    "bh-raw": (_blackhole("INSERT INTO bh SELECT `payload`, `payload` FROM readings"), [], False),
    "bh-raw-no-watermark": (
        _blackhole("INSERT INTO bh SELECT `payload`, `payload` FROM plain", _plain_source),
        [],
        False,
    ),
    "probe-length": (_probe("CHAR_LENGTH(`payload`)"), [], False),
    "probe-json-value": (_probe("JSON_VALUE(`payload`, '$.power_w')"), [], False),
    "probe-json-value-x4": (
        _probe(
            "CONCAT(JSON_VALUE(`payload`, '$.power_w'), JSON_VALUE(`payload`, '$.ts_ms'), "
            "JSON_VALUE(`payload`, '$.meter_id'), JSON_VALUE(`payload`, '$.v'))"
        ),
        [],
        False,
    ),
    "probe-is-json": (_probe("`payload` IS JSON OBJECT"), [], False),
    "probe-regexp-id": (_probe("REGEXP(SUBSTRING(`payload`, 25, 10), '^[A-Za-z0-9._:-]{1,64}$')"), [], False),
    "probe-regexp-extract-ts": (_probe("REGEXP_EXTRACT(`payload`, '\"ts_ms\"\\s*:\\s*(-?[0-9]+)', 1)"), [], False),
    "probe-position-x2": (_probe("POSITION('\"current_a\"' IN `payload`) + POSITION('\\' IN `payload`)"), [], False),
    "probe-try-cast-double": (_probe("TRY_CAST(SUBSTRING(`payload`, 1, 6) AS DOUBLE)"), [], False),
    "bh-json1": (_blackhole(f"INSERT INTO bh SELECT {_json_values(1)}, '' FROM readings"), [], False),
    "bh-json4": (_blackhole(f"INSERT INTO bh SELECT {_json_values(4)}, '' FROM readings"), [], False),
    "bh-json8": (_blackhole(f"INSERT INTO bh SELECT {_json_values(8)}, '' FROM readings"), [], False),
    "stage-valid": (_job_stage("INSERT INTO bh SELECT household_id, meter_id FROM valid"), [], False),
    "stage-valid-no-shift": (
        _job_stage("INSERT INTO bh SELECT household_id, meter_id FROM valid", shift=False),
        [],
        False,
    ),
    "stage-decoded": (_job_stage("INSERT INTO bh SELECT s_household_id, s_meter_id FROM decoded"), [], False),
    "stage-decoded-no-shift": (
        _job_stage("INSERT INTO bh SELECT s_household_id, s_meter_id FROM decoded", shift=False),
        [],
        False,
    ),
    "bh-raw-shift": (
        _blackhole("INSERT INTO bh SELECT `payload`, `payload` FROM readings", span_end_before=True),
        [],
        False,
    ),
    "stage-windows": (
        _job_stage("INSERT INTO bh SELECT household_id, CAST(CARDINALITY(ts_list) AS STRING) FROM meter_windows"),
        [],
        False,
    ),
    "stage-clean": (
        _job_stage("INSERT INTO bh SELECT household_id, payload FROM cleaned WHERE kind = 'features'"),
        [],
        False,
    ),
    "stage-features-sink": (
        _job_stage("INSERT INTO features_out SELECT household_id, payload FROM cleaned WHERE kind = 'features'"),
        [],
        False,
    ),
    "bh-anchor-valid": (
        _blackhole("INSERT INTO bh SELECT household_id, meter_id FROM checked WHERE problem IS NULL", _anchor_checked),
        [],
        False,
    ),
}


def drain_topic(settings, topic: str, idle_s: float = 3.0) -> list[bytes]:
    """Every value of ``topic`` (confluent-kafka: ~150k records/s here)."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": f"drain-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        consumer.assign([TopicPartition(topic, p, 0) for p in metadata.partitions])
        values, last = [], time.monotonic()
        while time.monotonic() - last < idle_s:
            batch = consumer.consume(10_000, timeout=0.5)
            for message in batch:
                if message.error() is None:
                    values.append(message.value())
            if batch:
                last = time.monotonic()
        return values
    finally:
        consumer.close()


def steady_rate(emitted: np.ndarray, used: np.ndarray) -> float:
    """Readings/s between the 10th and 90th percentile of emit times (start-up and tail excluded)."""
    if emitted.size < 10:
        return float("nan")
    low, high = np.percentile(emitted, [10, 90])
    inside = (emitted >= low) & (emitted <= high)
    return float(used[inside].sum() / max((high - low) / 1000, 1e-3))


def cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by this process (the client; in the local mini-cluster it also runs the Python
    functions, loopback mode), by the JVM (JobManager + TaskManager) and by the broker: on a shared machine
    the CPU a run costs is steadier than its wall time."""
    me = psutil.Process()
    used = {"python": sum(me.cpu_times()[:2]), "jvm": 0.0, "broker": 0.0, "other": 0.0}
    for child in me.children(recursive=True):
        try:
            argv = child.cmdline()
            kind = "broker" if "kafka.Kafka" in argv else "jvm" if "java" in " ".join(argv[:1]) else "other"
            used[kind] += sum(child.cpu_times()[:2])
        except psutil.Error:
            pass
    return used


def run_variant(base, name: str, sent: int, ends: dict[int, int], round_no: int, calibrate: float = 0.0) -> dict:
    runner, overrides, writes = VARIANTS[name]
    suffix = f"{name}-{round_no}-{uuid.uuid4().hex[:6]}"
    topics = base.topics
    settings = base.with_overrides(
        f"kafka.group_id_prefix=var-{suffix}",
        f"topics.features={topics.features}.{suffix}",
        f"topics.profiles={topics.profiles}.{suffix}",
        f"topics.dead_letter={topics.dead_letter}.{suffix}",
        *overrides,
    )
    t = settings.topics
    kafka_io.create_topics(settings, [t.features, t.profiles, t.dead_letter])
    cpu_before, load_before = cpu_seconds(), psutil.getloadavg()[0]
    started = time.monotonic()
    runner(settings, ends)
    elapsed = time.monotonic() - started
    cpu = {k: v - cpu_before.get(k, 0.0) for k, v in cpu_seconds().items()}
    total_cpu = sum(cpu.values())
    result = {
        "variant": name,
        "round": round_no,
        "readings": sent,
        "job_s": round(elapsed, 1),
        "readings_per_s": round(sent / elapsed),
        "cpu_s": round(total_cpu, 1),
        "cpu_split": {k: round(v, 1) for k, v in cpu.items()},
        "readings_per_cpu_s": round(sent / max(total_cpu, 1e-3)),
        "load_avg_1m": [round(load_before, 1), round(psutil.getloadavg()[0], 1)],
    }
    if writes:
        features = [orjson.loads(v) for v in drain_topic(settings, t.features)]
        dead = len(drain_topic(settings, t.dead_letter, idle_s=1.0))
        profiles = len(drain_topic(settings, t.profiles, idle_s=1.0))
        emitted = np.array([f["emitted_ms"] for f in features], dtype=np.int64)
        used = np.array([f["n_readings"] + f["n_duplicates"] for f in features], dtype=np.int64)
        result.update(
            {
                "readings_per_s_steady": round(steady_rate(emitted, used)),
                "feature_records": len(features),
                "profiles": profiles,
                "dead_letters": dead,
                "accounted": int(used.sum()) + dead == sent,
            }
        )
    if calibrate:  # the same variant on a sliver of the input: its start-up and shut-down cost
        small = {p: max(1, int(o * calibrate)) for p, o in ends.items()}
        n_small = sum(small.values())
        cpu_before = cpu_seconds()
        started = time.monotonic()
        runner(settings.with_overrides(f"kafka.group_id_prefix=var-{suffix}-tiny"), small)
        tiny_s = time.monotonic() - started
        tiny_cpu = sum(cpu_seconds().values()) - sum(cpu_before.values())
        result.update(
            {
                "tiny_readings": n_small,
                "tiny_job_s": round(tiny_s, 1),
                "tiny_cpu_s": round(tiny_cpu, 1),
                "marginal_readings_per_s": round((sent - n_small) / max(elapsed - tiny_s, 1e-3)),
                "marginal_cpu_us_per_reading": round((total_cpu - tiny_cpu) / (sent - n_small) * 1e6, 1),
            }
        )
    print(json.dumps(result), flush=True)
    return result


def summary(results: list[dict], anchor: str) -> None:
    by_round: dict[int, dict[str, dict]] = {}
    for r in results:
        by_round.setdefault(r["round"], {})[r["variant"]] = r
    names = list(dict.fromkeys(r["variant"] for r in results))
    print(
        f"\n{'variant':<28}{'runs':>5}{'readings/s':>12}{'steady/s':>10}{'per cpu-s':>11}{'x anchor':>12}"
        f"{'x anchor steady':>17}{'x anchor cpu':>14}"
    )
    for name in names:
        rows = [rnd[name] for rnd in by_round.values() if name in rnd]
        rate = statistics.median(r["readings_per_s"] for r in rows)
        steady = [r["readings_per_s_steady"] for r in rows if "readings_per_s_steady" in r]
        ratios = [
            rnd[name]["readings_per_s"] / rnd[anchor]["readings_per_s"]
            for rnd in by_round.values()
            if name in rnd and anchor in rnd
        ]
        sratios = [
            rnd[name]["readings_per_s_steady"] / rnd[anchor]["readings_per_s_steady"]
            for rnd in by_round.values()
            if name in rnd
            and anchor in rnd
            and "readings_per_s_steady" in rnd[name]
            and "readings_per_s_steady" in rnd[anchor]
        ]
        per_cpu = statistics.median(r["readings_per_cpu_s"] for r in rows)
        cratios = [
            rnd[name]["readings_per_cpu_s"] / rnd[anchor]["readings_per_cpu_s"]
            for rnd in by_round.values()
            if name in rnd and anchor in rnd
        ]
        print(
            f"{name:<28}{len(rows):>5}{rate:>12,.0f}{(statistics.median(steady) if steady else float('nan')):>10,.0f}"
            f"{per_cpu:>11,.0f}{' / '.join(f'{x:.2f}' for x in ratios):>12}{' / '.join(f'{x:.2f}' for x in sratios):>17}"
            f"{' / '.join(f'{x:.2f}' for x in cratios):>14}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default="anchor,job", help="comma-separated; the first is the anchor")
    parser.add_argument("--meters", type=int, default=5000)
    parser.add_argument("--samples", type=int, default=404, help="per meter; 5000 x 404 gives >= 2 M readings")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--list", action="store_true")
    parser.add_argument(
        "--calibrate",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="also run each variant on this fraction of the input (e.g. 0.01) to separate its fixed "
        "cost: reports marginal readings/s and CPU us per reading",
    )
    parser.add_argument("--no-warmup", dest="warmup", action="store_false", help="skip the unrecorded first run")
    parser.add_argument("--set", action="append", default=[], dest="overrides", help="settings override for all runs")
    args = parser.parse_args()
    if args.list:
        print("\n".join(VARIANTS))
        return
    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; --list shows them")
    library = LoadShapeLibrary.load(load_settings())
    with tempfile.TemporaryDirectory() as run_dir, EmbeddedStack(load_settings(), run_dir, mqtt=False) as stack:
        settings = stack.settings.with_overrides("kafka.group_id_prefix=bench-variants", *args.overrides)
        kafka_io.create_topics(settings, [settings.topics.readings])
        started = time.monotonic()
        sent, ends = preload(settings, library, args.meters, args.samples)
        print(
            json.dumps(
                {
                    "preloaded": sent,
                    "seconds": round(time.monotonic() - started, 1),
                    "parallelism": settings.flink.parallelism_default,
                }
            ),
            flush=True,
        )
        if args.warmup:  # class loading and JIT of the shared JVM would otherwise land on the first run
            run_variant(settings, "bh-raw", sent, ends, -1)
        results = []
        for round_no in range(args.repeats):
            order = names[round_no % len(names) :] + names[: round_no % len(names)]
            for name in order:
                results.append(run_variant(settings, name, sent, ends, round_no, args.calibrate))
        summary(results, names[0])


if __name__ == "__main__":
    main()
