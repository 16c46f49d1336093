"""Flink functions of the learning jobs: day-ahead price forecasts per market, appliance profiles per household.

Thin: JSON, state, timers and metrics. The models are :class:`gridflow.forecasting.PriceForecaster` and
:class:`gridflow.nilm.ApplianceLearner`, kept pickled in Flink state (so checkpointed with it); the price
record is :mod:`gridflow.prices_replay`'s, the forecast record :func:`gridflow.forecasting.forecast_record`'s
and the appliance record :meth:`gridflow.nilm.ApplianceProfile.to_record`'s. Rejected input goes to the
``dead-letter`` side output in the format of :func:`gridflow.readings.dead_letter`.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone

import numpy as np
from pyflink.common import Row, Types
from pyflink.datastream import KeyedProcessFunction, OutputTag, ProcessFunction, RuntimeContext
from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor

from gridflow.forecasting import PriceForecaster, forecast_record
from gridflow.nilm import ApplianceLearner
from gridflow.preprocess.localtime import LocalClock
from gridflow.prices_replay import parse_price_record
from gridflow.contracts import ContractError, dead_letter, decode_object
from gridflow.settings import Settings

DAY_MS = 86_400_000
MINUTE_MS = 60_000
DEAD_LETTER = OutputTag("dead-letter", Types.STRING())
METRIC_GROUP = "gridflow"


def _compact(record: dict) -> str:
    return json.dumps(record, separators=(",", ":"))


# --- prices -> day-ahead forecasts ------------------------------------------------------------------------------


def price_type():
    """``(market, ts_ms, price_per_kwh, payload)``: a parsed price with its original JSON for dead letters."""
    return Types.TUPLE([Types.STRING(), Types.LONG(), Types.DOUBLE(), Types.STRING()])


class ParsePrices(ProcessFunction):
    """JSON price record -> :func:`price_type` tuple; invalid records go to the ``dead-letter`` side output."""

    def __init__(self, settings: Settings, source: str):
        self.slot_minutes = settings.forecast.slot_minutes
        self.currency = settings.tariff.currency
        self.source = source

    def process_element(self, value, ctx):
        try:
            price = parse_price_record(value, self.slot_minutes, self.currency)
        except ContractError as error:
            yield DEAD_LETTER, dead_letter(value, error, self.source)
            return
        yield price.market, price.ts_ms, price.price_per_kwh, value


class ForecastPrices(KeyedProcessFunction):
    """Learns a market's prices one slot at a time and issues one day-ahead forecast per local day.

    The forecast of local day ``d + 1`` (``forecast.horizon_days`` days from its local midnight, local time
    being UTC + ``forecast.utc_offset_minutes``) is issued once on day ``d``: after learning the slot holding
    the local ``forecast.issue_minute``, or, when that slot's price is missing, the first later slot of the day.
    ``issued_ts_ms`` is that event time (the issue minute, or the later slot's start). Before the model has a
    season of prices it cannot forecast; it tries again with every price of the day. A price whose slot is not
    after the last learned one (out of order, or a redelivery) goes to the dead letters.

    Metrics (group ``gridflow``): ``prices_learned``, ``prices_rejected``, ``forecasts_issued``,
    ``forecasts_not_ready``.
    """

    def __init__(self, settings: Settings, source: str):
        self.forecast_settings = settings.forecast
        self.currency = settings.tariff.currency
        self.source = source

    def open(self, runtime_context: RuntimeContext):
        self.forecaster = runtime_context.get_state(ValueStateDescriptor("forecaster", Types.PICKLED_BYTE_ARRAY()))
        self.issued_day = runtime_context.get_state(ValueStateDescriptor("issued_day", Types.LONG()))
        group = runtime_context.get_metrics_group().add_group(METRIC_GROUP)
        self.learned = group.counter("prices_learned")
        self.rejected = group.counter("prices_rejected")
        self.issued = group.counter("forecasts_issued")
        self.not_ready = group.counter("forecasts_not_ready")

    def process_element(self, value, ctx):
        market, ts_ms, price, payload = value
        forecaster = self.forecaster.value() or PriceForecaster.from_settings(self.forecast_settings)
        try:
            forecaster.learn_one(ts_ms, price)
        except ValueError as error:
            self.rejected.inc()
            yield DEAD_LETTER, dead_letter(payload, ContractError("ts_ms", str(error)), self.source)
            return
        self.learned.inc()
        self.forecaster.update(forecaster)
        forecast = self._forecast(market, forecaster, ts_ms)
        if forecast is not None:
            yield _compact(forecast)

    def _forecast(self, market: str, forecaster: PriceForecaster, ts_ms: int) -> dict | None:
        offset_ms = self.forecast_settings.utc_offset_minutes * MINUTE_MS
        slot_ms = forecaster.slot_ms
        day, slot_start_ms = (ts_ms + offset_ms) // DAY_MS, ts_ms - ts_ms % slot_ms
        issue_ms = day * DAY_MS + self.forecast_settings.issue_minute * MINUTE_MS - offset_ms
        if slot_start_ms + slot_ms <= issue_ms or self.issued_day.value() == day:
            return None
        midnight_ms = (day + 1) * DAY_MS - offset_ms
        start_ms = max(midnight_ms - midnight_ms % slot_ms, slot_start_ms + slot_ms)  # a slot holding midnight
        try:
            prices = forecaster.forecast_day_ahead(start_ms)
            record = forecast_record(
                market,
                forecaster.model,
                max(issue_ms, slot_start_ms),
                start_ms,
                forecaster.slot_minutes,
                prices,
                self.currency,
            )
        except ValueError:  # fewer than a season of prices learned (or no finite forecast yet)
            self.not_ready.inc()
            return None
        self.issued_day.update(day)
        self.issued.inc()
        return record


# --- minute features -> appliance profiles ----------------------------------------------------------------------


def feature_type():
    """Row of a parsed feature window. A fresh object per use (see ``operators.readings.reading_type``)."""
    return Types.ROW_NAMED(
        ["household_id", "meter_id", "window_start_ms", "window_end_ms", "mean_w"],
        [Types.STRING(), Types.STRING(), Types.LONG(), Types.LONG(), Types.DOUBLE()],
    )


def parse_feature(payload: str) -> Row:
    """A feature record of the preprocessing job -> :func:`feature_type` row (``mean_w`` NaN when null).

    Raises :class:`~gridflow.contracts.ContractError` naming the field.
    """
    data = decode_object(payload)
    for name in ("household_id", "meter_id"):
        if not isinstance(data.get(name), str) or not data[name]:
            raise ContractError(name, f"must be a non-empty string, got {data.get(name)!r}")
    start, end = _epoch_ms(data, "window_start_ms"), _epoch_ms(data, "window_end_ms")
    if not start < end <= start + DAY_MS:
        raise ContractError("window_end_ms", f"must be after window_start_ms ({start}) by at most a day, got {end}")
    mean_w = data.get("mean_w")
    if mean_w is not None and (
        isinstance(mean_w, bool) or not isinstance(mean_w, (int, float)) or not math.isfinite(mean_w)
    ):
        raise ContractError("mean_w", f"must be a finite number or null, got {mean_w!r}")
    return Row(data["household_id"], data["meter_id"], start, end, math.nan if mean_w is None else float(mean_w))


class ParseFeatures(ProcessFunction):
    """JSON feature record -> :func:`feature_type` row; invalid records go to the ``dead-letter`` side output."""

    def __init__(self, source: str):
        self.source = source

    def process_element(self, value, ctx):
        try:
            yield parse_feature(value)
        except ContractError as error:
            yield DEAD_LETTER, dead_letter(value, error, self.source)


def _epoch_ms(data: dict, name: str) -> int:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ContractError(name, f"must be epoch milliseconds (an integer >= 0), got {value!r}")
    return value


def minute_cells(start_ms: int, end_ms: int, clock: LocalClock) -> list[tuple[int, int]]:
    """``(local day, local minute of day)`` of every minute a window ``[start_ms, end_ms)`` covers.

    Local days are numbered from 1970-01-01 on the local clock, so ``day * DAY_MS`` is the local midnight as
    local-clock milliseconds (what :meth:`ApplianceLearner.learn_day` takes). In the hour repeated when
    clocks go back a minute is covered twice (its readings are averaged); the hour skipped in spring is missing.
    """
    cells = []
    for ts in range(start_ms - start_ms % MINUTE_MS, end_ms, MINUTE_MS):
        local = ts + clock.utc_offset_ms(ts)
        cells.append((local // DAY_MS, (local % DAY_MS) // MINUTE_MS))
    return cells


def local_day_end_ms(day: int, clock: LocalClock) -> int:
    """UTC epoch milliseconds of the local midnight that ends local day ``day``."""
    midnight = datetime.fromtimestamp((day + 1) * DAY_MS // 1000, tz=timezone.utc).replace(tzinfo=clock.zone)
    return int(midnight.timestamp()) * 1000


def whole_house_w(meters: dict[str, np.ndarray]) -> np.ndarray:
    """Per-minute whole-house power: the sum over the household's meters of each meter's mean, NaN where a
    meter that reported on the day has no value. ``meters`` maps meter id -> ``[sum_w, count]`` (2 x 1440)."""
    total = np.zeros(1440)
    for sums in meters.values():
        total += np.divide(sums[0], sums[1], out=np.full(1440, np.nan), where=sums[1] > 0)
    return total


class LearnAppliances(KeyedProcessFunction):
    """Collects a household's local days of minute means and learns each complete day.

    A day is complete when the watermark passes its local end (an event-time timer; the end of a bounded
    source fires every timer). Then the whole-house power of the day (:func:`whole_house_w`) goes to the
    household's :class:`ApplianceLearner` and every profile it has learned so far is published, one record
    per profile, ``updated_ts_ms`` being the day's end (event time, so a replay gives the same records). A
    feature of a day already learned is late and goes to the dead letters. Local time is ``preprocess.timezone``.

    State: the pickled learner, the last learned day and the partial days (local day -> meter -> sums), all
    checkpointed. Metrics (group ``gridflow``): ``feature_windows``, ``features_late``, ``appliance_days_learned``,
    ``appliance_profiles_published``.
    """

    def __init__(self, settings: Settings, source: str):
        self.nilm = settings.nilm
        self.timezone = settings.preprocess.timezone
        self.slot_minutes = settings.scheduler.slot_minutes
        self.source = source

    def open(self, runtime_context: RuntimeContext):
        self.learner = runtime_context.get_state(ValueStateDescriptor("learner", Types.PICKLED_BYTE_ARRAY()))
        self.learned_day = runtime_context.get_state(ValueStateDescriptor("learned_day", Types.LONG()))
        self.days = runtime_context.get_map_state(MapStateDescriptor("days", Types.LONG(), Types.PICKLED_BYTE_ARRAY()))
        self.clock = LocalClock(self.timezone)
        group = runtime_context.get_metrics_group().add_group(METRIC_GROUP)
        self.windows = group.counter("feature_windows")
        self.late = group.counter("features_late")
        self.days_learned = group.counter("appliance_days_learned")
        self.published = group.counter("appliance_profiles_published")

    def process_element(self, value, ctx):
        _, meter, start_ms, end_ms, mean_w = value
        cells = minute_cells(start_ms, end_ms, self.clock)
        learned = self.learned_day.value()
        if learned is not None and cells[0][0] <= learned:
            self.late.inc()
            payload = _compact(
                {
                    "household_id": value[0],
                    "meter_id": meter,
                    "window_start_ms": start_ms,
                    "window_end_ms": end_ms,
                    "mean_w": None if math.isnan(mean_w) else mean_w,
                }
            )
            reason = f"late: local day {cells[0][0]} of this window was already learned (through day {learned})"
            yield DEAD_LETTER, dead_letter(payload, ContractError("window_start_ms", reason), self.source)
            return
        self.windows.inc()
        touched: dict[int, dict] = {}
        for day, minute in cells:
            if day not in touched:
                touched[day] = self.days.get(day) or {}
                if not touched[day]:
                    ctx.timer_service().register_event_time_timer(local_day_end_ms(day, self.clock) - 1)
            sums = touched[day].setdefault(meter, np.zeros((2, 1440)))
            if not math.isnan(mean_w):
                sums[0, minute] += mean_w
                sums[1, minute] += 1
        for day, meters in touched.items():
            self.days.put(day, meters)

    def on_timer(self, timestamp: int, ctx):
        day = (timestamp + self.clock.utc_offset_ms(timestamp)) // DAY_MS
        meters = self.days.get(day)
        if meters is None:
            return
        learner = self.learner.value() or ApplianceLearner.from_settings(self.nilm)
        learner.learn_day(day * DAY_MS, whole_house_w(meters))
        self.learner.update(learner)
        self.learned_day.update(day)
        self.days.remove(day)
        self.days_learned.inc()
        household = ctx.get_current_key()
        for profile in learner.profiles():
            self.published.inc()
            yield _compact(
                profile.to_record(household, self.slot_minutes, self.nilm.horizon_start_minute, timestamp + 1)
            )
