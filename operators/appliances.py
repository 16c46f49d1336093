"""Flink functions of the appliance-learning job: minute features -> each household's appliance profiles.

Thin: JSON, state, timers and metrics. The model is :class:`gridflow.nilm.ApplianceLearner`, kept pickled in
Flink state (so checkpointed with it); the appliance record is
:meth:`gridflow.nilm.ApplianceProfile.to_record`'s. Rejected input goes to the ``dead-letter`` side output in
the format of :func:`gridflow.contracts.dead_letter`.

Imports neither river nor scipy, so the job runs in thread-mode Python workers (the learner's density
grouping is numpy: :func:`gridflow.nilm.signatures.gaussian_density`).
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone

import numpy as np
from pyflink.common import Row, Types
from pyflink.datastream import KeyedProcessFunction, OutputTag, ProcessFunction, RuntimeContext
from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor

from gridflow.contracts import ContractError, dead_letter, decode_object
from gridflow.nilm import ApplianceLearner
from gridflow.preprocess.localtime import LocalClock
from gridflow.settings import Settings

# shared with the price-forecasting job's functions (operators/learning.py), which import from here
DAY_MS = 86_400_000
MINUTE_MS = 60_000
DEAD_LETTER = OutputTag("dead-letter", Types.STRING())
METRIC_GROUP = "gridflow"


def _compact(record: dict) -> str:
    return json.dumps(record, separators=(",", ":"))


def feature_type():
    """Row of a parsed feature window. A fresh object per use (see ``operators.readings.reading_type``)."""
    return Types.ROW_NAMED(
        ["household_id", "meter_id", "window_start_ms", "window_end_ms", "mean_w"],
        [Types.STRING(), Types.STRING(), Types.LONG(), Types.LONG(), Types.DOUBLE()],
    )


def parse_feature(payload: str) -> Row:
    """A feature record of the preprocessing job -> :func:`feature_type` row (``mean_w`` NaN when null).

    Raises :class:`~gridflow.contracts.ContractError` naming the field.
    """
    data = decode_object(payload)
    for name in ("household_id", "meter_id"):
        if not isinstance(data.get(name), str) or not data[name]:
            raise ContractError(name, f"must be a non-empty string, got {data.get(name)!r}")
    start, end = _epoch_ms(data, "window_start_ms"), _epoch_ms(data, "window_end_ms")
    if not start < end <= start + DAY_MS:
        raise ContractError("window_end_ms", f"must be after window_start_ms ({start}) by at most a day, got {end}")
    mean_w = data.get("mean_w")
    if mean_w is not None and (
        isinstance(mean_w, bool) or not isinstance(mean_w, (int, float)) or not math.isfinite(mean_w)
    ):
        raise ContractError("mean_w", f"must be a finite number or null, got {mean_w!r}")
    return Row(data["household_id"], data["meter_id"], start, end, math.nan if mean_w is None else float(mean_w))


class ParseFeatures(ProcessFunction):
    """JSON feature record -> :func:`feature_type` row; invalid records go to the ``dead-letter`` side output."""

    def __init__(self, source: str):
        self.source = source

    def process_element(self, value, ctx):
        try:
            yield parse_feature(value)
        except ContractError as error:
            yield DEAD_LETTER, dead_letter(value, error, self.source)


def _epoch_ms(data: dict, name: str) -> int:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ContractError(name, f"must be epoch milliseconds (an integer >= 0), got {value!r}")
    return value


def minute_cells(start_ms: int, end_ms: int, clock: LocalClock) -> list[tuple[int, int]]:
    """``(local day, local minute of day)`` of every minute a window ``[start_ms, end_ms)`` covers.

    Local days are numbered from 1970-01-01 on the local clock, so ``day * DAY_MS`` is the local midnight as
    local-clock milliseconds (what :meth:`ApplianceLearner.learn_day` takes). In the hour repeated when
    clocks go back a minute is covered twice (its readings are averaged); the hour skipped in spring is missing.
    """
    cells = []
    for ts in range(start_ms - start_ms % MINUTE_MS, end_ms, MINUTE_MS):
        local = ts + clock.utc_offset_ms(ts)
        cells.append((local // DAY_MS, (local % DAY_MS) // MINUTE_MS))
    return cells


def local_day_end_ms(day: int, clock: LocalClock) -> int:
    """UTC epoch milliseconds of the local midnight that ends local day ``day``."""
    midnight = datetime.fromtimestamp((day + 1) * DAY_MS // 1000, tz=timezone.utc).replace(tzinfo=clock.zone)
    return int(midnight.timestamp()) * 1000


def whole_house_w(meters: dict[str, np.ndarray]) -> np.ndarray:
    """Per-minute whole-house power: the sum over the household's meters of each meter's mean, NaN where a
    meter that reported on the day has no value. ``meters`` maps meter id -> ``[sum_w, count]`` (2 x 1440)."""
    total = np.zeros(1440)
    for sums in meters.values():
        total += np.divide(sums[0], sums[1], out=np.full(1440, np.nan), where=sums[1] > 0)
    return total


class LearnAppliances(KeyedProcessFunction):
    """Collects a household's local days of minute means and learns each complete day.

    A day is complete when the watermark passes its local end (an event-time timer; the end of a bounded
    source fires every timer). Then the whole-house power of the day (:func:`whole_house_w`) goes to the
    household's :class:`ApplianceLearner` and every profile it has learned so far is published, one record
    per profile, ``updated_ts_ms`` being the day's end (event time, so a replay gives the same records). A
    feature of a day already learned is late and goes to the dead letters. Local time is ``preprocess.timezone``.

    State: the pickled learner, the last learned day, and one small map entry per meter and local minute
    (``"<day>:<minute>:<meter>"`` -> sum and count of the means that fell on it), all checkpointed. A
    record touches its own minutes only (one small read and write each), not its whole day: the job's cost
    per record does not grow with the day. Metrics (group ``gridflow``): ``feature_windows``,
    ``features_late``, ``appliance_days_learned``, ``appliance_profiles_published``.
    """

    def __init__(self, settings: Settings, source: str):
        self.nilm = settings.nilm
        self.timezone = settings.preprocess.timezone
        self.slot_minutes = settings.scheduler.slot_minutes
        self.source = source

    def open(self, runtime_context: RuntimeContext):
        self.learner = runtime_context.get_state(ValueStateDescriptor("learner", Types.PICKLED_BYTE_ARRAY()))
        self.learned_day = runtime_context.get_state(ValueStateDescriptor("learned_day", Types.LONG()))
        self.minutes = runtime_context.get_map_state(
            MapStateDescriptor("minutes", Types.STRING(), Types.TUPLE([Types.DOUBLE(), Types.LONG()]))
        )
        self.clock = LocalClock(self.timezone)
        group = runtime_context.get_metrics_group().add_group(METRIC_GROUP)
        self.windows = group.counter("feature_windows")
        self.late = group.counter("features_late")
        self.days_learned = group.counter("appliance_days_learned")
        self.published = group.counter("appliance_profiles_published")

    def process_element(self, value, ctx):
        _, meter, start_ms, end_ms, mean_w = value
        cells = minute_cells(start_ms, end_ms, self.clock)
        learned = self.learned_day.value()
        if learned is not None and cells[0][0] <= learned:
            self.late.inc()
            payload = _compact(
                {
                    "household_id": value[0],
                    "meter_id": meter,
                    "window_start_ms": start_ms,
                    "window_end_ms": end_ms,
                    "mean_w": None if math.isnan(mean_w) else mean_w,
                }
            )
            reason = f"late: local day {cells[0][0]} of this window was already learned (through day {learned})"
            yield DEAD_LETTER, dead_letter(payload, ContractError("window_start_ms", reason), self.source)
            return
        self.windows.inc()
        days = set()
        for day, minute in cells:
            if day not in days:
                days.add(day)
                # one timer per day and household: Flink keeps a timer once however often it is registered
                ctx.timer_service().register_event_time_timer(local_day_end_ms(day, self.clock) - 1)
            key = f"{day}:{minute}:{meter}"
            stored = self.minutes.get(key)
            total, count = (0.0, 0) if stored is None else stored
            if not math.isnan(mean_w):  # a minute without a value still says the meter reported that day
                total, count = total + mean_w, count + 1
            self.minutes.put(key, (total, count))

    def on_timer(self, timestamp: int, ctx):
        day = (timestamp + self.clock.utc_offset_ms(timestamp)) // DAY_MS
        prefix = f"{day}:"
        meters: dict[str, np.ndarray] = {}
        done = []
        for key, stored in self.minutes.items():
            if not key.startswith(prefix):
                continue
            _, minute, meter = key.split(":", 2)
            total, count = stored
            sums = meters.setdefault(meter, np.zeros((2, 1440)))
            sums[0, int(minute)] += total
            sums[1, int(minute)] += count
            done.append(key)
        for key in done:
            self.minutes.remove(key)
        if not meters:
            return
        learner = self.learner.value() or ApplianceLearner.from_settings(self.nilm)
        learner.learn_day(day * DAY_MS, whole_house_w(meters))
        self.learner.update(learner)
        self.learned_day.update(day)
        self.days_learned.inc()
        household = ctx.get_current_key()
        for profile in learner.profiles():
            self.published.inc()
            yield _compact(
                profile.to_record(household, self.slot_minutes, self.nilm.horizon_start_minute, timestamp + 1)
            )
