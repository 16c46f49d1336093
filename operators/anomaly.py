"""The per-household anomaly detector as a Flink function (thin: the model is ``gridflow.analytics.anomaly``).

Imports neither river nor scipy's pybind11 modules, so a job can run it in thread-mode Python workers.
"""
from __future__ import annotations

import json

import orjson

from pyflink.common import Types
from pyflink.datastream import KeyedProcessFunction, OutputTag, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from gridflow.analytics.anomaly import AnomalyDetector, HouseholdState
from gridflow.readings import dead_letter
from gridflow.settings import Settings

DEAD_LETTER = OutputTag("dead-letter", Types.STRING())


def _json(record) -> str:
    return json.dumps(record, separators=(",", ":"))


class DetectAnomalies(KeyedProcessFunction):
    def __init__(self, settings: Settings, source: str):
        self.settings, self.source = settings, source

    def open(self, runtime_context: RuntimeContext):
        self.state = runtime_context.get_state(ValueStateDescriptor("anomaly", Types.PICKLED_BYTE_ARRAY()))
        self.detector = AnomalyDetector(self.settings.anomaly)
        self.alerts = runtime_context.get_metrics_group().add_group("gridflow").counter("alerts")

    def process_element(self, value: str, ctx):
        stored = self.state.value()
        state = HouseholdState() if stored is None else HouseholdState.from_dict(stored)
        try:
            alerts = self.detector.update(state, orjson.loads(value))
        except (ValueError, KeyError, TypeError) as error:
            yield DEAD_LETTER, dead_letter(value, f"not a usable feature record: {error}", self.source)
            return
        self.state.update(state.to_dict())
        for alert in alerts:
            self.alerts.inc()
            yield _json(alert)
