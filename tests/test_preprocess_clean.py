"""The pure preprocessing modules: hand-worked windows, the Cython kernel against its numpy reference,
the UCI household's real gaps, daily profiles across daylight saving, and the meter registry."""

import math
from dataclasses import asdict

import numpy as np
import pytest
from hypothesis import given, settings as hyp_settings, strategies as st

from gridflow.native.clean_reference import clean_window_reference
from gridflow.preprocess import CleaningParams, WindowFeatures, clean_window, clean_windows, daily_profile
from gridflow.preprocess.localtime import LocalClock
from gridflow.registry import RegistryError, load_registry, write_registry

P = CleaningParams(window_ms=60_000, step_ms=10_000, max_gap_ms=300_000)
HOUR = 3_600_000


def test_short_gap_is_interpolated_and_counted():
    f = clean_window([0, 10_000, 40_000, 50_000], [100.0, 100.0, 400.0, 400.0], 0, P)
    assert f.grid_w == [100.0, 100.0, 200.0, 300.0, 400.0, 400.0]
    assert (f.n_interpolated, f.n_missing, f.coverage) == (2, 0, 1.0)
    assert f.energy_wh == pytest.approx(1500.0 * 10 / 3600)


def test_long_gap_is_missing_not_invented():
    f = clean_window(
        [0, 10_000, 40_000, 50_000],
        [100.0, 100.0, 400.0, 400.0],
        0,
        CleaningParams(window_ms=60_000, step_ms=10_000, max_gap_ms=20_000),
    )
    assert f.grid_w == [100.0, 100.0, None, None, 400.0, 400.0]
    assert (f.n_missing, f.coverage, f.mean_w) == (2, 4 / 6, 250.0)
    assert f.energy_wh == pytest.approx(1000.0 * 10 / 3600)


def test_edge_readings_are_held_for_less_than_one_step_only():
    f = clean_window([25_000], [500.0], 0, P)
    assert f.grid_w == [None, None, 500.0, 500.0, None, None]
    assert f.n_interpolated == 1  # grid point 30 s has no reading in [30, 40) s


def test_duplicates_keep_the_first_reading():
    f = clean_window([0, 10_000, 10_000, 20_000], [1.0e2, 2.0e2, 9.0e2, 2.0e2], 0, P)
    assert (f.n_readings, f.n_duplicates) == (3, 1)
    assert f.raw_max_w == 200.0


def test_noise_floor_zeroes_sensor_noise():
    f = clean_window([0, 10_000, 20_000], [3.0, -4.0, 120.0], 0, P)
    assert f.grid_w[:3] == [0.0, 0.0, 120.0]


def test_hampel_replaces_an_interior_spike_by_its_window_median():
    f = clean_window(np.arange(6) * 10_000, [100.0, 102.0, 4000.0, 98.0, 101.0, 99.0], 0, P)
    assert f.outlier_values == [4000.0] and f.n_outliers == 1
    assert f.grid_w[2] == 101.0  # median of 100, 102, 4000, 98, 101
    assert f.raw_max_w == 4000.0 and f.peak_w == 102.0


def test_hampel_leaves_steps_and_small_wobbles_alone():
    step_at_end = clean_window(np.arange(6) * 10_000, [100.0] * 5 + [2100.0], 0, P)
    assert step_at_end.n_outliers == 0, "a window's last reading may be an appliance switching on"
    step_inside = clean_window(np.arange(6) * 10_000, [100.0] * 3 + [2100.0] * 3, 0, P)
    assert step_inside.n_outliers == 0
    wobble = clean_window(np.arange(6) * 10_000, [100.0, 100.0, 115.0, 100.0, 100.0, 100.0], 0, P)
    assert wobble.n_outliers == 0, "below the sigma floor of 20 W"


def test_peak_share_uses_local_hours():
    evening = 18 * HOUR
    assert clean_window([evening], [100.0], evening, P).peak_share == 1.0
    assert clean_window([evening], [100.0], evening, P, utc_offset_ms=-2 * HOUR).peak_share == 0.0
    assert clean_window([12 * HOUR], [100.0], 12 * HOUR, P).peak_share == 0.0


def test_stuck_run_counts_identical_readings_at_the_end():
    assert clean_window(np.arange(6) * 10_000, [5.0e2, 6e2, 7e2, 7e2, 7e2, 7e2], 0, P).stuck_run == 4


@pytest.mark.parametrize(
    "ts, power, name",
    [
        ([], [], "non-empty"),
        ([0, 60_000], [1.0, 2.0], "ts_ms must lie in the window"),
        ([0], [math.nan], "power_w must be finite"),
        ([0, 1], [1.0], "equally long"),
    ],
)
def test_bad_input_raises_value_error_naming_it(ts, power, name):
    with pytest.raises(ValueError, match=name):
        clean_window(ts, power, 0, P)


def test_bad_params_raise_value_error_naming_them():
    with pytest.raises(ValueError, match="hampel_window"):
        CleaningParams(hampel_window=4)
    with pytest.raises(ValueError, match="step_ms"):
        CleaningParams(window_ms=60_000, step_ms=7_000)


def _same(a, b):
    for key, x in asdict(a).items():
        y = getattr(b, key)
        if isinstance(x, list):
            assert len(x) == len(y), key
            for u, v in zip(x, y):
                assert (u is None and v is None) or u == pytest.approx(v, rel=1e-9, abs=1e-9), key
        elif x is None or y is None:
            assert x is y, key
        else:
            assert x == pytest.approx(y, rel=1e-9, abs=1e-9), key


window = st.integers(1, 40).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 59_999), min_size=n, max_size=n),
        st.lists(
            st.one_of(
                st.sampled_from([0.0, 3.0, 100.0, 100.0, 120.0, 5000.0, -200.0]),
                st.floats(-1000, 9000, allow_nan=False),
            ),
            min_size=n,
            max_size=n,
        ),
    )
)


@hyp_settings(max_examples=400, deadline=None)
@given(window, st.sampled_from([3, 5, 7, 9]), st.sampled_from([1_000, 10_000, 20_000]), st.integers(0, 60_000))
def test_kernel_equals_numpy_reference(data, hampel_window, step_ms, max_gap_ms):
    ts, power = data
    params = CleaningParams(window_ms=60_000, step_ms=step_ms, max_gap_ms=max_gap_ms, hampel_window=hampel_window)
    _same(clean_window(ts, power, 0, params), clean_window_reference(ts, power, 0, params))


@hyp_settings(max_examples=200, deadline=None)
@given(
    st.lists(window, min_size=1, max_size=12),
    st.sampled_from([3, 5, 7]),
    st.sampled_from([1_000, 10_000]),
    st.integers(0, 60_000),
    st.sampled_from([0, 3_600_000, -5 * 3_600_000]),
)
def test_batched_kernel_equals_one_window_at_a_time(windows, hampel_window, step_ms, max_gap_ms, utc_offset_ms):
    params = CleaningParams(window_ms=60_000, step_ms=step_ms, max_gap_ms=max_gap_ms, hampel_window=hampel_window)
    starts = np.arange(len(windows), dtype=np.int64) * 60_000 + 17 * HOUR
    ts = np.concatenate([start + np.array(t, dtype=np.int64) for start, (t, _) in zip(starts, windows)])
    power = np.concatenate([np.array(p, dtype=np.float64) for _, p in windows])
    offsets = np.concatenate([[0], np.cumsum([len(t) for t, _ in windows])])
    utc = np.full(len(windows), utc_offset_ms, dtype=np.int64)
    batched = clean_windows(ts, power, offsets, starts, params, utc)
    for w, (start, (t, p)) in enumerate(zip(starts, windows)):
        one = clean_window(start + np.array(t, dtype=np.int64), p, int(start), params, utc_offset_ms)
        assert WindowFeatures(**batched[w]) == one, w  # exactly equal: the same kernel, the same record


def test_batched_kernel_rejects_readings_outside_their_window_and_non_finite_power():
    ts, power, offsets = np.array([0, 10_000, 60_000]), np.array([1.0, 2.0, 3.0]), np.array([0, 2, 3])
    with pytest.raises(ValueError, match="window 1 .* must lie in the window"):
        clean_windows(ts, power, offsets, np.array([0, 120_000]), P)
    with pytest.raises(ValueError, match="window 0 .* power_w must be finite"):
        clean_windows(ts, np.array([math.nan, 2.0, 3.0]), offsets, np.array([0, 60_000]), P)
    with pytest.raises(ValueError, match="at least one reading"):
        clean_windows(ts, power, np.array([0, 0, 3]), np.array([0, 60_000]), P)


@pytest.fixture(scope="module")
def uci(base_settings):
    from gridflow.datasets import load_uci_household

    return load_uci_household(base_settings)


@pytest.mark.parametrize("first_row", [6_000, 189_000])  # a 2-minute gap; a 62-hour outage
def test_uci_hours_match_the_reference_and_its_gaps(uci, first_row):
    params = CleaningParams(window_ms=HOUR, step_ms=60_000, max_gap_ms=300_000)
    ts, power = uci["ts_ms"][first_row : first_row + 4 * 24 * 60], uci["power_w"][first_row : first_row + 4 * 24 * 60]
    starts = np.unique(ts - ts % HOUR)
    missing_total = readings = outliers = 0
    for start in starts[1:-1]:
        inside = (ts >= start) & (ts < start + HOUR) & ~np.isnan(power)
        if not inside.any():
            continue  # the job sees no window at all for an hour without readings
        f = clean_window(ts[inside], power[inside], int(start), params)
        _same(f, clean_window_reference(ts[inside], power[inside], int(start), params))
        in_hour = (ts >= start) & (ts < start + HOUR)
        if not np.isnan(power[in_hour]).any():
            assert f.n_missing == 0 and f.n_interpolated == 0
            if not f.n_outliers:
                assert f.mean_w == pytest.approx(np.mean(power[in_hour]), rel=1e-12)
        missing_total += f.n_missing
        readings, outliers = readings + f.n_readings, outliers + f.n_outliers
    long_gap = first_row == 189_000
    assert (missing_total > 0) == long_gap, "only gaps longer than max_gap become missing"
    # minute data: a 1-2 minute kettle run looks like a spike to a 7-reading Hampel window; with the
    # defaults 2.8 % of the first 200,000 UCI minutes are replaced, 8 % of this busy winter slice
    assert outliers / readings < 0.12


def test_daily_profile_on_a_daylight_saving_day():
    clock = LocalClock("Europe/Paris")
    midnight = 1_774_738_800_000  # 2026-03-29 00:00 CET; clocks jump from 02:00 to 03:00
    starts = midnight + np.arange(0, 23 * HOUR, HOUR)
    offsets = clock.time_of_day_ms(starts, midnight)
    assert offsets[2] == 3 * HOUR
    p = daily_profile(offsets, np.full(23, 100.0), slots=24, window_ms=HOUR)
    assert p["profile_w"][2] is None and p["coverage"] == 23 / 24 and p["profile_norm"][0] == 1.0


def test_daily_profile_requires_slot_coverage():
    starts = np.arange(0, 20) * 60_000  # 20 minutes of the first hour
    assert daily_profile(starts, np.full(20, 50.0), min_coverage=0.5)["profile_w"][0] is None
    assert daily_profile(starts, np.full(20, 50.0), min_coverage=0.3)["profile_w"][0] == 50.0


def test_registry_round_trip_and_errors(tmp_path):
    path = write_registry(tmp_path / "m.csv", [("h-2", "m-2"), ("h-1", "m-1")])
    assert load_registry(path) == {("h-1", "m-1"), ("h-2", "m-2")}
    (tmp_path / "bad.csv").write_text("household_id,meter_id\nh-1,m 1\n")
    with pytest.raises(RegistryError, match="line 2: meter_id"):
        load_registry(tmp_path / "bad.csv")
    (tmp_path / "nohead.csv").write_text("h-1,m-1\n")
    with pytest.raises(RegistryError, match="header"):
        load_registry(tmp_path / "nohead.csv")
    with pytest.raises(RegistryError, match="readings.registry_file"):
        load_registry(tmp_path / "absent.csv")
