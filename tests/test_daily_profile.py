"""daily_profile with windows of any duration, against today's fixed-window code and a brute force."""

from __future__ import annotations

import numpy as np
import pytest

from gridflow.preprocess import daily_profile
from gridflow.preprocess.profile import DAY_MS

MINUTE, QUARTER, HOUR = 60_000, 900_000, 3_600_000


def reference_fixed(
    time_of_day_ms, mean_w, *, slots=24, window_ms=60_000, min_coverage=0.5, peak_hours=(17, 18, 19, 20)
):
    """Frozen copy of daily_profile before duration_ms existed: duration_ms=None must match it."""
    offset = np.asarray(time_of_day_ms, dtype=np.int64)
    means = np.asarray(mean_w, dtype=np.float64)
    slot_ms = DAY_MS // slots
    ok = ~np.isnan(means)
    index = offset[ok] // slot_ms
    sums = np.bincount(index, weights=means[ok], minlength=slots)
    counts = np.bincount(index, minlength=slots)
    known = counts >= min_coverage * (slot_ms // window_ms)
    profile = np.full(slots, np.nan)
    profile[known] = sums[known] / counts[known]
    slot_h = slot_ms / 3_600_000
    values = profile[known]
    energy_kwh = float(values.sum() * slot_h / 1000.0)
    slot_hours = (np.arange(slots) * slot_ms) // 3_600_000
    in_peak = known & np.isin(slot_hours, list(peak_hours))
    mean = float(values.mean()) if values.size else 0.0
    peak = float(values.max()) if values.size else 0.0
    norm = profile / mean if mean > 0 else np.full(slots, np.nan)
    listed = lambda v: [None if np.isnan(x) else float(x) for x in v]  # noqa: E731
    return {
        "slots": slots,
        "profile_w": listed(profile),
        "profile_norm": listed(norm),
        "energy_kwh": energy_kwh,
        "peak_w": peak,
        "mean_w": mean,
        "load_factor": mean / peak if peak > 0 else None,
        "peak_share": float(profile[in_peak].sum() * slot_h / 1000.0 / energy_kwh) if energy_kwh > 0 else None,
        "coverage": float(known.mean()),
    }


def brute_force(starts, durations, means, *, slots, min_coverage, step=1000):
    """One value per ``step`` ms of the day (NaN where no window): slot mean and coverage read off directly."""
    grid = np.full(DAY_MS // step, np.nan)
    for s, d, m in zip(starts, durations, means):
        if not np.isnan(m):
            grid[s // step : min(s + d, DAY_MS) // step] = m
    per_slot = grid.reshape(slots, -1)
    covered = (~np.isnan(per_slot)).mean(axis=1)
    known = covered >= min_coverage
    profile = np.array([np.nanmean(row) if k else np.nan for row, k in zip(per_slot, known)])
    energy_kwh = np.nansum(profile) * (24 / slots) / 1000.0
    return profile, float(known.mean()), float(energy_kwh)


def assert_same(got, want):
    assert got.keys() == want.keys()
    for key, value in want.items():
        if isinstance(value, list):
            assert [v is None for v in got[key]] == [v is None for v in value], key
            assert [v for v in got[key] if v is not None] == pytest.approx(
                [v for v in value if v is not None], rel=1e-12
            ), key
        elif value is None:
            assert got[key] is None, key
        else:
            assert got[key] == pytest.approx(value, rel=1e-12), key


def random_fixed_day(rng, window_ms, slot_ms):
    """Windows on the window grid: a full, sparse or clumped day with NaNs and the odd repeated start."""
    grid = np.arange(0, DAY_MS, window_ms)
    kind = rng.integers(3)
    if kind == 0:
        starts = grid
    elif kind == 1:
        starts = np.sort(rng.choice(grid, size=rng.integers(0, grid.size // 3 + 1), replace=False))
    else:  # whole slots present or missing, so coverage thresholds matter
        keep = rng.random(DAY_MS // slot_ms) < 0.7
        starts = grid[keep[grid // slot_ms] & (rng.random(grid.size) < 0.8)]
    starts = np.concatenate([starts, rng.choice(grid, size=3)])  # daylight-saving style repeats
    means = rng.gamma(2.0, 400.0, size=starts.size)
    means[rng.random(starts.size) < 0.1] = np.nan
    return starts, means


@pytest.mark.parametrize("slots", [24, 48, 96])
@pytest.mark.parametrize("window_ms", [MINUTE, 5 * MINUTE, QUARTER])
def test_without_durations_matches_the_fixed_window_code(slots, window_ms):
    rng = np.random.default_rng(slots * 1000 + window_ms // MINUTE)
    slot_ms = DAY_MS // slots
    if slot_ms % window_ms:
        pytest.skip("window does not divide the slot")
    for _ in range(30):
        starts, means = random_fixed_day(rng, window_ms, slot_ms)
        min_coverage = float(rng.choice([0.1, 0.5, 0.8, 1.0]))
        kw = dict(slots=slots, window_ms=window_ms, min_coverage=min_coverage)
        assert_same(daily_profile(starts, means, **kw), reference_fixed(starts, means, **kw))


@pytest.mark.parametrize("slots", [24, 48, 96])
def test_random_durations_match_the_brute_force(slots):
    rng = np.random.default_rng(slots)
    for case in range(25):
        # back-to-back windows of whole seconds with gaps: crossing slots, the last one often past midnight
        durations = rng.choice([MINUTE, QUARTER, 30 * MINUTE, HOUR, 7_000, 2_345_000, 5 * HOUR], size=200)
        gaps = np.where(rng.random(200) < 0.3, rng.integers(1, 3_000, size=200) * 1000, 0)
        starts = rng.integers(0, 600) * 1000 + np.concatenate([[0], np.cumsum(durations + gaps)[:-1]])
        inside = starts < DAY_MS
        starts, durations = starts[inside], durations[inside]
        means = rng.gamma(2.0, 400.0, size=starts.size)
        means[rng.random(starts.size) < 0.1] = np.nan
        min_coverage = float(rng.choice([0.25, 0.5, 0.9, 1.0]))
        got = daily_profile(starts, means, slots=slots, duration_ms=durations, min_coverage=min_coverage)
        profile, coverage, energy = brute_force(starts, durations, means, slots=slots, min_coverage=min_coverage)
        assert [v is None for v in got["profile_w"]] == list(np.isnan(profile)), case
        assert np.array(got["profile_w"], dtype=float) == pytest.approx(profile, rel=1e-12, nan_ok=True)
        assert got["coverage"] == pytest.approx(coverage, rel=1e-12)
        assert got["energy_kwh"] == pytest.approx(energy, rel=1e-12)


@pytest.mark.parametrize("slots", [24, 48, 96])
def test_a_full_day_of_quarter_hours(slots):
    means = 100.0 + 10.0 * np.arange(96)  # 100, 110, ..., 1050 W
    p = daily_profile(np.arange(96) * QUARTER, means, slots=slots, duration_ms=np.full(96, QUARTER))
    assert p["coverage"] == 1.0
    assert p["energy_kwh"] == pytest.approx(float(np.sum(means * 0.25)) / 1000)
    assert p["energy_kwh"] == pytest.approx(13.8)  # (96 * 100 + 10 * 4560) W * 0.25 h
    per = 96 // slots  # slot k is the mean of quarter hours k*per .. k*per+per-1
    assert p["profile_w"][0] == pytest.approx(100.0 + 10.0 * (per - 1) / 2)
    assert p["peak_w"] == pytest.approx(1050.0 - 10.0 * (per - 1) / 2)


def test_an_hourly_meter_fills_four_quarter_hour_slots():
    means = np.where(np.arange(24) == 18, 3000.0, 1000.0)
    p = daily_profile(np.arange(24) * HOUR, means, slots=96, duration_ms=np.full(24, HOUR))
    assert p["coverage"] == 1.0
    assert p["profile_w"] == [3000.0 if 72 <= k < 76 else 1000.0 for k in range(96)]
    assert p["energy_kwh"] == pytest.approx(26.0)
    assert p["mean_w"] == pytest.approx(26_000 / 24)
    assert p["peak_share"] == pytest.approx(6.0 / 26.0)  # 17:00-21:00: 1 + 3 + 1 + 1 kWh


def test_a_window_across_a_slot_boundary_is_split():
    # 15 minutes from 10:50 at 600 W, 24 slots: 10 min in slot 10, 5 min in slot 11
    start = 10 * HOUR + 50 * MINUTE
    p = daily_profile([start], [600.0], slots=24, duration_ms=[QUARTER], min_coverage=0.01)
    assert p["profile_w"][10] == 600.0 and p["profile_w"][11] == 600.0
    p = daily_profile([start], [600.0], slots=24, duration_ms=[QUARTER], min_coverage=0.1)
    assert p["profile_w"][10] == 600.0 and p["profile_w"][11] is None  # 10/60 >= 0.1 > 5/60
    # with a 300 W quarter hour after it, slot 11 mixes 5 min at 600 W and 15 min at 300 W
    p = daily_profile(
        [start, start + QUARTER], [600.0, 300.0], slots=24, duration_ms=[QUARTER, QUARTER], min_coverage=0.3
    )
    assert p["profile_w"][11] == pytest.approx((5 * 600 + 15 * 300) / 20)  # 375 W
    assert p["profile_w"][10] is None  # 10 of 60 minutes


def test_a_window_past_midnight_keeps_only_its_part_of_the_day():
    # 23:30 for 2 h at 800 W: only 30 minutes are in this day, i.e. half of slot 23
    p = daily_profile([23 * HOUR + 30 * MINUTE], [800.0], slots=24, duration_ms=[2 * HOUR], min_coverage=0.5)
    assert p["profile_w"][23] == 800.0 and p["coverage"] == 1 / 24
    assert p["energy_kwh"] == pytest.approx(0.8)  # slot value times the slot's hour
    p = daily_profile([23 * HOUR + 30 * MINUTE], [800.0], slots=24, duration_ms=[2 * HOUR], min_coverage=0.51)
    assert p["profile_w"][23] is None and p["coverage"] == 0.0


def test_one_missing_quarter_hour_against_the_coverage_threshold():
    starts = np.delete(np.arange(96) * QUARTER, 41)  # 10:15-10:30 missing
    means = np.full(95, 500.0)
    means[40], means[41], means[42] = 200.0, 800.0, 1100.0  # slot 10: 200, (gap), 800, 1100 W
    durations = np.full(95, QUARTER)
    p = daily_profile(starts, means, slots=24, duration_ms=durations, min_coverage=0.5)
    assert p["profile_w"][10] == pytest.approx(700.0) and p["coverage"] == 1.0
    assert p["energy_kwh"] == pytest.approx(23 * 0.5 + 0.7)
    p = daily_profile(starts, means, slots=24, duration_ms=durations, min_coverage=1.0)
    assert p["profile_w"][10] is None and p["coverage"] == 23 / 24
    assert p["energy_kwh"] == pytest.approx(23 * 0.5)


def test_nan_means_cover_nothing():
    durations = np.full(4, QUARTER)
    p = daily_profile(np.arange(4) * QUARTER, [100.0, np.nan, 300.0, np.nan], slots=24, duration_ms=durations)
    assert p["profile_w"][0] == 200.0
    p = daily_profile(np.arange(4) * QUARTER, [100.0, np.nan, np.nan, np.nan], slots=24, duration_ms=durations)
    assert p["profile_w"][0] is None and p["coverage"] == 0.0 and p["energy_kwh"] == 0.0


def test_overlapping_windows_are_duration_weighted():
    # 0-20 min at 100 W and 10-30 min at 300 W in a 30-minute slot: 40 covered minutes, capped at 30
    starts, durations = [0, 10 * MINUTE], [20 * MINUTE, 20 * MINUTE]
    p = daily_profile(starts, [100.0, 300.0], slots=48, duration_ms=durations, min_coverage=1.0)
    assert p["profile_w"][0] == 200.0 and p["coverage"] == 1 / 48
    p = daily_profile(starts, [100.0, 300.0], slots=24, duration_ms=durations, min_coverage=0.7)
    assert p["profile_w"][0] is None  # 40 of 60 minutes
    p = daily_profile(starts, [100.0, 300.0], slots=24, duration_ms=durations, min_coverage=0.6)
    assert p["profile_w"][0] == 200.0


def test_window_ms_is_ignored_with_durations():
    p = daily_profile([0], [100.0], slots=24, window_ms=7_000, duration_ms=[HOUR])
    assert p["profile_w"][0] == 100.0
    with pytest.raises(ValueError, match="window_ms"):
        daily_profile([0], [100.0], slots=24, window_ms=7_000)


def test_an_empty_day():
    p = daily_profile([], [], slots=96, duration_ms=[])
    assert p["coverage"] == 0.0 and p["energy_kwh"] == 0.0 and p["peak_w"] == 0.0 and p["load_factor"] is None


@pytest.mark.parametrize(
    ("durations", "message"),
    [
        ([HOUR], "duration_ms must have the shape"),
        ([HOUR, HOUR, HOUR], "duration_ms must have the shape"),
        ([HOUR, 0], "duration_ms must be positive"),
        ([HOUR, -MINUTE], "duration_ms must be positive"),
        ([HOUR, 1.5], "duration_ms must hold whole numbers"),
        ([HOUR, np.nan], "duration_ms must hold whole numbers"),
    ],
)
def test_bad_durations_are_refused(durations, message):
    with pytest.raises(ValueError, match=message):
        daily_profile([0, HOUR], [1.0, 2.0], duration_ms=durations)
