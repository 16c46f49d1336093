"""Constrained particle-swarm scheduling after Lin & Hu 2018 (Sensors 18(5):1365).

Objective
---------
``w_cost * cost + w_comfort * sum_i |s_i - alpha_i|`` over the start slots ``s_i`` of the non-interruptible
deferrable loads, where cost is the household's bill (real-time price with inclining block rates, minus
PV, :meth:`Tariff.slot_costs`) and ``s_i`` ranges over ``[alpha_i - delta_i, beta_i - l_i + delta_i]``
(:meth:`Problem.window`), under the breaker limit. The other loads form the base load, as in the heap
scheduler: fixed loads at ``alpha_slot``, regulatable loads water-filled on top of them, then
interruptible deferrable loads in their cheapest slots.

Swarm (time-varying coefficients, as in Lin & Hu's equations 1-5)
------------------------------------------------------------------
A particle is a vector of continuous start positions, evaluated at the nearest slot; every iteration
``k = 1..K`` draws ``r1, r2 ~ U(0, 1)`` per particle and appliance and updates::

    v <- w_k v + c1_k r1 (pbest - x) + c2_k r2 (gbest - x),   |v| <= (hi - lo) / 2
    x <- clip(x + v, lo, hi)                                   (v <- 0 where clipped)
    w_k = w_start - (w_start - w_end) k / K, and likewise c1_k, c2_k

Windows, run lengths and energies hold by construction; the breaker limit is kept by Deb's rules (a
feasible particle beats an infeasible one, less excess power beats more). Particle 0 starts at the
preferred starts ``alpha``, particle 1 (``greedy_start=True``) at a greedy placement (each load, by
decreasing energy, at its best start given those before it), the others uniformly in their windows.
With ``polish=True`` the swarm's best is then improved by coordinate descent (each load moved to its
best start given the others, exact costs) until no move helps; this also runs, as a repair, when the
swarm's best exceeds the breaker. If no feasible schedule was found, the heap scheduler's (else the
MILP's) schedule is returned and :attr:`PsoResult.fallback` says so; a returned schedule is always feasible.

Evaluation is vectorised over the swarm: start and end events go into a difference array (``np.add.at``)
whose integer prefix sum is every particle's deferrable load (integer milliwatts: ``cumsum`` over
integers is several times faster than over floats); the IBR cost per slot is piecewise linear,
``sum_k price * dm_k * max(L - pv - e_k, 0)``, one ``maximum`` and one matrix-vector product per block.

Examples
--------
>>> from gridflow.scheduling.model import Appliance, Problem, Tariff
>>> washer = Appliance("washer", "deferrable", 1000, 2, 0, 6)
>>> schedule_pso(Problem((washer,), Tariff([5, 1, 1, 5, 5, 1])), seed=1).schedule.start_slot("washer")
1
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import numpy as np

from gridflow.scheduling.heap_scheduler import (
    _TOL,
    ScheduleInfeasible,
    _NoRoom,
    _ordered,
    _place_discrete,
    _place_fixed,
    _place_regulatable,
    schedule_heap,
)
from gridflow.scheduling.model import Appliance, Problem, Schedule


@dataclass(frozen=True, eq=False)
class PsoResult:
    """A feasible schedule and how it was found.

    Attributes
    ----------
    schedule : Schedule
        Satisfies ``schedule.violations(problem) == []``.
    objective, cost : float
        ``w_cost * cost + w_comfort * comfort_deviation_slots``, and the bill (currency), exact.
    comfort_deviation_slots : int
        ``sum |start - alpha_slot|`` over the non-interruptible deferrable loads.
    peak_to_average_ratio : float
        Of the schedule's load profile (nan if nothing runs).
    iterations : int
        Swarm iterations run (0 if there was nothing to place or the base load did not fit).
    feasible, fallback : bool, {None, "heap", "milp"}
        Whether the swarm (and polish) found a feasible schedule; if not, the scheduler whose answer was
        returned instead.
    swarm_objective : float
        Exact objective of the swarm's best before polishing (nan if infeasible or nothing to place).
    """

    schedule: Schedule
    objective: float
    cost: float
    comfort_deviation_slots: int
    peak_to_average_ratio: float
    iterations: int
    feasible: bool
    fallback: str | None
    swarm_objective: float


def pso_options(scheduler) -> dict:
    """Keyword arguments of :func:`schedule_pso` from a ``SchedulerSettings`` section."""
    return {
        "w_cost": scheduler.w_cost,
        "w_comfort": scheduler.w_comfort,
        "particles": scheduler.pso_particles,
        "iterations": scheduler.pso_iterations,
        "seed": scheduler.seed,
        "inertia": (scheduler.pso_inertia_start, scheduler.pso_inertia_end),
        "c1": (scheduler.pso_c1_start, scheduler.pso_c1_end),
        "c2": (scheduler.pso_c2_start, scheduler.pso_c2_end),
    }


def _check(name: str, value, low: float, high: float, integer: bool = False):
    kind = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, kind) or not low <= value <= high:
        raise ValueError(f"{name} must be {'an integer' if integer else 'a number'} in [{low}, {high}], got {value!r}")
    return value


def _pair(name: str, value, high: float) -> tuple[float, float]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{name} must be a (start, end) pair of numbers in [0, {high}], got {value!r}")
    start, end = (float(_check(f"{name}[{i}]", v, 0.0, high)) for i, v in enumerate(value))
    return start, end


def schedule_pso(
    problem: Problem,
    *,
    w_cost: float = 1.0,
    w_comfort: float = 0.0,
    particles: int = 50,
    iterations: int = 200,
    inertia=(0.9, 0.4),
    c1=(2.5, 0.5),
    c2=(0.5, 2.5),
    polish: bool = True,
    greedy_start: bool = True,
    seed: int | np.random.Generator | None = None,
) -> PsoResult:
    """Schedule ``problem`` with the constrained swarm (see the module docstring).

    Parameters
    ----------
    problem : Problem
        Appliances and tariff.
    w_cost, w_comfort : float
        Weights of the bill (per currency unit) and of the start deviation (per slot), >= 0, not both 0.
    particles, iterations : int
        Swarm size (2 .. 10000) and iterations (1 .. 100000).
    inertia, c1, c2 : (float, float)
        Start and end of the linear schedules of the inertia weight (each in [0, 1.5]) and of the cognitive
        and social acceleration coefficients (each in [0, 4]).
    polish : bool
        Improve the swarm's best by coordinate descent before returning it.
    greedy_start : bool
        Start particle 1 at the greedy placement (else at random, like the others but particle 0).
    seed : int or numpy.random.Generator, optional
        Random state; the same seed gives the same schedule.

    Returns
    -------
    PsoResult

    Raises
    ------
    ValueError
        A parameter is out of range; the message names it.
    ScheduleInfeasible
        No schedule exists (fixed loads above the breaker, or neither fallback found one).
    """
    for name, value, low, high in (
        ("w_cost", w_cost, 0.0, math.inf),
        ("w_comfort", w_comfort, 0.0, math.inf),
        ("particles", particles, 2, 10_000),
        ("iterations", iterations, 1, 100_000),
    ):
        _check(name, value, low, high, integer=name in ("particles", "iterations"))
    if w_cost + w_comfort <= 0:
        raise ValueError("w_cost and w_comfort must not both be 0")
    inertia, c1, c2 = _pair("inertia", inertia, 1.5), _pair("c1", c1, 4.0), _pair("c2", c2, 4.0)
    for name, flag in (("polish", polish), ("greedy_start", greedy_start)):
        if not isinstance(flag, bool):
            raise ValueError(f"{name} must be a bool, got {flag!r}")
    if not (
        seed is None
        or isinstance(seed, np.random.Generator)
        or (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0)
    ):
        raise ValueError(f"seed must be None, an integer >= 0 or a numpy Generator, got {seed!r}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    weights = (float(w_cost), float(w_comfort))
    try:
        base_w, placed, movable = _base_load(problem)
    except _NoRoom:
        return _fallback(problem, weights)
    starts, load_w, swarm_objective, ran = np.zeros(0, dtype=np.int64), base_w, math.nan, 0
    if movable:
        swarm = _Swarm(problem, base_w, movable, weights)
        initial = [swarm.alpha, *([_greedy(problem, base_w, movable, weights)] if greedy_start else [])]
        starts, ran = swarm.run(particles, iterations, inertia, c1, c2, rng, initial), iterations
        load_w = swarm.profile(starts)
        if _excess(problem, load_w) == 0:
            swarm_objective = weights[0] * problem.tariff.cost(load_w) + weights[1] * _deviation(movable, starts)
        if polish or not math.isfinite(swarm_objective):
            starts, load_w = _polish(problem, load_w, movable, starts, weights)
        if _excess(problem, load_w) > 0:
            return _fallback(problem, weights, ran)
    schedule = _to_schedule(problem, placed, movable, starts)
    cost, deviation = problem.tariff.cost(load_w), _deviation(movable, starts)
    par = float(load_w.max() / load_w.mean()) if load_w.any() else math.nan
    return PsoResult(
        schedule, weights[0] * cost + weights[1] * deviation, cost, deviation, par, ran, True, None, swarm_objective
    )


def _base_load(problem: Problem):
    """Fixed loads at alpha, regulatable loads water-filled, interruptible deferrable loads in their cheapest
    slots: ``(load_w, power_w of those loads, non-interruptible deferrable loads)``; _NoRoom if one does
    not fit (ScheduleInfeasible if the fixed loads alone exceed the breaker)."""
    load_w, placed = _place_fixed(problem)
    placed.update(_place_regulatable(problem, load_w))
    for a in _ordered(problem, "deferrable"):
        if a.interruptible:
            slots = _place_discrete(problem, a, load_w)
            if slots is None:
                raise _NoRoom(a.name)
            load_w[slots] += a.power_w
            placed[a.name] = dict.fromkeys(slots, a.power_w)
    movable = [a for a in problem.appliances if a.kind == "deferrable" and not a.interruptible]
    return load_w, placed, movable


class _Swarm:
    """Vectorised objective of start vectors over the hull ``[t0, t1)`` of the movable loads' windows.

    Loads are integers in quanta of ``quantum_w`` (1 mW, coarser only if the sum of the powers would not
    fit in int32); the IBR cost is ``sum_k max(D, floor_k) @ weight_k - constant`` over the deferrable
    load ``D`` per slot, with ``floor_k`` the block edge net of base load and PV, clipped to what ``D``
    can reach there (so the float32 sums stay small).
    """

    def __init__(self, problem: Problem, base_w: np.ndarray, movable: list[Appliance], weights):
        tariff, self.base_w, self.movable = problem.tariff, base_w, movable
        windows = np.array([problem.window(a) for a in movable])
        self.duration = np.array([a.duration_slots for a in movable])
        self.lo, self.hi = windows[:, 0], windows[:, 1] - self.duration
        self.alpha = np.clip([a.alpha_slot for a in movable], self.lo, self.hi)
        power_w = np.array([a.power_w for a in movable])
        quantum_w = max(1e-3, power_w.sum() / 1e9)
        self.power_q = np.rint(power_w / quantum_w).astype(np.int32)
        self.t0, self.t1 = int(windows[:, 0].min()), int(windows[:, 1].max())
        self.w_cost, self.w_comfort = weights
        slots, width = np.arange(self.t0, self.t1), self.t1 - self.t0
        reach = np.zeros(width + 1)  # most deferrable power a slot can see, in quanta
        for (low, high), p in zip(windows, self.power_q):
            reach[low - self.t0 : high - self.t0] += p
        # Tariff stores its prices and PV forecast as float64 arrays
        price_per_kwh, pv_w = cast(np.ndarray, tariff.price_per_kwh), cast("np.ndarray | None", tariff.pv_w)
        offset = (base_w[slots] - (0.0 if pv_w is None else pv_w[slots])) / quantum_w
        price_q = price_per_kwh[slots] * tariff.slot_h * quantum_w / 1000.0  # currency per quantum-slot
        edges = np.array((0.0, *tariff.ibr_thresholds_kwh)) * 1000.0 / tariff.slot_h / quantum_w
        outside = np.r_[0 : self.t0, self.t1 : problem.horizon_slots]  # slots no movable load reaches
        self.blocks = []
        self.constant = -float(tariff.slot_costs(base_w[outside], outside).sum())
        for edge, step in zip(edges, np.diff(np.array(tariff.ibr_multipliers), prepend=0.0)):
            threshold = np.append(edge - offset, np.inf)  # D above this is in the block (last column: padding)
            if np.all(threshold >= reach):
                continue
            floor = np.clip(threshold, 0.0, reach)
            weight = np.append(step * price_q, 0.0)
            self.constant += float(np.where(threshold <= reach, threshold, floor) @ weight)
            self.blocks.append((floor.astype(np.float32) if floor.any() else None, weight.astype(np.float32)))
        self.room = None
        if tariff.breaker_w is not None:
            room = np.append((tariff.breaker_w * (1 + _TOL) - base_w[slots]) / quantum_w, np.inf)
            if np.any(reach > room):
                self.room = room.astype(np.float32)
        self._n: int | None = None

    def _buffers(self, n: int) -> None:
        """Work arrays reused across calls (fresh large arrays cost page faults on every call)."""
        width = self.t1 - self.t0 + 1
        self._n, self._row = n, (np.arange(n) * width)[:, None] - self.t0
        self._weights = np.concatenate((np.tile(self.power_q, n), -np.tile(self.power_q, n)))
        self._events = np.empty((2, n, self.power_q.size), dtype=np.int64)
        self._diff, self._load_q = np.zeros(n * width, dtype=np.int32), np.empty((n, width), dtype=np.int32)
        self._load, self._scratch = np.empty((n, width), dtype=np.float32), np.empty((n, width), dtype=np.float32)
        self._ones = np.ones(width, dtype=np.float32)

    def evaluate(self, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(objective, excess power)`` per row of ``starts`` (particles x loads); excess in quanta-slots."""
        if self._n != starts.shape[0]:
            self._buffers(starts.shape[0])
        events = self._events
        np.add(self._row, starts, out=events[0])
        np.add(events[0], self.duration, out=events[1])
        self._diff.fill(0)
        np.add.at(self._diff, events.reshape(-1), self._weights)
        load, scratch = self._load, self._scratch
        np.cumsum(self._diff, out=self._load_q.reshape(-1))  # each row sums to 0: no carry between rows
        np.copyto(load, self._load_q, casting="unsafe")
        excess = np.zeros(starts.shape[0], dtype=np.float32)
        if self.room is not None:
            excess = np.maximum(np.subtract(load, self.room, out=scratch), 0.0, out=scratch) @ self._ones
        cost = np.full(starts.shape[0], -self.constant)
        for floor, weight in self.blocks:  # floor None: the whole block is linear in D
            cost += (load if floor is None else np.maximum(load, floor, out=scratch)) @ weight
        deviation = np.abs(starts - self.alpha).sum(axis=1)
        return self.w_cost * cost + self.w_comfort * deviation, excess

    def run(self, particles, iterations, inertia, c1, c2, rng, initial) -> np.ndarray:
        """Best start vector found (Deb's rules: least excess power, then least objective); the first
        particles start at the rows of ``initial``, the others uniformly at random."""
        lo, hi = self.lo.astype(np.float64), self.hi.astype(np.float64)
        v_max = np.maximum((hi - lo) / 2.0, 0.5)
        x = lo + rng.random((particles, lo.size)) * (hi - lo)
        x[: len(initial)] = initial  # particles >= 2 >= len(initial)
        v = (rng.random(x.shape) * 2.0 - 1.0) * v_max
        best_x, (best_obj, best_excess) = x.copy(), self.evaluate(np.rint(x).astype(np.int64))
        g, pull, r = self._leader(best_obj, best_excess), np.empty_like(x), np.empty((2, *x.shape))
        starts = np.empty(x.shape, dtype=np.int64)
        for k in range(1, iterations + 1):
            w, a1, a2 = (start - (start - end) * k / iterations for start, end in (inertia, c1, c2))
            rng.random(out=r)
            v *= w
            v += np.multiply(np.subtract(best_x, x, out=pull), r[0], out=pull) * a1
            v += np.multiply(np.subtract(best_x[g], x, out=pull), r[1], out=pull) * a2
            np.minimum(np.maximum(v, -v_max, out=v), v_max, out=v)
            x += v
            inside = (x >= lo) & (x <= hi)
            np.minimum(np.maximum(x, lo, out=x), hi, out=x)
            v *= inside
            np.copyto(starts, np.rint(x, out=pull), casting="unsafe")
            obj, excess = self.evaluate(starts)
            better = (excess < best_excess) | ((excess == best_excess) & (obj < best_obj))
            best_x[better], best_obj[better], best_excess[better] = x[better], obj[better], excess[better]
            g = self._leader(best_obj, best_excess)
        return np.rint(best_x[g]).astype(np.int64)

    @staticmethod
    def _leader(objective: np.ndarray, excess: np.ndarray) -> int:
        return int(np.lexsort((objective, excess))[0])

    def profile(self, starts: np.ndarray) -> np.ndarray:
        """Exact total load (W) with the movable loads at ``starts``."""
        load_w = self.base_w.copy()
        for a, s in zip(self.movable, starts.tolist()):
            load_w[s : s + a.duration_slots] += a.power_w
        return load_w


def _excess(problem: Problem, load_w: np.ndarray) -> float:
    """Power above the breaker limit summed over the slots (W), with ``violations``' tolerance."""
    breaker_w = problem.tariff.breaker_w
    return 0.0 if breaker_w is None else float(np.maximum(load_w - breaker_w * (1 + _TOL), 0.0).sum())


def _start_objectives(problem: Problem, load_w: np.ndarray, a: Appliance, weights) -> np.ndarray:
    """Exact objective change of starting ``a`` at each start of its window on top of ``load_w`` (inf where
    a slot would exceed the breaker); index 0 is the window's first slot."""
    tariff, (w_cost, w_comfort), breaker_w = problem.tariff, weights, problem.tariff.breaker_w
    (low, high), n = problem.window(a), a.duration_slots
    without = load_w[low:high]
    both = tariff.slot_costs(np.concatenate((without, without + a.power_w)), np.tile(np.arange(low, high), 2))
    extra = w_cost * (both[high - low :] - both[: high - low])
    if breaker_w is not None:
        extra[without + a.power_w > breaker_w * (1 + _TOL)] = np.inf
    blocked = np.concatenate(([0], np.cumsum(~np.isfinite(extra))))
    sums = np.concatenate(([0.0], np.cumsum(np.where(np.isfinite(extra), extra, 0.0))))
    total = sums[n:] - sums[:-n] + w_comfort * np.abs(np.arange(low, high - n + 1) - a.alpha_slot)
    total[blocked[n:] - blocked[:-n] > 0] = np.inf
    return total


def _greedy(problem: Problem, base_w: np.ndarray, movable: list[Appliance], weights) -> np.ndarray:
    """Each load, by decreasing energy, at its least-objective start given those placed before it (at alpha
    if none fits)."""
    load_w, starts = base_w.copy(), np.array([problem.window(a)[0] for a in movable])
    for i in sorted(range(len(movable)), key=lambda i: -movable[i].power_w * movable[i].duration_slots):
        a, total = movable[i], _start_objectives(problem, load_w, movable[i], weights)
        best = int(np.argmin(total))
        starts[i] = problem.window(a)[0] + best if np.isfinite(total[best]) else max(a.alpha_slot, starts[i])
        load_w[starts[i] : starts[i] + a.duration_slots] += a.power_w
    return starts


def _polish(
    problem: Problem, load_w: np.ndarray, movable: list[Appliance], starts: np.ndarray, weights, max_sweeps: int = 20
) -> tuple[np.ndarray, np.ndarray]:
    """Coordinate descent: move each load to its least-objective start given the others (exact costs;
    slots over the breaker forbidden) until a sweep moves nothing; after the first sweep only loads whose
    window saw a move are revisited. Returns the starts and the total load."""
    starts, load_w = starts.copy(), load_w.copy()
    windows = [problem.window(a) for a in movable]
    changed = np.arange(load_w.size + 1)  # prefix counts of the slots changed in the last sweep (first: all)
    for _ in range(max_sweeps):
        moves = np.zeros(load_w.size + 1, dtype=np.int64)
        for i, a in enumerate(movable):
            (low, high), n, s = windows[i], a.duration_slots, int(starts[i])
            if changed[high] == changed[low]:
                continue
            load_w[s : s + n] -= a.power_w
            total = _start_objectives(problem, load_w, a, weights)
            best, current = int(np.argmin(total)), total[s - low]
            if np.isfinite(total[best]) and not total[best] >= current - 1e-12 * (1.0 + abs(total[best])):
                starts[i] = low + best
                for first in (s, low + best):
                    moves[first : first + n] = 1
            load_w[starts[i] : starts[i] + n] += a.power_w
        if not moves.any():
            break
        changed = np.concatenate(([0], np.cumsum(moves[:-1])))
    return starts, load_w


def _to_schedule(problem: Problem, placed: dict, movable: list[Appliance], starts: np.ndarray) -> Schedule:
    power_w = dict(placed)
    for a, s in zip(movable, starts.tolist()):
        power_w[a.name] = dict.fromkeys(range(s, s + a.duration_slots), a.power_w)
    return Schedule(problem.horizon_slots, power_w)


def _deviation(movable: list[Appliance], starts) -> int:
    return int(sum(abs(int(s) - a.alpha_slot) for a, s in zip(movable, starts)))


def _fallback(problem: Problem, weights, iterations: int = 0) -> PsoResult:
    """The heap scheduler's schedule, else the MILP's; ScheduleInfeasible if neither finds one."""
    from gridflow.scheduling.milp import solve_milp

    try:
        schedule, used = schedule_heap(problem), "heap"
    except ScheduleInfeasible as error:
        if error.proven:
            raise
        comfort = weights[1] / weights[0] if weights[0] else 0.0
        schedule, used = solve_milp(problem, comfort_weight=comfort).schedule, "milp"
    movable = [a for a in problem.appliances if a.kind == "deferrable" and not a.interruptible]
    deviation = _deviation(movable, [schedule.start_slot(a.name) for a in movable])
    cost = schedule.cost(problem.tariff)
    return PsoResult(
        schedule,
        weights[0] * cost + weights[1] * deviation,
        cost,
        deviation,
        schedule.peak_to_average_ratio(),
        iterations,
        False,
        used,
        math.nan,
    )
