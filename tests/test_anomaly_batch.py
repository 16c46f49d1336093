"""The batch anomaly detector (gridflow.analytics.anomaly_batch) against its reference, the scalar detector
(gridflow.analytics.anomaly): the same feature streams through both give the same alerts, meter by meter
and in order, including the silence timers, meters that appear late, several meters per household, a
meter twice in one batch, repeated minutes, and the state's round trip through bytes."""

import random

import numpy as np
import pytest

from gridflow.analytics.anomaly import AnomalyDetector, HouseholdState, meter_key
from gridflow.analytics.anomaly_batch import BatchDetector, MeterTable
from gridflow.analytics.labelled_stream import simulate_minutes
from gridflow.datasets import fetch_datasets, load_citylearn
from gridflow.devices.load_shapes import LoadShapeLibrary
from gridflow.settings import AnomalySettings

T0 = 1_763_596_800_000  # 2025-11-20 00:00 UTC
MIN = 60_000


def scalar_run(settings, minutes):
    """The scalar detector fed record by record, a timer per meter at its silence deadline firing as the
    watermark (the end of each minute's records) passes it: the anomaly job's per-record semantics."""
    detector, states, alerts = AnomalyDetector(settings), {}, []
    for records in minutes:
        for record in records:
            state = states.setdefault(meter_key(record), HouseholdState())
            alerts += detector.update(state, record)
        watermark = max(r["window_end_ms"] for r in records) - 1
        due = []
        for state in states.values():
            deadline = detector.silence_deadline_ms(state)
            if deadline is not None and deadline <= watermark and not state.silence_alerted:
                due.append((deadline, state))
        for deadline, state in sorted(due, key=lambda d: d[0]):
            alerts += detector.check_silence(state, state.household_id, deadline)
    return alerts


def batch_run(settings, minutes, buckets=3, seed=0, round_trip=True):
    """The batch detector fed each minute as ``buckets`` batches (meters dealt to buckets by key), the
    bucket's silence timer firing at its earliest deadline, the tables kept as bytes between calls."""
    detector, tables, alerts = BatchDetector(settings), {}, []
    rng = random.Random(seed)
    for records in minutes:
        by_bucket: dict[int, list] = {}
        for record in records:
            by_bucket.setdefault(sum(map(ord, meter_key(record))) % buckets, []).append(record)
        for bucket in rng.sample(sorted(by_bucket), len(by_bucket)):  # buckets in any order
            table = tables.get(bucket)
            table = detector.new_table() if table is None else MeterTable.from_bytes(table) if round_trip else table
            alerts += detector.update(table, by_bucket[bucket])
            tables[bucket] = table.to_bytes() if round_trip else table
        watermark = max(r["window_end_ms"] for r in records) - 1
        for bucket in sorted(tables):
            table = MeterTable.from_bytes(tables[bucket]) if round_trip else tables[bucket]
            deadline = detector.silence_deadline_ms(table)
            while deadline is not None and deadline <= watermark:
                alerts += detector.check_silence(table, deadline)
                deadline = detector.silence_deadline_ms(table)
            tables[bucket] = table.to_bytes() if round_trip else table
    return alerts


def per_meter(alerts):
    out: dict[str, list] = {}
    for alert in alerts:
        out.setdefault(f"{alert['household_id']}/{alert['meter_id']}", []).append(alert)
    return out


def by_minute(records):
    minutes: dict[int, list] = {}
    for record in records:
        minutes.setdefault(record["window_end_ms"], []).append(record)
    return [minutes[k] for k in sorted(minutes)]


@pytest.fixture(scope="module")
def fault_stream(base_settings):
    fetch_datasets(base_settings)
    library = LoadShapeLibrary.from_citylearn(load_citylearn(base_settings))
    records, _ = simulate_minutes(library, n_households=10, start_ms=T0, n_days=1.5, fault_rate_per_day=12.0, seed=5)
    return records


def test_the_labelled_fault_stream_gives_the_scalar_detectors_alerts(fault_stream):
    settings = AnomalySettings()
    minutes = by_minute(fault_stream)
    expected = scalar_run(settings, minutes)
    got = batch_run(settings, minutes)
    kinds = {a["type"] for a in expected}
    # the stream exercises every rule of the scalar detector, else this comparison proves little
    assert {"spike", "stuck", "dropout", "sustained_high", "unusual_load"} <= kinds, kinds
    assert len(expected) > 50
    assert per_meter(got) == per_meter(expected)


def test_tight_settings_make_every_rule_fire_and_still_agree(fault_stream):
    """Shorter warm-up of the floor rules and cooldowns off, so drift, back_online and repeated alerts
    (suppression counts) appear in numbers."""
    settings = AnomalySettings(
        alert_cooldown_s=120, drift_fraction=0.02, drift_minutes=5, sustained_minutes=3, sustained_excess_w=300.0
    )
    minutes = by_minute(fault_stream)
    # a silence the timers see: household 3 stops for 20 minutes in the middle (back_online after it)
    minutes = [[r for r in m if not (r["household_id"] == "h-00003" and 400 <= i < 420)] for i, m in enumerate(minutes)]
    expected = scalar_run(settings, minutes)
    kinds = {a["type"] for a in expected}
    assert {"drift", "back_online", "sustained_high", "spike", "stuck"} <= kinds, kinds
    assert any(a["suppressed_since_last"] for a in expected)
    assert per_meter(batch_run(settings, minutes, buckets=4, seed=1)) == per_meter(expected)
    assert per_meter(batch_run(settings, minutes, buckets=1, round_trip=False)) == per_meter(expected)


def synthetic_minutes(seed, n_meters=12, n_minutes=240):
    """Random meters (two per household), gaps, empty minutes, stuck runs, edge spikes and repeats, with
    meters that first appear late: the cases a clean simulated stream rarely holds."""
    rng = np.random.default_rng(seed)
    minutes = []
    base = rng.uniform(100, 800, n_meters)
    first = rng.integers(0, 60, n_meters)
    for k in range(n_minutes):
        records = []
        for m in range(n_meters):
            if k < first[m] or rng.random() < 0.04 or (m == 5 and 150 <= k < 160):
                continue  # not yet installed, a lost minute, or a silence
            mean = float(base[m] * rng.uniform(0.7, 1.3) + (2500.0 if 100 < k < 140 and m % 4 == 0 else 0.0))
            n = int(rng.choice([0, 6, 6, 6, 2]))
            stuck = k % 50 < 4 and m % 3 == 0
            raw_max = mean * (4.0 if rng.random() < 0.05 else 1.05)
            outliers = [raw_max] if rng.random() < 0.3 and raw_max > 3 * mean else []
            record = {
                "household_id": f"h-{m // 2}",
                "meter_id": f"m-{m}",
                "window_start_ms": T0 + k * MIN,
                "window_end_ms": T0 + (k + 1) * MIN,
                "n_readings": n,
                "n_missing": 6 - n,
                "mean_w": (500.0 if stuck else mean) if n else None,
                "min_w": (500.0 if stuck else mean * 0.9) if n else None,
                "peak_w": (500.0 if stuck else mean * 1.1) if n else None,
                "raw_max_w": (500.0 if stuck else raw_max) if n else None,
                "outlier_values": outliers,
                "stuck_run": n if stuck else 1,
            }
            records.append(record)
            if rng.random() < 0.02:
                records.append(dict(record))  # a repeated minute: judged once
        if records:
            minutes.append(records)
    return minutes


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_streams_with_gaps_repeats_and_late_meters_agree(seed):
    settings = AnomalySettings(micro_window_s=600, alert_cooldown_s=60, dbscan_min_samples=3)
    minutes = synthetic_minutes(seed)
    expected = scalar_run(settings, minutes)
    assert len(expected) > 30 and len({a["type"] for a in expected}) >= 5
    assert per_meter(batch_run(settings, minutes, buckets=3, seed=seed)) == per_meter(expected)


def test_a_meter_twice_in_one_batch_is_judged_in_order():
    settings = AnomalySettings(micro_window_s=600, alert_cooldown_s=60, dbscan_min_samples=3)
    minutes = synthetic_minutes(7, n_meters=6, n_minutes=200)
    expected = scalar_run(settings, minutes)
    # two minutes of every meter in one batch (the second minute's batch empty): the same alerts
    pairs = [minutes[i] + (minutes[i + 1] if i + 1 < len(minutes) else []) for i in range(0, len(minutes), 2)]
    detector, table, got = BatchDetector(settings), MeterTable(), []
    for records in pairs:
        got += detector.update(table, records)
    # no timers run between the two minutes of a batch, so silences are left out of the comparison
    keep = {"spike", "stuck", "unusual_load", "sustained_high", "drift"}
    assert sum(a["type"] in keep for a in expected) > 10
    assert per_meter([a for a in got if a["type"] in keep]) == per_meter([a for a in expected if a["type"] in keep])


def test_the_ring_of_recent_minutes_grows_when_windows_are_shorter_than_a_minute():
    """Ten-second windows put six minutes' worth of records into the DBSCAN window: the ring doubles and
    keeps them in time order."""
    settings = AnomalySettings(micro_window_s=120, dbscan_min_samples=3, alert_cooldown_s=0)
    rng = np.random.default_rng(3)
    records = []
    for k in range(200):
        mean = float(rng.uniform(300, 320) if k % 37 else 2500.0)
        records.append(
            {
                "household_id": "h-1",
                "meter_id": "m-1",
                "window_start_ms": T0 + k * 10_000,
                "window_end_ms": T0 + (k + 1) * 10_000,
                "n_readings": 1,
                "n_missing": 0,
                "mean_w": mean,
                "min_w": mean,
                "peak_w": mean,
                "raw_max_w": mean,
                "outlier_values": [],
                "stuck_run": 1,
            }
        )
    expected = AnomalyDetector(settings).run(records)
    detector, table = BatchDetector(settings), MeterTable(ring_capacity=2)
    got = []
    for record in records:
        got += detector.update(table, [record])
    assert table.capacity >= 12
    assert any(a["type"] == "unusual_load" for a in expected)
    assert got == expected
