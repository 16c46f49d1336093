"""The per-meter anomaly detector as a Flink function (thin: the model is ``gridflow.analytics.anomaly``).

Keyed by household and meter (:func:`meter_key_of`), so every meter of a household is judged on its own
minutes. An event-time timer per meter fires ``anomaly.dropout_minutes`` after its last minute: if nothing
newer arrived by then (the watermark, moved by the other meters, passed it), the meter is silent and a
dropout alert goes out while it still is. The end of a bounded input is not silence.

Imports neither river nor scipy's pybind11 modules, so a job can run it in thread-mode Python workers.
"""

from __future__ import annotations

import orjson

from pyflink.common import Types
from pyflink.datastream import KeyedProcessFunction, OutputTag, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from gridflow.analytics.anomaly import AnomalyDetector, HouseholdState, meter_key
from gridflow.contracts import dead_letter, encode
from gridflow.settings import Settings

DEAD_LETTER = OutputTag("dead-letter", Types.STRING())
END_OF_INPUT_MS = 2**63 - 1  # the watermark of a finished bounded input (Long.MAX_VALUE)


def meter_key_of(payload: str) -> str:
    """Key of a feature record (household and meter); '' for a record without them (dead-lettered)."""
    try:
        return meter_key(orjson.loads(payload))
    except (ValueError, KeyError, TypeError, AttributeError):
        return ""


class DetectAnomalies(KeyedProcessFunction):
    def __init__(self, settings: Settings, source: str):
        self.settings, self.source = settings, source

    def open(self, runtime_context: RuntimeContext):
        self.state = runtime_context.get_state(ValueStateDescriptor("anomaly", Types.PICKLED_BYTE_ARRAY()))
        self.silence_timer = runtime_context.get_state(ValueStateDescriptor("silence-timer", Types.LONG()))
        self.detector = AnomalyDetector(self.settings.anomaly)
        group = runtime_context.get_metrics_group().add_group("gridflow")
        self.alerts = group.counter("alerts")
        self.silent = group.counter("silent_meter_alerts")

    def process_element(self, value: str, ctx):
        stored = self.state.value()
        state = HouseholdState() if stored is None else HouseholdState.from_dict(stored)
        try:
            alerts = self.detector.update(state, orjson.loads(value))
        except (ValueError, KeyError, TypeError) as error:
            yield DEAD_LETTER, dead_letter(value, f"not a usable feature record: {error}", self.source)
            return
        self.state.update(state.to_dict())
        if self.silence_timer.value() is None:  # one timer per meter at a time: re-armed when it fires
            self._arm(state, ctx)
        for alert in alerts:
            self.alerts.inc()
            yield encode(alert)

    def on_timer(self, timestamp: int, ctx):
        self.silence_timer.clear()
        if ctx.timer_service().current_watermark() >= END_OF_INPUT_MS:
            return  # the input ended: that is not the meter falling silent
        state = HouseholdState.from_dict(self.state.value())
        deadline = self.detector.silence_deadline_ms(state)
        if deadline is not None and deadline > timestamp:  # the meter sent since: wait for its new deadline
            self._arm(state, ctx)
            return
        alerts = self.detector.check_silence(state, state.household_id, timestamp)
        self.state.update(state.to_dict())
        for alert in alerts:
            self.alerts.inc()
            self.silent.inc()
            yield encode(alert)

    def _arm(self, state: HouseholdState, ctx) -> None:
        deadline = self.detector.silence_deadline_ms(state)
        if deadline is not None:
            ctx.timer_service().register_event_time_timer(deadline)
            self.silence_timer.update(deadline)
