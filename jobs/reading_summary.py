"""Reading summary job: raw meter readings from Kafka -> per-household window summaries in Kafka.

    readings topic --parse/validate--> event time --key by household--> tumbling window --> summaries topic
                           \\--> dead-letter topic (malformed, impossible or late readings, with the reason)

Run locally on the mini-cluster:      python jobs/reading_summary.py --config <stack>/settings.yaml
Submit to a cluster:                  flink run -py jobs/reading_summary.py -- --config ...
"""

from __future__ import annotations

import sys

from pyflink.common import Time, Types
from pyflink.datastream.window import TumblingEventTimeWindows

from gridflow.cli_args import job_argument_parser, settings_from_args
from gridflow.connectors.flink_kafka import read_contract, sink_json
from gridflow.contracts import CONTRACTS
from gridflow.operators.readings import (
    ACCUMULATOR_TYPE,
    DEAD_LETTER,
    EmitSummary,
    ParseReadings,
    SummaryAggregate,
    late_dead_letter,
    late_readings_tag,
    reading_type,
)
from gridflow.readings import ReadingBounds
from gridflow.runtime import configure_job, create_env
from gridflow.settings import Settings

NAME = "reading-summary"


def build(env, settings: Settings, stop_offsets: dict[int, int] | None = None) -> None:
    configure_job(env, settings.jobs.reading_summary)
    stream = settings.stream
    source_name = f"kafka:{settings.topics.readings}"
    raw, rejected = read_contract(
        env,
        settings,
        CONTRACTS["reading"],
        NAME,
        None if stop_offsets is None else {settings.topics.readings: stop_offsets},
        event_time=("ts_ms", 0),  # watermarks from the source, per partition
    )
    readings = raw.process(
        ParseReadings(ReadingBounds.from_settings(settings.readings), source_name), output_type=reading_type()
    ).name("parse readings")
    late = late_readings_tag()
    summaries = (
        readings.key_by(lambda row: row[0], key_type=Types.STRING())
        .window(TumblingEventTimeWindows.of(Time.seconds(stream.window_s)))
        .allowed_lateness(stream.allowed_lateness_s * 1000)
        .side_output_late_data(late)
        .aggregate(SummaryAggregate(), EmitSummary(), accumulator_type=ACCUMULATOR_TYPE, output_type=Types.STRING())
        .name("household window summary")
        .uid("household-window-summary")
    )
    late_readings = summaries.get_side_output(late).map(
        late_dead_letter(source_name, stream.allowed_lateness_s * 1000), output_type=Types.STRING()
    )
    sink_json(summaries, settings, settings.topics.summaries, NAME)
    sink_json(
        rejected.union(readings.get_side_output(DEAD_LETTER), late_readings),
        settings,
        settings.topics.dead_letter,
        NAME,
        "dead letters",
    )


def main(argv: list[str] | None = None) -> None:
    args = job_argument_parser(__doc__).parse_args(argv)
    settings = settings_from_args(args)
    env = create_env(settings)
    build(env, settings, args.stop_offsets)
    env.execute(NAME)


if __name__ == "__main__":
    main(sys.argv[1:])
