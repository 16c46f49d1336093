"""The heap scheduler's fast cost path (issue 6) against the plain definitions it replaces.

``Tariff.run_costs`` (contiguous slots, block lookup) must equal ``Tariff.slot_costs`` up to rounding and be
elementwise; the scheduler's incremental cost state (``_Load``) must equal the difference of two
``slot_costs`` calls and stay equal to a fresh evaluation as loads are added; and the schedules must be the
ones the old code path (two ``slot_costs`` calls per load, a heap of ``(cost, distance, slot)``) gives.
"""

from __future__ import annotations

import heapq

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridflow.scheduling.heap_scheduler import (
    _TOL,
    _add_discrete,
    _Load,
    _NoRoom,
    _ordered,
    _place_discrete,
    _place_fixed,
    _place_regulatable,
    cheapest_slots,
    schedule_heap,
)
from gridflow.scheduling.lin_hu import base_load_appliances, lin_hu_tariff
from gridflow.scheduling.model import Appliance, Problem, Schedule, Tariff

CHECKS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def tariffs(draw, max_slots=48):
    """Random tariffs: 0-4 IBR thresholds, non-decreasing multipliers, optional PV and breaker."""
    n = draw(st.integers(1, max_slots))
    slot_minutes = draw(st.sampled_from([1, 5, 15, 60]))
    edges = sorted(set(draw(st.lists(st.floats(0.001, 5.0), max_size=4))))
    steps = draw(st.lists(st.floats(0.0, 2.0), min_size=len(edges) + 1, max_size=len(edges) + 1))
    multipliers = list(np.cumsum(steps) + 0.1)
    prices = draw(st.lists(st.floats(0.0, 2.0), min_size=n, max_size=n))
    pv = draw(st.none() | st.lists(st.floats(0.0, 5000.0), min_size=n, max_size=n))
    breaker = draw(st.none() | st.floats(100.0, 20000.0))
    return Tariff(prices, slot_minutes, edges, multipliers, pv, breaker)


@st.composite
def tariff_and_load(draw):
    tariff = draw(tariffs())
    n = tariff.n_slots
    load = np.array(draw(st.lists(st.floats(0.0, 20000.0), min_size=n, max_size=n)))
    low = draw(st.integers(0, n - 1))
    return tariff, load, low, draw(st.integers(low + 1, n))


def close(fast: np.ndarray, plain: np.ndarray) -> bool:
    return bool(np.allclose(fast, plain, rtol=1e-12, atol=1e-15))


@CHECKS
@given(tariff_and_load())
def test_run_costs_equal_slot_costs_and_are_elementwise(case):
    tariff, load, low, high = case
    fast = tariff.run_costs(load[low:high], low)
    assert close(fast, tariff.slot_costs(load[low:high], np.arange(low, high)))
    assert np.array_equal(fast, tariff.run_costs(load)[low:high])  # a slot's cost ignores the other slots
    assert close(np.array([tariff.run_costs(load[t : t + 1], t)[0] for t in range(low, high)]), fast)


@CHECKS
@given(tariff_and_load(), st.floats(1.0, 5000.0), st.data())
def test_incremental_cost_equals_the_difference_of_two_slot_costs(case, power_w, data):
    tariff, load, low, high = case
    state = _Load(tariff, load.copy())
    extra, over, after = state.extra(low, high, power_w)
    slots, after_w = np.arange(low, high), load[low:high] + power_w
    plain = tariff.slot_costs(after_w, slots) - tariff.slot_costs(load[low:high], slots)
    limit = np.inf if tariff.breaker_w is None else tariff.breaker_w * (1 + _TOL)
    assert np.array_equal(over, after_w > limit) and np.all(np.isinf(extra[over]))
    assert close(after, tariff.slot_costs(after_w, slots))
    # a difference of two costs: rounding is relative to the costs, not to their difference
    scale = np.abs(after) + np.abs(tariff.slot_costs(load[low:high], slots))
    assert np.all(np.abs(extra - plain)[~over] <= 1e-12 * scale[~over] + 1e-15)
    # adding the power to some of the slots keeps the state equal to a fresh evaluation, bit for bit
    chosen = np.array(sorted(data.draw(st.sets(st.integers(low, high - 1), min_size=1))))
    state.add(chosen, power_w, after[chosen - low])
    expected = load.copy()
    expected[chosen] += power_w
    assert np.array_equal(state.load_w, expected)
    assert np.array_equal(state.cost, tariff.run_costs(expected))


def heap_cheapest_slots(costs, n_slots, preferred=0):
    """The old ``cheapest_slots``: pop ``(cost, distance, slot)`` from a min-heap."""
    finite = np.nonzero(np.isfinite(costs))[0].tolist()
    heap = [(c, abs(i - preferred), i) for i, c in zip(finite, np.asarray(costs, dtype=np.float64)[finite].tolist())]
    if len(heap) < n_slots:
        return None
    heapq.heapify(heap)
    return sorted(heapq.heappop(heap)[2] for _ in range(n_slots))


@settings(max_examples=500, deadline=None)
@given(st.lists(st.none() | st.integers(0, 4), min_size=1, max_size=30), st.integers(1, 8), st.integers(-5, 35))
def test_cheapest_slots_pops_the_heap_order_including_ties(values, n, preferred):
    costs = np.array([np.inf if v is None else v / 4 for v in values])
    assert cheapest_slots(costs, n, preferred) == heap_cheapest_slots(costs, n, preferred)


# ---------------------------------------------------------------- whole schedules


def reference_greedy(problem: Problem) -> dict[str, dict[int, float]] | None:
    """The greedy pass as it was before the fast path: each load's extra cost as the difference of two full
    ``slot_costs`` calls, the old window search and the heap; None where it needs the repair search."""
    tariff = problem.tariff
    load_w, power_w = _place_fixed(problem)
    for a in _ordered(problem, "deferrable"):
        low, high = problem.window(a)
        slots, after_w = np.arange(low, high), load_w[low:high] + a.power_w
        extra = tariff.slot_costs(after_w, slots) - tariff.slot_costs(load_w[low:high], slots)
        if tariff.breaker_w is not None:
            extra[after_w > tariff.breaker_w * (1 + _TOL)] = np.inf
        preferred, n = a.alpha_slot - low, a.duration_slots
        if a.interruptible:
            chosen = heap_cheapest_slots(extra, n, preferred)
            if chosen is None:
                return None
            placed = [low + i for i in chosen]
        else:
            forbidden = ~np.isfinite(extra)
            sums = np.concatenate(([0.0], np.cumsum(np.where(forbidden, 0.0, extra))))
            blocked = np.concatenate(([0], np.cumsum(forbidden)))
            window = sums[n:] - sums[:-n]
            window[(blocked[n:] - blocked[:-n]) > 0] = np.inf
            best = window.min()
            if not np.isfinite(best):
                return None
            ties = np.nonzero(window <= best + _TOL * (1.0 + abs(best)))[0]
            start = int(ties[np.argmin(np.abs(ties - preferred))])
            placed = list(range(low + start, low + start + n))
        load_w[placed] += a.power_w
        power_w[a.name] = dict.fromkeys(placed, a.power_w)
    try:
        power_w.update(_place_regulatable(problem, load_w))
    except _NoRoom:
        return None
    return power_w


def benchmark_household(
    seed: int,
    n_loads: int = 50,
    slot_minutes: int = 1,
    pv: bool = False,
    interruptible: float = 0.0,
    regulatable: float = 0.0,
) -> Problem:
    """``benchmarks/scheduling_pso.py``'s synthetic household (base load, RTP with 5-level IBR, 9.2 kW
    breaker, 100-2500 W loads of 10-120 min), optionally with PV and interruptible or regulatable loads.
    The prices are continuous, so slot costs are not tied exactly (a tie would be broken by rounding)."""
    rng, n_slots = np.random.default_rng(seed), 1440 // slot_minutes
    loads = []
    for i in range(n_loads):
        duration = -(-int(rng.integers(10, 121)) // slot_minutes)
        alpha = int(rng.integers(0, n_slots - duration))
        beta = min(n_slots, alpha + duration + int(rng.integers(0, 241)) // slot_minutes)
        power_w, margin = float(rng.integers(1, 26) * 100), int(rng.integers(0, 121)) // slot_minutes
        draw = rng.random() if interruptible or regulatable else 1.0  # else the benchmark's households exactly
        if draw < regulatable:
            loads.append(Appliance(f"load_{i:02d}", "regulatable", power_w, duration, alpha, beta, margin))
        else:
            loads.append(
                Appliance(
                    f"load_{i:02d}",
                    "deferrable",
                    power_w,
                    duration,
                    alpha,
                    beta,
                    margin,
                    interruptible=draw < regulatable + interruptible,
                )
            )
    tariff = lin_hu_tariff(breaker_w=40.0 * 230.0, slot_minutes=slot_minutes)
    if pv:
        hours = (np.arange(n_slots) + 0.5) * slot_minutes / 60.0
        pv_w = np.maximum(0.0, 4000.0 * np.sin(np.pi * (hours - 6.0) / 13.0)) * rng.uniform(0.6, 1.0, n_slots)
        tariff = Tariff(
            tariff.price_per_kwh,
            slot_minutes,
            tariff.ibr_thresholds_kwh,
            tariff.ibr_multipliers,
            pv_w,
            tariff.breaker_w,
        )
    return Problem((*loads, *base_load_appliances(slot_minutes)), tariff)


CASES = [
    dict(),
    dict(pv=True),
    dict(interruptible=0.4),
    dict(pv=True, interruptible=0.3, regulatable=0.2),
    dict(n_loads=10, slot_minutes=15),
    dict(n_loads=12, slot_minutes=15, pv=True, interruptible=0.5),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_heap_schedule_equals_the_old_code_path(case):
    compared = 0
    for seed in range(8):
        problem = benchmark_household(seed, **CASES[case])
        expected = reference_greedy(problem)
        if expected is None:  # the repair search takes over: its own tests cover it
            continue
        schedule = schedule_heap(problem)
        assert schedule.power_w == {name: dict(sorted(slots.items())) for name, slots in expected.items()}
        assert schedule.violations(problem) == []
        compared += 1
    assert compared >= 4


@pytest.mark.parametrize("case", range(len(CASES)))
def test_incremental_state_places_like_the_stateless_path(case):
    """``_add_discrete`` on the kept cost state equals ``_place_discrete`` (used by PSO and the search) bit
    for bit, also with tied prices, since both evaluate ``run_costs`` on the same loads."""
    for seed in range(3):
        problem = benchmark_household(100 + seed, **CASES[case])
        tied = Tariff(
            np.round(problem.tariff.price_per_kwh, 1),
            problem.tariff.slot_minutes,
            problem.tariff.ibr_thresholds_kwh,
            problem.tariff.ibr_multipliers,
            problem.tariff.pv_w,
            problem.tariff.breaker_w,
        )
        for p in (problem, Problem(problem.appliances, tied)):
            load_w, _ = _place_fixed(p)
            state = _Load(p.tariff, load_w.copy())
            for a in _ordered(p, "deferrable"):
                slots = _place_discrete(p, a, load_w)
                assert (None if slots is None else list(slots)) == (
                    None if (got := _add_discrete(p, a, state)) is None else list(got)
                )
                if slots is None:
                    break
                load_w[slots] += a.power_w
                assert np.array_equal(state.load_w, load_w)


def test_schedule_dicts_are_in_slot_order():
    """``schedule_heap`` hands its dicts to ``Schedule.trusted(ordered=True)``: they must be sorted."""
    problem = benchmark_household(3, n_loads=12, slot_minutes=15, pv=True, interruptible=0.4, regulatable=0.3)
    schedule = schedule_heap(problem)
    assert all(
        list(slots) == sorted(slots) and all(p > 0 for p in slots.values()) for slots in schedule.power_w.values()
    )
    assert Schedule(schedule.horizon_slots, schedule.power_w).power_w == schedule.power_w


def test_repair_search_schedules_are_in_slot_order():
    """The search tries an interruptible load's slots in cost order (here 3 before 2): the schedule's dict
    must still be in slot order, as ``Schedule.trusted(ordered=True)`` takes it as it is."""
    problem = Problem(
        (
            Appliance("big", "deferrable", 700, 2, 0, 5, interruptible=True),
            Appliance("small", "deferrable", 600, 2, 0, 2),
        ),
        Tariff([3, 1, 9, 2, 9], breaker_w=1000),
    )
    schedule = schedule_heap(problem)  # greedy puts "big" on slots 1 and 3 and leaves "small" no room
    assert schedule.violations(problem) == []
    assert list(schedule.power_w["big"].items()) == [(2, 700.0), (3, 700.0)]
    assert list(schedule.power_w["small"]) == [0, 1]
