"""Constrained PSO scheduler (Lin & Hu 2018): feasibility, determinism, gap to the MILP, the case study.

``Schedule.violations`` is the feasibility oracle and ``solve_milp`` (same objective, same comfort weight)
the optimum; random households come from the strategies of ``test_scheduling``.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gridflow.scheduling.pso as pso_module
from gridflow.scheduling.heap_scheduler import ScheduleInfeasible
from gridflow.scheduling.lin_hu import TABLE_3, W_COMFORT, W_COST, lin_hu_problem
from gridflow.scheduling.milp import solve_milp
from gridflow.scheduling.model import Appliance, Problem, Tariff
from gridflow.scheduling.pso import PsoResult, _base_load, _Swarm, pso_options, schedule_pso
from gridflow.scheduling.scenarios import unscheduled_baseline
from gridflow.settings import Settings, SettingsError, load_settings
from test_scheduling import fast, households

QUICK = {"particles": 12, "iterations": 25}  # property tests: every constraint, not the optimum


def non_interruptible(problem: Problem) -> Problem:
    return Problem(
        tuple(replace(a, interruptible=False) if a.kind == "deferrable" else a for a in problem.appliances),
        problem.tariff,
    )


def check_result(problem: Problem, result: PsoResult, w_comfort: float = 0.0) -> None:
    """Feasible, and the reported figures are those of the schedule."""
    assert result.schedule.violations(problem) == []
    assert result.feasible == (result.fallback is None)
    assert result.cost == pytest.approx(result.schedule.cost(problem.tariff), rel=1e-9, abs=1e-12)
    assert result.objective == pytest.approx(
        result.cost + w_comfort * result.comfort_deviation_slots, rel=1e-9, abs=1e-12
    )
    par = result.schedule.peak_to_average_ratio()
    assert (
        math.isnan(par) and math.isnan(result.peak_to_average_ratio)
    ) or result.peak_to_average_ratio == pytest.approx(par)


# ---------------------------------------------------------------- properties


@fast(120)
@given(households(), st.integers(0, 2**32 - 1), st.sampled_from([0.0, 0.01, 0.5]))
def test_pso_never_returns_an_infeasible_schedule(problem, seed, w_comfort):
    try:
        result = schedule_pso(problem, w_comfort=w_comfort, seed=seed, **QUICK)
    except ScheduleInfeasible:
        with pytest.raises(ScheduleInfeasible):
            solve_milp(problem)
        return
    check_result(problem, result, w_comfort)


@fast(40)
@given(households(kinds=("fixed", "deferrable"), n_apps=(2, 4), max_margin=3), st.sampled_from([0.0, 0.01, 0.1]))
def test_pso_is_within_two_percent_of_the_milp_optimum(problem, w_comfort):
    problem = non_interruptible(problem)
    try:
        exact = solve_milp(problem, comfort_weight=w_comfort)
    except ScheduleInfeasible:
        with pytest.raises(ScheduleInfeasible):
            schedule_pso(problem, w_comfort=w_comfort, seed=0)
        return
    assert exact.optimal
    for polish, greedy_start in ((True, True), (False, False)):  # the default, and the bare swarm
        result = schedule_pso(problem, w_comfort=w_comfort, seed=0, polish=polish, greedy_start=greedy_start)
        check_result(problem, result, w_comfort)
        assert result.objective <= exact.objective * 1.02 + 1e-9


@fast(40)
@given(households(n_slots=(8, 40), max_window=16, max_margin=4), st.data())
def test_swarm_objective_equals_the_tariff_cost(problem, data):
    """The vectorised evaluation (integer difference arrays, float32 IBR blocks) against Tariff.cost."""
    try:
        base_w, _, movable = _base_load(problem)
    except Exception:  # no room for the base load: nothing to evaluate
        return
    if not movable:
        return
    swarm = _Swarm(problem, base_w, movable, (1.0, 0.25))
    starts = np.array([[data.draw(st.integers(lo, hi)) for lo, hi in zip(swarm.lo, swarm.hi)] for _ in range(3)])
    objective, excess = swarm.evaluate(starts)
    for row, value, over in zip(starts, objective, excess):
        load_w = swarm.profile(row)
        expected = problem.tariff.cost(load_w) + 0.25 * np.abs(row - swarm.alpha).sum()
        assert value == pytest.approx(expected, rel=1e-5, abs=1e-6)
        breaker_w = problem.tariff.breaker_w
        assert (over > 0) == bool(breaker_w is not None and np.any(load_w > breaker_w * (1 + 1e-9) + 1e-2))


def test_same_seed_gives_the_same_schedule():
    problem = lin_hu_problem()
    first, second = (schedule_pso(problem, w_comfort=W_COMFORT, seed=3, polish=False, **QUICK) for _ in range(2))
    assert first.schedule.power_w == second.schedule.power_w and first.objective == second.objective
    from_generator = schedule_pso(problem, w_comfort=W_COMFORT, seed=np.random.default_rng(3), polish=False, **QUICK)
    assert from_generator.schedule.power_w == first.schedule.power_w


# ---------------------------------------------------------------- hand-worked cases


def test_ibr_separates_two_loads_that_would_overlap():
    """Both loads prefer slot 0; together they reach the second IBR block, so the optimum splits them."""
    a = Appliance("kettle", "deferrable", 1000, 1, 0, 1, comfort_margin_slots=2)
    b = Appliance("iron", "deferrable", 1000, 1, 0, 1, comfort_margin_slots=2)
    problem = Problem((a, b), Tariff([1.0, 1.1, 1.1], 60, [1.0], [1.0, 3.0]))
    result = schedule_pso(problem, w_comfort=0.01, seed=0)
    assert sorted((result.schedule.start_slot("kettle"), result.schedule.start_slot("iron"))) == [0, 1]
    assert result.objective == pytest.approx(1.0 + 1.1 + 0.01) == solve_milp(problem, comfort_weight=0.01).objective
    assert result.peak_to_average_ratio == pytest.approx(1000 / (2000 / 3))


def test_fixed_regulatable_and_interruptible_loads_form_the_base_load():
    problem = Problem(
        (
            Appliance("fridge", "fixed", 100, 4, 0, 4),
            Appliance("ev", "regulatable", 2000, 2, 0, 4, energy_wh=2000),
            Appliance("dryer", "deferrable", 500, 2, 0, 4, interruptible=True),
            Appliance("washer", "deferrable", 1000, 1, 0, 4),
        ),
        Tariff([3.0, 1.0, 2.0, 4.0], 60, breaker_w=2600),
    )
    result = schedule_pso(problem, seed=0)
    check_result(problem, result)
    assert result.schedule.power_w["ev"] == {1: 2000.0}  # water-filled into the cheapest slot first
    assert result.fallback is None and result.iterations == 200


def test_only_fixed_loads_leave_nothing_to_search():
    problem = Problem((Appliance("tv", "fixed", 300, 2, 1, 3),), Tariff([1, 1, 1]))
    result = schedule_pso(problem, seed=0)
    assert result.iterations == 0 and result.schedule.power_w == {"tv": {1: 300.0, 2: 300.0}}
    assert math.isnan(result.swarm_objective)


def test_falls_back_to_the_heap_scheduler_when_the_base_load_leaves_no_room():
    """The EV is water-filled into slot 0 before the swarm runs; the washer can only run there."""
    problem = Problem(
        (Appliance("ev", "regulatable", 1000, 1, 0, 3), Appliance("washer", "deferrable", 1000, 1, 0, 1)),
        Tariff([1.0, 2.0, 3.0], 60, breaker_w=1000),
    )
    result = schedule_pso(problem, seed=0)
    check_result(problem, result)
    assert result.fallback == "heap" and not result.feasible
    assert result.schedule.power_w == {"washer": {0: 1000.0}, "ev": {1: 1000.0}}


def test_falls_back_to_the_milp_when_the_heap_search_gives_up(monkeypatch):
    def gives_up(problem):
        raise ScheduleInfeasible("washer", "search budget exhausted", proven=False)

    monkeypatch.setattr(pso_module, "schedule_heap", gives_up)
    problem = Problem(
        (Appliance("ev", "regulatable", 1000, 1, 0, 3), Appliance("washer", "deferrable", 1000, 1, 0, 1)),
        Tariff([1.0, 2.0, 3.0], 60, breaker_w=1000),
    )
    result = schedule_pso(problem, seed=0)
    check_result(problem, result)
    assert result.fallback == "milp"


def test_infeasible_problems_raise_naming_the_appliance():
    problem = Problem(
        (Appliance("kettle", "fixed", 3000, 1, 0, 1), Appliance("washer", "deferrable", 100, 1, 0, 2)),
        Tariff([1, 1], breaker_w=2000),
    )
    with pytest.raises(ScheduleInfeasible, match="kettle"):
        schedule_pso(problem, seed=0)


@pytest.mark.parametrize(
    "change, name",
    [
        ({"particles": 1}, "particles"),
        ({"particles": 2.5}, "particles"),
        ({"iterations": 0}, "iterations"),
        ({"iterations": True}, "iterations"),
        ({"w_cost": -1.0}, "w_cost"),
        ({"w_comfort": math.nan}, "w_comfort"),
        ({"w_cost": 0.0, "w_comfort": 0.0}, "w_cost"),
        ({"inertia": (0.9,)}, "inertia"),
        ({"inertia": (2.0, 0.4)}, "inertia"),
        ({"c1": (5.0, 0.5)}, "c1"),
        ({"c2": (0.5, -1.0)}, "c2"),
        ({"c2": "fast"}, "c2"),
        ({"seed": -1}, "seed"),
        ({"seed": "x"}, "seed"),
        ({"polish": "yes"}, "polish"),
        ({"greedy_start": 1}, "greedy_start"),
    ],
)
def test_bad_parameters_raise_value_error_naming_the_parameter(change, name):
    with pytest.raises(ValueError, match=name):
        schedule_pso(lin_hu_problem(), **change)


def test_parameters_come_from_the_scheduler_settings():
    scheduler = Settings().scheduler
    options = pso_options(scheduler)
    assert options["particles"] == 50 and options["iterations"] == 200 and options["inertia"] == (0.9, 0.4)
    assert options["c1"] == (2.5, 0.5) and options["c2"] == (0.5, 2.5) and options["seed"] == scheduler.seed
    with pytest.raises(SettingsError, match="pso_c1_start"):
        load_settings(overrides=["scheduler.pso_c1_start=9"])


# ---------------------------------------------------------------- Lin & Hu case study


def test_lin_hu_table_3():
    assert {name: row[1:] for name, row in TABLE_3.items()} == {
        "water_boiler": (1035, 1071, 23, 180),
        "steamer_a": (361, 379, 15, 60),
        "steamer_b": (589, 606, 15, 90),
        "steamer_c": (672, 721, 36, 90),
        "steamer_d": (1035, 1084, 24, 90),
    }
    problem = lin_hu_problem()
    boiler = next(a for a in problem.appliances if a.name == "water_boiler")
    assert problem.window(boiler) == (1035 - 180, 1071 + 180) and problem.horizon_slots == 1440


def test_lin_hu_case_study_matches_the_paper_and_the_optimum():
    problem = lin_hu_problem()
    before = unscheduled_baseline(problem)
    result = schedule_pso(problem, w_cost=W_COST, w_comfort=W_COMFORT, seed=0)
    check_result(problem, result, W_COMFORT)
    assert result.peak_to_average_ratio <= before.peak_to_average_ratio() * (1 - 0.1397)  # paper: PAR -13.97 %
    assert result.cost < before.cost(problem.tariff)  # paper: cost -0.85 %
    exact = solve_milp(problem, comfort_weight=W_COMFORT / W_COST)
    assert exact.optimal and result.objective / W_COST <= exact.objective * 1.02
