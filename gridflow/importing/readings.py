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
>>> [(r["ts_ms"], r["power_w"]) for r in batch.readings]  # 00:30 and 01:30 UTC
[(1761438600000, 1500.0), (1761442200000, 500.0)]
>>> batch.bad[0].line, batch.bad[0].field, batch.bad[0].reason
(4, 'ts_ms', "column 'time': '2025-03-30 02:30' does not exist in Europe/Amsterdam (the clock skipped it)")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from gridflow.contracts.core import ID_PATTERN, INTERVAL_S_MAX, INTERVAL_S_MIN
from gridflow.readings import _MIN_TS_MS, ReadingBounds
from gridflow.settings import ImportReadingsSettings

READING_VERSION = 2
UNITS = {"w": ("power", 1.0), "kw": ("power", 1000.0), "wh": ("energy", 0.001), "kwh": ("energy", 1.0)}
_OFFSET = r"[T ]\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?)$"


class ImportFileError(Exception):
    """The whole file cannot be imported (unreadable, not CSV/Parquet, a mapped column missing)."""


@dataclass(frozen=True)
class BadRow:
    line: int  # CSV: the line of the file; Parquet: the row, from 1
    field: str  # the reading contract's field
    reason: str  # names the file's column and its value
    raw: dict[str, str]  # the row as read


@dataclass
class Batch:
    readings: list[dict[str, Any]]
    bad: list[BadRow]
    rows: int


@dataclass
class Ambiguity:
    """Per meter, the autumn local times seen so far in a file (the second one of a time is the winter one)."""

    seen: dict[tuple[str, int], int] = field(default_factory=dict)


# -- reading files -----------------------------------------------------------------------------------------


def file_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".csv", ".txt", ".tsv"):
        return "csv"
    raise ImportFileError(f"{path}: unknown file kind {suffix!r}; expected .csv or .parquet")


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


def _check_columns(path: Path, columns, mapping: ImportReadingsSettings) -> None:
    have = [str(c) for c in columns]
    missing = {k: v for k, v in mapped_columns(mapping).items() if v not in have}
    if (
        mapping.power_column
        and mapping.energy_column
        and (mapping.power_column in missing) != (mapping.energy_column in missing)
    ):
        # power or energy: a file with either of the two is fine
        missing.pop("power_column", None)
        missing.pop("energy_column", None)
    if missing:
        wanted = ", ".join(f"{column!r} (import_readings.{name})" for name, column in missing.items())
        raise ImportFileError(f"{path}: no column {wanted}; the file has {', '.join(map(repr, have)) or 'none'}")


def read_batches(path: Path, mapping: ImportReadingsSettings) -> Iterator[tuple[int, pd.DataFrame]]:
    """``(first line, rows)`` batches of ``path`` (CSV rows as text, Parquet rows typed), after checking that
    every mapped column is there."""
    kind = file_kind(path)
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            parquet = pq.ParquetFile(path)
            _check_columns(path, parquet.schema_arrow.names, mapping)
            row = 1
            for record_batch in parquet.iter_batches(batch_size=mapping.batch_rows):
                frame = record_batch.to_pandas()
                yield row, frame
                row += len(frame)
            return
        delimiter = "\t" if path.suffix.lower() == ".tsv" else mapping.csv_delimiter
        reader = pd.read_csv(
            path,
            sep=delimiter,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=False,
            chunksize=mapping.batch_rows,
            encoding="utf-8-sig",
        )
        line = 2  # the header is line 1
        with reader:
            for frame in reader:
                if line == 2:
                    _check_columns(path, frame.columns, mapping)
                yield line, frame
                line += len(frame)
    except ImportFileError:
        raise
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise ImportFileError(f"{path}: cannot read it as {kind}: {error}") from None
    except Exception as error:  # pyarrow's and pandas' parser errors have no common base class
        if type(error).__module__.split(".")[0] in ("pyarrow", "pandas"):
            raise ImportFileError(f"{path}: cannot read it as {kind}: {error}") from None
        raise


def count_rows(path: Path) -> int | None:
    """Rows of a Parquet file from its footer (for the progress bar); None for CSV (not known before reading)."""
    if file_kind(path) != "parquet":
        return None
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


# -- converting rows ---------------------------------------------------------------------------------------


def _text(column: pd.Series) -> pd.Series:
    return column.astype(str).str.strip() if column.dtype == object else column.astype(str)


def _numbers(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``(values, bad)``: float64 (NaN where empty) and where a value is given but is no finite number."""
    if column.dtype == object:
        text = column.astype(str).str.strip()
        empty = (text == "").to_numpy()
        values = pd.to_numeric(text.where(~empty, None), errors="coerce").to_numpy(dtype=np.float64)
        return values, ~empty & ~np.isfinite(values)
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
    return values, np.isinf(values)


def _localize(naive: pd.Series, zone: str, meters: np.ndarray, ambiguity: Ambiguity):
    """UTC epoch ms of local times (NaT where the clock skipped them) and where they do not exist."""
    n = len(naive)
    summer = naive.dt.tz_localize(zone, ambiguous=np.ones(n, dtype=bool), nonexistent="NaT")
    winter = naive.dt.tz_localize(zone, ambiguous=np.zeros(n, dtype=bool), nonexistent="NaT")
    skipped = (naive.notna() & summer.isna()).to_numpy()
    utc = summer.copy()
    twice = np.flatnonzero((summer != winter).to_numpy() & ~skipped & naive.notna().to_numpy())
    local = naive.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    for i in twice:  # rare: the hour repeated once a year
        key = (str(meters[i]), int(local[i]))
        seen = ambiguity.seen.get(key, 0)
        ambiguity.seen[key] = seen + 1
        if seen:
            utc.iloc[i] = winter.iloc[i]
    return _epoch_ms(utc), skipped


def _epoch_ms(times: pd.Series) -> np.ndarray:
    """Epoch ms of tz-aware times, NaN for NaT."""
    utc = times.dt.tz_convert("UTC").dt.tz_localize(None)
    ns = utc.to_numpy(dtype="datetime64[ns]")
    out = (ns.astype(np.int64) // 1_000_000).astype(np.float64)
    out[np.isnat(ns)] = np.nan
    return out


def _times(column: pd.Series, mapping: ImportReadingsSettings, meters: np.ndarray, ambiguity: Ambiguity):
    """``(ts_ms as float64 with NaN, bad, reasons)``: reasons for the bad rows, by index."""
    n = len(column)
    reasons: dict[int, str] = {}
    if mapping.time_format in ("epoch_ms", "epoch_s"):
        values, bad = _numbers(column)
        ts = np.round(values * (1000.0 if mapping.time_format == "epoch_s" else 1.0))
        for i in np.flatnonzero(bad | np.isnan(values)):
            reasons[int(i)] = "is not a number" if bad[i] else "is empty"
        return ts, bad | np.isnan(values), reasons
    if pd.api.types.is_datetime64_any_dtype(column):  # a Parquet timestamp column
        if getattr(column.dt, "tz", None) is not None:
            ts = _epoch_ms(column)
            skipped = np.zeros(n, dtype=bool)
        else:
            ts, skipped = _localize(column, mapping.timezone, meters, ambiguity)
        empty = column.isna().to_numpy()
    else:
        text = _text(column)
        empty = (text == "").to_numpy() | column.isna().to_numpy()
        aware = text.str.contains(_OFFSET, regex=True).to_numpy()
        ts = np.full(n, np.nan)
        skipped = np.zeros(n, dtype=bool)
        if aware.any():
            parsed = pd.to_datetime(text[aware], utc=True, format="ISO8601", errors="coerce")
            ts[aware] = _epoch_ms(parsed)
        naive = ~aware & ~empty
        if naive.any():
            parsed = pd.to_datetime(text[naive], format="ISO8601", errors="coerce")
            local_ts, local_skipped = _localize(parsed, mapping.timezone, meters[naive], ambiguity)
            ts[naive] = local_ts
            skipped[naive] = local_skipped
    bad = np.isnan(ts)
    for i in np.flatnonzero(bad):
        if empty[i]:
            reasons[int(i)] = "is empty"
        elif skipped[i]:
            reasons[int(i)] = f"{column.iloc[i]!r} does not exist in {mapping.timezone} (the clock skipped it)"
        else:
            reasons[int(i)] = f"{column.iloc[i]!r} is not an ISO 8601 time (e.g. 2025-10-26T02:30:00+02:00)"
    return ts, bad, reasons


def convert(
    frame: pd.DataFrame,
    first_line: int,
    mapping: ImportReadingsSettings,
    bounds: ReadingBounds,
    ambiguity: Ambiguity,
    now_ms: int | None = None,
) -> Batch:
    """Readings (JSON-ready dicts, in row order) and bad rows of one batch of a file's rows."""
    import time

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
        text = _text(frame[column_of(setting)])
        ok = text.str.fullmatch(ID_PATTERN.strip("^$")).to_numpy(dtype=bool)
        ids[name] = text.to_numpy(dtype=object)
        fail(
            ~ok,
            name,
            lambda i, t=text, c=column_of(setting): (
                f"column {c!r}: {t.iloc[i]!r} is not an identifier "
                "(1-64 letters, digits and ._:-, starting with a letter or digit)"
            ),
        )
    # time
    time_column = mapping.time_column
    ts, bad_ts, ts_reasons = _times(frame[time_column], mapping, ids["meter_id"], ambiguity)
    fail(bad_ts, "ts_ms", lambda i: f"column {time_column!r}: {ts_reasons[i]}")
    # units
    power_factor = np.full(n, UNITS[mapping.power_unit.lower()][1])
    energy_factor = np.full(n, UNITS[mapping.energy_unit.lower()][1])
    if mapping.unit_column:
        given = _text(frame[mapping.unit_column])
        units = given.str.lower()
        known = units.isin(list(UNITS)).to_numpy()
        fail(
            ~known,
            "power_w",
            lambda i: f"column {mapping.unit_column!r}: unit {given.iloc[i]!r} is not one of W, kW, Wh, kWh",
        )
        for unit, (quantity, factor) in UNITS.items():
            rows = (units == unit).to_numpy()
            (power_factor if quantity == "power" else energy_factor)[rows] = factor

    # values
    def numbers(setting: str, field_name: str) -> np.ndarray:
        column = column_of(setting)
        if not column or column not in frame:
            return np.full(n, np.nan)
        values, bad = _numbers(frame[column])
        fail(bad, field_name, lambda i: f"column {column!r}: {frame[column].iloc[i]!r} is not a finite number")
        return np.where(bad, np.nan, values)

    power = numbers("power_column", "power_w") * power_factor
    energy = numbers("energy_column", "energy_kwh") * energy_factor
    voltage = numbers("voltage_column", "voltage_v")
    current = numbers("current_column", "current_a")
    interval = numbers("interval_column", "interval_s")
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


# -- sending -----------------------------------------------------------------------------------------------


@dataclass
class FileSummary:
    file: str
    sha256: str
    rows: int = 0
    readings: int = 0
    bad_rows: int = 0
    bad_by_field: dict[str, int] = field(default_factory=dict)
    meters: int = 0
    first_ts_ms: int | None = None
    last_ts_ms: int | None = None
    seconds: float = 0.0
    skipped: str = ""  # why the file was not sent ('' = it was)

    def line(self) -> str:
        if self.skipped:
            return f"{self.file}: not sent: {self.skipped}"
        rate = self.readings / self.seconds if self.seconds else 0.0
        span = ""
        if self.first_ts_ms is not None and self.last_ts_ms is not None:
            first = pd.Timestamp(self.first_ts_ms, unit="ms", tz="UTC").isoformat()
            last = pd.Timestamp(self.last_ts_ms, unit="ms", tz="UTC").isoformat()
            span = f", {first} .. {last}"
        bad = ", ".join(f"{name} {count}" for name, count in sorted(self.bad_by_field.items()))
        return (
            f"{self.file}: {self.rows} rows -> {self.readings} readings of {self.meters} meters{span}; "
            f"{self.bad_rows} bad rows{f' ({bad})' if bad else ''} to the dead-letter topic; "
            f"{self.seconds:.1f} s, {rate:,.0f} readings/s"
        )


def _producer(settings):
    from confluent_kafka import Producer

    errors: list[str] = []

    def delivered(error, message) -> None:  # called for failures only
        if error is not None:
            errors.append(str(error))

    producer = Producer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 20,
            "compression.type": settings.bridge.kafka_compression,
            "queue.buffering.max.messages": 1_000_000,
            "delivery.report.only.error": True,
            "on_delivery": delivered,
            **settings.kafka.client,
        }
    )
    return producer, errors


def _send(producer, topic: str, value: bytes, key: bytes | None) -> None:
    while True:
        try:
            producer.produce(topic, value, key)
            return
        except BufferError:  # the client's queue is full: let it send
            producer.poll(0.05)


def import_files(
    settings,
    paths: list[Path],
    again: bool = False,
    speed: float = 0.0,
    progress: bool = True,
    out=None,
    err=None,
    max_printed: int = 20,
) -> list[FileSummary]:
    """Send each file's rows onto the readings topic (bad rows to the dead-letter topic) and record it in the
    ledger; files already in the ledger are skipped unless ``again``. ``speed`` > 0 paces the readings at
    that multiple of real time by their times (in file order); 0 sends as fast as the broker takes them.
    Raises :class:`ImportFileError` for a file that cannot be read (the files before it are sent)."""
    import sys
    import time

    import orjson
    from tqdm import tqdm

    from gridflow.contracts import ContractError, dead_letter, encode
    from gridflow.importing import ledger

    out, err = (sys.stdout if out is None else out), (sys.stderr if err is None else err)
    mapping = settings.import_readings
    bounds = ReadingBounds.from_settings(settings.readings)
    topics = settings.topics
    from gridflow import kafka_io

    kafka_io.create_topics(settings, [topics.readings, topics.dead_letter, topics.imports])
    known: dict[str, Any] = dict(ledger.imported(settings))
    producer, errors = _producer(settings)
    summaries = []
    printed = 0
    for path in paths:
        path = Path(path)
        file_kind(path)
        if not path.is_file():
            raise ImportFileError(f"{path}: no such file")
        summary = FileSummary(str(path), ledger.sha256_of(path))
        summaries.append(summary)
        if summary.sha256 in known and not again:
            earlier = known[summary.sha256]
            when = pd.Timestamp(earlier["imported_ms"], unit="ms", tz="UTC").isoformat(timespec="seconds")
            summary.skipped = (
                f"already imported at {when} as {earlier['file']!r} ({earlier['readings']} readings); "
                "--again sends it anyway"
            )
            print(summary.line(), file=out)
            continue
        started = time.monotonic()
        meters: set[tuple[str, str]] = set()
        ambiguity = Ambiguity()
        first_data_ms: int | None = None
        bar = tqdm(total=count_rows(path), unit=" rows", desc=path.name, disable=not progress, file=err)
        with bar:
            for first_line, frame in read_batches(path, mapping):
                batch = convert(frame, first_line, mapping, bounds, ambiguity)
                summary.rows += batch.rows
                for reading in batch.readings:
                    ts = reading["ts_ms"]
                    if speed > 0:
                        if first_data_ms is None:
                            first_data_ms = ts
                        wait = started + (ts - first_data_ms) / 1000.0 / speed - time.monotonic()
                        if wait > 0.002:
                            producer.poll(0)
                            time.sleep(wait)
                    _send(producer, topics.readings, orjson.dumps(reading), reading["household_id"].encode())
                    meters.add((reading["household_id"], reading["meter_id"]))
                    if summary.first_ts_ms is None or ts < summary.first_ts_ms:
                        summary.first_ts_ms = ts
                    if summary.last_ts_ms is None or ts > summary.last_ts_ms:
                        summary.last_ts_ms = ts
                summary.readings += len(batch.readings)
                for bad in batch.bad:
                    letter = dead_letter(
                        encode(bad.raw), ContractError(bad.field, bad.reason), f"import:{path.name}:{bad.line}"
                    )
                    _send(producer, topics.dead_letter, letter.encode(), None)
                    summary.bad_by_field[bad.field] = summary.bad_by_field.get(bad.field, 0) + 1
                    if printed < max_printed:
                        print(f"{path}:{bad.line}: {bad.field}: {bad.reason}", file=err)
                        printed += 1
                summary.bad_rows += len(batch.bad)
                producer.poll(0)
                bar.update(batch.rows)
        if producer.flush(60.0) or errors:
            raise ImportFileError(
                f"{path}: {len(errors) or 'some'} records were not acknowledged by Kafka "
                f"({errors[0] if errors else 'timed out'}); the file is not in the ledger, so importing it again "
                "resends it"
            )
        summary.meters = len(meters)
        summary.seconds = time.monotonic() - started
        entry: dict[str, Any] = {
            "v": 1,
            "file_sha256": summary.sha256,
            "file": path.name,
            "topic": topics.readings,
            "rows": summary.rows,
            "readings": summary.readings,
            "bad_rows": summary.bad_rows,
            "imported_ms": int(time.time() * 1000),
        }
        if summary.first_ts_ms is not None:
            entry.update(first_ts_ms=summary.first_ts_ms, last_ts_ms=summary.last_ts_ms)
        ledger.record(settings, entry)
        known[summary.sha256] = entry
        if printed >= max_printed and summary.bad_rows:
            print(f"{path}: (the first {max_printed} bad rows shown; all are in the dead-letter topic)", file=err)
        print(summary.line(), file=out)
    return summaries
