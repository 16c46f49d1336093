"""Interval and register readings turned into spans and feature fields (gridflow.preprocess.intervals),
against hand-worked cases."""

import json
import math

import numpy as np
import pytest

from gridflow.preprocess.intervals import IntervalParams, interval_windows

NAN = math.nan
Q = 900_000  # a quarter of an hour in ms


def _run(rows, offsets=None, params=IntervalParams(), utc=None):
    """``rows``: (ts, power, kwh, interval_s, prev_ts, prev_kwh, has_prev) per reading."""
    columns = list(zip(*rows))
    return interval_windows(
        ts_ms=columns[0],
        power_w=columns[1],
        energy_kwh=columns[2],
        interval_s=columns[3],
        prev_ts_ms=columns[4],
        prev_kwh=columns[5],
        has_prev=columns[6],
        offsets=offsets if offsets is not None else list(range(len(rows) + 1)),
        params=params,
        utc_offsets_ms=utc,
    )


def test_an_interval_reading_is_the_span_that_ends_at_its_time():
    out = _run([(10 * Q, 412.0, NAN, 900, 0, NAN, False)])
    (f,) = out.features
    assert (f["window_start_ms"], f["window_end_ms"]) == (9 * Q, 10 * Q)
    assert f["mean_w"] == 412.0 and f["energy_wh"] == pytest.approx(103.0)  # 412 W for a quarter hour
    assert (f["coverage"], f["n_readings"], f["n_duplicates"]) == (1.0, 1, 0)


def test_a_register_step_is_the_average_power_since_the_previous_reading():
    # 0.125 kWh in 15 min = 500 W
    (f,) = _run([(2 * Q, NAN, 1000.125, 0, Q, 1000.0, True)]).features
    assert (f["window_start_ms"], f["window_end_ms"]) == (Q, 2 * Q)
    assert f["mean_w"] == pytest.approx(500.0) and f["energy_wh"] == pytest.approx(125.0)


def test_a_register_that_wraps_at_its_digits_is_a_rollover():
    # 99_999.9 -> 0.1 on a 5-digit register: 0.2 kWh in 30 min = 400 W
    (f,) = _run([(3 * Q, NAN, 0.1, 0, Q, 99_999.9, True)]).features
    assert f["mean_w"] == pytest.approx(400.0) and f["window_start_ms"] == Q


def test_a_register_that_goes_back_otherwise_is_a_reset_and_a_dead_letter():
    out = _run([(2 * Q, NAN, 3.0, 0, Q, 5_000.0, True)])
    assert out.features == [None]
    ((index, field, reason),) = out.dead[0]
    assert (index, field) == (0, "energy_kwh")
    assert reason.startswith("the register went back from 5000.0 to 3.0 kWh, which is no rollover")


def test_a_rollover_that_would_be_faster_than_possible_is_a_reset():
    # 9_990 -> 3 as a rollover at 10_000 would be 13 kWh in 15 min = 52 kW, above 50 kW
    out = _run([(2 * Q, NAN, 3.0, 0, Q, 9_990.0, True)])
    assert out.features == [None] and out.dead[0][0][2].startswith("the register went back")


def test_an_impossible_rise_is_a_dead_letter_naming_the_bound():
    out = _run([(2 * Q, NAN, 120.0, 0, Q, 100.0, True)])  # 20 kWh in 15 min = 80 kW
    ((_, field, reason),) = out.dead[0]
    assert field == "energy_kwh" and "an average of 80000 W, above readings.power_w_max (50000 W)" in reason


def test_first_readings_and_readings_after_a_long_silence_start_a_span():
    out = _run(
        [
            (Q, NAN, 10.0, 0, Q, 10.0, False),  # the meter's first reading: its own predecessor
            (6 * Q, NAN, 11.0, 0, Q, 10.0, True),  # 75 minutes later: longer than the 1-hour default
            (7 * Q, NAN, 11.1, 0, 6 * Q, NAN, True),  # predecessor had no register
        ]
    )
    assert out.features == [None, None, None] and out.n_starts == 3 and out.dead == [[], [], []]
    (f,) = _run([(6 * Q, NAN, 11.0, 0, Q, 10.0, True)], params=IntervalParams(max_interval_ms=2 * 3_600_000)).features
    assert f["mean_w"] == pytest.approx(800.0)  # 1 kWh in 75 minutes


def test_a_redelivery_is_a_duplicate_and_not_a_second_span():
    out = _run([(2 * Q, 300.0, NAN, 900, Q, NAN, True), (2 * Q, 300.0, NAN, 900, 2 * Q, NAN, True)], offsets=[0, 2])
    (f,) = out.features
    assert (f["n_readings"], f["n_duplicates"], f["energy_wh"]) == (1, 1, pytest.approx(75.0))
    lone = _run([(2 * Q, NAN, 5.0, 0, 2 * Q, 5.0, True)])
    assert lone.features == [None] and lone.n_duplicates_unreported == 1


def test_several_spans_in_one_window_make_one_record_weighted_by_duration():
    # a register read every 10 s and once 20 s later: 100 W for 10 s, then 400 W for 20 s
    t0 = 1_768_435_200_000
    out = _run(
        [
            (t0 + 10_000, NAN, 1.0 + 100 * 10 / 3.6e6, 0, t0, 1.0, True),
            (t0 + 30_000, NAN, 1.0 + (100 * 10 + 400 * 20) / 3.6e6, 0, t0 + 10_000, 1.0 + 100 * 10 / 3.6e6, True),
        ],
        offsets=[0, 2],
    )
    (f,) = out.features
    assert (f["window_start_ms"], f["window_end_ms"], f["n_readings"]) == (t0, t0 + 30_000, 2)
    assert f["mean_w"] == pytest.approx(300.0, rel=1e-6)  # (100*10 + 400*20) / 30
    assert f["peak_w"] == pytest.approx(400.0, rel=1e-6) and f["min_w"] == pytest.approx(100.0, rel=1e-6)
    assert f["std_w"] == pytest.approx(math.sqrt((10 * 200**2 + 20 * 100**2) / 30), rel=1e-6)
    assert f["load_factor"] == pytest.approx(0.75, rel=1e-6)


def test_the_peak_share_splits_a_span_at_local_hour_boundaries():
    # an hour from 16:30 to 17:30 local time (UTC+1): half of it in the 17:00 peak hour
    day = 1_768_435_200_000
    start_utc = day + 15 * 3_600_000 + 1_800_000  # 15:30 UTC = 16:30 local
    (f,) = _run(
        [(start_utc + 3_600_000, 1000.0, NAN, 3600, 0, NAN, False)], utc=np.array([3_600_000], dtype=np.int64)
    ).features
    assert f["peak_share"] == pytest.approx(0.5)
    (f,) = _run([(start_utc + 3_600_000, 1000.0, NAN, 3600, 0, NAN, False)]).features  # UTC: 15:30-16:30
    assert f["peak_share"] == 0.0


def test_a_span_that_ended_at_midnight_counts_in_neither_day_of_a_profile(base_settings):
    from gridflow.operators.preprocess import DailyProfiles
    from gridflow.preprocess.localtime import LocalClock

    profiles = DailyProfiles(base_settings)
    profiles.clock = LocalClock("UTC")
    profiles.profiles = type("Counter", (), {"inc": lambda self: None})()
    day = 1_768_435_200_000
    # a 15-minute span ending at this day's midnight (it belongs to the day before), then the day's first hour
    starts = [day - Q] + [day + k * Q for k in range(4)]
    (row,) = profiles.eval("h-1", "m-1", day, "2026-01-15", starts, [s + Q for s in starts], [100.0] + [400.0] * 4)
    record = json.loads(row[2])
    assert record["profile_w"][0] == 400.0 and record["energy_kwh"] == pytest.approx(0.4)
    assert list(profiles.eval("h-1", "m-1", day, "2026-01-15", [day - Q], [day], [100.0])) == []
