"""Online day-ahead price forecaster over a stream of slot prices (no Flink, no I/O).

One price per slot arrives through :meth:`PriceForecaster.learn_one`, in slot order; :meth:`forecast_day_ahead`
returns the next ``horizon_slots`` prices from any later instant. Models:

* ``seasonal_naive`` -- the price one season (``season_slots``, a day by default; a week with
  ``season_slots=7 * slots_per_day``) earlier, repeated as far ahead as needed;
* ``linear`` -- multiple linear regression on the prices ``lag_days`` days earlier at the same slot, one-hot
  slot-of-day and one-hot weekday, as ``StandardScaler | TargetStandardScaler(LinearRegression)`` in river
  (online SGD); lags not yet known when forecasting are filled in with the model's own forecasts;
* ``snarimax`` -- river's SNARIMAX(p, d, q)(P, D, Q)\\ :sub:`season_slots` on a standardised linear regressor;
* ``holt_winters`` -- river's additive Holt-Winters with period ``season_slots``;
* ``mlp`` -- the ``linear`` model's features into river's multi-layer perceptron (one hidden layer of
  ``hidden_units`` ReLU units, online SGD), the small neural network of Touhs et al.'s comparison;
* ``lightgbm`` -- gradient-boosted trees (LightGBM) on the lags, the slot of day and the weekday, first
  fitted once a week of rows is learned, then refitted every ``refit_days`` days on the last
  ``window_days`` days (expanding until then); seasonal naive until the first fit.

Slots are ``slot_minutes`` long and aligned on the epoch (UTC); ``utc_offset_minutes`` shifts only the
calendar features (slot of day, weekday) to local time. Missing slots in the stream are allowed: they stay
unknown for the lag features and are filled with the seasonal-naive value for the recursive models, which
need every slot. The state is a few hundred floats plus the river model, and pickles.

>>> import numpy as np
>>> f = PriceForecaster("seasonal_naive", slot_minutes=60)
>>> for hour in range(48):
...     f.learn_one(hour * 3_600_000, float(hour % 24))
>>> f.forecast_day_ahead(48 * 3_600_000)[:4].tolist()
[0.0, 1.0, 2.0, 3.0]
"""

from __future__ import annotations

import math
import numbers
from collections import deque

import numpy as np
from river import compose, linear_model, optim, preprocessing, time_series

MODELS = ("seasonal_naive", "linear", "snarimax", "holt_winters", "mlp", "lightgbm")
_REGRESSIONS = ("linear", "mlp", "lightgbm")  # models on the lag and calendar features
_DAY_MS = 86_400_000
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)


def _check_int(name: str, value, low: int, high: float = math.inf) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= int(value) <= high:
        bound = f"[{low}, {high}]" if high < math.inf else f">= {low}"
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}")
    return int(value)


def _check_fraction(name: str, value, low: float = 0.0, high: float = 1.0) -> float:
    # value <= low, not low < value: typeshed's numbers.Real declares __le__ and __lt__ only (NaN fails <= high)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value <= low or not value <= high:
        raise ValueError(f"{name} must be a number in ({low}, {high}], got {value!r}")
    return float(value)


class PriceForecaster:
    """Day-ahead forecasts of a slot price stream with an online model.

    Parameters
    ----------
    model : {"seasonal_naive", "linear", "snarimax", "holt_winters"}
        Forecasting model (see the module docstring).
    slot_minutes : int
        Slot length, 1..60 dividing 1440; every learned price is the price of one slot.
    season_slots : int, optional
        Season in slots for ``seasonal_naive``, ``snarimax`` and ``holt_winters`` (default one day).
    horizon_slots : int, optional
        Slots per forecast, 1..7 days (default one day).
    lag_days : tuple of int
        ``linear``: lagged prices at the same slot this many days earlier (each 1..28).
    utc_offset_minutes : int
        Local time minus UTC for the calendar features, -720..840.
    learning_rate : float
        SGD step of the ``linear`` and ``snarimax`` regressors, in (0, 1].
    order : tuple of int
        ``snarimax``: (p, d, q), each 0..3.
    seasonal_order : tuple of int
        ``snarimax``: (P, D, Q) with P, Q in 0..2 and D in 0..1.
    smoothing : tuple of float
        ``holt_winters``: (alpha, beta, gamma) for level, trend and season, each in (0, 1]. A small beta
        lets the trend river initialises from the first season fade out.

    A parameter not given takes its default from the ``forecast`` settings section
    (``gridflow.settings.ForecastSettings``), the only place defaults live. Those of ``learning_rate``,
    ``order``, ``seasonal_order`` and ``smoothing`` were picked on Dutch prices of 2018-2019 (``benchmarks/evaluate_forecasting.py`` tests on 2020-2025).

    Raises
    ------
    ValueError
        A parameter is out of range; the message names it and the allowed values.
    """

    def __init__(
        self,
        model: str | None = None,
        slot_minutes: int | None = None,
        season_slots: int | None = None,
        horizon_slots: int | None = None,
        lag_days: tuple[int, ...] | None = None,
        utc_offset_minutes: int | None = None,
        learning_rate: float | None = None,
        order: tuple[int, ...] | None = None,
        seasonal_order: tuple[int, ...] | None = None,
        smoothing: tuple[float, ...] | None = None,
        hidden_units: int | None = None,
        refit_days: int | None = None,
        window_days: int | None = None,
    ):
        # A parameter not given is the default of the ``forecast`` settings (defaults live there only).
        from gridflow.settings import ForecastSettings

        d = ForecastSettings()
        model = d.model if model is None else model
        slot_minutes = d.slot_minutes if slot_minutes is None else slot_minutes
        lag_days = tuple(d.lag_days) if lag_days is None else lag_days
        utc_offset_minutes = d.utc_offset_minutes if utc_offset_minutes is None else utc_offset_minutes
        learning_rate = d.learning_rate if learning_rate is None else learning_rate
        order = tuple(d.snarimax_order) if order is None else order
        seasonal_order = tuple(d.snarimax_seasonal_order) if seasonal_order is None else seasonal_order
        smoothing = tuple(d.holt_winters_smoothing) if smoothing is None else smoothing
        self.hidden_units = _check_int(
            "hidden_units", d.mlp_hidden_units if hidden_units is None else hidden_units, 1, 256
        )
        self.refit_days = _check_int("refit_days", d.gbm_refit_days if refit_days is None else refit_days, 1, 365)
        self.window_days = _check_int("window_days", d.gbm_window_days if window_days is None else window_days, 7, 3660)
        if model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {model!r}")
        slot_minutes = _check_int("slot_minutes", slot_minutes, 1, 60)
        if 1440 % slot_minutes:
            raise ValueError(
                f"slot_minutes must divide 1440 (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60), got {slot_minutes}"
            )
        per_day = 1440 // slot_minutes
        self.model, self.slot_minutes, self.utc_offset_minutes = model, slot_minutes, utc_offset_minutes
        self.season_slots = _check_int(
            "season_slots", per_day if season_slots is None else season_slots, 1, 28 * per_day
        )
        self.horizon_slots = _check_int(
            "horizon_slots", per_day if horizon_slots is None else horizon_slots, 1, 7 * per_day
        )
        if isinstance(lag_days, (str, bytes)) or not hasattr(lag_days, "__iter__") or not lag_days:
            raise ValueError(f"lag_days must be a non-empty tuple of integers in [1, 28], got {lag_days!r}")
        self.lag_days = tuple(sorted({_check_int("lag_days", d, 1, 28) for d in lag_days}))
        _check_int("utc_offset_minutes", utc_offset_minutes, -720, 840)
        self.learning_rate = _check_fraction("learning_rate", learning_rate)
        self.order = tuple(_check_int("order", v, 0, 3) for v in self._triple("order", order))
        self.seasonal_order = tuple(
            _check_int("seasonal_order", v, 0, high)
            for v, high in zip(self._triple("seasonal_order", seasonal_order), (2, 1, 2))
        )
        if not hasattr(smoothing, "__len__") or len(smoothing) != 3:
            raise ValueError(f"smoothing must be (alpha, beta, gamma), each in (0, 1], got {smoothing!r}")
        self.smoothing = tuple(_check_fraction("smoothing", v) for v in smoothing)
        lags = [d * per_day for d in self.lag_days] if model in _REGRESSIONS else []
        self._capacity = max([self.season_slots, *lags, self.horizon_slots])
        self._history: deque[float] = deque(maxlen=self._capacity)  # last learned slots, NaN where missing
        self._last_slot: int | None = None
        self._n_learned = 0
        self._rows: deque[tuple[list[float], float]] = deque(maxlen=self.window_days * per_day)  # lightgbm
        self._since_fit = 0
        self._model = self._make_model()

    @classmethod
    def from_settings(cls, forecast) -> "PriceForecaster":
        """A forecaster configured by a ``gridflow.settings.ForecastSettings`` section."""
        per_day = 1440 // forecast.slot_minutes
        return cls(
            forecast.model,
            forecast.slot_minutes,
            forecast.season_days * per_day,
            forecast.horizon_days * per_day,
            tuple(forecast.lag_days),
            forecast.utc_offset_minutes,
            forecast.learning_rate,
            tuple(forecast.snarimax_order),
            tuple(forecast.snarimax_seasonal_order),
            tuple(forecast.holt_winters_smoothing),
            forecast.mlp_hidden_units,
            forecast.gbm_refit_days,
            forecast.gbm_window_days,
        )

    @staticmethod
    def _triple(name: str, value) -> tuple:
        if not hasattr(value, "__len__") or len(value) != 3:
            raise ValueError(f"{name} must be a tuple of three integers, got {value!r}")
        return tuple(value)

    def _make_model(self):
        per_day = 1440 // self.slot_minutes
        regressor = preprocessing.TargetStandardScaler(
            linear_model.LinearRegression(optimizer=optim.SGD(self.learning_rate), intercept_lr=self.learning_rate)
        )
        if self.model in ("linear", "mlp"):  # lags standardised; the one-hot calendar columns pass as 0/1
            lags = compose.Select(*(f"lag_{d}d" for d in self.lag_days)) | preprocessing.StandardScaler()
            calendar = compose.Select(*(f"slot_{s}" for s in range(per_day)), *(f"weekday_{d}" for d in range(7)))
            if self.model == "mlp":
                from river import neural_net

                relu, identity = neural_net.activations.ReLU, neural_net.activations.Identity
                network = neural_net.MLPRegressor(
                    hidden_dims=(self.hidden_units,),
                    activations=(relu, relu, identity),
                    optimizer=optim.SGD(self.learning_rate),
                    seed=7,
                )
                return (lags + calendar) | preprocessing.TargetStandardScaler(network)
            return (lags + calendar) | regressor
        if self.model == "snarimax":
            (p, d, q), (sp, sd, sq) = self.order, self.seasonal_order
            return time_series.SNARIMAX(
                p, d, q, m=self.season_slots, sp=sp, sd=sd, sq=sq, regressor=preprocessing.StandardScaler() | regressor
            )
        if self.model == "holt_winters":
            alpha, beta, gamma = self.smoothing
            return time_series.HoltWinters(alpha=alpha, beta=beta, gamma=gamma, seasonality=self.season_slots)
        return None

    @property
    def slot_ms(self) -> int:
        """Slot length in milliseconds."""
        return self.slot_minutes * 60_000

    @property
    def last_learned_ts_ms(self) -> int | None:
        """Start of the last learned slot (None before the first price)."""
        return None if self._last_slot is None else self._last_slot * self.slot_ms

    @property
    def n_learned(self) -> int:
        """Number of prices learned."""
        return self._n_learned

    def learn_one(self, ts_ms: int, price: float) -> None:
        """Learn the price of the slot holding ``ts_ms``.

        Parameters
        ----------
        ts_ms : int
            Any instant of the slot, UTC milliseconds; slots must come in increasing order (gaps allowed).
        price : float
            The slot's price (currency per kWh or per MWh, as long as it is always the same), finite.

        Raises
        ------
        ValueError
            ``price`` is not finite, or ``ts_ms`` is not an integer or falls in a slot at or before the
            last learned one (send each slot once, in order; aggregate finer prices upstream).
        """
        _check_int("ts_ms", ts_ms, 0)
        if isinstance(price, bool) or not isinstance(price, numbers.Real) or not math.isfinite(price):
            raise ValueError(f"price must be a finite number, got {price!r}")
        slot = ts_ms // self.slot_ms
        if self._last_slot is not None and slot <= self._last_slot:
            raise ValueError(
                f"ts_ms {ts_ms} is in slot {slot}, at or before the last learned slot "
                f"{self._last_slot}; slots must arrive once each, in increasing order"
            )
        if self._last_slot is not None:
            for missing in range(self._last_slot + 1, min(slot, self._last_slot + 1 + self._capacity)):
                self._step(missing, math.nan)
            if slot - self._last_slot - 1 > self._capacity:  # a gap longer than the memory: forget it all
                self._history.extend([math.nan] * self._capacity)
        self._step(slot, float(price))
        self._last_slot = slot
        self._n_learned += 1

    def _step(self, slot: int, price: float) -> None:
        if self.model in _REGRESSIONS:
            x = self._features(slot, self._history, len(self._history)) if math.isfinite(price) else None
            if x is not None and self.model != "lightgbm":
                self._model.learn_one(x, price)
            elif x is not None:
                self._rows.append((self._tree_row(slot, x), price))
                self._since_fit += 1
                per_day = 1440 // self.slot_minutes
                first = self._model is None and len(self._rows) >= 7 * per_day  # a week of rows to start
                if first or self._since_fit >= self.refit_days * per_day:
                    self._fit_trees()
        elif self._model is not None:
            value = price if math.isfinite(price) else self._naive(self._history, len(self._history))
            if math.isfinite(value):
                self._model.learn_one(value)
        self._history.append(price)

    def _tree_row(self, slot: int, x: dict[str, float]) -> list[float]:
        """The ``linear`` features of ``slot`` as one row for the trees: the lags, then slot of day and weekday
        as numbers."""
        slot_of_day, weekday = self._calendar(slot)
        return [x[f"lag_{d}d"] for d in self.lag_days] + [float(slot_of_day), float(weekday)]

    def _fit_trees(self) -> None:
        import lightgbm

        x = np.array([row for row, _ in self._rows])
        y = np.array([target for _, target in self._rows])
        names = [f"lag_{d}d" for d in self.lag_days] + ["slot", "weekday"]
        data = lightgbm.Dataset(x, y, feature_name=names, categorical_feature=["slot", "weekday"])
        params = {
            "objective": "regression",
            "learning_rate": 0.05,
            "num_leaves": 31,
            "min_data_in_leaf": 50,
            "num_threads": 1,
            "seed": 7,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }
        self._model = lightgbm.train(params, data, num_boost_round=200)
        self._since_fit = 0

    def _predict(self, slot: int, x: dict[str, float]) -> float:
        if self.model == "lightgbm":
            if self._model is None:
                return math.nan
            return float(self._model.predict(np.array([self._tree_row(slot, x)]), num_threads=1)[0])
        return self._model.predict_one(x)

    def _naive(self, values, now: int) -> float:
        """Seasonal-naive value for position ``now`` of ``values``: one season back, else the last known."""
        back = now - self.season_slots
        if 0 <= back < len(values) and math.isfinite(values[back]):
            return values[back]
        return next((v for v in reversed(list(values)[:now]) if math.isfinite(v)), math.nan)

    def _calendar(self, slot: int) -> tuple[int, int]:
        """Local slot of day and weekday (Monday = 0) of ``slot``."""
        local_ms = slot * self.slot_ms + self.utc_offset_minutes * 60_000
        return (local_ms % _DAY_MS) // self.slot_ms, (local_ms // _DAY_MS + _EPOCH_WEEKDAY) % 7

    def _features(self, slot: int, values, now: int) -> dict[str, float] | None:
        """Regression features of ``slot`` at position ``now`` of ``values`` (None if a lag is unknown)."""
        per_day = 1440 // self.slot_minutes
        x = {}
        for days in self.lag_days:
            back = now - days * per_day
            if back < 0 or not math.isfinite(values[back]):
                return None
            x[f"lag_{days}d"] = values[back]
        slot_of_day, weekday = self._calendar(slot)
        x.update({f"slot_{s}": float(s == slot_of_day) for s in range(per_day)})
        x.update({f"weekday_{d}": float(d == weekday) for d in range(7)})
        return x

    def forecast_day_ahead(self, from_ts_ms: int) -> np.ndarray:
        """Forecast ``horizon_slots`` prices from the slot holding ``from_ts_ms``.

        Parameters
        ----------
        from_ts_ms : int
            UTC milliseconds, in a slot after the last learned one (slots in between are forecast too).

        Returns
        -------
        numpy.ndarray
            ``horizon_slots`` float64 prices, slot by slot from the slot holding ``from_ts_ms``.

        Raises
        ------
        ValueError
            Fewer than ``season_slots`` prices learned, or ``from_ts_ms`` not after the last learned slot.
        """
        _check_int("from_ts_ms", from_ts_ms, 0)
        if self._n_learned < self.season_slots:
            raise ValueError(
                f"forecast_day_ahead needs at least season_slots={self.season_slots} learned "
                f"prices, has {self._n_learned}"
            )
        last = self._last_slot
        if last is None:  # learning sets it, and at least season_slots >= 1 prices were learned
            raise ValueError("forecast_day_ahead needs learned prices, has none")
        start = from_ts_ms // self.slot_ms
        if start <= last:
            raise ValueError(
                f"from_ts_ms {from_ts_ms} must be in a slot after the last learned slot "
                f"{last} (forecasts only look ahead)"
            )
        total = start - last - 1 + self.horizon_slots
        if self.model in ("snarimax", "holt_winters"):
            return np.asarray(self._model.forecast(total)[-self.horizon_slots :], dtype=np.float64)
        values = list(self._history)
        for i, value in enumerate(values):  # unknown past slots: their seasonal-naive value
            if not math.isfinite(value):
                values[i] = self._naive(values, i)
        for k in range(total):
            now, value = len(values), math.nan
            if self.model in _REGRESSIONS and (x := self._features(last + 1 + k, values, now)) is not None:
                value = self._predict(last + 1 + k, x)
            values.append(value if math.isfinite(value) else self._naive(values, now))
        return np.asarray(values[-self.horizon_slots :], dtype=np.float64)

    def __getstate__(self) -> dict:
        # river's Holt-Winters components are deques with their own __init__ and do not unpickle: keep
        # their values as lists and rebuild the model on load
        state = dict(self.__dict__)
        if self.model == "holt_winters":
            hw = self._model
            state["_model"] = {
                "level": list(hw.level),
                "trend": list(hw.trend),
                "season": list(hw.season),
                "first_values": list(hw._first_values),
                "initialized": hw._initialized,
            }
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self.model == "holt_winters":
            saved, self._model = state["_model"], self._make_model()
            self._model.level.extend(saved["level"])
            self._model.trend.extend(saved["trend"])
            self._model.season.extend(saved["season"])
            self._model._first_values = list(saved["first_values"])
            self._model._initialized = saved["initialized"]

    def __repr__(self) -> str:
        return (
            f"PriceForecaster(model={self.model!r}, slot_minutes={self.slot_minutes}, "
            f"season_slots={self.season_slots}, n_learned={self._n_learned})"
        )
