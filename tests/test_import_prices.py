"""``gridflow import prices``: day-ahead price files onto the price topic, converted to the price contract.

Expected times are written out by hand as UTC instants (Europe/Amsterdam: UTC+2 until 2025-10-26 03:00
summer time, then UTC+1; that day has 25 hours, 02:00-03:00 twice)."""

from __future__ import annotations

from datetime import datetime, timezone

import orjson
import pytest

from gridflow import kafka_io
from gridflow.importing.files import Ambiguity, ImportFileError
from gridflow.importing.prices import convert_prices, import_prices, read_price_batches
from gridflow.prices_replay import parse_price_record
from gridflow.settings import ImportPricesSettings


def utc_ms(*fields: int) -> int:
    return int(datetime(*fields, tzinfo=timezone.utc).timestamp() * 1000)


# the autumn day as an exchange publishes it: local hours, a column per market, EUR/MWh
DAY = """\
time,NL,DE-LU
2025-10-26 00:00,91.5,88.1
2025-10-26 01:00,80.25,
2025-10-26 02:00,70,69
2025-10-26 02:00,60.5,n/a
2025-10-26 03:00,-5.75,-4
2025-10-26 04:00,15000,50
"""
MAPPING = ImportPricesSettings(timezone="Europe/Amsterdam")


def _convert(path, mapping=MAPPING, slot_minutes=60):
    records, bad = [], []
    for line, frame in read_price_batches(path, mapping):
        batch = convert_prices(frame, line, mapping, slot_minutes, Ambiguity(), "EUR")
        records += batch.records
        bad += batch.bad
    return records, bad


def test_an_hourly_file_across_the_autumn_change(tmp_path):
    path = tmp_path / "day-ahead.csv"
    path.write_text(DAY)
    records, bad = _convert(path)
    assert [(r["market"], r["ts_ms"], r["price_per_kwh"]) for r in records] == [
        ("DE-LU", utc_ms(2025, 10, 25, 22), 0.0881),
        ("NL", utc_ms(2025, 10, 25, 22), 0.0915),
        ("NL", utc_ms(2025, 10, 25, 23), 0.08025),  # DE-LU's empty cell is no price
        ("DE-LU", utc_ms(2025, 10, 26, 0), 0.069),  # 02:00 summer time
        ("NL", utc_ms(2025, 10, 26, 0), 0.07),
        ("NL", utc_ms(2025, 10, 26, 1), 0.0605),  # 02:00 winter time
        ("DE-LU", utc_ms(2025, 10, 26, 2), -0.004),  # negative prices stay negative
        ("NL", utc_ms(2025, 10, 26, 2), -0.00575),
        ("DE-LU", utc_ms(2025, 10, 26, 3), 0.05),
    ]
    assert [(b.line, b.field) for b in bad] == [(5, "price_per_kwh"), (7, "price_per_kwh")]
    assert "'n/a' is not a finite number" in bad[0].reason
    assert "15000.0 per MWh is outside +-10.0 per kWh" in bad[1].reason
    for r in records:
        assert parse_price_record(orjson.dumps(r), 60, "EUR").price_per_kwh == r["price_per_kwh"]


def test_quarter_hours_are_averaged_into_whole_hours_and_a_short_hour_is_named(tmp_path):
    start = utc_ms(2025, 1, 15, 0) // 1000
    rows = [f"{start + 900 * k},{p}" for k, p in enumerate([100, 120, 80, 100, 50, 70, 60])]  # 1 h, then 3 quarters
    path = tmp_path / "quarters.csv"
    path.write_text("ts,NL\n" + "\n".join(rows) + "\n")
    mapping = ImportPricesSettings(time_column="ts", time_format="epoch_s")
    records, bad = _convert(path, mapping, slot_minutes=60)
    assert [(r["ts_ms"], r["slot_minutes"], r["price_per_kwh"]) for r in records] == [
        (utc_ms(2025, 1, 15, 0), 60, 0.1)  # (100 + 120 + 80 + 100) / 4 per MWh
    ]
    assert [(b.line, b.field) for b in bad] == [(6, "price_per_kwh")]
    assert "has 3 of its 4 15-minute prices" in bad[0].reason
    # the same file into 15-minute slots: every quarter as it is
    records, bad = _convert(path, mapping, slot_minutes=15)
    assert [r["price_per_kwh"] for r in records] == [0.1, 0.12, 0.08, 0.1, 0.05, 0.07, 0.06] and not bad


def test_hours_repeat_into_finer_slots_and_misplaced_or_repeated_slots_are_bad_rows(tmp_path):
    path = tmp_path / "hours.csv"
    path.write_text(
        "time,NL\n2025-01-15T00:00:00Z,100\n2025-01-15T01:00:00Z,40\n2025-01-15T01:00:00Z,41\n2025-01-15T02:30:00Z,42\n"
    )
    records, bad = _convert(path, ImportPricesSettings(), slot_minutes=30)
    assert [(r["ts_ms"], r["price_per_kwh"]) for r in records] == [
        (utc_ms(2025, 1, 15, 0, 0), 0.1),
        (utc_ms(2025, 1, 15, 0, 30), 0.1),
        (utc_ms(2025, 1, 15, 1, 0), 0.04),
        (utc_ms(2025, 1, 15, 1, 30), 0.04),
    ]
    assert [(b.line, b.field) for b in bad] == [(4, "ts_ms"), (5, "ts_ms")]
    assert "given twice (first on line 3)" in bad[0].reason and "not the start of a 60-minute slot" in bad[1].reason


def test_files_and_settings_that_cannot_be_imported_say_why(tmp_path):
    path = tmp_path / "named.csv"
    path.write_text("time,NL price\n2025-01-15T00:00:00Z,1\n")
    with pytest.raises(ImportFileError, match=r"column 'NL price' is no market name.*import_prices.markets"):
        _convert(path)
    records, _ = _convert(path, ImportPricesSettings(markets={"NL price": "NL"}, slot_minutes=60))
    assert [r["market"] for r in records] == ["NL"]
    with pytest.raises(ImportFileError, match=r"no column 'DE' \(import_prices.markets.DE\)"):
        _convert(path, ImportPricesSettings(markets={"DE": "DE"}))


@pytest.mark.integration
def test_import_prices_onto_kafka_keyed_by_market_once(kafka_settings, tmp_path):
    settings = kafka_settings.with_overrides("import_prices.timezone=Europe/Amsterdam")
    path = tmp_path / "day-ahead.csv"
    path.write_text(DAY)
    (summary,) = import_prices(settings, [path], progress=False)
    assert (summary.records, summary.bad_rows, summary.series) == (9, 2, 2)
    records = kafka_io.read_records(settings, settings.topics.prices, expected=9)
    assert len(records) == 9
    for key, value in records:
        parsed = parse_price_record(value, settings.forecast.slot_minutes, settings.tariff.currency)
        assert key.decode() == parsed.market
    by_market = {}
    for key, value in records:
        by_market.setdefault(key, []).append(orjson.loads(value)["ts_ms"])
    assert all(times == sorted(times) for times in by_market.values()), "each market's slots in time order"
    letters = [orjson.loads(v) for v in kafka_io.read_topic(settings, settings.topics.dead_letter, expected=2)]
    assert sorted(d["source"] for d in letters) == ["import:day-ahead.csv:5", "import:day-ahead.csv:7"]
    (again,) = import_prices(settings, [path], progress=False)
    assert again.skipped and "already imported" in again.skipped
    with pytest.raises(ImportFileError, match="is not tariff.currency"):
        import_prices(settings.with_overrides("import_prices.currency=GBP"), [path], progress=False)
