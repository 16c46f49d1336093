"""The Touhs et al. 2024 household (World Electr. Veh. J. 15(1):1) as data, and the unscheduled baseline.

Appliances and powers follow the paper: deferrable washing machine 1000 W, dishwasher 1800 W and oven
2300 W; regulatable EV charger 5000 W, pump 800 W and (water) heater 1300 W; fixed lights 200 W and TV
300 W. The paper reports savings for light, medium and heavy usage schedules (11.11 %, 20.09 %, 38.85 %);
its per-level durations and windows are not reproduced here. :data:`USAGE` is our reading of them, chosen
as plausible household behaviour:

* the horizon is one day from 12:00 to 12:00 (EV charging and the dishwasher span midnight); clock hours
  after midnight are written as 24 + h;
* light / medium / heavy mainly scale running times and energies (about 1x / 2x / 3x): washing machine
  1 / 2 / 3 h, dishwasher 1 / 1.5 / 2.5 h, oven 1 / 1.5 / 2 h, EV 7.5 / 15 / 30 kWh (about 50 / 100 /
  200 km), pump 2 / 4 / 6 h, heater 2 / 3 / 5 h at full power, lights 4 / 5 / 7 h, TV 2 / 4 / 6 h;
* the earliest start ``alpha`` is when people would switch the appliance on without a scheduler (mostly
  the evening), the end ``beta`` when it must be done; the unscheduled baseline runs everything from alpha.

Durations are rounded up to whole slots.
"""

from __future__ import annotations

import math

import numpy as np

from gridflow.scheduling.model import Appliance, Problem, Schedule, Tariff

HORIZON_START_HOUR = 12
USAGE_LEVELS = ("light", "medium", "heavy")
DEFAULT_BREAKER_W = 40.0 * 230.0  # breaker_w = amps * volts: 40 A single phase, 9.2 kW

# name: (kind, power_w, (alpha clock h, beta clock h) or None for fixed loads, {usage: hours at full power})
APPLIANCES = {
    "washing_machine": ("deferrable", 1000.0, (18.0, 24 + 8.0), {"light": 1.0, "medium": 2.0, "heavy": 3.0}),
    "dishwasher": ("deferrable", 1800.0, (20.0, 24 + 7.0), {"light": 1.0, "medium": 1.5, "heavy": 2.5}),
    "oven": ("deferrable", 2300.0, (16.0, 21.0), {"light": 1.0, "medium": 1.5, "heavy": 2.0}),
    "ev": ("regulatable", 5000.0, (18.0, 24 + 7.0), {"light": 1.5, "medium": 3.0, "heavy": 6.0}),
    "pump": ("regulatable", 800.0, (12.0, 24 + 12.0), {"light": 2.0, "medium": 4.0, "heavy": 6.0}),
    "heater": ("regulatable", 1300.0, (16.0, 24 + 7.0), {"light": 2.0, "medium": 3.0, "heavy": 5.0}),
    "lights": ("fixed", 200.0, None, {"light": 4.0, "medium": 5.0, "heavy": 7.0}),
    "tv": ("fixed", 300.0, None, {"light": 2.0, "medium": 4.0, "heavy": 6.0}),
}
# fixed loads run from this clock hour (earlier with more usage) for their hours
FIXED_START_H = {
    "lights": {"light": 19.0, "medium": 18.0, "heavy": 17.0},
    "tv": {"light": 20.0, "medium": 19.0, "heavy": 18.0},
}


def _slot(clock_h: float, slot_minutes: int) -> int:
    return int(round((clock_h - HORIZON_START_HOUR) * 60 / slot_minutes))


def touhs_appliances(usage: str, slot_minutes: int = 60) -> tuple[Appliance, ...]:
    """The eight Touhs appliances for ``usage`` in ``USAGE_LEVELS`` on slots of ``slot_minutes``."""
    if usage not in USAGE_LEVELS:
        raise ValueError(f"usage must be one of {USAGE_LEVELS}, got {usage!r}")
    appliances = []
    for name, (kind, power_w, window_h, hours) in APPLIANCES.items():
        duration = math.ceil(hours[usage] * 60 / slot_minutes - 1e-9)
        if kind == "fixed":
            alpha_h = FIXED_START_H[name][usage]
            window_h = (alpha_h, alpha_h + duration * slot_minutes / 60)
        elif window_h is None:
            raise ValueError(f"APPLIANCES[{name!r}]: a {kind} load needs an (alpha, beta) window")
        alpha_h, beta_h = window_h
        energy_wh = power_w * hours[usage] if kind == "regulatable" else None
        appliances.append(
            Appliance(
                name,
                kind,
                power_w,
                duration,
                _slot(alpha_h, slot_minutes),
                _slot(beta_h, slot_minutes),
                energy_wh=energy_wh,
            )
        )
    return tuple(appliances)


def touhs_problem(
    usage: str,
    price_per_kwh,
    slot_minutes: int = 60,
    *,
    breaker_w: float | None = DEFAULT_BREAKER_W,
    pv_w=None,
    ibr_thresholds_kwh=(),
    ibr_multipliers=(),
) -> Problem:
    """The Touhs household for ``usage`` under a price curve of ``1440 / slot_minutes`` slots from 12:00."""
    tariff = Tariff(price_per_kwh, slot_minutes, ibr_thresholds_kwh, ibr_multipliers, pv_w, breaker_w)
    if tariff.n_slots != 1440 // slot_minutes:
        raise ValueError(f"price_per_kwh must have 1440 / slot_minutes = {1440 // slot_minutes} slots")
    return Problem(touhs_appliances(usage, slot_minutes), tariff)


def synthetic_day_ahead_price(slot_minutes: int = 60) -> np.ndarray:
    """A documented synthetic day-ahead curve (currency/kWh) from 12:00: 0.10 base, a morning peak
    (+0.12 at 08:00) and an evening peak (+0.25 at 19:00), Gaussian bumps of 1.5 h and 2 h spread."""
    clock_h = HORIZON_START_HOUR + (np.arange(1440 // slot_minutes) + 0.5) * slot_minutes / 60
    hour_of_day = clock_h % 24
    return (
        0.10
        + 0.12 * np.exp(-0.5 * ((hour_of_day - 8) / 1.5) ** 2)
        + 0.25 * np.exp(-0.5 * ((hour_of_day - 19) / 2.0) ** 2)
    )


def unscheduled_baseline(problem: Problem) -> Schedule:
    """What the household does without a scheduler: every load starts at its ``alpha_slot`` (or as early
    after it as the window allows), regulatable loads at full power until their energy is met.

    The breaker limit is not enforced (households without a scheduler may trip it); check
    ``violations(problem)`` if it matters.
    """
    power_w, slot_h = {}, problem.tariff.slot_h
    for a in problem.appliances:
        low, high = problem.window(a)
        if a.kind != "regulatable":
            start = max(low, min(a.alpha_slot, high - a.duration_slots))
            power_w[a.name] = dict.fromkeys(range(start, start + a.duration_slots), a.power_w)
            continue
        left_wh, power_w[a.name] = problem.required_energy_wh(a), {}
        for slot in [*range(a.alpha_slot, high), *range(low, a.alpha_slot)]:
            if left_wh <= 0:
                break
            power_w[a.name][slot] = min(a.power_w, left_wh / slot_h)
            left_wh -= power_w[a.name][slot] * slot_h
    return Schedule(problem.horizon_slots, power_w)


def cost_reduction_percent(problem: Problem, schedule: Schedule) -> float:
    """``100 * (1 - cost(schedule) / cost(unscheduled baseline))``."""
    baseline = unscheduled_baseline(problem).cost(problem.tariff)
    return 100.0 * (1.0 - schedule.cost(problem.tariff) / baseline) if baseline > 0 else 0.0
