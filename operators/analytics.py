"""Flink function of the clustering job (thin: the model is ``gridflow.analytics.clustering``).

``ClusterProfiles`` runs on one key (the grid): one online k-means over every household's daily profiles;
it emits ``("assignment", json)`` per learned profile and ``("centroids", json)`` at most every
``clustering.publish_every_s`` seconds (and whenever the model first becomes ready). The model lives in Flink
state (checkpointed). The anomaly job's function is ``gridflow.operators.anomaly`` (it imports no river or
scipy, so it can run in thread-mode workers).
"""

from __future__ import annotations

import json
import time

from pyflink.common import Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from gridflow.analytics.clustering import LoadProfileClusterer
from gridflow.contracts import SCHEMA_VERSION, dead_letter, encode
from gridflow.operators.anomaly import DEAD_LETTER
from gridflow.settings import Settings

ASSIGNMENT, CENTROIDS = "assignment", "centroids"
GRID = "grid"


def pair_type():
    return Types.TUPLE([Types.STRING(), Types.STRING()])


class ClusterProfiles(KeyedProcessFunction):
    def __init__(self, settings: Settings, source: str):
        self.settings, self.source = settings, source

    def open(self, runtime_context: RuntimeContext):
        self.model = runtime_context.get_state(ValueStateDescriptor("clusterer", Types.PICKLED_BYTE_ARRAY()))
        self.published = runtime_context.get_state(ValueStateDescriptor("published_ms", Types.LONG()))
        group = runtime_context.get_metrics_group().add_group("gridflow")
        self.assignments = group.counter("cluster_assignments")

    def process_element(self, value: str, ctx):
        model = self.model.value()
        model = LoadProfileClusterer.from_settings(self.settings) if model is None else model
        was_ready = model.is_initialised
        try:
            record = json.loads(value)
            assignment = model.learn_record(record)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            yield DEAD_LETTER, dead_letter(value, f"not a usable profile record: {error}", self.source)
            return
        self.model.update(model)
        if assignment is not None:
            self.assignments.inc()
            yield ASSIGNMENT, encode({"v": SCHEMA_VERSION, **assignment, "household_id": record["household_id"]})
        now_ms = int(time.time() * 1000)
        last = self.published.value()
        due = last is None or now_ms - last >= self.settings.clustering.publish_every_s * 1000
        if model.is_initialised and (due or not was_ready):
            self.published.update(now_ms)
            for centroid in model.centroids():
                yield CENTROIDS, encode({"v": SCHEMA_VERSION, **centroid, "ts_ms": now_ms})
