"""Exact reference scheduler: a mixed-integer linear program solved by HiGHS (``scipy.optimize.milp``).

Variables (per appliance ``i``, slot ``t`` of its allowed window, IBR block ``k``):

* ``z[i, s]`` binary start of a non-interruptible deferrable load (``sum_s z = 1``);
* ``u[i, t]`` binary on-slot of an interruptible deferrable load (``sum_t u = duration_slots``);
* ``x[i, t]`` continuous power in ``[0, power_w]`` of a regulatable load (``sum_t x * slot_h = energy``);
* ``L[t]`` total load, ``L[t] <= breaker_w``; fixed loads enter ``L`` as constants;
* ``y[t, k]`` grid import in IBR block ``k`` (``0 <= y <= block width``) with ``sum_k y[t, k] >= L[t] - pv[t]``
  (PV surplus is not paid for).

Powers are in kW and blocks in average kW over the slot, so the matrix is well scaled; a non-interruptible
load is coupled to ``L`` through the running sum of its start variables (two entries per slot, not
``duration_slots``).

Objective: ``sum price[t] * multiplier[k] * y[t, k]`` (+ ``comfort_weight * sum |s_i - alpha_i|`` over the
non-interruptible deferrable loads). Multipliers are non-decreasing, so the cost is convex in ``L`` and the
LP over the block variables fills cheaper blocks first: the block relaxation is exact.

Sized for up to about 10 appliances x 1440 slots: hourly or 15-minute days solve in tens of milliseconds,
1-minute days in about 1-30 s; with PV on 1-minute slots the LP bound is weak and HiGHS may stop at
``time_limit_s`` with ``optimal=False``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import cast

import numpy as np

from gridflow.scheduling.heap_scheduler import ScheduleInfeasible
from gridflow.scheduling.model import Appliance, Problem, Schedule


@dataclass(frozen=True, eq=False)
class MilpResult:
    """The optimal schedule, its objective (cost + comfort term) and cost (currency), the comfort deviation
    sum (slots), the solver's wall time (s) and whether optimality was proven (False: time limit hit)."""

    schedule: Schedule
    objective: float
    cost: float
    comfort_deviation_slots: int
    solve_time_s: float
    optimal: bool


class _Builder:
    """Columns (objective, bounds, integrality) and sparse rows of the model."""

    def __init__(self):
        self.c, self.lb, self.ub, self.integer = [], [], [], []
        self.rows, self.cols, self.vals, self.row_lb, self.row_ub = [], [], [], [], []

    def columns(self, n: int, cost, low, high, integer: bool) -> np.ndarray:
        start = len(self.c)
        for target, value in ((self.c, cost), (self.lb, low), (self.ub, high)):
            target.extend([float(value)] * n if np.ndim(value) == 0 else np.asarray(value, dtype=float).tolist())
        self.integer += [int(integer)] * n
        return np.arange(start, start + n)

    def row(self, cols, vals, low: float, high: float) -> None:
        index = len(self.row_lb)
        self.rows += [index] * len(cols)
        self.cols += list(cols)
        self.vals += list(vals)
        self.row_lb.append(low)
        self.row_ub.append(high)


def solve_milp(
    problem: Problem, *, comfort_weight: float = 0.0, time_limit_s: float = 60.0, mip_rel_gap: float = 1e-9
) -> MilpResult:
    """Least-cost schedule of ``problem`` (plus ``comfort_weight`` currency per slot of start deviation).

    Parameters
    ----------
    problem : Problem
        Appliances and tariff.
    comfort_weight : float
        ``w2`` in Lin & Hu's objective: cost per slot of ``|start - alpha_slot|`` of each non-interruptible
        deferrable load (>= 0).
    time_limit_s : float
        HiGHS time limit; the best schedule found so far is returned with ``optimal=False``.
    mip_rel_gap : float
        Relative optimality gap at which HiGHS stops (the default proves the optimum to round-off; 1e-6
        is much faster on 1-minute slots with many near-equal placements).

    Returns
    -------
    MilpResult

    Raises
    ------
    ScheduleInfeasible
        No schedule satisfies the constraints (``appliance`` names a fixed load if fixed loads alone exceed
        the breaker, else None).
    """
    if not comfort_weight >= 0:
        raise ValueError(f"comfort_weight must be >= 0, got {comfort_weight!r}")
    tariff, horizon = problem.tariff, problem.horizon_slots
    slot_h, breaker_w = tariff.slot_h, tariff.breaker_w
    base_kw, model = np.zeros(horizon), _Builder()  # powers in kW keep the matrix well scaled
    load_terms: list[list[tuple[int, float]]] = [[] for _ in range(horizon)]  # (column, kW per unit)
    decisions: list[tuple[Appliance, np.ndarray, np.ndarray]] = []  # (appliance, columns, slots) to read back
    for a in problem.appliances:
        if a.kind == "fixed":
            base_kw[a.alpha_slot : a.alpha_slot + a.duration_slots] += a.power_w / 1000.0
            if breaker_w is not None and np.any(base_kw > breaker_w / 1000.0 * (1 + 1e-9)):
                raise ScheduleInfeasible(a.name, f"fixed loads exceed breaker_w={breaker_w:g} W")
    _add_flexible_loads(model, problem, comfort_weight, base_kw, load_terms, decisions)
    idle = [t for t in range(horizon) if not load_terms[t]]  # slots whose cost is a constant
    if breaker_w is not None and idle and np.any(base_kw[idle] > breaker_w / 1000.0 * (1 + 1e-9)):
        raise ScheduleInfeasible(None, f"loads with a single placement exceed breaker_w={breaker_w:g} W")
    constant = float(tariff.slot_costs(1000.0 * base_kw[idle], idle).sum())
    _, widths_kwh, multipliers = tariff._blocks
    widths_kw = widths_kwh / slot_h  # the inclining blocks as average power over the slot
    # Tariff stores its prices and PV forecast as float64 arrays
    price_per_kwh, pv_w = cast(np.ndarray, tariff.price_per_kwh), cast("np.ndarray | None", tariff.pv_w)
    pv_kw = np.zeros(horizon) if pv_w is None else pv_w / 1000.0
    for t in range(horizon):
        if not load_terms[t]:
            continue
        load_col = model.columns(1, 0.0, 0.0, np.inf if breaker_w is None else breaker_w / 1000.0, False)[0]
        terms = load_terms[t]
        model.row([load_col, *(col for col, _ in terms)], [1.0, *(-w for _, w in terms)], base_kw[t], base_kw[t])
        blocks = model.columns(widths_kw.size, price_per_kwh[t] * multipliers * slot_h, 0.0, widths_kw, False)
        model.row([*blocks, load_col], [*np.ones(widths_kw.size), -1.0], -pv_kw[t], np.inf)
    from scipy import sparse  # imported here: importing gridflow.scheduling (and the gridflow CLI) stays fast
    from scipy.optimize import Bounds, LinearConstraint, milp

    started = time.perf_counter()
    if not model.c:  # only fixed loads: nothing to decide
        return _read_back(problem, _Nothing(), decisions, constant, time.perf_counter() - started)
    scale = float(np.max(np.abs(model.c))) or 1.0  # objective scaled to max |c| = 1: HiGHS tolerances are absolute
    result = milp(
        np.array(model.c) / scale,
        integrality=np.array(model.integer),
        bounds=Bounds(np.array(model.lb), np.array(model.ub)),
        constraints=[
            LinearConstraint(
                sparse.csr_array((model.vals, (model.rows, model.cols)), shape=(len(model.row_lb), len(model.c))),
                np.array(model.row_lb),
                np.array(model.row_ub),
            )
        ]
        if model.row_lb
        else [],
        options={"time_limit": time_limit_s, "mip_rel_gap": mip_rel_gap, "disp": False},
    )
    solve_time_s = time.perf_counter() - started
    if result.x is None:
        if result.status == 2:
            raise ScheduleInfeasible(None, "no schedule satisfies the windows, energies and breaker limit (MILP)")
        raise RuntimeError(f"HiGHS failed: {result.message}")
    return _read_back(problem, result, decisions, constant, solve_time_s, scale)


def _add_flexible_loads(
    model: _Builder, problem: Problem, comfort_weight: float, base_kw, load_terms, decisions
) -> None:
    """The columns and rows of every load with a choice (deferrable and regulatable; fixed loads are in
    ``base_kw`` already): ``load_terms[t]`` gets (column, kW per unit) of each slot, ``decisions`` what to
    read back."""
    for a in problem.appliances:
        low, high = problem.window(a)
        power_kw = a.power_w / 1000.0
        if a.kind == "fixed":
            continue
        if a.is_contiguous:
            _add_contiguous(model, a, low, high, power_kw, comfort_weight, base_kw, load_terms, decisions)
            continue
        slots = np.arange(low, high)
        if a.kind == "deferrable":
            cols = model.columns(slots.size, 0.0, 0, 1, True)
            model.row(cols, np.ones(slots.size), a.duration_slots, a.duration_slots)
        else:  # x in kW; sum x * slot_h = energy
            cols = model.columns(slots.size, 0.0, 0, power_kw, False)
            need = problem.required_energy_wh(a) / 1000.0 / problem.tariff.slot_h
            model.row(cols, np.ones(slots.size), need, need)
        for col, t in zip(cols, slots):
            load_terms[t].append((col, 1.0 if a.kind == "regulatable" else power_kw))
        decisions.append((a, cols, slots))


def _add_contiguous(
    model: _Builder,
    a,
    low: int,
    high: int,
    power_kw: float,
    comfort_weight: float,
    base_kw: np.ndarray,
    load_terms,
    decisions,
) -> None:
    """Binary starts ``z[s]`` and their running sum ``c[s] = z[low] + ... + z[s]`` (continuous; ``c = 0``
    before ``low`` and ``1`` from the last start on): the load is on in ``t`` iff ``c[t] - c[t - l] = 1``,
    two matrix entries per slot instead of ``l``."""
    duration, last = a.duration_slots, high - a.duration_slots
    starts = np.arange(low, last + 1)
    z = model.columns(starts.size, comfort_weight * np.abs(starts - a.alpha_slot), 0, 1, True)
    model.row(z, np.ones(starts.size), 1, 1)
    c = model.columns(last - low, 0.0, 0.0, 1.0, False)  # c[s] for s in [low, last)
    for k in range(last - low):
        model.row([c[k], z[k], *([c[k - 1]] if k else [])], [1.0, -1.0, *([-1.0] if k else [])], 0.0, 0.0)

    def running(t: int) -> tuple[int | None, float]:  # (column, constant) of c[t]
        return (None, 0.0) if t < low else (None, 1.0) if t >= last else (c[t - low], 0.0)

    for t in range(low, high):
        for (col, constant), sign in ((running(t), 1.0), (running(t - duration), -1.0)):
            if col is None:
                base_kw[t] += sign * constant * power_kw
            else:
                load_terms[t].append((col, sign * power_kw))
    decisions.append((a, z, starts))


class _Nothing:
    x, fun, status = np.zeros(0), 0.0, 0


def _read_back(
    problem: Problem, result, decisions, constant: float, solve_time_s: float, scale: float = 1.0
) -> MilpResult:
    power_w, deviation = {}, 0
    for a in problem.appliances:
        if a.kind == "fixed":
            low, high = problem.window(a)
            power_w[a.name] = dict.fromkeys(range(low, high), a.power_w)
    for a, cols, slots in decisions:
        values = result.x[cols]
        if a.is_contiguous:
            start = int(slots[np.argmax(values)])
            power_w[a.name] = dict.fromkeys(range(start, start + a.duration_slots), a.power_w)
            deviation += abs(start - a.alpha_slot)
        elif a.kind == "deferrable":
            chosen = slots[np.argsort(-values, kind="stable")[: a.duration_slots]]
            power_w[a.name] = dict.fromkeys(sorted(chosen.tolist()), a.power_w)
        else:
            clipped = np.clip(values * 1000.0, 0.0, a.power_w)  # kW -> W
            power_w[a.name] = {int(t): float(p) for t, p in zip(slots, clipped) if p > 1e-9 * a.power_w}
    schedule = Schedule(problem.horizon_slots, power_w)
    return MilpResult(
        schedule,
        float(result.fun) * scale + constant,
        schedule.cost(problem.tariff),
        deviation,
        solve_time_s,
        result.status == 0,
    )
