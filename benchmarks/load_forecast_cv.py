"""Day-ahead load forecasts of real households and a feeder: errors per model, expanding-window CV.

Data (run ``gridflow data fetch`` first):

* households: the 17 CityLearn 2022 homes (equipment load, hourly, one year from 1 August) and the UCI
  household near Paris (hourly means of its minute readings, 2006-12-17 .. 2010-11-25; an hour with fewer
  than 45 known minutes is unknown);
* feeder: the 17 CityLearn homes summed, as one series.

Forecasts are issued at 00:00 for the 24 hours of the day. Cross-validation: expanding window,
``--folds`` consecutive test folds of ``--fold-days`` days at the end of each series; ``lightgbm`` is
retrained at every fold on every earlier day, ``linear`` learns online (each day after forecasting it).
``+ day of year`` adds the season's position (off by default); ``+ temperature`` adds CityLearn's outdoor temperature of the forecast day: the observed value,
i.e. a perfect weather forecast, so it bounds what a real forecast can add. Every model is scored on the
same hours (load known, every model forecast). MAE and RMSE in W, MAPE in % over the hours whose load is
above ``--mape-floor-w`` (100 W: CityLearn homes have hours near 0 W, where a percentage error is
meaningless); household rows are means over homes of each home's error.

    python benchmarks/load_forecast_cv.py [--folds 5] [--fold-days 30] [--uci-fold-days 73] [--mape-floor-w 100]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from gridflow.datasets import load_citylearn, load_uci_household
from gridflow.forecasting import expanding_window_splits
from gridflow.forecasting.load import LoadDays, backtest_load, citylearn_days, load_error_metrics
from gridflow.settings import load_settings

MODELS = {
    "naive_day": ("seasonal naive (day)", "naive_day", {}),
    "naive_week": ("seasonal naive (week)", "naive_week", {}),
    "linear": ("river linear regression", "linear", {}),
    "lightgbm": ("LightGBM", "lightgbm", {"use_temperature": False}),
    "lightgbm_doy": ("LightGBM + day of year", "lightgbm", {"use_temperature": False, "use_day_of_year": True}),
    "lightgbm_t": ("LightGBM + temperature", "lightgbm", {"use_temperature": True}),
}


def uci_days(data: dict[str, np.ndarray]) -> LoadDays:
    """The UCI household as hourly :class:`LoadDays` over its whole days."""
    ts, power = data["ts_ms"], data["power_w"]
    first = (ts[0] // 86_400_000 + 1) * 86_400_000  # the first midnight
    last = (ts[-1] // 86_400_000) * 86_400_000
    keep = (ts >= first) & (ts < last)
    minute = (ts[keep] - first) // 60_000
    n_days = int((last - first) // 86_400_000)
    grid = np.full(n_days * 1440, np.nan)
    grid[minute] = power[keep]
    hours = grid.reshape(n_days * 24, 60)
    known = np.isfinite(hours).sum(axis=1)
    hourly = np.where(known >= 45, np.nansum(hours, axis=1) / np.maximum(known, 1), np.nan)
    days = (first // 86_400_000 + np.arange(n_days)).astype("datetime64[D]")
    weekday = ((days.astype(np.int64) + 3) % 7).astype(np.int64)  # 1970-01-01 was a Thursday
    day_of_year = (days - days.astype("datetime64[Y]")).astype(np.int64) + 1
    return LoadDays(hourly.reshape(1, n_days, 24), weekday=weekday, day_of_year=day_of_year)


def evaluate(days: LoadDays, folds: int, fold_days: int, models: dict, mape_floor_w: float) -> dict[str, dict]:
    """Every model's errors over the same hours: those whose load is known and that every model forecast."""
    splits = expanding_window_splits(days.n_days, folds, fold_days, min_train_days=28)
    first, stop = splits[0].test_start, splits[-1].test_stop
    actual = days.load_w[:, first:stop]
    forecasts, seconds = {}, {}
    for key, (_, model, params) in models.items():
        if params.get("use_temperature") and days.temperature_c is None:
            continue
        started = time.perf_counter()
        forecasts[key] = backtest_load(model, days, splits, **params)
        seconds[key] = time.perf_counter() - started
    common = np.logical_and.reduce([np.isfinite(f) for f in forecasts.values()])
    results = {}
    for key, forecast in forecasts.items():
        masked = np.where(common, actual, np.nan)
        per_series = [load_error_metrics(masked[i], forecast[i], mape_floor_w) for i in range(days.n_series)]
        results[key] = {m: float(np.nanmean([row[m] for row in per_series])) for m in ("mae", "rmse", "mape")}
        results[key]["seconds"] = seconds[key]
        results[key]["n"] = sum(row["n"] for row in per_series)
    return results


def print_table(title: str, results: dict[str, dict], models: dict) -> None:
    print(f"\n{title}")
    print(f"{'model':<26}{'MAE W':>9}{'RMSE W':>9}{'MAPE %':>9}{'vs naive day':>14}{'hours':>9}{'time s':>9}")
    base = results["naive_day"]["mae"]
    for key, row in results.items():
        gain = (1 - row["mae"] / base) * 100
        print(
            f"{models[key][0]:<26}{row['mae']:>9.1f}{row['rmse']:>9.1f}{row['mape']:>9.1f}{gain:>+13.1f}%"
            f"{row['n']:>9}{row['seconds']:>9.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--fold-days", type=int, default=30, help="test days per fold, CityLearn (one year)")
    parser.add_argument("--uci-fold-days", type=int, default=73, help="test days per fold, UCI (four years)")
    parser.add_argument("--mape-floor-w", type=float, default=100.0, help="MAPE counts hours above this load")
    args = parser.parse_args()
    settings = load_settings()
    city = citylearn_days(load_citylearn(settings))
    uci = uci_days(load_uci_household(settings))
    fd, ud = args.fold_days, args.uci_fold_days
    tables = [
        (f"CityLearn homes (17 households, {args.folds} x {fd} test days)", city, fd),
        (f"CityLearn feeder (17 homes summed, {args.folds} x {fd} test days)", city.summed(), fd),
        (f"UCI household (1 household, {args.folds} x {ud} test days)", uci, ud),
    ]
    for title, days, fold_days in tables:
        print_table(title, evaluate(days, args.folds, fold_days, MODELS, args.mape_floor_w), MODELS)
    # the feeder forecast bottom-up: the sum of the homes' LightGBM forecasts, against the direct model
    splits = expanding_window_splits(city.n_days, args.folds, fd, min_train_days=28)
    actual = city.summed().load_w[:, splits[0].test_start : splits[-1].test_stop]
    bottom_up = backtest_load("lightgbm", city, splits, use_temperature=False).sum(axis=0, keepdims=True)
    direct = backtest_load("lightgbm", city.summed(), splits, use_temperature=False)
    print(
        f"\nCityLearn feeder, LightGBM: direct MAE {load_error_metrics(actual, direct)['mae']:.1f} W, "
        f"sum of the homes' forecasts MAE {load_error_metrics(actual, bottom_up)['mae']:.1f} W"
    )


if __name__ == "__main__":
    main()
