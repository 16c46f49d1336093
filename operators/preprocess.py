"""Python functions of the preprocessing job: a vectorised one over batches of meter windows, one per
household day, and one per rejected record.

:class:`CleanWindows` is a pandas (vectorised) scalar function: Flink hands it a few hundred to a thousand
meter windows at a time as Arrow columns (``python.fn-execution.arrow.batch.size``), the readings of all of
them go through one Cython pass (``gridflow.preprocess.clean_windows``), and it returns one row per window:
``(kind, payload, mean_w, dead)``. ``kind`` routes the row: ``features`` (``payload`` is the feature record,
``mean_w`` feeds the daily profile) or ``dead_letter`` (a meter missing from the registry: ``dead`` holds one
dead-letter record per reading, unnested on the Java side).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import orjson
from pyflink.table import DataTypes
from pyflink.table.udf import FunctionContext, ScalarFunction, TableFunction, udf, udtf

from gridflow.preprocess import CleaningParams, daily_profile
from gridflow.preprocess.clean import clean_windows
from gridflow.preprocess.decode import decode_batch
from gridflow.preprocess.intervals import IntervalParams, interval_windows
from gridflow.preprocess.localtime import LocalClock
from gridflow.preprocess.validation_sql import SCANNED, split_problem
from gridflow.contracts import SCHEMA_VERSION, ContractError, dead_letter, encode
from gridflow.readings import READING_VERSION, ReadingBounds
from gridflow.registry import load_registry
from gridflow.settings import Settings

FEATURES, PROFILE, DEAD_LETTER, SKIPPED = "features", "profile", "dead_letter", "skipped"
ROW_TYPES = [DataTypes.STRING(), DataTypes.STRING(), DataTypes.STRING(), DataTypes.BIGINT(), DataTypes.DOUBLE()]
_DECODED_TYPES = {
    "code": DataTypes.INT(),
    "household_id": DataTypes.STRING(),
    "meter_id": DataTypes.STRING(),
    "ts_ms": DataTypes.BIGINT(),
    "power_w": DataTypes.DOUBLE(),
    "energy_kwh": DataTypes.DOUBLE(),
    "interval_s": DataTypes.BIGINT(),
}
DECODED_FIELDS = [(name, _DECODED_TYPES[name]) for name in SCANNED]  # in the order the job's SQL reads them
DECODED_TYPE = DataTypes.ROW([DataTypes.FIELD(name, kind) for name, kind in DECODED_FIELDS])
CLEANED_TYPE = DataTypes.ROW(
    [
        DataTypes.FIELD("kind", DataTypes.STRING()),
        DataTypes.FIELD("payload", DataTypes.STRING()),
        DataTypes.FIELD("mean_w", DataTypes.DOUBLE()),
        DataTypes.FIELD("dead", DataTypes.ARRAY(DataTypes.STRING())),
    ]
)
SPANS_TYPE = DataTypes.ROW(
    [
        DataTypes.FIELD("kind", DataTypes.STRING()),
        DataTypes.FIELD("payload", DataTypes.STRING()),
        DataTypes.FIELD("mean_w", DataTypes.DOUBLE()),
        DataTypes.FIELD("dead", DataTypes.ARRAY(DataTypes.STRING())),
        DataTypes.FIELD("start_ms", DataTypes.BIGINT()),
        DataTypes.FIELD("end_ms", DataTypes.BIGINT()),
    ]
)
METRIC_GROUP = "gridflow"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def concatenated(arrays) -> tuple[np.ndarray, np.ndarray]:
    """A column of per-window arrays -> (all values in one array, offsets with one entry more than windows).

    >>> values, offsets = concatenated(np.array([np.array([1, 2]), np.array([3])], dtype=object))
    >>> values.tolist(), offsets.tolist()
    ([1, 2, 3], [0, 2, 3])
    """
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, arrays), dtype=np.int64, count=len(arrays)), out=offsets[1:])
    return (np.concatenate(arrays) if len(arrays) else np.empty(0)), offsets


class _MeterWindows(ScalarFunction):
    """What the two cleaning functions share: the meter registry, the local clock and the accounting metrics
    (group ``gridflow``: ``readings_clean``, ``readings_duplicate``, ``readings_unknown_meter``, ``windows``)."""

    def __init__(self, settings: Settings, source: str):
        self.registry_file = settings.readings.registry_file
        self.timezone = settings.preprocess.timezone
        self.source = source
        self.registry: frozenset[tuple[str, str]] | None = None

    def open(self, function_context: FunctionContext):
        self.registry = load_registry(self.registry_file) if self.registry_file else None
        self.clock = LocalClock(self.timezone)
        self.group = function_context.get_metric_group().add_group(METRIC_GROUP)
        self.clean = self.group.counter("readings_clean")
        self.duplicates = self.group.counter("readings_duplicate")
        self.unknown = self.group.counter("readings_unknown_meter")
        self.windows = self.group.counter("windows")

    def _utc_offsets(self, starts: np.ndarray) -> np.ndarray:
        """The local clock's UTC offset at each window start."""
        if self.timezone == "UTC":
            return np.zeros(starts.size, dtype=np.int64)
        return np.fromiter(map(self.clock.utc_offset_ms, starts.tolist()), dtype=np.int64, count=starts.size)

    def _unregistered(self, household: str, meter: str) -> bool:
        return self.registry is not None and (household, meter) not in self.registry

    def _unknown(self, household: str, meter: str, readings: list[dict]) -> list[str]:
        """The readings of a meter missing from the registry, as dead letters."""
        self.unknown.inc(len(readings))
        reason = f"unknown meter {meter!r} of household {household!r}: not in the meter registry"
        return [dead_letter(encode(r), reason, self.source, r["ts_ms"]) for r in readings]


class CleanWindows(_MeterWindows):
    """Batches of meter windows -> one feature record each; windows of unregistered meters -> their readings
    as dead letters. Vectorised: register with ``func_type="pandas"`` (see :func:`register`).

    Metrics (group ``gridflow``): ``readings_clean``, ``readings_duplicate``, ``readings_unknown_meter``,
    ``outliers_replaced``, ``windows``.
    """

    def __init__(self, settings: Settings, source: str):
        super().__init__(settings, source)
        self.params = CleaningParams.from_settings(settings.preprocess)

    def open(self, function_context: FunctionContext):
        super().open(function_context)
        self.outliers = self.group.counter("outliers_replaced")

    def eval(self, household_id, meter_id, start_ms, ts_list, power_list):
        import pandas as pd

        households, meters, starts = household_id.tolist(), meter_id.tolist(), start_ms.to_numpy(dtype=np.int64)
        ts, offsets = concatenated(ts_list.to_numpy())
        power, _ = concatenated(power_list.to_numpy())
        windows = clean_windows(ts, power, offsets, starts, self.params, self._utc_offsets(starts))
        now = _now_ms()
        kinds, payloads, means, dead = [], [], [], []
        clean = duplicates = outliers = n_windows = 0
        for i, (household, meter, fields) in enumerate(zip(households, meters, windows)):
            if self._unregistered(household, meter):
                kinds.append(DEAD_LETTER)
                payloads.append(None)
                means.append(None)
                window = slice(int(offsets[i]), int(offsets[i + 1]))
                readings = [
                    {"household_id": household, "meter_id": meter, "ts_ms": t, "power_w": p}
                    for t, p in zip(ts[window].tolist(), power[window].tolist())
                ]
                dead.append(self._unknown(household, meter, readings))
                continue
            record = {"v": SCHEMA_VERSION, "household_id": household, "meter_id": meter, **fields, "emitted_ms": now}
            kinds.append(FEATURES)
            payloads.append(orjson.dumps(record).decode())
            means.append(fields["mean_w"])
            dead.append(None)
            n_windows += 1
            clean += fields["n_readings"]
            duplicates += fields["n_duplicates"]
            outliers += fields["n_outliers"]
        self.windows.inc(n_windows)
        self.clean.inc(clean)
        if duplicates:
            self.duplicates.inc(duplicates)
        if outliers:
            self.outliers.inc(outliers)
        return pd.DataFrame(
            {"kind": kinds, "payload": payloads, "mean_w": pd.Series(means, dtype="float64"), "dead": dead}
        )


class CleanSpans(_MeterWindows):
    """Batches of meter windows of interval and register readings (``gridflow.preprocess.intervals``) -> one
    feature record each whose spans end in the window, dead letters for impossible register steps and for
    meters missing from the registry. Vectorised: register with ``func_type="pandas"``.

    Each reading arrives with its meter's previous reading (an ``OVER`` window in the job's SQL). Metrics
    (group ``gridflow``): ``readings_clean``, ``readings_duplicate``, ``readings_unknown_meter``, ``windows``,
    ``readings_span_start`` (a register reading that starts a span and ends none: the meter's first, or the
    first after a silence longer than ``preprocess.max_interval_s``), ``dead_letter_energy_kwh``.
    """

    def __init__(self, settings: Settings, source: str):
        super().__init__(settings, source)
        self.params = IntervalParams.from_settings(settings)

    def open(self, function_context: FunctionContext):
        super().open(function_context)
        self.starts = self.group.counter("readings_span_start")
        self.rejected = self.group.counter("dead_letter_energy_kwh")

    def eval(
        self,
        household_id,
        meter_id,
        start_ms,
        ts_list,
        power_list,
        kwh_list,
        interval_list,
        prev_ts_list,
        prev_kwh_list,
        rows_list,
    ):
        import pandas as pd

        households, meters, starts = household_id.tolist(), meter_id.tolist(), start_ms.to_numpy(dtype=np.int64)
        ts, offsets = concatenated(ts_list.to_numpy())
        power, kwh = concatenated(power_list.to_numpy())[0], concatenated(kwh_list.to_numpy())[0]
        interval, prev_ts = concatenated(interval_list.to_numpy())[0], concatenated(prev_ts_list.to_numpy())[0]
        prev_kwh, rows = concatenated(prev_kwh_list.to_numpy())[0], concatenated(rows_list.to_numpy())[0]
        prev_kwh = np.where(prev_kwh < 0, np.nan, prev_kwh)  # the job's SQL writes -1 for "no register"
        out = interval_windows(
            ts_ms=ts,
            power_w=power,
            energy_kwh=kwh,
            interval_s=interval,
            prev_ts_ms=prev_ts,
            prev_kwh=prev_kwh,
            has_prev=rows > 1,
            offsets=offsets,
            params=self.params,
            utc_offsets_ms=self._utc_offsets(starts),
        )
        now = _now_ms()
        kinds, payloads, means, dead, begins, ends = [], [], [], [], [], []
        clean = duplicates = n_windows = 0
        for i, (household, meter, fields) in enumerate(zip(households, meters, out.features)):

            def reading(j: int) -> dict:  # as it was read, for its dead letter
                return _span_reading(household, meter, int(ts[j]), float(power[j]), float(kwh[j]), int(interval[j]))

            if self._unregistered(household, meter):
                kinds.append(DEAD_LETTER)
                dead.append(self._unknown(household, meter, [reading(j) for j in range(offsets[i], offsets[i + 1])]))
                payloads.append(None), means.append(None), begins.append(0), ends.append(0)
                continue
            rejected = [
                dead_letter(encode(reading(j)), ContractError(name, reason), self.source, int(ts[j]))
                for j, name, reason in out.dead[i]
            ]
            self.rejected.inc(len(rejected))
            if fields is None:
                kinds.append(DEAD_LETTER if rejected else SKIPPED)
                payloads.append(None), means.append(None), begins.append(0), ends.append(0)
                dead.append(rejected or None)
                continue
            record = {"v": SCHEMA_VERSION, "household_id": household, "meter_id": meter, **fields, "emitted_ms": now}
            kinds.append(FEATURES)
            payloads.append(encode(record))
            means.append(fields["mean_w"])
            begins.append(fields["window_start_ms"])
            ends.append(fields["window_end_ms"])
            dead.append(rejected or None)
            n_windows += 1
            clean += fields["n_readings"]
            duplicates += fields["n_duplicates"]
        self.windows.inc(n_windows)
        self.clean.inc(clean)
        duplicates += out.n_duplicates_unreported
        if duplicates:
            self.duplicates.inc(duplicates)
        if out.n_starts:
            self.starts.inc(out.n_starts)
        return pd.DataFrame(
            {
                "kind": kinds,
                "payload": payloads,
                "mean_w": pd.Series(means, dtype="float64"),
                "dead": dead,
                "start_ms": np.array(begins, dtype=np.int64),  # 0 unless kind is features
                "end_ms": np.array(ends, dtype=np.int64),
            }
        )


def _span_reading(household: str, meter: str, ts_ms: int, power_w: float, kwh: float, interval_s: int) -> dict:
    """A reading of a span window as it was read (for its dead letter)."""
    reading: dict[str, Any] = {"v": READING_VERSION, "household_id": household, "meter_id": meter, "ts_ms": ts_ms}
    if power_w == power_w:
        reading["power_w"] = power_w
    if kwh == kwh:
        reading["energy_kwh"] = kwh
    if interval_s:
        reading["interval_s"] = interval_s
    return reading


class DecodeReadings(ScalarFunction):
    """Batches of raw payloads -> a rule code and the typed fields per payload (``gridflow.preprocess.decode``):
    one strict JSON scan each, and the clock-independent checks. Vectorised: register with
    ``func_type="pandas"``. Payloads the scanner cannot read exactly as Flink's ``JSON_VALUE`` would get a
    negative code and the job's SQL reads them with ``JSON_VALUE``. ``late`` (decided in SQL before this
    call, see ``validation_sql.decoded_view_sql``) is folded into the code.
    """

    def __init__(self, settings: Settings):
        self.bounds = ReadingBounds.from_settings(settings.readings)

    def eval(self, payload, late):
        import pandas as pd

        late = late.to_numpy(dtype=bool) if hasattr(late, "to_numpy") else np.full(len(payload), bool(late))
        columns = decode_batch(payload.tolist(), late, self.bounds)
        return pd.DataFrame({name: columns[name] for name, _ in DECODED_FIELDS})


class DailyProfiles(TableFunction):
    """A household meter's window means over one local day -> its normalised daily load profile. Windows are
    the job's fixed windows or an interval meter's spans, each weighted by its duration."""

    def __init__(self, settings: Settings):
        self.slots = settings.preprocess.profile_slots
        self.min_coverage = settings.preprocess.min_slot_coverage
        self.peak_hours = frozenset(settings.preprocess.peak_hours)
        self.timezone = settings.preprocess.timezone

    def open(self, function_context: FunctionContext):
        self.clock = LocalClock(self.timezone)
        self.profiles = function_context.get_metric_group().add_group(METRIC_GROUP).counter("profiles")

    def eval(
        self, household_id: str, meter_id: str, day_start_ms: int, day: str, start_ms: list, end_ms: list, mean_w: list
    ):
        # a span that began the day before (an interval meter's first interval) counts from midnight; one that
        # ended at midnight (a reading whose payload hid that it is a span from the event-time shift, e.g.
        # "power_w": null) belongs wholly to the day before, whose profile is out: it counts in neither
        starts = np.maximum(np.asarray(start_ms, dtype=np.int64), day_start_ms)
        durations = np.asarray(end_ms, dtype=np.int64) - starts
        inside = durations > 0
        if not inside.any():
            return
        profile = daily_profile(
            self.clock.time_of_day_ms(starts[inside], day_start_ms),
            np.asarray(mean_w, dtype=np.float64)[inside],
            slots=self.slots,
            duration_ms=durations[inside],
            min_coverage=self.min_coverage,
            peak_hours=self.peak_hours,
        )
        record = {
            "v": SCHEMA_VERSION,
            "household_id": household_id,
            "meter_id": meter_id,
            "day": day,
            "day_start_ms": day_start_ms,
            **profile,
            "emitted_ms": _now_ms(),
        }
        self.profiles.inc()
        yield PROFILE, household_id, orjson.dumps(record).decode(), day_start_ms, None


class DeadLetter(ScalarFunction):
    """A rejected payload -> the dead-letter JSON of ``gridflow.readings.dead_letter``, counted by field."""

    def __init__(self, source: str):
        self.source = source

    def open(self, function_context: FunctionContext):
        self.group = function_context.get_metric_group().add_group(METRIC_GROUP)
        self.counters: dict[str, Any] = {}

    def eval(self, payload: str, problem: str, ts_ms):
        field, reason = split_problem(problem)
        name = "dead_letter_" + ("late" if reason.startswith("late") else (field or "payload"))
        counter = self.counters.get(name)
        if counter is None:
            counter = self.counters[name] = self.group.counter(name)
        counter.inc()
        return dead_letter(payload, ContractError(field, reason), self.source, ts_ms)


def register(tenv, settings: Settings, source: str) -> None:
    """Register the functions under the names the job's SQL uses."""
    tenv.create_temporary_function(
        "clean_windows", udf(CleanWindows(settings, source), result_type=CLEANED_TYPE, func_type="pandas")
    )
    tenv.create_temporary_function(
        "clean_spans", udf(CleanSpans(settings, source), result_type=SPANS_TYPE, func_type="pandas")
    )
    tenv.create_temporary_function(
        "decode_readings", udf(DecodeReadings(settings), result_type=DECODED_TYPE, func_type="pandas")
    )
    tenv.create_temporary_function("daily_profiles", udtf(DailyProfiles(settings), result_types=ROW_TYPES))
    tenv.create_temporary_function("dead_letter", udf(DeadLetter(source), result_type=DataTypes.STRING()))
