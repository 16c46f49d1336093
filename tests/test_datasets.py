"""The real datasets: pinned files, the UCI household's known size and units, CityLearn's 17 homes, NL prices."""

import shutil

import numpy as np
import pytest

from gridflow.cli import main
from gridflow.datasets import (
    CITYLEARN,
    NL_DAY_AHEAD_PRICES,
    UCI_HOUSEHOLD,
    DatasetError,
    data_dir,
    fetch_datasets,
    load_citylearn,
    load_prices,
    load_uci_household,
)
from gridflow.settings import Settings

UCI_ROWS = 2_075_259
UCI_MISSING_ROWS = 25_979  # lines of the raw CSV holding "?"


@pytest.fixture(scope="module")
def data_settings(base_settings):
    fetch_datasets(base_settings)  # downloads ~40 MB the first time, then a no-op
    return base_settings


@pytest.fixture(scope="module")
def uci(data_settings):
    return load_uci_household(data_settings)


@pytest.fixture(scope="module")
def citylearn(data_settings):
    return load_citylearn(data_settings)


@pytest.fixture(scope="module")
def prices(data_settings):
    return load_prices(data_settings)


def test_missing_data_names_the_command_that_fetches_it(tmp_path):
    settings = Settings().with_overrides(f"data.cache_dir={tmp_path}")
    with pytest.raises(DatasetError, match="gridflow data fetch"):
        load_uci_household(settings)
    with pytest.raises(DatasetError, match="gridflow data fetch"):
        load_citylearn(settings)
    with pytest.raises(DatasetError, match="gridflow data fetch"):
        load_prices(settings)


def test_fetched_files_are_checked_against_their_digests(data_settings, tmp_path):
    folder = data_dir(data_settings)
    assert UCI_HOUSEHOLD.present(folder) and CITYLEARN.present(folder)
    (csv,) = UCI_HOUSEHOLD.paths(folder)
    shutil.copy(csv, tmp_path / csv.name)
    settings = Settings().with_overrides(f"data.cache_dir={tmp_path}")
    assert UCI_HOUSEHOLD.present(tmp_path)
    (tmp_path / csv.name).write_bytes(b"Date,Time\n")
    with pytest.raises(DatasetError, match="SHA-256"):
        load_uci_household(settings)


def test_uci_has_its_known_rows_and_gaps(uci):
    assert set(uci) == {
        "ts_ms",
        "power_w",
        "reactive_power_var",
        "voltage_v",
        "current_a",
        "kitchen_w",
        "laundry_w",
        "water_heater_ac_w",
    }
    assert all(len(values) == UCI_ROWS for values in uci.values())
    assert uci["ts_ms"].dtype == np.int64 and uci["power_w"].dtype == np.float64
    assert uci["ts_ms"][0] == np.datetime64("2006-12-16T17:24").astype("datetime64[ms]").astype(np.int64)
    assert uci["ts_ms"][-1] == np.datetime64("2010-11-26T21:02").astype("datetime64[ms]").astype(np.int64)
    assert np.all(np.diff(uci["ts_ms"]) == 60_000)  # one row per minute, no row missing from the file
    missing = np.isnan(uci["power_w"])
    assert missing.sum() == UCI_MISSING_ROWS
    for name in ("voltage_v", "kitchen_w", "laundry_w", "water_heater_ac_w"):
        assert np.array_equal(np.isnan(uci[name]), missing)


def test_uci_values_are_in_si_units(uci):
    ok = ~np.isnan(uci["power_w"])
    power_w = uci["power_w"][ok]
    assert 1_000 < power_w.mean() < 1_200  # the house averages ~1.09 kW
    assert 235 < uci["voltage_v"][ok].mean() < 245
    assert power_w.min() >= 0 and power_w.max() < 12_000
    # sub-meters are Wh per minute in the file: * 60 gives W, never more than the whole house draws
    sub_meters_w = uci["kitchen_w"][ok] + uci["laundry_w"][ok] + uci["water_heater_ac_w"][ok]
    assert np.mean(sub_meters_w <= power_w + 1e-6) > 0.999
    assert 0.3 < sub_meters_w.sum() / power_w.sum() < 0.7
    assert np.corrcoef(power_w, uci["voltage_v"][ok] * uci["current_a"][ok])[0, 1] > 0.99  # W ~ V * A


def test_uci_cache_serves_later_loads_without_parsing_the_csv(data_settings, uci, monkeypatch):
    """The second load reads the .npz the first wrote; parsing the 2-million-row CSV again would take ~10 s.
    (How long the cached load takes is measured in benchmarks, not asserted here.)"""
    import gridflow.datasets as datasets

    assert (data_dir(data_settings) / "uci_household_power.csv.npz").exists()

    def parse_again(csv):
        raise AssertionError(f"the cache was not used: {csv} parsed again")

    monkeypatch.setattr(datasets, "_parse_uci", parse_again)
    again = load_uci_household(data_settings)
    assert all(np.array_equal(again[name], uci[name], equal_nan=True) for name in uci)


def test_citylearn_has_17_homes_for_a_year(citylearn):
    assert citylearn["load_w"].shape == (17, 8760) and citylearn["pv_w_per_kw"].shape == (17, 8760)
    assert citylearn["price_per_kwh"].shape == (8760,)
    assert citylearn["load_w"][0, 0] == pytest.approx(2275.8)  # Building_1.csv first row: 2.2758 kWh
    assert (citylearn["hour"][0], citylearn["month"][0]) == (24, 7)
    assert np.array_equal(np.bincount(citylearn["hour"])[1:], np.full(24, 365))
    assert set(np.unique(citylearn["month"])) == set(range(1, 13))
    mean_load_w = citylearn["load_w"].mean(axis=1)
    assert np.all(citylearn["load_w"] >= 0) and np.all((500 < mean_load_w) & (mean_load_w < 2_000))
    night = citylearn["hour"] <= 4
    assert np.all(citylearn["pv_w_per_kw"][:, night] == 0)
    assert 500 < citylearn["pv_w_per_kw"].max() <= 1_000
    assert 0.1 < citylearn["price_per_kwh"].min() and citylearn["price_per_kwh"].max() < 1.0
    temperature = citylearn["temperature_c"]
    assert temperature.shape == (8760,) and temperature[0] == pytest.approx(20.0)  # weather.csv first row
    month_mean = np.array([temperature[citylearn["month"] == m].mean() for m in range(1, 13)])
    assert month_mean[6:9].mean() > month_mean[[0, 1, 11]].mean() + 5  # a northern summer: warmer Jul-Sep


def test_nl_prices_are_hourly_on_a_gap_free_utc_grid(data_settings, prices):
    assert NL_DAY_AHEAD_PRICES.present(data_dir(data_settings))
    assert set(prices) == {"ts_ms", "price_per_kwh", "utc_offset_minutes"}
    assert all(values.shape == (87_840,) for values in prices.values())  # 2015-01-01 .. 2025-01-07, 3660 days
    assert prices["ts_ms"].dtype == np.int64 and prices["price_per_kwh"].dtype == np.float64
    assert prices["ts_ms"][0] == np.datetime64("2015-01-01T00:00").astype("datetime64[ms]").astype(np.int64)
    assert prices["ts_ms"][-1] == np.datetime64("2025-01-07T23:00").astype("datetime64[ms]").astype(np.int64)
    assert np.all(np.diff(prices["ts_ms"]) == 3_600_000)  # UTC: strictly increasing, no DST jumps or repeats
    finite = np.isfinite(prices["price_per_kwh"])
    assert (~finite).sum() == 2 and finite.mean() > 0.9999  # 2023-12-30 23:00 and 2024-12-30 23:00 UTC
    price = prices["price_per_kwh"][finite]
    assert 0.03 < price.mean() < 0.15 and price.min() < 0 < price.max() < 1.0  # EUR/kWh, negative hours included
    offset = prices["utc_offset_minutes"]
    assert set(np.unique(offset)) == {60, 120} and offset[0] == 60  # CET in winter, CEST in summer
    july = prices["ts_ms"] == np.datetime64("2020-07-01T12:00").astype("datetime64[ms]").astype(np.int64)
    assert offset[july].tolist() == [120]


def test_cli_fetches_and_prints_the_folder(data_settings, capsys):
    folder = data_dir(data_settings)
    main(["data", "fetch", "--set", f"data.cache_dir={folder}"])
    assert capsys.readouterr().out.strip() == str(folder)
    main(["data", "path", "--set", "data.cache_dir=/nonexistent/gridflow-data"])
    assert capsys.readouterr().out.strip() == "/nonexistent/gridflow-data"


def test_stale_cache_is_parsed_again(data_settings, uci, tmp_path):
    (csv,) = UCI_HOUSEHOLD.paths(data_dir(data_settings))
    shutil.copy(csv, tmp_path / csv.name)
    (tmp_path / csv.with_suffix(".npz").name).write_bytes(b"not a zip file")
    parsed = load_uci_household(Settings().with_overrides(f"data.cache_dir={tmp_path}"))
    assert all(np.array_equal(parsed[name], uci[name], equal_nan=True) for name in uci)
    with np.load(tmp_path / csv.with_suffix(".npz").name) as stored:
        assert str(stored["source_sha256"]) == UCI_HOUSEHOLD.members[next(iter(UCI_HOUSEHOLD.members))]
