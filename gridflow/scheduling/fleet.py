"""Fleet planning: every household's day with PV, battery and EV, fast enough for a city on a few cores.

:func:`plan_home_fast` decomposes the exact model of :mod:`gridflow.scheduling.home_milp`:

1. the appliances are placed by the heap scheduler (Touhs et al.) against each slot's marginal energy
   price (the import price, or the export price where PV exceeds the base load);
2. the battery, the EVs and the grid exchange are an LP (HiGHS through ``highspy``, one solver instance per
   thread, no presolve: it costs more than it saves at this size);
3. the appliances are placed again against the LP's marginal prices (the duals of the energy balance: the
   battery moves cheap energy in time, so the best slot for a washer changes) and the LP solved again; the
   cheaper plan is kept;
4. an EV's minimum charging power is rounded (a slot below half the minimum is off, the others run at
   least at the minimum) and the LP solved once more;
5. the plan is checked by :meth:`HomePlan.violations`; a plan that breaks any constraint (an exclusivity
   the LP does not model, where prices are negative) or an LP that has no solution falls back to the exact
   MILP, so the fleet planner never returns an infeasible plan and never reports a request infeasible that
   the MILP could plan.

The gap to the MILP is measured by ``benchmarks/scheduling_fleet.py``.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

import numpy as np

from gridflow.scheduling.heap_scheduler import ScheduleInfeasible, schedule_heap
from gridflow.scheduling.home import HomePlan, HomeProblem
from gridflow.scheduling.home_milp import _Model, _plan, solve_home
from gridflow.scheduling.model import Problem, Schedule, Tariff

_SOLVERS = threading.local()  # one HiGHS instance per thread: an instance is not safe to share, and Flink's
# Python workers run several subtasks' bundles on threads of one process (all of them in local loopback mode)


def _highs() -> Any:
    highs = getattr(_SOLVERS, "highs", None)
    if highs is None:
        import highspy

        highs = highspy.Highs()
        highs.setOptionValue("output_flag", False)
        highs.setOptionValue("presolve", "off")
        _SOLVERS.highs = highs
    return highs


class _HomeLP:
    """One home's LP with its appliances' load as a given base load, kept in the thread's HiGHS instance:
    a new placement of the appliances changes only the balance rows' bounds and a rounded EV only its
    columns' bounds, so HiGHS re-solves from the last basis instead of from scratch."""

    def __init__(self, problem: HomeProblem):
        import highspy
        from scipy import sparse

        self.problem = problem
        self.rest = dataclasses.replace(problem, appliances=())
        self.model = model = _Model(self.rest, elastic=False, relax=True)
        b = model.b
        matrix = sparse.csc_array((b.vals, (b.rows, b.cols)), shape=(len(b.row_lb), len(b.c)))
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = matrix.shape[1], matrix.shape[0]
        lp.col_cost_ = np.asarray(b.c, dtype=np.float64)
        lp.col_lower_ = np.asarray(b.lb, dtype=np.float64)
        lp.col_upper_ = np.asarray(b.ub, dtype=np.float64)
        lp.row_lower_ = np.asarray(b.row_lb, dtype=np.float64)
        lp.row_upper_ = np.asarray(b.row_ub, dtype=np.float64)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = matrix.shape[1], matrix.shape[0]
        lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = matrix.indptr, matrix.indices, matrix.data
        self.highs = _highs()
        self.highs.passModel(lp)
        self.base_kw = np.asarray(b.row_lb, dtype=np.float64)[model.balance_rows]
        self._optimal = highspy.HighsModelStatus.kOptimal

    def solve(self, appliances: Schedule, ev_bounds: dict | None = None):
        """(plan with ``appliances`` placed, marginal price per kWh of each slot) or None if infeasible."""
        problem, model, highs = self.problem, self.model, self.highs
        rhs = self.base_kw + appliances.load_profile_w(problem.n_slots) / 1000.0
        rows = model.balance_rows.astype(np.int32)
        highs.changeRowsBounds(rows.size, rows, rhs, rhs)
        for name, (low, high) in (ev_bounds or {}).items():
            cols = model.ev[name][0].astype(np.int32)
            highs.changeColsBounds(
                cols.size, cols, np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
            )
        highs.run()
        if highs.getModelStatus() != self._optimal:
            return None
        solution = highs.getSolution()
        x, duals = np.asarray(solution.col_value), np.asarray(solution.row_dual)
        plan = _plan(self.rest, model, x, 0.0, True)
        deviation = sum(
            abs((appliances.start_slot(a.name) or 0) - a.alpha_slot) for a in problem.appliances if a.is_contiguous
        )
        objective = plan.cost + problem.comfort_weight * deviation
        plan = dataclasses.replace(plan, appliances=appliances, objective=objective, solver="heap+lp")
        return plan, duals[model.balance_rows] / problem.slot_h


def _place_appliances(problem: HomeProblem, price_per_kwh: np.ndarray) -> Schedule | None:
    """The heap scheduler's placement of the appliances against ``price_per_kwh`` (shifted to >= 0: the
    appliances' energy is fixed, so a constant shift does not move them)."""
    if not problem.appliances:
        return Schedule(problem.n_slots)
    shifted = price_per_kwh - min(0.0, float(price_per_kwh.min()))
    tariff = Tariff(shifted, slot_minutes=problem.slot_minutes)
    try:
        return schedule_heap(Problem(tuple(problem.appliances), tariff))
    except ScheduleInfeasible:
        return None


def _round_ev_minimum(problem: HomeProblem, plan: HomePlan) -> dict | None:
    """Per-slot bounds that keep every EV at 0 or at least its minimum power (None: nothing to round).

    The slots the LP used most (then the cheapest, by the LP's own order) are switched on until they can
    deliver the session's energy at full power; each runs in ``[min_kw, max_kw]``, the others are off."""
    bounds = {}
    for ev in problem.evs:
        power = plan.ev_w[ev.name][ev.arrival_slot : ev.departure_slot] / 1000.0
        if ev.min_kw <= 0 or not np.any((power > 1e-6) & (power < ev.min_kw - 1e-6)):
            continue
        need_kw_slots = ev.energy_kwh / (ev.efficiency * problem.slot_h)  # kW x slots at the AC side
        on = np.zeros(power.size, dtype=bool)
        for slot in np.argsort(-power, kind="stable"):
            if on.sum() * ev.max_kw >= need_kw_slots - 1e-9 and power[slot] < ev.min_kw / 2:
                break
            on[slot] = True
        bounds[ev.name] = (np.where(on, ev.min_kw, 0.0), np.where(on, ev.max_kw, 0.0))
    return bounds or None


def plan_home_fast(problem: HomeProblem) -> HomePlan:
    """A feasible plan of ``problem`` by the decomposition of the module docstring; the exact MILP where the
    decomposition's plan breaks a constraint (``solver`` then says ``milp (fallback)``)."""
    started = time.perf_counter()
    pi, pe = np.asarray(problem.import_price), np.asarray(problem.export_price)
    surplus = np.asarray(problem.pv_w) > np.asarray(problem.base_load_w)
    lp = _HomeLP(problem)
    best = None
    appliances = _place_appliances(problem, np.where(surplus, pe, pi))
    if appliances is not None:
        best = lp.solve(appliances)
    if best is not None and appliances is not None and problem.appliances:
        again = _place_appliances(problem, best[1])
        if again is not None and again.power_w != appliances.power_w:
            second = lp.solve(again)
            if second is not None and second[0].objective < best[0].objective - 1e-9:
                best = second
    plan = best[0] if best is not None else None
    if plan is not None and (bounds := _round_ev_minimum(problem, plan)) is not None:
        rounded = lp.solve(plan.appliances, bounds)
        plan = rounded[0] if rounded is not None else None
    if plan is None or plan.violations(problem):
        exact = solve_home(problem)
        return dataclasses.replace(exact, solver="milp (fallback)", solve_time_s=time.perf_counter() - started)
    return dataclasses.replace(plan, solve_time_s=time.perf_counter() - started)
