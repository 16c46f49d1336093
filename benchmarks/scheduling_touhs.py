"""Touhs et al. 2024 households: % cost reduction vs unscheduled, heap-scheduler and MILP times.

Runs the light / medium / heavy Touhs households (gridflow.scheduling.scenarios, 40 A breaker) under two
price curves for one day from 12:00 to 12:00:

* ``citylearn-tou``: the CityLearn 2022 pricing series (time of use: 0.22 $/kWh off-peak, 0.54 $/kWh
  15:00-20:00 in summer), the first summer weekday with the peak; skipped if the data is not cached
  (``gridflow data fetch``);
* ``synthetic-rtp``: the documented synthetic day-ahead curve of ``synthetic_day_ahead_price``.

Heap time is the median over ``--repeat`` runs per household; MILP time is HiGHS's wall time.

    python benchmarks/scheduling_touhs.py [--slot-minutes 15] [--repeat 50]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from gridflow.scheduling.heap_scheduler import schedule_heap
from gridflow.scheduling.milp import solve_milp
from gridflow.scheduling.scenarios import (
    HORIZON_START_HOUR,
    USAGE_LEVELS,
    cost_reduction_percent,
    synthetic_day_ahead_price,
    touhs_problem,
    unscheduled_baseline,
)


def citylearn_day(slot_minutes: int) -> tuple[str, np.ndarray] | None:
    """Noon-to-noon CityLearn prices of the first weekday (day type 1..5) with peak pricing, per slot."""
    try:
        from gridflow.datasets import load_citylearn
        from gridflow.settings import load_settings

        data = load_citylearn(load_settings())
    except Exception as error:  # data not fetched: the synthetic curve still runs
        print(f"citylearn-tou skipped: {error}")
        return None
    prices, hours, day_types = data["price_per_kwh"], data["hour"], data["day_type"]
    for row in np.nonzero(hours == HORIZON_START_HOUR + 1)[0]:  # hour h covers (h-1):00..h:00
        day = prices[row : row + 24]
        if day.size == 24 and day.max() > day.min() and day_types[row] <= 5:
            label = f"citylearn-tou (rows {row}..{row + 23}, month {data['month'][row]})"
            return label, np.repeat(day, 60 // slot_minutes)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slot-minutes", type=int, default=15)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    curves = [citylearn_day(args.slot_minutes), ("synthetic-rtp", synthetic_day_ahead_price(args.slot_minutes))]
    print(f"{1440 // args.slot_minutes} slots of {args.slot_minutes} min, breaker 9.2 kW (40 A x 230 V)")
    header = (
        f"{'usage':<7}{'unscheduled':>12}{'heap':>9}{'milp':>9}{'heap red.':>10}{'milp red.':>10}"
        f"{'heap ms':>9}{'milp ms':>9}{'PAR unsch':>10}{'PAR heap':>9}"
    )
    for label, prices in filter(None, curves):
        print(f"\n{label}\n{header}")
        for usage in USAGE_LEVELS:
            problem = touhs_problem(usage, prices, args.slot_minutes)
            times = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                schedule = schedule_heap(problem)
                times.append(time.perf_counter() - started)
            assert schedule.violations(problem) == [], schedule.violations(problem)
            exact = solve_milp(problem)
            assert exact.schedule.violations(problem) == [] and exact.optimal
            baseline = unscheduled_baseline(problem)
            print(
                f"{usage:<7}{baseline.cost(problem.tariff):>12.3f}{schedule.cost(problem.tariff):>9.3f}"
                f"{exact.cost:>9.3f}{cost_reduction_percent(problem, schedule):>9.2f}%"
                f"{cost_reduction_percent(problem, exact.schedule):>9.2f}%"
                f"{1000 * statistics.median(times):>9.2f}{1000 * exact.solve_time_s:>9.1f}"
                f"{baseline.peak_to_average_ratio():>10.2f}{schedule.peak_to_average_ratio():>9.2f}"
            )


if __name__ == "__main__":
    main()
