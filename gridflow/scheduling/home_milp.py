"""Exact home energy plan: the :class:`~gridflow.scheduling.home.HomeProblem` as a MILP solved by HiGHS.

Columns per slot ``t`` (powers in kW, energies in kWh, so the matrix is well scaled):

* ``import[t, k]`` grid import in inclining block ``k`` (one block without IBR or where the price is < 0),
  ``export[t]``, ``pv_used[t] <= pv[t]`` (``=`` when PV cannot be curtailed);
* ``charge[t]``, ``discharge[t]`` and the battery energy ``soc[t + 1]`` in ``[soc_min, soc_max] * capacity``,
  ``soc[n] >= soc_final * capacity``;
* ``ev[j, t]`` for the slots each EV is plugged in, with a binary ``on[j, t]`` when it has a minimum power;
* the appliances' columns of :mod:`gridflow.scheduling.milp` (binary starts, on-slots, regulated power).

Rows: the energy balance of every slot, the battery recursion, each EV's energy by departure and its
"charge now" prefix, the appliances' rows. Exclusivity binaries are added only where the LP could profit
from breaking them: grid import/export where the export price exceeds the import price, battery
charge/discharge where the import price is negative or PV cannot be curtailed (burning energy pays only
there). A throughput cost of ``TIE_COST`` per kWh on the battery and the grid breaks ties elsewhere, so that
an LP optimum never charges and discharges at once, and PV used earns ``2 x TIE_COST`` per kWh, so that a
surplus exported for nothing is not curtailed instead. The bill is therefore optimal to within 3 x
``TIE_COST`` per kWh: options whose prices differ by less than that are ordered by the tie costs.

Infeasible requests are solved again with penalised slacks (unserved load, EV energy short, battery target
short) and reported as :class:`~gridflow.scheduling.home.PlanInfeasible` naming the constraint and the amount.
"""

from __future__ import annotations

import math
import time
from typing import Any, cast

import numpy as np

from gridflow.scheduling.home import HomePlan, HomeProblem, PlanInfeasible
from gridflow.scheduling.milp import _add_flexible_loads, _Builder, _read_back

TIE_COST = 1e-5  # currency per kWh of battery throughput and of grid exchange: breaks ties, never a bill


class _Model:
    """Column indices of one home's MILP, kept to read the solution back."""

    def __init__(self, problem: HomeProblem, elastic: bool, relax: bool = False, ev_bounds=None):
        # relax: an LP (no exclusivity binaries, EV minimum power dropped); ev_bounds: {name: (low, high)} kW
        # per slot of the session, replacing [0, max_kw] (the fleet planner's rounding of minimum powers)
        self.p, self.b, self.elastic, self.relax = problem, _Builder(), elastic, relax
        self.ev_bounds = ev_bounds or {}
        self.slacks: list[tuple[str, Any, np.ndarray]] = []  # (kind, owner, columns)
        self._build()

    def _build(self) -> None:
        p, b, relax = self.p, self.b, self.relax
        n, h = p.n_slots, p.slot_h
        pi, pe = np.asarray(p.import_price), np.asarray(p.export_price)
        base_kw = np.asarray(p.base_load_w, dtype=np.float64) / 1000.0
        pv_kw = np.asarray(p.pv_w, dtype=np.float64) / 1000.0
        load_terms: list[list[tuple[int, float]]] = [[] for _ in range(n)]
        self.decisions: list = []
        for a in p.appliances:  # fixed loads are constants
            if a.kind == "fixed":
                base_kw[a.alpha_slot : a.alpha_slot + a.duration_slots] += a.power_w / 1000.0
        _add_flexible_loads(b, p.appliance_problem, p.comfort_weight, base_kw, load_terms, self.decisions)
        self.base_kw = base_kw
        imp_max = float(cast(float, p.import_max_w)) / 1000.0  # __post_init__: inf when not limited
        exp_max = float(cast(float, p.export_max_w)) / 1000.0
        # grid import in blocks
        _, widths_kwh, mult = p.appliance_problem.tariff._blocks  # the inclining blocks, validated there
        widths = widths_kwh / h  # as average power over the slot
        self.imports: list[np.ndarray] = []
        if widths.size == 1:
            self.imports = list(b.columns(n, pi * h + TIE_COST * h, 0.0, imp_max, False).reshape(n, 1))
        for t in range(n if widths.size > 1 else 0):
            if pi[t] >= 0:
                cols = b.columns(widths.size, pi[t] * mult * h + TIE_COST * h, 0.0, np.minimum(widths, imp_max), False)
                if math.isfinite(imp_max):
                    b.row(cols, np.ones(cols.size), 0.0, imp_max)
            else:
                cols = b.columns(1, pi[t] * h + TIE_COST * h, 0.0, imp_max, False)
            self.imports.append(cols)
        self.export = b.columns(n, -pe * h + TIE_COST * h, 0.0, exp_max, False)
        # PV used earns twice the tie cost: exporting a surplus at price 0 beats curtailing it (a tie otherwise)
        self.pv_used = b.columns(n, -2 * TIE_COST * h, 0.0 if p.pv_curtailable else pv_kw, pv_kw, False)
        battery = p.battery
        self.charge: Any = None
        self.discharge: Any = None
        self.soc: Any = None
        if battery is not None:
            self.charge = b.columns(n, TIE_COST * h, 0.0, battery.max_charge_kw, False)
            self.discharge = b.columns(n, TIE_COST * h, 0.0, battery.max_discharge_kw, False)
            soc_low = np.full(n, battery.energy_min_kwh)
            if not self.elastic:
                soc_low[-1] = max(battery.energy_min_kwh, battery.energy_final_kwh)
            self.soc = b.columns(n, 0.0, soc_low, battery.energy_max_kwh, False)
            eta = battery.efficiency
            for t in range(n):  # soc[t+1] - soc[t] - eta h charge + h/eta discharge = 0
                row_cols, row_vals = [self.soc[t], self.charge[t], self.discharge[t]], [1.0, -eta * h, h / eta]
                rhs = battery.energy_initial_kwh if t == 0 else 0.0
                if t:
                    row_cols.append(self.soc[t - 1])
                    row_vals.append(-1.0)
                b.row(row_cols, row_vals, rhs, rhs)
            if self.elastic:
                short = b.columns(1, 0.0, 0.0, np.inf, False)
                b.row([self.soc[-1], short[0]], [1.0, 1.0], battery.energy_final_kwh, np.inf)
                self.slacks.append(("battery_target", battery, short))
        self.ev: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        ev_terms: list[list[int]] = [[] for _ in range(n)]
        for ev in p.evs:
            slots = np.arange(ev.arrival_slot, ev.departure_slot)
            low_kw, high_kw = self.ev_bounds.get(ev.name, (0.0, ev.max_kw))
            cols = b.columns(slots.size, 0.0, low_kw, high_kw, False)
            if ev.min_kw > 0 and not relax:
                on = b.columns(slots.size, 0.0, 0, 1, True)
                for col, flag in zip(cols, on):
                    b.row([col, flag], [1.0, -ev.min_kw], 0.0, np.inf)
                    b.row([col, flag], [1.0, -ev.max_kw], -np.inf, 0.0)
            gain = ev.efficiency * h  # kWh into the car per kW for one slot
            need_cols, need_vals = list(cols), [gain] * cols.size
            if self.elastic:
                short = b.columns(1, 0.0, 0.0, np.inf, False)
                need_cols.append(short[0])
                need_vals.append(1.0)
                self.slacks.append(("ev", ev, short))
            b.row(need_cols, need_vals, ev.energy_kwh, np.inf)
            if ev.now_kwh > 0:
                now_short = b.columns(1, 0.0, 0.0, np.inf, False) if self.elastic else None
                for k in range(1, slots.size + 1):
                    need = min(ev.now_kwh, ev.max_kw * gain * k)
                    extra = [] if now_short is None else [now_short[0]]
                    b.row([*cols[:k], *extra], [gain] * k + [1.0] * len(extra), need, np.inf)
                    if need >= ev.now_kwh:
                        break
                if now_short is not None:
                    self.slacks.append(("ev_now", ev, now_short))
            for col, t in zip(cols, slots):
                ev_terms[t].append(int(col))
            self.ev[ev.name] = (cols, slots)
        self.unserved: Any = None
        if self.elastic:
            self.unserved = b.columns(n, 0.0, 0.0, np.inf, False)
            self.slacks.append(("grid_import", None, self.unserved))
        # balance: import - export + pv_used + discharge - charge - ev - appliances = base
        self.balance_rows = np.arange(len(b.row_lb), len(b.row_lb) + n)
        for t in range(n):
            row_cols = [*self.imports[t], self.export[t], self.pv_used[t]]
            row_vals = [1.0] * self.imports[t].size + [-1.0, 1.0]
            if battery is not None:
                row_cols += [self.discharge[t], self.charge[t]]
                row_vals += [1.0, -1.0]
            row_cols += ev_terms[t]
            row_vals += [-1.0] * len(ev_terms[t])
            row_cols += [col for col, _ in load_terms[t]]
            row_vals += [-w for _, w in load_terms[t]]
            if self.unserved is not None:
                row_cols.append(self.unserved[t])
                row_vals.append(1.0)
            b.row(row_cols, row_vals, base_kw[t], base_kw[t])
        if not relax:
            self._exclusivity(pi, pe, pv_kw, imp_max, exp_max)
        if self.elastic:  # the slacks alone are the objective: the least violation
            b.c = [0.0] * len(b.c)
            for kind, _, cols in self.slacks:
                for col in cols:
                    b.c[col] = self.p.slot_h if kind == "grid_import" else 1.0

    def _exclusivity(self, pi, pe, pv_kw, imp_max, exp_max) -> None:
        p, b = self.p, self.b
        battery = p.battery
        most_in = float(np.max(self.base_kw)) + sum(a.power_w for a in p.appliances) / 1000.0
        most_in += sum(ev.max_kw for ev in p.evs) + (battery.max_charge_kw if battery else 0.0)
        most_out = float(np.max(pv_kw)) + (battery.max_discharge_kw if battery else 0.0)
        m_in, m_out = min(imp_max, most_in), min(exp_max, most_out)
        for t in np.nonzero(pe > pi)[0]:
            flag = b.columns(1, 0.0, 0, 1, True)[0]  # 1: exporting
            b.row([*self.imports[t], flag], [1.0] * self.imports[t].size + [m_in], -np.inf, m_in)
            b.row([self.export[t], flag], [1.0, -m_out], -np.inf, 0.0)
        if battery is None:
            return
        burn = (pi < 0) | ((pv_kw > 0) & (not p.pv_curtailable))
        for t in np.nonzero(burn)[0]:
            flag = b.columns(1, 0.0, 0, 1, True)[0]  # 1: charging
            b.row([self.charge[t], flag], [1.0, -battery.max_charge_kw], -np.inf, 0.0)
            b.row([self.discharge[t], flag], [1.0, battery.max_discharge_kw], -np.inf, battery.max_discharge_kw)

    def solve(self, time_limit_s: float, mip_rel_gap: float):
        from scipy import sparse  # imported here: importing gridflow.scheduling stays fast
        from scipy.optimize import Bounds, LinearConstraint, milp

        b = self.b
        c = np.array(b.c)
        scale = float(np.max(np.abs(c))) or 1.0
        matrix = sparse.csr_array((b.vals, (b.rows, b.cols)), shape=(len(b.row_lb), len(b.c)))
        return milp(
            c / scale,
            integrality=np.array(b.integer),
            bounds=Bounds(np.array(b.lb, dtype=float), np.array(b.ub, dtype=float)),
            constraints=[LinearConstraint(matrix, np.array(b.row_lb), np.array(b.row_ub))],
            options={"time_limit": time_limit_s, "mip_rel_gap": mip_rel_gap, "disp": False},
        ), scale


def solve_home(problem: HomeProblem, *, time_limit_s: float = 60.0, mip_rel_gap: float = 1e-7) -> HomePlan:
    """Least-cost plan of ``problem`` (bill + comfort term); raises :class:`PlanInfeasible` naming the
    constraint that cannot hold."""
    started = time.perf_counter()
    model = _Model(problem, elastic=False)
    result, scale = model.solve(time_limit_s, mip_rel_gap)
    if result.x is None:
        if result.status == 2:
            _diagnose(problem, time_limit_s)
        raise RuntimeError(f"HiGHS failed on the home plan: {result.message}")
    return _plan(problem, model, result.x, time.perf_counter() - started, result.status == 0)


def _plan(problem: HomeProblem, model: _Model, x: np.ndarray, solve_time_s: float, optimal: bool) -> HomePlan:
    n = problem.n_slots

    def kw(cols) -> np.ndarray:
        return np.maximum(x[np.asarray(cols, dtype=np.int64)], 0.0) * 1000.0 if cols is not None else np.zeros(n)

    if all(cols.size == 1 for cols in model.imports):
        import_w = kw(np.concatenate(model.imports))
    else:
        import_w = np.array([kw(cols).sum() for cols in model.imports])
    export_w, pv_used_w = kw(model.export), kw(model.pv_used)
    charge_w, discharge_w = kw(model.charge), kw(model.discharge)
    battery = problem.battery
    soc = np.zeros(n + 1)
    if battery is not None and model.soc is not None:
        soc[0] = battery.energy_initial_kwh
        soc[1:] = x[model.soc]
    ev_w = {}
    for name, (cols, slots) in model.ev.items():
        power = np.zeros(n)
        power[slots] = kw(cols)
        ev_w[name] = power
    appliances = _read_back(problem.appliance_problem, _Solution(x), model.decisions, 0.0, 0.0)
    cost = problem.cost(import_w, export_w)
    return HomePlan(
        import_w=import_w,
        export_w=export_w,
        pv_used_w=pv_used_w,
        charge_w=charge_w,
        discharge_w=discharge_w,
        battery_kwh=soc,
        ev_w=ev_w,
        appliances=appliances.schedule,
        cost=cost,
        objective=cost + problem.comfort_weight * appliances.comfort_deviation_slots,
        solve_time_s=solve_time_s,
        optimal=optimal,
        solver="milp",
    )


class _Solution:
    """The fields of a scipy result that :func:`gridflow.scheduling.milp._read_back` reads."""

    def __init__(self, x: np.ndarray):
        self.x, self.fun, self.status = x, 0.0, 0


def _diagnose(problem: HomeProblem, time_limit_s: float) -> None:
    """Raise :class:`PlanInfeasible` for the constraints whose slack the least-violation solve needs."""
    model = _Model(problem, elastic=True)
    result, _ = model.solve(time_limit_s, 1e-6)
    if result.x is None:
        raise PlanInfeasible("appliances", f"no plan exists even with every limit relaxed: {result.message}")
    x, reasons, first = result.x, [], None
    for kind, owner, cols in model.slacks:
        short = np.maximum(x[cols], 0.0)
        if float(short.max(initial=0.0)) <= 1e-6:
            continue
        if kind == "grid_import":
            slots = np.nonzero(short > 1e-6)[0]
            reasons.append(
                f"the grid connection (import_max_w={problem.import_max_w:g} W) cannot carry the load from "
                f"{problem.time_of(int(slots[0]))} to {problem.time_of(int(slots[-1]) + 1)}: short by up to "
                f"{short.max():.3g} kW"
            )
            name = "grid_import"
        elif kind == "battery_target":
            b = owner
            reasons.append(
                f"the battery cannot reach soc_final={b.soc_final:g} ({b.energy_final_kwh:.3g} kWh) by "
                f"{problem.time_of(problem.n_slots)}: at most {b.energy_final_kwh - short[0]:.3g} kWh"
            )
            name = "battery_target"
        else:
            ev = owner
            what = "its minimum charge now of" if kind == "ev_now" else ""
            need = ev.now_kwh if kind == "ev_now" else ev.energy_kwh
            reasons.append(
                f"the EV {ev.name!r} cannot gain {what + ' ' if what else ''}{need:.3g} kWh by "
                f"{problem.time_of(ev.departure_slot)} at {ev.max_kw:g} kW"
                + (f" (efficiency {ev.efficiency:g})" if kind == "ev" else "")
                + (
                    f" and a {problem.import_max_w:g} W grid connection"
                    if math.isfinite(cast(float, problem.import_max_w))
                    else ""
                )
                + f": at most {need - short[0]:.3g} kWh"
            )
            name = f"{kind}:{ev.name}"
        first = first or name
    if not reasons:  # the relaxed model met every limit: the appliances' integrality is what fails
        raise PlanInfeasible("appliances", "no placement of the appliances fits the limits (MILP infeasible)")
    raise PlanInfeasible(first or "appliances", "; ".join(reasons))
