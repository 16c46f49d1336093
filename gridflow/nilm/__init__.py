"""Energy disaggregation (NILM) of whole-house one-minute readings into schedulable appliances (no Flink).

Hart-style steady-state edges with (real, reactive) power signatures paired into activations
(:mod:`~gridflow.nilm.events`), grouped by density peaks of their power, reactive power and duration
(:mod:`~gridflow.nilm.signatures`) and summarised as usage windows (:mod:`~gridflow.nilm.profiles`);
:class:`ApplianceLearner` does it online, one day at a time; :mod:`~gridflow.nilm.evaluation` scores it
against sub-meters.

>>> import numpy as np
>>> power = np.r_[np.full(5, 200.0), np.full(30, 1200.0), np.full(5, 200.0)]
>>> ApplianceLearner(horizon_start_minute=0).detect(power).power_w.tolist()
[1000.0]
"""

from gridflow.nilm.evaluation import (
    UCI_THRESHOLDS_W,
    SubmeterScore,
    evaluate_household,
    match_events,
    submeter_activations,
)
from gridflow.nilm.events import Activations, Edges, detect_edges, pair_edges, steady_states
from gridflow.nilm.learner import ApplianceLearner
from gridflow.nilm.profiles import ApplianceProfile, power_clusters, profile_from_activations
from gridflow.nilm.signatures import signature_clusters

__all__ = [
    "UCI_THRESHOLDS_W",
    "Activations",
    "ApplianceLearner",
    "ApplianceProfile",
    "Edges",
    "SubmeterScore",
    "detect_edges",
    "evaluate_household",
    "match_events",
    "pair_edges",
    "power_clusters",
    "profile_from_activations",
    "signature_clusters",
    "steady_states",
    "submeter_activations",
]
