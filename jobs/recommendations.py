"""Recommendation job: schedules, daily profiles, alerts and load forecasts -> personal recommendations.

    household.schedules -----\\
    household.profiles  ------> key household -> recommend (shift / off-peak / alert / tomorrow's forecast)
    household.alerts    -----/                     --> household.recommendations (downlinked to the meter)
    household.load-forecasts/
    schedules + profiles + household.load-forecasts --> key feeder -> balance (grid requests when a feeder
                                                     would exceed its capacity, on tomorrow's forecast load) --/

Run locally on the mini-cluster:      python jobs/recommendations.py --config <stack>/settings.yaml
Submit to a cluster:                  flink run -py jobs/recommendations.py -- --config ...
"""

from __future__ import annotations

import sys

from pyflink.common import Types

from gridflow.connectors.flink_kafka import read_contract, sink_json
from gridflow.contracts import CONTRACTS
from gridflow.operators.recommendations import (
    ALERT,
    DEAD_LETTER,
    LOAD_FORECAST,
    PROFILE,
    SCHEDULE,
    FeederBalancer,
    Recommend,
    ToFeeder,
    element_type,
    tag,
)
from gridflow.runtime import configure_job, run_datastream_job
from gridflow.settings import Settings

NAME = "recommendations"


def build(env, settings: Settings, stop_offsets: dict[str, dict[int, int]] | None = None) -> None:
    configure_job(env, settings.jobs.recommendations)
    topics = settings.topics

    rejected = []

    def read(contract: str, kind: str):
        records, bad = read_contract(env, settings, CONTRACTS[contract], NAME, stop_offsets)
        rejected.append(bad)
        return records.map(tag(kind), output_type=element_type())

    schedules, profiles, alerts = read("schedule", SCHEDULE), read("profile", PROFILE), read("alert", ALERT)
    load_forecasts = read("load_forecast", LOAD_FORECAST)
    made = (
        schedules.union(profiles, alerts, load_forecasts)
        .key_by(lambda e: e[0], key_type=Types.STRING())
        .process(Recommend(settings), output_type=Types.STRING())
        .name("recommend")
        .uid("recommend")
    )
    requests = (
        schedules.union(profiles, load_forecasts)
        .map(ToFeeder(settings), output_type=element_type())
        .key_by(lambda e: e[0], key_type=Types.STRING())
        .process(FeederBalancer(settings), output_type=Types.STRING())
        .name("balance feeders")
        .uid("feeder-balancer")
    )
    sink_json(made.union(requests), settings, topics.recommendations, NAME)
    sink_json(made.get_side_output(DEAD_LETTER).union(*rejected), settings, topics.dead_letter, NAME, "dead letters")


def main(argv: list[str] | None = None) -> None:
    run_datastream_job(__doc__, NAME, build, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
