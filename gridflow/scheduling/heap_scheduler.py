"""Heap/greedy appliance scheduler after Touhs et al. 2024 (cost-optimal, heap-based scheduling).

Algorithm
---------
Appliances are placed one at a time on top of the load already placed, each at its least incremental
cost (price x energy with PV offset and IBR, :meth:`Tariff.run_costs`), skipping slots where the breaker
would be exceeded. The cost per slot of the load placed so far is kept (``_Load``), so the extra cost of
an appliance is one vectorised cost evaluation over its window:

1. fixed loads run from their ``alpha_slot`` (nothing to choose);
2. deferrable loads, by decreasing energy: non-interruptible ones take the cheapest contiguous window of
   ``duration_slots`` (sliding-window sums over a cumulative sum, O(W) for a window of W slots);
   interruptible ones take the ``duration_slots`` cheapest slots (a stable sort by cost, then distance to
   ``alpha_slot``: the order of a min-heap of ``(cost, distance, slot)``, O(W log W));
3. regulatable loads, by decreasing energy, are water-filled: every slot of the window before the due slot
   contributes its convex piecewise-linear cost pieces (free PV surplus, then IBR blocks) to a min-heap;
   the cheapest piece is taken until the required energy is met, O((W + P) log W) for P pieces taken.

Each step is exact for its appliance given the load already placed (so a household with one flexible
appliance gets its optimum); the whole is greedy. Ties go to the placement nearest ``alpha_slot``. If a
breaker conflict leaves an appliance no room, a bounded depth-first search over the deferrable
placements (cheapest first) with a max-flow allocation of the regulatable loads repairs the schedule or
raises :class:`ScheduleInfeasible` naming that appliance (``proven=False`` if the budget ran out first).

Examples
--------
>>> from gridflow.scheduling.model import Appliance, Problem, Tariff
>>> washer = Appliance("washer", "deferrable", power_w=1000, duration_slots=2, alpha_slot=0, beta_slot=6)
>>> schedule_heap(Problem((washer,), Tariff([5, 1, 1, 5, 5, 1]))).start_slot("washer")
1
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque

from typing import cast

import numpy as np

from gridflow.scheduling.model import Appliance, Problem, Schedule, Tariff

_TOL = 1e-9


class ScheduleInfeasible(Exception):
    """No placement fits: ``appliance`` names the one that could not be placed (None: the problem as a
    whole); ``proven`` is False when the search budget ran out before infeasibility was proven."""

    def __init__(self, appliance: str | None, reason: str, proven: bool = True):
        super().__init__(f"appliance {appliance!r}: {reason}" if appliance is not None else reason)
        self.appliance, self.reason, self.proven = appliance, reason, proven


class _NoRoom(Exception):
    """The greedy pass found no room for the appliance named by ``args[0]``."""


def cheapest_window_start(costs: np.ndarray, duration_slots: int, preferred: int = 0) -> int | None:
    """Start offset of the cheapest run of ``duration_slots`` consecutive entries of ``costs`` (``inf`` marks
    a forbidden slot), nearest ``preferred`` among ties; None if every run has a forbidden slot. O(len)."""
    costs = np.asarray(costs, dtype=np.float64)
    return _cheapest_window(costs, ~np.isfinite(costs), duration_slots, preferred)


def _cheapest_window(costs: np.ndarray, forbidden: np.ndarray, duration_slots: int, preferred: int) -> int | None:
    """:func:`cheapest_window_start` given the mask of the forbidden (non-finite) entries of ``costs``."""
    n, d = costs.size, duration_slots
    if n < d:
        return None
    any_forbidden = bool(forbidden.any())
    sums = np.empty(n + 1)
    sums[0] = 0.0
    np.cumsum(np.where(forbidden, 0.0, costs) if any_forbidden else costs, out=sums[1:])
    window = sums[d:] - sums[:-d]
    if any_forbidden:
        blocked = np.empty(n + 1, dtype=np.intp)
        blocked[0] = 0
        np.cumsum(forbidden, out=blocked[1:])
        window[(blocked[d:] - blocked[:-d]) > 0] = np.inf
    best = window.min()
    if not math.isfinite(best):
        return None
    ties = np.flatnonzero(window <= best + _TOL * (1.0 + abs(best)))
    if ties.size == 1:
        return int(ties[0])
    return int(ties[np.argmin(np.abs(ties - preferred))])


def cheapest_slots(costs: np.ndarray, n_slots: int, preferred: int = 0) -> list[int] | None:
    """Offsets of the ``n_slots`` cheapest finite entries of ``costs``, nearest ``preferred`` among ties (then
    the lowest offset); None if fewer than ``n_slots`` are finite. O(len log len)."""
    costs = np.asarray(costs, dtype=np.float64)
    finite = np.flatnonzero(np.isfinite(costs))
    if finite.size < n_slots:
        return None
    order = np.lexsort((np.abs(finite - preferred), costs[finite]))  # stable: equal keys keep offset order
    return np.sort(finite[order[:n_slots]]).tolist()


class _Load:
    """The load placed so far (``load_w``, W per slot) and its cost per slot (``cost``, :meth:`Tariff.run_costs`),
    kept up to date as loads are added, so the extra cost of a load needs one cost evaluation over its window
    (the slots after adding it) instead of two (:func:`_incremental_costs` without a ``_Load``)."""

    def __init__(self, tariff: Tariff, load_w: np.ndarray):
        self.tariff, self.load_w = tariff, load_w
        self.cost = tariff.run_costs(load_w)
        self.limit_w = math.inf if tariff.breaker_w is None else tariff.breaker_w * (1 + _TOL)

    def extra(self, low: int, high: int, power_w: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Extra cost of ``power_w`` W in each slot of ``[low, high)`` (inf above the breaker), the breaker mask
        and the slots' cost with the power added (for :meth:`add`)."""
        after_w = self.load_w[low:high] + power_w
        after = self.tariff.run_costs(after_w, low)
        extra = after - self.cost[low:high]
        over = after_w > self.limit_w
        extra[over] = np.inf
        return extra, over, after

    def add(self, slots: slice | np.ndarray, power_w: float, cost: np.ndarray) -> None:
        """Add ``power_w`` to ``slots`` (a slice or distinct slots), whose cost with it is ``cost`` (from
        :meth:`extra`: the same values :meth:`Tariff.run_costs` gives for the new load)."""
        self.load_w[slots] += power_w
        self.cost[slots] = cost


def _incremental_costs(problem: Problem, appliance: Appliance, load_w: np.ndarray) -> tuple[int, np.ndarray]:
    """Window start and the extra cost of running ``appliance`` in each window slot (inf: breaker)."""
    low, high = problem.window(appliance)
    tariff = problem.tariff
    after_w = load_w[low:high] + appliance.power_w
    extra = tariff.run_costs(after_w, low) - tariff.run_costs(load_w[low:high], low)
    if tariff.breaker_w is not None:
        extra[after_w > tariff.breaker_w * (1 + _TOL)] = np.inf
    return low, extra


def _place_discrete(problem: Problem, appliance: Appliance, load_w: np.ndarray) -> list[int] | None:
    low, extra = _incremental_costs(problem, appliance, load_w)
    preferred = appliance.alpha_slot - low
    if appliance.interruptible:
        chosen = cheapest_slots(extra, appliance.duration_slots, preferred)
        return None if chosen is None else [low + i for i in chosen]
    start = cheapest_window_start(extra, appliance.duration_slots, preferred)
    return None if start is None else list(range(low + start, low + start + appliance.duration_slots))


def _add_discrete(problem: Problem, appliance: Appliance, load: _Load) -> list[int] | range | None:
    """:func:`_place_discrete` on ``load``, adding the appliance to it: its slots, or None if it has no room."""
    (low, high), power_w, n = problem.window(appliance), appliance.power_w, appliance.duration_slots
    extra, over, after = load.extra(low, high, power_w)
    preferred = appliance.alpha_slot - low
    if appliance.interruptible:
        chosen = cheapest_slots(extra, n, preferred)
        if chosen is None:
            return None
        load.add(np.add(chosen, low), power_w, after[chosen])
        return [low + i for i in chosen]
    start = _cheapest_window(extra, over, n, preferred)
    if start is None:
        return None
    load.add(slice(low + start, low + start + n), power_w, after[start : start + n])
    return range(low + start, low + start + n)


def _marginal_pieces(tariff: Tariff, load_w: np.ndarray, slots: np.ndarray, room_w: np.ndarray):
    """Convex piecewise-linear extra cost of adding up to ``room_w`` W to ``load_w`` in ``slots``.

    Returns ``(price_per_wh, width_w)``, both ``(len(slots), 2 + n_blocks)``: piece 0 is the PV surplus
    (free), piece ``1 + k`` IBR block ``k``; widths are 0 for blocks already filled or beyond ``room_w``.
    """
    # Tariff stores its prices and PV forecast as float64 arrays
    price_per_kwh, pv_w = cast(np.ndarray, tariff.price_per_kwh), cast("np.ndarray | None", tariff.pv_w)
    gap_w = (0.0 if pv_w is None else pv_w[slots]) - load_w  # extra power before importing
    edges_w = np.array(tariff.ibr_thresholds_kwh) * 1000.0 / tariff.slot_h
    bounds = np.column_stack(
        [
            np.zeros(slots.size),
            np.maximum(gap_w, 0.0),
            np.maximum(gap_w[:, None] + edges_w[None, :], 0.0),
            np.full(slots.size, np.inf),
        ]
    )
    widths = np.diff(np.minimum(bounds, room_w[:, None]), axis=1)
    prices = price_per_kwh[slots, None] * np.array(tariff.ibr_multipliers)[None, :] / 1000.0
    return np.column_stack([np.zeros(slots.size), prices]), widths


def _water_fill(problem: Problem, appliance: Appliance, load_w: np.ndarray) -> dict[int, float] | None:
    """Least-cost per-slot power meeting the required energy, or None if the window cannot hold it."""
    tariff, (low, high) = problem.tariff, problem.window(appliance)
    need_wh, slot_h = problem.required_energy_wh(appliance), tariff.slot_h
    tol_wh, room_w = _TOL * max(1.0, need_wh), np.full(high - low, appliance.power_w)
    if tariff.breaker_w is not None:
        room_w = np.minimum(room_w, tariff.breaker_w - load_w[low:high])
    prices, widths = _marginal_pieces(tariff, load_w[low:high], np.arange(low, high), np.maximum(room_w, 0.0))
    open_ = widths > _TOL  # pieces still to fill; each slot enters the heap with its cheapest open piece
    usable = np.nonzero(open_.any(axis=1))[0]
    first = np.argmax(open_[usable], axis=1)
    heap = [(prices[i, k], abs(low + i - appliance.alpha_slot), i, k) for i, k in zip(usable.tolist(), first.tolist())]
    heapq.heapify(heap)
    prices, widths, open_ = prices.tolist(), widths.tolist(), open_.tolist()
    power_w: dict[int, float] = {}
    left_wh = need_wh
    while heap and left_wh > tol_wh:
        _, distance, i, k = heapq.heappop(heap)
        take_wh = min(left_wh, widths[i][k] * slot_h)
        power_w[low + i] = power_w.get(low + i, 0.0) + take_wh / slot_h
        left_wh -= take_wh
        following = [j for j in range(k + 1, len(widths[i])) if open_[i][j]]
        if following:
            heapq.heappush(heap, (prices[i][following[0]], distance, i, following[0]))
    return dict(sorted(power_w.items())) if left_wh <= tol_wh else None


def _ordered(problem: Problem, kind: str) -> list[Appliance]:
    chosen = [a for a in problem.appliances if a.kind == kind]
    return sorted(chosen, key=lambda a: -problem.required_energy_wh(a)) if kind != "fixed" else chosen


def _place_fixed(problem: Problem) -> tuple[np.ndarray, dict[str, dict[int, float]]]:
    """Fixed loads at their start: ``(load_w, power_w)``; ScheduleInfeasible if they exceed the breaker."""
    load_w, power_w, breaker_w = np.zeros(problem.horizon_slots), {}, problem.tariff.breaker_w
    for appliance in _ordered(problem, "fixed"):
        low, high = problem.window(appliance)
        load_w[low:high] += appliance.power_w
        power_w[appliance.name] = dict.fromkeys(range(low, high), appliance.power_w)
        if breaker_w is not None and np.any(load_w[low:high] > breaker_w * (1 + _TOL)):
            raise ScheduleInfeasible(appliance.name, f"fixed loads exceed breaker_w={breaker_w:g} W")
    return load_w, power_w


def schedule_heap(problem: Problem, *, search_budget: int = 20_000) -> Schedule:
    """Schedule every appliance of ``problem`` (see the module docstring).

    Parameters
    ----------
    problem : Problem
        Appliances and tariff.
    search_budget : int
        Placements the repair search may try when the greedy pass hits the breaker limit.

    Returns
    -------
    Schedule
        A schedule with ``violations(problem) == []``.

    Raises
    ------
    ScheduleInfeasible
        No placement fits; ``appliance`` names the one the greedy pass could not place.
    """
    load_w, power_w = _place_fixed(problem)
    fixed_load_w, fixed_power_w = load_w.copy(), dict(power_w)
    try:
        load = _Load(problem.tariff, load_w)  # updates load_w in place
        for appliance in _ordered(problem, "deferrable"):
            slots = _add_discrete(problem, appliance, load)
            if slots is None:
                raise _NoRoom(appliance.name)
            power_w[appliance.name] = dict.fromkeys(slots, appliance.power_w)
        power_w.update(_place_regulatable(problem, load_w))
    except _NoRoom as failure:
        power_w = dict(fixed_power_w)
        power_w.update(_search(problem, fixed_load_w, failure.args[0], search_budget))
    return Schedule.trusted(problem.horizon_slots, power_w, ordered=True)  # every dict built in slot order


def _place_regulatable(problem: Problem, load_w: np.ndarray) -> dict[str, dict[int, float]]:
    """Water-fill the regulatable loads in order (updating ``load_w``); max-flow if that runs out of room."""
    placed, trial_w = {}, load_w.copy()
    for appliance in _ordered(problem, "regulatable"):
        power = _water_fill(problem, appliance, trial_w)
        if power is None:
            return _max_flow(problem, load_w, appliance.name)
        placed[appliance.name] = power
        trial_w[list(power)] += list(power.values())
    load_w[:] = trial_w
    return placed


def _max_flow(problem: Problem, load_w: np.ndarray, failed: str) -> dict[str, dict[int, float]]:
    """Feasible (not least-cost) energy allocation of the regulatable loads under the breaker: Edmonds-Karp
    on source -> appliance (required Wh) -> slot (power_w * slot_h) -> sink (breaker room)."""
    apps, slot_h = _ordered(problem, "regulatable"), problem.tariff.slot_h
    if problem.tariff.breaker_w is None:
        raise _NoRoom(failed)
    slot_room = np.maximum(problem.tariff.breaker_w - load_w, 0.0) * slot_h
    edge_room = np.zeros((len(apps), load_w.size))
    for i, a in enumerate(apps):
        low, high = problem.window(a)
        edge_room[i, low:high] = a.power_w * slot_h
    need = np.array([problem.required_energy_wh(a) for a in apps])
    flow, used, sent, eps = np.zeros_like(edge_room), np.zeros(load_w.size), np.zeros(len(apps)), _TOL * need.max()
    while True:
        from_app, from_slot = {}, {i: -1 for i in range(len(apps)) if need[i] - sent[i] > eps}
        queue, end = deque(from_slot), None
        while queue and end is None:
            i = queue.popleft()
            for t in np.nonzero(edge_room[i] - flow[i] > eps)[0].tolist():
                if t in from_app:
                    continue
                from_app[t] = i
                if slot_room[t] - used[t] > eps:
                    end = t
                    break
                for j in np.nonzero(flow[:, t] > eps)[0].tolist():
                    if j not in from_slot:
                        from_slot[j] = t
                        queue.append(j)
        if end is None:
            break
        path, t, amount = [], end, slot_room[end] - used[end]
        while True:
            i = from_app[t]
            path.append((i, t))
            amount, back = min(amount, edge_room[i, t] - flow[i, t]), from_slot[i]
            if back < 0:
                amount = min(amount, need[i] - sent[i])
                break
            amount, t = min(amount, flow[i, back]), back
        used[end] += amount
        sent[path[-1][0]] += amount
        for i, t in path:
            flow[i, t] += amount
        for (_, back), (i, _) in zip(path[1:], path[:-1]):  # appliance i moved ``amount`` off slot ``back``
            flow[i, back] -= amount
    if np.any(need - sent > eps):
        raise _NoRoom(failed)
    return {a.name: {t: flow[i, t] / slot_h for t in np.nonzero(flow[i] > 0)[0].tolist()} for i, a in enumerate(apps)}


def _search(problem: Problem, fixed_load_w: np.ndarray, failed: str, budget: int) -> dict[str, dict[int, float]]:
    """Depth-first search over deferrable placements, cheapest first; regulatable loads at the leaves."""
    order, tries = _ordered(problem, "deferrable"), itertools.count(1)
    breaker_w = problem.tariff.breaker_w
    limit = "no breaker limit" if breaker_w is None else f"breaker_w={breaker_w:g} W"

    def candidates(appliance: Appliance, load_w: np.ndarray):
        low, extra = _incremental_costs(problem, appliance, load_w)
        n, alpha = appliance.duration_slots, appliance.alpha_slot
        if appliance.interruptible:  # combinations of the cost-sorted slots: the cheapest set comes first
            slots = sorted((c, abs(low + i - alpha), low + i) for i, c in enumerate(extra) if np.isfinite(c))
            return itertools.combinations([s for _, _, s in slots], n)
        blocked = np.concatenate(([0], np.cumsum(~np.isfinite(extra))))  # forbidden slots before each offset
        starts = [
            (float(np.sum(extra[i : i + n])), abs(low + i - alpha), low + i)
            for i in np.flatnonzero(blocked[n:] == blocked[:-n]).tolist()
        ]
        return (tuple(range(s, s + n)) for _, _, s in sorted(starts))

    def descend(k: int, load_w: np.ndarray):
        if k == len(order):
            try:
                return _place_regulatable(problem, load_w.copy())
            except _NoRoom:
                return None
        appliance = order[k]
        for slots in candidates(appliance, load_w):
            if next(tries) > budget:
                raise ScheduleInfeasible(
                    failed,
                    f"no room under {limit}: none found within the search budget of {budget} placements",
                    proven=False,
                )
            load_w[list(slots)] += appliance.power_w
            found = descend(k + 1, load_w)
            load_w[list(slots)] -= appliance.power_w
            if found is not None:
                found[appliance.name] = dict.fromkeys(sorted(slots), appliance.power_w)
                return found
        return None

    placed = descend(0, fixed_load_w.copy())
    if placed is None:
        raise ScheduleInfeasible(failed, f"no feasible schedule under {limit} (exhaustive search)")
    return placed
