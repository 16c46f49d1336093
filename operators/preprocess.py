"""Python table functions of the preprocessing job: one call per meter window or household day.

Thin: unpack the window's arrays, call ``gridflow.preprocess`` (the Cython cleaning kernel), count, and
emit JSON. Each function yields ``(kind, record_key, payload, start_ms, mean_w)`` rows; ``kind`` routes
a row to the features, profiles or dead-letter topic, ``start_ms``/``mean_w`` feed the daily profile.
"""
from __future__ import annotations

import time

import orjson
from pyflink.table import DataTypes
from pyflink.table.udf import FunctionContext, ScalarFunction, TableFunction, udf, udtf

from gridflow.preprocess import CleaningParams, clean_window, daily_profile
from gridflow.preprocess.localtime import LocalClock
from gridflow.preprocess.validation_sql import split_problem
from gridflow.readings import InvalidReading, dead_letter
from gridflow.registry import load_registry
from gridflow.settings import Settings

FEATURES, PROFILE, DEAD_LETTER = "features", "profile", "dead_letter"
ROW_TYPES = [DataTypes.STRING(), DataTypes.STRING(), DataTypes.STRING(), DataTypes.BIGINT(), DataTypes.DOUBLE()]
METRIC_GROUP = "gridflow"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class CleanWindows(TableFunction):
    """A meter's window of readings -> one feature record; readings of unregistered meters -> dead letters.

    Metrics (group ``gridflow``): ``readings_clean``, ``readings_duplicate``, ``readings_unknown_meter``,
    ``outliers_replaced``, ``windows``.
    """

    def __init__(self, settings: Settings, source: str):
        self.params = CleaningParams.from_settings(settings.preprocess)
        self.registry_file = settings.readings.registry_file
        self.timezone = settings.preprocess.timezone
        self.source = source
        self.registry = None

    def open(self, function_context: FunctionContext):
        self.registry = load_registry(self.registry_file) if self.registry_file else None
        self.clock = LocalClock(self.timezone)
        group = function_context.get_metric_group().add_group(METRIC_GROUP)
        self.clean = group.counter("readings_clean")
        self.duplicates = group.counter("readings_duplicate")
        self.unknown = group.counter("readings_unknown_meter")
        self.outliers = group.counter("outliers_replaced")
        self.windows = group.counter("windows")

    def eval(self, household_id: str, meter_id: str, start_ms: int, ts_ms: list, power_w: list):
        if self.registry is not None and (household_id, meter_id) not in self.registry:
            self.unknown.inc(len(ts_ms))
            reason = f"unknown meter {meter_id!r} of household {household_id!r}: not in the meter registry"
            for ts, power in zip(ts_ms, power_w):
                payload = orjson.dumps({"household_id": household_id, "meter_id": meter_id, "ts_ms": ts,
                                        "power_w": power}).decode()
                yield DEAD_LETTER, household_id, dead_letter(payload, reason, self.source, ts), None, None
            return
        features = clean_window(ts_ms, power_w, start_ms, self.params, self.clock.utc_offset_ms(start_ms))
        record = features.to_record(household_id, meter_id)
        record["emitted_ms"] = _now_ms()
        self.windows.inc()
        self.clean.inc(features.n_readings)
        if features.n_duplicates:
            self.duplicates.inc(features.n_duplicates)
        if features.n_outliers:
            self.outliers.inc(features.n_outliers)
        yield FEATURES, household_id, orjson.dumps(record).decode(), start_ms, features.mean_w


class DailyProfiles(TableFunction):
    """A household meter's window means over one local day -> its normalised daily load profile."""

    def __init__(self, settings: Settings):
        self.slots = settings.preprocess.profile_slots
        self.window_ms = settings.preprocess.window_s * 1000
        self.min_coverage = settings.preprocess.min_slot_coverage
        self.peak_hours = frozenset(settings.preprocess.peak_hours)
        self.timezone = settings.preprocess.timezone

    def open(self, function_context: FunctionContext):
        self.clock = LocalClock(self.timezone)
        self.profiles = function_context.get_metric_group().add_group(METRIC_GROUP).counter("profiles")

    def eval(self, household_id: str, meter_id: str, day_start_ms: int, day: str, start_ms: list, mean_w: list):
        profile = daily_profile(self.clock.time_of_day_ms(start_ms, day_start_ms), mean_w, slots=self.slots, window_ms=self.window_ms,
                                min_coverage=self.min_coverage, peak_hours=self.peak_hours)
        record = {"household_id": household_id, "meter_id": meter_id, "day": day, "day_start_ms": day_start_ms,
                  **profile, "emitted_ms": _now_ms()}
        self.profiles.inc()
        yield PROFILE, household_id, orjson.dumps(record).decode(), day_start_ms, None


class DeadLetter(ScalarFunction):
    """A rejected payload -> the dead-letter JSON of ``gridflow.readings.dead_letter``, counted by field."""

    def __init__(self, source: str):
        self.source = source

    def open(self, function_context: FunctionContext):
        self.group = function_context.get_metric_group().add_group(METRIC_GROUP)
        self.counters = {}

    def eval(self, payload: str, problem: str, ts_ms):
        field, reason = split_problem(problem)
        name = "dead_letter_" + ("late" if reason.startswith("late") else (field or "payload"))
        counter = self.counters.get(name)
        if counter is None:
            counter = self.counters[name] = self.group.counter(name)
        counter.inc()
        return dead_letter(payload, InvalidReading(field, reason), self.source, ts_ms)


def register(tenv, settings: Settings, source: str) -> None:
    """Register the functions under the names the job's SQL uses."""
    tenv.create_temporary_function("clean_windows", udtf(CleanWindows(settings, source), result_types=ROW_TYPES))
    tenv.create_temporary_function("daily_profiles", udtf(DailyProfiles(settings), result_types=ROW_TYPES))
    tenv.create_temporary_function("dead_letter", udf(DeadLetter(source), result_type=DataTypes.STRING()))
