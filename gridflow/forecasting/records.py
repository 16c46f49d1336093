"""The price-forecast record a forecasting operator publishes (JSON on the ``price_forecasts`` topic).

>>> forecast_record("NL", "linear", 1_700_000_000_000, 1_700_002_800_000, 60, [0.1, 0.12], "EUR")["slots"]
2
"""

from __future__ import annotations

import math

import numpy as np

from gridflow.contracts.core import SCHEMA_VERSION


def forecast_record(
    market: str, model: str, issued_ts_ms: int, start_ts_ms: int, slot_minutes: int, price_per_kwh, currency: str
) -> dict:
    """A JSON-ready forecast record.

    Parameters
    ----------
    market : str
        Price area the forecast is for (the Kafka key), e.g. ``"NL"``.
    model : str
        Forecaster model name (``PriceForecaster.model``).
    issued_ts_ms, start_ts_ms : int
        When the forecast was made and the start of its first slot (UTC ms).
    slot_minutes : int
        Slot length.
    price_per_kwh : array-like of float
        Forecast price per slot (currency/kWh), finite.
    currency : str
        ISO 4217 code.

    Returns
    -------
    dict
        ``{"v": 1, "market", "model", "issued_ts_ms", "start_ts_ms", "slot_minutes", "slots",
        "currency", "price_per_kwh": [...]}``.
    """
    prices = [float(p) for p in np.asarray(price_per_kwh, dtype=np.float64).reshape(-1)]
    if not prices or not all(math.isfinite(p) for p in prices):
        raise ValueError("price_per_kwh must be a non-empty sequence of finite numbers")
    return {
        "v": SCHEMA_VERSION,
        "market": str(market),
        "model": str(model),
        "issued_ts_ms": int(issued_ts_ms),
        "start_ts_ms": int(start_ts_ms),
        "slot_minutes": int(slot_minutes),
        "slots": len(prices),
        "currency": str(currency),
        "price_per_kwh": prices,
    }
