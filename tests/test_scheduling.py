"""Appliance scheduling: heap scheduler, MILP reference and model, against brute force and hand-worked cases.

``Schedule.violations`` is the feasibility oracle. Brute force enumerates every placement of the fixed and
deferrable loads; regulatable loads are checked with the max-flow/min-cut condition (for every subset S of
them, their energy fits into ``sum_t min(breaker room_t, sum_{i in S, t in window_i} power_i) * slot_h``).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridflow.scheduling.heap_scheduler import ScheduleInfeasible, cheapest_slots, cheapest_window_start, schedule_heap
from gridflow.scheduling.milp import solve_milp
from gridflow.scheduling.model import Appliance, Problem, Schedule, Tariff
from gridflow.scheduling.scenarios import (
    APPLIANCES,
    USAGE_LEVELS,
    cost_reduction_percent,
    synthetic_day_ahead_price,
    touhs_problem,
    unscheduled_baseline,
)


def fast(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# ---------------------------------------------------------------- random households


@st.composite
def appliances(draw, name, n_slots, kinds, max_window, max_duration, max_margin):
    kind = draw(st.sampled_from(kinds))
    power_w = draw(st.integers(1, 30)) * 100.0
    alpha = draw(st.integers(0, n_slots - 1))
    beta = draw(st.integers(alpha + 1, min(n_slots, alpha + max_window)))
    duration = draw(st.integers(1, min(beta - alpha, max_duration)))
    if kind == "fixed":
        return Appliance(name, kind, power_w, duration, alpha, beta)
    margin = draw(st.integers(0, max_margin))
    due = draw(st.none() | st.integers(alpha + duration, beta))
    if kind == "deferrable":
        return Appliance(name, kind, power_w, duration, alpha, beta, margin, due, draw(st.booleans()))
    fraction = draw(st.none() | st.floats(0.05, 1.0))
    energy_wh = None if fraction is None else fraction * power_w * duration  # for 1 h slots: callers rescale
    return Appliance(name, kind, power_w, duration, alpha, beta, margin, due, energy_wh=energy_wh)


@st.composite
def households(
    draw,
    n_apps=(2, 5),
    n_slots=(24, 48),
    kinds=("fixed", "deferrable", "regulatable"),
    max_window=12,
    max_duration=4,
    max_margin=2,
):
    horizon = draw(st.integers(*n_slots))
    slot_minutes = draw(st.sampled_from([15, 30, 60]))
    count = draw(st.integers(*n_apps))
    apps = [draw(appliances(f"a{i}", horizon, kinds, max_window, max_duration, max_margin)) for i in range(count)]
    if slot_minutes != 60:  # energies were drawn for 1 h slots: rescale to the slot length
        apps = [replace(a, energy_wh=a.energy_wh * slot_minutes / 60) if a.energy_wh is not None else a for a in apps]
    prices = draw(st.lists(st.integers(0, 100).map(lambda c: c / 100), min_size=horizon, max_size=horizon))
    thresholds, multipliers = (), ()
    if draw(st.booleans()):
        blocks = draw(st.integers(1, 2))
        thresholds = tuple(sorted(draw(st.sets(st.integers(1, 40), min_size=blocks, max_size=blocks))))
        thresholds = tuple(t / 20 for t in thresholds)
        steps = sorted(draw(st.lists(st.integers(100, 400), min_size=blocks, max_size=blocks)))
        multipliers = (1.0, *(m / 100 for m in steps))
    pv_w = draw(
        st.none()
        | st.lists(st.sampled_from([0.0, 0.0, 300.0, 800.0, 1500.0, 3000.0]), min_size=horizon, max_size=horizon)
    )
    largest = max(a.power_w for a in apps)
    breaker = draw(st.sampled_from(["none", "loose", "tight"]))  # tight: 0.9 .. 2.5 x the largest appliance
    breaker_w = None if breaker == "none" else 1e5 if breaker == "loose" else largest * draw(st.integers(90, 250)) / 100
    return Problem(tuple(apps), Tariff(prices, slot_minutes, thresholds, multipliers, pv_w, breaker_w))


def tiny(kinds=("fixed", "deferrable", "regulatable"), n_apps=(2, 4)):
    return households(n_apps=n_apps, n_slots=(3, 6), kinds=kinds, max_window=4, max_duration=2, max_margin=1)


# ---------------------------------------------------------------- brute force


def placements(problem: Problem, appliance: Appliance):
    low, high = problem.window(appliance)
    n = appliance.duration_slots
    if appliance.kind == "fixed":
        return [tuple(range(low, high))]
    if appliance.interruptible:
        return list(itertools.combinations(range(low, high), n))
    return [tuple(range(s, s + n)) for s in range(low, high - n + 1)]


def regulatable_fits(problem: Problem, load_w: np.ndarray) -> bool:
    """Max-flow/min-cut (Gale) condition for the regulatable loads on top of ``load_w``."""
    regs = [a for a in problem.appliances if a.kind == "regulatable"]
    breaker_w = problem.tariff.breaker_w
    room_w = np.full(load_w.size, np.inf) if breaker_w is None else breaker_w - load_w
    for size in range(1, len(regs) + 1):
        for subset in itertools.combinations(regs, size):
            reach_w = np.zeros(load_w.size)
            for a in subset:
                low, high = problem.window(a)
                reach_w[low:high] += a.power_w
            supply_wh = np.minimum(np.maximum(room_w, 0), reach_w).sum() * problem.tariff.slot_h
            if sum(problem.required_energy_wh(a) for a in subset) > supply_wh * (1 + 1e-9) + 1e-9:
                return False
    return True


def brute_force(problem: Problem) -> tuple[bool, float]:
    """(feasible, least cost over all placements of the discrete loads; nan if regulatable loads exist)."""
    discrete = [a for a in problem.appliances if a.kind != "regulatable"]
    has_regulatable = len(discrete) < len(problem.appliances)
    breaker_w = problem.tariff.breaker_w
    best, feasible = math.inf, False
    for choice in itertools.product(*(placements(problem, a) for a in discrete)):
        load_w = np.zeros(problem.horizon_slots)
        for a, slots in zip(discrete, choice):
            load_w[list(slots)] += a.power_w
        if breaker_w is not None and np.any(load_w > breaker_w * (1 + 1e-9)):
            continue
        if has_regulatable:
            if regulatable_fits(problem, load_w):
                return True, math.nan
            continue
        feasible, best = True, min(best, problem.tariff.cost(load_w))
    return feasible, best


def rel_tol(value: float) -> float:
    return 1e-6 * max(1.0, abs(value))


# ---------------------------------------------------------------- properties


@fast(60)
@given(households())
def test_heap_schedule_is_feasible_or_infeasibility_is_real_and_milp_is_no_worse(problem):
    names = {a.name for a in problem.appliances}
    try:
        heap = schedule_heap(problem, search_budget=2000)
    except ScheduleInfeasible as error:
        assert error.appliance in names
        if error.proven:
            with pytest.raises(ScheduleInfeasible):
                solve_milp(problem)
        return
    assert heap.violations(problem) == []
    exact = solve_milp(problem)
    assert exact.schedule.violations(problem) == []
    assert exact.cost <= heap.cost(problem.tariff) + rel_tol(exact.cost)


@fast(150)
@given(tiny())
def test_tiny_households_agree_with_brute_force(problem):
    feasible, best = brute_force(problem)
    try:
        heap = schedule_heap(problem)
    except ScheduleInfeasible as error:
        assert error.proven and not feasible, error
        with pytest.raises(ScheduleInfeasible):
            solve_milp(problem)
        return
    assert feasible and heap.violations(problem) == []
    exact = solve_milp(problem)
    assert exact.schedule.violations(problem) == []
    if not math.isnan(best):
        assert heap.cost(problem.tariff) >= best - 1e-9
        assert abs(exact.cost - best) <= rel_tol(best)


@fast(150)
@given(households(n_apps=(1, 3), n_slots=(4, 10), kinds=("fixed",), max_window=4), st.data())
def test_single_deferrable_load_gets_the_brute_force_optimum(problem, data):
    """Cheapest contiguous window and cheapest-N-slots equal enumerating every placement."""
    extra = data.draw(appliances("flex", problem.horizon_slots, ("deferrable",), 10, 4, 2))
    problem = Problem((*problem.appliances, extra), problem.tariff)
    feasible, best = brute_force(problem)
    try:
        heap = schedule_heap(problem)
    except ScheduleInfeasible:
        assert not feasible
        return
    assert heap.violations(problem) == []
    assert abs(heap.cost(problem.tariff) - best) <= 1e-9


@fast(60)
@given(households(n_apps=(1, 3), n_slots=(4, 24), kinds=("fixed",), max_window=6), st.data())
def test_single_regulatable_load_is_least_cost(problem, data):
    """Water-filling over PV surplus and IBR blocks equals the exact LP optimum."""
    extra = data.draw(appliances("flex", problem.horizon_slots, ("regulatable",), 24, 6, 2))
    if extra.energy_wh is not None:
        extra = replace(extra, energy_wh=extra.energy_wh * problem.tariff.slot_h)
    problem = Problem((*problem.appliances, extra), problem.tariff)
    try:
        heap = schedule_heap(problem)
    except ScheduleInfeasible:
        with pytest.raises(ScheduleInfeasible):
            solve_milp(problem)
        return
    assert heap.violations(problem) == []
    assert abs(heap.cost(problem.tariff) - solve_milp(problem).cost) <= rel_tol(heap.cost(problem.tariff))


@fast(200)
@given(st.lists(st.none() | st.integers(0, 9), min_size=1, max_size=12), st.integers(1, 5))
def test_window_and_heap_primitives_match_enumeration(values, n):
    costs = np.array([np.inf if v is None else float(v) for v in values])
    runs = [costs[i : i + n].sum() for i in range(len(costs) - n + 1)]
    finite_runs = [r for r in runs if np.isfinite(r)]
    start = cheapest_window_start(costs, n)
    assert (start is None) == (not finite_runs)
    if start is not None:
        assert costs[start : start + n].sum() == min(finite_runs)
    chosen = cheapest_slots(costs, n)
    finite = sorted(c for c in costs if np.isfinite(c))
    assert (chosen is None) == (len(finite) < n)
    if chosen is not None:
        assert len(set(chosen)) == n and costs[chosen].sum() == sum(finite[:n])


# ---------------------------------------------------------------- hand-worked cases


def one_problem(*appliances, prices, **tariff) -> Problem:
    return Problem(appliances, Tariff(prices, **tariff))


def test_cheapest_contiguous_window_hand_worked():
    problem = one_problem(Appliance("washer", "deferrable", 1000, 2, 0, 6), prices=[5, 1, 1, 5, 5, 1])
    schedule = schedule_heap(problem)
    assert schedule.power_w == {"washer": {1: 1000.0, 2: 1000.0}}
    assert schedule.cost(problem.tariff) == pytest.approx(2.0)  # 2 kWh at 1 / kWh
    assert solve_milp(problem).cost == pytest.approx(2.0)


def test_cheapest_slots_of_an_interruptible_load_hand_worked():
    problem = one_problem(
        Appliance("dryer", "deferrable", 1000, 3, 0, 6, interruptible=True), prices=[5, 1, 1, 5, 5, 1]
    )
    assert sorted(schedule_heap(problem).power_w["dryer"]) == [1, 2, 5]
    assert solve_milp(problem).cost == pytest.approx(3.0)


def test_tariff_cost_with_ibr_and_pv_hand_worked():
    tariff = Tariff([0.5, 0.5], 60, ibr_thresholds_kwh=[1.0], ibr_multipliers=[1, 2], pv_w=[500, 500])
    # slot 0: 2500 W - 500 W PV = 2 kWh: 1 kWh at 0.5 + 1 kWh at 1.0; slot 1: PV covers the 300 W load
    assert tariff.slot_costs([2500, 300]) == pytest.approx([1.5, 0.0])
    assert Schedule(2, {"a": {0: 2500.0}, "b": {1: 300.0}}).cost(tariff) == pytest.approx(1.5)
    half_hour = Tariff([0.5], 30, ibr_thresholds_kwh=[1.0], ibr_multipliers=[1, 2])
    assert half_hour.cost([4000]) == pytest.approx(0.5 + 2 * 0.5 * 1.0)  # 2 kWh in a 30 min slot


def test_regulatable_load_spreads_over_ibr_blocks():
    ev = Appliance("ev", "regulatable", 2000, 1, 0, 2, energy_wh=2000)
    problem = one_problem(ev, prices=[1, 1], ibr_thresholds_kwh=[1.0], ibr_multipliers=[1, 3])
    schedule = schedule_heap(problem)
    assert schedule.power_w["ev"] == pytest.approx({0: 1000.0, 1: 1000.0})  # 2 x 1 kWh at 1, not 1 + 3
    assert schedule.cost(problem.tariff) == pytest.approx(2.0) == solve_milp(problem).cost


def test_pv_surplus_is_free_and_breaker_slots_are_skipped():
    pv_problem = one_problem(Appliance("washer", "deferrable", 1000, 1, 0, 3), prices=[1, 1, 1], pv_w=[0, 2000, 0])
    assert schedule_heap(pv_problem).power_w["washer"] == {1: 1000.0}
    breaker_problem = one_problem(
        Appliance("kettle", "fixed", 2000, 1, 1, 2),
        Appliance("washer", "deferrable", 1000, 1, 0, 3),
        prices=[1, 0, 1],
        breaker_w=2500,
    )
    schedule = schedule_heap(breaker_problem)
    assert schedule.power_w["washer"] == {0: 1000.0} and schedule.violations(breaker_problem) == []


def test_greedy_order_conflict_is_repaired_by_the_search():
    problem = one_problem(
        Appliance("big", "deferrable", 700, 2, 0, 4),
        Appliance("small", "deferrable", 600, 2, 0, 2),
        prices=[1, 1, 5, 5],
        breaker_w=1000,
    )
    schedule = schedule_heap(problem)  # greedy puts "big" on [0, 2) and leaves "small" no room
    assert schedule.violations(problem) == []
    assert schedule.start_slot("big") == 2 and schedule.start_slot("small") == 0
    assert schedule.cost(problem.tariff) == pytest.approx(8.2) == solve_milp(problem).cost


def test_regulatable_conflict_is_repaired_by_max_flow():
    problem = one_problem(
        Appliance("ev", "regulatable", 1000, 2, 0, 3),
        Appliance("pump", "regulatable", 1000, 1, 0, 1),
        prices=[1, 2, 3],
        breaker_w=1000,
    )
    schedule = schedule_heap(problem)  # water-filling the EV first takes slot 0, which the pump needs
    assert schedule.violations(problem) == []
    assert schedule.power_w["pump"] == {0: 1000.0}


def test_infeasible_problems_name_the_appliance():
    kettle = one_problem(Appliance("kettle", "fixed", 3000, 1, 0, 1), prices=[1, 1], breaker_w=2000)
    with pytest.raises(ScheduleInfeasible, match="kettle") as error:
        schedule_heap(kettle)
    assert error.value.appliance == "kettle" and error.value.proven
    with pytest.raises(ScheduleInfeasible, match="kettle"):
        solve_milp(kettle)
    dryer = one_problem(
        Appliance("fridge", "fixed", 800, 3, 0, 3),
        Appliance("dryer", "deferrable", 500, 1, 0, 3),
        prices=[1, 1, 1],
        breaker_w=1000,
    )
    with pytest.raises(ScheduleInfeasible, match="dryer") as error:
        schedule_heap(dryer)
    assert error.value.appliance == "dryer" and error.value.proven
    with pytest.raises(ScheduleInfeasible):
        solve_milp(dryer)


def test_milp_comfort_weight_and_margin():
    washer = Appliance("washer", "deferrable", 1000, 1, 0, 6)
    problem = one_problem(washer, prices=[1, 1, 1, 5, 5, 0.5])
    assert solve_milp(problem).schedule.start_slot("washer") == 5
    comfortable = solve_milp(problem, comfort_weight=1.0)  # 5 slots late cost 5 > 0.5 saved
    assert comfortable.schedule.start_slot("washer") == 0 and comfortable.comfort_deviation_slots == 0
    margin = one_problem(
        Appliance("washer", "deferrable", 1000, 1, 2, 3, comfort_margin_slots=2), prices=[0.1, 1, 1, 1, 1, 1]
    )  # window [2, 3) stretched to [0, 5)
    result = solve_milp(margin, comfort_weight=0.2)
    assert result.schedule.start_slot("washer") == 0 and result.comfort_deviation_slots == 2
    assert result.objective == pytest.approx(0.1 + 0.2 * 2)
    assert schedule_heap(margin).start_slot("washer") == 0
    with pytest.raises(ValueError, match="comfort_weight"):
        solve_milp(margin, comfort_weight=-1)


def test_load_profile_and_peak_to_average_ratio():
    schedule = Schedule(4, {"a": {0: 1000.0, 1: 1000.0}, "b": {1: 2000.0}})
    assert schedule.load_profile_w().tolist() == [1000.0, 3000.0, 0.0, 0.0]
    assert schedule.peak_to_average_ratio() == pytest.approx(3000 / 1000)
    assert math.isnan(Schedule(4).peak_to_average_ratio())
    with pytest.raises(ValueError, match="horizon"):
        schedule.load_profile_w(1)


# ---------------------------------------------------------------- the oracle itself

ORACLE = one_problem(
    Appliance("tv", "fixed", 300, 2, 1, 3),
    Appliance("washer", "deferrable", 1000, 2, 0, 4),
    Appliance("dryer", "deferrable", 500, 2, 0, 4, interruptible=True),
    Appliance("ev", "regulatable", 1000, 1, 2, 4, energy_wh=1500),
    prices=[1, 1, 1, 1],
    breaker_w=2500,
)
GOOD = {
    "tv": {1: 300.0, 2: 300.0},
    "washer": {0: 1000.0, 1: 1000.0},
    "dryer": {0: 500.0, 3: 500.0},
    "ev": {2: 1000.0, 3: 500.0},
}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"tv": {0: 300.0, 1: 300.0}}, "must start at alpha_slot"),
        ({"washer": {0: 1000.0, 2: 1000.0}}, "interrupted"),
        ({"washer": {0: 1000.0, 1: 1000.0, 2: 1000.0}}, "runs 3 slots"),
        ({"washer": {0: 900.0, 1: 1000.0}}, "power != power_w"),
        ({"dryer": {0: 500.0}}, "runs 1 slots"),
        ({"ev": {2: 1000.0}}, "delivers 1000 Wh, requires 1500 Wh"),
        ({"ev": {2: 1200.0, 3: 300.0}}, "above power_w"),
        ({"ev": {1: 500.0, 2: 1000.0}}, "outside its allowed window [2, 4)"),
        ({"washer": {2: 1000.0, 3: 1000.0}, "dryer": {2: 500.0, 3: 500.0}}, "breaker"),
        ({"heater": {0: 100.0}}, "not an appliance"),
        ({"washer": {}}, "runs 0 slots"),
    ],
)
def test_violations_catch_each_broken_constraint(change, message):
    assert Schedule(4, GOOD).violations(ORACLE) == []
    found = Schedule(4, {**GOOD, **change}).violations(ORACLE)
    assert any(message in line for line in found), found
    assert any("horizon" in line for line in Schedule(5, GOOD).violations(ORACLE))


# ---------------------------------------------------------------- bad inputs


def app(**changes):
    fields = {
        "name": "x",
        "kind": "deferrable",
        "power_w": 1000,
        "duration_slots": 2,
        "alpha_slot": 0,
        "beta_slot": 4,
        **changes,
    }
    return Appliance(**fields)


def tariff(**changes):
    return Tariff(**{"price_per_kwh": [1.0] * 4, **changes})


@pytest.mark.parametrize(
    "build, field",
    [
        (lambda: app(name=""), "name"),
        (lambda: app(kind="boiler"), "kind"),
        (lambda: app(power_w=0), "power_w"),
        (lambda: app(power_w=60_000), "power_w"),
        (lambda: app(power_w=float("nan")), "power_w"),
        (lambda: app(duration_slots=0), "duration_slots"),
        (lambda: app(duration_slots=5), "duration_slots"),
        (lambda: app(alpha_slot=-1), "alpha_slot"),
        (lambda: app(alpha_slot=1.5), "alpha_slot"),
        (lambda: app(beta_slot=0), "beta_slot"),
        (lambda: app(kind="fixed", comfort_margin_slots=1), "comfort_margin_slots"),
        (lambda: app(due_slot=5), "due_slot"),
        (lambda: app(kind="fixed", due_slot=2), "due_slot"),
        (lambda: app(kind="fixed", interruptible=True), "interruptible"),
        (lambda: app(energy_wh=100), "energy_wh"),
        (lambda: app(kind="regulatable", energy_wh=-5), "energy_wh"),
        (lambda: tariff(slot_minutes=7), "slot_minutes"),
        (lambda: tariff(slot_minutes=90), "slot_minutes"),
        (lambda: tariff(price_per_kwh=[1, -1]), "price_per_kwh"),
        (lambda: tariff(price_per_kwh=[]), "price_per_kwh"),
        (lambda: tariff(price_per_kwh=[1, float("inf")]), "price_per_kwh"),
        (lambda: tariff(ibr_thresholds_kwh=[2, 1], ibr_multipliers=[1, 2, 3]), "ibr_thresholds_kwh"),
        (lambda: tariff(ibr_thresholds_kwh=[1], ibr_multipliers=[1]), "ibr_multipliers"),
        (lambda: tariff(ibr_thresholds_kwh=[1], ibr_multipliers=[2, 1]), "ibr_multipliers"),
        (lambda: tariff(pv_w=[0, 0]), "pv_w"),
        (lambda: tariff(breaker_w=0), "breaker_w"),
        (lambda: Problem((app(beta_slot=4),), tariff(price_per_kwh=[1, 1])), "beta_slot"),
        (lambda: Problem((app(), app()), tariff()), "name"),
        (lambda: Problem((app(kind="regulatable", energy_wh=10_000),), tariff()), "energy_wh"),
        (lambda: Problem((app(alpha_slot=1, due_slot=2),), tariff()), "due_slot"),
        (lambda: Schedule(0), "horizon_slots"),
        (lambda: Schedule(4, {"x": {0: -5.0}}), "power_w"),
        (lambda: touhs_problem("extreme", [1.0] * 24), "usage"),
        (lambda: touhs_problem("light", [1.0] * 23), "price_per_kwh"),
    ],
)
def test_bad_inputs_raise_value_error_naming_the_field(build, field):
    with pytest.raises(ValueError, match=field):
        build()


# ---------------------------------------------------------------- Touhs scenarios


def test_touhs_table_matches_the_paper():
    expected = {
        "washing_machine": ("deferrable", 1000),
        "dishwasher": ("deferrable", 1800),
        "oven": ("deferrable", 2300),
        "ev": ("regulatable", 5000),
        "pump": ("regulatable", 800),
        "heater": ("regulatable", 1300),
        "lights": ("fixed", 200),
        "tv": ("fixed", 300),
    }
    assert {name: row[:2] for name, row in APPLIANCES.items()} == expected


@pytest.mark.parametrize("slot_minutes", [60, 15])
@pytest.mark.parametrize("usage", USAGE_LEVELS)
def test_touhs_households_schedule_below_the_unscheduled_baseline(usage, slot_minutes):
    problem = touhs_problem(usage, synthetic_day_ahead_price(slot_minutes), slot_minutes)
    baseline = unscheduled_baseline(problem)
    for a in problem.appliances:
        assert baseline.start_slot(a.name) == a.alpha_slot
        if a.kind != "regulatable":
            assert len(baseline.power_w[a.name]) == a.duration_slots
    heap = schedule_heap(problem)
    assert heap.violations(problem) == []
    exact = solve_milp(problem)
    assert exact.cost <= heap.cost(problem.tariff) + rel_tol(exact.cost)
    assert cost_reduction_percent(problem, heap) > 10.0
    assert heap.cost(problem.tariff) < baseline.cost(problem.tariff)
