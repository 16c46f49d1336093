"""What every import shares: reading CSV and Parquet in batches, numbers and times (local times across
daylight-saving changes), and sending records with the ledger of imported files.

:func:`import_files` runs an import: for each file, skip it if the ledger holds it (unless ``again``),
convert its batches with the import's own function, send the records keyed as the converter says and the
bad rows as dead letters (source ``import:<file>:<line>``), wait for every acknowledgement, then record the
file in the ledger (:mod:`gridflow.importing.ledger`).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd

_OFFSET = r"[T ]\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?)$"


class ImportFileError(Exception):
    """The whole file cannot be imported (unreadable, not CSV/Parquet, a mapped column missing)."""


@dataclass(frozen=True)
class BadRow:
    line: int  # CSV: the line of the file; Parquet: the row, from 1
    field: str  # the contract's field
    reason: str  # names the file's column and its value
    raw: dict[str, str]  # the row as read


@dataclass
class Batch:
    records: list[dict[str, Any]]  # JSON-ready, in row order
    bad: list[BadRow]
    rows: int  # rows read: records + bad + rows that hold nothing (e.g. a price file's empty cells)


@dataclass
class Ambiguity:
    """Per series (a meter, a market), the autumn local times seen so far in a file: the second one of a
    time is the winter one."""

    seen: dict[tuple[str, int], int] = field(default_factory=dict)


# -- reading files -----------------------------------------------------------------------------------------


def file_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".csv", ".txt", ".tsv"):
        return "csv"
    raise ImportFileError(f"{path}: unknown file kind {suffix!r}; expected .csv or .parquet")


def read_batches(
    path: Path, check_columns: Callable[[list[str]], None], delimiter: str, batch_rows: int
) -> Iterator[tuple[int, pd.DataFrame]]:
    """``(first line, rows)`` batches of ``path`` (CSV rows as text, Parquet rows typed), after
    ``check_columns`` (raising :class:`ImportFileError`) accepted the file's column names."""
    kind = file_kind(path)
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            parquet = pq.ParquetFile(path)
            check_columns(list(parquet.schema_arrow.names))
            row = 1
            for record_batch in parquet.iter_batches(batch_size=batch_rows):
                frame = record_batch.to_pandas()
                yield row, frame
                row += len(frame)
            return
        reader = pd.read_csv(
            path,
            sep="\t" if path.suffix.lower() == ".tsv" else delimiter,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=False,
            chunksize=batch_rows,
            encoding="utf-8-sig",
        )
        line = 2  # the header is line 1
        with reader:
            for frame in reader:
                if line == 2:
                    check_columns([str(c) for c in frame.columns])
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


def missing_columns(path: Path, have: list[str], wanted: dict[str, str], section: str) -> None:
    """Raise naming each ``{setting: column}`` of ``wanted`` the file lacks."""
    missing = {name: column for name, column in wanted.items() if column not in have}
    if missing:
        names = ", ".join(f"{column!r} ({section}.{name})" for name, column in missing.items())
        raise ImportFileError(f"{path}: no column {names}; the file has {', '.join(map(repr, have)) or 'none'}")


def count_rows(path: Path) -> int | None:
    """Rows of a Parquet file from its footer (for the progress bar); None for CSV (not known before reading)."""
    if file_kind(path) != "parquet":
        return None
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


# -- values ------------------------------------------------------------------------------------------------


def text(column: pd.Series) -> pd.Series:
    return column.astype(str).str.strip() if column.dtype == object else column.astype(str)


def numbers(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``(values, bad)``: float64 (NaN where empty) and where a value is given but is no finite number."""
    if column.dtype == object:
        stripped = column.astype(str).str.strip()
        empty = (stripped == "").to_numpy()
        values = pd.to_numeric(stripped.where(~empty, None), errors="coerce").to_numpy(dtype=np.float64)
        return values, ~empty & ~np.isfinite(values)
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
    return values, np.isinf(values)


def _epoch_ms(times: pd.Series) -> np.ndarray:
    """Epoch ms of tz-aware times, NaN for NaT."""
    utc = times.dt.tz_convert("UTC").dt.tz_localize(None)
    ns = utc.to_numpy(dtype="datetime64[ns]")
    out = (ns.astype(np.int64) // 1_000_000).astype(np.float64)
    out[np.isnat(ns)] = np.nan
    return out


def _localize(naive: pd.Series, zone: str, keys: np.ndarray, ambiguity: Ambiguity):
    """UTC epoch ms of local times (NaN where the clock skipped them) and where they do not exist."""
    n = len(naive)
    summer = naive.dt.tz_localize(zone, ambiguous=np.ones(n, dtype=bool), nonexistent="NaT")
    winter = naive.dt.tz_localize(zone, ambiguous=np.zeros(n, dtype=bool), nonexistent="NaT")
    skipped = (naive.notna() & summer.isna()).to_numpy()
    utc = summer.copy()
    twice = np.flatnonzero((summer != winter).to_numpy() & ~skipped & naive.notna().to_numpy())
    local = naive.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    for i in twice:  # rare: the hour repeated once a year
        key = (str(keys[i]), int(local[i]))
        seen = ambiguity.seen.get(key, 0)
        ambiguity.seen[key] = seen + 1
        if seen:
            utc.iloc[i] = winter.iloc[i]
    return _epoch_ms(utc), skipped


def times(column: pd.Series, time_format: str, zone: str, keys: np.ndarray, ambiguity: Ambiguity):
    """``(epoch ms as float64 with NaN, bad, reasons)`` of a time column (``time_format`` ``iso``, ``epoch_ms``
    or ``epoch_s``; ISO times without an offset and naive Parquet timestamps are local times in ``zone``,
    placed per ``keys`` series); ``reasons`` words each bad row's problem, by index."""
    n = len(column)
    reasons: dict[int, str] = {}
    if time_format in ("epoch_ms", "epoch_s"):
        values, bad = numbers(column)
        ts = np.round(values * (1000.0 if time_format == "epoch_s" else 1.0))
        for i in np.flatnonzero(bad | np.isnan(values)):
            reasons[int(i)] = "is not a number" if bad[i] else "is empty"
        return ts, bad | np.isnan(values), reasons
    if pd.api.types.is_datetime64_any_dtype(column):  # a Parquet timestamp column
        if getattr(column.dt, "tz", None) is not None:
            ts = _epoch_ms(column)
            skipped = np.zeros(n, dtype=bool)
        else:
            ts, skipped = _localize(column, zone, keys, ambiguity)
        empty = column.isna().to_numpy()
    else:
        stamps = text(column)
        empty = (stamps == "").to_numpy() | column.isna().to_numpy()
        aware = stamps.str.contains(_OFFSET, regex=True).to_numpy()
        ts = np.full(n, np.nan)
        skipped = np.zeros(n, dtype=bool)
        if aware.any():
            ts[aware] = _epoch_ms(pd.to_datetime(stamps[aware], utc=True, format="ISO8601", errors="coerce"))
        naive = ~aware & ~empty
        if naive.any():
            parsed = pd.to_datetime(stamps[naive], format="ISO8601", errors="coerce")
            ts[naive], skipped[naive] = _localize(parsed, zone, keys[naive], ambiguity)
    bad = np.isnan(ts)
    for i in np.flatnonzero(bad):
        if empty[i]:
            reasons[int(i)] = "is empty"
        elif skipped[i]:
            reasons[int(i)] = f"{column.iloc[i]!r} does not exist in {zone} (the clock skipped it)"
        else:
            reasons[int(i)] = f"{column.iloc[i]!r} is not an ISO 8601 time (e.g. 2025-10-26T02:30:00+02:00)"
    return ts, bad, reasons


# -- sending -----------------------------------------------------------------------------------------------


@dataclass
class FileSummary:
    file: str
    sha256: str
    noun: str = "records"  # what the records are ("readings", "prices")
    rows: int = 0
    records: int = 0
    bad_rows: int = 0
    bad_by_field: dict[str, int] = field(default_factory=dict)
    series: int = 0  # meters, markets
    first_ts_ms: int | None = None
    last_ts_ms: int | None = None
    seconds: float = 0.0
    skipped: str = ""  # why the file was not sent ('' = it was)

    def line(self) -> str:
        if self.skipped:
            return f"{self.file}: not sent: {self.skipped}"
        rate = self.records / self.seconds if self.seconds else 0.0
        span = ""
        if self.first_ts_ms is not None and self.last_ts_ms is not None:
            first = pd.Timestamp(self.first_ts_ms, unit="ms", tz="UTC").isoformat()
            last = pd.Timestamp(self.last_ts_ms, unit="ms", tz="UTC").isoformat()
            span = f", {first} .. {last}"
        bad = ", ".join(f"{name} {count}" for name, count in sorted(self.bad_by_field.items()))
        return (
            f"{self.file}: {self.rows} rows -> {self.records} {self.noun} of {self.series} series{span}; "
            f"{self.bad_rows} bad rows{f' ({bad})' if bad else ''} to the dead-letter topic; "
            f"{self.seconds:.1f} s, {rate:,.0f} {self.noun}/s"
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


@dataclass(frozen=True)
class Importer:
    """One kind of import: its records' topic and noun, how a file's batches are read and converted, and
    which fields key a record and name its series."""

    topic: str
    noun: str
    batches: Callable[[Path], Iterator[tuple[int, pd.DataFrame]]]
    convert: Callable[[pd.DataFrame, int, Ambiguity], Batch]
    key_field: str
    series_fields: tuple[str, ...]


def import_files(
    settings,
    importer: Importer,
    paths: list[Path],
    again: bool = False,
    speed: float = 0.0,
    progress: bool = True,
    out=None,
    err=None,
    max_printed: int = 20,
) -> list[FileSummary]:
    """Send each file's records onto ``importer.topic`` (bad rows to the dead-letter topic) and record it in
    the ledger; files already in the ledger are skipped unless ``again``. ``speed`` > 0 paces the records at
    that multiple of real time by their ``ts_ms`` (in file order); 0 sends as fast as the broker takes them.
    Raises :class:`ImportFileError` for a file that cannot be read (the files before it are sent)."""
    import orjson
    from tqdm import tqdm

    from gridflow import kafka_io
    from gridflow.contracts import ContractError, dead_letter, encode
    from gridflow.importing import ledger

    out, err = (sys.stdout if out is None else out), (sys.stderr if err is None else err)
    topics = settings.topics
    kafka_io.create_topics(settings, [importer.topic, topics.dead_letter])
    known: dict[str, Any] = dict(ledger.imported(settings))  # creates the ledger's topic if need be
    producer, errors = _producer(settings)
    summaries = []
    printed = 0
    for path in map(Path, paths):
        file_kind(path)
        if not path.is_file():
            raise ImportFileError(f"{path}: no such file")
        summary = FileSummary(str(path), ledger.sha256_of(path), importer.noun)
        summaries.append(summary)
        if summary.sha256 in known and not again:
            earlier = known[summary.sha256]
            when = pd.Timestamp(earlier["imported_ms"], unit="ms", tz="UTC").isoformat(timespec="seconds")
            summary.skipped = (
                f"already imported at {when} as {earlier['file']!r} ({earlier['records']} {earlier['kind']}); "
                "--again sends it anyway"
            )
            print(summary.line(), file=out)
            continue
        started = time.monotonic()
        series: set[tuple] = set()
        ambiguity = Ambiguity()
        first_data_ms: int | None = None
        bar = tqdm(total=count_rows(path), unit=" rows", desc=path.name, disable=not progress, file=err)
        with bar:
            for first_line, frame in importer.batches(path):
                batch = importer.convert(frame, first_line, ambiguity)
                summary.rows += batch.rows
                for record in batch.records:
                    ts = record["ts_ms"]
                    if speed > 0:
                        if first_data_ms is None:
                            first_data_ms = ts
                        wait = started + (ts - first_data_ms) / 1000.0 / speed - time.monotonic()
                        if wait > 0.002:
                            producer.poll(0)
                            time.sleep(wait)
                    _send(producer, importer.topic, orjson.dumps(record), record[importer.key_field].encode())
                    series.add(tuple(record[name] for name in importer.series_fields))
                    if summary.first_ts_ms is None or ts < summary.first_ts_ms:
                        summary.first_ts_ms = ts
                    if summary.last_ts_ms is None or ts > summary.last_ts_ms:
                        summary.last_ts_ms = ts
                summary.records += len(batch.records)
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
        summary.series = len(series)
        summary.seconds = time.monotonic() - started
        entry: dict[str, Any] = {
            "v": 1,
            "file_sha256": summary.sha256,
            "file": path.name,
            "kind": importer.noun,
            "topic": importer.topic,
            "rows": summary.rows,
            "records": summary.records,
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
