"""Appliance-scheduling model: appliances, tariff, problem and schedule (no Flink, no I/O).

Slot ``t`` of ``slot_minutes`` covers ``[t, t+1)``. An appliance's window ``[alpha_slot, beta_slot)`` may
stretch by ``comfort_margin_slots`` on both sides (Lin & Hu; ``|start - alpha_slot|`` is the comfort cost)
and is cut at ``due_slot`` (:meth:`Problem.window`). :meth:`Schedule.violations` checks every constraint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence, cast

import numpy as np

KINDS = ("fixed", "regulatable", "deferrable")
MAX_POWER_W = 50_000.0  # the reading schema's physical bound


def _int(owner: str, name: str, value, low: int, high: float = math.inf) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        bound = f"[{low}, {high}]" if high < math.inf else f">= {low}"
        raise ValueError(f"{owner}: {name} must be an integer {bound}, got {value!r}")
    return int(value)


def _positive(owner: str, name: str, value, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not 0 < value <= high:
        raise ValueError(f"{owner}: {name} must be a finite number in (0, {high}], got {value!r}")
    return float(value)


def _array(owner: str, name: str, values, length: int | None) -> np.ndarray:
    try:
        array = np.array(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        array = np.array([np.nan])
    if not array.size or array.size != (length or array.size) or not np.all(np.isfinite(array) & (array >= 0)):
        raise ValueError(f"{owner}: {name} must be {length or 'a non-empty number of'} finite values >= 0")
    array.flags.writeable = False
    return array


def peak_to_average(load_w, empty: float = math.nan) -> float:
    """Peak / mean of a load profile (W per slot); ``empty`` when its mean is not positive."""
    load_w = np.asarray(load_w, dtype=np.float64)
    mean = float(load_w.mean()) if load_w.size else 0.0
    return float(load_w.max() / mean) if mean > 0 else empty


@dataclass(frozen=True)
class Appliance:
    """One appliance; invalid fields raise ValueError naming the field and its allowed range.

    Parameters
    ----------
    name : str
        Unique within a problem.
    kind : {"fixed", "regulatable", "deferrable"}
        ``fixed`` runs ``duration_slots`` from ``alpha_slot``; ``deferrable`` runs ``duration_slots`` at
        ``power_w`` in its window; ``regulatable`` draws any power in ``[0, power_w]`` per slot.
    power_w : float
        Rated power, in (0, 50000] W.
    duration_slots : int
        Running time in slots, 1 .. ``beta_slot - alpha_slot``.
    alpha_slot, beta_slot : int
        Window ``[alpha_slot, beta_slot)``: earliest (preferred) start and end, ``0 <= alpha < beta``.
    comfort_margin_slots : int
        Slots the window may stretch on both sides (0 for fixed loads).
    due_slot : int, optional
        Deferrable/regulatable: run only in slots before it, ``alpha < due <= beta``.
    interruptible : bool
        Deferrable: may run in any ``duration_slots`` slots of its window (regulatable loads always may).
    energy_wh : float, optional
        Regulatable: energy to deliver by ``due_slot`` (default ``power_w * duration_slots * slot_h``).
    """

    name: str
    kind: str
    power_w: float
    duration_slots: int
    alpha_slot: int
    beta_slot: int
    comfort_margin_slots: int = 0
    due_slot: int | None = None
    interruptible: bool = False
    energy_wh: float | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, got {self.name!r}")
        owner, set_, fixed = f"appliance {self.name!r}", object.__setattr__, self.kind == "fixed"
        if self.kind not in KINDS:
            raise ValueError(f"{owner}: kind must be one of {KINDS}, got {self.kind!r}")
        set_(self, "power_w", _positive(owner, "power_w", self.power_w, MAX_POWER_W))
        set_(self, "alpha_slot", _int(owner, "alpha_slot", self.alpha_slot, 0))
        set_(self, "beta_slot", _int(owner, "beta_slot", self.beta_slot, self.alpha_slot + 1))
        set_(
            self,
            "duration_slots",
            _int(owner, "duration_slots", self.duration_slots, 1, self.beta_slot - self.alpha_slot),
        )
        margin = _int(owner, "comfort_margin_slots", self.comfort_margin_slots, 0, 0 if fixed else math.inf)
        set_(self, "comfort_margin_slots", margin)
        if self.due_slot is not None:
            if fixed:
                raise ValueError(f"{owner}: due_slot applies to deferrable and regulatable loads only")
            set_(self, "due_slot", _int(owner, "due_slot", self.due_slot, self.alpha_slot + 1, self.beta_slot))
        if not isinstance(self.interruptible, bool) or (fixed and self.interruptible):
            raise ValueError(f"{owner}: interruptible must be a bool and False for fixed loads")
        if self.energy_wh is not None:
            if self.kind != "regulatable":
                raise ValueError(f"{owner}: energy_wh applies to regulatable loads only (kind={self.kind!r})")
            set_(self, "energy_wh", _positive(owner, "energy_wh", self.energy_wh, 1e7))

    @property
    def is_contiguous(self) -> bool:
        """True for loads that must run without interruption (fixed and non-interruptible deferrable)."""
        return self.kind == "fixed" or (self.kind == "deferrable" and not self.interruptible)


@dataclass(frozen=True, eq=False)
class Tariff:
    """Prices and limits of a household over ``n_slots`` slots; invalid fields raise ValueError.

    Parameters
    ----------
    price_per_kwh : sequence of float
        Real-time price per slot (currency/kWh, >= 0); its length is the horizon.
    slot_minutes : int
        Slot length, 1..60 and dividing 1440.
    ibr_thresholds_kwh, ibr_multipliers : sequence of float
        Inclining block rates (Lin & Hu 2018): a slot's grid energy is split at the (increasing) thresholds
        and energy in block ``k`` costs ``price * ibr_multipliers[k]`` (non-decreasing, so convex).
    pv_w : sequence of float, optional
        PV forecast per slot (W); offsets the load, surplus earns nothing.
    breaker_w : float, optional
        Cap on the total appliance power per slot (W), ``amps * volts``.
    """

    # __post_init__ stores price_per_kwh and pv_w as read-only float64 arrays, the thresholds and multipliers
    # as tuples of float
    price_per_kwh: Sequence[float] | np.ndarray
    slot_minutes: int = 60
    ibr_thresholds_kwh: Sequence[float] = ()
    ibr_multipliers: Sequence[float] = ()
    pv_w: Sequence[float] | np.ndarray | None = None
    breaker_w: float | None = None

    def __post_init__(self):
        set_, owner = object.__setattr__, "tariff"
        set_(self, "price_per_kwh", _array(owner, "price_per_kwh", self.price_per_kwh, None))
        minutes = _int(owner, "slot_minutes", self.slot_minutes, 1, 60)
        if 1440 % minutes:
            raise ValueError(f"{owner}: slot_minutes must divide 1440 (1..60), got {minutes}")
        set_(self, "slot_minutes", minutes)
        edges = tuple(float(x) for x in self.ibr_thresholds_kwh)
        if not all(0 < x < math.inf for x in edges) or any(x >= y for x, y in zip(edges, edges[1:])):
            raise ValueError(f"{owner}: ibr_thresholds_kwh must be finite, > 0 and increasing, got {edges}")
        factors = tuple(float(x) for x in self.ibr_multipliers) or (1.0,) * (len(edges) + 1)
        if (
            len(factors) != len(edges) + 1
            or not all(0 < x < math.inf for x in factors)
            or any(x > y for x, y in zip(factors, factors[1:]))
        ):
            raise ValueError(
                f"{owner}: ibr_multipliers must be len(ibr_thresholds_kwh) + 1 = {len(edges) + 1} "
                f"finite values > 0, non-decreasing, got {factors}"
            )
        set_(self, "ibr_thresholds_kwh", edges)
        set_(self, "ibr_multipliers", factors)
        if self.pv_w is not None:
            set_(self, "pv_w", _array(owner, "pv_w", self.pv_w, self.n_slots))
        if self.breaker_w is not None:
            set_(self, "breaker_w", _positive(owner, "breaker_w", self.breaker_w, 1e6))

    n_slots = property(lambda self: int(self.price_per_kwh.size), doc="Number of slots (the horizon).")
    slot_h = property(lambda self: self.slot_minutes / 60.0, doc="Slot length in hours.")

    def slot_costs(self, load_w, slots=None) -> np.ndarray:
        """Cost of each slot (currency) for total appliance load ``load_w`` (W) in ``slots`` (default all)."""
        index = slice(None) if slots is None else np.asarray(slots, dtype=np.int64)
        prices, pv_w = cast(np.ndarray, self.price_per_kwh), cast("np.ndarray | None", self.pv_w)  # __post_init__
        net_w = np.asarray(load_w, dtype=np.float64)
        if pv_w is not None:
            net_w = net_w - pv_w[index]
        energy_kwh = np.maximum(net_w, 0.0) * (self.slot_h / 1000.0)
        lower, widths, multipliers = self._blocks
        if lower.size == 1:  # no inclining blocks
            return prices[index] * (energy_kwh * multipliers[0])
        blocks = np.clip(energy_kwh[:, None] - lower, 0.0, widths)
        return prices[index] * (blocks @ multipliers)

    def run_costs(self, load_w: np.ndarray, low: int = 0) -> np.ndarray:
        """:meth:`slot_costs` of the contiguous slots ``low .. low + len(load_w) - 1``, equal up to rounding.

        The schedulers' hot path: slices instead of index arrays, and the IBR cost of a slot's energy ``e``
        in block ``k`` (found by binary search) as ``cost_below[k] + multiplier[k] * (e - lower[k])``, the
        cost of the full blocks below plus the part in block ``k``, instead of clipping ``e`` to every block.
        Elementwise: a slot's cost depends only on its load, not on the other slots. ``load_w`` must be a
        float64 array; nothing is validated.
        """
        high = low + load_w.size
        if self.pv_w is not None:
            load_w = load_w - self.pv_w[low:high]
        energy_kwh = np.maximum(load_w, 0.0)
        energy_kwh *= self.slot_h / 1000.0
        edges, lower, multipliers, cost_below = self._block_table
        if edges.size == 1:  # no inclining blocks
            energy_kwh *= multipliers[1]
            return self.price_per_kwh[low:high] * energy_kwh
        block = np.searchsorted(edges, energy_kwh, side="right")  # 1 + the block index: entry 0 is padding
        energy_kwh -= lower.take(block)
        energy_kwh *= multipliers.take(block)
        energy_kwh += cost_below.take(block)
        return self.price_per_kwh[low:high] * energy_kwh

    @property
    def _blocks(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """IBR block lower bounds (kWh), widths and price multipliers, computed once."""
        cached = self.__dict__.get("_block_arrays")
        if cached is None:
            lower = np.array((0.0, *self.ibr_thresholds_kwh))
            cached = (lower, np.diff(np.array((*lower, math.inf))), np.array(self.ibr_multipliers))
            object.__setattr__(self, "_block_arrays", cached)
        return cached

    @property
    def _block_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`run_costs`' lookup table, computed once: the block lower bounds (kWh) to search, then the
        lower bounds, multipliers and price-1 cost of the full blocks below (``sum_{i<k} widths[i] *
        multipliers[i]``), each with a padding entry first, so that ``searchsorted(lower, e, side="right")``
        indexes them at the block of ``e >= 0``."""
        cached = self.__dict__.get("_block_table_arrays")
        if cached is None:
            lower, widths, multipliers = self._blocks
            cost_below = np.concatenate(([0.0], np.cumsum(widths[:-1] * multipliers[:-1])))
            cached = (lower, *(np.concatenate(([0.0], x)) for x in (lower, multipliers, cost_below)))
            object.__setattr__(self, "_block_table_arrays", cached)
        return cached

    def cost(self, load_w) -> float:
        """Total cost (currency) of a load profile of ``n_slots`` values in W."""
        return float(self.slot_costs(load_w).sum())


@dataclass(frozen=True, eq=False)
class Problem:
    """A household: appliances (unique names, windows inside the horizon ``tariff.n_slots``) and tariff."""

    appliances: tuple[Appliance, ...]
    tariff: Tariff

    def __post_init__(self):
        object.__setattr__(self, "appliances", tuple(self.appliances))
        if not isinstance(self.tariff, Tariff) or not all(isinstance(a, Appliance) for a in self.appliances):
            raise ValueError("problem: appliances must be Appliance objects and tariff a Tariff")
        names = [a.name for a in self.appliances]
        if len(set(names)) != len(names):
            raise ValueError(f"problem: appliance name must be unique, got {names}")
        for a in self.appliances:
            _int(f"appliance {a.name!r}", "beta_slot (<= horizon)", a.beta_slot, 1, self.horizon_slots)
            low, high = self.window(a)
            if a.kind == "deferrable" and high - low < a.duration_slots:
                raise ValueError(f"appliance {a.name!r}: due_slot leaves {high - low} slots < duration_slots")
            most_wh = a.power_w * self.tariff.slot_h * (high - low)
            if a.kind == "regulatable" and self.required_energy_wh(a) > most_wh * (1 + 1e-12):
                raise ValueError(f"appliance {a.name!r}: energy_wh must be <= power_w * window = {most_wh:g} Wh")

    horizon_slots = property(lambda self: self.tariff.n_slots, doc="Number of slots.")

    def window(self, appliance: Appliance) -> tuple[int, int]:
        """Allowed slots ``[low, high)``: fixed loads exactly ``[alpha, alpha + l)``; others the window
        stretched by the comfort margin, clipped to the horizon and cut at ``due_slot``."""
        if appliance.kind == "fixed":
            return appliance.alpha_slot, appliance.alpha_slot + appliance.duration_slots
        margin = appliance.comfort_margin_slots
        high = min(self.horizon_slots, appliance.beta_slot + margin)
        if appliance.due_slot is not None:
            high = min(high, appliance.due_slot)
        return max(0, appliance.alpha_slot - margin), high

    def required_energy_wh(self, appliance: Appliance) -> float:
        """Energy the appliance must receive (Wh): ``energy_wh`` or ``power_w * duration_slots * slot_h``."""
        if appliance.energy_wh is not None:
            return appliance.energy_wh
        return appliance.power_w * appliance.duration_slots * self.tariff.slot_h


@dataclass(frozen=True, eq=False)
class Schedule:
    """A schedule.

    Parameters
    ----------
    horizon_slots : int
        Number of slots.
    power_w : mapping of str to mapping of int to float
        ``power_w[name][slot]`` in W; absent slots are off (the start slot is the first slot on).
    """

    horizon_slots: int
    power_w: Mapping[str, Mapping[int, float]] = field(default_factory=dict)

    def __post_init__(self):
        _int("schedule", "horizon_slots", self.horizon_slots, 1)
        cleaned = {
            name: {int(s): float(p) for s, p in sorted(slots.items()) if p != 0} for name, slots in self.power_w.items()
        }
        if any(s < 0 or not 0 < p < math.inf for slots in cleaned.values() for s, p in slots.items()):
            raise ValueError("schedule: power_w must map appliance names to {slot >= 0: finite power >= 0 W}")
        object.__setattr__(self, "power_w", cleaned)

    @classmethod
    def trusted(
        cls, horizon_slots: int, power_w: Mapping[str, Mapping[int, float]], *, ordered: bool = False
    ) -> "Schedule":
        """A schedule from a scheduler whose slots are ints in the horizon and powers finite and >= 0
        (zeros are dropped here); skips the per-slot checks of the constructor, which dominate the heap
        scheduler's time on 1-minute slots. ``violations`` still checks everything. ``ordered=True``: the
        caller also guarantees that every mapping is a dict with its slots ascending and no zero power, and
        hands the dicts over (they are kept, not copied)."""
        schedule = object.__new__(cls)
        if ordered:
            object.__setattr__(schedule, "horizon_slots", int(horizon_slots))
            object.__setattr__(schedule, "power_w", dict(power_w))
            return schedule
        cleaned = {}
        for name, slots in power_w.items():
            if 0 in slots.values() or 0.0 in slots.values():
                slots = {s: p for s, p in slots.items() if p}
            cleaned[name] = dict(sorted(slots.items())) if slots else {}
        object.__setattr__(schedule, "horizon_slots", int(horizon_slots))
        object.__setattr__(schedule, "power_w", cleaned)
        return schedule

    def start_slot(self, name: str) -> int | None:
        """First slot the appliance is on (None if never)."""
        return min(self.power_w.get(name, {}), default=None)

    def load_profile_w(self, horizon: int | None = None) -> np.ndarray:
        """Total power per slot (W) over ``horizon`` slots (default the schedule's); raises ValueError if an
        appliance runs beyond it."""
        profile = np.zeros(self.horizon_slots if horizon is None else horizon)
        for slots in self.power_w.values():
            if slots and max(slots) >= profile.size:
                raise ValueError(f"schedule: slot {max(slots)} is outside the horizon of {profile.size} slots")
            profile[list(slots)] += list(slots.values())
        return profile

    def cost(self, tariff: Tariff) -> float:
        """Cost (currency) under ``tariff``: energy per slot = power * slot_h, with PV offset and IBR."""
        return tariff.cost(self.load_profile_w(tariff.n_slots))

    def peak_to_average_ratio(self, horizon: int | None = None) -> float:
        """Peak / mean of the load profile (nan for an empty schedule)."""
        return peak_to_average(self.load_profile_w(horizon))

    def violations(self, problem: Problem) -> list[str]:
        """Every broken constraint as a sentence; ``[]`` means the schedule is feasible for ``problem``."""
        found, horizon, slot_h = [], problem.horizon_slots, problem.tariff.slot_h
        if self.horizon_slots != horizon:
            found.append(f"schedule horizon {self.horizon_slots} != problem horizon {horizon}")
        known = {a.name for a in problem.appliances}
        found += [f"{name}: not an appliance of the problem" for name in self.power_w if name not in known]
        for a in problem.appliances:
            power = self.power_w.get(a.name, {})
            slots, (low, high) = sorted(power), problem.window(a)
            if outside := [s for s in slots if not low <= s < high]:
                found.append(f"{a.name}: on in slots {outside} outside its allowed window [{low}, {high})")
            if a.kind == "regulatable":
                if over := [s for s, p in power.items() if p > a.power_w * (1 + 1e-9)]:
                    found.append(f"{a.name}: power above power_w={a.power_w:g} W in slots {over}")
                got_wh, need_wh = sum(power.values()) * slot_h, problem.required_energy_wh(a)
                if abs(got_wh - need_wh) > 1e-6 * max(1.0, need_wh):
                    found.append(f"{a.name}: delivers {got_wh:.6g} Wh, requires {need_wh:.6g} Wh")
                continue
            if wrong := [s for s, p in power.items() if abs(p - a.power_w) > 1e-9 * a.power_w]:
                found.append(f"{a.name}: power != power_w={a.power_w:g} W in slots {wrong}")
            if len(slots) != a.duration_slots:
                found.append(f"{a.name}: runs {len(slots)} slots, duration_slots={a.duration_slots}")
            if a.is_contiguous and slots and slots[-1] - slots[0] + 1 != len(slots):
                found.append(f"{a.name}: non-interruptible load interrupted (slots {slots})")
            if a.kind == "fixed" and slots and slots[0] != a.alpha_slot:
                found.append(f"{a.name}: fixed load starts at {slots[0]}, must start at alpha_slot={a.alpha_slot}")
        breaker, profile = problem.tariff.breaker_w, np.zeros(horizon)
        for slot, p in ((s, p) for slots in self.power_w.values() for s, p in slots.items() if s < horizon):
            profile[slot] += p
        if breaker is not None and (over := np.nonzero(profile > breaker * (1 + 1e-9))[0].tolist()):
            found.append(f"breaker: total load above breaker_w={breaker:g} W in slots {over}")
        return found
