"""Recommendations: the pure rules, and the job on the mini-cluster (schedules, profiles, alerts in)."""

import json

import pytest

from gridflow import kafka_io, recommendations
from gridflow.jobs import recommendations as job
from gridflow.runtime import create_env
from gridflow.contracts import CONTRACTS
from gridflow.settings import Settings

from contract_cases import breaking, check_dead_letters

H = 3_600_000


def schedule(household: str, usual_h: int, planned_h: int, power_w: float = 1000.0) -> dict:
    return {
        "v": 1,
        "household_id": household,
        "start_ts_ms": 0,
        "slot_minutes": 60,
        "slots": 24,
        "currency": "EUR",
        "price_per_kwh": [0.1] * 6 + [0.3] * 12 + [0.5] * 6,
        "appliances": [
            {
                "name": "washing_machine",
                "power_w": power_w,
                "start_ts_ms": planned_h * H,
                "end_ts_ms": (planned_h + 2) * H,
                "usual_start_ts_ms": usual_h * H,
                "earliest_start_ts_ms": planned_h * H,
                "latest_start_ts_ms": (planned_h + 3) * H,
                "shift_minutes": (planned_h - usual_h) * 60,
            }
        ],
        "algorithm": "heap",
        "forecast_model": "linear",
        "expected_cost": 0.2,
        "unscheduled_cost": 0.6,
        "savings": 0.4,
        "savings_percent": 66.7,
        "par_before": 3.0,
        "par_after": 3.0,
        "load_before_w": [0.0] * 24,
        "load_after_w": [0.0] * 24,
    }


def test_shift_saving_is_the_price_difference_of_the_moved_energy():
    (rec,) = recommendations.from_schedule(schedule("h-1", 19, 2), "UTC", now_ms=1)
    assert rec["saving_per_day"] == pytest.approx(2 * 1.0 * (0.5 - 0.1))
    assert rec["text"] == "Run the washing machine at 02:00 instead of 19:00: saves 0.80 EUR a day."
    assert recommendations.from_schedule(schedule("h-1", 19, 19), "UTC", now_ms=1) == []


def test_times_are_local():
    (rec,) = recommendations.from_schedule(schedule("h-1", 19, 2), "Europe/Paris", now_ms=1)
    assert "at 03:00 instead of 20:00" in rec["text"]


def test_off_peak_advice_only_above_the_share_and_priced_by_the_tariff():
    tariff = Settings().tariff  # 0.38 EUR in 17-21 h, cheapest 0.18 EUR at night
    busy = {"household_id": "h-1", "peak_share": 0.45, "energy_kwh": 12.0}
    (rec,) = recommendations.from_profile(busy, tariff, [17, 18, 19, 20], now_ms=1)
    assert rec["kind"] == "off_peak" and rec["saving_per_day"] == pytest.approx(0.38 - 0.18)
    assert rec["text"].startswith("45% of your electricity is used between 17:00 and 21:00")
    assert recommendations.from_profile({**busy, "peak_share": 0.2}, tariff, [17, 18, 19, 20], now_ms=1) == []


def test_tomorrows_forecast_says_how_much_when_and_what_moving_it_is_worth():
    tariff = Settings().tariff  # 0.38 EUR in 17-21 h, cheapest 0.18 EUR at night
    load = [200.0] * 17 + [1500.0] * 4 + [200.0] * 3  # local hours in UTC: 1.5 kW from 17:00 to 21:00
    forecast = {**CONTRACTS["load_forecast"].example, "household_id": "h-4", "start_ts_ms": 0, "slot_minutes": 60,
                "slots": 24, "load_w": load, "energy_kwh": 10.0, "peak_w": 1500.0, "peak_ts_ms": 17 * H}  # fmt: skip
    (rec,) = recommendations.from_load_forecast(forecast, tariff, [17, 18, 19, 20], "UTC", now_ms=1)
    assert rec["text"] == (
        "Tomorrow your home is expected to use 10.0 kWh, at most 1.5 kW around 17:00; 60% of it between 17:00 and "
        "21:00: each kWh moved to the cheapest hours saves 0.20 EUR."
    )  # 4 h x 1.5 kW = 6 of the 10 kWh
    assert rec["kind"] == "forecast" and rec["saving_per_day"] == 0.0 and rec["peak_share"] == pytest.approx(0.6)
    assert CONTRACTS["recommendation"].decode(json.dumps(rec)) == rec
    assert recommendations.from_load_forecast({**forecast, "energy_kwh": 0.0}, tariff, [17], "UTC", now_ms=1) == []


def test_an_alert_says_what_was_seen_and_a_meter_back_online_says_so_plainly():
    dropout = {**CONTRACTS["alert"].example, "type": "dropout", "severity": "high", "action": "Check the meter."}
    (rec,) = recommendations.from_alert(dropout, "EUR", now_ms=1)
    assert rec["kind"] == "alert" and rec["text"] == "Alert (high): dropout detected. Check the meter."
    back = {**dropout, "type": "back_online", "severity": "low", "evidence": {"silent_minutes": 32}}
    (rec,) = recommendations.from_alert(back, "EUR", now_ms=1)
    assert rec["text"] == "Your meter is sending readings again after 32 minutes without any."
    assert rec["alert_type"] == "back_online" and rec["saving_per_day"] == 0.0


@pytest.mark.integration
def test_job_turns_schedules_profiles_and_alerts_into_recommendations_once(kafka_settings):
    settings = kafka_settings.with_overrides("balancing.feeder_capacity_kw=1.5")  # two 1 kW runs overload it
    t = settings.topics
    kafka_io.create_topics(
        settings, [t.schedules, t.profiles, t.alerts, t.load_forecasts, t.recommendations, t.dead_letter]
    )
    alert = {
        **CONTRACTS["alert"].example,
        "household_id": "h-2",
        "type": "stuck",
        "severity": "high",
        "ts_ms": 5,
        "action": "The meter repeats the same value: please restart it.",
    }
    profile = {**CONTRACTS["profile"].example, "household_id": "h-1", "peak_share": 0.5, "energy_kwh": 9.0}
    broken = (
        breaking(schedule("h-3", 20, 2), "h-3", drop="price_per_kwh", mistype="slot_minutes")
        + breaking(profile, "h-1", drop="day_start_ms", mistype="peak_share")
        + breaking(alert, "h-2", drop="type", mistype="ts_ms")
    )
    stops = {
        t.schedules: kafka_io.produce(
            settings,
            t.schedules,
            [("h-1", json.dumps(schedule("h-1", 19, 2)))] * 2
            + [("h-3", json.dumps(schedule("h-3", 20, 2)))]
            + [(k, p) for k, p, _ in broken[:4]],
        ),
        t.profiles: kafka_io.produce(
            settings, t.profiles, [("h-1", json.dumps(profile))] + [(k, p) for k, p, _ in broken[4:8]]
        ),
        t.alerts: kafka_io.produce(
            settings, t.alerts, [("h-2", json.dumps(alert)), (None, "not json")] + [(k, p) for k, p, _ in broken[8:]]
        ),
        t.load_forecasts: {p: 0 for p in range(settings.kafka.partitions)},  # none: yesterday's load only
    }
    env = create_env(settings)
    job.build(env, settings, stop_offsets=stops)
    env.execute("recommendations-test")
    out = [json.loads(v) for v in kafka_io.read_topic(settings, t.recommendations, until_end=True)]
    kinds = sorted((r["household_id"], r["kind"]) for r in out)
    assert kinds == [
        ("h-1", "grid_request"),
        ("h-1", "off_peak"),
        ("h-1", "shift"),
        ("h-2", "alert"),
        ("h-3", "shift"),
    ], "the repeated schedule is sent once"
    grid = next(r for r in out if r["kind"] == "grid_request")
    assert grid["from_ts_ms"] == 2 * H and 4 * H <= grid["to_ts_ms"] <= 5 * H, "moved after h-3's run, in its window"
    assert grid["text"] == (
        "Your local grid is busy then: please run the washing machine at "
        f"{grid['to_ts_ms'] // H:02d}:00 instead of 02:00."
    )
    assert next(r for r in out if r["kind"] == "alert")["text"].endswith("please restart it.")
    dead = [json.loads(v) for v in kafka_io.read_topic(settings, t.dead_letter, until_end=True)]
    assert len(dead) == 1 + len(broken)
    check_dead_letters(dead, broken[:4], f"kafka:{t.schedules}")
    check_dead_letters(dead, broken[4:8], f"kafka:{t.profiles}")
    check_dead_letters(dead, broken[8:], f"kafka:{t.alerts}")
    (not_json,) = [d for d in dead if d["payload"] == "not json"]
    assert not_json["reason"].startswith("not JSON") and not_json["source"] == f"kafka:{t.alerts}"


@pytest.mark.integration
def test_the_feeder_balancer_plans_on_tomorrows_forecast_load(kafka_settings):
    """h-1's 1 kW run fits the 1.5 kW feeder on its own; h-9 has no schedule, but its forecast says it will
    draw 1 kW in the same hours: the run is asked to move, whichever of the two records the job reads first."""
    settings = kafka_settings.with_overrides("balancing.feeder_capacity_kw=1.5")
    t = settings.topics
    kafka_io.create_topics(
        settings, [t.schedules, t.profiles, t.alerts, t.load_forecasts, t.recommendations, t.dead_letter]
    )
    busy = [1000.0 if 2 <= hour < 4 else 100.0 for hour in range(24)]
    forecast = {**CONTRACTS["load_forecast"].example, "household_id": "h-9", "start_ts_ms": 0, "slot_minutes": 60,
                "slots": 24, "load_w": busy, "energy_kwh": 4.2, "peak_w": 1000.0, "peak_ts_ms": 2 * H}  # fmt: skip
    empty = {p: 0 for p in range(settings.kafka.partitions)}
    stops = {
        t.schedules: kafka_io.produce(settings, t.schedules, [("h-1", json.dumps(schedule("h-1", 2, 2)))]),
        t.load_forecasts: kafka_io.produce(settings, t.load_forecasts, [("h-9", json.dumps(forecast))]),
        t.profiles: empty,
        t.alerts: empty,
    }
    env = create_env(settings)
    job.build(env, settings, stop_offsets=stops)
    env.execute("recommendations-forecast-test")
    out = [json.loads(v) for v in kafka_io.read_topic(settings, t.recommendations, until_end=True)]
    (grid,) = [r for r in out if r["kind"] == "grid_request"]
    assert grid["household_id"] == "h-1" and grid["from_ts_ms"] == 2 * H
    assert grid["to_ts_ms"] in (4 * H, 5 * H), "after h-9's two busy hours, within the run's window"
    # no shift advice (the run is at its usual time); h-9 hears about its day tomorrow
    (tomorrow,) = [r for r in out if r["kind"] != "grid_request"]
    assert tomorrow["kind"] == "forecast" and tomorrow["household_id"] == "h-9" and len(out) == 2
