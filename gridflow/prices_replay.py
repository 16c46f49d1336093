"""The price record, and a tool that replays the real Dutch day-ahead prices onto the price topic.

    python -m gridflow.prices_replay --days 14 --start 2024-01-08 [--market NL] --config <stack>/settings.yaml

Price record: one JSON object per price slot on ``topics.prices`` (Kafka key: the market), slots of a market
in increasing time order::

    {"v": 1, "market": "NL", "ts_ms": 1704668400000, "slot_minutes": 60, "price_per_kwh": 0.0921}

* ``market`` -- price area, 1-64 characters of letters, digits and ``._:-``, starting with a letter or digit;
* ``ts_ms`` -- start of the slot, UTC epoch milliseconds, a whole number of slots since the epoch;
* ``slot_minutes`` -- slot length; the forecasting job takes ``forecast.slot_minutes`` only (average finer
  prices upstream);
* ``price_per_kwh`` -- price in ``tariff.currency`` per kWh, finite, may be negative;
* optional ``v`` (the schema version, 1) and ``currency`` (ISO 4217; when given it must be ``tariff.currency``).

Prices per MWh are rejected, never converted: a ``price_per_mwh`` field is an unknown field, and a price
beyond +-:data:`MAX_ABS_PRICE_PER_KWH` (the European day-ahead market clears between -0.5 and 4 EUR/kWh) is
taken for a per-MWh value. :func:`parse_price_record` raises :class:`~gridflow.contracts.ContractError`
naming the field; the forecasting job turns it into a dead-letter record.

>>> record = price_record("NL", 1_704_668_400_000, 0.0921, 60)
>>> parse_price_record(encode(record), slot_minutes=60, currency="EUR").price_per_kwh
0.0921
>>> parse_price_record('{"market": "NL", "ts_ms": 1704668400000, "slot_minutes": 60, "price_per_kwh": 92.1}',
...                    60, "EUR")
Traceback (most recent call last):
...
gridflow.contracts.core.ContractError: price_per_kwh: 92.1 is outside [-10.0, 10.0] EUR/kWh (a price per MWh? divide by 1000)
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from datetime import date, datetime, timezone

import numpy as np

from gridflow.contracts import CONTRACTS, ID, ID_RULE, SCHEMA_VERSION, ContractError, encode

MAX_ABS_PRICE_PER_KWH = 10.0
DAY_MS = 86_400_000
PRICE = CONTRACTS["price"]


@dataclass(frozen=True)
class PriceRecord:
    """A validated price record (see the module docstring)."""

    market: str
    ts_ms: int
    slot_minutes: int
    price_per_kwh: float


def price_record(market: str, ts_ms: int, price_per_kwh: float, slot_minutes: int) -> dict:
    """A JSON-ready price record for one slot."""
    return {
        "v": SCHEMA_VERSION,
        "market": market,
        "ts_ms": int(ts_ms),
        "slot_minutes": int(slot_minutes),
        "price_per_kwh": float(price_per_kwh),
    }


def parse_price_record(payload: str | bytes, slot_minutes: int, currency: str) -> PriceRecord:
    """Decode and validate one price record.

    Parameters
    ----------
    payload : str or bytes
        The JSON record.
    slot_minutes : int
        The only slot length accepted.
    currency : str
        The only currency accepted (ISO 4217).

    Returns
    -------
    PriceRecord

    Raises
    ------
    gridflow.contracts.ContractError
        The payload is not such a record; ``field`` names the offending field ('' = the whole payload).
    """
    data = PRICE.decode(payload)
    if data.get("currency", currency) != currency:
        raise ContractError("currency", f"{data['currency']!r} is not the configured currency {currency!r}")
    if data["slot_minutes"] != slot_minutes:
        raise ContractError(
            "slot_minutes",
            f"must be {slot_minutes} (forecast.slot_minutes), got "
            f"{data['slot_minutes']!r}; average finer prices upstream",
        )
    ts_ms = data["ts_ms"]
    if ts_ms % (slot_minutes * 60_000):
        raise ContractError(
            "ts_ms", f"must be the start of a {slot_minutes}-minute slot in epoch milliseconds, got {ts_ms!r}"
        )
    market = data["market"]
    price = data["price_per_kwh"]
    if not math.isfinite(price):
        raise ContractError("price_per_kwh", f"must be a finite number, got {price!r}")
    if abs(price) > MAX_ABS_PRICE_PER_KWH:
        bounds = f"[{-MAX_ABS_PRICE_PER_KWH}, {MAX_ABS_PRICE_PER_KWH}] {currency}/kWh"
        raise ContractError("price_per_kwh", f"{price} is outside {bounds} (a price per MWh? divide by 1000)")
    return PriceRecord(market, ts_ms, slot_minutes, float(price))


def replay_records(
    prices: dict[str, np.ndarray], start: date, days: int, market: str, slot_minutes: int = 60
) -> list[dict]:
    """Price records of ``days`` local days from ``start`` out of :func:`gridflow.datasets.load_prices` arrays.

    Local days follow the data's own ``utc_offset_minutes`` (Dutch time, so a spring day holds 23 hours);
    hours without a price are left out; ``slot_minutes`` dividing 60 repeats each hourly price per slot.
    """
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ValueError(f"days must be an integer >= 1, got {days!r}")
    if isinstance(slot_minutes, bool) or not isinstance(slot_minutes, int) or slot_minutes < 1 or 60 % slot_minutes:
        raise ValueError(
            f"slot_minutes must divide the data's 60-minute slots (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, "
            f"30, 60), got {slot_minutes!r}"
        )
    import pandas as pd

    from gridflow.importing.files import Ambiguity
    from gridflow.importing.prices import convert_prices
    from gridflow.settings import ImportPricesSettings

    first_local_ms = int(datetime(start.year, start.month, start.day, tzinfo=timezone.utc).timestamp() * 1000)
    local_ms = prices["ts_ms"] + prices["utc_offset_minutes"] * 60_000
    rows = np.flatnonzero((local_ms >= first_local_ms) & (local_ms < first_local_ms + days * DAY_MS))
    if not len(rows):
        return []
    # the dataset as a price file: UTC hours, one market, EUR/kWh; missing hours are empty cells
    frame = pd.DataFrame({"ts_ms": prices["ts_ms"][rows], "price": prices["price_per_kwh"][rows]})
    mapping = ImportPricesSettings(
        time_column="ts_ms", time_format="epoch_ms", markets={"price": market}, price_unit="per_kWh", slot_minutes=60
    )
    batch = convert_prices(frame, 1, mapping, slot_minutes, Ambiguity())
    if batch.bad:
        raise ValueError(f"the price data breaks the price contract at row {batch.bad[0].line}: {batch.bad[0].reason}")
    return batch.records


def main(argv: list[str] | None = None) -> None:
    """Publish the Dutch day-ahead prices of some days to ``topics.prices``; exit status 2 on a bad argument."""
    from gridflow import kafka_io
    from gridflow.cli_args import add_settings_arguments, settings_from_args
    from gridflow.datasets import DatasetError, load_prices

    parser = argparse.ArgumentParser(
        prog="python -m gridflow.prices_replay",
        description="Publish the real Dutch "
        "day-ahead prices of some local days to topics.prices, one price record per slot.",
    )
    parser.add_argument(
        "--start",
        required=True,
        type=date.fromisoformat,
        metavar="YYYY-MM-DD",
        help="first local (Dutch) day to publish; the data covers 2015-01-01 .. 2024-12-31",
    )
    parser.add_argument("--days", type=int, default=1, help="local days to publish (default 1)")
    parser.add_argument("--market", default="NL", help="market name in the records and Kafka key (default NL)")
    parser.add_argument("--slot-minutes", type=int, help="slot length of the records (default forecast.slot_minutes)")
    add_settings_arguments(parser)
    args = parser.parse_args(argv)
    settings = settings_from_args(args)
    slot_minutes = args.slot_minutes or settings.forecast.slot_minutes
    if not ID.match(args.market):
        parser.error(f"--market must be {ID_RULE}, got {args.market!r}")
    try:
        records = replay_records(load_prices(settings), args.start, args.days, args.market, slot_minutes)
    except (ValueError, DatasetError) as error:
        parser.error(str(error))
    if not records:
        parser.error(f"no prices in the data for {args.days} day(s) from {args.start}")
    topic = settings.topics.prices
    kafka_io.create_topics(settings, [topic])
    kafka_io.produce(settings, topic, ((args.market, encode(r)) for r in records))
    print(
        f"published {len(records)} {slot_minutes}-minute prices of {args.market} from {args.start} "
        f"({args.days} day(s)) to {topic}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
