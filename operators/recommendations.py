"""Flink function of the recommendation job: a household's schedules, profiles and alerts -> recommendations.

Thin: the sentences and savings come from ``gridflow.recommendations``. Elements are ``(household, kind,
payload)``; a recommendation whose text has not changed since it was last sent is not sent again.
"""

from __future__ import annotations

import json
import time

from pyflink.common import Types
from pyflink.datastream import KeyedProcessFunction, MapFunction, OutputTag, RuntimeContext
from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor

from gridflow import recommendations
from gridflow.balancing import FeederState, load_feeders, schedule_problem
from gridflow.contracts import ContractError, dead_letter, household_id_of
from gridflow.settings import Settings

SCHEDULE, PROFILE, ALERT, LOAD_FORECAST = "schedule", "profile", "alert", "load_forecast"
DEAD_LETTER = OutputTag("dead-letter", Types.STRING())


def element_type():
    return Types.TUPLE([Types.STRING(), Types.STRING(), Types.STRING()])


def tag(kind: str):
    """JSON record -> ``(household_id, kind, payload)``; records without a household get an empty key."""

    def to_element(payload: str):
        return household_id_of(payload), kind, payload

    return to_element


class Recommend(KeyedProcessFunction):
    def __init__(self, settings: Settings):
        self.settings = settings

    def open(self, runtime_context: RuntimeContext):
        self.sent = runtime_context.get_map_state(MapStateDescriptor("sent", Types.STRING(), Types.STRING()))
        group = runtime_context.get_metrics_group().add_group("gridflow")
        self.count = group.counter("recommendations")
        self.savings = group.counter("recommended_savings_millicents")  # cumulative, currency / 100000

    def process_element(self, value, ctx):
        household, kind, payload = value  # the contract was checked at the source (read_contract)
        record, now_ms, s = json.loads(payload), int(time.time() * 1000), self.settings
        problem = schedule_problem(record) if kind == SCHEDULE else None
        if problem is not None:
            yield DEAD_LETTER, dead_letter(payload, ContractError(*problem), f"{kind} topic")
            return
        try:
            if kind == SCHEDULE:
                made = (
                    recommendations.from_schedule(record, s.preprocess.timezone, now_ms)
                    if "appliances" in record
                    else []
                )
            elif kind == PROFILE:
                made = recommendations.from_profile(record, s.tariff, s.preprocess.peak_hours, now_ms)
            elif kind == LOAD_FORECAST:
                made = recommendations.from_load_forecast(
                    record, s.tariff, s.preprocess.peak_hours, s.preprocess.timezone, now_ms
                )
            else:
                made = recommendations.from_alert(record, s.tariff.currency, now_ms)
        except (KeyError, TypeError, ValueError) as error:
            yield DEAD_LETTER, dead_letter(payload, f"malformed {kind} record: {error!r}", f"{kind} topic")
            return
        for rec in made:
            slot = f"{rec['kind']}:{rec.get('appliance') or rec.get('alert_type') or ''}"
            if self.sent.get(slot) == rec["text"]:
                continue
            self.sent.put(slot, rec["text"])
            self.count.inc()
            self.savings.inc(int(rec["saving_per_day"] * 100_000))
            yield json.dumps(rec, separators=(",", ":"))


class ToFeeder(MapFunction):
    """``(household, kind, payload)`` -> ``(feeder, kind, payload)`` from ``balancing.feeder_file``."""

    def __init__(self, settings: Settings):
        self.file, self.default = settings.balancing.feeder_file, settings.balancing.default_feeder

    def open(self, runtime_context: RuntimeContext):
        self.feeders = load_feeders(self.file) if self.file else {}

    def map(self, value):
        household, kind, payload = value
        return self.feeders.get(household, self.default), kind, payload


class FeederBalancer(KeyedProcessFunction):
    """A feeder's schedules, profiles and load forecasts -> grid requests to the most flexible households (one
    per change). A schedule or a load forecast rebalances the feeder; a profile only updates its base load."""

    def __init__(self, settings: Settings):
        self.settings = settings

    def open(self, runtime_context: RuntimeContext):
        self.state = runtime_context.get_state(ValueStateDescriptor("feeder", Types.PICKLED_BYTE_ARRAY()))
        self.requests = runtime_context.get_metrics_group().add_group("gridflow").counter("grid_requests")

    def process_element(self, value, ctx):
        _, kind, payload = value
        b = self.settings.balancing
        feeder = self.state.value() or FeederState(b.feeder_capacity_kw * 1000, b.max_requests_per_household)
        record = json.loads(payload)  # the contract was checked at the source (read_contract)
        if kind == PROFILE:
            feeder.update_profile(record)
            self.state.update(feeder)
            return
        if kind == LOAD_FORECAST:
            load = [float("nan") if v is None else v for v in record["load_w"]]
            feeder.update_load_forecast(record["household_id"], record["start_ts_ms"], record["slot_minutes"], load)
        else:
            try:
                feeder.update_schedule(record)
            except ValueError:
                return  # unusable: the household stream (Recommend) dead-letters it with the reason
        now_ms = int(time.time() * 1000)
        for request in feeder.rebalance():
            self.requests.inc()
            for rec in recommendations.from_grid_request(
                request, self.settings.preprocess.timezone, self.settings.tariff.currency, now_ms
            ):
                yield json.dumps(rec, separators=(",", ":"))
        self.state.update(feeder)
