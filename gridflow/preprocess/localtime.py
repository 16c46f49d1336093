"""Local wall-clock time of epoch milliseconds in an IANA zone, cached per hour (offsets change on hours).

>>> clock = LocalClock("Europe/Paris")
>>> clock.utc_offset_ms(1_700_000_000_000), clock.utc_offset_ms(1_690_000_000_000)
(3600000, 7200000)
>>> clock.time_of_day_ms([1_699_916_400_000, 1_699_920_000_000], day_start_ms=1_699_916_400_000).tolist()
[0, 3600000]
"""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import numpy as np

HOUR_MS = 3_600_000


class LocalClock:
    def __init__(self, zone: str = "UTC"):
        self.zone = ZoneInfo(zone)
        self._offsets: dict[int, int] = {}

    def utc_offset_ms(self, ts_ms: int) -> int:
        hour = ts_ms // HOUR_MS
        offset = self._offsets.get(hour)
        if offset is None:
            if len(self._offsets) > 10_000:
                self._offsets.clear()
            moment = datetime.fromtimestamp(hour * HOUR_MS / 1000, tz=timezone.utc).astimezone(self.zone)
            utc_offset = moment.utcoffset()
            if utc_offset is None:  # an aware datetime in a ZoneInfo always has one
                raise ValueError(f"time zone {self.zone} gives no UTC offset for {moment}")
            offset = self._offsets[hour] = int(utc_offset.total_seconds() * 1000)
        return offset

    def time_of_day_ms(self, ts_ms, day_start_ms: int) -> np.ndarray:
        """Local wall-clock time since the local midnight ``day_start_ms`` (an epoch instant)."""
        ts = np.asarray(ts_ms, dtype=np.int64)
        base = self.utc_offset_ms(day_start_ms)
        if ts.size and self.utc_offset_ms(int(ts.max())) == base == self.utc_offset_ms(int(ts.min())):
            return ts - day_start_ms
        shift = np.array([self.utc_offset_ms(int(t)) - base for t in ts], dtype=np.int64)
        return ts - day_start_ms + shift
