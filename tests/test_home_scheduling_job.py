"""Homes with PV, a battery and an EV through the scheduling job on the mini-cluster, to schedules the
downlink sends as commands; and the record-level planner (``plan_home_day``) they come from.

Every figure asserted is recomputed here from the schedule record's own fields: the energy balance of each
slot, the battery's SoC from its set-points, the EV's energy by departure, the bill at the forecast prices.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from gridflow import kafka_io
from gridflow.connectors.kafka_mqtt_downlink import command_record
from gridflow.contracts import CONTRACTS, encode
from gridflow.jobs import scheduling
from gridflow.runtime import create_env
from gridflow.scheduling.home import PlanInfeasible
from gridflow.scheduling.home_service import plan_home_day

from contract_cases import breaking, check_dead_letters

START_MS = 1_768_478_400_000  # 2026-01-15 12:00 UTC (13:00 in Amsterdam): a noon-to-noon horizon
H = 3_600_000
# an evening peak, a cheap night, a dear morning; hour 0 is 12:00 UTC
PRICES = [0.20] * 4 + [0.35] * 5 + [0.25] * 3 + [0.10] * 6 + [0.30] * 6


def forecast() -> dict:
    return {
        **CONTRACTS["price_forecast"].example,
        "start_ts_ms": START_MS,
        "issued_ts_ms": START_MS - H,
        "slot_minutes": 60,
        "slots": 24,
        "price_per_kwh": PRICES,
    }


def home(household: str, **fields) -> dict:
    record = {
        "v": 1,
        "household_id": household,
        "updated_ts_ms": START_MS - H,
        "import_max_w": 11_000.0,
        "battery": {
            "capacity_kwh": 10.0,
            "max_charge_kw": 4.0,
            "max_discharge_kw": 4.0,
            "round_trip_efficiency": 0.9,
            "soc_min": 0.1,
            "soc_max": 1.0,
            "soc_now": 0.3,
        },
        "ev": {
            "name": "car",
            "arrival_ts_ms": START_MS + 6 * H,  # 18:00 UTC
            "departure_ts_ms": START_MS + 19 * H,  # 07:00 UTC
            "energy_kwh": 18.0,
            "max_kw": 7.4,
            "min_kw": 1.4,
            "efficiency": 0.9,
        },
        # 3 kW of PV from 12:00 to 15:00 UTC (the first three slots), nothing after
        "pv_forecast": {"start_ts_ms": START_MS, "slot_minutes": 60, "power_w": [3000.0] * 3 + [0.0] * 21},
    }
    record.update(fields)
    return record


def washer(household: str) -> dict:
    return {
        **CONTRACTS["appliance"].example,
        "household_id": household,
        "horizon_start_minute": 720,
        "slot_minutes": 15,
        "name": "washer",
        "power_w": 2000.0,
        "duration_minutes": 120,
        "alpha_minute": 360,  # 18:00 local
        "beta_minute": 1080,
        "comfort_margin_minutes": 0,
    }


def check_plan(schedule: dict, record: dict) -> None:
    """The schedule's home plan keeps the physics, recomputed from its own fields."""
    plan, h = schedule["home"], schedule["slot_minutes"] / 60
    n = schedule["slots"]
    imp, exp, pv = (np.array(plan[k]) for k in ("import_w", "export_w", "pv_w"))
    battery, ev = np.array(plan["battery_setpoint_w"]), np.array(plan["ev_setpoint_w"])
    runs = np.zeros(n)
    for run in schedule["appliances"]:
        first = (run["start_ts_ms"] - schedule["start_ts_ms"]) // (schedule["slot_minutes"] * 60_000)
        last = (run["end_ts_ms"] - schedule["start_ts_ms"]) // (schedule["slot_minutes"] * 60_000)
        runs[first:last] += run["power_w"]
    # no load forecast here: the demand is the appliances, the battery's charge and the EV
    assert imp - exp + pv == pytest.approx(runs + battery + ev, abs=1e-3)
    assert np.all(np.minimum(imp, exp) < 1e-3), "never imports and exports at once"
    assert max(imp) <= record["import_max_w"] + 1e-3
    b = record["battery"]
    soc = np.array(plan["battery_soc"])
    eta = np.sqrt(b["round_trip_efficiency"])
    stored = np.concatenate(
        (
            [b["soc_now"]],
            b["soc_now"]
            + np.cumsum(np.where(battery > 0, battery * eta, battery / eta)) * h / 1000 / b["capacity_kwh"],
        )
    )
    assert soc == pytest.approx(stored, abs=1e-6)
    assert soc.min() >= b["soc_min"] - 1e-9 and soc.max() <= b["soc_max"] + 1e-9 and soc[-1] >= b["soc_now"] - 1e-9
    assert np.all(np.abs(battery) <= 1000 * b["max_charge_kw"] + 1e-3)
    e = record.get("ev")
    if e:
        on = ev > 1e-3
        arrival = max(0, (e["arrival_ts_ms"] - schedule["start_ts_ms"]) // (schedule["slot_minutes"] * 60_000))
        departure = (e["departure_ts_ms"] - schedule["start_ts_ms"]) // (schedule["slot_minutes"] * 60_000)
        assert not on[:arrival].any() and not on[departure:].any(), "charges only while plugged in"
        assert np.all(ev[on] >= 1000 * e["min_kw"] - 1e-3) and np.all(ev <= 1000 * e["max_kw"] + 1e-3)
        assert ev.sum() * h / 1000 * e["efficiency"] >= e["energy_kwh"] - 1e-6
    bill = float(np.sum(imp * h / 1000 * np.array(schedule["price_per_kwh"])))
    assert schedule["expected_cost"] == pytest.approx(bill, abs=1e-6), "export earns nothing at the default factor 0"


def test_a_home_with_pv_battery_and_ev_gets_a_plan_that_keeps_every_limit(base_settings):
    settings = base_settings.with_overrides("scheduler.slot_minutes=60")
    record = home("h-1")
    schedule = plan_home_day("h-1", [washer("h-1")], forecast(), settings, None, record)
    CONTRACTS["schedule"].decode(encode(schedule), "h-1")
    check_plan(schedule, record)
    plan = schedule["home"]
    # PV stored in the battery covers the dear evening (the washer, the car's first hour); everything bought
    # from the grid is bought in the 0.10 night
    imported = np.array(plan["import_w"])
    assert imported.sum() > 0 and np.all(imported[np.array(PRICES) > 0.10] < 1e-3)
    assert schedule["savings"] > 0.5
    exact = plan_home_day(
        "h-1", [washer("h-1")], forecast(), settings.with_overrides("scheduler.home_solver=milp"), None, record
    )
    assert schedule["expected_cost"] == pytest.approx(exact["expected_cost"], abs=1e-6)
    assert exact["home"]["solver"] == "milp" and plan["solver"] == "heap+lp"


def test_an_ev_that_cannot_be_charged_by_its_departure_is_refused_with_the_reason(base_settings):
    settings = base_settings.with_overrides("scheduler.slot_minutes=60")
    record = home("h-1", ev={**home("h-1")["ev"], "energy_kwh": 80.0, "max_kw": 3.7})
    with pytest.raises(PlanInfeasible) as refused:
        plan_home_day("h-1", [], forecast(), settings, None, record)
    assert refused.value.constraint == "ev:car" and "80 kWh" in str(refused.value) and "3.7 kW" in str(refused.value)


@pytest.mark.integration
def test_homes_with_pv_battery_and_ev_through_the_scheduling_job_to_commands(kafka_settings):
    settings = kafka_settings.with_overrides("scheduler.slot_minutes=60")
    t = settings.topics
    kafka_io.create_topics(
        settings, [t.appliances, t.price_forecasts, t.load_forecasts, t.home_energy, t.schedules, t.dead_letter]
    )
    homes = {
        "h-1": home("h-1"),  # PV, battery, EV and a washer
        "h-2": home("h-2", pv_forecast={"start_ts_ms": START_MS, "slot_minutes": 60, "power_w": [0.0] * 24}),
    }
    del homes["h-2"]["ev"]  # a battery only, no appliances: still planned
    below_minimum = home("h-3", battery={**home("h-3")["battery"], "soc_now": 0.05})  # under soc_min 0.1
    unreachable = home("h-4", ev={**home("h-4")["ev"], "energy_kwh": 80.0, "max_kw": 3.7})
    no_soc = home("h-5")
    del no_soc["battery"]["soc_now"]
    broken = breaking(home("h-6"), "h-6", drop="updated_ts_ms", mistype="import_max_w")
    stops = {
        t.appliances: kafka_io.produce(settings, t.appliances, [("h-1", json.dumps(washer("h-1")))]),
        t.price_forecasts: kafka_io.produce(settings, t.price_forecasts, [("NL", json.dumps(forecast()))]),
        t.load_forecasts: {p: 0 for p in range(settings.kafka.partitions)},
        t.home_energy: kafka_io.produce(
            settings,
            t.home_energy,
            [(h, json.dumps(r)) for h, r in homes.items()]
            + [("h-3", json.dumps(below_minimum)), ("h-4", json.dumps(unreachable)), ("h-5", json.dumps(no_soc))]
            + [(k, p) for k, p, _ in broken],
        ),
    }
    env = create_env(settings)
    scheduling.build(env, settings, stop_offsets=stops)
    env.execute("home-scheduling-test")

    keyed = kafka_io.read_records(settings, t.schedules, until_end=True)
    latest = {}
    for key, value in keyed:
        command = command_record(CONTRACTS["schedule"], key, value)  # what the downlink sends to the meter
        latest[command["household_id"]] = command  # later schedules replace earlier ones
    assert set(latest) == {"h-1", "h-2"}, "only the homes that can be planned get a schedule"
    for household, schedule in latest.items():
        assert "home" in schedule and len(schedule["home"]["battery_setpoint_w"]) == 24
        check_plan(schedule, homes[household])
    assert [run["name"] for run in latest["h-1"]["appliances"]] == ["washer"]
    assert latest["h-1"]["home"]["ev_energy_kwh"] >= 18.0 - 1e-6
    assert latest["h-2"]["home"]["ev_energy_kwh"] == 0 and latest["h-2"]["appliances"] == []

    dead = [json.loads(v) for _, v in kafka_io.read_records(settings, t.dead_letter, expected=3 + len(broken))]
    check_dead_letters(dead, broken, f"kafka:{t.home_energy}")
    dead = [d for d in dead if d["payload"] not in {p for _, p, _ in broken}]
    below, infeasible, broken = sorted(dead, key=lambda d: d["reason"].startswith("cannot") + 2 * bool(d["field"]))
    assert json.loads(below["payload"])["household_id"] == "h-3" and below["source"] == "home energy topic"
    assert "battery.soc_now must be" in below["reason"] and "got 0.05" in below["reason"]
    # the home's record or the forecast, whichever reached the household last, meets the EV it cannot charge
    assert (
        infeasible["reason"].startswith("cannot schedule h-4")
        and "'car' cannot gain 80 kWh by 07:00" in infeasible["reason"]
    )
    assert broken["field"] == "battery.soc_now" and broken["source"] == f"kafka:{t.home_energy}"
    assert json.loads(broken["payload"])["household_id"] == "h-5"


def test_the_household_page_shows_the_battery_solar_and_ev_plan(base_settings):
    from gridflow.web.household import render_household
    from gridflow.web.store import PageStore

    settings = base_settings.with_overrides("scheduler.slot_minutes=60")
    schedule = plan_home_day("h-1", [washer("h-1")], forecast(), settings, None, home("h-1"))
    store = PageStore("UTC", alerts_per_household=3, recent_alerts=5, recommendations_per_household=2)
    store.add("schedules", schedule)
    html = render_household(store.household("h-1"), timezone="UTC", currency="EUR", refresh_s=0)
    assert "Battery, solar and EV" in html and "Battery charge (%)" in html
    gained = sum(schedule["home"]["ev_setpoint_w"]) / 1000 * 0.9  # 1-hour slots, the car's efficiency
    assert f"EV: gains {gained:.1f} kWh" in html
    assert f"Battery: {100 * 0.3:.0f} % now" in html
    without = {k: v for k, v in schedule.items() if k != "home"}
    store.add("schedules", without)
    assert "Battery, solar and EV" not in render_household(
        store.household("h-1"), timezone="UTC", currency="EUR", refresh_s=0
    ), "an appliance-only home has no such card"


def test_a_new_soc_during_the_day_re_plans_the_rest_of_the_horizon_from_it(base_settings):
    settings = base_settings.with_overrides("scheduler.slot_minutes=60")
    day = plan_home_day("h-1", [], forecast(), settings, None, home("h-1"))
    # at 22:30 UTC (hour 10.5 of the horizon) the battery reports 80 % instead of what the plan expected
    later = home("h-1", updated_ts_ms=START_MS + 10 * H + H // 2)
    later["battery"] = {**later["battery"], "soc_now": 0.8}
    replanned = plan_home_day("h-1", [], forecast(), settings, None, later)
    assert replanned["start_ts_ms"] == START_MS + 10 * H and replanned["slots"] == 14
    assert replanned["price_per_kwh"] == PRICES[10:]
    assert replanned["home"]["battery_soc"][0] == pytest.approx(0.8)
    assert day["home"]["battery_soc"][10] != pytest.approx(0.8)
    check_plan(replanned, later)  # the EV still gets its 18 kWh by 07:00, from the new state


def test_a_home_that_sends_its_panels_site_is_planned_on_their_clear_sky_output(base_settings):
    settings = base_settings.with_overrides("scheduler.slot_minutes=60")
    record = home("h-1")
    del record["pv_forecast"]
    record["pv_site"] = {"latitude": 52.37, "longitude": 4.9, "kwp": 6.0, "azimuth_deg": 180.0, "correction": 0.8}
    schedule = plan_home_day("h-1", [], forecast(), settings, None, record)
    pv = np.array(schedule["home"]["pv_w"])
    # the horizon starts at 12:00 UTC on 15 January: sunset is near 16:00 UTC, sunrise near 07:45 UTC
    assert pv[:3].min() > 0 and pv[5:19].max() == 0 and pv[21:].min() > 0
    check_plan(schedule, record)
