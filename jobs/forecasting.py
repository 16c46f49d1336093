"""Price forecasting job: real-time slot prices -> one day-ahead price forecast per market and local day.

    grid.prices --parse/validate--> key market --> learn, at the issue minute forecast --> grid.price-forecasts
         \\                                 \\--> dead-letter topic (slot not after the last learned one)
          \\--> dead-letter topic (malformed record, per-MWh price, other slot length or currency)

Each market's :class:`~gridflow.forecasting.PriceForecaster` (``forecast.model``) lives pickled in keyed state
and is checkpointed with it. Once per local day (UTC + ``forecast.utc_offset_minutes``), when the price of the
slot holding ``forecast.issue_minute`` is learned, the job publishes the forecast of the next local day from its
midnight: ``{"v": 1, "market", "model", "issued_ts_ms", "start_ts_ms", "slot_minutes", "slots", "currency",
"price_per_kwh": [...]}``, the record the scheduling job plans with. The price record is documented in
:mod:`gridflow.prices_replay`, which also replays real Dutch day-ahead prices onto the topic.

Run locally on the mini-cluster:      python jobs/forecasting.py --config <stack>/settings.yaml
Submit to a cluster:                  flink run -py jobs/forecasting.py -- --config ...
Feed it real prices:                  python -m gridflow.prices_replay --start 2024-01-08 --days 14 --config ...
"""

from __future__ import annotations

import sys

from pyflink.common import Types

from gridflow.connectors.flink_kafka import read_contract, sink_json
from gridflow.contracts import CONTRACTS
from gridflow.operators.learning import DEAD_LETTER, ForecastPrices, ParsePrices, price_type
from gridflow.runtime import configure_job, run_datastream_job
from gridflow.settings import Settings

# The models import scipy, whose pybind11 extension modules hang when first imported by thread-mode (pemja)
# workers (the task stays INITIALIZING inside scipy.spatial's import); these low-rate jobs run in process mode.
NAME = "forecasting"


def build(env, settings: Settings, stop_offsets: dict[str, dict[int, int]] | None = None) -> None:
    topics = settings.topics
    configure_job(env, settings.jobs.forecasting)
    source_name = f"kafka:{topics.prices}"
    raw, rejected = read_contract(env, settings, CONTRACTS["price"], NAME, stop_offsets)
    prices = raw.process(ParsePrices(settings, source_name), output_type=price_type()).name("parse prices")
    forecasts = (
        prices.key_by(lambda p: p[0], key_type=Types.STRING())
        .process(ForecastPrices(settings, source_name), output_type=Types.STRING())
        .name("forecast prices")
        .uid("price-forecaster")
    )
    sink_json(forecasts, settings, topics.price_forecasts, NAME)
    sink_json(
        rejected.union(prices.get_side_output(DEAD_LETTER), forecasts.get_side_output(DEAD_LETTER)),
        settings,
        topics.dead_letter,
        NAME,
        "dead letters",
    )


def main(argv: list[str] | None = None) -> None:
    run_datastream_job(__doc__, NAME, build, argv, stop_topic=lambda s: s.topics.prices)


if __name__ == "__main__":
    main(sys.argv[1:])
