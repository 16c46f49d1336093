"""Day-ahead load forecasts for households and feeders (no Flink, no I/O).

A series is one household's (or one feeder's) average power per slot, laid out by day:
:class:`LoadDays` holds ``load_w`` of shape ``(n_series, n_days, slots_per_day)`` with NaN for unknown slots,
the calendar of each day and, where a site has it, the outdoor temperature per slot. The forecast for day
``d`` is made from days before ``d`` only (and from the calendar and temperature of day ``d``: the
temperature stands for a weather forecast). Models:

* ``naive_day`` -- the same slot one day earlier;
* ``naive_week`` -- the same slot one week earlier;
* ``linear`` -- per series, river's online linear regression (``StandardScaler | TargetStandardScaler(
  LinearRegression)``) on one-hot slot and weekday, the loads ``lag_days`` earlier at the same slot, the mean
  of the last week at that slot and the temperature; it learns each day after forecasting it;
* ``lightgbm`` -- one gradient-boosted tree model for every series together (a global model): each series is
  divided by its mean load over the last ``scale_days`` days, so a 300 W flat and a 3 kW house share what
  they have in common (the shape of a Sunday morning, the pull of a cold evening) and one model serves a
  fleet. Features: slot, weekday, holiday, the scaled lags, the last week's mean and spread at the slot,
  the previous day's mean, the temperature with its change on the previous day, and (setting
  ``load_forecast.day_of_year``, off by default: it did not help on one year of CityLearn nor on four of
  the UCI house) the day of year as sine and cosine.

:func:`backtest_load` runs a model through expanding-window folds (``lightgbm`` retrained at each). The
load-forecasting job keeps each household's recent profiles in a :class:`HouseholdLoad`, forecasts with
:func:`forecast_household` and publishes :func:`load_forecast_record`; ``gridflow forecast train-load``
lays the history's profiles out with :func:`profile_days` and fits the job's model with :func:`train`.

>>> import numpy as np
>>> load = np.arange(3 * 2 * 4, dtype=float).reshape(3, 2, 4)  # three homes, two days, four slots
>>> days = LoadDays(load, weekday=np.array([0, 1]), day_of_year=np.array([10, 11]))
>>> forecast_day(days, "naive_day", 1)[0].tolist()
[0.0, 1.0, 2.0, 3.0]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from gridflow.forecasting.evaluation import Split

LOAD_MODELS = ("naive_day", "naive_week", "linear", "lightgbm")


@dataclass(frozen=True, eq=False)
class LoadDays:
    """Loads of ``n_series`` series laid out by day, and the calendar they share.

    Parameters
    ----------
    load_w : numpy.ndarray, shape (n_series, n_days, slots)
        Average power per slot (W); NaN where unknown.
    weekday : numpy.ndarray, shape (n_days,)
        0 = Monday .. 6 = Sunday.
    day_of_year : numpy.ndarray, shape (n_days,)
        1..366.
    holiday : numpy.ndarray, shape (n_days,), optional
        True on public holidays.
    temperature_c : numpy.ndarray, shape (n_days, slots), optional
        Outdoor temperature per slot, one site for every series.
    """

    load_w: np.ndarray
    weekday: np.ndarray
    day_of_year: np.ndarray
    holiday: np.ndarray | None = None
    temperature_c: np.ndarray | None = None

    def __post_init__(self):
        load = np.asarray(self.load_w, dtype=np.float64)
        if load.ndim != 3 or min(load.shape) < 1:
            raise ValueError(f"load_w must have shape (n_series, n_days, slots), got {load.shape}")
        n_days, slots = load.shape[1], load.shape[2]
        if 1440 % slots:
            raise ValueError(f"slots per day must divide 1440 minutes, got {slots}")
        object.__setattr__(self, "load_w", load)
        for name, low, high in (("weekday", 0, 6), ("day_of_year", 1, 366)):
            values = np.asarray(getattr(self, name))
            if values.shape != (n_days,) or not np.issubdtype(values.dtype, np.integer):
                raise ValueError(f"{name} must be {n_days} integers (one per day), got shape {values.shape}")
            if values.size and (values.min() < low or values.max() > high):
                raise ValueError(f"{name} must lie in {low}..{high}, got {values.min()}..{values.max()}")
            object.__setattr__(self, name, values.astype(np.int64))
        if self.holiday is not None:
            holiday = np.asarray(self.holiday, dtype=bool)
            if holiday.shape != (n_days,):
                raise ValueError(f"holiday must be {n_days} booleans (one per day), got shape {holiday.shape}")
            object.__setattr__(self, "holiday", holiday)
        if self.temperature_c is not None:
            temperature = np.asarray(self.temperature_c, dtype=np.float64)
            if temperature.shape != (n_days, slots):
                raise ValueError(f"temperature_c must have shape {(n_days, slots)}, got {temperature.shape}")
            object.__setattr__(self, "temperature_c", temperature)

    @property
    def n_series(self) -> int:
        return self.load_w.shape[0]

    @property
    def n_days(self) -> int:
        return self.load_w.shape[1]

    @property
    def slots(self) -> int:
        return self.load_w.shape[2]

    def summed(self) -> LoadDays:
        """One series, the sum of every series (a feeder); a slot is unknown if any series lacks it."""
        return LoadDays(self.load_w.sum(axis=0, keepdims=True), self.weekday, self.day_of_year, self.holiday,
                        self.temperature_c)  # fmt: skip

    def without_temperature(self) -> LoadDays:
        return LoadDays(self.load_w, self.weekday, self.day_of_year, self.holiday, None)


def _settings():
    from gridflow.settings import LoadForecastSettings

    return LoadForecastSettings()


def _lagged(load: np.ndarray, day: int, back: int) -> np.ndarray:
    """``load[:, day - back]``, NaN when that day precedes the data."""
    if day - back < 0:
        return np.full((load.shape[0], load.shape[2]), np.nan)
    return load[:, day - back]


def _window(load: np.ndarray, day: int, length: int) -> np.ndarray:
    return load[:, max(0, day - length) : day]


def _nanmean(values: np.ndarray, axis) -> np.ndarray:
    count = np.sum(np.isfinite(values), axis=axis)
    total = np.nansum(values, axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


class GradientBoostedLoadModel:
    """The ``lightgbm`` model: one LightGBM regressor for every series, on loads scaled per series.

    Parameters are those of the ``load_forecast`` settings section (``lag_days``, ``scale_days``,
    ``gbm_*``, ``day_of_year``); a parameter not given takes its value from ``settings`` (that section),
    else its default there.
    """

    def __init__(
        self,
        lag_days: tuple[int, ...] | None = None,
        scale_days: int | None = None,
        rounds: int | None = None,
        learning_rate: float | None = None,
        num_leaves: int | None = None,
        min_data_in_leaf: int | None = None,
        threads: int | None = None,
        use_temperature: bool = True,
        use_day_of_year: bool | None = None,
        settings=None,
    ):
        d = settings or _settings()
        self.lag_days = tuple(sorted(d.lag_days if lag_days is None else lag_days))
        self.scale_days = d.scale_days if scale_days is None else int(scale_days)
        self.rounds = d.gbm_rounds if rounds is None else int(rounds)
        self.params = {
            "objective": "regression",
            "learning_rate": d.gbm_learning_rate if learning_rate is None else float(learning_rate),
            "num_leaves": d.gbm_num_leaves if num_leaves is None else int(num_leaves),
            "min_data_in_leaf": d.gbm_min_data_in_leaf if min_data_in_leaf is None else int(min_data_in_leaf),
            "num_threads": d.gbm_threads if threads is None else int(threads),
            "feature_fraction": 0.9,
            "seed": 7,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }
        self.use_temperature = use_temperature
        self.use_day_of_year = d.day_of_year if use_day_of_year is None else use_day_of_year
        self.booster: Any = None  # a lightgbm.Booster once fitted
        self.slots: int | None = None  # slots per day of the data it was fitted on

    def feature_names(self, days: LoadDays) -> list[str]:
        names = ["slot", "weekday", "holiday"] + (["doy_sin", "doy_cos"] if self.use_day_of_year else [])
        names += [f"lag_{back}d" for back in self.lag_days]
        names += ["week_slot_mean", "week_slot_std", "previous_day_mean"]
        if self.use_temperature and days.temperature_c is not None:
            names += ["temperature_c", "temperature_change_c"]
        return names

    def features(self, days: LoadDays, day: int) -> tuple[np.ndarray, np.ndarray]:
        """The feature rows of every series and slot of ``day`` (``n_series * slots`` rows, series-major)
        and each series' scale (W), from the days before ``day`` and the calendar of ``day``."""
        load, (n, _, slots) = days.load_w, days.load_w.shape
        scale = _nanmean(_window(load, day, self.scale_days).reshape(n, -1), axis=1)
        scale = np.where(np.isfinite(scale) & (scale > 1.0), scale, np.nan)  # an empty or dead series: no scale
        per = scale[:, None]
        week = _window(load, day, 7)
        columns = [
            np.broadcast_to(np.arange(slots, dtype=np.float64), (n, slots)),
            np.full((n, slots), float(days.weekday[day])),
            np.full((n, slots), float(days.holiday[day]) if days.holiday is not None else 0.0),
        ]
        if self.use_day_of_year:
            angle = 2 * math.pi * days.day_of_year[day] / 366
            columns += [np.full((n, slots), math.sin(angle)), np.full((n, slots), math.cos(angle))]
        columns += [_lagged(load, day, back) / per for back in self.lag_days]
        with np.errstate(invalid="ignore"):
            columns += [
                _nanmean(week, axis=1) / per,
                (np.nanstd(week, axis=1) if week.shape[1] else np.full((n, slots), np.nan)) / per,
                np.broadcast_to(_nanmean(_lagged(load, day, 1), axis=1)[:, None], (n, slots)) / per,
            ]
        if self.use_temperature and days.temperature_c is not None:
            today = days.temperature_c[day]
            yesterday = days.temperature_c[day - 1] if day > 0 else np.full(slots, np.nan)
            columns += [np.broadcast_to(today, (n, slots)), np.broadcast_to(today - yesterday, (n, slots))]
        rows = np.stack([np.asarray(c, dtype=np.float64) for c in columns], axis=-1).reshape(n * slots, -1)
        return rows, scale

    def fit(self, days: LoadDays, train_days: range) -> GradientBoostedLoadModel:
        """Train on every known slot of ``train_days`` (each day's features from the days before it)."""
        import lightgbm

        blocks, targets = [], []
        for day in train_days:
            rows, scale = self.features(days, day)
            blocks.append(rows)
            targets.append((days.load_w[:, day] / scale[:, None]).reshape(-1))
        if not blocks:
            raise ValueError("no training days")
        x, y = np.concatenate(blocks), np.concatenate(targets)
        known = np.isfinite(y)
        if known.sum() < self.params["min_data_in_leaf"] * 2:
            raise ValueError(f"{int(known.sum())} known slots to train on: too few for min_data_in_leaf")
        names = self.feature_names(days)
        data = lightgbm.Dataset(x[known], y[known], feature_name=names, categorical_feature=["slot", "weekday"])
        self.booster = lightgbm.train(self.params, data, num_boost_round=self.rounds)
        self.slots = days.slots
        return self

    def predict(self, days: LoadDays, day: int) -> np.ndarray:
        """``(n_series, slots)`` forecast of ``day`` (W); NaN for a series with no recent load to scale by."""
        if self.booster is None:
            raise ValueError("the model has not been fitted")
        rows, scale = self.features(days, day)
        scaled = self.booster.predict(rows, num_threads=self.params["num_threads"])
        return scaled.reshape(days.n_series, days.slots) * scale[:, None]

    FORMAT = "gridflow-load-gbm"

    def save(self, path) -> None:
        """Write the fitted model and the options its features depend on as one JSON file."""
        import json
        import os
        from pathlib import Path

        if self.booster is None:
            raise ValueError("the model has not been fitted")
        document = {
            "format": self.FORMAT,
            "version": 1,
            "lag_days": list(self.lag_days),
            "scale_days": self.scale_days,
            "use_temperature": self.use_temperature,
            "use_day_of_year": self.use_day_of_year,
            "threads": self.params["num_threads"],
            "slots": self.slots,
            "booster": self.booster.model_to_string(),
        }
        path = Path(path).expanduser()
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(document), encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path) -> GradientBoostedLoadModel:
        """A model :meth:`save` wrote; ValueError naming the file when it is not one."""
        import json
        from pathlib import Path

        import lightgbm

        path = Path(path).expanduser()
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except OSError as error:
            raise ValueError(f"load_forecast.model_file: cannot read {path}: {error.strerror}") from None
        except ValueError:
            raise ValueError(f"load_forecast.model_file: {path} is not JSON") from None
        if not isinstance(document, dict) or document.get("format") != cls.FORMAT or document.get("version") != 1:
            raise ValueError(
                f"load_forecast.model_file: {path} is not a load model of version 1 (write one with "
                "'gridflow forecast train-load')"
            )
        model = cls(
            lag_days=tuple(document["lag_days"]),
            scale_days=document["scale_days"],
            threads=document["threads"],
            use_temperature=document["use_temperature"],
            use_day_of_year=document["use_day_of_year"],
        )
        model.booster = lightgbm.Booster(model_str=document["booster"])
        model.slots = document["slots"]
        return model

    def check_features(self, days: LoadDays) -> None:
        """ValueError when ``days`` gives other features than the model was trained on (e.g. no temperature)."""
        wanted, given = list(self.booster.feature_name()), self.feature_names(days)
        if self.slots != days.slots:
            raise ValueError(f"the load model was trained on {self.slots} slots a day; this data has {days.slots}")
        if wanted != given:
            raise ValueError(f"the load model was trained on the features {wanted}; this data gives {given}")


class LinearLoadModel:
    """The ``linear`` model: one river regression per series, learning each day after forecasting it."""

    def __init__(
        self, n_series: int, lag_days: tuple[int, ...] | None = None, learning_rate: float | None = None, settings=None
    ):
        from river import compose, linear_model, optim, preprocessing

        d = settings or _settings()
        self.lag_days = tuple(sorted(d.lag_days if lag_days is None else lag_days))
        rate = d.linear_learning_rate if learning_rate is None else float(learning_rate)
        self.models = [
            compose.Pipeline(
                preprocessing.StandardScaler(),
                preprocessing.TargetStandardScaler(linear_model.LinearRegression(optimizer=optim.SGD(rate))),
            )
            for _ in range(n_series)
        ]

    def _rows(self, days: LoadDays, day: int) -> list[list[dict]]:
        load = days.load_w
        lags = [_lagged(load, day, back) for back in self.lag_days]
        week = _nanmean(_window(load, day, 7), axis=1)
        rows = []
        for series in range(days.n_series):
            fallback = week[series]
            fallback = np.where(np.isfinite(fallback), fallback, 0.0)
            series_rows = []
            for slot in range(days.slots):
                x = {f"slot_{slot}": 1.0, f"weekday_{days.weekday[day]}": 1.0, "week_slot_mean": fallback[slot]}
                for back, lag in zip(self.lag_days, lags):
                    value = lag[series, slot]
                    x[f"lag_{back}d"] = float(value) if math.isfinite(value) else float(fallback[slot])
                if days.temperature_c is not None and math.isfinite(days.temperature_c[day, slot]):
                    x["temperature_c"] = float(days.temperature_c[day, slot])
                series_rows.append(x)
            rows.append(series_rows)
        return rows

    def predict(self, days: LoadDays, day: int) -> np.ndarray:
        rows = self._rows(days, day)
        return np.array([[model.predict_one(x) for x in series] for model, series in zip(self.models, rows)])

    def learn(self, days: LoadDays, day: int) -> None:
        rows = self._rows(days, day)
        for series, (model, series_rows) in enumerate(zip(self.models, rows)):
            for slot, x in enumerate(series_rows):
                y = days.load_w[series, day, slot]
                if math.isfinite(y):
                    model.learn_one(x, float(y))


def forecast_day(days: LoadDays, model: str, day: int) -> np.ndarray:
    """A seasonal-naive forecast of ``day``: ``(n_series, slots)``, NaN where the earlier day is unknown."""
    if model == "naive_day":
        return _lagged(days.load_w, day, 1).copy()
    if model == "naive_week":
        return _lagged(days.load_w, day, 7).copy()
    raise ValueError(f"forecast_day takes naive_day or naive_week, got {model!r}")


def backtest_load(model: str, days: LoadDays, splits: list[Split], **params) -> np.ndarray:
    """Day-ahead forecasts of every test day of ``splits``, in order: ``(n_series, n_test_days, slots)``.

    ``lightgbm`` is retrained at the start of each fold on every day before it (from ``min_history_days``
    on, so that each training day has history behind it); ``linear`` learns every day in one pass, each
    after forecasting it; the naive models only look back. Every forecast of day ``d`` uses the loads of
    days before ``d`` and nothing after.

    Raises
    ------
    ValueError
        ``model`` is not one of :data:`LOAD_MODELS`, or a fold starts before ``min_history_days``.
    """
    if model not in LOAD_MODELS:
        raise ValueError(f"model must be one of {LOAD_MODELS}, got {model!r}")
    min_history = params.pop("min_history_days", _settings().min_history_days)
    if splits and splits[0].test_start < min_history + 1:
        raise ValueError(f"the first fold starts on day {splits[0].test_start}: leave min_history_days + 1 to train")
    test_days = [day for split in splits for day in range(split.test_start, split.test_stop)]
    out = np.full((days.n_series, len(test_days), days.slots), np.nan)
    if model in ("naive_day", "naive_week"):
        for i, day in enumerate(test_days):
            out[:, i] = forecast_day(days, model, day)
        return out
    if model == "linear":
        linear = LinearLoadModel(days.n_series, **params)
        position = {day: i for i, day in enumerate(test_days)}
        for day in range(min_history, max(test_days, default=0) + 1):
            if day in position:
                out[:, position[day]] = linear.predict(days, day)
            linear.learn(days, day)
        return out
    i = 0
    for split in splits:
        gbm = GradientBoostedLoadModel(**params).fit(days, range(min_history, split.test_start))
        for day in range(split.test_start, split.test_stop):
            out[:, i] = gbm.predict(days, day)
            i += 1
    return out


def load_error_metrics(actual, forecast, mape_floor_w: float = 0.0) -> dict[str, float]:
    """MAE and RMSE (W) over the slots whose load and forecast are both known, and MAPE (%) over those of
    them whose load exceeds ``mape_floor_w`` (a percentage of a near-zero load says nothing); ``n`` and
    ``n_mape`` count the slots of each."""
    actual, forecast = np.asarray(actual, dtype=np.float64), np.asarray(forecast, dtype=np.float64)
    if actual.shape != forecast.shape:
        raise ValueError(f"actual and forecast must have the same shape, got {actual.shape} and {forecast.shape}")
    known = np.isfinite(actual) & np.isfinite(forecast)
    error = (forecast - actual)[known]
    above = known & (actual > mape_floor_w)
    nan = math.nan
    return {
        "mae": float(np.mean(np.abs(error))) if error.size else nan,
        "rmse": math.sqrt(float(np.mean(error**2))) if error.size else nan,
        "mape": float(np.mean(np.abs(forecast - actual)[above] / actual[above]) * 100) if above.any() else nan,
        "n": int(error.size),
        "n_mape": int(above.sum()),
    }


def citylearn_days(data: dict[str, np.ndarray]) -> LoadDays:
    """CityLearn's 17 homes as hourly :class:`LoadDays` (365 days from 00:00), with the site's temperature.

    Row 0 of the files is hour 24 of a day (23:00-24:00), so rows 1..8760 and then row 0 make 365 whole
    days (the first from 1 August). Day types are EnergyPlus's, as CityLearn documents them: 1 = Sunday ..
    7 = Saturday, 8 = holiday (whose weekday is taken from the day before it).
    """

    def by_day(values: np.ndarray) -> np.ndarray:
        return np.roll(values, -1, axis=-1).reshape(*values.shape[:-1], 365, 24)

    day_type = by_day(data["day_type"])[:, 0]
    month = by_day(data["month"])[:, 0]
    holiday = day_type == 8
    weekday = (day_type - 2) % 7  # Monday = 0
    for i in np.flatnonzero(holiday):  # a holiday follows the day before it in the week
        weekday[i] = (weekday[i - 1] + 1) % 7 if i > 0 else (weekday[i + 1] - 1) % 7
    month_start = np.cumsum([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30])
    day_of_month = np.ones(365, dtype=np.int64)
    for i in range(1, 365):
        day_of_month[i] = day_of_month[i - 1] + 1 if month[i] == month[i - 1] else 1
    return LoadDays(
        by_day(data["load_w"]),
        weekday=weekday.astype(np.int64),
        day_of_year=(month_start[month - 1] + day_of_month).astype(np.int64),
        holiday=holiday,
        temperature_c=by_day(data["temperature_c"]),
    )


class HouseholdLoad:
    """What the load-forecasting job keeps for one household: its meters' daily profiles of the last
    ``keep_days`` local days and, for the ``linear`` model, its river regression. Small and picklable.

    A day's household load is the sum of the profiles of the meters seen that day (a slot unknown in one of
    them is unknown). Profiles of a day that has dropped out of the window are ignored.
    """

    def __init__(self, slots: int, keep_days: int):
        self.slots, self.keep_days = int(slots), int(keep_days)
        self.profiles: dict[str, dict[str, np.ndarray]] = {}  # day (YYYY-MM-DD) -> meter -> W per slot
        self.linear: LinearLoadModel | None = None
        self.learned_day: str | None = None  # the last day the linear model learned

    def add(self, day: str, meter: str, profile_w) -> bool:
        """Keep one meter's profile of ``day`` (a meter's day sent again replaces it); False, nothing kept, if
        the day is older than the window; ValueError if the profile does not have ``slots`` values."""
        values = np.array([np.nan if v is None else v for v in profile_w], dtype=np.float64)
        if values.shape != (self.slots,):
            raise ValueError(f"profile_w has {values.size} slots, this job forecasts {self.slots} per day")
        latest = max(self.profiles, default=day)
        if _day_number(day) <= _day_number(latest) - self.keep_days:
            return False
        self.profiles.setdefault(day, {})[meter] = values
        newest = _day_number(max(self.profiles))
        for old in [d for d in self.profiles if _day_number(d) <= newest - self.keep_days]:
            del self.profiles[old]
        return True

    @property
    def latest_day(self) -> str | None:
        return max(self.profiles, default=None)

    def days(self, through: str) -> tuple[LoadDays, int]:
        """The household as one series of :class:`LoadDays` over the ``keep_days`` days before ``through`` and
        ``through`` itself (NaN where no profile is kept), and the number of days that have one."""
        import datetime as dt

        last = _day_number(through)
        numbers = np.arange(last - self.keep_days, last + 1)
        load = np.full((1, numbers.size, self.slots), np.nan)
        known = 0
        for i, number in enumerate(numbers):
            meters = self.profiles.get(str(dt.date.fromordinal(int(number))))
            if meters:
                load[0, i] = np.sum(list(meters.values()), axis=0)
                known += 1
        return LoadDays(load, **_calendar([dt.date.fromordinal(int(n)) for n in numbers])), known


def _calendar(dates) -> dict[str, np.ndarray]:
    """The ``weekday`` and ``day_of_year`` arguments of :class:`LoadDays` for a list of dates."""
    return {
        "weekday": np.array([d.weekday() for d in dates], dtype=np.int64),
        "day_of_year": np.array([d.timetuple().tm_yday for d in dates], dtype=np.int64),
    }


def _day_number(day: str) -> int:
    import datetime as dt

    return dt.date.fromisoformat(day).toordinal()


def next_day(day: str) -> str:
    import datetime as dt

    return str(dt.date.fromordinal(_day_number(day) + 1))


def forecast_household(history: HouseholdLoad, model: str, booster=None, settings=None) -> tuple[np.ndarray, int]:
    """The forecast of the day after ``history``'s latest (W per slot, NaN where unknown) and the days of
    history it rests on. ``booster`` is a fitted :class:`GradientBoostedLoadModel` for ``lightgbm``; the
    ``linear`` model learns every complete day it has not learned yet, then forecasts."""
    d = settings or _settings()
    latest = history.latest_day
    if latest is None:
        raise ValueError("no profile kept yet")
    target = next_day(latest)
    days, known = history.days(target)
    last = days.n_days - 1  # the target day (its load unknown)
    if model in ("naive_day", "naive_week"):
        return forecast_day(days, model, last)[0], known
    if model == "lightgbm":
        if booster is None:
            raise ValueError("the lightgbm model needs a trained booster (load_forecast.model_file)")
        return booster.predict(days, last)[0], known
    if model != "linear":
        raise ValueError(f"model must be one of {LOAD_MODELS}, got {model!r}")
    if history.linear is None:
        history.linear = LinearLoadModel(1, settings=d)
    start = 0 if history.learned_day is None else last - (_day_number(target) - _day_number(history.learned_day)) + 1
    for day in range(max(start, 0), last):  # every kept day not learned yet, oldest first
        if np.isfinite(days.load_w[0, day]).any():
            history.linear.learn(days, day)
    history.learned_day = latest
    return history.linear.predict(days, last)[0], known


def profile_days(rows, slots: int) -> tuple[list[str], LoadDays]:
    """Households' daily profiles as :class:`LoadDays`: ``rows`` of ``(household_id, meter_id, day,
    profile_w)``; a household's day is the sum of its meters' profiles (the latest of each meter and day).
    Returns the households (the series, sorted) and the days from the first to the last day seen."""
    import datetime as dt

    latest: dict[tuple[str, str, str], list] = {}
    for household, meter, day, profile in rows:
        latest[(household, meter, day)] = profile
    if not latest:
        raise ValueError("no profiles")
    households = sorted({h for h, _, _ in latest})
    numbers = [_day_number(d) for _, _, d in latest]
    first, last = min(numbers), max(numbers)
    load = np.full((len(households), last - first + 1, slots), np.nan)
    seen = np.zeros(load.shape[:2], dtype=bool)
    row_of = {h: i for i, h in enumerate(households)}
    for (household, _, day), profile in sorted(latest.items()):
        values = np.array([np.nan if v is None else v for v in profile], dtype=np.float64)
        if values.shape != (slots,):
            raise ValueError(f"a profile of {household} on {day} has {values.size} slots, expected {slots}")
        i, j = row_of[household], _day_number(day) - first
        load[i, j] = values if not seen[i, j] else load[i, j] + values
        seen[i, j] = True
    return households, LoadDays(load, **_calendar([dt.date.fromordinal(n) for n in range(first, last + 1)]))


def train(days: LoadDays, settings=None) -> GradientBoostedLoadModel:
    """A :class:`GradientBoostedLoadModel` with the ``load_forecast`` settings, fitted on every day of
    ``days`` after the first ``min_history_days`` (without temperature: the job has no weather feed)."""
    d = settings or _settings()
    model = GradientBoostedLoadModel(use_temperature=False, settings=d)
    if days.n_days <= d.min_history_days:
        raise ValueError(
            f"{days.n_days} days of profiles: need more than load_forecast.min_history_days={d.min_history_days}"
        )
    return model.fit(days.without_temperature(), range(d.min_history_days, days.n_days))


def load_forecast_record(
    household_id: str, model: str, day: str, start_ts_ms: int, forecast_w, issued_ts_ms: int, history_days: int
) -> dict:
    """The ``load_forecast`` record (:class:`gridflow.contracts.records.LoadForecast`) of one household's
    forecast of local ``day`` starting at ``start_ts_ms``; ValueError when no slot is known."""
    values = np.asarray(forecast_w, dtype=np.float64)
    if not np.isfinite(values).any():
        raise ValueError("the forecast has no known slot")
    slot_minutes = 1440 // values.size
    peak = int(np.nanargmax(values))
    return {
        "v": 1,
        "household_id": household_id,
        "model": model,
        "issued_ts_ms": int(issued_ts_ms),
        "day": day,
        "start_ts_ms": int(start_ts_ms),
        "slot_minutes": slot_minutes,
        "slots": int(values.size),
        "load_w": [round(float(v), 1) if math.isfinite(v) else None for v in values],
        "energy_kwh": round(float(np.nansum(values)) * slot_minutes / 60_000, 3),
        "peak_w": round(float(values[peak]), 1),
        "peak_ts_ms": int(start_ts_ms) + peak * slot_minutes * 60_000,
        "history_days": int(history_days),
    }


def local_midnight_ms(day: str, zone: str) -> int:
    """The epoch milliseconds of local ``day``'s 00:00 in the IANA ``zone``."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    date = dt.date.fromisoformat(day)
    return int(dt.datetime(date.year, date.month, date.day, tzinfo=ZoneInfo(zone)).timestamp() * 1000)
