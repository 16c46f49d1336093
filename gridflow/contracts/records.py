"""The record of every topic, as typed dicts: what producers write and consumers may rely on.

Every record may carry ``v`` (its schema version, 1 when absent; producers always write it). Times are
UTC epoch milliseconds (``*_ms``), powers watts, energies Wh or kWh as named, prices per kWh in the
record's ``currency``. Producers build these dicts (checked by mypy); consumers validate them with
:meth:`gridflow.contracts.Contract.decode`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field
from typing_extensions import NotRequired, TypedDict

from gridflow.contracts.core import INTERVAL_S_MAX, INTERVAL_S_MIN, EpochMs, Identifier

Version = Literal[1]
ReadingVersion = Literal[1, 2]  # core.READING_VERSIONS
Watts = float
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Count = Annotated[int, Field(ge=0)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")]
Day = Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$", description="local calendar day, YYYY-MM-DD")]
PeakShare = Annotated[
    float | None,
    Field(
        description="share of the energy used in the peak hours; None without "
        "energy; may leave [0, 1] when the meter exports (PV)"
    ),
]
SlotMinutes = Annotated[int, Field(ge=1, le=1440)]
_TOLERANT = ConfigDict(extra="allow")  # consumers keep fields a newer producer added within the version


class Reading(TypedDict):
    """One meter reading (``topics.readings``, published by the meters over MQTT, key: household). It carries
    ``power_w``, an ``energy_kwh`` register, or both; with ``interval_s``, ``power_w`` is the average over the
    ``interval_s`` seconds ending at ``ts_ms`` (version 2)."""

    # the contract checks power_w-or-energy_kwh itself (Contract.required_unless); the schema says it here
    __pydantic_config__ = ConfigDict(  # type: ignore[misc]
        extra="forbid", json_schema_extra={"anyOf": [{"required": ["power_w"]}, {"required": ["energy_kwh"]}]}
    )
    v: NotRequired[ReadingVersion]
    household_id: Identifier
    meter_id: Identifier
    ts_ms: EpochMs
    power_w: NotRequired[Watts]
    voltage_v: NotRequired[float]
    current_a: NotRequired[float]
    energy_kwh: NotRequired[Annotated[float, Field(ge=0.0, description="cumulative import register, kWh")]]
    interval_s: NotRequired[
        Annotated[
            int,
            Field(
                ge=INTERVAL_S_MIN,
                le=INTERVAL_S_MAX,
                description="power_w is the average over the interval_s seconds ending at ts_ms",
            ),
        ]
    ]
    channels_w: NotRequired[dict[str, float]]


class ImportedFile(TypedDict):
    """One file ``gridflow import`` sent onto a topic (``topics.imports``, key: the file's SHA-256), written
    once all its records were acknowledged: the ledger a later import of the same file is checked against."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]
    v: NotRequired[Version]
    file_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    file: str
    kind: Literal["readings", "prices"]
    topic: str
    rows: Count
    records: Count
    bad_rows: Count
    imported_ms: EpochMs
    first_ts_ms: NotRequired[EpochMs]
    last_ts_ms: NotRequired[EpochMs]


class DeadLetter(TypedDict):
    """A record some stage could not accept, kept verbatim with the field and the reason."""

    __pydantic_config__ = _TOLERANT  # type: ignore[misc]
    v: NotRequired[Version]
    source: str
    field: str
    reason: str
    payload: str
    ts_ms: NotRequired[int]


class Summary(TypedDict):
    """A household's readings over one window (``topics.summaries``, the reading-summary job)."""

    __pydantic_config__ = _TOLERANT  # type: ignore[misc]
    v: NotRequired[Version]
    household_id: Identifier
    window_start_ms: EpochMs
    window_end_ms: EpochMs
    readings: Annotated[int, Field(ge=1)]
    mean_power_w: Watts
    peak_power_w: Watts
    min_power_w: Watts
    energy_kwh: float
    load_factor: float | None


class Feature(TypedDict):
    """One meter's cleaned window (``topics.features``, the preprocessing job, key: household)."""

    __pydantic_config__ = _TOLERANT  # type: ignore[misc]
    v: NotRequired[Version]
    household_id: Identifier
    meter_id: Identifier
    window_start_ms: EpochMs
    window_end_ms: EpochMs
    n_readings: Count
    n_duplicates: Count
    n_missing: Count
    n_interpolated: Count
    n_outliers: Count
    coverage: Fraction
    energy_wh: float
    mean_w: Watts
    peak_w: Watts
    min_w: Watts
    std_w: Annotated[float, Field(ge=0.0)]
    load_factor: float | None  # None for a window without load (peak 0)
    peak_share: PeakShare
    raw_max_w: Watts
    stuck_run: Count
    grid_w: list[float | None]
    outlier_values: list[float]
    emitted_ms: EpochMs


class FeatureBatch(TypedDict):
    """One window's feature records of a bucket of meters (``topics.feature_batches``, the preprocessing job,
    key: the bucket). The anomaly job reads these: a call per bucket and window instead of one per meter.
    A meter's bucket is fixed (:func:`gridflow.feature_batches.bucket_of`), so its windows stay in order."""

    __pydantic_config__ = _TOLERANT  # type: ignore[misc]
    v: NotRequired[Version]
    bucket: Annotated[int, Field(ge=0)]
    window_start_ms: EpochMs
    window_end_ms: EpochMs
    features: list[Feature]


class Profile(TypedDict):
    """One meter's load over one local day (``topics.profiles``, the preprocessing job, key: household)."""

    __pydantic_config__ = _TOLERANT  # type: ignore[misc]
    v: NotRequired[Version]
    household_id: Identifier
    meter_id: Identifier
    day: Day
    day_start_ms: EpochMs
    slots: Annotated[int, Field(ge=1, le=1440)]
    coverage: Fraction
    energy_kwh: float
    mean_w: Watts
    peak_w: Watts
    load_factor: float | None  # None for a day without load (peak 0)
    peak_share: PeakShare
    profile_w: list[float | None]
    profile_norm: list[float | None]
    emitted_ms: EpochMs


class Assignment(TypedDict):
    """A household day's cluster (``topics.assignments``, the clustering job, key: household)."""

    __pydantic_config__ = _TOLERANT  # type: ignore[misc]
    v: NotRequired[Version]
    household_id: Identifier
    meter_id: NotRequired[Identifier]
    day: NotRequired[Day]
    day_start_ms: NotRequired[EpochMs]
    cluster: Count
    distance: Annotated[float, Field(ge=0.0)]
    slots: Annotated[int, Field(ge=1)]
    coverage: Fraction
    imputed_slots: Count


class Centroid(TypedDict):
    """One cluster's typical day (``topics.centroids``, the clustering job, key: cluster)."""

    __pydantic_config__ = _TOLERANT  # type: ignore[misc]
    v: NotRequired[Version]
    cluster: Count
    slots: Annotated[int, Field(ge=1)]
    shape: list[float]
    shape_mean: float
    peak_slot: Count
    peak_to_mean: float
    n_profiles: Count
    ts_ms: EpochMs


AlertType = Literal[
    "spike", "stuck", "dropout", "back_online", "sustained_high", "drift", "unusual_load", "unusual_vs_peers"
]


class Alert(TypedDict):
    """An anomaly of one meter (``topics.alerts``, the anomaly job, key: household)."""

    __pydantic_config__ = _TOLERANT  # type: ignore[misc]
    v: NotRequired[Version]
    household_id: Identifier
    meter_id: Identifier
    ts_ms: EpochMs
    type: AlertType
    severity: Literal["low", "medium", "high"]
    window_start_ms: EpochMs
    window_end_ms: EpochMs
    evidence: dict[str, Any]
    action: str
    suppressed_since_last: Count


class Price(TypedDict):
    """One price slot of a market (``topics.prices``, a market feed, key: market)."""

    # closed: a field such as price_per_mwh is refused, never misread
    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]
    v: NotRequired[Version]
    market: Identifier
    ts_ms: EpochMs
    slot_minutes: SlotMinutes
    price_per_kwh: float
    currency: NotRequired[Currency]


class PriceForecast(TypedDict):
    """A market's prices for the coming slots (``topics.price_forecasts``, the forecasting job, key: market)."""

    __pydantic_config__ = _TOLERANT  # type: ignore[misc]
    v: NotRequired[Version]
    market: Identifier
    model: str
    issued_ts_ms: EpochMs
    start_ts_ms: EpochMs
    slot_minutes: SlotMinutes
    slots: Annotated[int, Field(ge=1)]
    currency: Currency
    price_per_kwh: Annotated[list[float], Field(min_length=1)]


class LoadForecast(TypedDict):
    """A household's load for the coming local day (``topics.load_forecasts``, the load-forecasting job, key:
    household): ``load_w[i]`` is the average power over the ``slot_minutes`` from ``start_ts_ms + i *
    slot_minutes``, null where the model cannot tell."""

    __pydantic_config__ = _TOLERANT  # type: ignore[misc]
    v: NotRequired[Version]
    household_id: Identifier
    model: Literal["naive_day", "naive_week", "linear", "lightgbm"]
    issued_ts_ms: EpochMs
    day: Day
    start_ts_ms: EpochMs
    slot_minutes: SlotMinutes
    slots: Annotated[int, Field(ge=1, le=1440)]
    load_w: Annotated[list[float | None], Field(min_length=1)]
    energy_kwh: float
    peak_w: Watts
    peak_ts_ms: EpochMs
    history_days: Count


class SchedulableAppliance(TypedDict):
    __pydantic_config__ = _TOLERANT  # type: ignore[misc]
    name: str
    kind: str
    power_w: Watts
    duration_slots: int
    alpha_slot: int
    beta_slot: int
    comfort_margin_slots: int


class Appliance(TypedDict):
    """An appliance learned from a household's load (``topics.appliances``, the appliance-learning job,
    key: household). Minutes count from ``horizon_start_minute`` (local time of day)."""

    __pydantic_config__ = _TOLERANT  # type: ignore[misc]
    v: NotRequired[Version]
    household_id: Identifier
    updated_ts_ms: NotRequired[EpochMs]
    horizon_start_minute: NotRequired[Annotated[int, Field(ge=0, lt=1440)]]
    slot_minutes: NotRequired[SlotMinutes]
    name: Annotated[str, Field(min_length=1, max_length=64)]
    power_w: Annotated[float, Field(gt=0.0, lt=1e6)]
    duration_minutes: Annotated[int, Field(ge=1)]
    alpha_minute: int
    beta_minute: int
    comfort_margin_minutes: NotRequired[Count]
    n_activations: NotRequired[Count]
    activations_per_day: NotRequired[float]
    appliance: NotRequired[SchedulableAppliance]


class ScheduledRun(TypedDict):
    __pydantic_config__ = _TOLERANT  # type: ignore[misc]
    name: str
    power_w: Watts
    start_ts_ms: EpochMs
    end_ts_ms: EpochMs
    usual_start_ts_ms: int
    earliest_start_ts_ms: int
    latest_start_ts_ms: int
    shift_minutes: int


class BatteryState(TypedDict):
    __pydantic_config__ = _TOLERANT  # type: ignore[misc]
    capacity_kwh: Annotated[float, Field(gt=0.0, le=10_000.0)]
    max_charge_kw: Annotated[float, Field(gt=0.0, le=1_000.0)]
    max_discharge_kw: Annotated[float, Field(gt=0.0, le=1_000.0)]
    round_trip_efficiency: NotRequired[Annotated[float, Field(gt=0.0, le=1.0)]]
    soc_min: NotRequired[Fraction]
    soc_max: NotRequired[Fraction]
    soc_now: Fraction
    soc_final: NotRequired[
        Annotated[Fraction | None, Field(description="lowest SoC at the horizon's end; default soc_now")]
    ]


class EvState(TypedDict):
    __pydantic_config__ = _TOLERANT  # type: ignore[misc]
    name: NotRequired[Annotated[str, Field(min_length=1, max_length=64)]]
    arrival_ts_ms: EpochMs
    departure_ts_ms: EpochMs
    energy_kwh: Annotated[float, Field(ge=0.0, le=1_000.0, description="energy the car must gain by departure")]
    max_kw: Annotated[float, Field(gt=0.0, le=1_000.0)]
    min_kw: NotRequired[Annotated[float, Field(ge=0.0, le=1_000.0)]]
    efficiency: NotRequired[Annotated[float, Field(gt=0.0, le=1.0)]]
    now_kwh: NotRequired[Annotated[float, Field(ge=0.0, le=1_000.0, description="to gain at full power from arrival")]]


class PvForecast(TypedDict):
    __pydantic_config__ = _TOLERANT  # type: ignore[misc]
    start_ts_ms: EpochMs
    slot_minutes: SlotMinutes
    power_w: Annotated[list[Annotated[float, Field(ge=0.0, le=1e6)]], Field(min_length=1)]


class PvSite(TypedDict):
    __pydantic_config__ = _TOLERANT  # type: ignore[misc]
    latitude: Annotated[float, Field(ge=-90.0, le=90.0)]
    longitude: Annotated[float, Field(ge=-180.0, le=180.0)]
    kwp: Annotated[float, Field(gt=0.0, le=10_000.0)]
    tilt_deg: NotRequired[Annotated[float, Field(ge=0.0, le=90.0)]]
    azimuth_deg: NotRequired[Annotated[float, Field(ge=0.0, le=360.0, description="180 = south")]]
    altitude_m: NotRequired[Annotated[float, Field(ge=-500.0, le=9_000.0)]]
    inverter_kw: NotRequired[Annotated[float, Field(gt=0.0, le=10_000.0)]]
    losses: NotRequired[Annotated[float, Field(ge=0.0, lt=1.0)]]
    temp_air_c: NotRequired[Annotated[float, Field(ge=-50.0, le=60.0)]]
    correction: NotRequired[
        Annotated[float, Field(ge=0.0, le=2.0, description="measured / clear-sky output of the home's own panels")]
    ]


class HomeEnergy(TypedDict):
    """A household's PV, battery and EV as the scheduler plans them (``topics.home_energy``, written by the
    home's energy manager or its meter gateway, key: household): the battery's SoC now, the EV plugged in
    (or expected), the PV forecast (or the panels' site and orientation, for a clear-sky forecast scaled by
    ``correction``); the latest record replaces the earlier ones."""

    __pydantic_config__ = _TOLERANT  # type: ignore[misc]
    v: NotRequired[Version]
    household_id: Identifier
    updated_ts_ms: EpochMs
    import_max_w: NotRequired[
        Annotated[float, Field(gt=0.0, le=1e7, description="grid connection; default the breaker")]
    ]
    export_max_w: NotRequired[Annotated[float, Field(gt=0.0, le=1e7, description="feed-in limit; default none")]]
    pv_curtailable: NotRequired[bool]
    battery: NotRequired[BatteryState]
    ev: NotRequired[EvState]
    pv_forecast: NotRequired[PvForecast]
    pv_site: NotRequired[Annotated[PvSite, Field(description="clear-sky PV from the site when no pv_forecast")]]


class HomeSchedule(TypedDict):
    """The home's energy plan per slot of the schedule: the battery's set-point (W, + charge / - discharge)
    and its SoC at each slot's start and the horizon's end, the EV charger's set-point (W), grid import and
    export and the PV used (W)."""

    __pydantic_config__ = _TOLERANT  # type: ignore[misc]
    solver: str
    import_w: list[float]
    export_w: list[float]
    pv_w: list[float]
    battery_setpoint_w: list[float]
    battery_soc: list[float]
    ev_setpoint_w: list[float]
    ev_energy_kwh: float
    export_price_per_kwh: list[float]
    self_consumption: float | None


class Schedule(TypedDict):
    """A household's plan for the next day (``topics.schedules``, the scheduling job, key: household)."""

    __pydantic_config__ = _TOLERANT  # type: ignore[misc]
    v: NotRequired[Version]
    household_id: Identifier
    start_ts_ms: EpochMs
    slot_minutes: SlotMinutes
    slots: Annotated[int, Field(ge=1)]
    algorithm: str
    forecast_model: str | None
    currency: Currency
    appliances: list[ScheduledRun]
    expected_cost: float
    unscheduled_cost: float
    savings: float
    savings_percent: float
    par_before: float
    par_after: float
    price_per_kwh: list[float]
    load_before_w: list[float]
    load_after_w: list[float]
    # with a load forecast: its model; the costs and load curves then include the forecast base load
    base_load_model: NotRequired[str | None]
    # with the household's PV, battery or EV (topics.home_energy): their plan; the costs then include them
    home: NotRequired[HomeSchedule]


class Recommendation(TypedDict):
    """Advice for a household (``topics.recommendations``, the recommendation job, key: household; the
    downlink sends it to the meter). ``grid_request`` is the feeder balancer's ask to move one run."""

    __pydantic_config__ = _TOLERANT  # type: ignore[misc]
    v: NotRequired[Version]
    household_id: Identifier
    kind: Literal["shift", "off_peak", "alert", "grid_request", "forecast"]
    text: Annotated[str, Field(min_length=1, max_length=1000)]
    saving_per_day: float
    currency: Currency
    created_ms: EpochMs
    appliance: str | None
    from_ts_ms: int | None
    to_ts_ms: int | None
    alert_type: NotRequired[str | None]
    peak_share: NotRequired[float]
    feeder_peak_after_w: NotRequired[float]
    capacity_w: NotRequired[float]
    energy_kwh: NotRequired[float]  # forecast: tomorrow's expected energy
    peak_w: NotRequired[float]  # forecast: tomorrow's expected peak
