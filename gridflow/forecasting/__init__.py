"""Day-ahead electricity price forecasting on a real-time price stream (no Flink, no I/O).

:class:`PriceForecaster` learns one slot price at a time and forecasts the next day;
:mod:`gridflow.forecasting.evaluation` backtests it with expanding-window time-series cross-validation and
prices the schedules the forecasts lead to.

>>> f = PriceForecaster("seasonal_naive", slot_minutes=60)
>>> for hour in range(24):
...     f.learn_one(hour * 3_600_000, 0.1 + hour / 100)
>>> round(float(f.forecast_day_ahead(24 * 3_600_000)[3]), 2)
0.13
"""

from gridflow.forecasting.evaluation import (
    Backtest,
    Split,
    backtest,
    error_metrics,
    expanding_window_splits,
    schedule_costs,
)
from gridflow.forecasting.forecaster import MODELS, PriceForecaster
from gridflow.forecasting.records import forecast_record

__all__ = [
    "MODELS",
    "Backtest",
    "PriceForecaster",
    "Split",
    "backtest",
    "error_metrics",
    "expanding_window_splits",
    "forecast_record",
    "schedule_costs",
]
