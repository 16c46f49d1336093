"""The anomaly detector as a Flink function (thin: the model is ``gridflow.analytics.anomaly_batch``).

Keyed by bucket: each call gets one feature batch (a window of the bucket's meters, written by the
preprocessing job) and the bucket's :class:`~gridflow.analytics.anomaly_batch.MeterTable` (every meter of
the bucket as numpy columns, kept in Flink state as bytes), so Python is called once per bucket and window
instead of once per meter. Every meter of a household is judged on its own minutes.

Silence: one event-time timer per bucket at the earliest deadline of its meters (``anomaly.dropout_minutes``
after a meter's last minute). When the watermark (moved by the rest of the fleet) passes it, every meter
of the bucket silent by then raises a dropout alert while it still is; the end of a bounded input is not
silence.

Imports neither river nor scipy's pybind11 modules, so a job can run it in thread-mode Python workers.
"""

from __future__ import annotations

from pyflink.common import Types
from pyflink.datastream import KeyedProcessFunction, OutputTag, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from gridflow.analytics.anomaly_batch import BatchDetector, MeterTable
from gridflow.contracts import ContractError, dead_letter, encode
from gridflow.feature_batches import decode_batch
from gridflow.settings import Settings

DEAD_LETTER = OutputTag("dead-letter", Types.STRING())
END_OF_INPUT_MS = 2**63 - 1  # the watermark of a finished bounded input (Long.MAX_VALUE)


def bucket_key_of(row) -> str:
    """Key of a ``Row(record_key, payload)`` of the feature-batch topic: its Kafka key, the bucket."""
    return row[0] or ""


class DetectAnomalies(KeyedProcessFunction):
    """``Row(record_key, payload)`` feature batches -> alert JSON; unusable batches and features -> dead letters.

    Metrics (group ``gridflow``): ``features`` (feature records judged), ``features_rejected`` (dead
    letters), ``feature_batches``, ``alerts``, ``silent_meter_alerts``, ``meters`` (in this subtask's
    buckets)."""

    def __init__(self, settings: Settings, source: str):
        self.settings, self.source = settings, source

    def open(self, runtime_context: RuntimeContext):
        self.table_state = runtime_context.get_state(ValueStateDescriptor("meters", Types.PICKLED_BYTE_ARRAY()))
        self.detector = BatchDetector(self.settings.anomaly)
        group = runtime_context.get_metrics_group().add_group("gridflow")
        self.features = group.counter("features")
        self.rejected = group.counter("features_rejected")
        self.batches = group.counter("feature_batches")
        self.alerts = group.counter("alerts")
        self.silent = group.counter("silent_meter_alerts")
        self.meters = group.counter("meters")

    def _table(self) -> MeterTable:
        stored = self.table_state.value()
        return self.detector.new_table() if stored is None else MeterTable.from_bytes(stored)

    def process_element(self, value, ctx):
        key, payload = value[0], value[1]
        if payload is None:
            features, dead = [], [dead_letter("", ContractError("", "empty record (a Kafka tombstone)"), self.source)]
        else:
            features, dead = decode_batch(payload, key, self.source)
        self.batches.inc()
        for letter in dead:
            self.rejected.inc()
            yield DEAD_LETTER, letter
        if not features:
            return
        table = self._table()
        known = len(table)
        alerts = self.detector.update(table, features)
        self.features.inc(len(features))
        self.meters.inc(len(table) - known)
        self.table_state.update(table.to_bytes())
        self._arm(table, ctx)
        for alert in alerts:
            self.alerts.inc()
            yield encode(alert)

    def on_timer(self, timestamp: int, ctx):
        if ctx.timer_service().current_watermark() >= END_OF_INPUT_MS:
            return  # the input ended: that is not the meters falling silent
        table = self._table()
        alerts = self.detector.check_silence(table, timestamp)
        if alerts:
            self.table_state.update(table.to_bytes())
        self._arm(table, ctx)
        for alert in alerts:
            self.alerts.inc()
            self.silent.inc()
            yield encode(alert)

    def _arm(self, table: MeterTable, ctx) -> None:
        """A timer at the earliest silence deadline of the bucket's meters, after every batch and timer (a
        timer that finds the deadline moved on does nothing; one per bucket and minute at most)."""
        deadline = self.detector.silence_deadline_ms(table)
        if deadline is not None:
            ctx.timer_service().register_event_time_timer(deadline)
