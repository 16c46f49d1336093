"""What the pages show, kept in memory and fed one record at a time (no Kafka, no web: testable alone).

Memory is bounded per household: the feature windows of its latest local day (one per minute of the
day), the latest profile, cluster assignment and schedule, the latest recommendation per
``(kind, appliance)`` (at most ``recommendations_per_household``) and its last ``alerts_per_household``
alerts; per cluster the latest centroid; across households the last ``recent_alerts`` alerts.

Records arrive as decoded JSON objects. Anything unusable (not an object, no valid ``household_id``,
non-numeric fields the pages need) is counted as rejected and otherwise ignored: a bad record never
stops the feed. Fields are read defensively, since several producers are still evolving.

>>> store = PageStore("UTC")
>>> store.add("features", {"household_id": "h1", "window_start_ms": 3_600_000, "mean_w": 500.0, "energy_wh": 8.3})
True
>>> store.add("features", {"household_id": "h1"}), store.rejected
(False, 1)
>>> view = store.household("h1")
>>> view["today"]["day"], view["today"]["latest_w"], view["today"]["load_w"][1]
('1970-01-01', 500.0, 500.0)
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import date

from gridflow.contracts import ID
from gridflow.preprocess.localtime import LocalClock

KINDS = ("features", "profiles", "assignments", "centroids", "alerts", "schedules", "recommendations")
HOUSEHOLD_ID = ID
DAY_MS = 86_400_000
MINUTE_MS = 60_000
FEEDER_BINS = 96  # 15-minute bins of the operator's feeder load
ALL_FEEDERS = "all"


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _int(value) -> int | None:
    number = _number(value)
    return int(number) if number is not None else None


@dataclass
class _Household:
    day: int | None = None  # local day number of ``minutes``
    minutes: dict[int, tuple] = field(default_factory=dict)  # minute of day -> (start_ms, mean_w, peak_w, energy_wh)
    feeder: str | None = None
    profile: dict | None = None
    assignment: dict | None = None
    schedule: dict | None = None
    recommendations: dict[tuple, dict] = field(default_factory=dict)
    alerts: deque = field(default_factory=deque)


class PageStore:
    """Thread-safe: the Kafka feed thread calls :meth:`add`, web handlers read snapshots."""

    def __init__(
        self,
        timezone: str = "UTC",
        *,
        alerts_per_household: int = 20,
        recent_alerts: int = 200,
        recommendations_per_household: int = 20,
    ):
        self.timezone = timezone
        self.alerts_per_household = alerts_per_household
        self.recommendations_per_household = recommendations_per_household
        self.accepted = 0
        self.rejected = 0
        self._clock = LocalClock(timezone)
        self._lock = threading.Lock()
        self._households: dict[str, _Household] = {}
        self._centroids: dict[int, dict] = {}
        self._recent_alerts: deque = deque(maxlen=recent_alerts)

    # -- feeding -------------------------------------------------------------------------------------
    def add(self, kind: str, record) -> bool:
        """Take one decoded record of topic ``kind`` (one of :data:`KINDS`); False if it was rejected."""
        if kind not in KINDS:
            raise ValueError(f"unknown record kind {kind!r}; valid kinds: {', '.join(KINDS)}")
        with self._lock:
            ok = isinstance(record, dict) and getattr(self, f"_add_{kind}")(record)
            if ok:
                self.accepted += 1
            else:
                self.rejected += 1
            return bool(ok)

    def _household_of(self, record: dict) -> _Household | None:
        household_id = record.get("household_id")
        if not isinstance(household_id, str) or not HOUSEHOLD_ID.match(household_id):
            return None
        return self._households.setdefault(household_id, _Household())

    def _local(self, ts_ms: int) -> tuple[int, int]:
        """(local day number, local minute of day) of an instant."""
        local = ts_ms + self._clock.utc_offset_ms(ts_ms)
        return local // DAY_MS, (local % DAY_MS) // MINUTE_MS

    def _add_features(self, record: dict) -> bool:
        start, mean = _int(record.get("window_start_ms")), _number(record.get("mean_w"))
        if start is None or mean is None:
            return False
        household = self._household_of(record)
        if household is None:
            return False
        day, minute = self._local(start)
        if household.day is None or day > household.day:
            household.day, household.minutes = day, {}
        elif day < household.day:
            return True  # an older day: nothing the pages show
        household.minutes[minute] = (start, mean, _number(record.get("peak_w")), _number(record.get("energy_wh")))
        if isinstance(record.get("feeder"), str):
            household.feeder = record["feeder"]
        return True

    def _add_profiles(self, record: dict) -> bool:
        return self._keep_latest(record, "profile", "day_start_ms")

    def _add_assignments(self, record: dict) -> bool:
        return _int(record.get("cluster")) is not None and self._keep_latest(record, "assignment", "ts_ms")

    def _add_schedules(self, record: dict) -> bool:
        return isinstance(record.get("appliances", []), list) and self._keep_latest(record, "schedule", "start_ts_ms")

    def _keep_latest(self, record: dict, slot: str, ts_field: str) -> bool:
        household = self._household_of(record)
        if household is None:
            return False
        current = getattr(household, slot)
        if current is None or (_number(record.get(ts_field)) or 0) >= (_number(current.get(ts_field)) or 0):
            setattr(household, slot, record)
        return True

    def _add_centroids(self, record: dict) -> bool:
        cluster = _int(record.get("cluster"))
        if cluster is None:
            return False
        current = self._centroids.get(cluster)
        if current is None or (_number(record.get("ts_ms")) or 0) >= (_number(current.get("ts_ms")) or 0):
            self._centroids[cluster] = record
        return True

    def _add_recommendations(self, record: dict) -> bool:
        household = self._household_of(record)
        if household is None or not isinstance(record.get("text"), str):
            return False
        key = (record.get("kind"), record.get("appliance"))
        current = household.recommendations.get(key)
        if current is None or (_number(record.get("created_ms")) or 0) >= (_number(current.get("created_ms")) or 0):
            household.recommendations[key] = record
        if len(household.recommendations) > self.recommendations_per_household:
            oldest = min(
                household.recommendations, key=lambda k: _number(household.recommendations[k].get("created_ms")) or 0
            )
            del household.recommendations[oldest]
        return True

    def _add_alerts(self, record: dict) -> bool:
        household = self._household_of(record)
        if household is None:
            return False
        household.alerts.append(record)
        while len(household.alerts) > self.alerts_per_household:
            household.alerts.popleft()
        self._recent_alerts.append(record)
        return True

    # -- reading -------------------------------------------------------------------------------------
    def household_ids(self) -> list[str]:
        with self._lock:
            return sorted(self._households)

    def household(self, household_id: str) -> dict | None:
        """Everything one household's page shows (copies), or None for an unknown household."""
        with self._lock:
            household = self._households.get(household_id)
            if household is None:
                return None
            cluster = _int((household.assignment or {}).get("cluster"))
            centroid = self._centroids.get(cluster) if cluster is not None else None
            norm = centroid.get("profile_norm") if centroid else None
            slots = len(norm) if isinstance(norm, list) and norm else 24
            by_created = sorted(household.recommendations.values(), key=lambda r: -(_number(r.get("created_ms")) or 0))
            return {
                "household_id": household_id,
                "today": self._today(household, slots),
                "profile": household.profile,
                "cluster": None
                if cluster is None
                else {
                    "cluster": cluster,
                    "distance": _number((household.assignment or {}).get("distance")),
                    "size": _int(centroid.get("size")) if centroid else None,
                    "members_here": sum(
                        1 for h in self._households.values() if _int((h.assignment or {}).get("cluster")) == cluster
                    ),
                    "profile_norm": list(norm) if isinstance(norm, list) else None,
                },
                "schedule": household.schedule,
                "recommendations": by_created,
                "alerts": list(reversed(household.alerts)),
            }

    def _today(self, household: _Household, slots: int) -> dict | None:
        if household.day is None or not household.minutes:
            return None
        per_slot = 1440 // slots if 1440 % slots == 0 else 60
        sums, counts = [0.0] * (1440 // per_slot), [0] * (1440 // per_slot)
        for minute, (_, mean, _, _) in household.minutes.items():
            sums[minute // per_slot] += mean
            counts[minute // per_slot] += 1
        latest_start, latest_w, _, _ = max(household.minutes.values())
        energies = [e for _, _, _, e in household.minutes.values() if e is not None]
        peaks = [p if p is not None else m for _, m, p, _ in household.minutes.values()]
        return {
            "day": date.fromordinal(date(1970, 1, 1).toordinal() + household.day).isoformat(),
            "minutes": len(household.minutes),
            "latest_ms": latest_start,
            "latest_w": latest_w,
            "load_w": [s / c if c else None for s, c in zip(sums, counts)],
            "energy_kwh": sum(energies) / 1000.0 if energies else None,
            "peak_w": max(peaks),
            "feeder": household.feeder,
        }

    def overview(self) -> dict:
        """The operator view: clusters, recent alerts, feeder load over the latest day."""
        with self._lock:
            members: dict[int, int] = {}
            for household in self._households.values():
                cluster = _int((household.assignment or {}).get("cluster"))
                if cluster is not None:
                    members[cluster] = members.get(cluster, 0) + 1
            clusters = [
                {
                    "cluster": c,
                    "size": _int(r.get("size")),
                    "members_here": members.get(c, 0),
                    "profile_norm": r.get("profile_norm") if isinstance(r.get("profile_norm"), list) else None,
                }
                for c, r in sorted(self._centroids.items())
            ]
            clusters += [
                {"cluster": c, "size": None, "members_here": n, "profile_norm": None}
                for c, n in sorted(members.items())
                if c not in self._centroids
            ]
            return {
                "households": len(self._households),
                "clusters": clusters,
                "alerts": list(reversed(self._recent_alerts)),
                **self._feeders(),
            }

    def _feeders(self) -> dict:
        days = [h.day for h in self._households.values() if h.day is not None and h.minutes]
        if not days:
            return {"day": None, "feeders": {}, "now_w": {}, "bin_minutes": 1440 // FEEDER_BINS}
        day = max(days)
        bin_minutes = 1440 // FEEDER_BINS
        curves: dict[str, list] = {}
        now: dict[str, float] = {}
        for household in self._households.values():
            if household.day != day or not household.minutes:
                continue
            sums, counts = [0.0] * FEEDER_BINS, [0] * FEEDER_BINS
            for minute, (_, mean, _, _) in household.minutes.items():
                sums[minute // bin_minutes] += mean
                counts[minute // bin_minutes] += 1
            latest_w = max(household.minutes.values())[1]
            for name in {ALL_FEEDERS, household.feeder or ALL_FEEDERS}:
                curve = curves.setdefault(name, [None] * FEEDER_BINS)
                for i, (s, c) in enumerate(zip(sums, counts)):
                    if c:
                        curve[i] = (curve[i] or 0.0) + s / c
                now[name] = now.get(name, 0.0) + latest_w
        return {
            "day": date.fromordinal(date(1970, 1, 1).toordinal() + day).isoformat(),
            "feeders": curves,
            "now_w": now,
            "bin_minutes": bin_minutes,
        }
