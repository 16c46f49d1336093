"""Day-ahead load forecasts: the naive models by hand, no look-ahead, a global LightGBM model across homes of
different size, the error metrics by hand, and the real CityLearn homes and feeder."""

from __future__ import annotations

import json
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
    assert np.array_equal(before[:, 5], after[:, 5])
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


def test_a_households_meters_are_summed_per_day_and_old_days_leave_the_window():
    from gridflow.forecasting.load import HouseholdLoad

    history = HouseholdLoad(slots=4, keep_days=3)
    assert history.add("2026-01-10", "m-a", [100, 200, None, 400])
    assert history.add("2026-01-10", "m-b", [10, 20, 30, 40])
    assert history.add("2026-01-12", "m-a", [1, 2, 3, 4])
    days, known = history.days("2026-01-13")  # the three days before, then the target
    assert days.load_w.shape == (1, 4, 4) and known == 2
    assert days.load_w[0, 0, [0, 1, 3]].tolist() == [110.0, 220.0, 440.0] and np.isnan(days.load_w[0, 0, 2])
    assert np.isnan(days.load_w[0, 1]).all() and days.load_w[0, 2].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert days.weekday.tolist() == [5, 6, 0, 1]  # 2026-01-10 was a Saturday
    assert history.add("2026-01-14", "m-a", [5, 5, 5, 5])  # 01-10 and 01-11 leave the three-day window
    assert sorted(history.profiles) == ["2026-01-12", "2026-01-14"]
    assert not history.add("2026-01-11", "m-a", [1, 1, 1, 1]), "older than the window: not kept"
    with pytest.raises(ValueError, match="has 3 slots, this job forecasts 4"):
        history.add("2026-01-14", "m-a", [1, 2, 3])


def test_household_forecasts_by_hand_and_the_linear_model_learns_a_repeating_day():
    from gridflow.forecasting.load import HouseholdLoad, forecast_household, next_day

    shape = [300.0, 200.0, 900.0, 600.0]
    history = HouseholdLoad(slots=4, keep_days=28)
    day = "2026-03-01"
    for n in range(40):
        history.add(day, "m-a", [v * (1 + n / 100) for v in shape])  # grows 1 % a day
        if n == 32:
            week, known = forecast_household(history, "naive_week")
            assert known == 28 and week.tolist() == pytest.approx([v * 1.26 for v in shape])  # day 26 of 0..32
        linear, _ = forecast_household(history, "linear")
        day = next_day(day)
    naive, _ = forecast_household(history, "naive_day")
    assert naive.tolist() == pytest.approx([v * 1.39 for v in shape])
    assert history.learned_day == "2026-04-09"
    assert np.abs(linear - np.array(shape) * 1.40).max() < 0.1 * np.mean(shape), linear
    with pytest.raises(ValueError, match="needs a trained booster"):
        forecast_household(history, "lightgbm")


def test_a_trained_model_file_loads_back_and_refuses_other_data(tmp_path):
    from gridflow.forecasting.load import GradientBoostedLoadModel, profile_days, train

    days, _ = synthetic_fleet(n_series=4, n_days=60)
    model = train(days, Settings().load_forecast.model_copy(update={"gbm_rounds": 20}))
    path = tmp_path / "load-model.json"
    model.save(path)
    loaded = GradientBoostedLoadModel.load(path)
    plain = days.without_temperature()
    assert np.array_equal(loaded.predict(plain, 59), model.predict(plain, 59))
    loaded.check_features(plain)
    weather = GradientBoostedLoadModel(rounds=20, use_temperature=True).fit(days, range(7, 60))
    weather.save(tmp_path / "weather.json")
    with pytest.raises(ValueError, match="trained on the features .*temperature_c"):
        GradientBoostedLoadModel.load(tmp_path / "weather.json").check_features(plain)  # the job has no weather
    hourly = LoadDays(np.ones((1, 3, 48)), weekday=np.array([0, 1, 2]), day_of_year=np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="trained on 24 slots a day; this data has 48"):
        loaded.check_features(hourly)
    (tmp_path / "other.json").write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="load_forecast.model_file: .*other.json is not a load model"):
        GradientBoostedLoadModel.load(tmp_path / "other.json")
    with pytest.raises(ValueError, match="cannot read"):
        GradientBoostedLoadModel.load(tmp_path / "missing.json")
    rows = [
        ("h-1", "m-a", "2026-01-02", [1.0, 2.0]),
        ("h-1", "m-b", "2026-01-02", [10.0, None]),
        ("h-2", "m-c", "2026-01-04", [5.0, 5.0]),
        ("h-2", "m-c", "2026-01-04", [6.0, 6.0]),  # a meter's day sent again: the latest counts
    ]
    households, grid = profile_days(rows, slots=2)
    assert households == ["h-1", "h-2"] and grid.load_w.shape == (2, 3, 2)
    assert grid.load_w[0, 0, 0] == 11.0 and np.isnan(grid.load_w[0, 0, 1]) and np.isnan(grid.load_w[0, 1:]).all()
    assert grid.load_w[1, 2].tolist() == [6.0, 6.0] and grid.weekday.tolist() == [4, 5, 6]


def test_the_forecast_record_keeps_its_contract():
    from gridflow.contracts import CONTRACTS
    from gridflow.forecasting.load import load_forecast_record, local_midnight_ms

    start = local_midnight_ms("2026-03-29", "Europe/Paris")  # the spring clock change: still 00:00 CET
    assert start == 1_774_738_800_000
    record = load_forecast_record("h-7", "lightgbm", "2026-03-29", start, [400.0, np.nan, 1200.0, 200.0], 5, 28)
    assert CONTRACTS["load_forecast"].decode(json.dumps(record)) == record
    assert record["slot_minutes"] == 360 and record["load_w"] == [400.0, None, 1200.0, 200.0]
    assert record["energy_kwh"] == pytest.approx((400 + 1200 + 200) * 6 / 1000)
    assert (record["peak_w"], record["peak_ts_ms"]) == (1200.0, start + 2 * 6 * 3_600_000)
    with pytest.raises(ValueError, match="no known slot"):
        load_forecast_record("h-7", "linear", "2026-03-29", start, [np.nan] * 4, 5, 28)


def test_the_scheduler_plans_around_the_forecast_base_load_by_hand():
    from gridflow.scheduling.service import base_load_w, plan_day

    hour, noon = 3_600_000, 12 * 3_600_000
    forecast = {"start_ts_ms": 24 * hour, "slot_minutes": 360, "load_w": [3000.0, None, -500.0, 100.0]}
    # the scheduler's horizon 12:00 .. 12:00 on 60-minute slots; the forecast covers 00:00 .. 24:00 in 6 h slots
    base = base_load_w(forecast, noon, 60, 24)
    mean = (3000.0 - 500.0 + 100.0) / 3  # the unknown 06-12 slot
    # 12:00-18:00 and 18:00-24:00 are before the forecast: the forecast's same time of day stands in
    assert base.tolist() == [-500.0] * 6 + [100.0] * 6 + [3000.0] * 6 + [mean] * 6
    prices = {"start_ts_ms": noon, "slot_minutes": 60, "slots": 24, "currency": "EUR", "model": "linear",
              "price_per_kwh": [0.30] * 12 + [0.10] * 6 + [0.30] * 6}  # fmt: skip
    heater = {"name": "heater", "power_w": 4000.0, "duration_minutes": 60, "horizon_start_minute": 0,
              "alpha_minute": 12 * 60, "beta_minute": 36 * 60, "comfort_margin_minutes": 0}  # fmt: skip
    settings = Settings().with_overrides(
        "scheduler.slot_minutes=60", "scheduler.breaker_a=25", "preprocess.timezone=UTC"
    )
    blind, seen = plan_day("h-1", [heater], prices, settings), plan_day("h-1", [heater], prices, settings, forecast)
    assert (blind["appliances"][0]["start_ts_ms"] - noon) // hour == 12, "the cheap night from midnight"
    # 4,000 + 3,000 W would trip the 5,750 W breaker from midnight to 06:00: the cheapest slot left is in the
    # afternoon, where the export (-500 W) also pays part of the run
    start = (seen["appliances"][0]["start_ts_ms"] - noon) // hour
    assert start in range(0, 6) and seen["base_load_model"] is None  # the forecast record names no model
    assert seen["load_after_w"][start] == 4000.0 and max(seen["load_after_w"]) <= 5750.0
    # by hand: the heater's hour at 0.30 less the 500 W exported then, the base load 6 h at 100 W and 0.30,
    # 6 h at 3,000 W and 0.10, 6 h at the mean at 0.30
    by_hand = 3.5 * 0.30 + 6 * 0.1 * 0.30 + 6 * 3.0 * 0.10 + 6 * mean / 1000 * 0.30
    assert seen["expected_cost"] == pytest.approx(by_hand)


def test_train_load_fits_the_model_from_the_historys_profiles(tmp_path, capsys):
    """``gridflow forecast train-load`` on a history written the way the history writer writes it."""
    from gridflow.cli import main
    from gridflow.forecasting.load import GradientBoostedLoadModel
    from gridflow.history.writer import History

    days, _ = synthetic_fleet(n_series=3, n_days=40)
    rows = []
    for d in range(days.n_days):
        for h in range(days.n_series):
            day = f"2026-01-{1 + d:02d}" if d < 31 else f"2026-02-{d - 30:02d}"
            rows.append({"household_id": f"h-{h}", "meter_id": f"m-{h}", "day": day,
                         "profile_w": days.load_w[h, d].tolist(), "_partition": 0, "_offset": len(rows),
                         "_key": f"h-{h}", "_kafka_ms": len(rows)})  # fmt: skip
    root = tmp_path / "history"
    History(str(root)).write("profiles", "2026-02-10", 0, rows)
    out = tmp_path / "load-model.json"
    overrides = ["--set", f"history.path={root}", "--set", "load_forecast.gbm_rounds=20"]
    main(["forecast", "train-load", "--out", str(out), *overrides])
    assert "3 households, 3 series x 40 days of 24 slots" in capsys.readouterr().out
    model = GradientBoostedLoadModel.load(out)
    assert model.slots == 24 and model.booster.num_trees() == 20
    with pytest.raises(SystemExit, match="holds no profiles yet .*gridflow history write.*--citylearn"):
        main(["forecast", "train-load", "--out", str(out), "--set", f"history.path={tmp_path / 'empty'}"])
