"""The learning jobs on the mini-cluster: prices in -> day-ahead forecasts out, minute features in -> appliance
profiles out; and the price replay tool against the broker."""

import json

import numpy as np
import pytest
import yaml

from gridflow import kafka_io, prices_replay
from gridflow.datasets import fetch_datasets, load_prices
from gridflow.jobs import appliance_learning, forecasting
from gridflow.nilm import ApplianceLearner
from gridflow.prices_replay import price_record
from gridflow.runtime import create_env
from gridflow.scheduling.service import plan_day

from contract_cases import breaking, check_dead_letters, feature
from datastream_cases import household_power

pytestmark = pytest.mark.integration

HOUR_MS, DAY_MS = 3_600_000, 86_400_000
START_MS = 1_767_571_200_000  # 2026-01-05 00:00 UTC, a Monday; no clock change in the next 3 weeks
DAY_PRICES = [
    0.21,
    0.19,
    0.18,
    -0.01,
    0.17,
    0.18,
    0.22,
    0.29,
    0.33,
    0.30,
    0.26,
    0.24,
    0.23,
    0.22,
    0.23,
    0.25,
    0.28,
    0.35,
    0.41,
    0.38,
    0.31,
    0.27,
    0.245,
    0.2275,
]
FORECAST_FIELDS = {
    "v",
    "market",
    "model",
    "issued_ts_ms",
    "start_ts_ms",
    "slot_minutes",
    "slots",
    "currency",
    "price_per_kwh",
}


def test_periodic_prices_are_forecast_exactly_and_bad_prices_are_dead_lettered(kafka_settings):
    settings = kafka_settings.with_overrides("forecast.model=seasonal_naive")  # utc_offset 60, issue minute 720
    topics = settings.topics
    kafka_io.create_topics(settings, [topics.prices, topics.price_forecasts, topics.dead_letter])
    records = [json.dumps(price_record("NL", START_MS + h * HOUR_MS, DAY_PRICES[h % 24], 60)) for h in range(240)]
    per_mwh = json.dumps({"market": "NL", "ts_ms": START_MS + 100 * HOUR_MS, "slot_minutes": 60, "price_per_mwh": 85.0})
    records[100:100] = [per_mwh, records[50]]  # a price per MWh, and a slot redelivered out of order
    stops = {topics.prices: kafka_io.produce(settings, topics.prices, [("NL", r) for r in records])}
    env = create_env(settings)
    forecasting.build(env, settings, stop_offsets=stops)
    env.execute("forecasting-test")

    forecasts = sorted(
        (json.loads(v) for v in kafka_io.read_topic(settings, topics.price_forecasts, expected=9)),
        key=lambda f: f["start_ts_ms"],
    )
    # local day d (UTC+1) issues at its 12:00 the forecast of day d + 1 from its midnight (23:00 UTC); day 0 has
    # fewer than a season (24) of prices at noon, the last UTC day 9 issues the forecast of day 10
    assert [f["start_ts_ms"] for f in forecasts] == [START_MS + (d + 1) * DAY_MS - HOUR_MS for d in range(1, 10)]
    for f in forecasts:
        assert set(f) == FORECAST_FIELDS
        assert (f["v"], f["market"], f["model"], f["slot_minutes"], f["slots"], f["currency"]) == (
            1,
            "NL",
            "seasonal_naive",
            60,
            24,
            "EUR",
        )
        assert f["issued_ts_ms"] == f["start_ts_ms"] - 12 * HOUR_MS
        assert f["price_per_kwh"] == [DAY_PRICES[(23 + k) % 24] for k in range(24)]
    washer = {
        "name": "washer",
        "power_w": 1000.0,
        "duration_minutes": 60,
        "horizon_start_minute": 0,
        "alpha_minute": 0,
        "beta_minute": 1440,
        "comfort_margin_minutes": 0,
    }
    plan = plan_day("h-1", [washer], forecasts[-1], settings.with_overrides("scheduler.slot_minutes=60"))
    assert plan["appliances"][0]["start_ts_ms"] == START_MS + 10 * DAY_MS + 3 * HOUR_MS, "the -0.01 EUR/kWh hour"

    dead = {d["field"]: d for d in map(json.loads, kafka_io.read_topic(settings, topics.dead_letter, expected=2))}
    assert set(dead) == {"price_per_mwh", "ts_ms"}
    assert dead["price_per_mwh"]["payload"] == per_mwh
    assert "divide EUR/MWh by 1000" in dead["price_per_mwh"]["reason"]
    assert dead["ts_ms"]["payload"] == records[101]
    assert "increasing order" in dead["ts_ms"]["reason"]
    assert {d["source"] for d in dead.values()} == {f"kafka:{topics.prices}"}


def test_minute_features_become_the_learned_appliance_profiles(kafka_settings):
    settings = kafka_settings.with_overrides("preprocess.timezone=Europe/Amsterdam")
    topics, days = settings.topics, 20
    kafka_io.create_topics(settings, [topics.features, topics.appliances, topics.dead_letter])
    first_ms = START_MS - HOUR_MS  # local midnight in Amsterdam (UTC+1 in January)
    power = household_power(days)
    # a minute without readings has no feature record (the meter sent nothing)
    features = [
        json.dumps(feature("h-01", "m-01-1", first_ms + i * 60_000, float(p)))
        for i, p in enumerate(power)
        if not np.isnan(p)
    ]
    broken = breaking(json.loads(features[10]), "h-01", drop="mean_w", mistype="window_start_ms")
    features[5000:5000] = [p for _, p, _ in broken]
    stops = {
        topics.features: kafka_io.produce(
            settings,
            topics.features,
            [("h-01", f) for f in features[:5000]]
            + [(k, p) for k, p, _ in broken]
            + [("h-01", f) for f in features[5000 + len(broken) :]],
        )
    }
    env = create_env(settings)
    appliance_learning.build(env, settings, stop_offsets=stops)
    env.execute("appliance-learning-test")

    out = [json.loads(v) for v in kafka_io.read_topic(settings, topics.appliances, until_end=True)]
    last_day_end = first_ms + days * DAY_MS
    latest = sorted((r for r in out if r["updated_ts_ms"] == last_day_end), key=lambda r: r["name"])
    assert {r["household_id"] for r in out} == {"h-01"}
    pure = ApplianceLearner.from_settings(settings.nilm)
    for day in range(days):
        pure.learn_day(START_MS // DAY_MS * DAY_MS + day * DAY_MS, power[day * 1440 : (day + 1) * 1440])
    expected = [
        p.to_record("h-01", settings.scheduler.slot_minutes, settings.nilm.horizon_start_minute, last_day_end)
        for p in pure.profiles()
    ]
    assert latest == sorted(json.loads(json.dumps(expected)), key=lambda r: r["name"])
    known = [r for r in latest if abs(r["power_w"] - 2000.0) <= 200.0]
    assert len(known) == 1
    seven_pm = (19 * 60 - settings.nilm.horizon_start_minute) % 1440
    assert known[0]["alpha_minute"] <= seven_pm < known[0]["beta_minute"]
    assert known[0]["n_activations"] >= settings.nilm.min_activations

    dead = [json.loads(v) for v in kafka_io.read_topic(settings, topics.dead_letter, expected=len(broken))]
    assert len(dead) == len(broken)
    check_dead_letters(dead, broken, f"kafka:{topics.features}")


def test_prices_replay_publishes_the_dutch_prices_of_local_days(kafka_settings, tmp_path):
    settings = kafka_settings
    fetch_datasets(settings)
    config = tmp_path / "settings.yaml"
    config.write_text(yaml.safe_dump({"kafka": settings.kafka.model_dump(), "topics": settings.topics.model_dump()}))
    prices_replay.main(["--start", "2024-03-30", "--days", "2", "--config", str(config)])  # clocks go forward 03-31

    out = [json.loads(v) for v in kafka_io.read_topic(settings, settings.topics.prices, expected=47)]
    assert len(out) == 24 + 23
    data = load_prices(settings)
    first = int(np.searchsorted(data["ts_ms"], 1_711_753_200_000))  # 2024-03-30 00:00 CET = 03-29 23:00 UTC
    assert sorted(out, key=lambda r: r["ts_ms"]) == [
        {
            "v": 1,
            "market": "NL",
            "ts_ms": int(data["ts_ms"][i]),
            "slot_minutes": 60,
            "price_per_kwh": float(data["price_per_kwh"][i]),
        }
        for i in range(first, first + 47)
    ]
