"""A mixed fleet through the preprocessing and clustering jobs on the mini-cluster, with the default
settings: 10-second meters, 15- and 60-minute interval meters and register-only meters (a rollover, a
reset, a household with two meters), over two days. Every feature, profile and assignment is checked
against a reference computed here by hand from the readings, not by the job's code."""

import json
from collections import defaultdict

import pytest

from gridflow import kafka_io
from gridflow.analytics.clustering import LoadProfileClusterer
from gridflow.jobs import clustering, preprocess
from gridflow.runtime import create_env

pytestmark = pytest.mark.integration

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
START_MS = 1_768_435_200_000  # 2026-01-15 00:00 UTC
DAYS = 2
PEAK = {17, 18, 19, 20}  # the default peak hours


def _evening(hour: int) -> float:
    return 300.0 + (1500.0 if 17 <= hour <= 20 else 0.0)


def _daytime(hour: int) -> float:
    return 300.0 + (1200.0 if 9 <= hour <= 16 else 0.0)


def _reading(household, meter, ts_ms, **fields) -> dict:
    return {"v": 2, "household_id": household, "meter_id": meter, "ts_ms": ts_ms, **fields}


class Fleet:
    """The readings, and per meter the spans ``(start_ms, end_ms, mean_w)`` they stand for (the reference)."""

    def __init__(self):
        self.readings: list[dict] = []
        self.spans: dict[tuple[str, str], list[tuple[int, int, float]]] = defaultdict(list)
        self.dead: list[tuple[dict, str]] = []
        self.register_meters = 0
        self.duplicates: list[dict] = []

    def sampled(self, household, meter, shape):
        """A 10-second meter: constant within each minute, so each minute window's mean is that power."""
        for minute in range(DAYS * 1440):
            power = shape(minute // 60 % 24) + minute % 60
            start = START_MS + minute * 60_000
            for k in range(6):
                self.readings.append(_reading(household, meter, start + k * 10_000, power_w=power))
            self.spans[(household, meter)].append((start, start + 60_000, power))

    def interval(self, household, meter, interval_s, power_of):
        step = interval_s * 1000
        for k in range(DAYS * DAY_MS // step):
            end, power = START_MS + (k + 1) * step, power_of(k)
            self.readings.append(_reading(household, meter, end, power_w=power, interval_s=interval_s))
            self.spans[(household, meter)].append((end - step, end, power))

    def register(self, household, meter, interval_s, power_of, kwh0, digits=5, reset_at=None):
        """Register readings from ``kwh0`` (a ``digits``-digit register, 3 decimals) every ``interval_s``;
        the spans are the differences of the register values as sent (wrapping at 10**digits)."""
        self.register_meters += 1
        step, modulus = interval_s * 1000, 10.0**digits
        used, sent = 0.0, []  # kWh since the first reading
        for k in range(DAYS * DAY_MS // step + 1):
            ts = START_MS + k * step
            if k:
                used += power_of(k - 1) * interval_s / 3600 / 1000
            if k == reset_at:
                kwh0 = 0.5 - used  # the register restarts at 0.5 kWh
            value = round((kwh0 + used) % modulus, 3)
            sent.append((ts, value))
            self.readings.append(_reading(household, meter, ts, energy_kwh=value))
        for k in range(1, len(sent)):
            (t0, e0), (t1, e1) = sent[k - 1], sent[k]
            if k == reset_at:
                self.dead.append((self.readings[-len(sent) + k], "the register went back"))
                continue
            delta = e1 - e0 if e1 >= e0 else e1 + modulus - e0
            self.spans[(household, meter)].append((t0, t1, delta * 1000 / ((t1 - t0) / HOUR_MS)))


def _fleet() -> Fleet:
    fleet = Fleet()
    fleet.sampled("h-a", "m-a", _evening)
    fleet.sampled("h-b", "m-b", _daytime)
    fleet.interval("h-c", "m-c", 900, lambda k: _evening(k // 4 % 24) + 25.0 * (k % 4) + 7.0 * (k // 96))
    fleet.register("h-c", "m-c2", 900, lambda k: 100.0 + 5.0 * (k % 8), kwh0=5_000.0)  # a second meter
    fleet.interval("h-d", "m-d", 3600, lambda k: _daytime(k % 24) + 11.0 * (k // 24))
    fleet.register("h-e", "m-e", 900, lambda k: _daytime(k // 4 % 24) + 20.0 * (k % 4), kwh0=99_990.0)  # rolls over
    fleet.register("h-f", "m-f", 1800, lambda k: _evening(k // 2 % 24) + 3.0 * (k % 2), kwh0=812.25, reset_at=72)
    return fleet


def _arrival(fleet: Fleet) -> list[tuple[str, bytes]]:
    """In event-time order, as meters send them, with one redelivered interval reading."""
    ordered = sorted(fleet.readings, key=lambda r: r["ts_ms"])
    records = [(r["household_id"], json.dumps(r).encode()) for r in ordered]
    again = next(i for i, r in enumerate(ordered) if r["meter_id"] == "m-c" and r["ts_ms"] == START_MS + 36_000_000)
    records.insert(again + 1, records[again])
    fleet.duplicates.append(ordered[again])
    return records


def _reference_profile(spans, day_start_ms: int) -> dict:
    """A meter's 24-slot profile of one day, by hand: each slot's duration-weighted mean of the spans in it
    (spans here never cross an hour), known when at least half the hour is covered."""
    covered, weighted = [0] * 24, [0.0] * 24
    for start, end, mean in spans:
        if day_start_ms <= start < day_start_ms + DAY_MS:
            slot = (start - day_start_ms) // HOUR_MS
            covered[slot] += end - start
            weighted[slot] += mean * (end - start)
    profile = [weighted[s] / covered[s] if covered[s] >= HOUR_MS / 2 else None for s in range(24)]
    known = [v for v in profile if v is not None]
    energy_kwh = sum(known) / 1000
    mean = energy_kwh * 1000 / len(known)
    return {
        "profile_w": profile,
        "energy_kwh": energy_kwh,
        "mean_w": mean,
        "peak_w": max(known),
        "coverage": len(known) / 24,
        "peak_share": sum(v for s, v in enumerate(profile) if s in PEAK and v is not None) / 1000 / energy_kwh,
        "profile_norm": [None if v is None else v / mean for v in profile],
    }


@pytest.fixture(scope="module")
def fleet_output(stack):
    from conftest import unique_topics

    settings = unique_topics(stack.settings).with_overrides(
        "stream.idle_timeout_ms=0", "stream.watermark_emit=on-event", "flink.parallelism.default=2"
    )
    t = settings.topics
    kafka_io.create_topics(settings, [t.readings, t.features, t.profiles, t.dead_letter], partitions=2)
    fleet = _fleet()
    records = _arrival(fleet)
    ends = kafka_io.produce(settings, t.readings, records)
    preprocess.build(preprocess.create_table_env(settings), settings, stop_offsets=ends).execute().wait()
    features = [json.loads(v) for v in kafka_io.read_topic(settings, t.features, until_end=True)]
    profiles = [json.loads(v) for v in kafka_io.read_topic(settings, t.profiles, until_end=True)]
    dead = [json.loads(v) for v in kafka_io.read_topic(settings, t.dead_letter, until_end=True)]
    return settings, fleet, records, features, profiles, dead


def test_every_span_is_one_feature_with_its_energy_counted_once_and_fully(fleet_output):
    _, fleet, _, features, _, _ = fleet_output
    got = defaultdict(list)
    for f in features:
        got[(f["household_id"], f["meter_id"])].append(f)
    assert set(got) == set(fleet.spans)
    for meter, spans in fleet.spans.items():
        mine = sorted(got[meter], key=lambda f: f["window_start_ms"])
        assert [(f["window_start_ms"], f["window_end_ms"]) for f in mine] == [(s, e) for s, e, _ in spans], meter
        for f, (start, end, mean) in zip(mine, spans):
            assert f["mean_w"] == pytest.approx(mean, rel=1e-7), (meter, start)
            assert f["energy_wh"] == pytest.approx(mean * (end - start) / HOUR_MS, rel=1e-7), (meter, start)
            assert f["coverage"] == 1.0
    total_wh = sum(f["energy_wh"] for f in got[("h-e", "m-e")])
    assert total_wh == pytest.approx(sum(m * (e - s) / HOUR_MS for s, e, m in fleet.spans[("h-e", "m-e")]))
    duplicated = next(f for f in got[("h-c", "m-c")] if f["window_end_ms"] == fleet.duplicates[0]["ts_ms"])
    assert duplicated["n_duplicates"] == 1 and duplicated["n_readings"] == 1


def test_interval_and_register_meters_give_full_coverage_profiles_equal_to_the_hand_computed_ones(fleet_output):
    _, fleet, _, _, profiles, _ = fleet_output
    by_meter_day = {(p["household_id"], p["meter_id"], p["day_start_ms"]): p for p in profiles}
    assert len(by_meter_day) == len(profiles), "a profile was emitted twice"
    assert set(by_meter_day) == {(h, m, START_MS + d * DAY_MS) for h, m in fleet.spans for d in range(DAYS)}
    for (household, meter, day_start), p in by_meter_day.items():
        want = _reference_profile(fleet.spans[(household, meter)], day_start)
        where = f"{meter} {p['day']}"
        assert p["coverage"] == 1.0, where
        for name in ("energy_kwh", "mean_w", "peak_w", "peak_share"):
            assert p[name] == pytest.approx(want[name], rel=1e-7), f"{where} {name}"
        for name in ("profile_w", "profile_norm"):
            assert p[name] == pytest.approx(want[name], rel=1e-7), f"{where} {name}"


def test_a_register_reset_is_dead_lettered_and_nothing_else_disappears(fleet_output):
    settings, fleet, records, features, _, dead = fleet_output
    assert len(dead) == len(fleet.dead) == 1
    (reading, reason), (letter,) = fleet.dead[0], dead
    assert json.loads(letter["payload"]) == reading
    assert letter["field"] == "energy_kwh" and letter["reason"].startswith(reason)
    assert letter["source"] == f"kafka:{settings.topics.readings}"
    used = sum(f["n_readings"] + f["n_duplicates"] for f in features)
    # each register meter's first reading starts its first span and ends none (metric readings_span_start)
    assert used + len(dead) + fleet.register_meters == len(records)


def test_the_mixed_fleet_is_clustered_as_a_reference_model_clusters_the_hand_computed_profiles(
    fleet_output, kafka_settings
):
    _, fleet, _, _, profiles, _ = fleet_output
    settings = kafka_settings.with_overrides("clustering.n_clusters=2", "clustering.warmup_profiles=4")
    t = settings.topics
    kafka_io.create_topics(settings, [t.profiles], partitions=1)  # one partition: the model sees a fixed order
    kafka_io.create_topics(settings, [t.assignments, t.centroids, t.dead_letter])
    ordered = sorted(profiles, key=lambda p: (p["day_start_ms"], p["household_id"], p["meter_id"]))
    ends = kafka_io.produce(settings, t.profiles, [(p["household_id"], json.dumps(p)) for p in ordered])
    env = create_env(settings)
    clustering.build(env, settings, stop_offsets={t.profiles: ends})
    env.execute("clustering-mixed-fleet")
    got = [json.loads(v) for v in kafka_io.read_topic(settings, t.assignments, until_end=True)]

    reference = LoadProfileClusterer.from_settings(settings)
    want = []
    for p in ordered:
        hand = _reference_profile(fleet.spans[(p["household_id"], p["meter_id"])], p["day_start_ms"])
        record = {
            "household_id": p["household_id"],
            "meter_id": p["meter_id"],
            "day": p["day"],
            "slots": 24,
            "day_start_ms": p["day_start_ms"],
            "coverage": hand["coverage"],
            "profile_norm": hand["profile_norm"],
        }
        assignment = reference.learn_record(record)
        if assignment is not None:
            want.append(assignment)
    assert len(want) >= len(ordered) - 4, "the model warmed up on the first profiles"
    key = lambda a: (a["day_start_ms"], a["household_id"], a["meter_id"])  # noqa: E731
    assert sorted(map(key, got)) == sorted(map(key, want))
    got_by = {key(a): a for a in got}
    for a in want:
        assert got_by[key(a)]["cluster"] == a["cluster"], key(a)
        assert got_by[key(a)]["distance"] == pytest.approx(a["distance"], rel=1e-6), key(a)
    clusters = {(a["household_id"], a["meter_id"]): a["cluster"] for a in got if a["day_start_ms"] > START_MS}
    evening = {clusters[m] for m in [("h-a", "m-a"), ("h-c", "m-c"), ("h-f", "m-f")]}
    daytime = {clusters[m] for m in [("h-b", "m-b"), ("h-d", "m-d"), ("h-e", "m-e")]}
    assert len(evening) == len(daytime) == 1 and evening != daytime, "the two load shapes are two clusters"
