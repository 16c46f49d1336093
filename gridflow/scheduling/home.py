"""Home energy model: PV, a home battery, EV charging sessions and appliances under import and export prices.

A :class:`HomeProblem` is one household's day (or any horizon) in slots of ``slot_minutes``: import and
export (feed-in) prices per slot, both may be negative; a non-controllable base load; a PV forecast (which
may be curtailed); a grid connection with import and export limits; a :class:`Battery`; :class:`EVSession`
charging sessions; and the deferrable / regulatable / fixed :class:`~gridflow.scheduling.model.Appliance`
loads of the appliance scheduler. A :class:`HomePlan` gives every power flow per slot, and
:meth:`HomePlan.violations` checks every constraint of the problem independently of the solver that made it.

Energy balance per slot ``t`` (kW): ``import - export + pv_used + discharge = base + appliances + charge +
sum(ev)``; battery energy ``soc[t+1] = soc[t] + eta_c * charge * h - discharge * h / eta_d`` with
``eta_c = eta_d = sqrt(round_trip_efficiency)``; the grid cannot import and export in the same slot and the
battery cannot charge and discharge in the same slot. Inclining block rates apply to import in slots whose
import price is >= 0 (a negative price is paid per kWh as it is). Costs are in the prices' currency.

:func:`gridflow.scheduling.home_milp.solve_home` solves the model exactly (HiGHS); an infeasible request is
reported with the constraint that cannot hold (:class:`PlanInfeasible`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from gridflow.scheduling.heap_scheduler import ScheduleInfeasible
from gridflow.scheduling.model import Appliance, Problem, Schedule, Tariff, _int

FLOW_TOL_KW = 1e-6  # flows below this are "off" when checking exclusivity (import/export, charge/discharge)
_REL = 1e-6  # relative tolerance of the checks (solver round-off)


class PlanInfeasible(ScheduleInfeasible):
    """No plan satisfies the request; ``constraint`` names what cannot hold ("ev:<name>", "ev_now:<name>",
    "battery_target", "grid_import", "appliances") and the message says by how much, in the household's time."""

    def __init__(self, constraint: str, reason: str):
        super().__init__(None, reason)
        self.constraint = constraint


def _finite(owner: str, name: str, value, low: float = -math.inf, high: float = math.inf, *, open_low=False) -> float:
    ok = isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not (low < value if open_low else low <= value) or not value <= high:
        bracket = "(" if open_low else "["
        raise ValueError(f"{owner}: {name} must be a finite number in {bracket}{low:g}, {high:g}], got {value!r}")
    return float(value)


def _series(owner: str, name: str, values, length: int | None, low: float = -math.inf) -> np.ndarray:
    try:
        array = np.array(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"{owner}: {name} must be a sequence of numbers, got {values!r}") from None
    if length is not None and array.size != length:
        raise ValueError(f"{owner}: {name} must have {length} values (one per slot), got {array.size}")
    if not array.size:
        raise ValueError(f"{owner}: {name} must not be empty")
    bad = np.nonzero(~np.isfinite(array) | (array < low))[0]
    if bad.size:
        bound = f" and >= {low:g}" if low > -math.inf else ""
        raise ValueError(f"{owner}: {name}[{bad[0]}] must be finite{bound}, got {array[bad[0]]!r}")
    array.flags.writeable = False
    return array


@dataclass(frozen=True)
class Battery:
    """A home battery; invalid fields raise ValueError naming the field and its allowed range.

    Parameters
    ----------
    capacity_kwh : float
        Usable capacity at SoC 1.0.
    max_charge_kw, max_discharge_kw : float
        Power limits at the battery's AC terminals.
    round_trip_efficiency : float
        AC to AC, in (0, 1]; split evenly between charging and discharging.
    soc_min, soc_max : float
        SoC bounds as fractions of the capacity, ``0 <= soc_min < soc_max <= 1``.
    soc_initial : float
        SoC now (from the household's state), within the bounds.
    soc_final : float, optional
        Lowest SoC allowed at the end of the horizon; default ``soc_initial`` (a plan may not drain the
        battery to make its day look cheap).
    """

    capacity_kwh: float
    max_charge_kw: float
    max_discharge_kw: float
    round_trip_efficiency: float = 0.9
    soc_min: float = 0.1
    soc_max: float = 1.0
    soc_initial: float = 0.5
    soc_final: float | None = None

    def __post_init__(self):
        set_, owner = object.__setattr__, "battery"
        set_(self, "capacity_kwh", _finite(owner, "capacity_kwh", self.capacity_kwh, 0, 10_000, open_low=True))
        set_(self, "max_charge_kw", _finite(owner, "max_charge_kw", self.max_charge_kw, 0, 1_000, open_low=True))
        set_(
            self, "max_discharge_kw", _finite(owner, "max_discharge_kw", self.max_discharge_kw, 0, 1_000, open_low=True)
        )
        rte = _finite(owner, "round_trip_efficiency", self.round_trip_efficiency, 0, 1, open_low=True)
        set_(self, "round_trip_efficiency", rte)
        set_(self, "soc_min", _finite(owner, "soc_min", self.soc_min, 0, 1))
        set_(self, "soc_max", _finite(owner, "soc_max", self.soc_max, self.soc_min, 1, open_low=True))
        set_(self, "soc_initial", _finite(owner, "soc_initial", self.soc_initial, self.soc_min, self.soc_max))
        final = self.soc_initial if self.soc_final is None else self.soc_final
        set_(self, "soc_final", _finite(owner, "soc_final", final, self.soc_min, self.soc_max))

    efficiency = property(lambda self: math.sqrt(self.round_trip_efficiency), doc="One-way efficiency.")
    energy_min_kwh = property(lambda self: self.soc_min * self.capacity_kwh)
    energy_max_kwh = property(lambda self: self.soc_max * self.capacity_kwh)
    energy_initial_kwh = property(lambda self: self.soc_initial * self.capacity_kwh)
    energy_final_kwh = property(lambda self: self.soc_final * self.capacity_kwh)


@dataclass(frozen=True)
class EVSession:
    """One EV plugged in from ``arrival_slot`` until ``departure_slot`` (exclusive).

    Parameters
    ----------
    name : str
        Unique among the sessions.
    arrival_slot, departure_slot : int
        Plugged in for slots ``[arrival_slot, departure_slot)`` of the horizon.
    energy_kwh : float
        Energy the car must gain (into its battery) by departure, >= 0: ``(soc_target - soc_now) * capacity``.
    max_kw : float
        Charger (and car) power limit at the AC side.
    min_kw : float
        Lowest power at which the charger runs (e.g. 1.4 kW for 6 A single phase); 0: any power.
    efficiency : float
        Charging efficiency, AC to the car's battery.
    now_kwh : float
        Energy to gain at full power from arrival ("minimum charge now"), then the rest at the best time.
    """

    name: str
    arrival_slot: int
    departure_slot: int
    energy_kwh: float
    max_kw: float
    min_kw: float = 0.0
    efficiency: float = 0.9
    now_kwh: float = 0.0

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"ev session: name must be a non-empty string, got {self.name!r}")
        owner, set_ = f"ev session {self.name!r}", object.__setattr__
        set_(self, "arrival_slot", _int(owner, "arrival_slot", self.arrival_slot, 0))
        set_(self, "departure_slot", _int(owner, "departure_slot", self.departure_slot, self.arrival_slot + 1))
        set_(self, "energy_kwh", _finite(owner, "energy_kwh", self.energy_kwh, 0, 1_000))
        set_(self, "max_kw", _finite(owner, "max_kw", self.max_kw, 0, 1_000, open_low=True))
        set_(self, "min_kw", _finite(owner, "min_kw", self.min_kw, 0, self.max_kw))
        set_(self, "efficiency", _finite(owner, "efficiency", self.efficiency, 0, 1, open_low=True))
        set_(self, "now_kwh", _finite(owner, "now_kwh", self.now_kwh, 0, self.energy_kwh))


@dataclass(frozen=True, eq=False)
class HomeProblem:
    """One household's horizon; invalid fields raise ValueError naming the field.

    Parameters
    ----------
    import_price, export_price : sequence of float
        Currency per kWh per slot, any sign; the length of ``import_price`` is the horizon. ``export_price``
        defaults to 0 (export earns nothing).
    slot_minutes : int
        Slot length, dividing 1440.
    base_load_w : sequence of float, optional
        Non-controllable load per slot (W, >= 0), e.g. the household's load forecast.
    pv_w : sequence of float, optional
        PV forecast per slot (W, >= 0).
    pv_curtailable : bool
        The inverter may produce less than ``pv_w`` (worth it when export is paid negatively).
    import_max_w, export_max_w : float, optional
        Grid connection limits (the breaker; the feed-in limit). Default (None or inf): no limit.
    battery : Battery, optional
    evs : sequence of EVSession
    appliances : sequence of Appliance
        The appliance scheduler's loads; their windows are in this problem's slots.
    ibr_thresholds_kwh, ibr_multipliers : sequence of float
        Inclining block rates on each slot's import, as in :class:`~gridflow.scheduling.model.Tariff`.
    comfort_weight : float
        Currency per slot of start deviation of each non-interruptible deferrable appliance.
    start_minute : int
        Local minute of day of slot 0 (for the times named in messages).
    """

    import_price: Sequence[float] | np.ndarray
    export_price: Sequence[float] | np.ndarray | None = None
    slot_minutes: int = 60
    base_load_w: Sequence[float] | np.ndarray | None = None
    pv_w: Sequence[float] | np.ndarray | None = None
    pv_curtailable: bool = True
    import_max_w: float | None = None
    export_max_w: float | None = None
    battery: Battery | None = None
    evs: Sequence[EVSession] = ()
    appliances: Sequence[Appliance] = ()
    ibr_thresholds_kwh: Sequence[float] = ()
    ibr_multipliers: Sequence[float] = ()
    comfort_weight: float = 0.0
    start_minute: int = 0
    _appliance_problem: Problem = field(init=False, repr=False)

    def __post_init__(self):
        set_, owner = object.__setattr__, "home"
        price = _series(owner, "import_price", self.import_price, None)
        n = price.size
        set_(self, "import_price", price)
        export = np.zeros(n) if self.export_price is None else self.export_price
        set_(self, "export_price", _series(owner, "export_price", export, n))
        minutes = _int(owner, "slot_minutes", self.slot_minutes, 1, 60)
        if 1440 % minutes:
            raise ValueError(f"{owner}: slot_minutes must divide 1440 (1..60), got {minutes}")
        set_(self, "slot_minutes", minutes)
        for name in ("base_load_w", "pv_w"):
            values = getattr(self, name)
            set_(self, name, _series(owner, name, np.zeros(n) if values is None else values, n, low=0.0))
        if not isinstance(self.pv_curtailable, bool):
            raise ValueError(f"{owner}: pv_curtailable must be a bool, got {self.pv_curtailable!r}")
        for name in ("import_max_w", "export_max_w"):
            value = getattr(self, name)
            unlimited = value is None or value == math.inf
            set_(self, name, math.inf if unlimited else _finite(owner, name, value, 0, 1e7, open_low=True))
        if self.battery is not None and not isinstance(self.battery, Battery):
            raise ValueError(f"{owner}: battery must be a Battery, got {type(self.battery).__name__}")
        set_(self, "evs", tuple(self.evs))
        names = [ev.name for ev in self.evs if isinstance(ev, EVSession)]
        if len(names) != len(self.evs) or len(set(names)) != len(names):
            raise ValueError(f"{owner}: evs must be EVSession objects with unique names, got {list(self.evs)!r}")
        for ev in self.evs:
            if ev.departure_slot > n:
                raise ValueError(f"ev session {ev.name!r}: departure_slot must be <= the horizon {n}")
        set_(self, "comfort_weight", _finite(owner, "comfort_weight", self.comfort_weight, 0))
        set_(self, "start_minute", _int(owner, "start_minute", self.start_minute, 0, 1439))
        # the appliance scheduler's model checks the appliances, windows and inclining blocks
        tariff = Tariff(
            np.ones(n),
            slot_minutes=self.slot_minutes,
            ibr_thresholds_kwh=self.ibr_thresholds_kwh,
            ibr_multipliers=self.ibr_multipliers,
        )
        appliances = Problem(tuple(self.appliances), tariff)
        set_(self, "appliances", appliances.appliances)
        set_(self, "ibr_thresholds_kwh", tariff.ibr_thresholds_kwh)
        set_(self, "ibr_multipliers", tariff.ibr_multipliers)
        set_(self, "_appliance_problem", appliances)

    n_slots = property(lambda self: int(self.import_price.size), doc="Number of slots (the horizon).")
    slot_h = property(lambda self: self.slot_minutes / 60.0, doc="Slot length in hours.")
    appliance_problem = property(lambda self: self._appliance_problem, doc="The appliances as a scheduling Problem.")

    def time_of(self, slot: int) -> str:
        """Local ``HH:MM`` at the start of ``slot`` (a slot past the horizon names the horizon's end)."""
        minute = (self.start_minute + slot * self.slot_minutes) % 1440
        return f"{minute // 60:02d}:{minute % 60:02d}"

    def import_cost(self, import_w) -> np.ndarray:
        """Cost of each slot's import (W per slot), inclining blocks applied where the price is >= 0."""
        energy = np.asarray(import_w, dtype=np.float64) * (self.slot_h / 1000.0)
        price = np.asarray(self.import_price)
        if not self.ibr_thresholds_kwh:
            return price * energy
        lower, widths, multipliers = self._appliance_problem.tariff._blocks
        blocks = np.clip(energy[:, None] - lower, 0.0, widths) @ multipliers
        return np.where(price >= 0, price * blocks, price * energy)

    def cost(self, import_w, export_w) -> float:
        """Energy bill of the horizon: import cost minus export revenue (currency)."""
        revenue = np.asarray(self.export_price) * np.asarray(export_w, dtype=np.float64) * (self.slot_h / 1000.0)
        return float(self.import_cost(import_w).sum() - revenue.sum())


@dataclass(frozen=True, eq=False)
class HomePlan:
    """Power flows per slot (W) and the battery's energy (kWh, ``n_slots + 1`` values from now).

    ``cost`` is the energy bill (:meth:`HomeProblem.cost`); ``objective`` adds the comfort term;
    ``optimal`` is False when the solver stopped at its time limit; ``solver`` names it."""

    import_w: np.ndarray
    export_w: np.ndarray
    pv_used_w: np.ndarray
    charge_w: np.ndarray
    discharge_w: np.ndarray
    battery_kwh: np.ndarray
    ev_w: Mapping[str, np.ndarray]
    appliances: Schedule
    cost: float
    objective: float
    solve_time_s: float
    optimal: bool
    solver: str

    def self_consumption(self, problem: HomeProblem) -> float:
        """Share of the PV produced that is used in the home (nan without PV)."""
        produced = float(np.sum(np.asarray(problem.pv_w)))
        if produced <= 0:
            return math.nan
        return float((np.sum(self.pv_used_w) - np.sum(self.export_w)) / produced)

    def violations(self, problem: HomeProblem) -> list[str]:
        """Every broken constraint as a sentence; ``[]`` means the plan is feasible for ``problem``."""
        found: list[str] = []
        n, h = problem.n_slots, problem.slot_h
        arrays = {
            "import_w": self.import_w,
            "export_w": self.export_w,
            "pv_used_w": self.pv_used_w,
            "charge_w": self.charge_w,
            "discharge_w": self.discharge_w,
        }
        for name, values in arrays.items():
            if np.shape(values) != (n,):
                return [f"{name}: {np.shape(values)} values, the horizon has {n} slots"]
            if (low := np.nonzero(np.asarray(values) < -1e-6)[0]).size:
                found.append(f"{name}: negative in slots {low.tolist()}")
        tol_w = lambda limit: 1e-3 + _REL * limit  # noqa: E731  (W)
        if (over := np.nonzero(self.import_w > problem.import_max_w + tol_w(problem.import_max_w))[0]).size:
            found.append(f"grid: import above import_max_w={problem.import_max_w:g} W in slots {over.tolist()}")
        if (over := np.nonzero(self.export_w > problem.export_max_w + tol_w(problem.export_max_w))[0]).size:
            found.append(f"grid: export above export_max_w={problem.export_max_w:g} W in slots {over.tolist()}")
        both = np.nonzero(np.minimum(self.import_w, self.export_w) > FLOW_TOL_KW * 1000)[0]
        if both.size:
            found.append(f"grid: imports and exports in the same slots {both.tolist()}")
        pv = np.asarray(problem.pv_w)
        if (over := np.nonzero(self.pv_used_w > pv + tol_w(pv))[0]).size:
            found.append(f"pv: uses more than the forecast in slots {over.tolist()}")
        if not problem.pv_curtailable and (cut := np.nonzero(self.pv_used_w < pv - tol_w(pv))[0]).size:
            found.append(f"pv: curtailed in slots {cut.tolist()}, pv_curtailable is False")
        found += self._battery_violations(problem)
        ev_total = np.zeros(n)
        for ev in problem.evs:
            power = np.asarray(self.ev_w.get(ev.name, np.zeros(n)))
            if power.shape != (n,):
                found.append(f"ev {ev.name!r}: {power.shape} values, the horizon has {n} slots")
                continue
            ev_total += power
            unplugged = [
                t for t in np.nonzero(power > 1e-3)[0].tolist() if not ev.arrival_slot <= t < ev.departure_slot
            ]
            if unplugged:
                found.append(
                    f"ev {ev.name!r}: charges in slots {unplugged} outside [{ev.arrival_slot}, {ev.departure_slot})"
                )
            on = power > 1e-3
            if (
                bad := np.nonzero(
                    on
                    & (
                        (power > ev.max_kw * 1000 + tol_w(ev.max_kw * 1000))
                        | (power < ev.min_kw * 1000 - tol_w(ev.min_kw * 1000))
                    )
                )[0]
            ).size:
                found.append(f"ev {ev.name!r}: power outside [{ev.min_kw:g}, {ev.max_kw:g}] kW in slots {bad.tolist()}")
            gained = power.cumsum() * h / 1000 * ev.efficiency
            if gained[-1] < ev.energy_kwh * (1 - _REL) - 1e-6:
                found.append(f"ev {ev.name!r}: gains {gained[-1]:.6g} kWh, needs {ev.energy_kwh:g} kWh")
            full = ev.max_kw * h * ev.efficiency  # kWh per slot at full power
            for k in range(1, ev.departure_slot - ev.arrival_slot + 1):
                need = min(ev.now_kwh, full * k)
                if gained[ev.arrival_slot + k - 1] < need * (1 - _REL) - 1e-6:
                    found.append(
                        f"ev {ev.name!r}: {gained[ev.arrival_slot + k - 1]:.6g} kWh after {k} slots, "
                        f"now_kwh asks {need:.6g} kWh"
                    )
                    break
                if need >= ev.now_kwh:
                    break
        found += [f"appliances: {v}" for v in self.appliances.violations(problem.appliance_problem)]
        try:
            appliance_w = self.appliances.load_profile_w(n)
        except ValueError:  # an appliance runs past the horizon: reported above
            appliance_w = np.zeros(n)
        demand = np.asarray(problem.base_load_w) + appliance_w + self.charge_w + ev_total
        supply = self.import_w - self.export_w + self.pv_used_w + self.discharge_w
        if (off := np.nonzero(np.abs(supply - demand) > 1e-3 + _REL * np.maximum(np.abs(demand), 1.0))[0]).size:
            found.append(
                f"balance: supply != demand in slots {off.tolist()} "
                f"(first: {supply[off[0]]:.6g} W vs {demand[off[0]]:.6g} W)"
            )
        cost = problem.cost(self.import_w, self.export_w)
        if abs(cost - self.cost) > 1e-6 * max(1.0, abs(cost)):
            found.append(f"cost: plan says {self.cost:.9g}, its flows cost {cost:.9g}")
        return found

    def _battery_violations(self, problem: HomeProblem) -> list[str]:
        n, h, b = problem.n_slots, problem.slot_h, problem.battery
        if b is None:
            flows = np.abs(self.charge_w) + np.abs(self.discharge_w)
            return (
                [f"battery: flows without a battery in slots {np.nonzero(flows > 1e-6)[0].tolist()}"]
                if flows.any()
                else []
            )
        found = []
        if np.shape(self.battery_kwh) != (n + 1,):
            return [f"battery: {np.shape(self.battery_kwh)} energy values, expected {n + 1}"]
        tol = 1e-6 + _REL * b.capacity_kwh
        if abs(self.battery_kwh[0] - b.energy_initial_kwh) > tol:
            found.append(
                f"battery: starts at {self.battery_kwh[0]:.6g} kWh, its SoC now is {b.energy_initial_kwh:.6g} kWh"
            )
        expected = self.battery_kwh[:-1] + (b.efficiency * self.charge_w - self.discharge_w / b.efficiency) * h / 1000
        if (off := np.nonzero(np.abs(expected - self.battery_kwh[1:]) > tol)[0]).size:
            found.append(f"battery: energy does not follow charge and discharge in slots {off.tolist()}")
        if (low := np.nonzero(self.battery_kwh < b.energy_min_kwh - tol)[0]).size:
            found.append(f"battery: below soc_min={b.soc_min:g} at steps {low.tolist()}")
        if (high := np.nonzero(self.battery_kwh > b.energy_max_kwh + tol)[0]).size:
            found.append(f"battery: above soc_max={b.soc_max:g} at steps {high.tolist()}")
        if self.battery_kwh[-1] < b.energy_final_kwh - tol:
            found.append(
                f"battery: ends at {self.battery_kwh[-1]:.6g} kWh, soc_final asks {b.energy_final_kwh:.6g} kWh"
            )
        for name, values, limit in (
            ("charge", self.charge_w, b.max_charge_kw),
            ("discharge", self.discharge_w, b.max_discharge_kw),
        ):
            if (over := np.nonzero(values > limit * 1000 * (1 + _REL) + 1e-3)[0]).size:
                found.append(f"battery: {name} above {limit:g} kW in slots {over.tolist()}")
        both = np.nonzero(np.minimum(self.charge_w, self.discharge_w) > FLOW_TOL_KW * 1000)[0]
        if both.size:
            found.append(f"battery: charges and discharges in the same slots {both.tolist()}")
        return found
