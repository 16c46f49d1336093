"""``gridflow import readings``: CSV and Parquet exports onto the readings topic.

The expected times are written out by hand as UTC instants (Europe/Amsterdam is UTC+2 in summer, UTC+1 in
winter; on 2025-10-26 its clocks went from 03:00 back to 02:00, on 2025-03-30 from 02:00 on to 03:00)."""

from __future__ import annotations

import io
from collections import Counter
from datetime import datetime, timezone

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gridflow import kafka_io
from gridflow.jobs import preprocess
from gridflow.contracts import CONTRACTS
from gridflow.importing.readings import Ambiguity, ImportFileError, convert, import_readings, read_batches
from gridflow.readings import ReadingBounds
from gridflow.settings import ImportReadingsSettings


def utc_ms(*fields: int) -> int:
    return int(datetime(*fields, tzinfo=timezone.utc).timestamp() * 1000)


# one meter's export around the autumn change, in local time; a unit column mixing W and kW; bad rows
CSV = """\
household_id,meter_id,time,power,unit
h-1,m-1,2025-10-26 01:45,500,W
h-1,m-1,2025-10-26 02:15,0.75,kW
h-1,m-1,2025-10-26 02:45,800,W
h-1,m-1,2025-10-26 02:15,1.25,kW
h-1,m-1,2025-10-26 02:45,1300,W
h-1,m-1,2025-10-26 03:15,1400,W
h-2,m-2,2025-10-26T05:00:00+01:00,200,W
h-2,m-2,2025-10-26T04:00:00Z,2,kW
h 3,m-3,2025-10-26 05:00,100,W
h-2,m-2,,100,W
h-2,m-2,2025-03-30 02:30,100,W
h-2,m-2,2025-10-26 06:00,abc,W
h-2,m-2,2025-10-26 06:00,100,MW
h-2,m-2,2025-10-26 06:00,90,kW

h-2,m-2,2025-10-26 07:00,,W
"""

EXPECTED = [  # (household, meter, UTC time, power W)
    ("h-1", "m-1", utc_ms(2025, 10, 25, 23, 45), 500.0),
    ("h-1", "m-1", utc_ms(2025, 10, 26, 0, 15), 750.0),  # 02:15 the first time: summer time
    ("h-1", "m-1", utc_ms(2025, 10, 26, 0, 45), 800.0),
    ("h-1", "m-1", utc_ms(2025, 10, 26, 1, 15), 1250.0),  # 02:15 again: winter time
    ("h-1", "m-1", utc_ms(2025, 10, 26, 1, 45), 1300.0),
    ("h-1", "m-1", utc_ms(2025, 10, 26, 2, 15), 1400.0),
    ("h-2", "m-2", utc_ms(2025, 10, 26, 4, 0), 200.0),
    ("h-2", "m-2", utc_ms(2025, 10, 26, 4, 0), 2000.0),
]
BAD = [  # (line, field, words of the reason)
    (10, "household_id", "'h 3' is not an identifier"),
    (11, "ts_ms", "column 'time': is empty"),
    (12, "ts_ms", "'2025-03-30 02:30' does not exist in Europe/Amsterdam"),
    (13, "power_w", "column 'power': 'abc' is not a finite number"),
    (14, "power_w", "unit 'MW' is not one of W, kW, Wh, kWh"),
    (15, "power_w", "90000.0 W is outside [-30000.0, 50000.0] W"),
    (16, "household_id", "'' is not an identifier"),  # the blank line
    (17, "power_w", "no power or energy value"),
]
MAPPING = ImportReadingsSettings(power_column="power", unit_column="unit", timezone="Europe/Amsterdam")


def _convert_file(path, mapping=MAPPING):
    readings, bad, rows = [], [], 0
    ambiguity = Ambiguity()
    for first_line, frame in read_batches(path, mapping):
        batch = convert(frame, first_line, mapping, ReadingBounds(), ambiguity)
        readings += batch.records
        bad += batch.bad
        rows += batch.rows
    return readings, bad, rows


def _check(readings, bad, rows):
    assert [(r["household_id"], r["meter_id"], r["ts_ms"], r["power_w"]) for r in readings] == EXPECTED
    assert [(b.line, b.field) for b in bad] == [(line, field) for line, field, _ in BAD]
    for b, (_, _, words) in zip(bad, BAD):
        assert words in b.reason, (b.line, b.reason)
    assert rows == len(readings) + len(bad)
    for reading in readings:
        CONTRACTS["reading"].decode(orjson.dumps(reading), reading["household_id"])


def test_a_csv_export_across_the_autumn_change_with_mixed_units_and_bad_rows(tmp_path):
    path = tmp_path / "meters.csv"
    path.write_text(CSV)
    _check(*_convert_file(path))


def test_batches_do_not_change_the_result(tmp_path):
    """The repeated autumn hour is placed per meter across batch boundaries (batches of 100 rows, the least)."""
    rows = ["household_id,meter_id,time,power,unit"] + [f"h-9,m-9,2025-10-25 {h:02d}:00,1,W" for h in range(24)]
    rows += [f"h-1,m-1,2025-10-26 02:{m:02d},1,W" for m in range(60)] * 2  # 120 rows: summer then winter
    path = tmp_path / "long.csv"
    path.write_text("\n".join(rows) + "\n")
    readings, bad, _ = _convert_file(path, MAPPING.model_copy(update={"batch_rows": 100}))
    assert not bad
    times = [r["ts_ms"] for r in readings if r["meter_id"] == "m-1"]
    assert times == [utc_ms(2025, 10, 26, 0, m) for m in range(60)] + [utc_ms(2025, 10, 26, 1, m) for m in range(60)]


def test_a_parquet_export_gives_the_same_readings(tmp_path):
    frame = pd.read_csv(io.StringIO(CSV), dtype=str, keep_default_na=False, skip_blank_lines=False)
    good = frame.iloc[:8].copy()
    # typed columns as a Parquet writer keeps them: local times as a timestamp column (the ISO rows with an
    # offset converted by hand to Amsterdam local time), powers as numbers
    good.loc[6, "time"] = "2025-10-26 05:00"  # 05:00+01:00
    good.loc[7, "time"] = "2025-10-26 05:00"  # 04:00Z = 05:00 winter time (the hour is not repeated)
    table = pa.table(
        {
            "household_id": good["household_id"].tolist(),
            "meter_id": good["meter_id"].tolist(),
            "time": pa.array(pd.to_datetime(good["time"]).tolist(), pa.timestamp("ms")),
            "power": pa.array([float(v) for v in good["power"]]),
            "unit": good["unit"].tolist(),
        }
    )
    path = tmp_path / "meters.parquet"
    pq.write_table(table, path)
    readings, bad, rows = _convert_file(path)
    assert not bad and rows == 8
    assert [(r["household_id"], r["meter_id"], r["ts_ms"], r["power_w"]) for r in readings] == EXPECTED


def test_interval_energy_becomes_the_intervals_average_power(tmp_path):
    """A utility export: kWh per quarter hour, stamped at the interval's start, epoch seconds."""
    start = utc_ms(2025, 1, 15, 0, 0) // 1000
    path = tmp_path / "quarter-hours.csv"
    path.write_text(f"ean;ts;kwh\nE-1;{start};0.25\nE-1;{start + 900};0.1\nE-1;{start + 1800};-0.1\n")
    mapping = ImportReadingsSettings(
        household_column="ean",
        meter_column="ean",
        time_column="ts",
        time_format="epoch_s",
        time_marks="start",
        power_column="",
        energy_column="kwh",
        energy_kind="interval",
        interval_s=900,
        csv_delimiter=";",
    )
    readings, bad, _ = _convert_file(path, mapping)
    # 0.25 kWh in 15 minutes: 1 kW on average, the interval ending at 00:15
    assert [(r["ts_ms"], r["power_w"], r["interval_s"]) for r in readings] == [
        (utc_ms(2025, 1, 15, 0, 15), 1000.0, 900),
        (utc_ms(2025, 1, 15, 0, 30), 400.0, 900),
        (utc_ms(2025, 1, 15, 0, 45), -400.0, 900),  # export: negative power is within bounds
    ]
    assert not bad and all("energy_kwh" not in r for r in readings)


def test_a_register_in_wh_is_sent_in_kwh(tmp_path):
    path = tmp_path / "register.csv"
    path.write_text(
        "household_id,meter_id,time,wh\nh-1,m-1,2025-01-15T00:00:00Z,1532118\nh-1,m-1,2025-01-15T00:15:00Z,-5\n"
    )
    mapping = ImportReadingsSettings(power_column="", energy_column="wh", energy_unit="Wh")
    readings, bad, _ = _convert_file(path, mapping)
    assert [(r["ts_ms"], r["energy_kwh"]) for r in readings] == [(utc_ms(2025, 1, 15), 1532.118)]
    assert "power_w" not in readings[0]
    assert [(b.line, b.field) for b in bad] == [(3, "energy_kwh")] and "outside [0.0" in bad[0].reason


def test_a_missing_column_names_the_column_and_its_setting(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("house,meter_id,time,power_w\nh-1,m-1,2025-01-15T00:00:00Z,1\n")
    with pytest.raises(ImportFileError, match=r"no column 'household_id' \(import_readings.household_column\)"):
        _convert_file(path, ImportReadingsSettings())
    with pytest.raises(ImportFileError, match="unknown file kind '.xlsx'"):
        _convert_file(tmp_path / "book.xlsx", ImportReadingsSettings())


@pytest.mark.integration
def test_import_onto_kafka_accounts_every_row_and_a_second_import_sends_nothing(kafka_settings, tmp_path):
    settings = kafka_settings.with_overrides(
        "stream.idle_timeout_ms=0",
        "stream.watermark_emit=on-event",
        "import_readings.power_column=power",
        "import_readings.unit_column=unit",
        "import_readings.timezone=Europe/Amsterdam",
    )
    path = tmp_path / "meters.csv"
    path.write_text(CSV)
    first = import_readings(settings, [path], progress=False)
    assert (first[0].rows, first[0].records, first[0].bad_rows, first[0].series) == (16, 8, 8, 2)
    topics = settings.topics
    records = kafka_io.read_records(settings, topics.readings, expected=len(EXPECTED))
    assert sorted((key.decode(), orjson.loads(value)["ts_ms"]) for key, value in records) == sorted(
        (h, t) for h, _, t, _ in EXPECTED
    ), "each reading once, keyed by its household"
    letters = [orjson.loads(v) for v in kafka_io.read_topic(settings, topics.dead_letter, expected=len(BAD))]
    assert sorted((d["source"], d["field"]) for d in letters) == sorted(
        (f"import:meters.csv:{line}", field) for line, field, _ in BAD
    )
    assert all(CONTRACTS["dead_letter"].decode(orjson.dumps(d)) for d in letters)

    again = import_readings(settings, [path], progress=False)  # the same export a second time: refused
    assert again[0].skipped.startswith("already imported") and again[0].records == 0
    # the preprocessing job over what is on the topic: each meter's window once, every reading accounted
    ends = kafka_io.end_offsets(settings, topics.readings, len(EXPECTED))
    preprocess.build(preprocess.create_table_env(settings), settings, stop_offsets=ends).execute().wait()
    features = [orjson.loads(v) for v in kafka_io.read_topic(settings, topics.features, until_end=True)]
    windows = Counter((f["meter_id"], f["window_start_ms"]) for f in features)
    assert set(windows.values()) == {1}
    assert sorted(windows) == sorted({(m, t - t % 60_000) for _, m, t, _ in EXPECTED})
    assert sum(f["n_readings"] + f["n_duplicates"] for f in features) == len(EXPECTED)
    forced = import_readings(settings, [path], again=True, progress=False)
    assert forced[0].records == len(EXPECTED)
    total = kafka_io.read_records(settings, topics.readings, idle_timeout_s=3.0, until_end=True)
    assert len(total) == 2 * len(EXPECTED), "only --again sent it a second time"
    ledger = [
        orjson.loads(v) for v in kafka_io.read_topic(settings, topics.imports, idle_timeout_s=2.0, until_end=True)
    ]
    assert [(e["file"], e["kind"], e["records"], e["bad_rows"]) for e in ledger] == [
        ("meters.csv", "readings", 8, 8)
    ] * 2
