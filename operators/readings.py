"""Flink functions for raw meter readings: parse/validate, event time, per-household window summaries.

Thin wrappers: the rules live in ``gridflow.readings`` and ``gridflow.summary``.
"""

from __future__ import annotations

import json
import time

from pyflink.common import Row, Types
from pyflink.datastream import OutputTag, ProcessFunction
from pyflink.datastream.functions import AggregateFunction, ProcessWindowFunction

from gridflow import summary
from gridflow.readings import InvalidReading, ReadingBounds, dead_letter, parse_reading


def reading_type():
    """Row type of a parsed reading. A fresh object per use: PyFlink caches Java type objects inside
    type infos, and an output tag whose type was already used elsewhere cannot be pickled."""
    return Types.ROW_NAMED(
        ["household_id", "meter_id", "ts_ms", "power_w"],
        [Types.STRING(), Types.STRING(), Types.LONG(), Types.DOUBLE()],
    )


def late_readings_tag() -> OutputTag:
    return OutputTag("late-readings", reading_type())


DEAD_LETTER = OutputTag("dead-letter", Types.STRING())
ACCUMULATOR_TYPE = Types.PICKLED_BYTE_ARRAY()


class ParseReadings(ProcessFunction):
    """JSON payload -> reading row; invalid payloads go to the ``dead-letter`` side output.

    The summaries are of power samples: interval and register readings (``interval_s``, or ``energy_kwh``
    alone) are valid but are no samples, and are counted (metric ``gridflow.readings_not_sampled``) and
    left to the preprocessing job, which turns them into spans."""

    def __init__(self, bounds: ReadingBounds, source: str):
        self.bounds = bounds
        self.source = source

    def open(self, runtime_context):
        self.not_sampled = runtime_context.get_metrics_group().add_group("gridflow").counter("readings_not_sampled")

    def process_element(self, value, ctx):
        try:
            reading = parse_reading(value, self.bounds, now_ms=int(time.time() * 1000))
        except InvalidReading as error:
            yield DEAD_LETTER, dead_letter(value, error, self.source)
            return
        if reading.power_w is None or reading.interval_s is not None:
            self.not_sampled.inc()
            return
        yield Row(reading.household_id, reading.meter_id, reading.ts_ms, reading.power_w)


class SummaryAggregate(AggregateFunction):
    def create_accumulator(self):
        return summary.new_accumulator()

    def add(self, value, accumulator):
        return summary.add(accumulator, value[3])

    def get_result(self, accumulator):
        return accumulator

    def merge(self, a, b):
        return summary.merge(a, b)


class EmitSummary(ProcessWindowFunction):
    def process(self, key, context, elements):
        window = context.window()
        for accumulator in elements:
            yield json.dumps(summary.summary(key, window.start, window.end, accumulator), separators=(",", ":"))


def late_dead_letter(source: str, allowed_lateness_ms: int):
    """Map function turning a late reading row into a dead-letter record."""

    def to_dead_letter(row) -> str:
        payload = json.dumps({"household_id": row[0], "meter_id": row[1], "ts_ms": row[2], "power_w": row[3]})
        reason = f"late: event time behind the watermark by more than the allowed lateness ({allowed_lateness_ms} ms)"
        return dead_letter(payload, InvalidReading("ts_ms", reason), source)

    return to_dead_letter
