"""The anomaly detector of :mod:`gridflow.analytics.anomaly`, over a batch of meters at a time.

The anomaly job receives one minute of a bucket of meters per call (the preprocessing job's feature
batches, ``topics.feature_batches``), so the per-record cost of Python (a call, a state read and write, a
state object rebuilt) is paid once per batch. :class:`MeterTable` holds what
:class:`~gridflow.analytics.anomaly.HouseholdState` holds, for every meter of a bucket, as numpy columns
(one row per meter); :class:`BatchDetector` runs the same rules on those columns with array operations and
drops to Python only for the few meters that raise something (an alert, a spike candidate, a DBSCAN call).

It is the scalar detector, rule for rule: :class:`~gridflow.analytics.anomaly.AnomalyDetector` is its
reference (``tests/test_anomaly_batch.py`` feeds both the same streams and compares every alert), and the
alerts are built by the scalar detector's own helpers.

>>> from gridflow.settings import AnomalySettings
>>> detector, table = BatchDetector(AnomalySettings()), MeterTable()
>>> def minute(k, mean, raw_max=None, outliers=()):
...     return {"household_id": "h-1", "meter_id": "m-1", "window_start_ms": k * 60_000,
...             "window_end_ms": (k + 1) * 60_000, "n_readings": 6, "n_missing": 0, "mean_w": mean,
...             "min_w": mean * 0.98, "peak_w": mean * 1.02, "raw_max_w": raw_max or mean * 1.02,
...             "outlier_values": list(outliers), "stuck_run": 1}
>>> [detector.update(table, [minute(k, 400.0)]) for k in range(3)]
[[], [], []]
>>> alert, = detector.update(table, [minute(3, 400.0, raw_max=3000.0, outliers=[3000.0])])
>>> alert["type"], alert["meter_id"], alert["evidence"]["value_w"]
('spike', 'm-1', 3000.0)
>>> detector.silence_deadline_ms(table)   # the meter's last minute ended at 240 s; dropout after 2 minutes
360000
"""

from __future__ import annotations

import math
import pickle
from typing import Any, Iterable, Mapping

import numpy as np

from gridflow.analytics.anomaly import (
    ALERT_TYPES,
    FLOOR_RISE_PER_MIN,
    LEVEL_OFFSET_W,
    MINUTE_MS,
    NO_HISTORY_FACTOR,
    WARMUP_MINUTES,
    AnomalyDetector,
    meter_key,
    micro_window_points,
)
from gridflow.contracts.core import SCHEMA_VERSION

NONE = np.iinfo(np.int64).min  # an absent time (``None`` in the scalar state)
TYPE_INDEX = {kind: i for i, kind in enumerate(ALERT_TYPES)}
_N_TYPES = len(ALERT_TYPES)

# columns per meter: name -> (dtype, fill of a new row); 2-D columns are listed in _WIDE
_COLUMNS: dict[str, tuple[type, Any]] = {
    "minutes_seen": (np.int64, 0),
    "last_end": (np.int64, NONE),
    "ring_pos": (np.int64, 0),
    "prev_mean": (np.float64, np.nan),
    "pending": (np.bool_, False),
    "pending_value": (np.float64, np.nan),
    "pending_mean": (np.float64, np.nan),
    "pending_limit": (np.float64, np.nan),
    "pending_start": (np.int64, 0),
    "pending_end": (np.int64, 0),
    "frozen_value": (np.float64, np.nan),
    "frozen_minutes": (np.int64, 0),
    "frozen_since": (np.int64, 0),
    "missing_minutes": (np.int64, 0),
    "silence_alerted": (np.bool_, False),
    "floor": (np.float64, np.nan),
    "usual_mean": (np.float64, np.nan),
    "high_minutes": (np.int64, 0),
    "high_since": (np.int64, 0),
    "hour_low": (np.float64, 0.0),
    "hour_minutes": (np.int64, 0),
    "hour": (np.int64, -1),
    "drift_minutes": (np.int64, 0),
    "drift_since": (np.int64, 0),
}
# 2-D columns: name -> (dtype, fill, width or None for the ring's capacity)
_WIDE: dict[str, tuple[type, Any, int | None]] = {
    "ring_end": (np.int64, NONE, None),
    "ring_mean": (np.float64, np.nan, None),
    "ring_spikiness": (np.float64, np.nan, None),
    "ring_missing": (np.float64, np.nan, None),
    "hour_floor": (np.float64, np.nan, 24),
    "last_alert": (np.int64, NONE, _N_TYPES),
    "suppressed": (np.int64, 0, _N_TYPES),
}


class MeterTable:
    """The detector's state for a set of meters (a bucket of them), one row per meter, as numpy columns.

    Rows are added as meters first appear (:meth:`rows_of`); :meth:`to_bytes` / :meth:`from_bytes` are the
    compact form kept in Flink state (the columns' buffers, no per-meter objects).
    """

    def __init__(self, ring_capacity: int = 2):
        self.keys: list[str] = []
        self.households: list[str] = []
        self.meters: list[str] = []
        self.index: dict[str, int] = {}
        self.capacity = ring_capacity
        self.cols: dict[str, np.ndarray] = {}
        for name, (dtype, fill) in _COLUMNS.items():
            self.cols[name] = np.full(0, fill, dtype=dtype)
        for name, (dtype, fill, width) in _WIDE.items():
            self.cols[name] = np.full((0, width or ring_capacity), fill, dtype=dtype)

    def __len__(self) -> int:
        return len(self.keys)

    def rows_of(self, records: list[Mapping[str, Any]]) -> np.ndarray:
        """The row of each record's meter, adding rows for meters not seen before."""
        index, rows = self.index, []
        added = 0
        for record in records:
            key = meter_key(record)
            row = index.get(key)
            if row is None:
                row = index[key] = len(self.keys)
                self.keys.append(key)
                self.households.append(str(record["household_id"]))
                self.meters.append(str(record.get("meter_id", "")))
                added += 1
            rows.append(row)
        if added:
            self._grow_rows(added)
        return np.array(rows, dtype=np.int64)

    def _grow_rows(self, added: int) -> None:
        for name, (dtype, fill) in _COLUMNS.items():
            self.cols[name] = np.concatenate([self.cols[name], np.full(added, fill, dtype=dtype)])
        for name, (dtype, fill, width) in _WIDE.items():
            extra: np.ndarray = np.full((added, width or self.capacity), fill, dtype=dtype)
            self.cols[name] = np.concatenate([self.cols[name], extra])

    def grow_ring(self) -> None:
        """Double the ring of recent minutes, keeping every row's entries in time order."""
        old, new = self.capacity, 2 * self.capacity
        order = np.argsort(self.cols["ring_end"], axis=1, kind="stable")  # absent (NONE) entries first
        for name in ("ring_end", "ring_mean", "ring_spikiness", "ring_missing"):
            dtype, fill, _ = _WIDE[name]
            grown: np.ndarray = np.full((len(self), new), fill, dtype=dtype)
            grown[:, :old] = np.take_along_axis(self.cols[name], order, axis=1)
            self.cols[name] = grown
        self.cols["ring_pos"] = np.full(len(self), old, dtype=np.int64)
        self.capacity = new

    def to_bytes(self) -> bytes:
        return pickle.dumps(
            (self.keys, self.households, self.meters, self.capacity, self.cols), protocol=pickle.HIGHEST_PROTOCOL
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> "MeterTable":
        table = cls.__new__(cls)
        table.keys, table.households, table.meters, table.capacity, table.cols = pickle.loads(data)
        table.index = {key: i for i, key in enumerate(table.keys)}
        return table


def _numbers(records: list[Mapping[str, Any]], name: str, default: float | None = None) -> np.ndarray:
    """A float column of ``records[name]`` (``None`` -> NaN; ``default`` replaces absent values)."""
    return np.array([np.nan if (v := r.get(name, default)) is None else v for r in records], dtype=np.float64)


def _counts(records: list[Mapping[str, Any]], name: str) -> np.ndarray:
    """An int column of ``int(records[name] or 0)``, as the scalar detector reads counts."""
    return np.array([int(r.get(name) or 0) for r in records], dtype=np.int64)


class BatchDetector:
    """:class:`~gridflow.analytics.anomaly.AnomalyDetector` over :class:`MeterTable` rows.

    Parameters
    ----------
    settings : AnomalySettings
        ``gridflow.settings.AnomalySettings`` (the defaults live there).
    """

    def __init__(self, settings):
        self.settings = settings
        self.scalar = AnomalyDetector(settings)  # the alerts' wording and evidence
        self.history = self.scalar.history
        self.cooldown_ms = self.scalar.cooldown_ms

    def new_table(self) -> MeterTable:
        return MeterTable(ring_capacity=self.history + 1)

    # ---- records ----------------------------------------------------------------------------------

    def update(self, table: MeterTable, records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Learn a batch of feature records (any meters; a meter's records in time order); their alerts,
        per meter in the order the scalar detector raises them."""
        records = list(records)
        if not records:
            return []
        rows = table.rows_of(records)
        # a meter twice in one batch: its records go in successive rounds, each meter at most once per round
        seen: dict[int, int] = {}
        rounds: list[list[int]] = []
        for i, row in enumerate(rows.tolist()):
            k = seen[row] = seen.get(row, -1) + 1
            if k == len(rounds):
                rounds.append([])
            rounds[k].append(i)
        if len(rounds) == 1:
            return self._round(table, records, rows)
        alerts: list[dict[str, Any]] = []
        for positions in rounds:
            alerts += self._round(table, [records[i] for i in positions], rows[positions])
        return alerts

    def _round(self, t: MeterTable, records: list[Mapping[str, Any]], rows: np.ndarray) -> list[dict[str, Any]]:
        s, c = self.settings, t.cols
        start = np.array([int(r["window_start_ms"]) for r in records], dtype=np.int64)
        end = np.array([int(r["window_end_ms"]) for r in records], dtype=np.int64)
        last = c["last_end"][rows]
        has_last = last != NONE
        fresh = ~has_last | (end > last)  # a late or repeated minute was judged already: it changes nothing
        if not fresh.all():
            keep = np.flatnonzero(fresh)
            records = [records[i] for i in keep.tolist()]
            rows, start, end, last, has_last = rows[keep], start[keep], end[keep], last[keep], has_last[keep]
            if not records:
                return []
        n_readings = _counts(records, "n_readings")
        mean = _numbers(records, "mean_w")
        n = len(records)
        fired = np.zeros(n, dtype=bool)  # raised anything (before the cooldown): no unusual_load then

        # ---- dropout: a gap since the last record, or minutes with no readings
        gap = np.where(has_last, (start - np.where(has_last, last, 0)) // MINUTE_MS, 0)
        back = c["silence_alerted"][rows] & has_last
        gap_dropout = ~back & has_last & (gap >= s.dropout_minutes)
        c["silence_alerted"][rows[back]] = False
        no_mean = (n_readings == 0) | np.isnan(mean)
        missing = np.where(no_mean, c["missing_minutes"][rows] + 1, 0)
        c["missing_minutes"][rows] = missing
        missing_dropout = missing == s.dropout_minutes
        # ---- a spike waiting for its next minute
        pending = c["pending"][rows]
        resolved = (
            pending
            & (start == c["pending_end"][rows])
            & ~np.isnan(mean)
            & ~(mean * s.spike_ratio > c["pending_value"][rows])
        )
        resolved_rows = rows[resolved]
        resolved_spikes = [
            (
                float(c["pending_value"][row]),
                float(c["pending_mean"][row]),
                int(c["pending_start"][row]),
                int(c["pending_end"][row]),
                float(c["pending_limit"][row]),
            )
            for row in resolved_rows.tolist()
        ]
        c["pending"][rows] = False
        prev = np.where(last != start, np.nan, c["prev_mean"][rows])
        c["last_end"][rows] = end
        fired |= back | gap_dropout | missing_dropout | resolved
        c["prev_mean"][rows[no_mean]] = np.nan

        # ---- minutes with readings
        on = np.flatnonzero(~no_mean)
        a = rows[on]
        a_records = [records[i] for i in on.tolist()]
        a_start, a_end, a_mean, a_n = start[on], end[on], mean[on], n_readings[on]
        low = _numbers(a_records, "min_w")
        low = np.where(np.isnan(low), a_mean, low)
        raw_max = np.array([float(r.get("raw_max_w") or m) for r, m in zip(a_records, a_mean.tolist())])
        seen = c["minutes_seen"][a] + 1
        c["minutes_seen"][a] = seen
        a_prev = prev[on]
        extra: dict[int, list[dict[str, Any]]] = {}  # position in the round -> spike alerts (hampel)

        # spike: candidates in Python (few: a kettle switching on is one)
        limit = np.maximum(s.spike_ratio * a_mean, a_mean + s.spike_min_excess_w)
        for j in np.flatnonzero(raw_max >= limit).tolist():
            record, row = a_records[j], int(a[j])
            m, lim, rmax = float(a_mean[j]), float(limit[j]), float(raw_max[j])
            replaced = [float(v) for v in record.get("outlier_values") or () if float(v) >= lim]
            peak = float(record.get("peak_w") or m)
            if len(replaced) == 1 and peak < lim:
                alert = self.scalar.spike_alert(replaced[0], m, int(a_start[j]), int(a_end[j]), lim, "hampel")
                extra.setdefault(int(on[j]), []).append(alert)
                fired[on[j]] = True
                continue
            previous = float(a_prev[j])
            if math.isnan(previous) or previous * s.spike_ratio <= rmax:
                c["pending"][row] = True
                c["pending_value"][row], c["pending_mean"][row], c["pending_limit"][row] = rmax, m, lim
                c["pending_start"][row], c["pending_end"][row] = int(a_start[j]), int(a_end[j])

        # stuck
        stuck_run = _counts(a_records, "stuck_run")
        frozen = (a_n >= 2) & (stuck_run >= a_n) & (a_mean >= s.stuck_min_w)
        value = c["frozen_value"][a]
        same = frozen & ~np.isnan(value) & (np.abs(value - a_mean) <= 1e-9 * np.maximum(1.0, np.abs(a_mean)))
        frozen_minutes = np.where(frozen, np.where(same, c["frozen_minutes"][a] + 1, 1), 0)
        c["frozen_minutes"][a] = frozen_minutes
        c["frozen_value"][a] = np.where(frozen, np.where(same, value, a_mean), np.nan)
        c["frozen_since"][a] = np.where(frozen & ~same, a_start, c["frozen_since"][a])
        stuck = frozen & (frozen_minutes >= s.stuck_minutes)

        # floor rules: sustained_high and drift
        first = np.isnan(c["floor"][a])
        floor = np.where(first, low, c["floor"][a])
        usual_mean = np.where(first, a_mean, c["usual_mean"][a])
        hour = (a_start // 3_600_000) % 24
        usual_hour = c["hour_floor"][a, hour]
        has_hour = ~np.isnan(usual_hour)
        floor_now = np.where(has_hour, np.maximum(floor, np.where(has_hour, usual_hour, 0.0)), floor)
        excess = low - floor_now
        needed = s.sustained_excess_w * np.where(has_hour, 1.0, NO_HISTORY_FACTOR)
        high = (seen > WARMUP_MINUTES) & (excess >= needed)
        high_minutes = c["high_minutes"][a]
        c["high_since"][a] = np.where(high & (high_minutes == 0), a_start, c["high_since"][a])
        high_minutes = np.where(high, high_minutes + 1, 0)
        c["high_minutes"][a] = high_minutes
        sustained = high & (high_minutes >= s.sustained_minutes)
        rise = np.where(has_hour, low - np.where(has_hour, usual_hour, 0.0), 0.0)
        drifting = has_hour & (s.drift_fraction * usual_mean <= rise) & (rise < s.sustained_excess_w)
        drift_minutes = c["drift_minutes"][a]
        c["drift_since"][a] = np.where(drifting & (drift_minutes == 0), a_start, c["drift_since"][a])
        drift_minutes = np.where(drifting, drift_minutes + 1, 0)
        c["drift_minutes"][a] = drift_minutes
        drift = drifting & (drift_minutes >= s.drift_minutes)
        # learn the hourly floors, the usual floor and mean
        last_hour, hour_minutes = c["hour"][a], c["hour_minutes"][a]
        roll = (last_hour >= 0) & (hour != last_hour) & (hour_minutes > 0)
        if roll.any():
            r_rows, r_hour = a[roll], last_hour[roll]
            old = c["hour_floor"][r_rows, r_hour]
            today = c["hour_low"][r_rows] / hour_minutes[roll]
            c["hour_floor"][r_rows, r_hour] = np.where(np.isnan(old), today, 0.5 * (old + today))
            c["hour_low"][r_rows] = 0.0
            c["hour_minutes"][r_rows] = 0
        c["hour"][a] = hour
        c["hour_low"][a] += low
        c["hour_minutes"][a] += 1
        c["floor"][a] = np.where(low < floor, low, floor + FLOOR_RISE_PER_MIN * (low - floor))
        c["usual_mean"][a] = usual_mean + (a_mean - usual_mean) / 1440.0

        # unusual_load: the recent minutes of each meter in a ring, DBSCAN only where the newest minute is
        # not plainly core
        cutoff = a_end - self.history * MINUTE_MS
        pos = c["ring_pos"][a]
        if (c["ring_end"][a, pos] > cutoff).any():  # the ring is full of minutes still recent: grow it
            t.grow_ring()
            c = t.cols
            pos = c["ring_pos"][a]
        n_missing = _counts(a_records, "n_missing")
        c["ring_end"][a, pos] = a_end
        c["ring_mean"][a, pos] = a_mean
        c["ring_spikiness"][a, pos] = [
            math.log((r + LEVEL_OFFSET_W) / (m + LEVEL_OFFSET_W)) for r, m in zip(raw_max.tolist(), a_mean.tolist())
        ]
        c["ring_missing"][a, pos] = n_missing / np.maximum(1, n_missing + a_n)
        c["ring_pos"][a] = (pos + 1) % t.capacity
        fired[on] |= stuck | sustained | drift
        candidates = ~fired[on] & ~c["pending"][a]
        unusual = self._unusual(t, a, pos, a_start, a_end, a_mean, raw_max, cutoff, candidates)
        c["prev_mean"][a] = a_mean

        # ---- alerts, per meter in the scalar detector's order, then the cooldown
        if not fired.any() and not unusual:
            return []
        at = {int(i): j for j, i in enumerate(on.tolist())}
        resolved_at = dict(zip(np.flatnonzero(resolved).tolist(), resolved_spikes))
        out: list[dict[str, Any]] = []
        alerts = self.scalar  # the alerts' wording and evidence are the scalar detector's
        for i in sorted(set(np.flatnonzero(fired).tolist()) | {int(on[j]) for j in unusual}):
            raised = []
            if back[i]:
                raised.append(alerts.back_online_alert(int(last[i]), int(start[i]), int(gap[i])))
            elif gap_dropout[i]:
                raised.append(alerts.gap_dropout_alert(int(last[i]), int(start[i]), int(gap[i])))
            if missing_dropout[i]:
                raised.append(alerts.empty_dropout_alert(int(start[i]), int(end[i]), int(missing[i])))
            if i in resolved_at:
                value, m, p_start, p_end, lim = resolved_at[i]
                raised.append(alerts.spike_alert(value, m, p_start, p_end, lim, "next minute fell back"))
            raised += extra.get(i, [])
            j = at.get(i)
            if j is not None:
                row, a_end_ms = int(a[j]), int(a_end[j])
                if stuck[j]:
                    minutes = int(c["frozen_minutes"][row])
                    since = int(c["frozen_since"][row])
                    raised.append(alerts.stuck_alert(since, a_end_ms, float(a_mean[j]), minutes, int(a_n[j])))
                if sustained[j]:
                    raised.append(
                        alerts.sustained_alert(
                            int(c["high_since"][row]),
                            a_end_ms,
                            float(low[j]),
                            float(floor_now[j]),
                            float(excess[j]),
                            float(needed[j]),
                            int(c["high_minutes"][row]),
                        )
                    )
                if drift[j]:
                    raised.append(
                        alerts.drift_alert(
                            int(c["drift_since"][row]),
                            a_end_ms,
                            float(low[j]),
                            float(usual_hour[j]),
                            float(rise[j]),
                            float(usual_mean[j]),
                            int(c["drift_minutes"][row]),
                        )
                    )
                if j in unusual:
                    raised.append(unusual[j])
            out += self._emit(t, int(rows[i]), raised)
        return out

    def _unusual(
        self, t: MeterTable, a, pos, start, end, mean, raw_max, cutoff, candidates
    ) -> dict[int, dict[str, Any]]:
        """``unusual_load`` alerts of the candidate rows, by position in ``a``."""
        s, c = self.settings, t.cols
        if not candidates.any():
            return {}
        ends = c["ring_end"][a]
        valid = ends > cutoff[:, None]
        counts = valid.sum(axis=1)
        candidates = candidates & (counts > s.dbscan_min_samples)
        if not candidates.any():
            return {}
        k = np.flatnonzero(candidates)
        rows, valid, counts, newest = a[k], valid[k], counts[k], pos[k]
        means = c["ring_mean"][rows]
        ordered = np.sort(np.where(valid, means, np.inf), axis=1)
        median = ordered[np.arange(len(k)), counts // 2]
        level = np.log((means + LEVEL_OFFSET_W) / (median[:, None] + LEVEL_OFFSET_W))
        spikiness, missing = c["ring_spikiness"][rows], c["ring_missing"][rows]
        at = np.arange(len(k))
        d0 = spikiness - spikiness[at, newest][:, None]
        d1 = level - level[at, newest][:, None]
        d2 = missing - missing[at, newest][:, None]
        near = valid & (d0 * d0 + d1 * d1 + d2 * d2 <= s.dbscan_eps * s.dbscan_eps)
        out: dict[int, dict[str, Any]] = {}
        for m in np.flatnonzero(near.sum(axis=1) < s.dbscan_min_samples).tolist():
            row, j = int(rows[m]), int(k[m])
            order = np.flatnonzero(valid[m])
            order = order[np.argsort(c["ring_end"][row, order], kind="stable")]  # oldest first, newest last
            recent = c["ring_mean"][row, order]
            X = micro_window_points(c["ring_spikiness"][row, order], recent, c["ring_missing"][row, order])
            alert = self.scalar.unusual_alert(X, recent, int(start[j]), int(end[j]), float(mean[j]), float(raw_max[j]))
            if alert is not None:
                out[j] = alert
        return out

    # ---- silence ----------------------------------------------------------------------------------

    def silence_deadline_ms(self, table: MeterTable) -> int | None:
        """The earliest time a meter of ``table`` counts as silent (not alerted yet), if any."""
        waiting = (table.cols["last_end"] != NONE) & ~table.cols["silence_alerted"]
        if not waiting.any():
            return None
        return int(table.cols["last_end"][waiting].min()) + int(self.settings.dropout_minutes) * MINUTE_MS

    def check_silence(self, table: MeterTable, now_ms: int) -> list[dict[str, Any]]:
        """Dropout alerts of the meters silent for ``dropout_minutes`` by ``now_ms`` (each as of its own
        deadline, as a timer per meter would raise it), in time order."""
        c, wait_ms = table.cols, int(self.settings.dropout_minutes) * MINUTE_MS
        last = c["last_end"]
        silent = (last != NONE) & ~c["silence_alerted"] & (last <= int(now_ms) - wait_ms)
        out: list[dict[str, Any]] = []
        rows = np.flatnonzero(silent)
        for row in rows[np.argsort(last[rows], kind="stable")].tolist():
            c["silence_alerted"][row] = True
            alert = self.scalar.silence_alert(int(last[row]), int(last[row]) + wait_ms, wait_ms // MINUTE_MS)
            out += self._emit(table, row, [alert])
        return out

    # ---- alerts ------------------------------------------------------------------------------------

    def _emit(self, table: MeterTable, row: int, raised: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Flood suppression as the scalar detector's: one alert per meter and type per cooldown."""
        last, suppressed = table.cols["last_alert"][row], table.cols["suppressed"][row]
        out = []
        for alert in raised:
            kind, ts = TYPE_INDEX[alert["type"]], alert["window_end_ms"]
            if last[kind] != NONE and ts - int(last[kind]) < self.cooldown_ms:
                suppressed[kind] += 1
                continue
            last[kind] = ts
            out.append(
                {
                    "v": SCHEMA_VERSION,
                    "household_id": table.households[row],
                    "meter_id": table.meters[row],
                    "ts_ms": ts,
                    **alert,
                    "suppressed_since_last": int(suppressed[kind]),
                }
            )
            suppressed[kind] = 0
        return out
