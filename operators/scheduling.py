"""Flink functions of the scheduling job: fan price forecasts out to households, schedule each household.

Thin: state handling and JSON; the schedule itself is ``gridflow.scheduling.service.plan_day`` (appliances)
or ``gridflow.scheduling.home_service.plan_home_day`` (a home that sent its PV, battery or EV).
Stream elements are ``(key, kind, payload)`` tuples, ``kind`` being ``appliance``, ``forecast`` (prices),
``load_forecast`` (the household's own load tomorrow) or ``home_energy`` (its PV, battery and EV).
"""

from __future__ import annotations

import json

from pyflink.common import Types
from pyflink.datastream import KeyedProcessFunction, OutputTag, RuntimeContext
from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor

from gridflow.contracts import dead_letter, household_id_of
from gridflow.scheduling.heap_scheduler import ScheduleInfeasible
from gridflow.scheduling.home import PlanInfeasible
from gridflow.scheduling.home_service import home_energy_problem, plan_home_day
from gridflow.scheduling.service import appliance_in_horizon, forecast_prices, plan_day
from gridflow.settings import Settings

APPLIANCE, FORECAST, LOAD_FORECAST, HOME_ENERGY = "appliance", "forecast", "load_forecast", "home_energy"
MARKET = "market"  # one price zone per deployment of the job
DEAD_LETTER = OutputTag("dead-letter", Types.STRING())


def element_type():
    return Types.TUPLE([Types.STRING(), Types.STRING(), Types.STRING()])


def tag(kind: str):
    """JSON record -> ``(market, kind, payload)`` for the fan-out operator."""

    def to_element(payload: str):
        return MARKET, kind, payload

    return to_element


def to_household(payload: str):
    """A load-forecast record -> ``(household, load_forecast, payload)``: it goes to its household directly."""
    return household_id_of(payload), LOAD_FORECAST, payload


class MarketFanout(KeyedProcessFunction):
    """Remembers the households of the market and sends every new forecast to each of them (and the
    latest forecast to a household seen for the first time); appliance and home-energy records pass through
    re-keyed (a home with a battery but no learned appliance is planned too).
    A forecast the scheduler cannot use is dead-lettered here, once, instead of reaching every household."""

    def __init__(self, settings: Settings):
        self.slot_minutes = settings.scheduler.slot_minutes

    def open(self, runtime_context: RuntimeContext):
        self.households = runtime_context.get_map_state(
            MapStateDescriptor("households", Types.STRING(), Types.BOOLEAN())
        )
        self.forecast = runtime_context.get_state(ValueStateDescriptor("forecast", Types.STRING()))

    def process_element(self, value, ctx):
        _, kind, payload = value
        if kind == FORECAST:
            problem = forecast_problem(payload, self.slot_minutes)
            if problem:
                yield DEAD_LETTER, dead_letter(payload, problem, "price forecast topic")
                return
            self.forecast.update(payload)
            for household in self.households.keys():
                yield household, FORECAST, payload
            return
        household = household_id_of(payload)  # present: the contract was checked at the source (read_contract)
        yield household, kind, payload  # an appliance or the home's energy record
        if not self.households.contains(household):
            self.households.put(household, True)
            latest = self.forecast.value()
            if latest is not None:
                yield household, FORECAST, latest


class HouseholdScheduler(KeyedProcessFunction):
    """Keeps a household's learned appliances, the latest price forecast, its latest load forecast and its
    latest home-energy record; emits a schedule on every change once prices and appliances (or a home-energy
    record) are known, planned around the forecast base load once there is one and with the PV, battery and
    EV once the home has sent them. Later schedules for the same ``start_ts_ms`` replace earlier ones."""

    def __init__(self, settings: Settings):
        self.settings = settings

    def open(self, runtime_context: RuntimeContext):
        self.appliances = runtime_context.get_map_state(
            MapStateDescriptor("appliances", Types.STRING(), Types.STRING())
        )
        self.forecast = runtime_context.get_state(ValueStateDescriptor("forecast", Types.STRING()))
        self.load_forecast = runtime_context.get_state(ValueStateDescriptor("load_forecast", Types.STRING()))
        self.home_energy = runtime_context.get_state(ValueStateDescriptor("home_energy", Types.STRING()))
        group = runtime_context.get_metrics_group().add_group("gridflow")
        self.schedules = group.counter("schedules")
        self.rejected = group.counter("schedule_inputs_rejected")

    def process_element(self, value, ctx):
        household, kind, payload = value
        if kind == FORECAST:
            self.forecast.update(payload)
        elif kind == LOAD_FORECAST:  # kept its contract at the source (read_contract)
            self.load_forecast.update(payload)
        elif kind == HOME_ENERGY:  # kept its contract at the source; the battery and EV must also make sense
            problem = home_energy_problem(json.loads(payload))
            if problem:
                self.rejected.inc()
                yield DEAD_LETTER, dead_letter(payload, problem, "home energy topic")
                return
            self.home_energy.update(payload)
        else:
            problem = appliance_problem(payload, self.settings.scheduler.slot_minutes)
            if problem:
                self.rejected.inc()
                yield DEAD_LETTER, dead_letter(payload, problem, "appliance topic")
                return
            self.appliances.put(json.loads(payload)["name"], payload)
        forecast = self.forecast.value()
        appliances = [json.loads(v) for v in self.appliances.values()]
        home = self.home_energy.value()
        if forecast is None or not (appliances or home):
            return
        load = self.load_forecast.value()
        load_record = load and json.loads(load)
        try:
            if home is not None:
                plan = plan_home_day(
                    household, appliances, json.loads(forecast), self.settings, load_record, json.loads(home)
                )
            else:
                plan = plan_day(household, appliances, json.loads(forecast), self.settings, load_record)
        except (ValueError, KeyError, TypeError, ScheduleInfeasible) as error:
            # Each record was checked on arrival, so this is a combination the planner cannot solve: the
            # record that triggered it goes to the dead letters with the reason, nothing to the schedule
            # topic (which the downlink sends to the meter); an appliance that did it leaves the state.
            self.rejected.inc()
            if isinstance(error, PlanInfeasible):  # its battery or EV: planned without until the home sends
                self.home_energy.clear()  # one that can be planned (whichever record came last)
            elif kind == APPLIANCE:
                self.appliances.remove(json.loads(payload)["name"])
            yield DEAD_LETTER, dead_letter(payload, f"cannot schedule {household}: {error!r}", f"{kind} topic")
            return
        self.schedules.inc()
        yield json.dumps(plan, separators=(",", ":"))


def forecast_problem(payload: str, slot_minutes: int) -> str:
    """Why a price-forecast record cannot be scheduled against ('' when it can)."""
    try:
        record = json.loads(payload)
        if not isinstance(record, dict):
            return "not a JSON object"
        int(record["start_ts_ms"])
        forecast_prices(record, slot_minutes)
    except KeyError as missing:
        return f"price forecast: {missing.args[0]} is required"
    except (ValueError, TypeError) as error:
        return str(error) if str(error).startswith("price forecast") else f"price forecast: {error}"
    return ""


def appliance_problem(payload: str, slot_minutes: int) -> str:
    """Why a learned-appliance record cannot be scheduled ('' when it can)."""
    try:
        record = json.loads(payload)
        if not isinstance(record.get("name"), str) or not record["name"]:
            return "appliance: name must be a non-empty string"
        power = record["power_w"]
        if isinstance(power, bool) or not isinstance(power, (int, float)) or not 0 < power < 1e6:
            return f"appliance: power_w must be a number in (0, 1000000), got {power!r}"
        appliance_in_horizon(record, 0, slot_minutes, 10 * 1440 // slot_minutes)
    except KeyError as missing:
        return f"appliance: {missing.args[0]} is required"
    except (ValueError, TypeError) as error:
        return f"appliance: {error}"
    return ""
