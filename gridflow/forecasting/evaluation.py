"""Backtesting price forecasters: expanding-window time-series cross-validation, errors, schedule costs.

Cross-validation follows scikit-learn's ``TimeSeriesSplit`` as used by Touhs et al. 2024: the last
``n_splits * test_days`` days are cut into consecutive test folds and each fold trains on every day before
it. An online model makes this a single pass: the model that has learned the prices before a fold's first
origin is exactly the model trained on that fold's window. Inside a fold forecasts are rolling-origin: the
forecast issued at day ``d``'s origin has seen every price before that origin and nothing after
(:func:`backtest` checks it), which is how a streaming operator uses the model.

:func:`schedule_costs` schedules a household (Touhs et al.'s appliances) on each forecast with the heap
scheduler and prices the schedule with the real prices, next to the schedule a perfect forecast would give.

>>> [(s.train_stop, s.test_start, s.test_stop) for s in expanding_window_splits(10, 2, 3, min_train_days=4)]
[(4, 4, 7), (7, 7, 10)]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gridflow.forecasting.forecaster import PriceForecaster, _check_int
from gridflow.scheduling import schedule_heap
from gridflow.scheduling.scenarios import DEFAULT_BREAKER_W, USAGE_LEVELS, touhs_problem, unscheduled_baseline

_DAY_MS = 86_400_000


@dataclass(frozen=True)
class Split:
    """One fold, in day indices: train on ``[train_start, train_stop)``, test on ``[test_start, test_stop)``."""

    fold: int
    train_start: int
    train_stop: int
    test_start: int
    test_stop: int


def expanding_window_splits(
    n_days: int, n_splits: int = 5, test_days: int | None = None, min_train_days: int = 7
) -> list[Split]:
    """Expanding-window folds over ``n_days`` days.

    Parameters
    ----------
    n_days : int
        Days available (>= 2).
    n_splits : int
        Number of folds (>= 1).
    test_days : int, optional
        Days per test fold (default: ``(n_days - min_train_days) // n_splits``).
    min_train_days : int
        Days the first fold must train on (>= 1).

    Returns
    -------
    list of Split
        Consecutive folds ending at ``n_days``; every training window starts at day 0 and stops where its
        test fold starts.

    Raises
    ------
    ValueError
        A parameter is out of range, or the folds leave fewer than ``min_train_days`` to train the first.
    """
    n_days = _check_int("n_days", n_days, 2)
    n_splits = _check_int("n_splits", n_splits, 1)
    min_train_days = _check_int("min_train_days", min_train_days, 1)
    if test_days is None:
        test_days = (n_days - min_train_days) // n_splits
    test_days = _check_int("test_days", test_days, 1)
    first = n_days - n_splits * test_days
    if first < min_train_days:
        raise ValueError(
            f"n_splits * test_days = {n_splits * test_days} leaves {first} of n_days={n_days} days to "
            f"train, fewer than min_train_days={min_train_days}"
        )
    return [
        Split(k, 0, first + k * test_days, first + k * test_days, first + (k + 1) * test_days) for k in range(n_splits)
    ]


@dataclass(frozen=True, eq=False)
class Backtest:
    """Forecasts of one model: row ``i`` was issued at ``origins_ms[i]`` in fold ``fold[i]``."""

    origins_ms: np.ndarray  # (n,) int64
    fold: np.ndarray  # (n,) int64
    forecast: np.ndarray  # (n, horizon_slots) float64
    actual: np.ndarray  # (n, horizon_slots) float64, NaN where the price is missing


def backtest(forecaster: PriceForecaster, ts_ms, prices, splits: list[Split], first_origin_ms: int) -> Backtest:
    """Run ``forecaster`` once through the series, forecasting at the origin of every test day.

    Parameters
    ----------
    forecaster : PriceForecaster
        A fresh forecaster (it learns the whole series; pass a copy to keep the original).
    ts_ms, prices : array-like
        Slot start times (UTC ms, one every ``forecaster.slot_minutes``, increasing) and prices (NaN = missing).
    splits : list of Split
        Folds from :func:`expanding_window_splits`; day ``d`` is issued at ``first_origin_ms + d`` days.
    first_origin_ms : int
        Origin of day 0 (e.g. noon local time of the first day).

    Returns
    -------
    Backtest
        One row per test day whose whole horizon lies inside the series.

    Raises
    ------
    ValueError
        ``ts_ms`` is not a regular grid of the forecaster's slots, the arrays differ in length, or the model
        has not learned a season before the first test origin.
    """
    ts_ms, prices = np.asarray(ts_ms, dtype=np.int64), np.asarray(prices, dtype=np.float64)
    step, horizon = forecaster.slot_ms, forecaster.horizon_slots
    if ts_ms.ndim != 1 or ts_ms.shape != prices.shape or ts_ms.size < 2 or np.any(np.diff(ts_ms) != step):
        raise ValueError(f"ts_ms and prices must be equally long 1-D arrays on a grid of slot_ms={step}")
    days = [(s.fold, d) for s in splits for d in range(s.test_start, s.test_stop)]
    origins = {}
    for fold, day in days:
        origin = first_origin_ms + day * _DAY_MS
        index = int(np.searchsorted(ts_ms, origin))
        if ts_ms[0] < origin and index + horizon <= ts_ms.size:
            origins[index] = (origin, fold)
    rows_origin, rows_fold, rows_forecast, rows_actual = [], [], [], []
    for i, (ts, price) in enumerate(zip(ts_ms.tolist(), prices.tolist())):
        if i in origins:
            origin, fold = origins[i]
            last = forecaster.last_learned_ts_ms
            assert last is None or last < origin, "the forecaster has seen a price after the origin"
            rows_origin.append(origin)
            rows_fold.append(fold)
            rows_forecast.append(forecaster.forecast_day_ahead(origin))
            rows_actual.append(prices[i : i + horizon])
        if math.isfinite(price):
            forecaster.learn_one(ts, price)
    return Backtest(
        np.array(rows_origin, dtype=np.int64),
        np.array(rows_fold, dtype=np.int64),
        np.array(rows_forecast, dtype=np.float64).reshape(-1, horizon),
        np.array(rows_actual, dtype=np.float64).reshape(-1, horizon),
    )


def error_metrics(actual, forecast) -> dict[str, float]:
    """MAE, MSE and RMSE over the entries where ``actual`` is known (``n`` counts them)."""
    actual, forecast = np.asarray(actual, dtype=np.float64), np.asarray(forecast, dtype=np.float64)
    if actual.shape != forecast.shape:
        raise ValueError(f"actual and forecast must have the same shape, got {actual.shape} and {forecast.shape}")
    error = (forecast - actual)[np.isfinite(actual)]
    mse = float(np.mean(error**2)) if error.size else math.nan
    return {
        "mae": float(np.mean(np.abs(error))) if error.size else math.nan,
        "mse": mse,
        "rmse": math.sqrt(mse),
        "n": int(error.size),
    }


def schedule_costs(
    forecast, actual, usage: str = "medium", slot_minutes: int = 60, breaker_w: float | None = DEFAULT_BREAKER_W
) -> dict[str, np.ndarray]:
    """Cost of scheduling Touhs et al.'s household on each day's forecast, priced with the real prices.

    Each row is one day from 12:00 (``1440 / slot_minutes`` slots). The heap scheduler needs prices >= 0, so
    a day's curve is shifted up by its most negative value; with no block rates and no PV every schedule of
    the household uses the same energy, so the shift adds the same amount to every schedule's cost and does
    not change which schedule is cheapest. Schedules are then priced linearly with the real prices
    (negative prices pay the household).

    Parameters
    ----------
    forecast, actual : array-like of shape (n_days, slots)
        Forecast and real prices (currency/kWh); days with a missing real price are skipped.
    usage : {"light", "medium", "heavy"}
        Touhs usage level.
    slot_minutes : int
        Slot length of the rows.
    breaker_w : float, optional
        Household breaker limit (W).

    Returns
    -------
    dict of str to numpy.ndarray
        ``forecast`` (schedule made on the forecast), ``perfect`` (made on the real prices) and
        ``unscheduled`` (everything at its earliest start), each the real cost per kept day, and ``day``
        (the kept row numbers).
    """
    if usage not in USAGE_LEVELS:
        raise ValueError(f"usage must be one of {USAGE_LEVELS}, got {usage!r}")
    forecast, actual = np.asarray(forecast, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    if forecast.shape != actual.shape or forecast.ndim != 2 or forecast.shape[1] != 1440 // slot_minutes:
        raise ValueError(
            f"forecast and actual must both have shape (n_days, {1440 // slot_minutes}), got "
            f"{forecast.shape} and {actual.shape}"
        )
    slot_h = slot_minutes / 60.0
    out: dict[str, list[float]] = {"forecast": [], "perfect": [], "unscheduled": [], "day": []}

    def plan(curve: np.ndarray):
        problem = touhs_problem(usage, curve - min(0.0, float(curve.min())), slot_minutes, breaker_w=breaker_w)
        return problem, schedule_heap(problem)

    for day, (guess, real) in enumerate(zip(forecast, actual)):
        if not (np.all(np.isfinite(real)) and np.all(np.isfinite(guess))):
            continue
        problem, perfect = plan(real)
        priced = {"forecast": plan(guess)[1], "perfect": perfect, "unscheduled": unscheduled_baseline(problem)}
        for name, schedule in priced.items():
            out[name].append(float(schedule.load_profile_w(real.size) @ real) * slot_h / 1000.0)
        out["day"].append(day)
    return {name: np.array(values) for name, values in out.items()}
