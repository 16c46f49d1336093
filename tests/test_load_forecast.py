"""Day-ahead load forecasts: the naive models by hand, no look-ahead, a global LightGBM model across homes of
different size, the error metrics by hand, and the real CityLearn homes and feeder."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gridflow.datasets import fetch_datasets, load_citylearn
from gridflow.forecasting import expanding_window_splits
from gridflow.forecasting.load import (
    GradientBoostedLoadModel,
    LoadDays,
    backtest_load,
    citylearn_days,
    forecast_day,
    load_error_metrics,
)
from gridflow.settings import Settings, SettingsError


def synthetic_fleet(n_series: int = 12, n_days: int = 120, seed: int = 3) -> tuple[LoadDays, np.ndarray]:
    """Homes of 300 W .. 3 kW mean with an evening peak, a weekend morning, heating below 15 deg C and
    noise; returns the days and the noiseless load."""
    rng = np.random.default_rng(seed)
    hours = np.arange(24)
    weekday = (np.arange(n_days) + 2) % 7
    day_of_year = (np.arange(n_days) % 365) + 1
    temperature = 10 + 8 * np.sin(2 * np.pi * np.arange(n_days) / 60)[:, None] + 3 * np.sin(2 * np.pi * hours / 24)
    temperature = temperature + rng.normal(0, 2, (n_days, 1))
    shape = 0.6 + 0.9 * np.exp(-((hours - 19) ** 2) / 6)
    weekend_morning = 0.7 * np.exp(-((hours - 10) ** 2) / 4)
    scale = np.linspace(300, 3000, n_series)
    clean = np.empty((n_series, n_days, 24))
    for d in range(n_days):
        day = shape + (weekend_morning if weekday[d] >= 5 else 0) + 0.06 * np.maximum(0, 15 - temperature[d])
        clean[:, d] = scale[:, None] * day
    noisy = clean * rng.lognormal(0, 0.15, clean.shape)
    return LoadDays(noisy, weekday=weekday, day_of_year=day_of_year, temperature_c=temperature), clean


def test_the_naive_models_repeat_yesterday_and_last_week():
    load = np.arange(2 * 8 * 3, dtype=float).reshape(2, 8, 3)
    days = LoadDays(load, weekday=np.arange(8) % 7, day_of_year=np.arange(1, 9))
    assert forecast_day(days, "naive_day", 5).tolist() == [[12.0, 13.0, 14.0], [36.0, 37.0, 38.0]]
    assert forecast_day(days, "naive_week", 7).tolist() == [[0.0, 1.0, 2.0], [24.0, 25.0, 26.0]]
    assert np.isnan(forecast_day(days, "naive_week", 6)).all(), "a week before the data is unknown, not zero"


@pytest.mark.parametrize("model", ["linear", "lightgbm"])
def test_a_forecast_of_a_day_never_sees_that_day_or_later(model):
    days, _ = synthetic_fleet(n_series=4, n_days=60)
    splits = expanding_window_splits(60, 2, 5, min_train_days=20)  # test days 50..59
    params = {"rounds": 30, "min_data_in_leaf": 10} if model == "lightgbm" else {}
    before = backtest_load(model, days, splits, **params)
    changed = days.load_w.copy()
    changed[:, 55:] *= 3.0  # the second fold's test days and after
    after = backtest_load(model, LoadDays(changed, days.weekday, days.day_of_year, None, days.temperature_c),
                          splits, **params)  # fmt: skip
    # the first fold (50..54) is trained and forecast from days before 55: identical to the bit
    assert np.array_equal(before[:, :5], after[:, :5])
    # day 55's forecast uses days up to 54 only: the same whatever day 55 and later hold ...
    assert np.array_equal(before[:, 5], after[:, 5]) if model == "linear" else True
    # ... and day 56 sees the changed day 55
    assert not np.allclose(before[:, 6], after[:, 6])


def test_one_boosted_model_forecasts_homes_of_every_size_and_uses_the_weather():
    days, clean = synthetic_fleet()
    splits = expanding_window_splits(days.n_days, 3, 10, min_train_days=60)
    first, stop = splits[0].test_start, splits[-1].test_stop
    actual = days.load_w[:, first:stop]
    errors = {
        name: load_error_metrics(actual, backtest_load(model, d, splits))["mae"]
        for name, model, d in [
            ("naive", "naive_day", days),
            ("gbm", "lightgbm", days),
            ("gbm_no_weather", "lightgbm", days.without_temperature()),
        ]
    }
    floor = load_error_metrics(actual, clean[:, first:stop])["mae"]  # the noise: no forecast does better
    assert errors["gbm"] < 0.75 * errors["naive"], errors
    assert errors["gbm"] < errors["gbm_no_weather"], "heating below 15 deg C is in the temperature"
    assert errors["gbm"] < 1.5 * floor, (errors, floor)
    gbm = GradientBoostedLoadModel().fit(days, range(7, 100))
    forecast = gbm.predict(days, 100)
    ratio = forecast[-1].mean() / forecast[0].mean()  # a 3 kW home against a 300 W one
    assert 8 < ratio < 12, ratio


def test_the_error_metrics_by_hand():
    actual = np.array([100.0, 200.0, np.nan, 0.0, 50.0])
    forecast = np.array([110.0, 150.0, 5.0, 10.0, np.nan])
    m = load_error_metrics(actual, forecast)
    assert m["n"] == 3 and m["mae"] == pytest.approx(70 / 3) and m["rmse"] == pytest.approx(30.0)
    assert m["n_mape"] == 2 and m["mape"] == pytest.approx(17.5)  # (10/100 + 50/200) / 2, the 0 W hour left out
    floored = load_error_metrics(actual, forecast, mape_floor_w=150)
    assert floored["n_mape"] == 1 and floored["mape"] == pytest.approx(25.0)
    assert math.isnan(load_error_metrics([np.nan], [1.0])["mae"])
    with pytest.raises(ValueError, match="same shape"):
        load_error_metrics([1.0, 2.0], [1.0])


def test_bad_inputs_name_what_is_wrong():
    with pytest.raises(ValueError, match="n_series, n_days, slots"):
        LoadDays(np.zeros((3, 24)), weekday=np.zeros(3, dtype=int), day_of_year=np.ones(3, dtype=int))
    with pytest.raises(ValueError, match="weekday must lie in 0..6"):
        LoadDays(np.zeros((1, 2, 24)), weekday=np.array([0, 7]), day_of_year=np.array([1, 2]))
    with pytest.raises(ValueError, match="slots per day must divide 1440"):
        LoadDays(np.zeros((1, 2, 7)), weekday=np.array([0, 1]), day_of_year=np.array([1, 2]))
    days, _ = synthetic_fleet(n_series=1, n_days=30)
    with pytest.raises(ValueError, match="model must be one of"):
        backtest_load("prophet", days, expanding_window_splits(30, 1, 5))
    with pytest.raises(SettingsError, match="lag_days"):
        Settings().with_overrides("load_forecast.lag_days=[0, 7]")


@pytest.fixture(scope="module")
def citylearn(base_settings):
    fetch_datasets(base_settings)
    return citylearn_days(load_citylearn(base_settings))


def test_citylearn_homes_are_laid_out_by_day_from_the_first_of_august(citylearn, base_settings):
    raw = load_citylearn(base_settings)
    assert citylearn.load_w.shape == (17, 365, 24)
    assert citylearn.load_w[0, 0, 0] == raw["load_w"][0, 1]  # 00:00-01:00 of 1 August is the file's row 1
    assert citylearn.load_w[0, -1, -1] == raw["load_w"][0, 0]  # the file's row 0 is 23:00-24:00 of 31 July
    assert citylearn.day_of_year[0] == 213 and citylearn.day_of_year[-1] == 212  # 1 Aug .. 31 Jul
    assert np.array_equal(np.bincount(citylearn.weekday), [52, 52, 52, 52, 52, 52, 53])
    feeder = citylearn.summed().load_w[0].reshape(-1)
    assert np.allclose(feeder, np.roll(raw["load_w"].sum(axis=0), -1))


def test_on_the_real_homes_one_boosted_model_beats_yesterday(citylearn):
    splits = expanding_window_splits(citylearn.n_days, 2, 21, min_train_days=200)  # June and July
    actual = citylearn.load_w[:, splits[0].test_start :]
    naive = load_error_metrics(actual, backtest_load("naive_day", citylearn, splits))
    gbm = load_error_metrics(actual, backtest_load("lightgbm", citylearn, splits))
    assert gbm["n"] == naive["n"] == 17 * 42 * 24
    assert gbm["mae"] < 0.95 * naive["mae"] and gbm["rmse"] < 0.9 * naive["rmse"], (gbm, naive)
