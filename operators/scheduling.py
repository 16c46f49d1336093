"""Flink functions of the scheduling job: fan price forecasts out to households, schedule each household.

Thin: state handling and JSON; the schedule itself is ``gridflow.scheduling.service.plan_day``.
Stream elements are ``(key, kind, payload)`` tuples, ``kind`` being ``appliance`` or ``forecast``.
"""
from __future__ import annotations

import json

from pyflink.common import Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor

from gridflow.scheduling.service import plan_day
from gridflow.settings import Settings

APPLIANCE, FORECAST = "appliance", "forecast"
MARKET = "market"  # one price zone per deployment of the job


def element_type():
    return Types.TUPLE([Types.STRING(), Types.STRING(), Types.STRING()])


def tag(kind: str):
    """JSON record -> ``(market, kind, payload)`` for the fan-out operator."""
    def to_element(payload: str):
        return MARKET, kind, payload
    return to_element


class MarketFanout(KeyedProcessFunction):
    """Remembers the households of the market and sends every new forecast to each of them (and the
    latest forecast to a household seen for the first time); appliance records pass through re-keyed."""

    def open(self, runtime_context: RuntimeContext):
        self.households = runtime_context.get_map_state(MapStateDescriptor("households", Types.STRING(), Types.BOOLEAN()))
        self.forecast = runtime_context.get_state(ValueStateDescriptor("forecast", Types.STRING()))

    def process_element(self, value, ctx):
        _, kind, payload = value
        if kind == FORECAST:
            self.forecast.update(payload)
            for household in self.households.keys():
                yield household, FORECAST, payload
            return
        household = json.loads(payload).get("household_id")
        if not household:
            return
        yield household, APPLIANCE, payload
        if not self.households.contains(household):
            self.households.put(household, True)
            latest = self.forecast.value()
            if latest is not None:
                yield household, FORECAST, latest


class HouseholdScheduler(KeyedProcessFunction):
    """Keeps a household's learned appliances and the latest forecast; emits a schedule on every change
    once both are known. Later schedules for the same ``start_ts_ms`` replace earlier ones."""

    def __init__(self, settings: Settings):
        self.settings = settings

    def open(self, runtime_context: RuntimeContext):
        self.appliances = runtime_context.get_map_state(MapStateDescriptor("appliances", Types.STRING(), Types.STRING()))
        self.forecast = runtime_context.get_state(ValueStateDescriptor("forecast", Types.STRING()))
        group = runtime_context.get_metrics_group().add_group("gridflow")
        self.schedules = group.counter("schedules")
        self.rejected = group.counter("schedule_inputs_rejected")

    def process_element(self, value, ctx):
        household, kind, payload = value
        record = json.loads(payload)
        if kind == FORECAST:
            self.forecast.update(payload)
        else:
            self.appliances.put(str(record.get("name")), payload)
        forecast = self.forecast.value()
        appliances = [json.loads(v) for v in self.appliances.values()]
        if forecast is None or not appliances:
            return
        try:
            plan = plan_day(household, appliances, json.loads(forecast), self.settings)
        except (ValueError, KeyError, TypeError) as error:  # a malformed record: count it, keep the job alive
            self.rejected.inc()
            plan = {"household_id": household, "error": f"cannot schedule: {error}"}
        self.schedules.inc()
        yield json.dumps(plan, separators=(",", ":"))
