"""Pure analytics on the preprocessing job's records (no PyFlink import): online clustering of daily
load shapes and anomaly detection on per-minute meter features."""
from gridflow.analytics.anomaly import ALERT_TYPES, AnomalyDetector, HouseholdState, peer_outliers
from gridflow.analytics.clustering import LoadProfileClusterer

__all__ = ["ALERT_TYPES", "AnomalyDetector", "HouseholdState", "LoadProfileClusterer", "peer_outliers"]
