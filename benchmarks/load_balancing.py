"""Adaptive load balancing of a simulated feeder on real load shapes (UCI + CityLearn days).

For each feeder size and capacity (a fraction of the unbalanced evening peak): PAR and peak before and
after, the share of households asked to shift and the most requests any one household got, and time.

    python benchmarks/load_balancing.py [--households 100 500] [--capacity 0.9 0.8 0.7]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter

from gridflow.balancing import simulate_feeder
from gridflow.devices.load_shapes import LoadShapeLibrary
from gridflow.settings import load_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--households", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--capacity", type=float, nargs="+", default=[0.9, 0.8, 0.7])
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    library = LoadShapeLibrary.load(load_settings())
    for households in args.households:
        for fraction in args.capacity:
            started = time.monotonic()
            plan, capacity = simulate_feeder(library, households, fraction, seed=args.seed)
            asked = Counter(r.household_id for r in plan.requests)
            print(
                json.dumps(
                    {
                        "households": households,
                        "capacity_fraction": fraction,
                        "capacity_kw": round(capacity / 1000, 1),
                        "peak_before_kw": round(plan.peak_before_w / 1000, 1),
                        "peak_after_kw": round(plan.peak_after_w / 1000, 1),
                        "limit_held": plan.peak_after_w <= capacity + 1e-6,
                        "par_before": round(plan.par_before, 3),
                        "par_after": round(plan.par_after, 3),
                        "par_reduction_percent": round(100 * (1 - plan.par_after / plan.par_before), 1),
                        "households_asked_percent": round(100 * len(asked) / households, 1),
                        "max_requests_per_household": max(asked.values(), default=0),
                        "flexible_runs": len(plan.runs),
                        "seconds": round(time.monotonic() - started, 2),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
