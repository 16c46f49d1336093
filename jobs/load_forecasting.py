"""Load-forecasting job: households' daily profiles -> each household's load forecast for the next local day.

    household.profiles --contract--> key household --> keep the last days, forecast the next --> household.load-forecasts
           \\--> dead-letter topic (breaks the contract)   \\--> dead-letter topic (profile of another slot count)

Input: the preprocessing job's daily profiles (one per meter and local day, ``preprocess.profile_slots``
slots of average power). A household's meters are summed per day. On each profile of its newest day the job
forecasts the next local day (``preprocess.timezone``) with ``load_forecast.model``: ``lightgbm`` scores the
model ``gridflow forecast train-load`` wrote to ``load_forecast.model_file`` (one model for every household;
without a file the job uses ``linear``, river's online regression per household, kept in keyed state);
``naive_day`` and ``naive_week`` repeat yesterday or last week. The record (``load_forecast`` contract) feeds
the recommendation job's feeder balancer: tomorrow's base load instead of yesterday's.

Run locally on the mini-cluster:      python jobs/load_forecasting.py --config <stack>/settings.yaml
Submit to a cluster:                  flink run -py jobs/load_forecasting.py -- --config ...
Train the model:                      gridflow forecast train-load --out load-model.json [--citylearn]
"""

from __future__ import annotations

import sys

from pyflink.common import Types

from gridflow.connectors.flink_kafka import read_contract, sink_json
from gridflow.contracts import CONTRACTS, household_id_of
from gridflow.operators.appliances import DEAD_LETTER
from gridflow.operators.load_forecasts import ForecastLoad
from gridflow.runtime import configure_job, run_datastream_job
from gridflow.settings import Settings

# LightGBM and river import scipy, which thread-mode (pemja) workers cannot load: process mode.
NAME = "load-forecasting"


def build(env, settings: Settings, stop_offsets: dict[str, dict[int, int]] | None = None) -> None:
    topics = settings.topics
    configure_job(env, settings.jobs.load_forecasting)
    profiles, rejected = read_contract(env, settings, CONTRACTS["profile"], NAME, stop_offsets)
    forecasts = (
        profiles.key_by(household_id_of, key_type=Types.STRING())
        .process(ForecastLoad(settings, f"kafka:{topics.profiles}"), output_type=Types.STRING())
        .name("forecast load")
        .uid("load-forecaster")
    )
    sink_json(forecasts, settings, topics.load_forecasts, NAME)
    sink_json(
        rejected.union(forecasts.get_side_output(DEAD_LETTER)), settings, topics.dead_letter, NAME, "dead letters"
    )


def main(argv: list[str] | None = None) -> None:
    run_datastream_job(__doc__, NAME, build, argv, stop_topic=lambda s: s.topics.profiles)


if __name__ == "__main__":
    main(sys.argv[1:])
