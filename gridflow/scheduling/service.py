"""Day-ahead schedule of one household from stream records (no Flink): learned appliances + a price forecast.

Inputs are the records of the ``household.appliances`` topic (one per learned appliance; its window in
minutes from the local ``horizon_start_minute``) and of the ``grid.price-forecasts`` topic (a price per
slot from ``start_ts_ms``). The horizon is the forecast's; an appliance window is placed by local clock
time (``preprocess.timezone``) and cut at the horizon's end. Prices are shifted up by the most negative
price before scheduling (the heap scheduler needs prices >= 0; with the energy of every appliance fixed the
shift changes no decision), and every cost reported is priced with the real forecast prices.

>>> from gridflow.settings import Settings
>>> noon = 12 * 3_600_000                                    # a horizon from 12:00 to 12:00 (UTC)
>>> forecast = {"start_ts_ms": noon, "slot_minutes": 60, "slots": 24, "currency": "EUR", "model": "linear",
...             "price_per_kwh": [0.30] * 12 + [0.10] * 6 + [0.30] * 6}    # cheap from 00:00 to 06:00
>>> washer = {"name": "washer", "power_w": 1000.0, "duration_minutes": 60, "horizon_start_minute": 0,
...           "alpha_minute": 17 * 60, "beta_minute": 31 * 60, "comfort_margin_minutes": 0}  # 17:00-07:00
>>> plan = plan_day("h-1", [washer], forecast, Settings().with_overrides("scheduler.slot_minutes=60"))
>>> plan["appliances"][0]["start_ts_ms"] // 3_600_000, round(plan["savings"], 2), round(plan["unscheduled_cost"], 2)
(24, 0.2, 0.3)
"""

from __future__ import annotations

import numpy as np

from gridflow.preprocess.localtime import LocalClock
from gridflow.scheduling.heap_scheduler import schedule_heap
from gridflow.contracts import SCHEMA_VERSION
from gridflow.scheduling.model import MAX_POWER_W, Appliance, Problem, Schedule, Tariff, peak_to_average
from gridflow.scheduling.scenarios import unscheduled_baseline
from gridflow.settings import Settings


def forecast_prices(forecast: dict, slot_minutes: int) -> np.ndarray:
    """The forecast's prices per scheduler slot (each forecast slot repeated or averaged to fit)."""
    prices = np.asarray(forecast["price_per_kwh"], dtype=np.float64)
    step = int(forecast["slot_minutes"])
    if not prices.size or not np.isfinite(prices).all():
        raise ValueError("price forecast: price_per_kwh must be a non-empty list of finite numbers")
    per_minute = np.repeat(prices, step)
    if per_minute.size % slot_minutes:
        per_minute = per_minute[: per_minute.size - per_minute.size % slot_minutes]
    return per_minute.reshape(-1, slot_minutes).mean(axis=1)


def appliance_in_horizon(record: dict, horizon_start_minute: int, slot_minutes: int, n_slots: int) -> Appliance | None:
    """A learned appliance as a deferrable load of this horizon, or None if its window misses the horizon."""
    base = int(record.get("horizon_start_minute", 0))
    alpha = (base + int(record["alpha_minute"]) - horizon_start_minute) % 1440
    beta = alpha + int(record["beta_minute"]) - int(record["alpha_minute"])
    alpha_slot = alpha // slot_minutes
    beta_slot = min(-(-beta // slot_minutes), n_slots)
    duration = max(1, -(-int(record["duration_minutes"]) // slot_minutes))
    if beta_slot - alpha_slot < duration:
        return None
    return Appliance(
        name=str(record["name"]),
        kind="deferrable",
        power_w=float(record["power_w"]),
        duration_slots=duration,
        alpha_slot=alpha_slot,
        beta_slot=beta_slot,
        comfort_margin_slots=int(record.get("comfort_margin_minutes", 0)) // slot_minutes,
    )


def local_minute(ts_ms: int, settings: Settings) -> int:
    """The local minute of day (``preprocess.timezone``) of ``ts_ms``."""
    clock = LocalClock(settings.preprocess.timezone)
    return int(((ts_ms + clock.utc_offset_ms(ts_ms)) // 60_000) % 1440)


def loads_in_horizon(records: list[dict], start_ms: int, n_slots: int, settings: Settings) -> list[Appliance]:
    """The learned appliances (records) as loads of the horizon of ``n_slots`` scheduler slots from
    ``start_ms``, in name order (the schedule does not depend on arrival order), placed by the local clock
    (``preprocess.timezone``); those whose window misses the horizon are left out."""
    start_minute = local_minute(start_ms, settings)
    slot_minutes = settings.scheduler.slot_minutes
    ordered = sorted(records, key=lambda record: str(record.get("name")))
    return [a for a in (appliance_in_horizon(r, start_minute, slot_minutes, n_slots) for r in ordered) if a]


BASE_LOAD = "base load "  # the fixed loads standing for the forecast base load (never in the schedule's runs)


def forecast_slots(
    forecast_start_ms: int, forecast_slot_minutes: int, start_ms: int, slot_minutes: int, n_slots: int
) -> np.ndarray:
    """For each of ``n_slots`` slots from ``start_ms``, the number of the forecast slot (counted from
    ``forecast_start_ms``) that holds its middle; negative or past the forecast's end where it does not
    cover the slot."""
    middle = start_ms + np.arange(n_slots, dtype=np.int64) * slot_minutes * 60_000 + slot_minutes * 30_000
    return (middle - forecast_start_ms) // (forecast_slot_minutes * 60_000)


def base_load_w(load_forecast: dict, start_ms: int, slot_minutes: int, n_slots: int) -> np.ndarray:
    """The household's forecast load (a ``load_forecast`` record) on the scheduler's slots from ``start_ms``:
    the forecast slot holding each slot's middle; a slot the forecast does not cover takes the forecast at
    the same time of day (tomorrow's shape stands in for the rest of today); unknown slots the known mean."""
    values = np.array([np.nan if v is None else v for v in load_forecast["load_w"]], dtype=np.float64)
    if not np.isfinite(values).any():
        return np.zeros(n_slots)
    values = np.where(np.isfinite(values), values, np.nanmean(values))
    f_minutes = int(load_forecast["slot_minutes"])
    index = forecast_slots(int(load_forecast["start_ts_ms"]), f_minutes, start_ms, slot_minutes, n_slots)
    per_day = 1440 // f_minutes
    index = np.where((index < 0) | (index >= values.size), index % per_day, index)  # the same time of day
    return values[np.clip(index, 0, values.size - 1)]


def plan_day(
    household_id: str, appliances: list[dict], forecast: dict, settings: Settings, load_forecast: dict | None = None
) -> dict:
    """The schedule record for ``household_id`` (see the module docstring). The appliances are taken in
    name order, so the schedule does not depend on the order their records arrived in.

    With ``load_forecast`` (the household's ``load_forecast`` record) its forecast base load is planned
    around: each slot's base load is a fixed load (capped at the breaker), so appliances fit under the
    breaker together with it; a negative base (PV export) offsets the appliances like PV. Costs and load
    curves then include the base load."""
    sched = settings.scheduler
    slot_minutes = sched.slot_minutes
    prices = forecast_prices(forecast, slot_minutes)
    start_ms = int(forecast["start_ts_ms"])
    loads = loads_in_horizon(appliances, start_ms, prices.size, settings)
    shift = max(0.0, -float(prices.min()))
    breaker_w = sched.breaker_a * sched.breaker_v if sched.breaker_a else None
    base, pv = [], None
    if load_forecast is not None:
        base_w = base_load_w(load_forecast, start_ms, slot_minutes, prices.size)
        cap = breaker_w if breaker_w is not None else MAX_POWER_W
        base = [
            Appliance(f"{BASE_LOAD}{i}", "fixed", min(float(w), cap), 1, i, i + 1)
            for i, w in enumerate(base_w)
            if w > 0
        ]
        pv = np.maximum(-base_w, 0.0) if (base_w < 0).any() else None
    tariff = Tariff(prices + shift, slot_minutes=slot_minutes, breaker_w=breaker_w, pv_w=pv)
    problem = Problem(tuple(loads) + tuple(base), tariff)
    schedule = _solve(problem, settings)
    baseline = unscheduled_baseline(problem)
    slot_h = slot_minutes / 60.0

    def cost(s: Schedule) -> float:
        grid_w = s.load_profile_w(prices.size) - (0.0 if pv is None else pv)  # the base load's export offsets
        return float((np.maximum(grid_w, 0.0) * slot_h / 1000.0 * prices).sum())

    planned, unplanned = cost(schedule), cost(baseline)
    rows = scheduled_runs(problem, schedule, loads, start_ms, f"the {settings.scheduler.algorithm} schedule")
    record = {
        "v": SCHEMA_VERSION,
        "household_id": household_id,
        "start_ts_ms": start_ms,
        "slot_minutes": slot_minutes,
        "slots": int(prices.size),
        "algorithm": sched.algorithm,
        "forecast_model": forecast.get("model"),
        "currency": forecast.get("currency", settings.tariff.currency),
        "appliances": rows,
        "expected_cost": planned,
        "unscheduled_cost": unplanned,
        "savings": unplanned - planned,
        "savings_percent": 100.0 * (unplanned - planned) / unplanned if unplanned > 0 else 0.0,
        "par_before": peak_to_average(baseline.load_profile_w(prices.size), empty=0.0),
        "par_after": peak_to_average(schedule.load_profile_w(prices.size), empty=0.0),
        "price_per_kwh": [round(float(p), 6) for p in prices],
        "load_before_w": baseline.load_profile_w(prices.size).tolist(),
        "load_after_w": schedule.load_profile_w(prices.size).tolist(),
    }
    if load_forecast is not None:
        record["base_load_model"] = load_forecast.get("model")
    return record


def scheduled_runs(problem: Problem, schedule: Schedule, loads: list[Appliance], start_ms: int, who: str) -> list[dict]:
    """The schedule record's ``appliances``: each load's planned run, its usual start and its window, in
    epoch ms from the horizon's ``start_ms``; ``who`` names the planner in the error if one is not placed."""
    slot_minutes = problem.tariff.slot_minutes
    slot_ms = slot_minutes * 60_000
    rows = []
    for a in loads:
        first = schedule.start_slot(a.name)
        if first is None:  # the schedulers place every appliance or raise
            raise ValueError(f"{who} does not run appliance {a.name!r}")
        slots = schedule.power_w.get(a.name, {})
        low, high = problem.window(a)
        rows.append(
            {
                "name": a.name,
                "power_w": a.power_w,
                "start_ts_ms": start_ms + first * slot_ms,
                "end_ts_ms": start_ms + (max(slots) + 1) * slot_ms,
                "usual_start_ts_ms": start_ms + a.alpha_slot * slot_ms,
                "earliest_start_ts_ms": start_ms + low * slot_ms,
                "latest_start_ts_ms": start_ms + (high - a.duration_slots) * slot_ms,
                "shift_minutes": (first - a.alpha_slot) * slot_minutes,
            }
        )
    return rows


def _solve(problem: Problem, settings: Settings) -> Schedule:
    algorithm = settings.scheduler.algorithm
    if algorithm == "pso":
        from gridflow.scheduling.pso import pso_options, schedule_pso

        return schedule_pso(problem, **pso_options(settings.scheduler)).schedule
    if algorithm == "milp":
        from gridflow.scheduling.milp import solve_milp

        sched = settings.scheduler  # the MILP minimises cost + comfort_weight * deviation: the PSO objective / w_cost
        return solve_milp(problem, comfort_weight=sched.w_comfort / max(sched.w_cost, 1e-12)).schedule
    return schedule_heap(problem)
