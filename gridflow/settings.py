"""Typed settings for every gridflow job and tool.

Settings come from three layers, later layers winning:

1. the defaults declared on the models below (the only place defaults live);
2. the files in the configuration folder (``flink-conf/`` by default, or ``$GRIDFLOW_CONF_DIR``):
   ``gridflow.yaml`` holds the job parameters operators tune, Flink's own ``config.yaml`` holds the
   cluster settings (it lands under the ``flink`` section); any extra YAML files given with
   ``--config`` are merged on top;
3. ``--set section.key=value`` overrides from the command line (values are parsed as YAML scalars).

Unknown keys and out-of-range values are rejected with :class:`SettingsError`, whose message names the
key, the value and what is allowed. Flink has hundreds of options, so under ``flink`` only the keys
gridflow relies on are typed and checked; the rest are passed to Flink unchanged.
"""

from __future__ import annotations

import os
import re
import typing
from pathlib import Path
from typing import Any, Literal

import annotated_types
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

JOB_FILE = "gridflow.yaml"
FLINK_FILE = "config.yaml"
CONF_DIR_ENV = "GRIDFLOW_CONF_DIR"

_TOPIC_NAME = r"^[A-Za-z0-9._-]{1,249}$"
_HOST_PORT = re.compile(r"^[A-Za-z0-9._-]+:\d{1,5}$")


class SettingsError(ValueError):
    """A configuration value is unknown, of the wrong type or out of range."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class KafkaSettings(_Section):
    """Where the Kafka cluster is and how clients talk to it."""

    bootstrap_servers: str = "127.0.0.1:9092"
    group_id_prefix: str = Field("gridflow", pattern=r"^[A-Za-z0-9._-]{1,100}$")
    partitions: int = Field(2, ge=1, le=1024, description="partitions for topics gridflow creates")
    replication_factor: int = Field(1, ge=1, le=16)
    delivery_guarantee: Literal["at-least-once", "exactly-once", "none"] = "at-least-once"
    transaction_timeout_ms: int = Field(
        900_000,
        ge=1_000,
        le=86_400_000,
        description="exactly-once sinks: how long the broker keeps a job's open transaction; longer than a "
        "checkpoint interval plus a restart, and at most the broker's transaction.max.timeout.ms "
        "(Kafka's default 900000; Flink's own default of 1 h is refused by a default broker)",
    )
    client: dict[str, str] = Field(
        default_factory=dict,
        description="raw Kafka client properties passed to every source and sink (e.g. security.protocol)",
    )

    @field_validator("bootstrap_servers")
    @classmethod
    def _check_servers(cls, value: str) -> str:
        servers = [s.strip() for s in value.split(",")]
        bad = [s for s in servers if not _HOST_PORT.match(s) or not 0 < int(s.rsplit(":", 1)[1]) < 65536]
        if not servers or bad:
            raise ValueError(f"expected a comma-separated list of host:port with port 1..65535, got {bad or value!r}")
        return ",".join(servers)


class MqttSettings(_Section):
    """The MQTT broker meters publish to, and the topic layout per household."""

    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    qos: Literal[0, 1, 2] = 1
    readings_topic: str = Field("meters/{household_id}/readings", pattern=r"\{household_id\}")
    commands_topic: str = Field("meters/{household_id}/commands", pattern=r"\{household_id\}")
    home_assistant_topic: str = Field(
        "meters/{household_id}/homeassistant",
        pattern=r"\{household_id\}",
        description="discovery prefix of a household's Home Assistant; the downlink publishes its sensors there",
    )
    credentials_topic: str = Field(
        "meters/{household_id}/credentials",
        pattern=r"\{household_id\}",
        description="a meter's new password during a rotation; only the bridge's account writes it, only the meter reads it",
    )
    status_topic: str = Field(
        "meters/{household_id}/status",
        pattern=r"\{household_id\}",
        description="meters' answers to commands (e.g. confirming a new password)",
    )
    tls: bool = Field(False, description="connect over TLS, checking the broker's certificate and name")
    ca_file: str = Field("", description="PEM CA certificate that signed the broker's; empty = the system's CAs")


ADAPTER_FORMATS = ("dsmr", "sml", "tasmota", "shelly")


class BridgeSettings(_Section):
    """The MQTT <-> Kafka bridge: readings up from meters, commands down to them."""

    client_id: str = Field(
        "gridflow-bridge",
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description="fixed, so the broker keeps the bridge's session while it is down",
    )
    mqtt_username: str | None = None
    mqtt_password: str | None = None
    subscription: str = Field("meters/+/readings", description="e.g. $share/bridges/meters/+/readings to share load")
    adapters: dict[str, str] = Field(
        default_factory=lambda: {
            "dsmr": "meters/{household_id}/p1",
            "sml": "meters/{household_id}/sml",
            "tasmota": "meters/{household_id}/tele/SENSOR",
            "shelly": "meters/{household_id}/shelly/#",
        },
        description="payload format -> the topic its devices publish to (gridflow.connectors.adapters); "
        "gridflow's own JSON stays on mqtt.readings_topic",
    )
    mqtt_client: Literal["gmqtt", "paho"] = Field(
        "gmqtt", description="MQTT library of the uplink: gmqtt (~4x less CPU per message) or paho-mqtt"
    )

    @field_validator("adapters")
    @classmethod
    def _adapter_topics(cls, adapters: dict[str, str]) -> dict[str, str]:
        for name, topic in adapters.items():
            if name not in ADAPTER_FORMATS:
                raise ValueError(f"unknown payload format {name!r}; known: {', '.join(ADAPTER_FORMATS)}")
            below = topic.endswith("/#")
            body = topic[:-2] if below else topic
            if body.count("{household_id}") != 1 or "+" in body or "#" in body:
                raise ValueError(
                    f"{name}: topic {topic!r} needs one {{household_id}} level, no wildcards but a trailing /#"
                )
        return adapters

    def subscriptions(self) -> list[str]:
        """The bridge's MQTT subscriptions: gridflow's readings, then each adapter's topic (shared alike)."""
        share = ""
        if self.subscription.startswith("$share/"):
            share = "/".join(self.subscription.split("/", 2)[:2]) + "/"
        return [self.subscription] + [share + t.replace("{household_id}", "+") for t in self.adapters.values()]

    max_inflight: int = Field(
        20_000, ge=1, le=1_000_000, description="MQTT messages received but not yet acknowledged (Kafka not done)"
    )
    kafka_linger_ms: int = Field(
        50,
        ge=0,
        le=1_000,
        description="batching: at 5 ms the broker spent 10x the CPU "
        "on produce requests at 3-5k readings/s (BENCHMARKS.md, scale runs)",
    )
    kafka_compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "lz4"
    kafka_client: dict[str, str] = Field(default_factory=dict, description="raw librdkafka properties")
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(9108, ge=0, le=65535, description="0 picks a free port")
    downlink: bool = True
    home_assistant: bool = Field(True, description="the downlink also publishes Home Assistant discovery and states")
    downlink_client_id: str = Field("gridflow-downlink", pattern=r"^[A-Za-z0-9._-]{1,64}$")


class SimulatorSettings(_Section):
    """The fleet simulator: simulated meters replaying real household load shapes over MQTT."""

    mqtt_username: str | None = None
    mqtt_password: str | None = None
    client_id_prefix: str = Field("gridflow-sim", pattern=r"^[A-Za-z0-9._-]{1,40}$")
    connections: int = Field(4, ge=1, le=256, description="MQTT connections shared by the simulated meters")
    sample_interval_s: float = Field(10.0, gt=0.0, le=3600.0)
    publish_interval_s: float = Field(10.0, gt=0.0, le=3600.0)
    batch_max: int = Field(20, ge=1, le=1000)
    speed: float = Field(1.0, gt=0.0, le=100_000.0, description="simulated seconds per wall-clock second")
    spread_publish: bool = Field(
        True, description="real time: each meter samples and publishes at a phase of its own within the interval"
    )
    fault_rate_per_day: float = Field(0.5, ge=0.0, le=100.0, description="labelled faults per household and day")
    appliances: bool = Field(
        False, description="each household runs appliances of its own on top of its load shape (devices/appliances.py)"
    )
    seed: int = Field(2024, ge=0)


class TopicSettings(_Section):
    """Kafka topic names, one per stream."""

    readings: str = Field("meter.readings", pattern=_TOPIC_NAME)
    dead_letter: str = Field("meter.readings.dead-letter", pattern=_TOPIC_NAME)
    summaries: str = Field("meter.summaries", pattern=_TOPIC_NAME)
    features: str = Field("meter.features", pattern=_TOPIC_NAME)
    feature_batches: str = Field("meter.feature-batches", pattern=_TOPIC_NAME)
    profiles: str = Field("household.profiles", pattern=_TOPIC_NAME)
    assignments: str = Field("household.clusters", pattern=_TOPIC_NAME)
    centroids: str = Field("cluster.centroids", pattern=_TOPIC_NAME)
    alerts: str = Field("household.alerts", pattern=_TOPIC_NAME)
    prices: str = Field("grid.prices", pattern=_TOPIC_NAME)
    price_forecasts: str = Field("grid.price-forecasts", pattern=_TOPIC_NAME)
    appliances: str = Field("household.appliances", pattern=_TOPIC_NAME)
    load_forecasts: str = Field("household.load-forecasts", pattern=_TOPIC_NAME)
    home_energy: str = Field("household.energy", pattern=_TOPIC_NAME, description="PV, battery and EV state")
    schedules: str = Field("household.schedules", pattern=_TOPIC_NAME)
    recommendations: str = Field("household.recommendations", pattern=_TOPIC_NAME)
    imports: str = Field("meter.imports", pattern=_TOPIC_NAME, description="the ledger of imported files")


class ConnectorSettings(_Section):
    """The Flink Kafka connector jars given to every job through ``pipeline.jars``.

    Leave ``jars`` empty to use the jars fetched by ``gridflow jars fetch`` into ``cache_dir``; on a real
    cluster list the official ``flink-sql-connector-kafka`` jar (the SQL jar: PyFlink names its shaded classes).
    """

    jars: list[str] = Field(default_factory=list)
    cache_dir: str = "~/.cache/gridflow/jars"


class DataSettings(_Section):
    """Real datasets (household load shapes, prices) fetched by ``gridflow data fetch`` into ``cache_dir``."""

    cache_dir: str = "~/.cache/gridflow/data"


class ReadingSettings(_Section):
    """Physical bounds a meter reading must respect; anything outside is dead-lettered."""

    power_w_min: float = Field(-30_000.0, ge=-1_000_000.0, le=0.0, description="negative = export (PV)")
    power_w_max: float = Field(50_000.0, gt=0.0, le=1_000_000.0)
    energy_kwh_max: float = Field(
        1e9, gt=0.0, description="highest cumulative import register (kWh) a meter can report; higher is rejected"
    )
    voltage_v_min: float = Field(0.0, ge=0.0, le=1_000.0)
    voltage_v_max: float = Field(300.0, gt=0.0, le=1_000.0)
    current_a_max: float = Field(200.0, gt=0.0, le=10_000.0)
    max_clock_skew_s: int = Field(300, ge=0, le=86_400, description="readings further in the future are rejected")
    registry_file: str = Field(
        "",
        description="CSV of household_id,meter_id; readings of other meters are "
        "dead-lettered. Empty accepts every meter",
    )

    @model_validator(mode="after")
    def _ordered(self) -> "ReadingSettings":
        if self.voltage_v_min >= self.voltage_v_max:
            raise ValueError("voltage_v_min must be below voltage_v_max")
        return self


class StreamSettings(_Section):
    """Event-time handling shared by the streaming jobs."""

    window_s: int = Field(60, ge=1, le=86_400, description="tumbling summary window")
    out_of_orderness_ms: int = Field(5_000, ge=0, le=3_600_000)
    allowed_lateness_s: int = Field(0, ge=0, le=86_400)
    idle_timeout_ms: int = Field(30_000, ge=0, le=3_600_000, description="0 disables idleness")
    watermark_emit: Literal["on-periodic", "on-event"] = Field(
        "on-periodic",
        description="SQL jobs: advance the watermark every 200 ms, or after every record "
        "(exact lateness, more overhead)",
    )


class PreprocessSettings(_Section):
    """Cleaning of raw readings into per-meter features (the preprocessing job)."""

    window_s: int = Field(60, ge=10, le=3_600, description="feature window; must divide an hour")
    resample_s: int = Field(10, ge=1, le=600, description="grid step inside a window; must divide window_s")
    profile_slots: Literal[24, 48, 96] = 24
    feature_batch_buckets: int = Field(
        256,
        ge=1,
        le=1_000_000,
        description="buckets of meters in the feature batches the anomaly job reads (a record per bucket and "
        "window); keep meters / buckets under ~1,000 so a batch stays well below Kafka's 1 MB record limit",
    )
    max_gap_s: int = Field(300, ge=0, le=86_400, description="longer gaps are marked missing")
    max_interval_s: int = Field(
        3_600,
        ge=60,
        le=86_400,
        description="longest span between two register readings turned into one average power; a reading "
        "after a longer silence starts a new span",
    )
    hampel_window: int = Field(7, ge=3, le=301, description="readings in the centred Hampel window (odd)")
    hampel_n_sigmas: float = Field(3.0, gt=0.0, le=20.0)
    hampel_min_sigma_w: float = Field(
        20.0, ge=0.0, le=10_000.0, description="floor of the robust sigma, so flat loads do not flag every step"
    )
    noise_floor_w: float = Field(5.0, ge=0.0, le=1_000.0, description="|power| below this is sensor noise -> 0 W")
    min_slot_coverage: float = Field(0.5, gt=0.0, le=1.0, description="share of a profile slot that must be known")
    timezone: str = Field("UTC", description="IANA zone for peak hours and day boundaries")
    peak_hours: list[int] = Field(default_factory=lambda: [17, 18, 19, 20])

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return _zone_name(value)

    @field_validator("hampel_window")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"must be odd (a centred window), got {value}")
        return value

    @model_validator(mode="after")
    def _grid(self) -> "PreprocessSettings":
        if 3_600 % self.window_s:
            raise ValueError(f"window_s must divide an hour (3600 s), got {self.window_s}")
        if self.window_s % self.resample_s:
            raise ValueError(f"resample_s must divide window_s ({self.window_s}), got {self.resample_s}")
        return self

    @field_validator("peak_hours")
    @classmethod
    def _hours(cls, value: list[int]) -> list[int]:
        if any(not 0 <= h <= 23 for h in value) or len(set(value)) != len(value):
            raise ValueError("expected distinct hours in 0..23")
        return value


_COLUMN = r"^[^\x00-\x1f]{0,200}$"  # a column name in an import file ('' = not in the file)


def _zone_name(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {value!r}, e.g. 'UTC' or 'Europe/Paris'") from None
    return value


class ImportReadingsSettings(_Section):
    """``gridflow import readings``: how the columns of a CSV or Parquet export of meter data map to the
    reading contract. A column setting names a column of the file; '' means the file has no such column."""

    household_column: str = Field("household_id", min_length=1, pattern=_COLUMN)
    meter_column: str = Field("meter_id", min_length=1, pattern=_COLUMN)
    time_column: str = Field("time", min_length=1, pattern=_COLUMN)
    time_format: Literal["iso", "epoch_ms", "epoch_s"] = Field(
        "iso",
        description="iso: ISO 8601 text (or a Parquet timestamp); one without an offset is local time in "
        "`timezone`; epoch_ms / epoch_s: numbers since 1970-01-01 UTC",
    )
    timezone: str = Field("UTC", description="IANA zone of times given without an offset")
    time_marks: Literal["end", "start"] = Field(
        "end", description="for interval data: whether a row's time is the end or the start of its interval"
    )
    power_column: str = Field("power_w", pattern=_COLUMN, description="average or instantaneous power")
    power_unit: Literal["W", "kW"] = "W"
    energy_column: str = Field("", pattern=_COLUMN)
    energy_unit: Literal["Wh", "kWh"] = "kWh"
    energy_kind: Literal["register", "interval"] = Field(
        "register",
        description="register: a cumulative import register; interval: the energy of the row's interval "
        "(turned into its average power; needs interval_s or interval_column)",
    )
    unit_column: str = Field(
        "", pattern=_COLUMN, description="a column giving each row's unit (W, kW, Wh or kWh), over the settings"
    )
    interval_s: int = Field(0, ge=0, le=86_400, description="the data's interval in seconds (0: instantaneous samples)")
    interval_column: str = Field("", pattern=_COLUMN, description="each row's interval in seconds, over interval_s")
    voltage_column: str = Field("", pattern=_COLUMN)
    current_column: str = Field("", pattern=_COLUMN)
    csv_delimiter: str = Field(",", min_length=1, max_length=1)
    batch_rows: int = Field(50_000, ge=100, le=5_000_000, description="rows read and checked per batch")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return _zone_name(value)

    @model_validator(mode="after")
    def _values(self) -> "ImportReadingsSettings":
        if not (self.power_column or self.energy_column):
            raise ValueError("power_column or energy_column must name a column")
        if self.energy_kind == "interval" and not (self.interval_s or self.interval_column):
            raise ValueError("energy_kind 'interval' needs interval_s or interval_column")
        return self


class ImportPricesSettings(_Section):
    """``gridflow import prices``: day-ahead price files as markets publish them (a row per slot, a column
    per market) -> price records in ``forecast.slot_minutes`` slots (finer slots averaged, coarser repeated)."""

    time_column: str = Field("time", min_length=1, pattern=_COLUMN, description="the start of each row's slot")
    time_format: Literal["iso", "epoch_ms", "epoch_s"] = "iso"
    timezone: str = Field("UTC", description="IANA zone of times given without an offset")
    markets: dict[str, str] = Field(
        default_factory=dict,
        description="column -> market name; empty: every other column is a market named as the column",
    )
    price_unit: Literal["per_MWh", "per_kWh"] = Field("per_MWh", description="markets publish prices per MWh")
    currency: str = Field("", description="the file's currency (ISO 4217); '' = tariff.currency, the only one")
    slot_minutes: int = Field(0, ge=0, le=1440, description="the file's slot length; 0: found from its times")
    csv_delimiter: str = Field(",", min_length=1, max_length=1)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return _zone_name(value)

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if value and not (len(value) == 3 and value.isascii() and value.isupper() and value.isalpha()):
            raise ValueError(f"must be an ISO 4217 code such as 'EUR', or '' for tariff.currency, got {value!r}")
        return value


HISTORY_TOPICS = (
    "features",
    "profiles",
    "assignments",
    "centroids",
    "alerts",
    "load_forecasts",
    "schedules",
    "recommendations",
)


class HistorySettings(_Section):
    """``gridflow history``: the pipeline's outputs kept as Parquet, partitioned by topic and UTC day, for SQL.

    ``path`` is a folder or a URI pyarrow opens (``s3://bucket/prefix``, ``gs://...``); '' is
    ``<stack.run_dir>/history``. Each file holds one Kafka partition's records of one day, named by their first
    and last offsets: the writer resumes after the highest offset on disk, so a restart writes nothing twice.
    """

    path: str = Field("", description="folder or URI of the history; '' = <stack.run_dir>/history")
    topics: list[str] = Field(
        default_factory=lambda: list(HISTORY_TOPICS), description="names of topics.* settings to keep"
    )
    flush_records: int = Field(50_000, ge=1, le=10_000_000, description="records per partition before a file")
    flush_s: float = Field(60.0, gt=0.0, le=86_400.0, description="oldest buffered record's age before a file")
    retention_days: int = Field(0, ge=0, le=36_500, description="days kept (by UTC day); 0 keeps every day")

    @field_validator("topics")
    @classmethod
    def _topics(cls, value: list[str]) -> list[str]:
        known = set(TopicSettings.model_fields) - {"imports"}
        unknown = [t for t in value if t not in known]
        if unknown or len(set(value)) != len(value):
            raise ValueError(f"expected distinct names of topics.* settings ({', '.join(sorted(known))}), got {value}")
        return value


class ClusteringSettings(_Section):
    """Online KMeans over household load profiles."""

    n_clusters: int = Field(4, ge=2, le=64)
    halflife: float = Field(0.05, gt=0.0, le=1.0, description="fraction a centroid moves towards each profile")
    seed: int = Field(42, ge=0)
    publish_every_s: int = Field(300, ge=1, le=86_400)
    min_coverage: float = Field(0.75, gt=0.0, le=1.0, description="profiles with fewer known slots are skipped")
    warmup_profiles: int = Field(32, ge=2, le=100_000, description="buffered to initialise the centroids")


class AnomalySettings(_Section):
    """Anomaly detection on per-minute meter features: DBSCAN over each household's recent minutes
    (and across households of one load-shape cluster) plus rules for faults DBSCAN cannot see."""

    dbscan_eps: float = Field(1.0, gt=0.0, le=1e6, description="in log-ratio feature units")
    dbscan_min_samples: int = Field(5, ge=1, le=10_000)
    micro_window_s: int = Field(3600, ge=120, le=86_400, description="recent minutes DBSCAN looks at")
    alert_cooldown_s: int = Field(900, ge=0, le=86_400, description="one alert per household and type")
    spike_ratio: float = Field(2.5, gt=1.0, le=1000.0, description="raw max / minute mean of a spike")
    spike_min_excess_w: float = Field(50.0, ge=0.0, le=1e6)
    stuck_minutes: int = Field(2, ge=1, le=1440, description="minutes of identical readings")
    stuck_min_w: float = Field(5.0, ge=0.0, le=1e6, description="runs of lower values are idle, not stuck")
    dropout_minutes: int = Field(2, ge=1, le=1440, description="minutes without readings")
    sustained_excess_w: float = Field(1200.0, gt=0.0, le=1e6, description="minute floor above the usual floor")
    sustained_minutes: int = Field(20, ge=1, le=1440)
    drift_fraction: float = Field(0.15, gt=0.0, le=10.0, description="rise of the floor, fraction of usual mean")
    drift_minutes: int = Field(60, ge=1, le=1440)


class BalancingSettings(_Section):
    """Feeder-level load balancing: households of a feeder are asked to shift when it would be overloaded."""

    feeder_capacity_kw: float = Field(500.0, gt=0.0, le=1e6, description="limit of every feeder")
    default_feeder: str = Field("feeder-1", pattern=r"^[A-Za-z0-9._:-]{1,64}$")
    feeder_file: str = Field("", description="CSV household_id,feeder; households not in it are on default_feeder")
    max_requests_per_household: int = Field(3, ge=1, le=100, description="per horizon")


class SchedulerSettings(_Section):
    """Appliance scheduling under dynamic prices."""

    algorithm: Literal["heap", "pso", "milp"] = "heap"
    slot_minutes: int = Field(15, ge=1, le=60)
    w_cost: float = Field(1.0, ge=0.0, le=1e6)
    w_comfort: float = Field(0.001, ge=0.0, le=1e6, description="currency per slot of start deviation (PSO, MILP)")
    breaker_a: float = Field(40.0, ge=0.0, le=1_000.0, description="main breaker; 0 = no limit")
    breaker_v: float = Field(230.0, gt=0.0, le=1_000.0)
    home_solver: Literal["fleet", "milp"] = Field(
        "fleet", description="homes with PV, battery or EV: the fleet planner (heap + LP) or the exact MILP"
    )
    export_price_factor: float = Field(
        0.0, ge=-10.0, le=10.0, description="feed-in price = factor x the forecast price + export_price_offset"
    )
    export_price_offset: float = Field(0.0, ge=-10.0, le=10.0, description="currency per kWh exported")
    pso_particles: int = Field(50, ge=2, le=10_000)
    pso_iterations: int = Field(200, ge=1, le=100_000)
    # linear schedules over the iterations (Lin & Hu 2018, eqs. 3-5): inertia weight, cognitive c1, social c2
    pso_inertia_start: float = Field(0.9, ge=0.0, le=1.5)
    pso_inertia_end: float = Field(0.4, ge=0.0, le=1.5)
    pso_c1_start: float = Field(2.5, ge=0.0, le=4.0)
    pso_c1_end: float = Field(0.5, ge=0.0, le=4.0)
    pso_c2_start: float = Field(0.5, ge=0.0, le=4.0)
    pso_c2_end: float = Field(2.5, ge=0.0, le=4.0)
    seed: int = Field(7, ge=0)

    @field_validator("slot_minutes")
    @classmethod
    def _divides_day(cls, value: int) -> int:
        if 1440 % value:
            raise ValueError("must divide a day (1440 minutes): 1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60")
        return value


class ForecastSettings(_Section):
    """Day-ahead price forecasting on the real-time price stream (``gridflow.forecasting.PriceForecaster``)."""

    model: Literal["seasonal_naive", "linear", "snarimax", "holt_winters", "mlp", "lightgbm"] = Field(
        "holt_winters", description="the best MAE and schedule cost in benchmarks/evaluate_forecasting.py"
    )
    slot_minutes: int = Field(60, ge=1, le=60, description="one price per slot; finer prices are averaged upstream")
    season_days: int = Field(1, ge=1, le=28, description="season of seasonal_naive, snarimax and holt_winters")
    horizon_days: int = Field(1, ge=1, le=7)
    lag_days: list[int] = Field(default_factory=lambda: [1, 2, 7], description="linear: lagged prices, days back")
    utc_offset_minutes: int = Field(60, ge=-720, le=840, description="local standard time for calendar features")
    learning_rate: float = Field(0.001, gt=0.0, le=1.0)
    snarimax_order: list[int] = Field(default_factory=lambda: [2, 0, 0], description="(p, d, q), each 0..3")
    snarimax_seasonal_order: list[int] = Field(default_factory=lambda: [1, 1, 0], description="(P, D, Q)")
    holt_winters_smoothing: list[float] = Field(
        default_factory=lambda: [0.1, 0.001, 0.1], description="(alpha, beta, gamma), each in (0, 1]"
    )
    issue_minute: int = Field(720, ge=0, le=1439, description="local minute of day forecasts are issued at")
    mlp_hidden_units: int = Field(16, ge=1, le=256, description="mlp: ReLU units of the hidden layer")
    gbm_refit_days: int = Field(28, ge=1, le=365, description="lightgbm: days between refits")
    gbm_window_days: int = Field(730, ge=7, le=3660, description="lightgbm: days of prices each fit learns from")

    @field_validator("slot_minutes")
    @classmethod
    def _divides_day(cls, value: int) -> int:
        if 1440 % value:
            raise ValueError("must divide a day (1440 minutes): 1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60")
        return value

    @field_validator("lag_days")
    @classmethod
    def _lags(cls, value: list[int]) -> list[int]:
        if not value or any(not 1 <= d <= 28 for d in value):
            raise ValueError("expected a non-empty list of days in 1..28")
        return value

    @model_validator(mode="after")
    def _orders(self) -> "ForecastSettings":
        p, s, h = self.snarimax_order, self.snarimax_seasonal_order, self.holt_winters_smoothing
        if len(p) != 3 or any(not 0 <= v <= 3 for v in p):
            raise ValueError("snarimax_order must be three integers (p, d, q) in 0..3")
        if len(s) != 3 or not (0 <= s[0] <= 2 and 0 <= s[1] <= 1 and 0 <= s[2] <= 2):
            raise ValueError("snarimax_seasonal_order must be (P, D, Q) with P, Q in 0..2 and D in 0..1")
        if len(h) != 3 or any(not 0 < v <= 1 for v in h):
            raise ValueError("holt_winters_smoothing must be three numbers (alpha, beta, gamma) in (0, 1]")
        return self


class LoadForecastSettings(_Section):
    """Day-ahead load forecasts of households and feeders (``gridflow.forecasting.load``)."""

    model: Literal["naive_day", "naive_week", "linear", "lightgbm"] = "lightgbm"
    lag_days: list[int] = Field(default_factory=lambda: [1, 2, 7], description="loads at the same slot, days back")
    scale_days: int = Field(28, ge=1, le=365, description="days whose mean load scales a series (lightgbm)")
    min_history_days: int = Field(7, ge=1, le=365, description="days a series needs before it is forecast")
    linear_learning_rate: float = Field(0.005, gt=0.0, le=1.0, description="SGD step of the river regression")
    gbm_rounds: int = Field(300, ge=1, le=5_000, description="boosting rounds of LightGBM")
    gbm_learning_rate: float = Field(0.05, gt=0.0, le=1.0)
    gbm_num_leaves: int = Field(31, ge=2, le=1_024)
    gbm_min_data_in_leaf: int = Field(50, ge=1, le=100_000)
    gbm_threads: int = Field(1, ge=1, le=256, description="LightGBM threads; 1 keeps results bit-reproducible")
    day_of_year: bool = Field(False, description="lightgbm: the day of year as a feature (seasons seen before)")
    model_file: str = Field(
        "",
        description="lightgbm: the model `gridflow forecast train-load` wrote; without one the job uses linear",
    )

    @field_validator("lag_days")
    @classmethod
    def _lags(cls, value: list[int]) -> list[int]:
        if not value or any(not 1 <= d <= 28 for d in value) or len(set(value)) != len(value):
            raise ValueError("expected a non-empty list of distinct days in 1..28")
        return sorted(value)


class NilmSettings(_Section):
    """Energy disaggregation of whole-house readings into schedulable appliances (``gridflow.nilm``)."""

    edge_threshold_w: float = Field(500.0, gt=0.0, le=50_000.0, description="smallest on/off step considered")
    tolerance_w: float = Field(100.0, gt=0.0, le=5_000.0, description="steady state: largest minute-to-minute change")
    tolerance_var: float = Field(200.0, gt=0.0, le=5_000.0, description="steady state: same for reactive power")
    min_steady_minutes: int = Field(1, ge=1, le=60)
    power_tolerance: float = Field(0.25, gt=0.0, le=1.0, description="on/off pairing: relative size difference")
    max_duration_minutes: int = Field(240, ge=1, le=1440)
    cluster_eps: float = Field(0.08, gt=0.0, le=2.0, description="grouping kernel width on log power")
    cluster_reactive_eps_var: float = Field(60.0, gt=0.0, le=5_000.0, description="grouping kernel width on var")
    cluster_duration_eps: float = Field(0.4, gt=0.0, le=5.0, description="grouping kernel width on log duration")
    cluster_core_fraction: float = Field(0.2, ge=0.0, lt=1.0, description="share of peak density to join a group")
    min_activations: int = Field(10, ge=1, le=100_000, description="activations a cluster needs to be a profile")
    history_days: int = Field(60, ge=1, le=3650)
    horizon_start_minute: int = Field(720, ge=0, le=1439, description="local minute the scheduling day starts")
    window_percentiles: list[float] = Field(default_factory=lambda: [10.0, 90.0])

    @field_validator("window_percentiles")
    @classmethod
    def _percentiles(cls, value: list[float]) -> list[float]:
        if len(value) != 2 or not 0 <= value[0] < value[1] <= 100:
            raise ValueError("expected [low, high] with 0 <= low < high <= 100")
        return value


class TouPeriod(_Section):
    start_hour: int = Field(ge=0, le=23)
    end_hour: int = Field(ge=1, le=24)
    price_per_kwh: float = Field(ge=-10.0, le=100.0)


class TariffSettings(_Section):
    """Prices used when no real-time price stream is available, and inclining block rates."""

    kind: Literal["tou", "rtp", "ibr"] = "tou"
    currency: str = Field("EUR", pattern=r"^[A-Z]{3}$")
    tou: list[TouPeriod] = Field(
        default_factory=lambda: [
            TouPeriod(start_hour=0, end_hour=7, price_per_kwh=0.18),
            TouPeriod(start_hour=7, end_hour=17, price_per_kwh=0.27),
            TouPeriod(start_hour=17, end_hour=21, price_per_kwh=0.38),
            TouPeriod(start_hour=21, end_hour=24, price_per_kwh=0.27),
        ]
    )
    ibr_thresholds_kwh: list[float] = Field(default_factory=lambda: [0.5, 1.0, 1.5, 2.0])
    ibr_multipliers: list[float] = Field(default_factory=lambda: [1.0, 1.2, 1.4, 1.6, 1.8])

    @model_validator(mode="after")
    def _consistent(self) -> "TariffSettings":
        hours = sorted((p.start_hour, p.end_hour) for p in self.tou)
        if not hours or hours[0][0] != 0 or hours[-1][1] != 24 or any(a[1] != b[0] for a, b in zip(hours, hours[1:])):
            raise ValueError("tou periods must cover 0..24 h without gaps or overlaps")
        if any(b <= a for a, b in zip(self.ibr_thresholds_kwh, self.ibr_thresholds_kwh[1:])):
            raise ValueError("ibr_thresholds_kwh must be strictly increasing")
        if len(self.ibr_multipliers) != len(self.ibr_thresholds_kwh) + 1:
            raise ValueError("ibr_multipliers needs one more entry than ibr_thresholds_kwh")
        return self


class StackSettings(_Section):
    """The embedded default stack started by ``gridflow stack up`` and the test fixtures."""

    host: str = "127.0.0.1"
    kafka_port: int = Field(0, ge=0, le=65535, description="0 picks a free port")
    mqtt_port: int = Field(0, ge=0, le=65535, description="0 picks a free port")
    mqtt_tls: bool = Field(True, description="the embedded mosquitto listens with TLS only (a CA of its own)")
    mqtt_max_packet_bytes: int = Field(
        262_144,
        ge=4_096,
        le=268_435_455,
        description="mosquitto disconnects a client that sends a bigger MQTT packet (a batch of 1,000 readings fits)",
    )
    flink_rest_port: int = Field(0, ge=0, le=65535, description="0 picks a free port")
    kafka_heap_mb: int = Field(512, ge=128, le=16_384, description="the embedded broker's Java heap (-Xms = -Xmx)")
    kafka_properties: dict[str, str] = Field(
        default_factory=dict, description="raw broker properties (server.properties) over the embedded defaults"
    )
    run_dir: str = "~/.local/state/gridflow"
    start_timeout_s: float = Field(120.0, gt=0.0, le=600.0)


class WebSettings(_Section):
    """The household and operator pages served by ``gridflow page serve`` (``gridflow.web``)."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535, description="0 picks a free port")
    secret: str = Field(
        "",
        description="key of the stored access-code and session digests; empty = generated once and kept in "
        "<stack.run_dir>/web-secret",
    )
    credentials_file: str = Field(
        "", description="SQLite file of access codes and sessions; empty = <stack.run_dir>/web-credentials.db"
    )
    refresh_s: int = Field(60, ge=0, le=86_400, description="pages reload themselves this often; 0 = never")
    recent_alerts: int = Field(200, ge=1, le=100_000, description="alerts across households the operator view keeps")
    alerts_per_household: int = Field(20, ge=1, le=1_000)
    tls_certfile: str = Field("", description="serve HTTPS with this PEM certificate (chain); empty = plain HTTP")
    tls_keyfile: str = Field("", description="the certificate's PEM private key")
    cookie_secure: bool = Field(
        False, description="mark the session cookie Secure and send HSTS behind a TLS proxy (implied by tls_certfile)"
    )
    session_idle_s: int = Field(
        30 * 86_400, ge=60, le=366 * 86_400, description="a household session ends after this long unused"
    )
    session_max_s: int = Field(180 * 86_400, ge=60, le=366 * 86_400, description="... and this long after sign-in")
    operator_session_idle_s: int = Field(8 * 3_600, ge=60, le=30 * 86_400)
    operator_session_max_s: int = Field(86_400, ge=60, le=30 * 86_400)
    login_max_failures: int = Field(
        5, ge=1, le=1_000, description="failed sign-ins for one account from one address in login_window_s"
    )
    login_ip_max_failures: int = Field(
        20, ge=1, le=100_000, description="failed sign-ins per client address in login_window_s before its lock-out"
    )
    login_window_s: int = Field(900, ge=1, le=86_400)
    lockout_s: int = Field(900, ge=1, le=86_400, description="how long a locked-out account or address is refused")
    header_timeout_s: float = Field(
        10.0,
        gt=0.0,
        le=300.0,
        description="a connection that has not sent a whole request this long after connecting or its last answer is closed",
    )

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, value: str) -> str:
        if value and len(value) < 16:
            raise ValueError("must be empty (generated) or at least 16 characters")
        return value

    @property
    def https(self) -> bool:
        return bool(self.tls_certfile)

    @model_validator(mode="after")
    def _idle_within_max(self) -> "WebSettings":
        if bool(self.tls_certfile) != bool(self.tls_keyfile):
            raise ValueError("web.tls_certfile and web.tls_keyfile go together (both set for HTTPS, or neither)")
        for idle, longest in (
            ("session_idle_s", "session_max_s"),
            ("operator_session_idle_s", "operator_session_max_s"),
        ):
            if getattr(self, idle) > getattr(self, longest):
                raise ValueError(
                    f"web.{idle} ({getattr(self, idle)}) must not exceed web.{longest} ({getattr(self, longest)})"
                )
        return self


# Python-runtime keys of Flink that are set per job, in the ``jobs`` section, never in ``config.yaml``.
PER_JOB_FLINK_KEYS = {
    "python.execution-mode": "python_execution_mode",
    "python.fn-execution.bundle.size": "bundle_size",
    "python.fn-execution.bundle.time": "bundle_time_ms",
    "python.fn-execution.arrow.batch.size": "arrow_batch_size",
}


class JobRuntime(_Section):
    """How one job's Python workers run (Flink's ``python.*`` options for that job).

    ``process`` runs the workers as separate Python processes; ``thread`` embeds them in the TaskManager JVM
    (pemja): several times faster for per-record functions, but importing scipy (river, the MILP, the NILM
    models) hangs there, and Table-API functions lose their metrics. A Python operator holds records and the
    watermark until its bundle is finished (``bundle_time_ms``: Flink's default 1 s added ~0.7 s per Python
    stage, see BENCHMARKS.md)."""

    python_execution_mode: Literal["process", "thread"] = "process"
    bundle_size: int = Field(100_000, ge=1, le=10_000_000, description="records per bundle at most")
    bundle_time_ms: int = Field(100, ge=1, le=60_000, description="a bundle is cut at least this often")
    arrow_batch_size: int = Field(
        10_000, ge=1, le=10_000_000, description="rows per Arrow batch of vectorised functions (at most bundle_size)"
    )

    @model_validator(mode="after")
    def _batch_in_bundle(self) -> "JobRuntime":
        if self.arrow_batch_size > self.bundle_size:
            raise ValueError(
                f"arrow_batch_size ({self.arrow_batch_size}) must not exceed bundle_size ({self.bundle_size})"
            )
        return self

    def flink_options(self) -> dict[str, str]:
        return {key: str(getattr(self, name)) for key, name in PER_JOB_FLINK_KEYS.items()}


# Jobs whose Python code imports scipy or river (which thread-mode workers cannot load).
_NEEDS_PROCESS = ("clustering", "forecasting", "load_forecasting", "scheduling", "recommendations")


class JobsSettings(_Section):
    """The runtime of each job, one block per job (``jobs.<job>.<key>``)."""

    preprocess: JobRuntime = JobRuntime()
    reading_summary: JobRuntime = JobRuntime()
    clustering: JobRuntime = JobRuntime()
    anomaly: JobRuntime = JobRuntime(python_execution_mode="thread")
    forecasting: JobRuntime = JobRuntime()
    appliance_learning: JobRuntime = JobRuntime(python_execution_mode="thread")
    load_forecasting: JobRuntime = JobRuntime()
    scheduling: JobRuntime = JobRuntime()
    recommendations: JobRuntime = JobRuntime()

    @model_validator(mode="after")
    def _process_where_needed(self) -> "JobsSettings":
        for name in _NEEDS_PROCESS:
            if getattr(self, name).python_execution_mode == "thread":
                raise ValueError(
                    f"{name}.python_execution_mode must be 'process': the job imports scipy or river, "
                    "which thread-mode Python workers cannot load"
                )
        return self


# Keys of Flink's config.yaml that describe the cluster rather than a job: the standalone cluster gets
# them, a job's configuration does not (they would point a submitted job at the wrong cluster).
CLUSTER_ONLY_PREFIXES = ("jobmanager.", "taskmanager.", "rest.", "env.", "blob.", "high-availability", "web.")


class FlinkSettings(BaseModel):
    """Flink's own options (from ``config.yaml``), flat dotted keys.

    The keys gridflow relies on are typed here; every other key passes through to Flink unchanged.
    """

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    parallelism_default: int = Field(2, ge=1, le=4096, alias="parallelism.default")
    task_slots: int = Field(2, ge=1, le=1024, alias="taskmanager.numberOfTaskSlots")
    state_backend: Literal["hashmap", "rocksdb"] = Field("hashmap", alias="state.backend.type")
    rest_port: int = Field(8081, ge=1, le=65535, alias="rest.port")

    @model_validator(mode="after")
    def _no_per_job_keys(self) -> "FlinkSettings":
        misplaced = sorted(set(self.model_extra or {}) & set(PER_JOB_FLINK_KEYS))
        if misplaced:
            raise ValueError(
                f"{misplaced[0]} is set per job: use jobs.<job>.{PER_JOB_FLINK_KEYS[misplaced[0]]} in "
                "gridflow.yaml (jobs: preprocess, reading_summary, clustering, anomaly, forecasting, "
                "appliance_learning, load_forecasting, scheduling, recommendations)"
            )
        return self

    def job_options(self) -> dict[str, str]:
        """Options that belong in a job's configuration: cluster-only keys (addresses, memory) removed."""
        return {k: v for k, v in self.options().items() if not k.startswith(CLUSTER_ONLY_PREFIXES)}

    def options(self) -> dict[str, str]:
        """All options as Flink expects them: dotted keys, string values."""
        typed: dict[str, Any] = {str(info.alias): getattr(self, name) for name, info in type(self).model_fields.items()}
        merged = {**typed, **(self.model_extra or {})}
        return {key: _flink_str(value) for key, value in merged.items()}


def _flink_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ";".join(_flink_str(v) for v in value)
    return str(value)


class Settings(_Section):
    """Everything a gridflow job or tool can be tuned with."""

    kafka: KafkaSettings = KafkaSettings()
    mqtt: MqttSettings = MqttSettings()
    bridge: BridgeSettings = BridgeSettings()
    simulator: SimulatorSettings = SimulatorSettings()
    topics: TopicSettings = TopicSettings()
    connector: ConnectorSettings = ConnectorSettings()
    data: DataSettings = DataSettings()
    readings: ReadingSettings = ReadingSettings()
    stream: StreamSettings = StreamSettings()
    preprocess: PreprocessSettings = PreprocessSettings()
    clustering: ClusteringSettings = ClusteringSettings()
    anomaly: AnomalySettings = AnomalySettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    balancing: BalancingSettings = BalancingSettings()
    forecast: ForecastSettings = ForecastSettings()
    load_forecast: LoadForecastSettings = LoadForecastSettings()
    nilm: NilmSettings = NilmSettings()
    tariff: TariffSettings = TariffSettings()
    import_readings: ImportReadingsSettings = ImportReadingsSettings()
    import_prices: ImportPricesSettings = ImportPricesSettings()
    history: HistorySettings = HistorySettings()
    stack: StackSettings = StackSettings()
    web: WebSettings = WebSettings()
    jobs: JobsSettings = JobsSettings()
    flink: FlinkSettings = FlinkSettings()

    def with_overrides(self, *assignments: str) -> "Settings":
        """A copy with ``section.key=value`` assignments applied (validated like file values)."""
        return _validate(_apply_assignments(self.model_dump(by_alias=True), assignments))


def default_conf_dir() -> Path:
    """``$GRIDFLOW_CONF_DIR``, else ``flink-conf/`` of this checkout, else the copy an installed package ships
    (``gridflow/conf``), else ``flink-conf/`` in the current folder."""
    if os.environ.get(CONF_DIR_ENV):
        return Path(os.environ[CONF_DIR_ENV])
    here = Path(__file__).resolve().parent
    for folder in (here.parent / "flink-conf", here / "conf"):
        if (folder / JOB_FILE).is_file():
            return folder
    return Path.cwd() / "flink-conf"


def load_settings(
    conf_dir: str | Path | None = None,
    extra_files: typing.Iterable[str | Path] = (),
    overrides: typing.Iterable[str] = (),
) -> Settings:
    """Load and validate settings from a configuration folder, extra files and ``key=value`` overrides."""
    folder = Path(conf_dir) if conf_dir is not None else default_conf_dir()
    if not folder.is_dir():
        raise SettingsError(f"configuration folder {str(folder)!r} does not exist")
    data: dict[str, Any] = {}
    job_file = folder / JOB_FILE
    if job_file.exists():
        _merge(data, _read_yaml(job_file))
    flink_file = folder / FLINK_FILE
    if flink_file.exists():
        _merge(data, {"flink": _flatten(_read_yaml(flink_file))})
    for extra in extra_files:
        _merge(data, _read_yaml(Path(extra)))
    return _validate(_apply_assignments(data, overrides))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        content = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SettingsError(f"cannot read settings file {str(path)!r}: {exc}") from exc
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise SettingsError(
            f"settings file {str(path)!r} must hold a mapping of sections, got {type(content).__name__}"
        )
    return content


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _merge(base: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def _apply_assignments(data: dict[str, Any], assignments: typing.Iterable[str]) -> dict[str, Any]:
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise SettingsError(f"override {assignment!r} must look like section.key=value, e.g. stream.window_s=120")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise SettingsError(f"override {assignment!r}: value is not a YAML scalar or list: {exc}") from exc
        target = data.setdefault(section, {})
        if not isinstance(target, dict):
            raise SettingsError(f"override {assignment!r}: {section!r} is not a section")
        if section == "flink":
            target[name] = value  # Flink keys are flat and dotted
            continue
        *parents, leaf = name.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    return data


def _validate(data: dict[str, Any]) -> Settings:
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        field = _field_info(error["loc"])
        if error["type"] == "extra_forbidden":
            parent = _model_at(error["loc"][:-1])
            valid = ", ".join(parent.model_fields) if parent else "?"
            lines.append(f"unknown key {key!r}; valid keys here: {valid}")
            continue
        allowed = _allowed(field) if field is not None and error["type"] != "value_error" else None
        message = error["msg"].removeprefix("Value error, ")
        shown = "" if isinstance(error["input"], dict) else f": {error['input']!r}"
        what = f"invalid value for {key!r}{shown} ({message})"
        lines.append(what + (f"; allowed: {allowed}" if allowed else ""))
    return "invalid settings:\n  " + "\n  ".join(lines)


def _model_at(loc: tuple) -> type[BaseModel] | None:
    model: Any = Settings
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        info = model.model_fields.get(str(part)) or _by_alias(model, str(part))
        if info is None:
            return None
        model = _inner_type(info.annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _field_info(loc: tuple):
    if not loc:
        return None
    parent = _model_at(tuple(p for p in loc[:-1] if not isinstance(p, int)))
    last = next((p for p in reversed(loc) if not isinstance(p, int)), None)
    if parent is None or last is None:
        return None
    return parent.model_fields.get(str(last)) or _by_alias(parent, str(last))


def _by_alias(model: type[BaseModel], alias: str):
    return next((info for info in model.model_fields.values() if info.alias == alias), None)


def _inner_type(annotation: Any) -> Any:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (list, tuple) and args:
        return args[0]
    return annotation


def _allowed(field) -> str | None:
    """Human text for a field's constraints: a range, a pattern or a set of choices."""
    if typing.get_origin(field.annotation) is Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(field.annotation))
    low = high = pattern = None
    for meta in field.metadata:
        if isinstance(meta, annotated_types.Ge):
            low = f"{meta.ge} <= value"
        elif isinstance(meta, annotated_types.Gt):
            low = f"{meta.gt} < value"
        elif isinstance(meta, annotated_types.Le):
            high = f"value <= {meta.le}"
        elif isinstance(meta, annotated_types.Lt):
            high = f"value < {meta.lt}"
        elif getattr(meta, "pattern", None):
            pattern = f"text matching {meta.pattern}"
    if low or high:
        if low and high:
            return f"{low} {high[len('value ') :]}"
        return low or high
    if pattern:
        return pattern
    name = getattr(field.annotation, "__name__", None)
    return f"a value of type {name}" if name else None
