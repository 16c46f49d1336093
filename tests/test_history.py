"""The history: output topics -> Parquet per topic/day/partition, exactly once across a SIGKILL, SQL with DuckDB."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
import yaml

from gridflow import kafka_io
from gridflow.history.query import query
from gridflow.history.writer import History, HistoryWriter

pytestmark = pytest.mark.integration


def _features(n: int, start: int = 0) -> list[tuple[str, bytes]]:
    records = []
    for i in range(start, start + n):
        household = f"h-{i % 7}"
        record = {"household_id": household, "window_start_ms": 1_765_000_000_000 + 60_000 * i, "mean_w": 100.0 + i}
        records.append((household, orjson.dumps(record)))
    return records


def _alerts() -> list[tuple[str, bytes]]:
    kinds = ["spike"] * 5 + ["dropout"] * 3 + ["stuck"]
    return [(f"h-{i}", orjson.dumps({"household_id": f"h-{i}", "type": t, "ts_ms": i})) for i, t in enumerate(kinds)]


def _kept(root: str, topic: str) -> list[dict]:
    rows = []
    for f in History(root).files(topic):
        rows += pq.read_table(f.path).to_pylist()
    return rows


def _settings(kafka_settings, tmp_path, *extra):
    return kafka_settings.with_overrides(
        f"history.path={tmp_path / 'history'}", "history.topics=[features, alerts]", *extra
    )


def test_every_record_is_kept_once_and_sql_answers_from_it(kafka_settings, tmp_path):
    settings = _settings(kafka_settings, tmp_path, "history.flush_records=40")
    topics = settings.topics
    kafka_io.create_topics(settings, [topics.features, topics.alerts])
    kafka_io.produce(settings, topics.features, _features(300))
    kafka_io.produce(settings, topics.alerts, [*_alerts(), ("h-9", b"not json")])
    stats = HistoryWriter(settings).run(until_caught_up=True)
    assert stats.records == 309 and stats.dead_letters == 1
    root = settings.history.path
    kept = _kept(root, "features")
    assert sorted(r["mean_w"] for r in kept) == [100.0 + i for i in range(300)]
    assert len({(r["_partition"], r["_offset"]) for r in kept}) == 300
    assert all(r["_key"] == r["household_id"] for r in kept)
    files = History(root).files("features")
    assert len(files) >= 300 // 40 and all(f.last - f.first < 40 for f in files)
    letters = [orjson.loads(v) for v in kafka_io.read_topic(settings, topics.dead_letter, expected=1)]
    assert letters[0]["payload"] == "not json" and letters[0]["source"] == f"kafka:{topics.alerts}"

    # an analyst's questions, answered from the Parquet files and checked against what the topics hold
    _, rows = query(settings, "SELECT type, count(*) AS n FROM alerts GROUP BY type ORDER BY n DESC")
    assert rows == [("spike", 5), ("dropout", 3), ("stuck", 1)]
    _, rows = query(settings, "SELECT household_id, max(mean_w) FROM features GROUP BY 1 ORDER BY 1")
    expected = {}
    for household, value in _features(300):
        expected[household] = max(expected.get(household, 0.0), orjson.loads(value)["mean_w"])
    assert rows == sorted(expected.items())
    _, rows = query(settings, "SELECT count(DISTINCT _day) FROM features")
    assert rows[0][0] >= 1
    with pytest.raises(ValueError, match="the history has the views: features, alerts"):
        query(settings, "SELECT * FROM schedules")
    # the same question on the command line, as CSV
    shown = subprocess.run(
        [
            *(sys.executable, "-m", "gridflow.cli", "history", "query", "--format", "csv"),
            *("--set", f"history.path={root}", "--set", "history.topics=[features, alerts]"),
            "SELECT type, count(*) AS n FROM alerts GROUP BY type ORDER BY n DESC",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert shown.stdout.splitlines() == ["type,n", "spike,5", "dropout,3", "stuck,1"]

    # a second run finds nothing new; new records are appended after the highest offsets on disk
    assert HistoryWriter(settings).run(until_caught_up=True).records == 0
    kafka_io.produce(settings, topics.features, _features(50, start=300))
    assert HistoryWriter(settings).run(until_caught_up=True).records == 50
    assert sorted(r["mean_w"] for r in _kept(root, "features")) == [100.0 + i for i in range(350)]

    # compaction: one file per partition and day, the same rows, the same resume positions
    store = History(root)
    positions = store.positions("features")
    assert store.compact("features", "9999-12-31") > 0
    merged = store.files("features")
    assert len(merged) == len({(f.day, f.partition) for f in merged})
    assert sorted(r["mean_w"] for r in _kept(root, "features")) == [100.0 + i for i in range(350)]
    assert store.positions("features") == positions
    # an interrupted compaction's leftover (a file another one covers) is removed, not counted twice
    leftover = merged[0]
    copy = leftover.path.replace(
        f"-{leftover.first:012d}-{leftover.last:012d}", f"-{leftover.first:012d}-{leftover.first:012d}"
    )
    pq.write_table(pq.read_table(leftover.path).slice(0, 1), copy)
    if leftover.last > leftover.first:
        assert store.remove_covered("features") == 1
    assert query(settings, "SELECT count(*) FROM features")[1][0][0] == 350


def test_a_writer_killed_mid_run_resumes_without_a_gap_or_a_duplicate(kafka_settings, tmp_path):
    settings = _settings(kafka_settings, tmp_path, "history.flush_records=200", "history.flush_s=3600")
    topics = settings.topics
    kafka_io.create_topics(settings, [topics.features, topics.alerts])
    kafka_io.produce(settings, topics.features, _features(20_000))
    config = tmp_path / "settings.yaml"
    dumped = settings.model_dump(by_alias=True, mode="json")
    dumped.pop("flink")
    config.write_text(yaml.safe_dump(dumped))
    writer = subprocess.Popen(
        [sys.executable, "-m", "gridflow.cli", "history", "write", "--config", str(config)],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    root = Path(settings.history.path)
    deadline = time.monotonic() + 120
    try:
        while not list(root.glob("features/_day=*/part-*.parquet")) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(30)
    written = len(_kept(str(root), "features"))
    assert written > 0, "the writer wrote no file before it was killed"
    print(f"killed after {written} of 20,000 records were on disk")
    HistoryWriter(settings).run(until_caught_up=True)
    offsets = Counter((r["_partition"], r["_offset"]) for r in _kept(str(root), "features"))
    assert len(offsets) == 20_000 and set(offsets.values()) == {1}, "every record once"
    assert sorted(r["mean_w"] for r in _kept(str(root), "features")) == [100.0 + i for i in range(20_000)]


def test_retention_drops_old_days(kafka_settings, tmp_path):
    settings = _settings(kafka_settings, tmp_path, "history.retention_days=2")
    kafka_io.create_topics(settings, [settings.topics.features, settings.topics.alerts])
    store = History(settings.history.path)
    old = {"household_id": "h-1", "_offset": 0, "_partition": 99}
    store.write("features", "2020-01-01", 99, [old])  # a partition the topic does not have
    kafka_io.produce(settings, settings.topics.features, _features(3))
    HistoryWriter(settings).run(until_caught_up=True)
    days = {f.day for f in store.files("features")}
    assert "2020-01-01" not in days and len(days) == 1
