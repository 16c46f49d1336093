"""Flink functions of the price-forecasting job: day-ahead price forecasts per market.

Thin: JSON, state, timers and metrics. The model is :class:`gridflow.forecasting.PriceForecaster`, kept
pickled in Flink state (so checkpointed with it); the price record is :mod:`gridflow.prices_replay`'s, the
forecast record :func:`gridflow.forecasting.forecast_record`'s. Rejected input goes to the ``dead-letter``
side output in the format of :func:`gridflow.readings.dead_letter`. (The appliance-learning job's functions
are in :mod:`gridflow.operators.appliances`: they import no river or scipy.)
"""

from __future__ import annotations

from pyflink.common import Types
from pyflink.datastream import KeyedProcessFunction, ProcessFunction, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from gridflow.forecasting import PriceForecaster, forecast_record
from gridflow.prices_replay import parse_price_record
from gridflow.contracts import ContractError, dead_letter
from gridflow.operators.appliances import DAY_MS, DEAD_LETTER, METRIC_GROUP, MINUTE_MS, _compact
from gridflow.settings import Settings


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
