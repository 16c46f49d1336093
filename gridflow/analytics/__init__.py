"""Pure analytics on the preprocessing job's records (no PyFlink import): online clustering of daily
load shapes and anomaly detection on per-minute meter features.

The names are imported on first use: the anomaly detector needs only numpy and the native DBSCAN, while the
clusterer imports river (and scipy), which thread-mode Python workers cannot import (see flink-conf).
"""

from importlib import import_module

_HOMES = {
    "ALERT_TYPES": "anomaly",
    "AnomalyDetector": "anomaly",
    "HouseholdState": "anomaly",
    "peer_outliers": "anomaly",
    "LoadProfileClusterer": "clustering",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_HOMES[name]}"), name)
