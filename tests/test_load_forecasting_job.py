"""The load-forecasting job on the mini-cluster with real Kafka: real homes' daily profiles in, each household's
forecast of the next day out, equal to the same model run offline on the same days; two meters of a home
summed; a profile of another slot count dead-lettered."""

import json

import numpy as np
import pytest

from gridflow import kafka_io
from gridflow.contracts import CONTRACTS
from gridflow.datasets import fetch_datasets, load_citylearn
from gridflow.forecasting.load import GradientBoostedLoadModel, LoadDays, citylearn_days, local_midnight_ms, train
from gridflow.jobs import load_forecasting
from gridflow.runtime import create_env

pytestmark = pytest.mark.integration

DAYS = 12
FIRST = "2026-01-05"  # a Monday; no clock change in the next weeks in Europe/Paris


def day_name(n: int) -> str:
    import datetime as dt

    return str(dt.date.fromisoformat(FIRST) + dt.timedelta(days=n))


def profile(household: str, meter: str, n: int, values) -> dict:
    start = local_midnight_ms(day_name(n), "Europe/Paris")
    return {
        **CONTRACTS["profile"].example,
        "household_id": household,
        "meter_id": meter,
        "day": day_name(n),
        "day_start_ms": start,
        "emitted_ms": start + 86_400_000,
        "slots": len(values),
        "profile_w": [round(float(v), 1) for v in values],
        "profile_norm": [None] * len(values),
    }


def test_each_household_gets_tomorrows_forecast_from_its_own_days(kafka_settings, base_settings, tmp_path):
    fetch_datasets(base_settings)
    city = citylearn_days(load_citylearn(base_settings)).without_temperature()
    # the model learns from 13 homes; the job forecasts four others
    trained = LoadDays(city.load_w[4:], city.weekday, city.day_of_year)
    model_file = tmp_path / "load-model.json"
    train(trained, base_settings.load_forecast).save(model_file)
    settings = kafka_settings.with_overrides(
        "load_forecast.model=lightgbm",
        f"load_forecast.model_file={model_file}",
        "preprocess.timezone=Europe/Paris",
        "preprocess.profile_slots=24",
    )
    topics = settings.topics
    kafka_io.create_topics(settings, [topics.profiles, topics.load_forecasts, topics.dead_letter])
    homes = np.round(city.load_w[:4, 100 : 100 + DAYS], 1)  # four homes, twelve days of November
    records = []
    for n in range(DAYS):
        for h in range(4):
            if h == 2:  # two meters: 60 % and 40 % of the home
                records += [profile("h-2", "m-2a", n, homes[h, n] * 0.6), profile("h-2", "m-2b", n, homes[h, n] * 0.4)]
            else:
                records.append(profile(f"h-{h}", f"m-{h}", n, homes[h, n]))
    quarter_hourly = profile("h-1", "m-1", DAYS - 1, np.full(96, 500.0))
    records.insert(len(records) - 2, quarter_hourly)
    stops = {
        topics.profiles: kafka_io.produce(
            settings, topics.profiles, [(r["household_id"], json.dumps(r)) for r in records]
        )
    }
    env = create_env(settings)
    load_forecasting.build(env, settings, stop_offsets=stops)
    env.execute("load-forecasting-test")

    # a forecast needs min_history_days (7) days: days 6..11 of each home forecast days 7..12; h-2 twice a day
    expected = 4 * (DAYS - 6) + (DAYS - 6)
    out = [CONTRACTS["load_forecast"].decode(v) for v in kafka_io.read_topic(settings, topics.load_forecasts, expected)]
    assert len(out) == expected
    latest = {(f["household_id"], f["day"]): f for f in out}  # in topic order: h-2's second meter last
    assert sorted(latest) == sorted((f"h-{h}", day_name(n)) for h in range(4) for n in range(7, DAYS + 1))
    model = GradientBoostedLoadModel.load(model_file)
    # the reference: the model on the homes' own days laid out offline, the target day appended unknown
    for (household, day), forecast in latest.items():
        h, n = int(household[2:]), next(n for n in range(DAYS + 1) if day_name(n) == day)
        load = np.concatenate([homes[h : h + 1, :n], np.full((1, 1, 24), np.nan)], axis=1)
        dates = [np.datetime64(day_name(k)) for k in range(n + 1)]
        weekday = np.array([(int(d.astype(int)) + 3) % 7 for d in dates])
        grid = LoadDays(load, weekday=weekday, day_of_year=np.array([5 + k for k in range(n + 1)]))
        reference = model.predict(grid, n)[0]
        assert forecast["model"] == "lightgbm" and forecast["history_days"] == n
        assert forecast["start_ts_ms"] == local_midnight_ms(day, "Europe/Paris") and forecast["slot_minutes"] == 60
        assert forecast["issued_ts_ms"] == local_midnight_ms(day, "Europe/Paris")  # the end of the day before
        assert np.allclose(forecast["load_w"], reference, atol=0.051), (household, day)
    # the homes differ, and so do their forecasts
    tomorrow = [latest[(f"h-{h}", day_name(DAYS))]["energy_kwh"] for h in range(4)]
    assert len(set(tomorrow)) == 4

    (dead,) = [json.loads(v) for v in kafka_io.read_topic(settings, topics.dead_letter, expected=1)]
    assert dead["field"] == "profile_w" and "has 96 slots, this job forecasts 24" in dead["reason"]
    assert json.loads(dead["payload"]) == quarter_hourly
