"""Plan a fleet of homes with PV, a battery and an EV: throughput of the fleet planner, and its gap to the MILP.

Households (run ``gridflow data fetch`` first), one day each from 12:00 to 12:00 in 15-minute slots:

* base load: one of the 17 CityLearn homes (equipment load, hourly), a random day, scaled by 0.6-1.6;
* PV: that home's output per kW installed on that day x 3-8 kWp, curtailable;
* prices: the Dutch day-ahead price of a random day of 2023-2024 (hourly, negative hours included); import
  pays it plus 0.15 EUR/kWh of network and tax, plus 21 % VAT; export earns the day-ahead price itself
  (a dynamic feed-in contract: negative when the market is);
* battery: 5-15 kWh, 2.5-5 kW, round trip 0.88-0.94, SoC now 0.1-0.9, the same SoC at the end;
* EV (70 % of homes): plugged in 17:00-20:00, leaves 06:00-08:00, needs 5-30 kWh, charger 3.7 / 7.4 / 11 kW
  with a 1.4 / 1.4 / 4.1 kW minimum; 50 % of homes also have a washer (2 kW, 2 h, window 18:00-07:00);
* grid connection 17.25 kW (25 A x 3 x 230 V), feed-in unlimited.

Every household is drawn from its index and ``--seed``, so the worker processes build their own homes
(nothing is pickled) and any run is reproducible.

Two measurements:

* ``--gap N``: N households planned by the fleet planner and by the exact MILP: cost and time of each;
* ``--households N --processes P``: the fleet planner over N households on P processes: wall time, ms per
  household, plans that fell back to the MILP.

    python benchmarks/scheduling_fleet.py --gap 300 --households 50000 --processes 2
"""

from __future__ import annotations

import argparse
import multiprocessing
import time

import numpy as np

SLOTS, SLOT_MINUTES, START_MINUTE = 96, 15, 720
_DATA: dict | None = None


def _data() -> dict:
    global _DATA
    if _DATA is None:
        from gridflow.datasets import load_citylearn, load_prices
        from gridflow.settings import load_settings

        settings = load_settings()
        city, market = load_citylearn(settings), load_prices(settings)
        local_ms = market["ts_ms"] + market["utc_offset_minutes"] * 60_000
        years = (local_ms // 86_400_000 * 86_400_000).astype("datetime64[ms]").astype("datetime64[Y]").astype(int)
        price = market["price_per_kwh"]
        # local noon-to-noon days of 2023-2024 with all 24 hours known (DST days are skipped)
        hour_of_day = (local_ms // 3_600_000) % 24
        starts = np.nonzero((hour_of_day == 12) & ((years + 1970) >= 2023) & ((years + 1970) <= 2024))[0]
        starts = starts[starts + 24 <= price.size]
        whole = [
            s
            for s in starts
            if np.isfinite(price[s : s + 24]).all() and (hour_of_day[s : s + 24] == (np.arange(24) + 12) % 24).all()
        ]
        _DATA = {"load": city["load_w"], "pv": city["pv_w_per_kw"], "price": price, "days": np.array(whole)}
    return _DATA


def household(index: int, seed: int, *, ev: bool = True, washer: bool = True):
    """The ``index``-th home of the fleet (see the module docstring); ``ev=False`` / ``washer=False`` leave
    those out (the homes are otherwise the same)."""
    from gridflow.scheduling.home import Battery, EVSession, HomeProblem
    from gridflow.scheduling.model import Appliance

    data = _data()
    rng = np.random.default_rng((seed, index))
    home = int(rng.integers(data["load"].shape[0]))
    first = int(rng.integers(1, 364)) * 24 + 12  # CityLearn rows: hour 12 of a day
    load_w = np.repeat(data["load"][home, first : first + 24], 4) * rng.uniform(0.6, 1.6)
    pv_w = np.repeat(data["pv"][home, first : first + 24], 4) * rng.uniform(3, 8)
    day = int(rng.choice(data["days"]))
    market = np.repeat(data["price"][day : day + 24], 4)
    battery = Battery(
        capacity_kwh=rng.uniform(5, 15),
        max_charge_kw=(power := rng.uniform(2.5, 5)),
        max_discharge_kw=power,
        round_trip_efficiency=rng.uniform(0.88, 0.94),
        soc_min=0.1,
        soc_initial=rng.uniform(0.1, 0.9),
    )
    evs = []
    if rng.random() < 0.7 and ev:
        kind = int(rng.integers(3))
        arrival = int(rng.integers(5 * 4, 8 * 4))  # 17:00-20:00 after the 12:00 start
        departure = int(rng.integers(18 * 4, 20 * 4))  # 06:00-08:00
        max_kw, min_kw = ((3.7, 1.4), (7.4, 1.4), (11.0, 4.1))[kind]
        evs.append(EVSession("ev", arrival, departure, rng.uniform(5, 30), max_kw, min_kw, 0.9))
    appliances = []
    if rng.random() < 0.5 and washer:
        appliances.append(Appliance("washer", "deferrable", 2000.0, 8, 6 * 4, 19 * 4))
    return HomeProblem(
        (market + 0.15) * 1.21,
        export_price=market,
        slot_minutes=SLOT_MINUTES,
        base_load_w=load_w,
        pv_w=pv_w,
        import_max_w=17_250.0,
        battery=battery,
        evs=evs,
        appliances=appliances,
        start_minute=START_MINUTE,
    )


def _plan_range(args: tuple[int, int, int]) -> dict:
    from gridflow.scheduling.fleet import plan_home_fast

    start, stop, seed = args
    _data()
    fallback, cost, build_s, plan_s = 0, 0.0, 0.0, 0.0
    for index in range(start, stop):
        t0 = time.perf_counter()
        problem = household(index, seed)
        t1 = time.perf_counter()
        plan = plan_home_fast(problem)
        plan_s += time.perf_counter() - t1
        build_s += t1 - t0
        fallback += plan.solver != "heap+lp"
        cost += plan.cost
    return {"n": stop - start, "fallback": fallback, "cost": cost, "build_s": build_s, "plan_s": plan_s}


def gap(n: int, seed: int) -> None:
    from gridflow.scheduling.fleet import plan_home_fast
    from gridflow.scheduling.home_milp import solve_home

    rows = []
    for index in range(n):
        problem = household(index, seed)
        t0 = time.perf_counter()
        fast = plan_home_fast(problem)
        t1 = time.perf_counter()
        exact = solve_home(problem)
        t2 = time.perf_counter()
        assert not fast.violations(problem) and not exact.violations(problem)
        rows.append((fast.cost, exact.cost, t1 - t0, t2 - t1, fast.solver != "heap+lp", exact.optimal))
    fast_cost, exact_cost, fast_s, exact_s, fell_back, optimal = (np.array(c) for c in zip(*rows))
    diff = fast_cost - exact_cost
    print(f"gap over {n} households (seed {seed}):")
    print(f"  mean daily cost: fleet planner {fast_cost.mean():.4f} EUR, MILP {exact_cost.mean():.4f} EUR")
    print(
        f"  extra cost of the fleet planner: mean {diff.mean():.5f} EUR, p95 {np.percentile(diff, 95):.5f}, max {diff.max():.5f}"
    )
    print(f"  households where it is within 0.1 cent of the MILP: {np.mean(diff < 1e-3):.1%}")
    print(f"  fell back to the MILP: {int(fell_back.sum())}; MILP proven optimal: {int(optimal.sum())} of {n}")
    print(
        f"  time per household: fleet planner {1000 * fast_s.mean():.1f} ms (p95 {1000 * np.percentile(fast_s, 95):.1f}), "
        f"MILP {1000 * exact_s.mean():.1f} ms (p95 {1000 * np.percentile(exact_s, 95):.1f})"
    )


def fleet(n: int, processes: int, seed: int) -> None:
    chunk = 500
    ranges = [(s, min(s + chunk, n), seed) for s in range(0, n, chunk)]
    t0 = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(processes, initializer=_data) as pool:
        parts = pool.map(_plan_range, ranges, chunksize=1)
    wall = time.perf_counter() - t0
    done = sum(p["n"] for p in parts)
    plan_s, build_s = sum(p["plan_s"] for p in parts), sum(p["build_s"] for p in parts)
    print(f"fleet: {done} households on {processes} processes in {wall:.1f} s wall (data loading included)")
    print(
        f"  planning {1000 * plan_s / done:.2f} ms CPU per household, building the homes {1000 * build_s / done:.2f} ms"
    )
    print(
        f"  fell back to the MILP: {sum(p['fallback'] for p in parts)}; mean daily cost {sum(p['cost'] for p in parts) / done:.4f} EUR"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gap", type=int, default=300, help="households compared with the MILP (0: skip)")
    parser.add_argument("--households", type=int, default=50_000, help="fleet size (0: skip)")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.gap:
        gap(args.gap, args.seed)
    if args.households:
        fleet(args.households, args.processes, args.seed)


if __name__ == "__main__":
    main()
