"""Flink function of the load-forecasting job: a household's daily profiles -> its load forecast of the next day.

Thin: JSON, state and metrics. The household's recent profiles (and its river model, for ``linear``) are a
:class:`gridflow.forecasting.load.HouseholdLoad`, kept pickled in keyed state; the models and the record are
:mod:`gridflow.forecasting.load`'s.
"""

from __future__ import annotations

import json
import logging

from pyflink.common import Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from gridflow.contracts import ContractError, dead_letter, encode
from gridflow.forecasting.load import (
    GradientBoostedLoadModel,
    HouseholdLoad,
    forecast_household,
    load_forecast_record,
    local_midnight_ms,
    next_day,
)
from gridflow.operators.appliances import DAY_MS, DEAD_LETTER, METRIC_GROUP
from gridflow.settings import Settings

log = logging.getLogger(__name__)


def keep_days(settings: Settings) -> int:
    """Days of profiles a household's state holds: what the features of every model look back on."""
    d = settings.load_forecast
    return max(d.scale_days, max(d.lag_days), 7)


def model_in_use(settings: Settings) -> str:
    """``load_forecast.model``, except ``lightgbm`` without a ``model_file``: then ``linear`` (logged once)."""
    d = settings.load_forecast
    return "linear" if d.model == "lightgbm" and not d.model_file else d.model


class ForecastLoad(KeyedProcessFunction):
    """Keeps a household's daily profiles and, on each profile of its newest day, forecasts the next local day.

    A profile of an older day fills in the history (no forecast); one older than the kept window, or with
    another number of slots than ``preprocess.profile_slots``, is a counted skip or a dead letter. A forecast
    needs ``load_forecast.min_history_days`` days with a profile among the kept ones. ``issued_ts_ms`` is the
    end of the newest day (event time, so a replay issues the same records). Slots follow the local day's
    wall clock, as the profiles do (on the two days a year the clock changes, the last slot is an hour off).

    Metrics (group ``gridflow``): ``load_profiles_kept``, ``load_profiles_too_old``,
    ``load_forecasts_issued``, ``load_forecasts_not_ready``.
    """

    def __init__(self, settings: Settings, source: str):
        self.settings = settings
        self.source = source

    def open(self, runtime_context: RuntimeContext):
        self.state = runtime_context.get_state(ValueStateDescriptor("household-load", Types.PICKLED_BYTE_ARRAY()))
        group = runtime_context.get_metrics_group().add_group(METRIC_GROUP)
        self.kept = group.counter("load_profiles_kept")
        self.too_old = group.counter("load_profiles_too_old")
        self.issued = group.counter("load_forecasts_issued")
        self.not_ready = group.counter("load_forecasts_not_ready")
        self.model = model_in_use(self.settings)
        self.booster = None
        self.keep_days = keep_days(self.settings)
        if self.model == "lightgbm":
            self.booster = GradientBoostedLoadModel.load(self.settings.load_forecast.model_file)
            # the model file's own look-back, should it reach further than the settings'
            self.keep_days = max(self.keep_days, self.booster.scale_days, *self.booster.lag_days)
            empty = HouseholdLoad(self.settings.preprocess.profile_slots, self.keep_days)
            self.booster.check_features(empty.days("2000-01-01")[0])  # fails the start, not a record
        elif self.settings.load_forecast.model == "lightgbm":
            log.warning("load_forecast.model_file is empty: forecasting with the linear model until one is trained")

    def process_element(self, value, ctx):
        record = json.loads(value)  # the contract was checked at the source (read_contract)
        s = self.settings
        history = self.state.value() or HouseholdLoad(s.preprocess.profile_slots, self.keep_days)
        try:
            kept = history.add(record["day"], record["meter_id"], record["profile_w"])
        except ValueError as error:
            yield DEAD_LETTER, dead_letter(value, ContractError("profile_w", str(error)), self.source)
            return
        if not kept:
            self.too_old.inc()
            return
        self.kept.inc()
        if record["day"] != history.latest_day:
            self.state.update(history)
            return
        forecast, known = forecast_household(history, self.model, self.booster, s.load_forecast)
        self.state.update(history)  # the linear model learned the new day
        target = next_day(record["day"])
        if known < s.load_forecast.min_history_days:
            self.not_ready.inc()
            return
        start = local_midnight_ms(target, s.preprocess.timezone)
        try:
            made = load_forecast_record(
                record["household_id"], self.model, target, start, forecast, record["day_start_ms"] + DAY_MS, known
            )
        except ValueError:
            self.not_ready.inc()
            return
        self.issued.inc()
        yield encode(made)
