"""A household's day-ahead plan with its PV, battery and EV, from stream records (no Flink).

:func:`plan_home_day` extends :func:`gridflow.scheduling.service.plan_day` to a household that has sent a
``home_energy`` record: the same appliances, price forecast and load forecast, plus the PV forecast, the
battery (its SoC now) and the EV session of that record, planned together by the fleet planner or the exact
MILP (``scheduler.home_solver``). Import is paid at the forecast price; export earns
``scheduler.export_price_factor x price + scheduler.export_price_offset``. The schedule record keeps every
field of an appliance schedule and adds ``home`` (:class:`gridflow.contracts.records.HomeSchedule`): the
battery and charger set-points the downlink sends to the home, the SoC plan, grid import/export and PV.

A home-energy record sent during the horizon (its ``updated_ts_ms`` inside it: the battery's real SoC or
the PV departed from the plan) re-plans the rest of the horizon from the slot in progress, with the SoC
the home reports (model-predictive control: each new state closes the loop).

The saving is measured against the home left to itself: appliances at their usual time, the EV charging at
full power from arrival, the battery run by its inverter for self-consumption (charge from PV surplus,
discharge into the load) and :func:`unmanaged_plan` values the energy that battery ends the day with
differently from the plan at the horizon's mean import price.
"""

from __future__ import annotations

import math
from typing import cast

import numpy as np

from gridflow.contracts import SCHEMA_VERSION
from gridflow.scheduling.home import Battery, EVSession, HomePlan, HomeProblem
from gridflow.scheduling.model import MAX_POWER_W, peak_to_average
from gridflow.scheduling.scenarios import unscheduled_baseline
from gridflow.scheduling.service import (
    base_load_w,
    forecast_prices,
    forecast_slots,
    loads_in_horizon,
    local_minute,
    scheduled_runs,
)
from gridflow.settings import Settings


def battery_of(record: dict) -> Battery:
    """The ``battery`` of a home-energy record (ValueError naming the field when it cannot be one)."""
    state = record["battery"]
    try:
        return _battery(state)
    except ValueError as error:  # named as the record names it
        raise ValueError(str(error).replace("battery: ", "battery.").replace("soc_initial", "soc_now")) from None


def _battery(state: dict) -> Battery:
    return Battery(
        capacity_kwh=state["capacity_kwh"],
        max_charge_kw=state["max_charge_kw"],
        max_discharge_kw=state["max_discharge_kw"],
        round_trip_efficiency=state.get("round_trip_efficiency", 0.9),
        soc_min=state.get("soc_min", 0.1),
        soc_max=state.get("soc_max", 1.0),
        soc_initial=state["soc_now"],
        soc_final=state.get("soc_final"),
    )


def ev_of(record: dict, start_ms: int, slot_minutes: int, n_slots: int) -> EVSession | None:
    """The record's EV session on this horizon's slots (None when it has left before the horizon or arrives
    after it): plugged in from the slot holding its arrival (slot 0 if already plugged in) to the last slot
    that ends by its departure."""
    ev = record["ev"]
    slot_ms = slot_minutes * 60_000
    arrival = max(0, (int(ev["arrival_ts_ms"]) - start_ms) // slot_ms)
    departure = min(n_slots, (int(ev["departure_ts_ms"]) - start_ms) // slot_ms)
    if departure <= arrival:
        return None
    return EVSession(
        name=str(ev.get("name", "ev")),
        arrival_slot=int(arrival),
        departure_slot=int(departure),
        energy_kwh=ev["energy_kwh"],
        max_kw=ev["max_kw"],
        min_kw=ev.get("min_kw", 0.0),
        efficiency=ev.get("efficiency", 0.9),
        now_kwh=min(ev.get("now_kwh", 0.0), ev["energy_kwh"]),
    )


def pv_of(record: dict, start_ms: int, slot_minutes: int, n_slots: int) -> np.ndarray:
    """The record's PV forecast on this horizon's slots (the forecast slot holding each slot's middle; 0 W
    where the forecast does not reach), else the clear-sky output of its ``pv_site``, else 0 W."""
    pv = record.get("pv_forecast")
    if not pv and record.get("pv_site"):
        from gridflow.scheduling.pv import clear_sky_pv_w

        return clear_sky_pv_w(record["pv_site"], start_ms, slot_minutes, n_slots)
    if not pv:
        return np.zeros(n_slots)
    values = np.asarray(pv["power_w"], dtype=np.float64)
    index = forecast_slots(int(pv["start_ts_ms"]), int(pv["slot_minutes"]), start_ms, slot_minutes, n_slots)
    inside = (index >= 0) & (index < values.size)
    return np.where(inside, values[np.clip(index, 0, values.size - 1)], 0.0)


def home_energy_problem(payload_record: dict) -> str:
    """Why a home-energy record cannot be planned with ('' when it can): the domain's own checks of the
    battery and the EV (e.g. a SoC now below its minimum), beyond the contract's field types."""
    try:
        if "battery" in payload_record:
            battery_of(payload_record)
        if "ev" in payload_record:
            ev = payload_record["ev"]
            if int(ev["departure_ts_ms"]) <= int(ev["arrival_ts_ms"]):
                return "home energy: ev.departure_ts_ms must be after ev.arrival_ts_ms"
            if float(ev.get("min_kw", 0.0)) > float(ev["max_kw"]):
                return f"home energy: ev.min_kw must be <= ev.max_kw = {ev['max_kw']}, got {ev['min_kw']}"
    except (ValueError, KeyError, TypeError) as error:
        return f"home energy: {error}"
    return ""


def unmanaged_plan(problem: HomeProblem) -> tuple[HomePlan, float]:
    """The home left to itself (see the module docstring): its plan, and its cost with the battery's end
    energy valued like the plan's (``cost + (target - end) x mean import price``, the target being the plan's
    lowest allowed end energy)."""
    n, h = problem.n_slots, problem.slot_h
    appliances = unscheduled_baseline(problem.appliance_problem)
    demand = np.asarray(problem.base_load_w, dtype=np.float64) + appliances.load_profile_w(n)
    ev_w = {}
    for ev in problem.evs:
        power, left = np.zeros(n), ev.energy_kwh
        for t in range(ev.arrival_slot, ev.departure_slot):
            kw = min(ev.max_kw, max(left, 0.0) / (ev.efficiency * h))
            kw = ev.min_kw if 0 < kw < ev.min_kw else kw
            power[t], left = kw * 1000.0, left - kw * ev.efficiency * h
        ev_w[ev.name] = power
        demand = demand + power
    pv = np.asarray(problem.pv_w, dtype=np.float64)
    charge, discharge, soc = np.zeros(n), np.zeros(n), np.zeros(n + 1)
    b = problem.battery
    if b is not None:
        soc[0], eta = b.energy_initial_kwh, b.efficiency
        for t in range(n):
            net_kw = (demand[t] - pv[t]) / 1000.0
            if net_kw < 0:  # surplus: charge what fits
                kw = min(-net_kw, b.max_charge_kw, (b.energy_max_kwh - soc[t]) / (eta * h))
                charge[t] = max(kw, 0.0) * 1000.0
            else:
                kw = min(net_kw, b.max_discharge_kw, (soc[t] - b.energy_min_kwh) * eta / h)
                discharge[t] = max(kw, 0.0) * 1000.0
            soc[t + 1] = soc[t] + (eta * charge[t] - discharge[t] / eta) * h / 1000.0
    net = demand + charge - discharge - pv
    export = np.maximum(-net, 0.0)
    pv_used = pv.copy()
    if problem.pv_curtailable:  # an inverter curtails rather than pay to export
        paid = np.asarray(problem.export_price) < 0
        pv_used = np.where(paid, pv - export, pv)
        export = np.where(paid, 0.0, export)
    export = np.minimum(export, float(cast(float, problem.export_max_w)))  # __post_init__: inf when unlimited
    import_w = np.maximum(net, 0.0)
    cost = problem.cost(import_w, export)
    plan = HomePlan(
        import_w=import_w,
        export_w=export,
        pv_used_w=pv_used,
        charge_w=charge,
        discharge_w=discharge,
        battery_kwh=soc,
        ev_w=ev_w,
        appliances=appliances,
        cost=cost,
        objective=cost,
        solve_time_s=0.0,
        optimal=False,
        solver="unmanaged",
    )
    valued = cost
    if b is not None:
        valued += (b.energy_final_kwh - soc[-1]) * float(np.mean(problem.import_price))
    return plan, valued


def plan_home_day(
    household_id: str,
    appliances: list[dict],
    forecast: dict,
    settings: Settings,
    load_forecast: dict | None,
    home_energy: dict,
) -> dict:
    """The schedule record of a household with PV, a battery or an EV (see the module docstring).

    Raises ValueError (a field that cannot be planned) or :class:`~gridflow.scheduling.home.PlanInfeasible`
    (the constraint that cannot hold, e.g. the EV's energy by its departure)."""
    from gridflow.scheduling.fleet import plan_home_fast
    from gridflow.scheduling.home_milp import solve_home

    sched = settings.scheduler
    slot_minutes = sched.slot_minutes
    prices = forecast_prices(forecast, slot_minutes)
    start_ms, slot_ms = int(forecast["start_ts_ms"]), slot_minutes * 60_000
    updated_ms = int(home_energy.get("updated_ts_ms", 0))
    if start_ms < updated_ms < start_ms + prices.size * slot_ms:  # a re-plan: from the slot in progress on
        now_slot = (updated_ms - start_ms) // slot_ms
        prices, start_ms = prices[now_slot:], start_ms + now_slot * slot_ms
    n = int(prices.size)
    loads = loads_in_horizon(appliances, start_ms, n, settings)
    base = np.zeros(n)
    pv = pv_of(home_energy, start_ms, slot_minutes, n)
    if load_forecast is not None:
        forecast_w = base_load_w(load_forecast, start_ms, slot_minutes, n)
        base = np.minimum(np.maximum(forecast_w, 0.0), MAX_POWER_W)
        pv = pv + np.maximum(-forecast_w, 0.0)  # a negative forecast is export: PV the forecast already saw
    breaker_w = sched.breaker_a * sched.breaker_v if sched.breaker_a else None
    ev = ev_of(home_energy, start_ms, slot_minutes, n) if "ev" in home_energy else None
    problem = HomeProblem(
        prices,
        export_price=sched.export_price_factor * prices + sched.export_price_offset,
        slot_minutes=slot_minutes,
        base_load_w=base,
        pv_w=pv,
        pv_curtailable=bool(home_energy.get("pv_curtailable", True)),
        import_max_w=home_energy.get("import_max_w", breaker_w),
        export_max_w=home_energy.get("export_max_w"),
        battery=battery_of(home_energy) if "battery" in home_energy else None,
        evs=(ev,) if ev is not None else (),
        appliances=tuple(loads),
        comfort_weight=sched.w_comfort / max(sched.w_cost, 1e-12),
        start_minute=local_minute(start_ms, settings),
    )
    plan = solve_home(problem) if sched.home_solver == "milp" else plan_home_fast(problem)
    unmanaged, unmanaged_cost = unmanaged_plan(problem)
    rows = scheduled_runs(problem.appliance_problem, plan.appliances, loads, start_ms, f"the {plan.solver} plan")
    ev_w = sum((plan.ev_w[e.name] for e in problem.evs), np.zeros(n))
    load_after = base + plan.appliances.load_profile_w(n) + ev_w + plan.charge_w - plan.discharge_w
    load_before = (
        base
        + unmanaged.appliances.load_profile_w(n)
        + sum((unmanaged.ev_w[e.name] for e in problem.evs), np.zeros(n))
        + unmanaged.charge_w
        - unmanaged.discharge_w
    )
    gained = float(ev_w.sum() * problem.slot_h / 1000.0 * (problem.evs[0].efficiency if problem.evs else 0.0))
    consumption = plan.self_consumption(problem)
    b = problem.battery
    record = {
        "v": SCHEMA_VERSION,
        "household_id": household_id,
        "start_ts_ms": start_ms,
        "slot_minutes": slot_minutes,
        "slots": n,
        "algorithm": sched.home_solver,
        "forecast_model": forecast.get("model"),
        "currency": forecast.get("currency", settings.tariff.currency),
        "appliances": rows,
        "expected_cost": float(plan.cost),
        "unscheduled_cost": float(unmanaged_cost),
        "savings": float(unmanaged_cost - plan.cost),
        "savings_percent": float(100.0 * (unmanaged_cost - plan.cost) / unmanaged_cost) if unmanaged_cost > 0 else 0.0,
        "par_before": peak_to_average(np.maximum(load_before, 0.0), empty=0.0),
        "par_after": peak_to_average(np.maximum(load_after, 0.0), empty=0.0),
        "price_per_kwh": [round(float(p), 6) for p in prices],
        "load_before_w": load_before.tolist(),
        "load_after_w": load_after.tolist(),
        "home": {
            "solver": plan.solver,
            "import_w": plan.import_w.tolist(),
            "export_w": plan.export_w.tolist(),
            "pv_w": plan.pv_used_w.tolist(),
            "battery_setpoint_w": (plan.charge_w - plan.discharge_w).tolist(),
            "battery_soc": (plan.battery_kwh / b.capacity_kwh).tolist() if b is not None else [],
            "ev_setpoint_w": ev_w.tolist(),
            "ev_energy_kwh": gained,
            "export_price_per_kwh": [round(float(p), 6) for p in np.asarray(problem.export_price)],
            "self_consumption": None if math.isnan(consumption) else float(consumption),
        },
    }
    if load_forecast is not None:
        record["base_load_model"] = load_forecast.get("model")
    return record
