"""The home energy model (PV, battery, EV, appliances, import and export prices) and its exact MILP.

References: a hand-worked battery arbitrage, brute-force enumeration of tiny homes (integer data and a
lossless battery, whose LP optimum is integral), hypothesis-generated homes checked constraint by constraint
by :meth:`HomePlan.violations` and against a simple feasible policy's cost, and infeasible requests whose
shortfall is worked out by hand.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridflow.scheduling.home import Battery, EVSession, HomePlan, HomeProblem, PlanInfeasible
from gridflow.scheduling.fleet import plan_home_fast
from gridflow.scheduling.home_milp import TIE_COST, solve_home
from gridflow.scheduling.model import Appliance, Schedule


def test_a_battery_buys_cheap_and_covers_the_dear_slot_as_worked_by_hand():
    # 1 kW base load; charging 1 kW at 0.10 stores 0.9 kWh, which discharges 0.81 kWh at 0.30
    problem = HomeProblem(
        [0.10, 0.30],
        base_load_w=[1000, 1000],
        battery=Battery(2.0, 1.0, 1.0, round_trip_efficiency=0.81, soc_min=0.0, soc_initial=0.0),
    )
    plan = solve_home(problem)
    assert plan.violations(problem) == []
    assert plan.cost == pytest.approx(0.10 * 2.0 + 0.30 * (1 - 0.81), abs=1e-6)
    assert plan.charge_w == pytest.approx([1000, 0], abs=1e-3)
    assert plan.discharge_w == pytest.approx([0, 810], abs=1e-3)
    assert plan.battery_kwh == pytest.approx([0.0, 0.9, 0.0], abs=1e-6)


def test_a_battery_is_not_cycled_when_losses_eat_the_spread():
    # spread 0.10 -> 0.11 is below the 19 % loss: the battery stays idle
    problem = HomeProblem(
        [0.10, 0.11],
        base_load_w=[1000, 1000],
        battery=Battery(2.0, 1.0, 1.0, round_trip_efficiency=0.81, soc_min=0.0, soc_initial=0.0),
    )
    plan = solve_home(problem)
    assert plan.cost == pytest.approx(0.21, abs=1e-6)
    assert plan.charge_w.max() < 1e-3


def test_pv_surplus_goes_to_the_battery_when_export_pays_less_than_the_evening_import():
    problem = HomeProblem(
        [0.30, 0.30],
        export_price=[0.05, 0.05],
        base_load_w=[0, 2000],
        pv_w=[2000, 0],
        battery=Battery(5.0, 3.0, 3.0, round_trip_efficiency=1.0, soc_min=0.0, soc_initial=0.0),
    )
    plan = solve_home(problem)
    assert plan.violations(problem) == []
    assert plan.export_w.max() < 1e-3 and plan.import_w.max() < 1e-3  # self-sufficient
    assert plan.self_consumption(problem) == pytest.approx(1.0)


def test_negative_import_prices_are_earned_without_charging_and_discharging_at_once():
    problem = HomeProblem(
        [-0.20, 0.30, -0.10],
        export_price=[-0.25, 0.05, -0.15],
        base_load_w=[500, 500, 500],
        import_max_w=6000,
        battery=Battery(4.0, 2.0, 2.0, soc_initial=0.5),
        evs=(EVSession("car", 0, 3, 1.0, 3.7),),
    )
    plan = solve_home(problem)
    assert plan.violations(problem) == []
    assert plan.cost < 0  # paid to take energy
    assert plan.import_w[0] == pytest.approx(6000, rel=1e-6)  # the connection's limit in the best slot


def test_curtailment_beats_paying_to_export():
    problem = HomeProblem([0.30], export_price=[-0.10], pv_w=[3000])
    assert solve_home(problem).export_w[0] == pytest.approx(0, abs=1e-3)
    fixed = HomeProblem([0.30], export_price=[-0.10], pv_w=[3000], pv_curtailable=False)
    plan = solve_home(fixed)
    assert plan.export_w[0] == pytest.approx(3000, rel=1e-6)
    assert plan.cost == pytest.approx(0.30, abs=1e-6)


def test_an_ev_charges_in_the_cheapest_slots_within_its_session_and_its_minimum_power():
    problem = HomeProblem(
        [0.40, 0.10, 0.30, 0.20, 0.50],
        evs=(EVSession("car", 1, 5, energy_kwh=3.6, max_kw=3.0, min_kw=1.5, efficiency=0.9),),
    )
    plan = solve_home(problem)
    assert plan.violations(problem) == []
    # 4 kWh at the AC side in slots priced 0.10, 0.30, 0.20, 0.50: 3 kW at 0.10 leaves 1 kW, below the
    # 1.5 kW minimum, so the optimum is 2.5 kW at 0.10 and 1.5 kW at 0.20
    assert plan.cost == pytest.approx(2.5 * 0.10 + 1.5 * 0.20, abs=1e-6)
    assert plan.ev_w["car"][0] == 0


def test_minimum_charge_now_runs_at_full_power_from_arrival():
    problem = HomeProblem(
        [0.50, 0.50, 0.10, 0.20],
        evs=(EVSession("car", 0, 4, energy_kwh=6.0, max_kw=2.0, efficiency=1.0, now_kwh=3.0),),
    )
    plan = solve_home(problem)
    assert plan.violations(problem) == []
    assert plan.ev_w["car"].tolist() == pytest.approx([2000, 1000, 2000, 1000], abs=1e-3)


def test_an_unreachable_ev_target_names_the_ev_the_time_and_the_most_it_can_get():
    problem = HomeProblem(
        [0.2] * 8,
        slot_minutes=60,
        start_minute=23 * 60,
        evs=(EVSession("car", 0, 4, energy_kwh=20.0, max_kw=3.7, efficiency=0.9),),
    )
    with pytest.raises(PlanInfeasible) as raised:
        solve_home(problem)
    assert raised.value.constraint == "ev:car"
    message = str(raised.value)
    assert "'car'" in message and "by 03:00" in message and "3.7 kW" in message
    assert "at most 13.3 kWh" in message  # 3.7 kW x 4 h x 0.9


def test_an_unreachable_battery_target_and_an_overloaded_connection_are_named():
    short = HomeProblem([0.2] * 4, battery=Battery(10.0, 1.0, 1.0, 1.0, soc_min=0.0, soc_initial=0.0, soc_final=0.8))
    with pytest.raises(PlanInfeasible) as raised:
        solve_home(short)
    assert raised.value.constraint == "battery_target" and "at most 4 kWh" in str(raised.value)
    overloaded = HomeProblem([0.2] * 3, base_load_w=[1000, 7000, 1000], import_max_w=5000, start_minute=18 * 60)
    with pytest.raises(PlanInfeasible) as raised:
        solve_home(overloaded)
    assert raised.value.constraint == "grid_import"
    assert "from 19:00 to 20:00" in str(raised.value) and "short by up to 2 kW" in str(raised.value)


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: Battery(10, 5, 5, soc_initial=1.2), "soc_initial"),
        (lambda: Battery(10, 5, 5, round_trip_efficiency=0), "round_trip_efficiency"),
        (lambda: EVSession("car", 5, 5, 10, 7.4), "departure_slot"),
        (lambda: EVSession("car", 0, 5, 10, 7.4, min_kw=8), "min_kw"),
        (lambda: HomeProblem([0.1, float("nan")]), "import_price[1]"),
        (lambda: HomeProblem([0.1, 0.2], pv_w=[1, -1]), "pv_w[1]"),
        (lambda: HomeProblem([0.1], evs=(EVSession("car", 0, 2, 1, 3.7),)), "departure_slot"),
        (lambda: HomeProblem([0.1], export_price=[0.1, 0.1]), "export_price"),
    ],
)
def test_invalid_homes_are_refused_naming_the_field(build, field):
    with pytest.raises(ValueError, match=field.replace("[", r"\[").replace("]", r"\]")):
        build()


def test_violations_catch_a_plan_that_breaks_the_physics():
    problem = HomeProblem([0.1, 0.3], base_load_w=[1000, 1000], battery=Battery(2, 1, 1, soc_initial=0.5))
    plan = solve_home(problem)
    broken = HomePlan(
        import_w=plan.import_w,
        export_w=plan.export_w,
        pv_used_w=plan.pv_used_w,
        charge_w=plan.charge_w + 100.0,  # more charge: the balance and the battery recursion break
        discharge_w=plan.discharge_w + 100.0,
        battery_kwh=plan.battery_kwh,
        ev_w={},
        appliances=Schedule(2),
        cost=plan.cost,
        objective=plan.objective,
        solve_time_s=0.0,
        optimal=True,
        solver="test",
    )
    found = " | ".join(broken.violations(problem))
    assert "charges and discharges in the same slots" in found and "battery: energy does not follow" in found


# -- brute force on tiny homes ------------------------------------------------------------------------------


def _brute_force(problem: HomeProblem, powers_kw=(-2, -1, 0, 1, 2)) -> float:
    """Least cost over every integer-kW battery and EV profile, appliance start and PV use (1-hour slots,
    lossless battery, integer data: the LP optimum is integral, so this is the exact optimum)."""
    n = problem.n_slots
    battery, (ev,) = problem.battery, problem.evs
    assert battery is not None and battery.round_trip_efficiency == 1 and problem.slot_minutes == 60
    seqs = np.array(list(itertools.product(powers_kw, repeat=n)), dtype=float)
    soc = battery.energy_initial_kwh + np.cumsum(seqs, axis=1)
    ok = (soc >= battery.energy_min_kwh - 1e-9).all(1) & (soc <= battery.energy_max_kwh + 1e-9).all(1)
    seqs = seqs[ok & (soc[:, -1] >= battery.energy_final_kwh - 1e-9)]
    plugged = range(ev.arrival_slot, ev.departure_slot)
    ev_seqs = []
    for powers in itertools.product(range(int(ev.max_kw) + 1), repeat=len(plugged)):
        if sum(powers) * ev.efficiency >= ev.energy_kwh - 1e-9:
            row = np.zeros(n)
            row[list(plugged)] = powers
            ev_seqs.append(row)
    (washer,) = problem.appliances
    low, high = problem.appliance_problem.window(washer)
    starts = range(low, high - washer.duration_slots + 1)
    pv = np.asarray(problem.pv_w) / 1000
    base = np.asarray(problem.base_load_w) / 1000
    best = math.inf
    for start in starts:
        appliance = np.zeros(n)
        appliance[start : start + washer.duration_slots] = washer.power_w / 1000
        for ev_row in ev_seqs:
            # net demand before PV, per battery sequence (charge > 0)
            demand = base + appliance + ev_row + seqs  # (k, n)
            slot_best = np.full(demand.shape, math.inf)
            for used in range(int(pv.max()) + 1):
                use = np.minimum(used, pv)
                if not problem.pv_curtailable:
                    use = pv
                net = demand - use
                imp, exp = np.maximum(net, 0), np.maximum(-net, 0)
                price = np.asarray(problem.import_price)
                if problem.ibr_thresholds_kwh:  # blocks priced where the price is >= 0 (worked here, not reused)
                    (edge,), (low_rate, high_rate) = problem.ibr_thresholds_kwh, problem.ibr_multipliers
                    tiered = np.minimum(imp, edge) * low_rate + np.maximum(imp - edge, 0) * high_rate
                    paid = np.where(price >= 0, price * tiered, price * imp)
                else:
                    paid = price * imp
                cost = paid - exp * problem.export_price
                cost[(imp > problem.import_max_w / 1000 + 1e-9) | (exp > problem.export_max_w / 1000 + 1e-9)] = math.inf
                slot_best = np.minimum(slot_best, cost)
            best = min(best, float(slot_best.sum(1).min(initial=math.inf)))
    return best


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    prices=st.lists(st.integers(-3, 6), min_size=4, max_size=4),
    export=st.lists(st.integers(-2, 4), min_size=4, max_size=4),
    pv=st.lists(st.integers(0, 3), min_size=4, max_size=4),
    base=st.lists(st.integers(0, 2), min_size=4, max_size=4),
    soc=st.integers(0, 4),
    ev_need=st.integers(0, 4),
    arrival=st.integers(0, 2),
    curtailable=st.booleans(),
    ibr=st.booleans(),
)
def test_the_milp_equals_brute_force_on_tiny_homes(prices, export, pv, base, soc, ev_need, arrival, curtailable, ibr):
    problem = HomeProblem(
        [p / 10 for p in prices],
        export_price=[e / 10 for e in export],
        base_load_w=[1000 * b for b in base],
        pv_w=[1000 * p for p in pv],
        pv_curtailable=curtailable,
        import_max_w=6000,
        export_max_w=4000,
        battery=Battery(4.0, 2.0, 2.0, round_trip_efficiency=1.0, soc_min=0.0, soc_initial=soc / 4),
        evs=(EVSession("car", arrival, 4, float(min(ev_need, 2 * (4 - arrival))), 2.0, efficiency=1.0),),
        appliances=(Appliance("washer", "deferrable", 1000, 2, 0, 4),),
        ibr_thresholds_kwh=(2.0,) if ibr else (),
        ibr_multipliers=(1.0, 1.5) if ibr else (),
    )
    expected = _brute_force(problem)
    if math.isinf(expected):
        with pytest.raises(PlanInfeasible):
            solve_home(problem)
        return
    plan = solve_home(problem)
    assert plan.violations(problem) == []
    assert plan.cost == pytest.approx(expected, abs=1e-6)


# -- generated homes: every constraint, and never worse than a simple policy -----------------------------------


@st.composite
def homes(draw):
    n = draw(st.sampled_from([6, 12, 24, 48]))
    slot_minutes = draw(st.sampled_from([15, 30, 60]))
    h = slot_minutes / 60
    prices = draw(st.lists(st.floats(-0.2, 0.6), min_size=n, max_size=n))
    export = [p * draw(st.floats(0.0, 1.2)) for p in prices]
    peak = draw(st.floats(0, 6000))
    pv = [max(0.0, peak * math.sin(math.pi * (t - n / 4) / (n / 2))) for t in range(n)]
    base = draw(st.lists(st.floats(0, 1500), min_size=n, max_size=n))
    battery = None
    if draw(st.booleans()):
        capacity = draw(st.floats(2, 15))
        low = draw(st.floats(0, 0.3))
        battery = Battery(
            capacity,
            draw(st.floats(0.5, 5)),
            draw(st.floats(0.5, 5)),
            draw(st.floats(0.7, 1.0)),
            soc_min=low,
            soc_initial=draw(st.floats(low, 1.0)),
        )
    evs = []
    for k in range(draw(st.integers(0, 2))):
        arrival = draw(st.integers(0, n - 2))
        departure = draw(st.integers(arrival + 1, n))
        max_kw = draw(st.floats(1.4, 11))
        most = max_kw * h * (departure - arrival) * 0.9
        need = draw(st.floats(0, 0.9)) * most
        min_kw = draw(st.sampled_from([0.0, 1.4])) if max_kw >= 2 else 0.0
        evs.append(EVSession(f"ev{k}", arrival, departure, need, max_kw, min_kw, 0.9, draw(st.floats(0, 1)) * need))
    appliances = []
    for k in range(draw(st.integers(0, 2))):
        duration = draw(st.integers(1, 3))
        alpha = draw(st.integers(0, n - duration))
        beta = draw(st.integers(alpha + duration, n))
        kind = draw(st.sampled_from(["deferrable", "regulatable", "fixed"]))
        appliances.append(
            Appliance(
                f"a{k}",
                kind,
                draw(st.floats(100, 3000)),
                duration,
                alpha,
                beta,
                interruptible=kind == "deferrable" and draw(st.booleans()),
            )
        )
    return HomeProblem(
        prices,
        export_price=export,
        slot_minutes=slot_minutes,
        base_load_w=base,
        pv_w=pv,
        pv_curtailable=draw(st.booleans()),
        import_max_w=draw(st.sampled_from([None, 25_000.0])),
        export_max_w=draw(st.sampled_from([None, 10_000.0])),
        battery=battery,
        evs=evs,
        appliances=appliances,
    )


def _simple_policy_cost(problem: HomeProblem) -> float:
    """Battery idle, each EV at full power from arrival until full, appliances at their preferred start."""
    h = problem.slot_h
    demand = np.asarray(problem.base_load_w, dtype=float).copy()
    for ev in problem.evs:
        left = ev.energy_kwh
        for t in range(ev.arrival_slot, ev.departure_slot):
            power = min(ev.max_kw, max(left, 0.0) / (ev.efficiency * h))
            if 0 < power < ev.min_kw:
                power = ev.min_kw
            demand[t] += power * 1000
            left -= power * ev.efficiency * h
    for a in problem.appliances:
        if a.kind == "regulatable":
            energy_left = problem.appliance_problem.required_energy_wh(a)
            for t in range(a.alpha_slot, a.beta_slot):
                power = min(a.power_w, energy_left / h)
                demand[t] += power
                energy_left -= power * h
        else:
            demand[a.alpha_slot : a.alpha_slot + a.duration_slots] += a.power_w
    pv = np.asarray(problem.pv_w)
    net = demand - pv
    imp = np.maximum(net, 0.0)
    exp = np.maximum(-net, 0.0)
    if problem.pv_curtailable:  # curtail rather than pay to export
        exp = np.where(np.asarray(problem.export_price) < 0, 0.0, exp)
    if (imp > problem.import_max_w).any() or (exp > problem.export_max_w).any():
        return math.inf
    return problem.cost(imp, exp)


def _tie_tolerance(problem: HomeProblem) -> float:
    """How far the tie-breaking costs (``TIE_COST`` per kWh of battery throughput and grid exchange, twice it
    as a credit on PV used) may move a bill from the true optimum: 3 x TIE_COST per kWh of the home's energy,
    which matters only where prices differ by less than that (1e-5 currency per kWh)."""
    h = problem.slot_h
    energy_kwh = (np.sum(problem.pv_w) + np.sum(problem.base_load_w)) * h / 1000
    energy_kwh += sum(ev.energy_kwh / ev.efficiency for ev in problem.evs)
    energy_kwh += sum(problem.appliance_problem.required_energy_wh(a) / 1000 for a in problem.appliances)
    if problem.battery is not None:
        energy_kwh += problem.battery.capacity_kwh * problem.n_slots  # at most a full swing per slot
    return 1e-6 + 3 * TIE_COST * energy_kwh


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(homes())
def test_every_milp_plan_keeps_every_constraint_and_beats_a_simple_policy(problem):
    try:
        plan = solve_home(problem, time_limit_s=20)
    except PlanInfeasible as refused:
        # a feasible simple policy would prove the home feasible
        assert refused.constraint == "grid_import" or refused.constraint.startswith("ev")
        assert _simple_policy_cost(problem) == math.inf
        return
    assert plan.violations(problem) == []
    assert plan.cost <= _simple_policy_cost(problem) + _tie_tolerance(problem)


# -- the fleet planner's decomposition -----------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(homes())
def test_the_fleet_planner_keeps_every_constraint_and_never_beats_the_exact_optimum(problem):
    try:
        exact = solve_home(problem, time_limit_s=20)
    except PlanInfeasible:
        with pytest.raises(PlanInfeasible):
            plan_home_fast(problem)
        return
    plan = plan_home_fast(problem)
    assert plan.violations(problem) == []
    assert plan.objective >= exact.objective - 1e-6 * max(1.0, abs(exact.objective))
    assert plan.cost <= _simple_policy_cost(problem) + _tie_tolerance(problem)


def test_the_fleet_planner_finds_the_optimum_of_a_home_without_appliances():
    # battery, PV and an EV only: the decomposition is the exact LP
    n = 24
    hours = np.arange(n)
    problem = HomeProblem(
        0.20 + 0.10 * np.cos(2 * np.pi * (hours - 19) / 24),
        export_price=np.full(n, 0.06),
        base_load_w=400 + 600 * (hours >= 17),
        pv_w=np.maximum(0, 5000 * np.sin(np.pi * (hours - 6) / 12)),
        import_max_w=11_000,
        battery=Battery(10, 5, 5, soc_initial=0.3),
        evs=(EVSession("car", 18, 24, 15, 7.4),),
    )
    plan, exact = plan_home_fast(problem), solve_home(problem)
    assert plan.solver == "heap+lp"
    assert plan.cost == pytest.approx(exact.cost, abs=1e-6)


def test_homes_planned_on_several_threads_at_once_get_the_plans_they_get_alone():
    """Flink's Python workers run several subtasks on threads of one process: each thread needs its own
    solver (one shared HiGHS instance crashed the process)."""
    from concurrent.futures import ThreadPoolExecutor

    n = 24
    hours = np.arange(n)
    problems = [
        HomeProblem(
            0.20 + 0.10 * np.cos(2 * np.pi * (hours - 19 + k % 5) / 24),
            export_price=np.full(n, 0.05),
            base_load_w=300 + 50 * k + 500 * (hours >= 17),
            pv_w=np.maximum(0, (3000 + 100 * k) * np.sin(np.pi * (hours - 6) / 12)),
            import_max_w=11_000,
            battery=Battery(8 + k % 4, 4, 4, soc_initial=0.2 + 0.02 * k),
            evs=(EVSession("car", 18, 24, 5 + k % 10, 7.4, min_kw=1.4),),
            appliances=(Appliance("washer", "deferrable", 2000, 2, 8, 22),),
        )
        for k in range(40)
    ]
    alone = [plan_home_fast(p).cost for p in problems]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda p: plan_home_fast(p).cost, problems * 3))
    assert together == pytest.approx(alone * 3, abs=1e-9)
