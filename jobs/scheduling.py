"""Scheduling job: learned appliances + day-ahead price forecasts -> each household's day-ahead schedule.

    household.appliances --\\                                   /--> household.schedules (downlink to meters)
    household.energy -------- union -> key market -> fan-out -> key household -> schedule
    grid.price-forecasts --/                                 ^
    household.load-forecasts (each home's base load tomorrow) --/

``household.energy`` holds each home's PV forecast, battery SoC and EV session (the latest counts).

Records the scheduler cannot use (no household, a forecast without usable prices, an appliance or forecast
that makes planning fail) go to the dead-letter topic with the reason; the schedule topic, which the
downlink sends to the meters, only ever holds schedules.

The schedule (heap, PSO or MILP per ``scheduler.algorithm``) carries the expected cost, the saving against
running every appliance at its usual time, PAR before/after, and the price and load curves for the page.
Once the household has a load forecast, its base load is planned around (the breaker holds for the sum) and
is part of the costs and curves. Once it has sent a home-energy record, its PV, battery and EV are planned
with the appliances (``scheduler.home_solver``) and the schedule carries the battery and charger set-points.

Run locally on the mini-cluster:      python jobs/scheduling.py --config <stack>/settings.yaml
Submit to a cluster:                  flink run -py jobs/scheduling.py -- --config ...
"""

from __future__ import annotations

import sys

from pyflink.common import Types

from gridflow.connectors.flink_kafka import read_contract, sink_json
from gridflow.contracts import CONTRACTS
from gridflow.operators.scheduling import (
    APPLIANCE,
    DEAD_LETTER,
    FORECAST,
    HOME_ENERGY,
    HouseholdScheduler,
    MarketFanout,
    element_type,
    tag,
    to_household,
)
from gridflow.runtime import configure_job, run_datastream_job
from gridflow.settings import Settings

NAME = "scheduling"


def build(env, settings: Settings, stop_offsets: dict[str, dict[int, int]] | None = None) -> None:
    configure_job(env, settings.jobs.scheduling)
    topics = settings.topics

    appliances, bad_appliances = read_contract(env, settings, CONTRACTS["appliance"], NAME, stop_offsets)
    forecasts, bad_forecasts = read_contract(env, settings, CONTRACTS["price_forecast"], NAME, stop_offsets)
    loads, bad_loads = read_contract(env, settings, CONTRACTS["load_forecast"], NAME, stop_offsets)
    homes, bad_homes = read_contract(env, settings, CONTRACTS["home_energy"], NAME, stop_offsets)
    fanned_out = (
        appliances.map(tag(APPLIANCE), output_type=element_type())
        .union(
            forecasts.map(tag(FORECAST), output_type=element_type()),
            homes.map(tag(HOME_ENERGY), output_type=element_type()),
        )
        .key_by(lambda e: e[0], key_type=Types.STRING())
        .process(MarketFanout(settings), output_type=element_type())
        .name("fan out forecasts")
        .uid("forecast-fanout")
    )
    schedules = (
        fanned_out.union(loads.map(to_household, output_type=element_type()))
        .key_by(lambda e: e[0], key_type=Types.STRING())
        .process(HouseholdScheduler(settings), output_type=Types.STRING())
        .name("schedule households")
        .uid("household-scheduler")
    )
    sink_json(schedules, settings, topics.schedules, NAME)
    sink_json(
        bad_appliances.union(
            bad_forecasts,
            bad_loads,
            bad_homes,
            fanned_out.get_side_output(DEAD_LETTER),
            schedules.get_side_output(DEAD_LETTER),
        ),
        settings,
        topics.dead_letter,
        NAME,
        "dead letters",
    )


def main(argv: list[str] | None = None) -> None:
    run_datastream_job(__doc__, NAME, build, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
