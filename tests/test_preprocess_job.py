"""The preprocessing job on the local mini-cluster, through the real Kafka connector and broker."""

import json
from collections import defaultdict

import numpy as np
import pytest

from gridflow import kafka_io
from gridflow.contracts import CONTRACTS
from gridflow.feature_batches import batches, bucket_of
from gridflow.jobs import preprocess
from gridflow.native.clean_reference import clean_window_reference
from gridflow.preprocess import CleaningParams, daily_profile
from gridflow.preprocess.validation_sql import DECODED
from gridflow.registry import write_registry

from preprocess_data import FOREIGN, LATE, MALFORMED, REGISTERED, START_MS, UNKNOWN, stream

pytestmark = pytest.mark.integration


def _close(have, want, path=""):
    if isinstance(want, float):
        assert have == pytest.approx(want, rel=1e-9, abs=1e-9), path
    elif isinstance(want, list):
        assert len(have) == len(want), path
        for i, (h, w) in enumerate(zip(have, want)):
            _close(h, w, f"{path}[{i}]")
    else:
        assert have == want, path


@pytest.fixture(scope="module")
def job_output(stack, tmp_path_factory):
    from conftest import unique_topics

    registry = write_registry(tmp_path_factory.mktemp("registry") / "meters.csv", REGISTERED)
    settings = unique_topics(stack.settings).with_overrides(
        "stream.out_of_orderness_ms=5000",
        "stream.idle_timeout_ms=0",
        "stream.watermark_emit=on-event",
        f"readings.registry_file={registry}",
        "flink.parallelism.default=2",
        "preprocess.feature_batch_buckets=16",
    )
    topics = settings.topics
    kafka_io.create_topics(
        settings,
        [topics.readings, topics.features, topics.feature_batches, topics.profiles, topics.dead_letter],
        partitions=2,
    )
    accepted, records = stream()
    ends = kafka_io.produce(settings, topics.readings, records)
    assert sum(ends.values()) == len(records)
    preprocess.build(preprocess.create_table_env(settings), settings, stop_offsets=ends).execute().wait()
    features = [json.loads(v) for v in kafka_io.read_topic(settings, topics.features, until_end=True)]
    profiles = [json.loads(v) for v in kafka_io.read_topic(settings, topics.profiles, until_end=True)]
    dead = [json.loads(v) for v in kafka_io.read_topic(settings, topics.dead_letter, until_end=True)]
    return settings, accepted, records, features, profiles, dead


def test_feature_batches_hold_every_feature_once_in_its_meters_bucket_and_window(job_output):
    """The anomaly job's input: the same feature records, grouped by bucket (Flink SQL's HASH_CODE, the
    function gridflow.feature_batches.bucket_of computes in Python) and window, each batch keyed by its
    bucket and valid under its contract."""
    settings, _, _, features, _, _ = job_output
    buckets = settings.preprocess.feature_batch_buckets
    rows = [
        (k.decode(), v.decode())
        for k, v in kafka_io.read_records(settings, settings.topics.feature_batches, until_end=True)
    ]
    got, by_key = [], {}
    for key, payload in rows:
        batch = CONTRACTS["feature_batch"].decode(payload, key)
        for f in batch["features"]:
            assert bucket_of(f["household_id"], f["meter_id"], buckets) == batch["bucket"]
            assert (f["window_start_ms"], f["window_end_ms"]) == (batch["window_start_ms"], batch["window_end_ms"])
            got.append(f)
        by_key.setdefault(batch["bucket"], set()).add(batch["window_end_ms"])
    assert sorted(map(json.dumps, got)) == sorted(map(json.dumps, features))
    assert len(by_key) > 1, "the meters of the stream fall into several buckets"
    # one batch per bucket and window
    assert len(rows) == sum(len(ends) for ends in by_key.values())
    assert sorted(k for k, _ in batches(features, buckets)) == sorted(k for k, _ in rows)


def _expected_features(settings, accepted):
    params = CleaningParams.from_settings(settings.preprocess)
    windows = defaultdict(list)
    for r in accepted:
        windows[(r["meter_id"], r["ts_ms"] - r["ts_ms"] % params.window_ms)].append(r)
    duplicate = next(
        r
        for r in sorted(accepted, key=lambda r: r["ts_ms"])
        if r["household_id"] == "h-01" and r["ts_ms"] >= START_MS + 300_000
    )
    expected = {}
    for (meter, start), rows in windows.items():
        rows = rows + ([duplicate] if duplicate in rows else [])
        f = clean_window_reference([r["ts_ms"] for r in rows], [r["power_w"] for r in rows], start, params)
        expected[(meter, start)] = f.to_record(rows[0]["household_id"], meter)
    return expected


def test_features_are_exactly_the_reference_cleaning_of_the_accepted_readings(job_output):
    settings, accepted, _, features, _, _ = job_output
    expected = _expected_features(settings, accepted)
    got = {(f["meter_id"], f["window_start_ms"]): f for f in features}
    assert len(got) == len(features), "a window was emitted twice"
    assert set(got) == set(expected)
    for key, want in expected.items():
        have = dict(got[key])
        assert have.pop("emitted_ms") >= want["window_end_ms"] - 10**12  # wall clock stamp present
        assert have.pop("v") == 1
        _close(have, want, str(key))


def test_each_kind_of_trouble_is_handled_as_specified(job_output):
    _, _, _, features, _, _ = job_output
    by_key = {(f["household_id"], (f["window_start_ms"] - START_MS) // 60_000): f for f in features}
    spike = by_key[("h-01", 2)]
    assert spike["outlier_values"] == [9000.0] and spike["raw_max_w"] == 9000.0 and spike["peak_w"] < 1000
    assert by_key[("h-01", 5)]["n_duplicates"] == 1
    assert sum(f["n_duplicates"] for f in features) == 1
    assert by_key[("h-01", 20)]["n_interpolated"] >= 1 and by_key[("h-01", 20)]["n_missing"] == 0
    assert not any(("h-01", m) in by_key for m in range(31, 40)), "no window is invented inside a long gap"
    assert by_key[("h-01", 30)]["n_missing"] > 0 and by_key[("h-01", 30)]["coverage"] < 1
    assert all(by_key[("h-02", m)]["peak_w"] == 0.0 for m in range(61, 69)), "sensor noise becomes 0 W"
    assert by_key[("h-02", 179)]["stuck_run"] >= 5
    assert by_key[("h-01", 1)]["n_readings"] == 6, "the late reading is not counted in its window"


def test_every_bad_record_is_dead_lettered_with_its_reason(job_output):
    settings, _, _, _, _, dead = job_output
    reasons = {(d["payload"], d["field"], d["reason"]) for d in dead}
    for payload, field, reason in [*MALFORMED, FOREIGN[1:]]:
        assert (payload.decode(), field, reason) in reasons
    late = [d for d in dead if d["reason"].startswith("late")]
    assert [json.loads(d["payload"]) for d in late] == [LATE] and late[0]["field"] == "ts_ms"
    unknown = [d for d in dead if d["reason"].startswith("unknown meter")]
    assert len(unknown) == 12 and {json.loads(d["payload"])["meter_id"] for d in unknown} == {UNKNOWN[1]}
    assert all(d["source"] == f"kafka:{settings.topics.readings}" for d in dead)
    assert len(dead) == len(MALFORMED) + 1 + 1 + 12


def test_nothing_disappears(job_output):
    _, _, records, features, _, dead = job_output
    used = sum(f["n_readings"] + f["n_duplicates"] for f in features)
    assert used + len(dead) == len(records)


def test_daily_profiles_come_from_the_window_means(job_output):
    settings, _, _, features, profiles, _ = job_output
    assert {p["household_id"] for p in profiles} == {h for h, _ in REGISTERED}
    for p in profiles:
        mine = sorted(
            (f for f in features if f["household_id"] == p["household_id"]), key=lambda f: f["window_start_ms"]
        )
        want = daily_profile(
            np.array([f["window_start_ms"] for f in mine]) - START_MS,
            [f["mean_w"] for f in mine],
            slots=settings.preprocess.profile_slots,
            min_coverage=settings.preprocess.min_slot_coverage,
            peak_hours=frozenset(settings.preprocess.peak_hours),
        )
        assert p["day"] == "2026-01-15" and p["day_start_ms"] == START_MS
        for name, value in want.items():
            _close(p[name], value, f"{p['household_id']}.{name}")
        assert p["coverage"] == pytest.approx(3 / 24)


def _tricky_payloads() -> list[str]:
    """Payloads at the edges of what the job's JSON scanner reads itself (else it leaves them to JSON_VALUE)."""
    import random

    numbers = [
        "0",
        "-0",
        "-0.0",
        "0.0e0",
        "1",
        "-1",
        "512.3",
        "512.30",
        "5.0e2",
        "1E2",
        "1e-2",
        "-1e-999",
        "1e400",
        "1.7976931348623157e308",
        "4.9e-324",
        "123456789012345678901234567890",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775808",
        "-9223372036854775809",
        "1768435200000",
        "1.5",
        "1768435200000.0",
        "0.1",
        "2.5e-5",
        "100000000000000000000000.5",
        "1e0001",
        "1e99999",
    ]
    scalars = numbers + [
        '"12"',
        '" 7 "',
        '"abc"',
        '"h-01"',
        '"h 01"',
        '"h\\u0041"',
        '"\\u00e9t\\u00e9"',
        '"é"',
        '""',
        '"NaN"',
        '"Infinity"',
        "true",
        "false",
        "null",
        "[]",
        "[1]",
        "{}",
        '{"a": [1, {"b": null}]}',
    ]
    v2 = '{"v":2,"household_id":"h-1","meter_id":"m-1","ts_ms":1768435200000,'
    fixed = [
        '{"v":1,"household_id":"h-1","meter_id":"m-1","ts_ms":1768435200000,"power_w":512.3,"voltage_v":230.0}',
        '{"household_id": "h-1", "meter_id": "m-1", "ts_ms": 1768435200000, "power_w": 5}',
        ' \n{ "v" : 1 , "household_id" : "h-1" } \t',
        '{"household_id":"h-1"} trailing',
        '{"household_id":"h-1"}}',
        '{"power_w":1,"power_w":null}',
        '{"power_w":null,"power_w":7}',
        '{"ts_ms":1,"ts_ms":"2"}',
        '{"household_id":"a","household_id":"b"}',
        '{"hou\\u0073ehold_id":"x"}',
        '{"power_w":1,}',
        "[1, 2]",
        "[]",
        "{broken",
        "",
        '{"x":{"ts_ms":5},"ts_ms":6}',
        '{"x":"\\"ts_ms\\":5","ts_ms":6}',
        '{"x":[1,2,{"y":"\\n"}]}',
        '{"x":"tab\there"}',
        '{"x":01}',
        '{"x":1.}',
        '{"x":.5}',
        '{"x":-}',
        '{"x":+1}',
        '{"x":1e}',
        '{"current_a":null}',
        '{"voltage_v":{}}',
        '{"household_id":"' + "h" * 64 + '"}',
        '{"household_id":"' + "h" * 65 + '"}',
        '{"meter_id":"m:1.2_3-4"}',
        '\ufeff{"v":1}',
        '{"v":1}\n',
        # version 2: register-only and interval readings, and the edges of the two new fields
        v2 + '"energy_kwh":1532.118}',
        '{"household_id":"h-1","meter_id":"m-1","ts_ms":1768435200000,"energy_kwh":1532.118}',
        v2 + '"power_w":512.3,"interval_s":900}',
        v2 + '"power_w":1,"energy_kwh":0,"interval_s":1}',
        v2 + '"energy_kwh":1,"interval_s":86400}',
        v2 + '"energy_kwh":1,"interval_s":86401}',
        v2 + '"energy_kwh":1,"interval_s":900.0}',
        v2 + '"energy_kwh":1,"interval_s":9e2}',
        v2 + '"energy_kwh":1,"interval_s":900.5}',
        v2 + '"energy_kwh":1,"interval_s":-0}',
        v2 + '"energy_kwh":1,"interval_s":"900"}',
        v2 + '"energy_kwh":1e9,"interval_s":1e400}',
        v2 + '"energy_kwh":1000000000.0000001}',
        v2 + '"energy_kwh":1000000001}',
        v2 + '"energy_kwh":-0.0}',
        v2 + '"energy_kwh":-1e-999}',
        v2 + '"energy_kwh":-1}',
        v2 + '"energy_kwh":null}',
        v2 + '"energy_kwh":null,"power_w":null}',
        v2 + '"energy_kwh":true}',
        v2 + '"energy_kwh":"NaN"}',
        v2 + '"power_w":"NaN","energy_kwh":1}',
        v2 + '"energy_kwh":"Infinity","power_w":1}',
        v2 + '"energy_kwh":1,"energy_kwh":null}',
        v2 + '"energy_kwh":null,"energy_kwh":2}',
        v2 + '"power_w":1,"interval_s":0,"interval_s":60}',
        v2 + '"power_w":1,"interval_s":60,"interval_s":{}}',
        v2 + '"power_w":1,"interval_s":false}',
        v2 + '"power_w":1,"interval_s":[900]}',
        '{"v":3,"household_id":"h-1","meter_id":"m-1","ts_ms":1768435200000,"energy_kwh":1}',
        v2 + '"ener\\u0067y_kwh":1}',
    ]
    rng = random.Random(4)
    keys = [*DECODED, "x"]  # every field the decoders read, and one they do not
    generated = []
    for _ in range(400):
        members = [
            f'"{rng.choice(keys)}"{rng.choice(["", " "])}:{rng.choice(["", " "])}{rng.choice(scalars)}'
            for _ in range(rng.randint(0, 6))
        ]
        generated.append("{" + rng.choice([",", ", "]).join(members) + "}")
    return fixed + [f'{{"{key}":{value}}}' for key in keys[:-1] for value in scalars] + generated


def test_the_json_scanner_reads_and_checks_every_payload_as_json_value_does(base_settings):
    """The scanner (decoder "scan") may leave a payload to JSON_VALUE (negative code), but what it reads must
    equal what Flink's JSON_VALUE and TRY_CAST read from the same payload, and its rule code must be the
    first of the SQL rules (without the clock-dependent ones) that fails on the JSON_VALUE reading."""
    from pyflink.table import DataTypes

    from gridflow.operators import preprocess as ops
    from gridflow.preprocess.decode import NULL_INT, decode_batch
    from gridflow.preprocess.validation_sql import _JsonFields, _rules
    from gridflow.readings import ReadingBounds

    payloads = _tricky_payloads()
    tenv = preprocess.create_table_env(base_settings.with_overrides("flink.parallelism.default=1"))
    ops.register(tenv, base_settings, "test")
    table = tenv.from_elements(
        [(p,) for p in payloads], DataTypes.ROW([DataTypes.FIELD("payload", DataTypes.STRING())])
    )
    tenv.create_temporary_view("payloads", table)
    f = _JsonFields(inline=True)
    rules = [(code, cond) for code, _, cond, _ in _rules(f, base_settings.readings, 5000) if code not in (7, 15)]
    json_columns = {
        "v": f.text("v"),
        "household_id": f.text("household_id"),
        "meter_id": f.text("meter_id"),
        "ts_ms": f.ts(),
        "power_w": f.number("power_w"),
        "voltage_v": f.number("voltage_v"),
        "current_a": f.number("current_a"),
        "energy_kwh": f.number("energy_kwh"),
        "interval_s": f.interval(),
        "code": "CASE " + " ".join(f"WHEN {cond} THEN {code}" for code, cond in rules) + " ELSE 0 END",
    }
    names = [name for name, _ in ops.DECODED_FIELDS]
    query = (
        f"SELECT payload, {', '.join(f's.{n} AS s_{n}' for n in names)}, {', '.join(json_columns)} FROM "
        f"(SELECT payload, decode_readings(payload, FALSE) AS s, "
        f"{', '.join(f'{e} AS {n}' for n, e in json_columns.items())} FROM payloads)"
    )
    with tenv.execute_sql(query).collect() as rows:
        rows = [tuple(row) for row in rows]
    assert len(rows) == len(payloads)
    # the values the job's function does not return (only rejected records quote them, from JSON_VALUE) are
    # still read by the scanner to check them: compared from the decoder itself
    alone = decode_batch(
        [row[0] for row in rows], np.zeros(len(rows), dtype=bool), ReadingBounds.from_settings(base_settings.readings)
    )
    read, codes = 0, {}
    for i, row in enumerate(rows):
        payload, s, j = (
            row[0],
            dict(zip(names, row[1 : 1 + len(names)])),
            dict(zip(json_columns, row[1 + len(names) :])),
        )
        assert alone["code"][i] == s["code"], payload
        s.update({name: alone[name][i] for name in ("v", "voltage_v", "current_a")})
        codes[payload] = (s["code"], j["code"])
        if s["code"] < 0:
            continue
        read += 1
        assert s["code"] == j["code"], payload
        assert (None if s["v"] == NULL_INT else str(s["v"])) == j["v"], payload
        assert (None if s["ts_ms"] == NULL_INT else s["ts_ms"]) == j["ts_ms"], payload
        assert (None if s["interval_s"] == NULL_INT else s["interval_s"]) == j["interval_s"], payload
        assert (s["household_id"], s["meter_id"]) == (j["household_id"], j["meter_id"]), payload
        for name in ("power_w", "voltage_v", "current_a", "energy_kwh"):
            have = None if s[name] is None or s[name] != s[name] else s[name]
            assert str(have) == str(j[name]), payload  # str: equal, and the same sign of zero
    assert read >= 200, f"the scanner read only {read} of {len(payloads)} payloads itself"
    v2 = '{"v":2,"household_id":"h-1","meter_id":"m-1","ts_ms":1768435200000,'
    # version 2: a register-only and an interval reading are good readings; the new rules fail where they should
    for tail, code in [
        ('"energy_kwh":1532.118}', 0),
        ('"power_w":512.3,"interval_s":900}', 0),
        ('"energy_kwh":1,"interval_s":900.0}', 0),
        ('"energy_kwh":null,"power_w":null}', 8),
        ('"energy_kwh":-1}', 17),
        ('"energy_kwh":1,"interval_s":900.5}', 18),
        ('"energy_kwh":1,"interval_s":-0}', 18),
    ]:
        assert codes[v2 + tail] == (code, code), tail
    assert codes[v2 + '"energy_kwh":true}'][1] == 16 and codes[v2 + '"energy_kwh":"NaN"}'][1] == 16
    assert codes[v2 + '"power_w":"NaN","energy_kwh":1}'][1] == 9
    assert codes['{"v":3,"household_id":"h-1","meter_id":"m-1","ts_ms":1768435200000,"energy_kwh":1}'] == (2, 2)
