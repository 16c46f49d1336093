"""Anomaly alerts from per-minute meter features: DBSCAN over micro-windows plus rules.

Input: the preprocessing job's feature record of one meter and minute (``household_id``,
``window_start_ms``, ``window_end_ms``, ``n_readings``, ``n_missing``, ``mean_w``, ``min_w``,
``peak_w``, ``std_w``, ``raw_max_w``, ``outlier_values``, ``stuck_run``, ...). Output: alert dicts
(:data:`ALERT_TYPES`), each with ``severity``, ``evidence`` (values and the expected range), a
suggested ``action`` for the household, and at most one alert per household and type per
``alert_cooldown_s`` (later ones are counted in the next alert's ``suppressed_since_last``).

Detectors, per meter (a household with two meters has two states; state: :class:`HouseholdState`, small
and picklable):

* ``unusual_load`` -- DBSCAN (:func:`gridflow.native.dbscan.dbscan`) over the household's minutes of
  the last ``micro_window_s``: each minute is ``(log spikiness, log level against the window's median
  level, missing fraction)``; a newest minute that is noise is unusual. DBSCAN cannot see faults that
  last: a stuck meter or an appliance left on makes a dense group of its own after
  ``dbscan_min_samples`` minutes, so those have rules.
* ``spike`` -- a reading ``spike_ratio`` times the minute mean (and ``spike_min_excess_w`` above it).
  Immediate when the Hampel filter replaced it (it saw both neighbours); a raw maximum at a window
  edge could be an appliance switching on, so it is confirmed by the next minute falling back.
* ``stuck`` -- ``stuck_minutes`` whole minutes of identical readings at one value >= ``stuck_min_w``.
* ``dropout`` -- ``dropout_minutes`` without readings (a gap between records, or empty minutes);
  :meth:`AnomalyDetector.check_silence` also raises it from a timer while the meter is silent (the
  anomaly job arms one at :meth:`AnomalyDetector.silence_deadline_ms`).
* ``sustained_high`` (appliance left on) -- the minute's lowest reading ``sustained_excess_w`` above
  the household's usual floor (a tracker that follows drops at once and rises over hours) for
  ``sustained_minutes``.
* ``drift`` -- the floor ``drift_fraction`` of the usual mean above the same hour's floor of the
  previous days, below the ``sustained_high`` excess, for ``drift_minutes``.

:func:`peer_outliers` runs DBSCAN across the households of one load-shape cluster in one minute.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np

from gridflow.contracts.core import SCHEMA_VERSION
from gridflow.native.dbscan import dbscan

ALERT_TYPES = (
    "spike",
    "stuck",
    "dropout",
    "back_online",
    "sustained_high",
    "drift",
    "unusual_load",
    "unusual_vs_peers",
)
LEVEL_OFFSET_W = 50.0  # added to powers in log ratios, so idle minutes do not look extreme
FLOOR_RISE_PER_MIN = 1 / 240  # the usual floor moves this fraction of the way up per minute (~4 h)
WARMUP_MINUTES = 60  # minutes seen before floor-based rules may fire
NO_HISTORY_FACTOR = 1.5  # sustained_high needs this times the excess before an hour has history
MINUTE_MS = 60_000

ACTIONS = {
    "spike": "A single implausible reading was ignored. No action needed; if it keeps happening, have the "
    "meter checked.",
    "stuck": "The meter keeps reporting the same value. Check its connection or restart it; call support if "
    "it stays frozen.",
    "dropout": "No readings arrived. Check that the meter has power and network (Wi-Fi/MQTT).",
    "back_online": "The meter is sending readings again. No action needed.",
    "sustained_high": "Consumption has stayed well above your usual base load. Check whether an appliance "
    "(heater, oven, iron, pump) was left on.",
    "drift": "Your base load has been creeping up for a while. Look for a device slowly drawing more power, "
    "or have the meter's calibration checked.",
    "unusual_load": "Consumption this minute is unlike the last hour. No action needed unless it repeats.",
    "unusual_vs_peers": "Consumption this minute differs from similar households. No action needed unless it repeats.",
}


def _copied(value):
    """A deep copy of nested lists and dicts; other values (numbers, strings, None) are shared. Scalars are
    not passed to a call of their own: the state holds a few hundred of them."""
    if isinstance(value, list):
        return [_copied(v) if isinstance(v, (list, dict)) else v for v in value]
    if isinstance(value, dict):
        return {k: _copied(v) if isinstance(v, (list, dict)) else v for k, v in value.items()}
    return value


@dataclass
class HouseholdState:
    """What the detector remembers about one meter of a household (plain values: pickles and JSON-serialises)."""

    meter_id: str = ""
    household_id: str = ""
    minutes_seen: int = 0
    last_end_ms: int | None = None
    recent_end_ms: list[int] = field(default_factory=list)  # the last micro_window_s of minutes
    recent_mean_w: list[float] = field(default_factory=list)
    recent_spikiness: list[float] = field(default_factory=list)
    recent_missing: list[float] = field(default_factory=list)
    prev_mean_w: float | None = None  # the previous minute's mean (None after a gap)
    pending_spike: dict[str, Any] | None = None
    frozen_value: float | None = None
    frozen_minutes: int = 0
    frozen_since_ms: int = 0
    missing_minutes: int = 0
    silence_alerted: bool = False  # the silence since last_end_ms was alerted from a timer
    floor_w: float | None = None
    mean_w: float | None = None  # slow average of minute means (the usual level)
    high_minutes: int = 0
    high_since_ms: int = 0
    hour_floor: list[float | None] = field(default_factory=lambda: [None] * 24)  # mean floor per hour of day
    hour_low: float = 0.0  # sum and number of the current hour's minute floors
    hour_minutes: int = 0
    hour: int | None = None
    drift_minutes: int = 0
    drift_since_ms: int = 0
    last_alert_ms: dict[str, int] = field(default_factory=dict)
    suppressed: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict of plain values, sharing no list or dict with this state (copied by hand:
        ``dataclasses.asdict`` took 230 µs per call, most of the anomaly job's time per record)."""
        return {name: _copied(value) for name, value in self.__dict__.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "HouseholdState":
        """A state that shares no list or dict with ``data`` (so a failed update cannot change ``data``)."""
        return cls(**{name: _copied(value) for name, value in data.items()})


class AnomalyDetector:
    """Per-household anomaly detection on minute feature records.

    Parameters
    ----------
    settings : AnomalySettings
        ``gridflow.settings.AnomalySettings`` (the defaults live there).

    Examples
    --------
    >>> from gridflow.settings import AnomalySettings
    >>> detector = AnomalyDetector(AnomalySettings())
    >>> state = HouseholdState()
    >>> def minute(k, mean, raw_max=None, outliers=(), stuck_run=1):
    ...     return {"household_id": "h-1", "meter_id": "m-1", "window_start_ms": k * 60_000,
    ...             "window_end_ms": (k + 1) * 60_000, "n_readings": 6, "n_missing": 0, "mean_w": mean,
    ...             "min_w": mean * 0.98, "peak_w": mean * 1.02, "std_w": mean * 0.01,
    ...             "raw_max_w": raw_max or mean * 1.02, "outlier_values": list(outliers), "stuck_run": stuck_run}
    >>> [detector.update(state, minute(k, 400.0)) for k in range(3)]
    [[], [], []]
    >>> alert, = detector.update(state, minute(3, 400.0, raw_max=3000.0, outliers=[3000.0]))
    >>> alert["type"], alert["evidence"]["value_w"], alert["evidence"]["expected_range_w"]
    ('spike', 3000.0, [0.0, 1000.0])
    """

    def __init__(self, settings):
        self.settings = settings
        self.cooldown_ms = int(settings.alert_cooldown_s) * 1000
        self.history = max(2, int(settings.micro_window_s) // 60)

    def run(
        self, records: Iterable[Mapping[str, Any]], states: dict[str, HouseholdState] | None = None
    ) -> list[dict[str, Any]]:
        """Feed records of many meters in time order; alerts in the order they are raised. ``states`` is
        keyed by :func:`meter_key`."""
        states = {} if states is None else states
        alerts = []
        for record in records:
            state = states.setdefault(meter_key(record), HouseholdState())
            alerts.extend(self.update(state, record))
        return alerts

    def update(self, state: HouseholdState, record: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Learn one minute of one household (records of a household in time order); its alerts."""
        s = self.settings
        household = str(record["household_id"])
        state.meter_id = str(record.get("meter_id", state.meter_id))
        state.household_id = household
        start, end = int(record["window_start_ms"]), int(record["window_end_ms"])
        if state.last_end_ms is not None and end <= state.last_end_ms:
            return []  # late or repeated minute: already judged
        raised: list[dict[str, Any]] = []
        n_readings = int(record.get("n_readings") or 0)
        mean = record.get("mean_w")
        low = record.get("min_w")

        # ---- dropout: a gap since the last record, or minutes with no readings
        last_end_ms = state.last_end_ms
        gap_min = 0 if last_end_ms is None else (start - last_end_ms) // MINUTE_MS
        if state.silence_alerted and last_end_ms is not None:  # (set only after a minute was seen)
            # the silence was alerted while it lasted: its end is news, not a second dropout
            raised.append(self.back_online_alert(last_end_ms, start, gap_min))
            state.silence_alerted = False
        elif last_end_ms is not None and gap_min >= s.dropout_minutes:  # (no gap before the first record)
            raised.append(self.gap_dropout_alert(last_end_ms, start, gap_min))
        state.missing_minutes = state.missing_minutes + 1 if n_readings == 0 or mean is None else 0
        if state.missing_minutes == s.dropout_minutes:
            raised.append(self.empty_dropout_alert(start, end, state.missing_minutes))
        if state.pending_spike is not None:
            raised += self._resolve_spike(state, start, mean)
        if state.last_end_ms != start:
            state.prev_mean_w = None
        state.last_end_ms = end
        if mean is None or n_readings == 0:
            state.prev_mean_w = None
            return self._emit(state, household, raised)
        mean = float(mean)
        low = float(low if low is not None else mean)
        raw_max = float(record.get("raw_max_w") or mean)
        state.minutes_seen += 1

        raised += self._spike(state, record, start, end, mean, raw_max)
        raised += self._stuck(state, record, start, end, mean, n_readings)
        raised += self._floor_rules(state, start, end, mean, low)
        unusual = self._unusual(state, end, mean, raw_max, record)
        if unusual is not None and not raised and state.pending_spike is None:
            raised.append(unusual)
        state.prev_mean_w = mean
        return self._emit(state, household, raised)

    def silence_deadline_ms(self, state: HouseholdState) -> int | None:
        """When the meter counts as silent if nothing newer than its last minute has arrived."""
        if state.last_end_ms is None:
            return None
        return state.last_end_ms + int(self.settings.dropout_minutes) * MINUTE_MS

    def check_silence(self, state: HouseholdState, household_id: str, now_ms: int) -> list[dict[str, Any]]:
        """Dropout alert from a timer: the meter sent nothing for ``dropout_minutes`` up to ``now_ms``."""
        if state.last_end_ms is None:
            return []
        silent_min = (int(now_ms) - state.last_end_ms) // MINUTE_MS
        if silent_min < self.settings.dropout_minutes or state.silence_alerted:
            return []  # not silent long enough, or alerted already
        state.silence_alerted = True
        return self._emit(state, household_id, [self.silence_alert(state.last_end_ms, now_ms, silent_min)])

    # ---- detectors ---------------------------------------------------------------------------------

    def _spike(self, state, record, start, end, mean, raw_max) -> list[dict[str, Any]]:
        s = self.settings
        limit = max(s.spike_ratio * mean, mean + s.spike_min_excess_w)
        if raw_max < limit:
            return []
        replaced = [float(v) for v in record.get("outlier_values") or () if float(v) >= limit]
        peak = float(record.get("peak_w") or mean)
        if len(replaced) == 1 and peak < limit:
            # one reading, replaced by the Hampel filter (it saw both neighbours), and nothing else that
            # high: a spike. Two, or a high reading left at the window's edge, may be a step up.
            return [self.spike_alert(replaced[0], mean, start, end, limit, "hampel")]
        previous = state.prev_mean_w
        if previous is None or previous * s.spike_ratio <= raw_max:
            state.pending_spike = {"value_w": raw_max, "mean_w": mean, "start": start, "end": end, "limit": limit}
        return []

    def _resolve_spike(self, state, next_start, next_mean) -> list[dict[str, Any]]:
        pending, state.pending_spike = state.pending_spike, None
        if next_start != pending["end"] or next_mean is None:
            return []  # no next minute to compare with
        if float(next_mean) * self.settings.spike_ratio > pending["value_w"]:
            return []  # the level stayed up: an appliance switching on, not a spike
        return [
            self.spike_alert(
                pending["value_w"],
                pending["mean_w"],
                pending["start"],
                pending["end"],
                pending["limit"],
                "next minute fell back",
            )
        ]

    def spike_alert(self, value, mean, start, end, limit, how) -> dict[str, Any]:
        factor = value / mean if mean > 0 else math.inf
        return self._alert(
            "spike",
            "medium" if factor >= 5 else "low",
            start,
            end,
            {
                "value_w": value,
                "minute_mean_w": mean,
                "factor": round(factor, 2),
                "expected_range_w": [0.0, round(limit, 1)],
                "confirmed_by": how,
            },
        )

    def _stuck(self, state, record, start, end, mean, n_readings) -> list[dict[str, Any]]:
        s = self.settings
        frozen = n_readings >= 2 and int(record.get("stuck_run") or 0) >= n_readings and mean >= s.stuck_min_w
        if not frozen:
            state.frozen_value, state.frozen_minutes = None, 0
            return []
        if state.frozen_value is not None and abs(state.frozen_value - mean) <= 1e-9 * max(1.0, abs(mean)):
            state.frozen_minutes += 1
        else:
            state.frozen_value, state.frozen_minutes, state.frozen_since_ms = mean, 1, start
        if state.frozen_minutes < s.stuck_minutes:
            return []
        minutes = state.frozen_minutes
        return [self.stuck_alert(state.frozen_since_ms, end, mean, minutes, n_readings)]

    def _floor_rules(self, state, start, end, mean, low) -> list[dict[str, Any]]:
        s = self.settings
        out: list[dict[str, Any]] = []
        if state.floor_w is None:
            state.floor_w, state.mean_w = low, mean
        usual_mean = state.mean_w
        hour = (start // 3_600_000) % 24
        usual_hour = state.hour_floor[hour]
        # the usual floor: the tracker, or this hour's floor on the previous days if higher
        floor = state.floor_w if usual_hour is None else max(state.floor_w, usual_hour)
        warm = state.minutes_seen > WARMUP_MINUTES
        excess = low - floor
        # without this hour's history a daily routine is harder to tell from an appliance left on: ask more
        needed = s.sustained_excess_w * (1.0 if usual_hour is not None else NO_HISTORY_FACTOR)
        if warm and excess >= needed:
            if state.high_minutes == 0:
                state.high_since_ms = start
            state.high_minutes += 1
            if state.high_minutes >= s.sustained_minutes:
                out.append(
                    self.sustained_alert(state.high_since_ms, end, low, floor, excess, needed, state.high_minutes)
                )
        else:
            state.high_minutes = 0
        # drift: against the same hour's floor on the previous days
        rise = low - usual_hour if usual_hour is not None else 0.0
        if usual_hour is not None and s.drift_fraction * usual_mean <= rise < s.sustained_excess_w:
            if state.drift_minutes == 0:
                state.drift_since_ms = start
            state.drift_minutes += 1
            if state.drift_minutes >= s.drift_minutes:
                out.append(
                    self.drift_alert(state.drift_since_ms, end, low, usual_hour, rise, usual_mean, state.drift_minutes)
                )
        else:
            state.drift_minutes = 0
        # learn: hourly floors (per day), the usual floor and mean
        if state.hour is not None and hour != state.hour and state.hour_minutes:
            old, today = state.hour_floor[state.hour], state.hour_low / state.hour_minutes
            state.hour_floor[state.hour] = today if old is None else 0.5 * (old + today)
            state.hour_low, state.hour_minutes = 0.0, 0
        state.hour = hour
        state.hour_low += low
        state.hour_minutes += 1
        tracked = state.floor_w
        state.floor_w = low if low < tracked else tracked + FLOOR_RISE_PER_MIN * (low - tracked)
        state.mean_w = usual_mean + (mean - usual_mean) / 1440.0
        return out

    def _unusual(self, state, end, mean, raw_max, record) -> dict[str, Any] | None:
        s = self.settings
        n_missing = int(record.get("n_missing") or 0)
        cutoff = end - self.history * MINUTE_MS
        drop = 0
        while drop < len(state.recent_end_ms) and state.recent_end_ms[drop] <= cutoff:
            drop += 1
        spikiness = math.log((raw_max + LEVEL_OFFSET_W) / (mean + LEVEL_OFFSET_W))
        missing = n_missing / max(1, n_missing + int(record.get("n_readings") or 0))
        for column, value in (
            (state.recent_end_ms, end),
            (state.recent_mean_w, mean),
            (state.recent_spikiness, spikiness),
            (state.recent_missing, missing),
        ):
            del column[:drop]
            column.append(value)
        n = len(state.recent_end_ms)
        if n <= s.dbscan_min_samples:
            return None
        X = micro_window_points(state.recent_spikiness, state.recent_mean_w, state.recent_missing)
        # the newest minute is core (so not noise) when min_samples minutes lie within eps: then DBSCAN
        # would label it too, skip the call (squared distances summed in order, as the kernel does)
        d = X - X[-1]
        d2 = d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1] + d[:, 2] * d[:, 2]
        if np.count_nonzero(d2 <= s.dbscan_eps * s.dbscan_eps) >= s.dbscan_min_samples:
            return None
        return self.unusual_alert(X, state.recent_mean_w, int(record["window_start_ms"]), end, mean, raw_max)

    # ---- alerts: one constructor per kind (gridflow.analytics.anomaly_batch raises its alerts with them too) --

    def back_online_alert(self, last_end_ms: int, start_ms: int, gap_min: int) -> dict[str, Any]:
        return self._alert("back_online", "low", last_end_ms, start_ms, {"silent_minutes": int(gap_min)})

    def gap_dropout_alert(self, last_end_ms: int, start_ms: int, gap_min: int) -> dict[str, Any]:
        """A dropout seen from the gap before a minute that arrived."""
        return self._alert(
            "dropout",
            "high" if gap_min >= 30 else "medium",
            last_end_ms,
            start_ms,
            {"missing_minutes": int(gap_min), "expected": "readings every minute"},
        )

    def empty_dropout_alert(self, start_ms: int, end_ms: int, missing_minutes: int) -> dict[str, Any]:
        """A dropout of ``dropout_minutes`` minutes that arrived without readings, the last ending at ``end_ms``."""
        return self._alert(
            "dropout",
            "medium",
            start_ms - (self.settings.dropout_minutes - 1) * MINUTE_MS,
            end_ms,
            {"missing_minutes": int(missing_minutes), "expected": "readings every minute"},
        )

    def silence_alert(self, last_end_ms: int, now_ms: int, silent_min: int) -> dict[str, Any]:
        """A dropout raised by a timer while the meter is still silent."""
        return self._alert(
            "dropout",
            "high" if silent_min >= 30 else "medium",
            last_end_ms,
            int(now_ms),
            {"missing_minutes": int(silent_min), "expected": "readings every minute", "still_silent": True},
        )

    def stuck_alert(self, since_ms: int, end_ms: int, value_w: float, minutes: int, n_readings: int) -> dict[str, Any]:
        return self._alert(
            "stuck",
            "high" if minutes >= 30 else "medium",
            since_ms,
            end_ms,
            {
                "value_w": value_w,
                "frozen_minutes": minutes,
                "identical_readings": minutes * n_readings,
                "expected": "readings that vary",
            },
        )

    def sustained_alert(self, since_ms, end_ms, low, floor, excess, needed, minutes) -> dict[str, Any]:
        """``sustained_high``: the minute's floor ``low`` is ``excess`` above the usual ``floor`` (``needed``
        was the bar) for ``minutes``."""
        return self._alert(
            "sustained_high",
            "high" if excess >= 2 * self.settings.sustained_excess_w else "medium",
            since_ms,
            end_ms,
            {
                "floor_w": round(low, 1),
                "usual_floor_w": round(floor, 1),
                "excess_w": round(excess, 1),
                "minutes": minutes,
                "expected_range_w": [0.0, round(floor + needed, 1)],
            },
        )

    def drift_alert(self, since_ms, end_ms, low, usual_hour, rise, usual_mean, minutes) -> dict[str, Any]:
        """``drift``: the floor ``low`` is ``rise`` above this hour's floor of the previous days for ``minutes``."""
        return self._alert(
            "drift",
            "low",
            since_ms,
            end_ms,
            {
                "floor_w": round(low, 1),
                "usual_floor_w": round(usual_hour, 1),
                "rise_w": round(rise, 1),
                "minutes": minutes,
                "expected_range_w": [0.0, round(usual_hour + self.settings.drift_fraction * usual_mean, 1)],
            },
        )

    def unusual_alert(self, X: np.ndarray, recent_mean_w, start_ms: int, end_ms: int, mean: float, raw_max: float):
        """DBSCAN over the micro-window's points ``X`` (:func:`micro_window_points`, the newest last):
        ``unusual_load`` if the newest is noise, else None."""
        s = self.settings
        labels = dbscan(X, s.dbscan_eps, s.dbscan_min_samples)
        if labels[-1] != -1:
            return None
        means = np.asarray(recent_mean_w, dtype=np.float64)
        usual = means[:-1][labels[:-1] != -1]
        low, high = (round(float(usual.min()), 1), round(float(usual.max()), 1)) if usual.size else (None, None)
        return self._alert(
            "unusual_load",
            "low",
            start_ms,
            end_ms,
            {
                "mean_w": round(mean, 1),
                "raw_max_w": round(raw_max, 1),
                "expected_range_w": [low, high],
                "minutes_compared": len(means) - 1,
                "clusters": int(labels.max()) + 1,
            },
        )

    @staticmethod
    def _alert(kind: str, severity: str, start_ms: int, end_ms: int, evidence: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": kind,
            "severity": severity,
            "window_start_ms": int(start_ms),
            "window_end_ms": int(end_ms),
            "evidence": evidence,
            "action": ACTIONS[kind],
        }

    def _emit(self, state: HouseholdState, household: str, raised: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Flood suppression: one alert per household and type per cooldown."""
        out = []
        for alert in raised:
            kind, ts = alert["type"], alert["window_end_ms"]
            last = state.last_alert_ms.get(kind)
            if last is not None and ts - last < self.cooldown_ms:
                state.suppressed[kind] = state.suppressed.get(kind, 0) + 1
                continue
            state.last_alert_ms[kind] = ts
            out.append(
                {
                    "v": SCHEMA_VERSION,
                    "household_id": household,
                    "meter_id": state.meter_id,
                    "ts_ms": ts,
                    **alert,
                    "suppressed_since_last": state.suppressed.pop(kind, 0),
                }
            )
        return out


def micro_window_points(spikiness, means_w, missing) -> np.ndarray:
    """The points DBSCAN clusters for ``unusual_load``, one per recent minute (oldest first): log spikiness,
    log level against the minutes' median level (``sorted(means)[n // 2]``), missing fraction."""
    means = np.asarray(means_w, dtype=np.float64)
    median = sorted(means.tolist())[len(means) // 2]
    X = np.empty((len(means), 3))
    X[:, 0] = spikiness
    X[:, 1] = np.log((means + LEVEL_OFFSET_W) / (median + LEVEL_OFFSET_W))
    X[:, 2] = missing
    return X


def meter_key(record: Mapping[str, Any]) -> str:
    """The state key of a feature record: its household and meter (``household/meter``; ids never hold '/')."""
    return f"{record['household_id']}/{record.get('meter_id', '')}"


def peer_outliers(
    records: Iterable[Mapping[str, Any]], settings, usual_w: Mapping[str, float] | None = None
) -> list[dict[str, Any]]:
    """DBSCAN across the households of one load-shape cluster in one minute; noise households get an
    ``unusual_vs_peers`` alert (no cooldown: the caller keeps it per household if needed).

    Each household is ``(log spikiness, log(mean / its usual mean), load factor)``; ``usual_w`` maps a
    household to its usual mean power (e.g. from :class:`HouseholdState` or its daily profile), without
    it the minutes' median mean is used for everyone.
    """
    rows = [r for r in records if r.get("mean_w") is not None]
    if len(rows) <= settings.dbscan_min_samples:
        return []
    means = np.array([float(r["mean_w"]) for r in rows])
    raw = np.array([float(r.get("raw_max_w") or r["mean_w"]) for r in rows])
    usual = np.array([float((usual_w or {}).get(str(r["household_id"]), np.median(means))) for r in rows])
    factor = np.array([float(r.get("load_factor") or 1.0) for r in rows])
    X = np.column_stack(
        [
            np.log((raw + LEVEL_OFFSET_W) / (means + LEVEL_OFFSET_W)),
            np.log((means + LEVEL_OFFSET_W) / (usual + LEVEL_OFFSET_W)),
            factor,
        ]
    )
    labels = dbscan(X, settings.dbscan_eps, settings.dbscan_min_samples)
    inliers = means[labels != -1] / np.maximum(usual[labels != -1], 1e-9)
    expected = [float(inliers.min()), float(inliers.max())] if inliers.size else None
    return [
        {
            "v": SCHEMA_VERSION,
            "household_id": str(r["household_id"]),
            "meter_id": str(r.get("meter_id", "")),
            "ts_ms": int(r["window_end_ms"]),
            "type": "unusual_vs_peers",
            "severity": "low",
            "window_start_ms": int(r["window_start_ms"]),
            "window_end_ms": int(r["window_end_ms"]),
            "evidence": {
                "mean_w": float(means[i]),
                "usual_w": float(usual[i]),
                "ratio_to_usual": round(float(means[i] / max(usual[i], 1e-9)), 3),
                "peer_ratio_range": expected,
                "peers": len(rows) - 1,
            },
            "action": ACTIONS["unusual_vs_peers"],
            "suppressed_since_last": 0,
        }
        for i, r in enumerate(rows)
        if labels[i] == -1
    ]
