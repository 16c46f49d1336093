"""Hart-style event detection on whole-house power: steady states, edges, and on/off pairing.

A *steady state* is a run of at least ``min_steady_minutes`` readings whose consecutive differences stay
within ``tolerance_w`` (and, when reactive power is given, within ``tolerance_var``); readings between
steady states are transitions. With one-minute readings a load switched on in the middle of a minute leaves
one reading half-way between the two levels: a one-reading state that lies strictly between the states on
either side is therefore a transition too (a *ramp*). An *edge* is the change of level from one steady
state to the next (the mean of the ``level_minutes`` readings on either side), kept when its real-power size
reaches ``edge_threshold_w``; it is placed at the largest single step of the transition, in the edge's
direction. Reactive power, when given, is differenced the same way: each edge has a 2-D signature
``(delta_w, delta_var)`` (Hart 1992). No edge is drawn across a missing reading (NaN).

Each off-edge is then paired with the open on-edge of the most similar real power (within
``power_tolerance`` of the larger one, and at most ``max_duration_minutes`` earlier), the closest in
``|dP| + |dQ|`` among those, the latest on ties. A pair is an *activation*: start and stop minute, power
and reactive power.

>>> import numpy as np
>>> power = np.r_[np.full(10, 300.0), np.full(20, 2300.0), np.full(10, 300.0)]
>>> a = pair_edges(*detect_edges(power, edge_threshold_w=500))
>>> a.start.tolist(), a.stop.tolist(), a.power_w.tolist()
([10], [30], [2000.0])
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Edges(NamedTuple):
    """Edges in time order (parallel arrays); ``delta_var`` is NaN where no reactive power was given."""

    minute: np.ndarray  # int64, index of the reading the step happens at
    delta_w: np.ndarray  # float64, real-power step (W), positive = switch-on
    delta_var: np.ndarray  # float64, reactive-power step (var)


class Activations(NamedTuple):
    """Appliance activations (parallel arrays): minutes ``[start, stop)`` from the start of the readings.

    ``reactive_var`` (the reactive-power step, NaN where unknown) is None for activations built from real
    power alone, e.g. ground truth from sub-meters.
    """

    start: np.ndarray  # int64
    stop: np.ndarray  # int64
    power_w: np.ndarray  # float64, the step in W
    reactive_var: np.ndarray | None = None  # float64, the step in var

    @property
    def duration(self) -> np.ndarray:
        """Minutes on."""
        return self.stop - self.start

    @classmethod
    def empty(cls) -> "Activations":
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64), np.zeros(0, np.float64))

    @classmethod
    def concat(cls, parts: list["Activations"], offsets: list[int] | None = None) -> "Activations":
        """Join several sets, shifting the minutes of part ``i`` by ``offsets[i]``."""
        if not parts:
            return cls.empty()
        offsets = offsets or [0] * len(parts)
        reactive = None
        if any(p.reactive_var is not None for p in parts):
            reactive = np.concatenate(
                [p.reactive_var if p.reactive_var is not None else np.full(p.start.size, np.nan) for p in parts]
            ).astype(np.float64)
        return cls(
            np.concatenate([p.start + o for p, o in zip(parts, offsets)]).astype(np.int64),
            np.concatenate([p.stop + o for p, o in zip(parts, offsets)]).astype(np.int64),
            np.concatenate([p.power_w for p in parts]).astype(np.float64),
            reactive,
        )

    def select(self, mask) -> "Activations":
        return Activations(
            self.start[mask],
            self.stop[mask],
            self.power_w[mask],
            None if self.reactive_var is None else self.reactive_var[mask],
        )

    def shift(self, minutes: int) -> "Activations":
        """The same activations with ``minutes`` added to start and stop."""
        return Activations(self.start + minutes, self.stop + minutes, self.power_w, self.reactive_var)


def _positive(name: str, value, high: float = 1e6) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not 0 < value <= high:
        raise ValueError(f"{name} must be a number in (0, {high:g}], got {value!r}")
    return float(value)


def _count(name: str, value, low: int = 1, high: int = 100_000) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return int(value)


def _readings(values, name: str = "power_w", length: int | None = None) -> np.ndarray:
    try:
        x = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a 1-D array of numbers (NaN = missing)") from None
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one reading per minute), got shape {x.shape}")
    if length is not None and x.size != length:
        raise ValueError(f"{name} must hold one reading per power reading ({length}), got {x.size}")
    return x


def steady_states(
    power_w,
    tolerance_w: float = 30.0,
    min_steady_minutes: int = 2,
    reactive_var=None,
    tolerance_var: float | None = None,
) -> np.ndarray:
    """Steady states of a reading series as an ``(n, 2)`` int64 array of ``[start, stop)`` indices.

    With ``reactive_var`` and ``tolerance_var`` given, a state must be steady in both real and reactive
    power (a missing reactive reading does not break a state; a missing real one does).
    """
    x = _readings(power_w)
    tolerance_w = _positive("tolerance_w", tolerance_w)
    min_steady_minutes = _count("min_steady_minutes", min_steady_minutes)
    with np.errstate(invalid="ignore"):
        linked = np.abs(np.diff(x)) <= tolerance_w  # False across NaN
        if reactive_var is not None and tolerance_var is not None:
            q = _readings(reactive_var, "reactive_var", x.size)
            linked &= ~(np.abs(np.diff(q)) > _positive("tolerance_var", tolerance_var))
    starts = np.flatnonzero(np.r_[True, ~linked]) if x.size else np.zeros(0, np.int64)
    stops = np.r_[starts[1:], x.size]
    keep = (stops - starts >= min_steady_minutes) & np.isfinite(x[starts] if x.size else starts)
    return np.stack([starts[keep], stops[keep]], axis=1).astype(np.int64).reshape(-1, 2)


def _drop_ramps(x: np.ndarray, states: np.ndarray) -> np.ndarray:
    """States minus one-reading states lying strictly between their adjacent neighbours (transitions)."""
    if len(states) < 3:
        return states
    start, stop = states[:, 0], states[:, 1]
    inner = np.arange(1, len(states) - 1)
    single = (stop[inner] - start[inner] == 1) & (stop[inner - 1] == start[inner]) & (stop[inner] == start[inner + 1])
    value, before, after = x[start[inner]], x[stop[inner - 1] - 1], x[start[inner + 1]]
    ramp = single & (value > np.minimum(before, after)) & (value < np.maximum(before, after))
    keep = np.ones(len(states), bool)
    keep[inner[ramp]] = False
    return states[keep]


def detect_edges(
    power_w,
    reactive_var=None,
    *,
    tolerance_w: float = 30.0,
    min_steady_minutes: int = 2,
    edge_threshold_w: float = 800.0,
    level_minutes: int = 3,
    tolerance_var: float | None = None,
) -> Edges:
    """Edges between steady states of one-minute readings.

    Parameters
    ----------
    power_w : array-like
        Whole-house active power, one reading per minute (W); NaN = missing.
    reactive_var : array-like, optional
        Whole-house reactive power at the same minutes (var); NaN = missing. Without it ``delta_var`` is NaN.
    tolerance_w : float
        Largest change between consecutive readings inside a steady state (W).
    min_steady_minutes : int
        Shortest steady state (readings); with 1, one-reading ramps are still transitions.
    edge_threshold_w : float
        Smallest edge kept (W, absolute real-power step).
    level_minutes : int
        Readings averaged on each side of an edge for its size.
    tolerance_var : float, optional
        Largest change of reactive power inside a steady state (var); None = real power alone decides.

    Returns
    -------
    Edges
        ``minute`` (int64), ``delta_w`` and ``delta_var`` (float64), positive = switch-on.
    """
    x = _readings(power_w)
    q = _readings(reactive_var, "reactive_var", x.size) if reactive_var is not None else np.full(x.size, np.nan)
    edge_threshold_w = _positive("edge_threshold_w", edge_threshold_w)
    level_minutes = _count("level_minutes", level_minutes, 1, 60)
    states = _drop_ramps(x, steady_states(x, tolerance_w, min_steady_minutes, reactive_var, tolerance_var))
    minutes, deltas, reactive = [], [], []
    for (a_start, a_stop), (b_start, b_stop) in zip(states[:-1].tolist(), states[1:].tolist()):
        if b_start > a_stop and not np.all(np.isfinite(x[a_stop:b_start])):
            continue
        before = slice(max(a_start, a_stop - level_minutes), a_stop)
        after = slice(b_start, min(b_stop, b_start + level_minutes))
        delta = x[after].mean() - x[before].mean()
        if abs(delta) < edge_threshold_w:
            continue
        steps = np.diff(x[a_stop - 1 : b_start + 1]) * np.sign(delta)  # the steps into a_stop .. b_start
        minutes.append(a_stop + int(np.argmax(steps)))
        deltas.append(delta)
        q_before, q_after = q[before][np.isfinite(q[before])], q[after][np.isfinite(q[after])]
        reactive.append(q_after.mean() - q_before.mean() if q_before.size and q_after.size else np.nan)
    return Edges(
        np.array(minutes, dtype=np.int64), np.array(deltas, dtype=np.float64), np.array(reactive, dtype=np.float64)
    )


def pair_edges(
    minute, delta_w, delta_var=None, *, power_tolerance: float = 0.25, max_duration_minutes: int = 240
) -> Activations:
    """Pair on-edges with later off-edges of similar size (see the module docstring).

    Parameters
    ----------
    minute, delta_w : array-like
        Edges in time order, as from :func:`detect_edges`.
    delta_var : array-like, optional
        Reactive-power steps of the edges (var, NaN = unknown); they break ties between candidates of a
        similar real power and give each activation its reactive power.
    power_tolerance : float
        Largest relative size difference of a pair, ``|on - off| <= power_tolerance * max(on, off)``, in (0, 1].
    max_duration_minutes : int
        Longest activation; older on-edges are dropped unpaired.

    Returns
    -------
    Activations
        Sorted by start; power (and reactive power) is the mean of the on- and off-edge sizes.
    """
    power_tolerance = _positive("power_tolerance", power_tolerance, 1.0)
    max_duration_minutes = _count("max_duration_minutes", max_duration_minutes, 1, 7 * 1440)
    minute, delta_w = np.asarray(minute, dtype=np.int64), np.asarray(delta_w, dtype=np.float64)
    if minute.shape != delta_w.shape or minute.ndim != 1 or np.any(np.diff(minute) < 0):
        raise ValueError("minute and delta_w must be 1-D arrays of the same length, minute non-decreasing")
    delta_var = np.full(minute.size, np.nan) if delta_var is None else np.asarray(delta_var, dtype=np.float64)
    if delta_var.shape != minute.shape:
        raise ValueError("delta_var must have one entry per edge")
    open_: list[tuple[int, float, float]] = []
    found: list[tuple[int, int, float, float]] = []
    for t, delta, dq in zip(minute.tolist(), delta_w.tolist(), delta_var.tolist()):
        open_ = [edge for edge in open_ if t - edge[0] <= max_duration_minutes]
        if delta > 0:
            open_.append((t, delta, dq))
            continue
        off = -delta
        best = None
        for j, (s, p, q) in enumerate(open_):
            gap = abs(p - off)
            if gap <= power_tolerance * max(p, off):
                distance = gap + (abs(q + dq) if q == q and dq == dq else 0.0)  # NaN != NaN: no Q known
                if best is None or distance <= best[0]:
                    best = (distance, j)
        if best is not None:
            s, p, q = open_.pop(best[1])
            found.append((s, t, (p + off) / 2.0, (q - dq) / 2.0))
    found.sort()
    if not found:
        return Activations.empty()
    start, stop, power, reactive = zip(*found)
    return Activations(
        np.array(start, np.int64), np.array(stop, np.int64), np.array(power, np.float64), np.array(reactive, np.float64)
    )
