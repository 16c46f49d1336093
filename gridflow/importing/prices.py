"""``gridflow import prices FILE...``: day-ahead price files as markets publish them onto the price topic.

A file has one row per slot (an hour or a quarter hour) and a column per market (``import_prices.markets``
maps columns to market names; by default every column but the time is a market named as the column), with
prices per MWh (``price_unit``). Times are the slots' starts: ISO 8601 with an offset, local time in
``timezone`` (a day with a clock change has 23 or 25 rows; the repeated hour is read first as summer, then
as winter time), or epoch numbers. Each price becomes a price record (``gridflow.prices_replay``: per kWh,
keyed by its market) in ``forecast.slot_minutes`` slots, converted explicitly: finer slots are averaged into
whole slots (a slot missing one of its prices is not averaged: a dead letter names it), coarser ones repeat
into each of their slots. An empty cell is no price. A cell that is no number, a price beyond
+-:data:`~gridflow.prices_replay.MAX_ABS_PRICE_PER_KWH` per kWh after the conversion, a bad time or a slot
given twice is a dead letter with the file, line and reason. The Dutch replay (``python -m
gridflow.prices_replay``) is one use of the same conversion.

>>> from gridflow.settings import ImportPricesSettings
>>> frame = pd.DataFrame({"time": ["2025-10-26 01:00", "2025-10-26 02:00", "2025-10-26 02:00"],
...                       "NL": ["81.5", "-3.2", "70"]})
>>> batch = convert_prices(frame, 2, ImportPricesSettings(timezone="Europe/Amsterdam"), 60, Ambiguity())
>>> [(r["ts_ms"], r["price_per_kwh"]) for r in batch.records]  # 23:00, 00:00 and 01:00 UTC
[(1761433200000, 0.0815), (1761436800000, -0.0032), (1761440400000, 0.07)]
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from gridflow.contracts.core import ID_PATTERN
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
    read_batches,
    times,
)
from gridflow.prices_replay import MAX_ABS_PRICE_PER_KWH, price_record
from gridflow.settings import ImportPricesSettings

MINUTE_MS = 60_000
WHOLE_FILE = 10_000_000  # rows per batch: a price file is read whole (slots are averaged across its rows)


def market_columns(columns: list[str], mapping: ImportPricesSettings) -> dict[str, str]:
    """``{column: market}`` of a file's columns."""
    if mapping.markets:
        return dict(mapping.markets)
    return {c: c for c in columns if c != mapping.time_column}


def read_price_batches(path: Path, mapping: ImportPricesSettings) -> Iterator[tuple[int, pd.DataFrame]]:
    def check(have: list[str]) -> None:
        wanted = {"time_column": mapping.time_column}
        wanted |= {f"markets.{column}": column for column in mapping.markets}
        missing_columns(path, have, wanted, "import_prices")
        markets = market_columns(have, mapping)
        if not markets:
            raise ImportFileError(f"{path}: no market column besides {mapping.time_column!r}")
        for column, market in markets.items():
            if not re.fullmatch(ID_PATTERN.strip("^$"), market):
                raise ImportFileError(
                    f"{path}: column {column!r} is no market name (1-64 letters, digits and ._:-); name it with "
                    f"import_prices.markets, e.g. --set 'import_prices.markets={{{column}: NL}}'"
                )

    return read_batches(path, check, mapping.csv_delimiter, WHOLE_FILE)


def _slot_minutes(ts: np.ndarray, mapping: ImportPricesSettings) -> int:
    if mapping.slot_minutes:
        return mapping.slot_minutes
    steps = np.diff(np.unique(ts[np.isfinite(ts)]))
    if not len(steps):
        raise ImportFileError("one slot only: set import_prices.slot_minutes to its length")
    step = float(steps.min()) / MINUTE_MS
    if step != int(step) or not 1 <= step <= 1440:
        raise ImportFileError(f"slots {step} minutes apart: not whole minutes up to a day")
    return int(step)


def convert_prices(
    frame: pd.DataFrame,
    first_line: int,
    mapping: ImportPricesSettings,
    slot_minutes: int,
    ambiguity: Ambiguity,
    currency: str | None = None,
) -> Batch:
    """Price records in ``slot_minutes`` slots (sorted by time, then market) and the bad cells of a file's
    rows; ``currency``, when given, goes into every record."""
    n = len(frame)
    line = first_line + np.arange(n)
    bad: list[BadRow] = []

    def raw(i: int) -> dict[str, str]:
        return {str(k): str(v) for k, v in frame.iloc[i].items()}

    ts, bad_ts, reasons = times(
        frame[mapping.time_column], mapping.time_format, mapping.timezone, np.zeros(n), ambiguity
    )
    for i in np.flatnonzero(bad_ts):
        bad.append(BadRow(int(line[i]), "ts_ms", f"column {mapping.time_column!r}: {reasons[int(i)]}", raw(int(i))))
    good_ts = ~bad_ts
    given = _slot_minutes(ts[good_ts], mapping) if good_ts.any() else slot_minutes
    if not (given % slot_minutes == 0 or slot_minutes % given == 0):
        raise ImportFileError(
            f"{given}-minute slots cannot become forecast.slot_minutes ({slot_minutes}): neither divides the other"
        )
    with np.errstate(invalid="ignore"):
        misaligned = good_ts & (np.mod(ts, given * MINUTE_MS) != 0)
    for i in np.flatnonzero(misaligned):
        start = pd.Timestamp(int(ts[i]), unit="ms", tz="UTC").isoformat()
        bad.append(BadRow(int(line[i]), "ts_ms", f"{start} is not the start of a {given}-minute slot", raw(int(i))))
    usable = good_ts & ~misaligned
    per_mwh = mapping.price_unit == "per_MWh"

    def per_kwh(value: float) -> float:  # a division, as the exchanges' own per-kWh figures are (92.13 -> 0.09213)
        return value / 1000.0 if per_mwh else value

    unit = "MWh" if mapping.price_unit == "per_MWh" else "kWh"
    out: list[tuple[int, str, float]] = []
    for column, market in market_columns([str(c) for c in frame.columns], mapping).items():
        values, not_number = numbers(frame[column])
        price = values / 1000.0 if per_mwh else values
        with np.errstate(invalid="ignore"):
            too_big = np.abs(price) > MAX_ABS_PRICE_PER_KWH
        hint = "is the file per kWh? set import_prices.price_unit=per_kWh" if unit == "MWh" else "a price per MWh?"
        for i in np.flatnonzero(usable & (not_number | too_big)):
            reason = (
                f"column {column!r}: {frame[column].iloc[i]!r} is not a finite number"
                if not_number[i]
                else f"column {column!r}: {values[i]} per {unit} is outside +-{MAX_ABS_PRICE_PER_KWH} per kWh ({hint})"
            )
            bad.append(BadRow(int(line[i]), "price_per_kwh", reason, raw(int(i))))
        ok = usable & ~not_number & ~too_big & np.isfinite(price)
        rows = np.flatnonzero(ok)
        seen: dict[int, int] = {}
        slots: dict[int, list[float]] = {}
        for i in rows:
            start = int(ts[i])
            if start in seen:
                reason = (
                    f"column {column!r}: the slot {pd.Timestamp(start, unit='ms', tz='UTC').isoformat()} is given twice"
                )
                bad.append(BadRow(int(line[i]), "ts_ms", reason + f" (first on line {seen[start]})", raw(int(i))))
                continue
            seen[start] = int(line[i])
            if given >= slot_minutes:  # repeat into each finer slot
                for k in range(given // slot_minutes):
                    out.append((start + k * slot_minutes * MINUTE_MS, market, per_kwh(float(values[i]))))
            else:
                slots.setdefault(start - start % (slot_minutes * MINUTE_MS), []).append(float(values[i]))
        parts = slot_minutes // given
        for start, prices in slots.items():
            if len(prices) == parts:
                out.append((start, market, per_kwh(sum(prices) / len(prices))))  # averaged in the file's unit
                continue
            when = pd.Timestamp(start, unit="ms", tz="UTC").isoformat()
            first = min(seen[s] for s in seen if start <= s < start + slot_minutes * MINUTE_MS)
            bad.append(
                BadRow(
                    first,
                    "price_per_kwh",
                    f"column {column!r}: the {slot_minutes}-minute slot from {when} has {len(prices)} of its "
                    f"{parts} {given}-minute prices: not averaged",
                    raw(first - first_line),
                )
            )
    out.sort(key=lambda r: (r[0], r[1]))
    records = []
    for start, market, value in out:
        record = price_record(market, start, value, slot_minutes)
        if currency:
            record["currency"] = currency
        records.append(record)
    bad.sort(key=lambda b: b.line)
    return Batch(records, bad, n)


def import_prices(
    settings, paths: list[Path], again: bool = False, progress: bool = True, out=None, err=None
) -> list[FileSummary]:
    """``gridflow import prices``: the files onto ``topics.prices`` (see :func:`gridflow.importing.files.
    import_files`), in ``forecast.slot_minutes`` slots and ``tariff.currency``."""
    mapping = settings.import_prices
    currency = settings.tariff.currency
    if mapping.currency and mapping.currency != currency:
        raise ImportFileError(
            f"import_prices.currency {mapping.currency!r} is not tariff.currency {currency!r}: the jobs price in "
            "one currency; convert the file first"
        )
    slot_minutes = settings.forecast.slot_minutes
    importer = Importer(
        topic=settings.topics.prices,
        noun="prices",
        batches=lambda path: read_price_batches(path, mapping),
        convert=lambda frame, line, ambiguity: convert_prices(frame, line, mapping, slot_minutes, ambiguity, currency),
        key_field="market",
        series_fields=("market",),
    )
    return import_files(settings, importer, paths, again, 0.0, progress, out, err)
