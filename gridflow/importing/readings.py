"""``gridflow import readings FILE...``: CSV and Parquet exports of meter data onto the readings topic.

Each row becomes one reading of the contract (``gridflow.contracts``, schema version 2), keyed by its
household, or, when it breaks a rule, a dead letter naming the file, the line (CSV: the line in the file;
Parquet: the row, counted from 1), the field and the reason; the good rows keep flowing. Every row read is
accounted: ``rows == readings + bad``. Columns and units come from the ``import_readings`` settings
(``--set import_readings.power_unit=kW`` etc.):

* times: ISO 8601 text with an offset (exact), without one (local time in ``timezone``), Parquet timestamps,
  or epoch numbers. Local times are placed across daylight-saving changes: a time the clock skipped (spring)
  is a bad row; a time the clock showed twice (autumn) is, per meter and in file order, first the summer
  and then the winter one, as a meter's export lists them.
* power in W or kW, an energy register in kWh or Wh, or each interval's energy (``energy_kind: interval``,
  turned into the interval's average power); a ``unit_column`` gives each row its own unit;
* interval data: ``interval_s`` (or ``interval_column``): the reading is the average over the interval ending
  at its time (``time_marks: start`` when the export stamps an interval's start).

Re-importing a file is refused: :mod:`gridflow.importing.ledger` keeps one record per imported file (its
SHA-256), so the same export sent twice does not reach the pipeline twice. ``--again`` sends it anyway:
copies that meet their originals in a window the preprocessing job still holds count as duplicates, copies
behind its watermark become late dead letters.

>>> from gridflow.settings import ImportReadingsSettings
>>> from gridflow.readings import ReadingBounds
>>> mapping = ImportReadingsSettings(timezone="Europe/Amsterdam", power_unit="kW")
>>> frame = pd.DataFrame({"household_id": ["h-1", "h-1", "h-1"], "meter_id": ["m-1", "m-1", "m-1"],
...                       "time": ["2025-10-26 02:30", "2025-10-26 02:30", "2025-03-30 02:30"],
...                       "power_w": ["1.5", "0.5", "2"]})
>>> batch = convert(frame, 2, mapping, ReadingBounds(), Ambiguity())
>>> [(r["ts_ms"], r["power_w"]) for r in batch.records]  # 00:30 and 01:30 UTC
[(1761438600000, 1500.0), (1761442200000, 500.0)]
>>> batch.bad[0].line, batch.bad[0].field, batch.bad[0].reason
(4, 'ts_ms', "column 'time': '2025-03-30 02:30' does not exist in Europe/Amsterdam (the clock skipped it)")
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from gridflow.contracts.core import ID_PATTERN, INTERVAL_S_MAX, INTERVAL_S_MIN
from gridflow.importing.files import (
    Ambiguity,
    Batch,
    BadRow,
    FileSummary,
    ImportFileError,
    Importer,
    import_files,
    missing_columns,
    numbers,
    read_batches as _read_batches,
    text,
    times,
)
from gridflow.readings import _MIN_TS_MS, ReadingBounds
from gridflow.settings import ImportReadingsSettings

__all__ = ["Ambiguity", "BadRow", "Batch", "ImportFileError", "convert", "import_readings", "read_batches"]

READING_VERSION = 2
UNITS = {"w": ("power", 1.0), "kw": ("power", 1000.0), "wh": ("energy", 0.001), "kwh": ("energy", 1.0)}


def mapped_columns(mapping: ImportReadingsSettings) -> dict[str, str]:
    """``{setting: column}`` of the columns the mapping reads."""
    names = (
        "household_column",
        "meter_column",
        "time_column",
        "power_column",
        "energy_column",
        "unit_column",
        "interval_column",
        "voltage_column",
        "current_column",
    )
    return {name: getattr(mapping, name) for name in names if getattr(mapping, name)}


def read_batches(path: Path, mapping: ImportReadingsSettings) -> Iterator[tuple[int, pd.DataFrame]]:
    """``(first line, rows)`` batches of a readings file, after checking that every mapped column is there
    (of power and energy, one is enough)."""

    def check(have: list[str]) -> None:
        wanted = mapped_columns(mapping)
        if mapping.power_column and mapping.energy_column:
            if mapping.power_column in have or mapping.energy_column in have:
                wanted.pop("power_column")
                wanted.pop("energy_column")
        missing_columns(path, have, wanted, "import_readings")

    return _read_batches(path, check, mapping.csv_delimiter, mapping.batch_rows)


def convert(
    frame: pd.DataFrame,
    first_line: int,
    mapping: ImportReadingsSettings,
    bounds: ReadingBounds,
    ambiguity: Ambiguity,
    now_ms: int | None = None,
) -> Batch:
    """Readings (JSON-ready dicts, in row order) and bad rows of one batch of a file's rows."""

    n = len(frame)
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    problem: list[tuple[str, str] | None] = [None] * n

    def fail(mask: np.ndarray, field_name: str, reason) -> None:
        for i in np.flatnonzero(mask):
            if problem[i] is None:
                problem[i] = (field_name, reason(int(i)) if callable(reason) else reason)

    def column_of(setting: str) -> str:
        return getattr(mapping, setting)

    # household and meter identifiers
    ids = {}
    for name, setting in (("household_id", "household_column"), ("meter_id", "meter_column")):
        given = text(frame[column_of(setting)])
        ok = given.str.fullmatch(ID_PATTERN.strip("^$")).to_numpy(dtype=bool)
        ids[name] = given.to_numpy(dtype=object)
        fail(
            ~ok,
            name,
            lambda i, t=given, c=column_of(setting): (
                f"column {c!r}: {t.iloc[i]!r} is not an identifier "
                "(1-64 letters, digits and ._:-, starting with a letter or digit)"
            ),
        )
    # time
    time_column = mapping.time_column
    ts, bad_ts, ts_reasons = times(
        frame[time_column], mapping.time_format, mapping.timezone, ids["meter_id"], ambiguity
    )
    fail(bad_ts, "ts_ms", lambda i: f"column {time_column!r}: {ts_reasons[i]}")
    # units
    power_factor = np.full(n, UNITS[mapping.power_unit.lower()][1])
    energy_factor = np.full(n, UNITS[mapping.energy_unit.lower()][1])
    if mapping.unit_column:
        unit_text = text(frame[mapping.unit_column])
        units = unit_text.str.lower()
        known = units.isin(list(UNITS)).to_numpy()
        fail(
            ~known,
            "power_w",
            lambda i: f"column {mapping.unit_column!r}: unit {unit_text.iloc[i]!r} is not one of W, kW, Wh, kWh",
        )
        for unit, (quantity, factor) in UNITS.items():
            rows = (units == unit).to_numpy()
            (power_factor if quantity == "power" else energy_factor)[rows] = factor

    # values
    def values_of(setting: str, field_name: str) -> np.ndarray:
        column = column_of(setting)
        if not column or column not in frame:
            return np.full(n, np.nan)
        values, bad = numbers(frame[column])
        fail(bad, field_name, lambda i: f"column {column!r}: {frame[column].iloc[i]!r} is not a finite number")
        return np.where(bad, np.nan, values)

    power = values_of("power_column", "power_w") * power_factor
    energy = values_of("energy_column", "energy_kwh") * energy_factor
    voltage = values_of("voltage_column", "voltage_v")
    current = values_of("current_column", "current_a")
    interval = values_of("interval_column", "interval_s")
    interval = np.where(np.isnan(interval), float(mapping.interval_s or np.nan), interval)
    with np.errstate(invalid="ignore"):
        whole = (interval >= INTERVAL_S_MIN) & (interval <= INTERVAL_S_MAX) & (interval == np.floor(interval))
        fail(
            ~np.isnan(interval) & ~whole,
            "interval_s",
            lambda i: f"{interval[i]!r} is not a whole number of seconds in [{INTERVAL_S_MIN}, {INTERVAL_S_MAX}]",
        )
        if mapping.energy_kind == "interval":  # each interval's energy -> its average power
            from_energy = np.isnan(power) & ~np.isnan(energy) & whole
            power = np.where(from_energy, energy * 1000.0 * 3600.0 / np.where(whole, interval, 1.0), power)
            energy = np.full(n, np.nan)
        if mapping.time_marks == "start":
            ts = ts + np.where(whole, interval * 1000.0, 0.0)
        fail(np.isnan(power) & np.isnan(energy), "power_w", "no power or energy value (is required)")
        # physical bounds and clocks, as the preprocessing job checks them
        low, high = bounds.power_w_min, bounds.power_w_max
        fail((power < low) | (power > high), "power_w", lambda i: f"{power[i]} W is outside [{low}, {high}] W")
        fail(
            (energy < 0.0) | (energy > bounds.energy_kwh_max),
            "energy_kwh",
            lambda i: f"{energy[i]} kWh is outside [0.0, {bounds.energy_kwh_max}] kWh",
        )
        v_low, v_high = bounds.voltage_v_min, bounds.voltage_v_max
        fail(
            (voltage < v_low) | (voltage > v_high),
            "voltage_v",
            lambda i: f"{voltage[i]} V is outside [{v_low}, {v_high}] V",
        )
        fail(
            (current < 0.0) | (current > bounds.current_a_max),
            "current_a",
            lambda i: f"{current[i]} A is outside [0.0, {bounds.current_a_max}] A",
        )
        fail(ts < _MIN_TS_MS, "ts_ms", lambda i: f"{int(ts[i])} ms is before 2000-01-01")
        fail(
            ts > now_ms + bounds.max_future_ms,
            "ts_ms",
            lambda i: f"{int(ts[i])} ms is more than {bounds.max_future_ms} ms in the future",
        )
    readings = []
    bad_rows = []
    power = np.round(power, 3)
    energy = np.round(energy, 6)
    for i in range(n):
        if problem[i] is not None:
            field_name, reason = problem[i]  # type: ignore[misc]
            raw = {str(k): str(v) for k, v in frame.iloc[i].items()}
            bad_rows.append(BadRow(first_line + i, field_name, reason, raw))
            continue
        reading: dict[str, Any] = {
            "v": READING_VERSION,
            "household_id": ids["household_id"][i],
            "meter_id": ids["meter_id"][i],
            "ts_ms": int(ts[i]),
        }
        if power[i] == power[i]:
            reading["power_w"] = float(power[i])
        if energy[i] == energy[i]:
            reading["energy_kwh"] = float(energy[i])
        if voltage[i] == voltage[i]:
            reading["voltage_v"] = float(voltage[i])
        if current[i] == current[i]:
            reading["current_a"] = float(current[i])
        if interval[i] == interval[i] and "power_w" in reading:
            reading["interval_s"] = int(interval[i])
        readings.append(reading)
    return Batch(readings, bad_rows, n)


def import_readings(
    settings, paths: list[Path], again: bool = False, speed: float = 0.0, progress: bool = True, out=None, err=None
) -> list[FileSummary]:
    """``gridflow import readings``: the files onto ``topics.readings`` (see :func:`gridflow.importing.files.
    import_files`); times in the future are judged against the clock when each batch is converted."""
    mapping = settings.import_readings
    bounds = ReadingBounds.from_settings(settings.readings)
    importer = Importer(
        topic=settings.topics.readings,
        noun="readings",
        batches=lambda path: read_batches(path, mapping),
        convert=lambda frame, line, ambiguity: convert(frame, line, mapping, bounds, ambiguity),
        key_field="household_id",
        series_fields=("household_id", "meter_id"),
    )
    return import_files(settings, importer, paths, again, speed, progress, out, err)
