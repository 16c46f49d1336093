"""Load shapes from the real datasets, and the simulated households built on them."""

import numpy as np
import pytest

from gridflow.datasets import fetch_datasets, load_citylearn, load_uci_household
from gridflow.devices.load_shapes import (
    DAY_S,
    LoadShapeLibrary,
    _fill_short_gaps,
    fleet_series,
    household_profile,
    household_series,
    timestamps_ms,
)

DAY_MS = DAY_S * 1000
T0_MS = 1_704_067_200_000  # 2024-01-01 00:00 UTC


@pytest.fixture(scope="module")
def uci(base_settings):
    fetch_datasets(base_settings)
    return load_uci_household(base_settings)


@pytest.fixture(scope="module")
def citylearn(base_settings):
    fetch_datasets(base_settings)
    return load_citylearn(base_settings)


@pytest.fixture(scope="module")
def uci_library(uci):
    return LoadShapeLibrary.from_uci(uci)


@pytest.fixture(scope="module")
def citylearn_library(citylearn):
    return LoadShapeLibrary.from_citylearn(citylearn)


@pytest.fixture(scope="module")
def library(uci_library, citylearn_library):
    return LoadShapeLibrary.combine([uci_library, citylearn_library])


def test_short_gaps_are_interpolated_long_and_edge_gaps_kept():
    nan = np.nan
    values = np.array([nan, 1.0, nan, nan, 4.0, nan, nan, nan, 8.0, nan])
    filled = _fill_short_gaps(values, max_gap=2)
    assert np.array_equal(filled, [nan, 1, 2, 3, 4, nan, nan, nan, 8, nan], equal_nan=True)


def test_uci_days_keep_mostly_complete_days_with_short_gaps_filled():
    minutes = np.arange(3 * 1440)
    power_w = 100.0 + minutes % 1440  # a ramp each day
    power_w[1440 + 600 : 1440 + 610] = np.nan  # day 1: 10 missing minutes, interpolated
    power_w[2 * 1440 + 100 : 2 * 1440 + 180] = np.nan  # day 2: 80 missing minutes (5.6 %), dropped
    library = LoadShapeLibrary.from_uci({"ts_ms": T0_MS + minutes * 60_000, "power_w": power_w})
    assert library.days_w.shape == (2, 1440) and library.slot_s == 60
    assert np.array_equal(library.days_w[1], 100.0 + np.arange(1440))  # the ramp, gap filled exactly
    gap_at_noon = power_w.copy()
    gap_at_noon[1440 + 600 : 1440 + 645] = np.nan  # 45 missing minutes in one gap: too long to fill
    assert LoadShapeLibrary.from_uci({"ts_ms": T0_MS + minutes * 60_000, "power_w": gap_at_noon}).n_days == 1


def test_uci_library_is_the_measured_days(uci, uci_library):
    assert uci_library.slots_per_day == 1440 and uci_library.sequence_names == ("uci",)
    assert 1_300 < uci_library.n_days < 1_441 and not np.isnan(uci_library.days_w).any()
    # the first whole day, 2006-12-17, has no gap: its profile is the readings themselves
    first = int(np.searchsorted(uci["ts_ms"], np.datetime64("2006-12-17", "ms").astype(np.int64)))
    assert np.array_equal(uci_library.days_w[0], uci["power_w"][first : first + 1440])
    assert 900 < uci_library.days_w.mean() < 1_300


def test_citylearn_library_is_17_homes_by_365_days(citylearn, citylearn_library):
    assert citylearn_library.days_w.shape == (17 * 365, 24) and citylearn_library.slot_s == 3600
    assert citylearn_library.sequence_names[16] == "citylearn:Building_17"
    assert np.array_equal(citylearn_library.sequence_length, np.full(17, 365))
    # a day starts with hour 1 (the file's first row is hour 24 of the previous day)
    assert np.array_equal(citylearn_library.days_w[0], citylearn["load_w"][0, 1:25])
    assert np.array_equal(citylearn_library.days_w[365], citylearn["load_w"][1, 1:25])
    assert np.array_equal(citylearn_library.profiles_w(3600), citylearn_library.days_w)


def test_hourly_days_are_upsampled_linearly(citylearn_library):
    quarter_hours = citylearn_library.profiles_w(900)
    assert quarter_hours.shape == (17 * 365, 96)
    day = citylearn_library.days_w[5]
    # 15-min slot centres at 7.5, 22.5, ... min; hourly values sit at 30, 90, ... min -> slot 4 (67.5 min)
    # lies 5/8 of the way from hour 0's value to hour 1's
    assert quarter_hours[5, 4] == pytest.approx(day[0] + 0.625 * (day[1] - day[0]))
    assert quarter_hours.mean() == pytest.approx(citylearn_library.days_w.mean(), rel=1e-12)


def test_combined_library_has_every_home(library, uci_library):
    assert library.slot_s == 60 and len(library.sequence_names) == 18
    assert library.n_days == uci_library.n_days + 17 * 365
    assert np.array_equal(library.days_w[: uci_library.n_days], uci_library.days_w)


def test_household_series_is_deterministic_per_seed(library):
    series = household_series(library, 42, T0_MS, 720, 10.0, seed=1)
    assert np.array_equal(series, household_series(library, 42, T0_MS, 720, 10.0, seed=1))
    assert not np.array_equal(series, household_series(library, 42, T0_MS, 720, 10.0, seed=2))
    assert not np.array_equal(series, household_series(library, 43, T0_MS, 720, 10.0, seed=1))
    # the same instant gives the same reading, whichever fleet or window it is computed in
    fleet = fleet_series(library, [7, 42, 99], T0_MS, 720, 10.0, seed=1)
    assert np.array_equal(fleet[1], series)
    halves = [household_series(library, 42, T0_MS + k * 3_600_000, 360, 10.0, seed=1) for k in (0, 1)]
    assert np.array_equal(np.concatenate(halves), series)


def test_household_series_is_non_negative_and_realistic(library):
    power_w = fleet_series(library, np.arange(2_000), T0_MS, 1440, 60.0, seed=3)
    assert power_w.shape == (2_000, 1440) and np.isfinite(power_w).all()
    assert power_w.min() >= 0.0
    assert 600 < power_w.mean() < 1_800
    assert 0.01 < np.median(power_w.std(axis=1) / power_w.mean(axis=1)) < 3  # not flat lines


def test_household_parameters_follow_their_distributions(library):
    profiles = [household_profile(library, index, seed=5) for index in range(3_000)]
    scale = np.array([p.scale for p in profiles])
    shift_s = np.array([p.shift_s for p in profiles])
    assert 0.95 < np.median(scale) < 1.05 and 0.31 < np.log(scale).std() < 0.39
    assert scale.min() >= 0.3 and scale.max() <= 3.0
    assert np.abs(shift_s).max() <= 5_400 and shift_s.min() < -4_500 and shift_s.max() > 4_500
    uci_share = np.mean([p.sequence == 0 for p in profiles])  # sequences drawn in proportion to their days
    assert uci_share == pytest.approx(library.sequence_length[0] / library.n_days, abs=0.03)
    assert len({p.sequence for p in profiles}) == 18


def test_a_household_replays_its_source_day_scaled_and_shifted(citylearn_library):
    profile = household_profile(citylearn_library, 11, seed=9)
    day, hour = 19_800, 13  # UTC day number since 1970-01-01, hour of the day
    at_ms = day * DAY_MS + int(profile.shift_s * 1000) + (hour * 3600 + 1800) * 1000  # centre of that hour
    power_w = household_series(citylearn_library, 11, at_ms, 1, 60.0, seed=9, noise_rel=0.0, noise_w=0.0)
    source_day = citylearn_library.sequence_start[profile.sequence] + (profile.first_day + day) % 365
    assert power_w[0] == pytest.approx(profile.scale * citylearn_library.days_w[source_day, hour])


def test_energy_scales_with_the_scale_factor(citylearn_library):
    # over a whole year (the source cycle) a household uses exactly `scale` times its home's energy
    households = np.arange(20)
    year_w = fleet_series(citylearn_library, households, T0_MS, 365 * 24, 3600.0, seed=4, noise_rel=0.0, noise_w=0.0)
    noisy_w = fleet_series(citylearn_library, households, T0_MS, 365 * 24, 3600.0, seed=4)
    for index, daily_w, noisy_daily_w in zip(households, year_w, noisy_w):
        profile = household_profile(citylearn_library, int(index), seed=4)
        rows = slice(profile.sequence * 365, (profile.sequence + 1) * 365)
        home_w = citylearn_library.days_w[rows].mean()
        assert daily_w.mean() == pytest.approx(profile.scale * home_w, rel=1e-9)
        assert noisy_daily_w.mean() == pytest.approx(profile.scale * home_w, rel=0.01)


def test_fleet_of_50000_households_for_an_hour(library):
    power_w = fleet_series(library, np.arange(50_000), T0_MS, 360, 10.0, seed=11)
    assert power_w.shape == (50_000, 360) and power_w.min() >= 0 and np.isfinite(power_w).all()
    assert np.array_equal(timestamps_ms(T0_MS, 3, 10.0), [T0_MS, T0_MS + 10_000, T0_MS + 20_000])
