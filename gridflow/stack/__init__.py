"""The embedded default stack: Apache Kafka, mosquitto and (optionally) Prometheus and a standalone Flink cluster.

Used by ``gridflow stack up/down`` and by the test fixtures::

    with EmbeddedStack(settings, run_dir, flink=True) as stack:
        settings = stack.settings  # kafka.bootstrap_servers and mqtt.port now point at the stack
        ...

``up()`` writes ``<run_dir>/stack.json`` (what runs where) and ``<run_dir>/settings.yaml`` (a settings
overlay; pass it to any job or tool with ``--config``). Whatever happens, ``down()`` stops every process
the stack started, including processes those processes forked. Kafka keeps its log in
``<run_dir>/kafka``: topics survive a broker restart and a ``down``/``up`` on the same run folder.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from gridflow.settings import Settings
from gridflow.stack import services
from gridflow.stack.meters import MeterAccounts
from gridflow.stack.mqtt_auth import BRIDGE_USER, SIMULATOR_USER, new_password
from gridflow.stack.processes import Launcher, StackError, marked_pids

STATE_FILE = "stack.json"
# Every stack created in this process, so that a test session can prove none left a process behind.
CREATED_STACK_IDS: list[str] = []
OVERLAY_FILE = "settings.yaml"

__all__ = ["EmbeddedStack", "StackError", "StackInfo", "stop_stack", "read_state"]


@dataclass
class StackInfo:
    stack_id: str
    run_dir: str
    kafka_bootstrap: str | None = None
    kafka_log_dir: str | None = None
    mqtt_host: str | None = None
    mqtt_port: int | None = None
    flink_rest: str | None = None
    flink_conf_dir: str | None = None
    mqtt_accounts: dict[str, str] | None = None  # service accounts: user -> password
    mqtt_ca_file: str | None = None  # the CA certificate of the broker's TLS listener (None: plain TCP)

    def overlay(self) -> dict:
        """Settings that point jobs and tools at this stack."""
        data: dict = {}
        if self.kafka_bootstrap:
            data["kafka"] = {"bootstrap_servers": self.kafka_bootstrap}
        if self.mqtt_port:
            data["mqtt"] = {
                "host": self.mqtt_host,
                "port": self.mqtt_port,
                "tls": self.mqtt_ca_file is not None,
                "ca_file": self.mqtt_ca_file or "",
            }
            accounts = self.mqtt_accounts or {}
            data["bridge"] = {"mqtt_username": BRIDGE_USER, "mqtt_password": accounts.get(BRIDGE_USER)}
            data["simulator"] = {"mqtt_username": SIMULATOR_USER, "mqtt_password": accounts.get(SIMULATOR_USER)}
        return data


class EmbeddedStack:
    def __init__(
        self,
        settings: Settings,
        run_dir: str | Path | None = None,
        kafka: bool = True,
        mqtt: bool = True,
        flink: bool = False,
        prometheus: bool = False,
    ):
        self.base_settings = settings
        self.run_dir = Path(run_dir or settings.stack.run_dir).expanduser().resolve()
        self.want_kafka, self.want_mqtt, self.want_flink = kafka, mqtt, flink
        self.want_prometheus = prometheus
        self.prometheus_url: str | None = None
        self.info = StackInfo(stack_id=uuid.uuid4().hex[:12], run_dir=str(self.run_dir))
        self.launcher = Launcher(self.run_dir, self.info.stack_id)
        CREATED_STACK_IDS.append(self.info.stack_id)

    @property
    def settings(self) -> Settings:
        """The base settings with the stack's addresses applied."""
        overrides = [
            f"{section}.{key}={value}"
            for section, values in self.info.overlay().items()
            for key, value in values.items()
        ]
        return self.base_settings.with_overrides(*overrides)

    def up(self) -> StackInfo:
        existing = read_state(self.run_dir)
        if existing and marked_pids(existing.stack_id):
            raise StackError(
                f"a stack is already running from {self.run_dir} (id {existing.stack_id}); run 'gridflow stack down' first"
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            if self.want_kafka:
                self.info.kafka_bootstrap = services.start_kafka(self.launcher, self.base_settings, self._kafka_dir)
                self.info.kafka_log_dir = str(self._kafka_dir / "log")
            if self.want_mqtt:
                self.info.mqtt_accounts = {BRIDGE_USER: new_password(), SIMULATOR_USER: new_password()}
                self.info.mqtt_host, self.info.mqtt_port, ca_file = services.start_mosquitto(
                    self.launcher, self.base_settings, self.run_dir / "mosquitto", self.info.mqtt_accounts
                )
                self.info.mqtt_ca_file = str(ca_file) if ca_file else None
            if self.want_prometheus:
                self.prometheus_url = services.start_prometheus(
                    self.launcher, self.base_settings, self.run_dir / "prometheus"
                )
            if self.want_flink:
                self.info.flink_rest = services.start_flink_cluster(self.launcher, self.base_settings, self.run_dir)
                self.info.flink_conf_dir = str(self.run_dir / "flink-conf")
        except BaseException:
            self.down()
            raise
        for name, text in (
            (STATE_FILE, json.dumps(asdict(self.info), indent=2)),
            (OVERLAY_FILE, yaml.safe_dump(self.info.overlay(), sort_keys=True)),
        ):
            path = self.run_dir / name
            path.touch(mode=0o600)  # holds the service accounts' passwords
            path.write_text(text)
        return self.info

    def scrape(self, targets: list[str]) -> None:
        """Make the stack's Prometheus scrape these ``host:port`` targets (replaces the previous list)."""
        services.write_prometheus_targets(self.run_dir / "prometheus" / "targets.json", targets)

    def add_meter_accounts(self, accounts: dict[str, str]) -> None:
        """Give meters (user name = household id) their own MQTT credentials, effective at once; a meter
        connected with an old password is disconnected."""
        self._meter_accounts().set(accounts)

    def remove_meter_accounts(self, households) -> None:
        """Remove meters' accounts; a connected meter is disconnected at once and cannot come back."""
        self._meter_accounts().remove(households)

    def _meter_accounts(self) -> "MeterAccounts":
        if self.info.mqtt_accounts is None:
            raise StackError("the stack runs no MQTT broker: create it with mqtt=True and call up() first")
        return MeterAccounts(self.run_dir, self.launcher)

    def stop_mqtt(self) -> None:
        """Stop mosquitto (a clean shutdown: it saves its sessions), as a broker outage."""
        if self.info.mqtt_port is None:
            raise StackError("the stack runs no MQTT broker: create it with mqtt=True and call up() first")
        self.launcher.stop("mqtt")

    def start_mqtt(self) -> None:
        """Start mosquitto again after :meth:`stop_mqtt`, on the same port, accounts, sessions and CA."""
        if self.info.mqtt_port is None or self.info.mqtt_accounts is None:
            raise StackError("the stack runs no MQTT broker: create it with mqtt=True and call up() first")
        settings = self.base_settings.with_overrides(f"stack.mqtt_port={self.info.mqtt_port}")
        services.start_mosquitto(self.launcher, settings, self.run_dir / "mosquitto", self.info.mqtt_accounts)

    def restart_kafka(self) -> None:
        """Stop the broker (a clean shutdown) and start it again on the same address and log folder."""
        if self.info.kafka_bootstrap is None:
            raise StackError("the stack runs no Kafka broker: create it with kafka=True and call up() first")
        # time for a controlled shutdown (a killed broker's registration blocks its successor for a lease)
        self.launcher.stop("kafka", timeout_s=60.0)
        port = int(self.info.kafka_bootstrap.rsplit(":", 1)[1])
        services.start_kafka(self.launcher, self.base_settings, self._kafka_dir, port=port)

    @property
    def _kafka_dir(self) -> Path:
        return self.run_dir / "kafka"

    def kill_taskmanager(self) -> None:
        """SIGKILL the TaskManager and its Python workers: the crash the fault tests recover from."""
        self.launcher.kill("flink-taskmanager")

    def start_taskmanager(self) -> None:
        if self.info.flink_rest is None:
            raise StackError("the stack runs no Flink cluster: create it with flink=True and call up() first")
        services.start_taskmanager(self.launcher, self.base_settings, self.run_dir, self.info.flink_rest)

    def pids(self) -> list[int]:
        return marked_pids(self.info.stack_id)

    def down(self) -> None:
        try:
            self.launcher.stop_all()
        finally:
            (self.run_dir / STATE_FILE).unlink(missing_ok=True)
            (self.run_dir / OVERLAY_FILE).unlink(missing_ok=True)

    def __enter__(self) -> "EmbeddedStack":
        self.up()
        return self

    def __exit__(self, *exc) -> None:
        self.down()


def read_state(run_dir: str | Path) -> StackInfo | None:
    path = Path(run_dir).expanduser() / STATE_FILE
    if not path.exists():
        return None
    return StackInfo(**json.loads(path.read_text()))


def stop_stack(run_dir: str | Path) -> StackInfo | None:
    """Stop the stack recorded in ``run_dir`` (from any process); returns what was stopped."""
    info = read_state(run_dir)
    if info is None:
        return None
    try:
        Launcher(Path(info.run_dir), info.stack_id).stop_all()
    finally:
        (Path(run_dir).expanduser() / STATE_FILE).unlink(missing_ok=True)
        (Path(run_dir).expanduser() / OVERLAY_FILE).unlink(missing_ok=True)
    return info
