"""The scheduling job on the mini-cluster: learned appliances and a price forecast in, schedules out."""

import json

import pytest

from gridflow import kafka_io
from gridflow.jobs import scheduling
from gridflow.runtime import create_env
from gridflow.scheduling.service import plan_day

from gridflow.contracts import CONTRACTS

from contract_cases import breaking, check_dead_letters

pytestmark = pytest.mark.integration

START_MS = 1_768_478_400_000  # 2026-01-15 12:00 UTC


def appliance(household: str, name: str, power_w: float, alpha_minute: int, duration_minutes: int) -> dict:
    return {
        "v": 1,
        "household_id": household,
        "updated_ts_ms": START_MS,
        "horizon_start_minute": 720,
        "slot_minutes": 15,
        "name": name,
        "power_w": power_w,
        "duration_minutes": duration_minutes,
        "alpha_minute": alpha_minute,
        "beta_minute": alpha_minute + 600,
        "comfort_margin_minutes": 30,
        "n_activations": 40,
        "activations_per_day": 1.0,
    }


def test_each_household_gets_the_schedule_of_all_its_appliances(kafka_settings):
    settings = kafka_settings
    topics = settings.topics
    kafka_io.create_topics(
        settings,
        [
            topics.appliances,
            topics.price_forecasts,
            topics.load_forecasts,
            topics.home_energy,
            topics.schedules,
            topics.dead_letter,
        ],
    )
    households = ["h-01", "h-02", "h-03"]
    appliances = {
        h: [appliance(h, "washer", 1000.0 + 100 * i, 360 + 30 * i, 90), appliance(h, "dishwasher", 1800.0, 480, 120)]
        for i, h in enumerate(households)
    }
    prices = [0.30] * 12 + [0.12] * 6 + [0.25] * 6  # cheap from midnight to 06:00
    forecast = {
        "v": 1,
        "market": "NL",
        "model": "linear",
        "issued_ts_ms": START_MS - 3_600_000,
        "start_ts_ms": START_MS,
        "slot_minutes": 60,
        "slots": 24,
        "currency": "EUR",
        "price_per_kwh": prices,
    }
    broken_appliance = {k: v for k, v in appliance("h-04", "dryer", 2000.0, 360, 60).items() if k != "power_w"}
    # h-05's two 8 kW loads must each run through the whole of the same window: together they trip the 9.2 kW
    # breaker, so the second cannot be planned (a planning failure: a dead letter, never a crashed job)
    crowded = [appliance("h-05", "ev", 8000.0, 360, 600), appliance("h-05", "heater", 8000.0, 360, 600)]
    bad_appliances = [
        ("x", "not json"),
        ("x", json.dumps({"name": "washer", "power_w": 500.0})),
        ("h-04", json.dumps(broken_appliance)),
    ]
    bad_forecasts = [
        ("NL", json.dumps({**forecast, "price_per_kwh": []})),
        ("NL", json.dumps({k: v for k, v in forecast.items() if k != "start_ts_ms"})),
    ]
    broken = breaking(appliances["h-01"][0], "h-01", drop="duration_minutes", mistype="power_w") + breaking(
        forecast, "NL", drop="currency", mistype="slots", key_field="market", intruder="DE"
    )
    stops = {
        topics.appliances: kafka_io.produce(
            settings,
            topics.appliances,
            bad_appliances[:2]
            + [(h, json.dumps(a)) for h in households for a in appliances[h]]
            + [("h-05", json.dumps(a)) for a in crowded]
            + bad_appliances[2:]
            + [(k, p) for k, p, _ in broken[:4]],
        ),
        topics.price_forecasts: kafka_io.produce(
            settings,
            topics.price_forecasts,
            [bad_forecasts[0], ("NL", json.dumps(forecast)), bad_forecasts[1]] + [(k, p) for k, p, _ in broken[4:]],
        ),
    }
    # h-03's own load tomorrow: 8 kW from midnight to 03:00 (a heat pump's night), 300 W otherwise
    breaker_w = settings.scheduler.breaker_a * settings.scheduler.breaker_v
    midnight = START_MS + 12 * 3_600_000
    night = [8000.0 if hour < 3 else 300.0 for hour in range(24)]
    load_forecast = {
        **CONTRACTS["load_forecast"].example,
        "household_id": "h-03",
        "start_ts_ms": midnight,
        "slot_minutes": 60,
        "slots": 24,
        "load_w": night,
    }
    stops[topics.load_forecasts] = kafka_io.produce(
        settings, topics.load_forecasts, [("h-03", json.dumps(load_forecast))]
    )
    stops[topics.home_energy] = {p: 0 for p in range(settings.kafka.partitions)}  # none: appliances only
    env = create_env(settings)
    scheduling.build(env, settings, stop_offsets=stops)
    env.execute("scheduling-test")

    keyed = kafka_io.read_records(settings, topics.schedules, until_end=True)
    assert keyed and all(key.decode() == json.loads(value)["household_id"] for key, value in keyed), (
        "every schedule is keyed by its household"
    )
    out = [json.loads(value) for _, value in keyed]
    assert all("error" not in s and s["household_id"] in households + ["h-05"] for s in out), (
        "only schedules, never errors"
    )
    complete = {s["household_id"]: s for s in out if len(s.get("appliances", [])) == 2}
    assert set(complete) == set(households)
    dead_records = kafka_io.read_records(settings, topics.dead_letter, expected=6 + len(broken))
    appliance_source, forecast_source = f"kafka:{topics.appliances}", f"kafka:{topics.price_forecasts}"
    # which record meets the full breaker (the heater, or the forecast when both appliances came first) depends
    # on arrival order; either way it is one dead letter naming the household and the breaker, and no crash
    (infeasible,) = [json.loads(v) for _, v in dead_records if json.loads(v)["reason"].startswith("cannot schedule")]
    assert infeasible["reason"].startswith("cannot schedule h-05") and "breaker" in infeasible["reason"], infeasible
    dead_records = [(k, v) for k, v in dead_records if json.loads(v) != infeasible]
    assert sorted(key.decode() for key, _ in dead_records) == sorted(
        ["NL", "NL", "h-04", appliance_source, appliance_source]
        + ["h-01", "h-01", "h-01", "h-01", "NL", "NL", "NL", "NL"]
    ), "keyed like their record, else by source"
    dead = [json.loads(v) for _, v in dead_records]
    check_dead_letters(dead, broken[:4], appliance_source)
    check_dead_letters(dead, broken[4:], forecast_source)
    reasons = sorted(
        (d["payload"], d["field"], d["reason"].split(":")[0], d["source"])
        for d in dead
        if d["payload"] not in {p for _, p, _ in broken}
    )
    assert reasons == sorted(
        [
            ("not json", "", "not JSON", appliance_source),
            (bad_appliances[1][1], "household_id", "is required", appliance_source),
            (bad_appliances[2][1], "power_w", "is required", appliance_source),
            (
                bad_forecasts[0][1],
                "price_per_kwh",
                "list should have at least 1 item after validation, not 0, got []",
                forecast_source,
            ),
            (bad_forecasts[1][1], "start_ts_ms", "is required", forecast_source),
        ]
    )
    for h in households:
        with_base = load_forecast if h == "h-03" else None
        assert complete[h] == plan_day(h, appliances[h], forecast, settings, with_base)
        assert complete[h]["savings"] > 0
        assert all(a["start_ts_ms"] >= START_MS + 12 * 3_600_000 for a in complete[h]["appliances"]), (
            "both loads move into the cheap night hours"
        )
    # h-03's runs fit under the breaker together with its forecast night load: not before 03:00 when that
    # would overload it, and the schedule's load curve carries the base load
    h03 = complete["h-03"]
    assert h03["base_load_model"] == "lightgbm" and "base_load_model" not in complete["h-01"]
    slot_ms = h03["slot_minutes"] * 60_000
    for run in h03["appliances"]:
        for t in range(run["start_ts_ms"], run["end_ts_ms"], slot_ms):
            assert night[(t - midnight) // 3_600_000 % 24] + run["power_w"] <= breaker_w, (run, t)
    assert max(h03["load_after_w"]) <= breaker_w and min(h03["load_after_w"]) >= 300.0
    blind = plan_day("h-03", appliances["h-03"], forecast, settings)  # the same day, the base load not known
    assert h03["appliances"] != blind["appliances"], "the base load moved a run"


def test_a_schedule_does_not_depend_on_the_order_the_appliances_arrived_in(base_settings):
    """The job keeps a household's appliances in Flink map state, whose iteration order is not the arrival
    order; the schedule must come out the same whatever the order."""
    appliances = [
        appliance("h-01", name, 1000.0 + 150 * i, 360 + 45 * i, 60 + 30 * i)
        for i, name in enumerate(["washer", "dishwasher", "dryer", "boiler"])
    ]
    forecast = {
        "v": 1,
        "market": "NL",
        "model": "linear",
        "issued_ts_ms": START_MS - 3_600_000,
        "start_ts_ms": START_MS,
        "slot_minutes": 60,
        "slots": 24,
        "currency": "EUR",
        "price_per_kwh": [0.30] * 12 + [0.12] * 6 + [0.25] * 6,
    }
    plans = [
        plan_day("h-01", order, forecast, base_settings)
        for order in (appliances, appliances[::-1], appliances[1:] + appliances[:1])
    ]
    assert plans[0] == plans[1] == plans[2]
    assert [a["name"] for a in plans[0]["appliances"]] == sorted(a["name"] for a in appliances)
