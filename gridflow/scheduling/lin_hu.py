"""The Lin & Hu 2018 case study (Sensors 18(5):1365, Table 3) as data, on one day of 1-minute slots.

Slot ``t`` is minute ``t`` after midnight (1440 slots). Five non-interruptible runs of two appliances
identified by non-intrusive load monitoring are scheduled; Table 3 gives each run's window
``[alpha, beta]`` (minutes), duration ``l`` and comfort margin ``delta`` (a start may move to
``[alpha - delta, beta - l + delta]``, at a comfort cost of ``|start - alpha|``):

=============  ==========  ===  =====
run            window      l    delta
=============  ==========  ===  =====
water boiler   1035-1071   23   180
steamer a       361- 379   15    60
steamer b       589- 606   15    90
steamer c       672- 721   36    90
steamer d      1035-1084   24    90
=============  ==========  ===  =====

The paper reports PAR -13.97 % and cost -0.85 % after scheduling. What this module adds, as assumptions
(the paper's values are not reproduced here):

* ratings: water boiler 800 W, electric rice steamer 800 W (typical Taiwanese models);
* a non-schedulable base load of fixed loads (a PAR change of only -13.97 % when two overlapping runs
  are pulled apart implies other load in the household; we do not have its profile): 150 W always on (refrigerator, standby), 400 W 06:30-08:30, 300 W 11:30-13:30,
  500 W 17:30-23:30 (lights, cooking, fans) and 300 W 19:00-23:00 (television);
* a real-time price shaped like a daily load curve between the lowest and highest time-of-use prices of
  ``TariffSettings`` (0.18 .. 0.38 EUR/kWh): a night trough and morning, midday and evening bumps;
* the 5-level inclining block rate of ``TariffSettings`` (thresholds 0.5 / 1.0 / 1.5 / 2.0 kWh per hour,
  multipliers 1.0 .. 1.8), applied per slot as the same thresholds on the slot's average power
  (500 / 1000 / 1500 / 2000 W);
* a 30 A x 110 V breaker (3.3 kW) and weights ``w_cost = 1`` per EUR, ``w_comfort = 1e-4`` EUR per minute
  of start deviation (a one-hour shift costs 0.006 EUR, 5-10 % of a run's energy cost).

>>> problem = lin_hu_problem()
>>> problem.horizon_slots, [a.name for a in problem.appliances if a.kind == "deferrable"][:2]
(1440, ['water_boiler', 'steamer_a'])
"""

from __future__ import annotations

import numpy as np

from gridflow.scheduling.model import Appliance, Problem, Tariff
from gridflow.settings import TariffSettings

SLOT_MINUTES = 1
W_COST = 1.0  # per EUR
W_COMFORT = 1e-4  # EUR per slot (minute) of |start - alpha|
BREAKER_W = 30.0 * 110.0
BOILER_W = STEAMER_W = 800.0  # assumed ratings

# Table 3: name -> (power_w, alpha, beta, duration l, comfort margin delta), minutes after midnight
TABLE_3 = {
    "water_boiler": (BOILER_W, 1035, 1071, 23, 180),
    "steamer_a": (STEAMER_W, 361, 379, 15, 60),
    "steamer_b": (STEAMER_W, 589, 606, 15, 90),
    "steamer_c": (STEAMER_W, 672, 721, 36, 90),
    "steamer_d": (STEAMER_W, 1035, 1084, 24, 90),
}
# assumed non-schedulable base load: name -> (power_w, start clock h, end clock h)
BASE_LOAD = {
    "always_on": (150.0, 0.0, 24.0),
    "morning": (400.0, 6.5, 8.5),
    "midday": (300.0, 11.5, 13.5),
    "evening": (500.0, 17.5, 23.5),
    "television": (300.0, 19.0, 23.0),
}


def lin_hu_appliances(base_load: bool = True) -> tuple[Appliance, ...]:
    """The five Table 3 runs (deferrable, non-interruptible), then the assumed fixed base load."""
    runs = tuple(
        Appliance(name, "deferrable", power_w, duration, alpha, beta, margin)
        for name, (power_w, alpha, beta, duration, margin) in TABLE_3.items()
    )
    return runs + (base_load_appliances() if base_load else ())


def base_load_appliances(slot_minutes: int = SLOT_MINUTES) -> tuple[Appliance, ...]:
    """The assumed base load as fixed loads on slots of ``slot_minutes`` (a divisor of 30)."""
    per_hour = 60 // slot_minutes
    return tuple(
        Appliance(
            name, "fixed", power_w, round((end - start) * per_hour), round(start * per_hour), round(end * per_hour)
        )
        for name, (power_w, start, end) in BASE_LOAD.items()
    )


def lin_hu_price(tariff: TariffSettings | None = None, slot_minutes: int = SLOT_MINUTES) -> np.ndarray:
    """Real-time price (EUR/kWh) per slot, shaped like a daily load curve: a night trough, bumps at 08:00
    (1.5 h spread), 12:30 (1.5 h) and 19:30 (2 h), scaled between the lowest and highest time-of-use price
    of ``tariff`` (default ``TariffSettings()``); slots of more than a minute take the mean of their minutes."""
    tou = [p.price_per_kwh for p in (tariff or TariffSettings()).tou]
    hour = (np.arange(1440) + 0.5) / 60.0
    shape = (
        0.45 * np.exp(-0.5 * ((hour - 8.0) / 1.5) ** 2)
        + 0.35 * np.exp(-0.5 * ((hour - 12.5) / 1.5) ** 2)
        + 1.0 * np.exp(-0.5 * ((hour - 19.5) / 2.0) ** 2)
        + 0.15 * np.exp(-0.5 * ((hour - 15.0) / 3.0) ** 2)
    )
    shape = (shape - shape.min()) / (shape.max() - shape.min())
    return (min(tou) + (max(tou) - min(tou)) * shape).reshape(-1, slot_minutes).mean(axis=1)


def lin_hu_tariff(
    tariff: TariffSettings | None = None, breaker_w: float | None = BREAKER_W, slot_minutes: int = SLOT_MINUTES
) -> Tariff:
    """:func:`lin_hu_price` with the inclining block rate of ``tariff`` (thresholds per hour, scaled to the
    slot) and the breaker limit."""
    settings = tariff or TariffSettings()
    thresholds = [kwh * slot_minutes / 60.0 for kwh in settings.ibr_thresholds_kwh]
    return Tariff(
        lin_hu_price(settings, slot_minutes), slot_minutes, thresholds, settings.ibr_multipliers, None, breaker_w
    )


def lin_hu_problem(
    base_load: bool = True, tariff: TariffSettings | None = None, breaker_w: float | None = BREAKER_W
) -> Problem:
    """The case-study household: Table 3 runs, the assumed base load and tariff (see the module docstring)."""
    return Problem(lin_hu_appliances(base_load), lin_hu_tariff(tariff, breaker_w))
