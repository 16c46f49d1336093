"""Adaptive load balancing of a feeder (no Flink): ask the most flexible households to shift, fairly.

A feeder serves households whose expected load per slot is their base load plus flexible runs (deferrable
appliances: power, duration, planned start, allowed starts ``[earliest, latest]`` = the household's window
stretched by its comfort margin). When the aggregate exceeds ``capacity_w`` in some slot, the balancer
repeatedly takes the slot with the largest excess and moves one run that covers it:

* candidates are runs covering the slot that have another allowed start (never outside the comfort window);
* fairness first: the run of the household asked the fewest times so far; then flexibility (most allowed
  starts); then the largest power (fewest requests for the relief);
* the run goes to the allowed start that minimises the feeder peak over the run's slots, ties to the start
  closest to the planned one; a move is kept only if it lowers the excess.

It stops when the limit holds or no move lowers the excess anywhere. If the limit still fails, the
greedy answer is replaced by an exact one when it is better: a MILP (HiGHS, ``exact_time_limit_s``)
minimising the total excess, then the number of moves, so the limit holds whenever shifting within the
comfort windows can make it hold (fairness is then secondary; base load alone may exceed the limit). Each household is asked at most ``max_requests_per_household`` times.

>>> base = np.full((2, 4), 100.0)                              # two households, 4 slots
>>> runs = [FlexibleRun("h-1", "ev", 1000.0, 1, start=0, earliest=0, latest=3),
...         FlexibleRun("h-2", "washer", 1000.0, 1, start=0, earliest=0, latest=2)]
>>> plan = balance(base, runs, capacity_w=1300.0)
>>> [(r.household_id, r.old_start, r.new_start) for r in plan.requests], plan.peak_before_w, plan.peak_after_w
([('h-1', 0, 1)], 2200.0, 1200.0)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace

import numpy as np

from gridflow.scheduling.model import peak_to_average
from gridflow.scheduling.service import forecast_slots


@dataclass(frozen=True)
class FlexibleRun:
    """One deferrable run of one household; slots of the feeder's horizon."""

    household_id: str
    appliance: str
    power_w: float
    duration_slots: int
    start: int
    earliest: int
    latest: int

    def __post_init__(self):
        if not 0 <= self.earliest <= self.start <= self.latest:
            raise ValueError(
                f"run {self.household_id}/{self.appliance}: need 0 <= earliest <= start <= latest, "
                f"got {self.earliest}, {self.start}, {self.latest}"
            )
        if self.duration_slots < 1 or self.power_w <= 0:
            raise ValueError(f"run {self.household_id}/{self.appliance}: duration_slots >= 1 and power_w > 0")


@dataclass(frozen=True)
class ShiftRequest:
    household_id: str
    appliance: str
    old_start: int
    new_start: int


@dataclass
class BalancePlan:
    runs: list[FlexibleRun]
    requests: list[ShiftRequest] = field(default_factory=list)
    load_before_w: np.ndarray | None = None
    load_after_w: np.ndarray | None = None

    peak_before_w = property(lambda self: float(self.load_before_w.max()))
    peak_after_w = property(lambda self: float(self.load_after_w.max()))
    par_before = property(lambda self: peak_to_average(self.load_before_w, empty=0.0))
    par_after = property(lambda self: peak_to_average(self.load_after_w, empty=0.0))


def feeder_load(base_w: np.ndarray, runs: list[FlexibleRun]) -> np.ndarray:
    """Aggregate load per slot: the households' base loads plus every run at its start."""
    load = base_w.sum(axis=0).astype(np.float64)
    for run in runs:
        load[run.start : run.start + run.duration_slots] += run.power_w
    return load


def balance(
    base_w: np.ndarray,
    runs: list[FlexibleRun],
    capacity_w: float,
    max_requests_per_household: int = 3,
    exact_time_limit_s: float = 10.0,
) -> BalancePlan:
    """Shift runs until the feeder load is at most ``capacity_w`` everywhere, or no shift helps.

    ``base_w`` is (households, slots) of inflexible load.
    """
    if capacity_w <= 0:
        raise ValueError(f"capacity_w must be > 0, got {capacity_w}")
    n_slots = base_w.shape[1]
    for run in runs:
        if run.latest + run.duration_slots > n_slots:
            raise ValueError(
                f"run {run.household_id}/{run.appliance}: latest start {run.latest} + duration "
                f"exceeds the horizon of {n_slots} slots"
            )
    runs = list(runs)
    plan_runs_before = list(runs)
    load = feeder_load(base_w, runs)
    plan = BalancePlan(runs=runs, load_before_w=load.copy())
    asked: Counter = Counter()
    tried: set = set()
    stuck = np.zeros(n_slots, dtype=bool)  # overloaded slots no move can relieve
    while True:
        excess = np.where(stuck, -np.inf, load - capacity_w)
        hot = int(np.argmax(excess))
        if excess[hot] <= 1e-9:
            break
        candidates = [
            i
            for i, r in enumerate(runs)
            if r.start <= hot < r.start + r.duration_slots
            and r.latest > r.earliest
            and asked[r.household_id] < max_requests_per_household
            and (i, hot) not in tried
        ]
        if not candidates:
            stuck[hot] = True
            continue
        candidates.sort(
            key=lambda i: (
                asked[runs[i].household_id],
                -(runs[i].latest - runs[i].earliest),
                -runs[i].power_w,
                runs[i].household_id,
                runs[i].appliance,
            )
        )
        for i in candidates:
            tried.add((i, hot))
            run = runs[i]
            without = load.copy()
            without[run.start : run.start + run.duration_slots] -= run.power_w
            best, best_key = run.earliest, None  # the loop sets both: earliest <= latest
            for start in range(run.earliest, run.latest + 1):
                peak = float((without[start : start + run.duration_slots] + run.power_w).max())
                key = (peak, abs(start - run.start))
                if best_key is None or key < best_key:
                    best, best_key = start, key
            new = without.copy()
            new[best : best + run.duration_slots] += run.power_w
            if (
                best == run.start
                or np.maximum(new - capacity_w, 0).sum() >= np.maximum(load - capacity_w, 0).sum() - 1e-9
            ):
                continue
            plan.requests.append(ShiftRequest(run.household_id, run.appliance, run.start, best))
            runs[i] = replace(run, start=best)
            asked[run.household_id] += 1
            load = new
            break
    if (load > capacity_w + 1e-9).any() and exact_time_limit_s > 0:
        original = {(r.household_id, r.appliance): r.start for r in plan_runs_before}
        starts = _exact(plan_runs_before, base_w.sum(axis=0), capacity_w, exact_time_limit_s)
        if starts is not None:
            exact = [replace(r, start=s) for r, s in zip(plan_runs_before, starts)]
            exact_load = feeder_load(base_w, exact)
            if np.maximum(exact_load - capacity_w, 0).sum() < np.maximum(load - capacity_w, 0).sum() - 1e-6:
                runs, load = exact, exact_load
                plan.requests = [
                    ShiftRequest(r.household_id, r.appliance, original[(r.household_id, r.appliance)], r.start)
                    for r in exact
                    if r.start != original[(r.household_id, r.appliance)]
                ]
    plan.runs, plan.load_after_w = runs, load
    return plan


def _exact(runs, base_load, capacity_w, time_limit_s: float):
    """Minimum total excess (then fewest moves) over every run's allowed starts, as a MILP (HiGHS).
    Returns the starts, or None if the solver found nothing in time."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_matrix

    n_slots = base_load.size
    columns = [(r, s) for r, run in enumerate(runs) for s in range(run.earliest, run.latest + 1)]
    n_x = len(columns)
    total = sum(run.power_w for run in runs) + float(base_load.sum())
    cost = np.concatenate(
        [
            [0.0 if s == runs[r].start else 1.0 / (len(runs) + 1) / max(total, 1.0) for r, s in columns],
            np.ones(n_slots) / max(total, 1.0),
        ]
    )
    rows, cols, vals = [], [], []
    for j, (r, s) in enumerate(columns):  # one start per run
        rows.append(r)
        cols.append(j)
        vals.append(1.0)
    one = LinearConstraint(coo_matrix((vals, (rows, cols)), shape=(len(runs), n_x + n_slots)), 1, 1)
    rows, cols, vals = [], [], []
    for j, (r, s) in enumerate(columns):  # load_t - excess_t <= capacity - base_t
        for t in range(s, s + runs[r].duration_slots):
            rows.append(t)
            cols.append(j)
            vals.append(runs[r].power_w)
    for t in range(n_slots):
        rows.append(t)
        cols.append(n_x + t)
        vals.append(-1.0)
    cap = LinearConstraint(
        coo_matrix((vals, (rows, cols)), shape=(n_slots, n_x + n_slots)), -np.inf, capacity_w - base_load
    )
    result = milp(
        cost,
        constraints=[one, cap],
        integrality=np.r_[np.ones(n_x), np.zeros(n_slots)],
        bounds=Bounds(0, np.r_[np.ones(n_x), np.full(n_slots, np.inf)]),
        options={"time_limit": time_limit_s},
    )
    if result.x is None:
        return None
    starts = [run.start for run in runs]
    for j, (r, s) in enumerate(columns):
        if result.x[j] > 0.5:
            starts[r] = s
    return starts


# name: (power_w, duration_h, usual start hours (one drawn per household), latest end hour, probability)
FLEXIBLE_LOADS = {
    "ev": (3700.0, 3.0, (17.5, 18.0, 18.5, 19.0), 24 + 7.0, 0.3),
    "washing_machine": (1000.0, 2.0, (18.0, 19.0, 20.0), 24 + 1.0, 0.6),
    "dishwasher": (1800.0, 1.5, (19.5, 20.0, 20.5), 24 + 6.0, 0.5),
}
HORIZON_START_H = 12


def simulate_feeder(
    library,
    households: int,
    capacity_fraction: float = 0.8,
    slot_minutes: int = 15,
    seed: int = 1,
    day: int = 30,
    comfort_margin_h: float = 0.0,
) -> tuple[BalancePlan, float]:
    """A feeder of ``households`` simulated homes (real load shapes from ``library``, a
    :class:`gridflow.devices.load_shapes.LoadShapeLibrary`) over one day from 12:00, with evening EV
    charging, washing and dishwashing; balanced at ``capacity_fraction`` of the unbalanced peak.
    Returns the plan and the capacity used (W)."""
    from gridflow.devices.load_shapes import fleet_series

    rng = np.random.default_rng(seed)
    n_slots = 24 * 60 // slot_minutes
    start_ms = 1_767_225_600_000 + (day * 24 + HORIZON_START_H) * 3_600_000  # 2026-01-01 + day, 12:00 UTC
    base = fleet_series(library, np.arange(households), start_ms, n_slots, slot_minutes * 60, seed)
    per_h = 60 // slot_minutes
    runs = []
    for h in range(households):
        for name, (power, hours, usual, latest_end, p) in FLEXIBLE_LOADS.items():
            if rng.random() >= p:
                continue
            duration = int(round(hours * per_h))
            start = int((rng.choice(usual) - HORIZON_START_H) * per_h)
            margin = int(comfort_margin_h * per_h)
            latest = min(int((latest_end - HORIZON_START_H) * per_h) - duration + margin, n_slots - duration)
            runs.append(
                FlexibleRun(f"h-{h:04d}", name, power, duration, start, max(0, start - margin), max(start, latest))
            )
    capacity = capacity_fraction * float(feeder_load(base, runs).max())
    return balance(base, runs, capacity), capacity


def schedule_problem(record: dict) -> tuple[str, str] | None:
    """``(field, reason)`` when a schedule that keeps its contract still cannot be used: a run that starts
    before or ends after the schedule's horizon, or ends before it starts; None when it is usable."""
    start = record["start_ts_ms"]
    end = start + record["slots"] * record["slot_minutes"] * 60_000
    for i, run in enumerate(record["appliances"]):
        if not start <= run["start_ts_ms"] < run["end_ts_ms"] <= end:
            return (
                f"appliances[{i}].start_ts_ms",
                f"the run of {run['name']!r} ({run['start_ts_ms']}..{run['end_ts_ms']}) does not lie within the "
                f"schedule's horizon {start}..{end} (start <= run start < run end <= end)",
            )
    return None


class FeederState:
    """What a feeder operator keeps: each household's latest schedule, daily profile and load forecast; it
    rebalances the current horizon (the base load of every household it knows, the runs of those scheduled
    for that horizon) and returns the grid requests not sent before. Small and picklable (Flink state).

    Base load of a household in a slot of the schedule's horizon = its latest load forecast for that slot
    (:meth:`update_load_forecast`: tomorrow's load, not yesterday's), else its latest daily profile (W per
    slot of the day) at the same time of day; zero until either is known.
    """

    def __init__(self, capacity_w: float, max_requests_per_household: int = 3):
        self.capacity_w = capacity_w
        self.max_requests = max_requests_per_household
        self.schedules: dict[str, dict] = {}
        self.profiles: dict[str, list] = {}
        self.forecasts: dict[str, tuple[int, int, np.ndarray]] = {}
        self.sent: dict[tuple[str, str], int] = {}

    def __setstate__(self, state: dict) -> None:  # a state saved before load forecasts had none
        self.__dict__.update({"forecasts": {}, **state})

    def update_profile(self, record: dict) -> None:
        self.profiles[record["household_id"]] = record.get("profile_w") or []

    def update_load_forecast(self, household: str, start_ts_ms: int, slot_minutes: int, load_w) -> None:
        """Keep a household's load forecast: ``load_w[i]`` is its average power (W) over the ``slot_minutes``
        from ``start_ts_ms + i * slot_minutes`` (NaN = unknown: the profile stands in there)."""
        values = np.asarray(load_w, dtype=np.float64)
        if values.ndim != 1 or values.size == 0 or slot_minutes < 1:
            raise ValueError(f"a load forecast needs a non-empty list of W per slot, got shape {values.shape}")
        self.forecasts[household] = (int(start_ts_ms), int(slot_minutes), values)

    def update_schedule(self, record: dict) -> None:
        """Keep a household's schedule; raises ValueError (see :func:`schedule_problem`) for one whose runs
        lie outside its horizon (the record is skipped; the household stream dead-letters it)."""
        problem = schedule_problem(record)
        if problem is not None:
            raise ValueError(f"{problem[0]}: {problem[1]}")
        self.schedules[record["household_id"]] = record

    def _base(self, household: str, start_ms: int, slot_minutes: int, n_slots: int) -> np.ndarray:
        profile = self.profiles.get(household) or []
        if not profile:
            base = np.zeros(n_slots)
        else:
            values = np.array([np.nan if v is None else v for v in profile], dtype=np.float64)
            values = np.where(np.isnan(values), np.nanmean(values) if np.isfinite(values).any() else 0.0, values)
            minutes = (start_ms // 60_000 + np.arange(n_slots) * slot_minutes) % 1440
            base = values[(minutes * len(values)) // 1440]
        if household in self.forecasts:
            f_start, f_minutes, f_values = self.forecasts[household]
            index = forecast_slots(f_start, f_minutes, start_ms, slot_minutes, n_slots)
            inside = (index >= 0) & (index < f_values.size)
            forecast = np.full(n_slots, np.nan)
            forecast[inside] = f_values[index[inside]]
            base = np.where(np.isfinite(forecast), forecast, base)
        return base

    def rebalance(self) -> list[dict]:
        """Requests (household, appliance, new start) for the latest horizon, each sent once."""
        if not self.schedules:
            return []
        latest = max(s["start_ts_ms"] for s in self.schedules.values())
        current = {h: s for h, s in self.schedules.items() if s["start_ts_ms"] == latest}
        some = next(iter(current.values()))
        slot_minutes, n_slots = some["slot_minutes"], some["slots"]
        slot_ms = slot_minutes * 60_000
        # every household the feeder knows adds its base load, scheduled today or not
        households = sorted(set(current) | set(self.profiles) | set(self.forecasts))
        base = np.array([self._base(h, latest, slot_minutes, n_slots) for h in households]).reshape(
            len(households), n_slots
        )
        runs = []
        for h in sorted(current):
            for a in current[h]["appliances"]:
                duration = max(1, (a["end_ts_ms"] - a["start_ts_ms"]) // slot_ms)
                start = (a["start_ts_ms"] - latest) // slot_ms
                earliest = (a.get("earliest_start_ts_ms", a["start_ts_ms"]) - latest) // slot_ms
                last = (a.get("latest_start_ts_ms", a["start_ts_ms"]) - latest) // slot_ms
                last = min(max(last, start), n_slots - duration)
                runs.append(
                    FlexibleRun(
                        h,
                        a["name"],
                        float(a["power_w"]),
                        int(duration),
                        int(start),
                        int(min(earliest, start)),
                        int(last),
                    )
                )
        plan = balance(base, runs, self.capacity_w, self.max_requests)
        out = []
        for run in plan.runs:
            key = (run.household_id, run.appliance)
            planned = next(a for a in current[run.household_id]["appliances"] if a["name"] == run.appliance)
            new_ms = latest + run.start * slot_ms
            if new_ms == planned["start_ts_ms"] or self.sent.get(key) == new_ms:
                continue
            self.sent[key] = new_ms
            out.append(
                {
                    "household_id": run.household_id,
                    "appliance": run.appliance,
                    "power_w": run.power_w,
                    "from_ts_ms": planned["start_ts_ms"],
                    "to_ts_ms": new_ms,
                    "feeder_peak_before_w": plan.peak_before_w,
                    "feeder_peak_after_w": plan.peak_after_w,
                    "capacity_w": self.capacity_w,
                }
            )
        return out


def load_feeders(path) -> dict[str, str]:
    """``household_id -> feeder`` from a CSV with the header ``household_id,feeder``."""
    import csv
    from pathlib import Path

    path = Path(path).expanduser()
    try:
        rows = list(csv.reader(path.read_text(encoding="utf-8").splitlines()))
    except OSError as exc:
        raise ValueError(f"balancing.feeder_file: cannot read {path}: {exc.strerror}") from None
    if not rows or [c.strip() for c in rows[0]] != ["household_id", "feeder"]:
        raise ValueError(f"{path}: line 1 must be the header 'household_id,feeder'")
    bad = next((n for n, row in enumerate(rows[1:], start=2) if row and len(row) != 2), None)
    if bad:
        raise ValueError(f"{path}: line {bad}: expected 2 fields household_id,feeder")
    return {row[0].strip(): row[1].strip() for row in rows[1:] if row}
