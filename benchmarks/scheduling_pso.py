"""Lin & Hu 2018 constrained PSO: the case study before/after, the gap to the MILP optimum, and timing.

1. Case study (``gridflow.scheduling.lin_hu``: Table 3 runs with assumed ratings, base load, RTP and
   5-level IBR on 1440 one-minute slots): PAR and cost unscheduled vs PSO (50 particles x 200
   iterations, ``--seeds`` seeds; "pso" is the default with the greedy start particle and polishing,
   "swarm only" the bare swarm (particle 0 at alpha, the rest random, no polish), "start only" the better
   of the alpha and greedy placements) vs the MILP optimum of the same objective
   ``cost + w_comfort / w_cost * sum |s - alpha|``.
2. Gap on mid-size households (``--gap-households`` synthetic days of 10 non-interruptible loads on
   15-minute slots, where HiGHS proves the optimum quickly; on 1-minute slots it needs minutes).
3. Timing on synthetic 50-appliance households (1440 one-minute slots, the case study's base load and
   tariff, 9.2 kW breaker): PSO (50 x 200) ms per household, the heap scheduler's ms (no comfort term)
   and the MILP's time on the first household (``--milp-time-limit``), all in this run. Times are the
   median over households x ``--repeat`` runs.

    python benchmarks/scheduling_pso.py [--seeds 5] [--households 5] [--repeat 3] [--milp-time-limit 300]
    python benchmarks/scheduling_pso.py --timing-only [--no-milp]   # section 3 only (quick iteration)
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from gridflow.scheduling.heap_scheduler import ScheduleInfeasible, schedule_heap
from gridflow.scheduling.lin_hu import W_COMFORT, W_COST, base_load_appliances, lin_hu_problem, lin_hu_tariff
from gridflow.scheduling.milp import solve_milp
from gridflow.scheduling.model import Appliance, Problem
from gridflow.scheduling.pso import schedule_pso
from gridflow.scheduling.scenarios import unscheduled_baseline

PAPER = {"par": -13.97, "cost": -0.85}


def synthetic_household(seed: int, n_appliances: int = 50, slot_minutes: int = 1) -> Problem:
    """The case study's base load and tariff (9.2 kW breaker) with ``n_appliances`` non-interruptible loads:
    100-2500 W, 10-120 min, windows up to 4 h longer than the run, comfort margins up to 2 h (in slots of
    ``slot_minutes``, durations rounded up)."""
    rng, n_slots = np.random.default_rng(seed), 1440 // slot_minutes
    loads = []
    for i in range(n_appliances):
        duration = -(-int(rng.integers(10, 121)) // slot_minutes)
        alpha = int(rng.integers(0, n_slots - duration))
        beta = min(n_slots, alpha + duration + int(rng.integers(0, 241)) // slot_minutes)
        loads.append(
            Appliance(
                f"load_{i:02d}",
                "deferrable",
                float(rng.integers(1, 26) * 100),
                duration,
                alpha,
                beta,
                int(rng.integers(0, 121)) // slot_minutes,
            )
        )
    tariff = lin_hu_tariff(breaker_w=40.0 * 230.0, slot_minutes=slot_minutes)
    return Problem((*loads, *base_load_appliances(slot_minutes)), tariff)


def deviation(problem: Problem, schedule) -> int:
    return sum(
        abs(schedule.start_slot(a.name) - a.alpha_slot)
        for a in problem.appliances
        if a.kind == "deferrable" and not a.interruptible
    )


def objective(problem: Problem, schedule) -> float:
    """``cost + w_comfort / w_cost * deviation``: the MILP's objective (PSO's divided by ``w_cost``)."""
    return schedule.cost(problem.tariff) + W_COMFORT / W_COST * deviation(problem, schedule)


def change(after: float, before: float) -> str:
    return f"{100.0 * (after / before - 1.0):+.2f}%"


def case_study(seeds: int) -> None:
    problem = lin_hu_problem()
    before = unscheduled_baseline(problem)
    exact = solve_milp(problem, comfort_weight=W_COMFORT / W_COST)
    par0, cost0 = before.peak_to_average_ratio(), before.cost(problem.tariff)
    print(f"1. Lin & Hu case study: 1440 one-minute slots, w_comfort/w_cost = {W_COMFORT / W_COST:g} per minute")
    print(f"{'':<26}{'PAR':>7}{'PAR chg':>9}{'cost':>9}{'cost chg':>10}{'objective':>11}{'gap':>9}{'ms':>8}")
    print(f"{'unscheduled':<26}{par0:>7.3f}{'':>9}{cost0:>9.4f}{'':>10}{objective(problem, before):>11.5f}")
    for extras in (True, False):
        for seed in range(seeds):
            started = time.perf_counter()
            result = schedule_pso(
                problem, w_cost=W_COST, w_comfort=W_COMFORT, seed=seed, polish=extras, greedy_start=extras
            )
            elapsed_ms = 1000 * (time.perf_counter() - started)
            assert result.schedule.violations(problem) == [] and result.fallback is None
            value = result.objective / W_COST
            label = f"{'pso' if extras else 'swarm only'} seed {seed}"
            print(
                f"{label:<26}{result.peak_to_average_ratio:>7.3f}{change(result.peak_to_average_ratio, par0):>9}"
                f"{result.cost:>9.4f}{change(result.cost, cost0):>10}{value:>11.5f}"
                f"{change(value, exact.objective):>9}{elapsed_ms:>8.1f}"
            )
    start = schedule_pso(problem, w_cost=W_COST, w_comfort=W_COMFORT, particles=2, iterations=1, polish=False)
    print(
        f"{'start only (alpha, greedy)':<26}{start.peak_to_average_ratio:>7.3f}"
        f"{change(start.peak_to_average_ratio, par0):>9}{start.cost:>9.4f}{change(start.cost, cost0):>10}"
        f"{start.objective / W_COST:>11.5f}{change(start.objective / W_COST, exact.objective):>9}"
    )
    par = exact.schedule.peak_to_average_ratio()
    print(
        f"{'milp (optimal=' + str(exact.optimal) + ')':<26}{par:>7.3f}{change(par, par0):>9}{exact.cost:>9.4f}"
        f"{change(exact.cost, cost0):>10}{exact.objective:>11.5f}{'':>9}{1000 * exact.solve_time_s:>8.0f}"
    )
    print(f"{'paper (Lin & Hu 2018)':<26}{'':>7}{PAPER['par']:>+8.2f}%{'':>9}{PAPER['cost']:>+9.2f}%")
    starts = {
        a.name: (a.alpha_slot, exact.schedule.start_slot(a.name)) for a in problem.appliances if a.kind == "deferrable"
    }
    print("starts alpha -> optimum (minute of day): " + ", ".join(f"{k} {a}->{s}" for k, (a, s) in starts.items()))


def gap_households(count: int, slot_minutes: int = 15) -> None:
    comfort = W_COMFORT * slot_minutes  # the same weight per minute of deviation
    print(
        f"\n2. Gap to the MILP optimum: {count} synthetic households of 10 loads, {1440 // slot_minutes} slots "
        f"of {slot_minutes} min"
    )
    print(
        f"{'household':<11}{'milp obj':>10}{'milp s':>8}{'pso obj':>10}{'gap':>9}{'swarm only':>11}"
        f"{'start only':>11}{'pso ms':>8}"
    )
    for seed in range(count):
        problem = synthetic_household(100 + seed, 10, slot_minutes)
        exact = solve_milp(problem, comfort_weight=comfort / W_COST, time_limit_s=120)
        started = time.perf_counter()
        polished = schedule_pso(problem, w_cost=W_COST, w_comfort=comfort, seed=seed)
        elapsed_ms = 1000 * (time.perf_counter() - started)
        swarm = schedule_pso(problem, w_cost=W_COST, w_comfort=comfort, seed=seed, polish=False, greedy_start=False)
        start = schedule_pso(problem, w_cost=W_COST, w_comfort=comfort, particles=2, iterations=1, polish=False)
        assert polished.schedule.violations(problem) == [] == swarm.schedule.violations(problem)
        print(
            f"{seed:<11}{exact.objective:>10.4f}{exact.solve_time_s:>8.2f}{polished.objective / W_COST:>10.4f}"
            f"{change(polished.objective / W_COST, exact.objective):>9}"
            f"{change(swarm.objective / W_COST, exact.objective):>11}"
            f"{change(start.objective / W_COST, exact.objective):>11}{elapsed_ms:>8.1f}"
            f"{'' if exact.optimal else '  (MILP not proven)'}"
        )


def timing(households: int, repeat: int, milp_time_limit_s: float, milp: bool = True) -> None:
    print(f"\n3. Timing: {households} synthetic households of 50 loads, 1440 one-minute slots, 9.2 kW breaker")
    pso_ms, swarm_ms, heap_ms, heap_greedy, rows = [], [], [], [], []
    for seed in range(households):
        problem, heap = synthetic_household(seed), None
        try:  # untimed: does the greedy pass alone place every load, or is the repair search needed?
            schedule_heap(problem, search_budget=0)
            greedy = True
        except ScheduleInfeasible:
            greedy = False
        for run in range(repeat):
            started = time.perf_counter()
            result = schedule_pso(problem, w_cost=W_COST, w_comfort=W_COMFORT, seed=run)
            pso_ms.append(1000 * (time.perf_counter() - started))
            started = time.perf_counter()
            swarm = schedule_pso(
                problem, w_cost=W_COST, w_comfort=W_COMFORT, seed=run, polish=False, greedy_start=False
            )
            swarm_ms.append(1000 * (time.perf_counter() - started))
            started = time.perf_counter()
            try:
                heap = schedule_heap(problem)
            except ScheduleInfeasible as error:  # the greedy pass and its bounded search found no room
                heap = error
            heap_ms.append(1000 * (time.perf_counter() - started))
            heap_greedy.append(greedy)
        assert result.schedule.violations(problem) == []
        rows.append((seed, result, heap, problem, swarm))
    pso, heap = statistics.median(pso_ms), statistics.median(heap_ms)
    print(f"PSO 50 x 200 (greedy start, polish): {pso:7.1f} ms per household (median; max {max(pso_ms):.1f})")
    print(f"swarm only 50 x 200:                 {statistics.median(swarm_ms):7.1f} ms per household (median)")
    print(
        f"heap scheduler:                      {heap:7.1f} ms per household (median; max {max(heap_ms):.1f})"
        f"  -> PSO / heap = {pso / heap:.1f}x"
    )
    print(
        f"heap scheduler spread:               min {min(heap_ms):.2f}, median {heap:.2f}, max {max(heap_ms):.2f} ms"
        f" over {len(heap_ms)} runs; PSO min {min(pso_ms):.1f} ms"
    )
    for label, chosen in (("greedy pass only", True), ("repair search", False)):
        times = [ms for ms, greedy in zip(heap_ms, heap_greedy) if greedy == chosen]
        if times and len(times) < len(heap_ms):
            print(
                f"heap, {label + ':':<31}min {min(times):.2f}, median {statistics.median(times):.2f}, max "
                f"{max(times):.2f} ms over {len(times)} runs ({len(times) // repeat} households)"
            )
    for seed, result, heap_schedule, problem, swarm in rows:
        heap_text = (
            f"no schedule ({heap_schedule.reason[:40]}...)"
            if isinstance(heap_schedule, Exception)
            else f"{objective(problem, heap_schedule):.4f}"
        )
        print(
            f"  household {seed}: PSO objective {result.objective / W_COST:.4f} (fallback {result.fallback}, "
            f"PAR {result.peak_to_average_ratio:.2f}), swarm only {swarm.objective / W_COST:.4f} (fallback "
            f"{swarm.fallback}), heap {heap_text}"
        )
    if not milp:
        return
    problem, pso_result = rows[0][3], rows[0][1]
    started = time.perf_counter()
    try:
        exact = solve_milp(problem, comfort_weight=W_COMFORT / W_COST, time_limit_s=milp_time_limit_s, mip_rel_gap=1e-4)
    except RuntimeError as error:  # HiGHS stopped at the time limit without any schedule
        print(f"MILP on household 0: no schedule within {time.perf_counter() - started:.0f} s ({error})")
        return
    print(
        f"MILP on household 0: {exact.solve_time_s:.1f} s (optimal={exact.optimal}, mip_rel_gap 1e-4, limit "
        f"{milp_time_limit_s:g} s), objective {exact.objective:.4f}; PSO "
        f"{change(pso_result.objective / W_COST, exact.objective)} vs it; MILP time / PSO time = "
        f"{1000 * exact.solve_time_s / pso:.0f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--gap-households", type=int, default=5)
    parser.add_argument("--households", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--milp-time-limit", type=float, default=300.0)
    parser.add_argument("--timing-only", action="store_true", help="run section 3 (timing) only")
    parser.add_argument("--no-milp", action="store_true", help="skip the MILP on household 0 in section 3")
    args = parser.parse_args()
    if not args.timing_only:
        case_study(args.seeds)
        gap_households(args.gap_households)
    timing(args.households, args.repeat, args.milp_time_limit, milp=not args.no_milp)


if __name__ == "__main__":
    main()
