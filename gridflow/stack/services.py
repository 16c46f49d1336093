"""The services of the embedded stack: Apache Kafka, mosquitto, Prometheus and Flink.

Each ``start_*`` function starts one service through a :class:`Launcher`, waits until it answers and
returns where to reach it. The broker is Apache Kafka (one KRaft node, broker and controller in one JVM)
from the jars ``gridflow jars fetch`` resolved from Maven Central; mosquitto and Prometheus come from
their Debian packages, Flink is the distribution inside the ``apache-flink`` wheel.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

from gridflow.jars import ConnectorJarError, kafka_classpath
from gridflow.settings import FLINK_FILE, Settings, default_conf_dir
from gridflow.stack import mqtt_auth
from gridflow.stack.tls import TlsFiles, ensure_tls
from gridflow.stack.processes import (
    Launcher,
    StackError,
    claim_port,
    free_port,
    path_with_interpreter_first,
    wait_for_port,
    wait_until,
)

KAFKA_NODE_ID = 1


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise StackError(f"package {name!r} is not installed; run scripts/setup.sh")
    return Path(list(spec.submodule_search_locations)[0])


def flink_home() -> Path:
    return package_dir("pyflink")


def java_binary() -> str:
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home) / "bin" / "java" if java_home else None
    binary = str(candidate) if candidate and candidate.exists() else shutil.which("java")
    if binary is None:
        raise StackError("Java 17+ is needed for Kafka and Flink; run scripts/setup.sh (it installs OpenJDK 17)")
    return binary


def kafka_properties(settings: Settings, log_dir: Path, port: int, controller_port: int) -> dict[str, str]:
    """``server.properties`` of the embedded single-node broker; ``stack.kafka_properties`` wins."""
    host = settings.stack.host
    single_node = {
        key: "1"
        for key in (
            "offsets.topic.replication.factor",
            "transaction.state.log.replication.factor",
            "transaction.state.log.min.isr",
            "share.coordinator.state.topic.replication.factor",
            "share.coordinator.state.topic.min.isr",
            "default.replication.factor",
        )
    }
    properties = {
        "process.roles": "broker,controller",
        "node.id": str(KAFKA_NODE_ID),
        "controller.quorum.voters": f"{KAFKA_NODE_ID}@{host}:{controller_port}",
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": str(settings.kafka.partitions),
        **single_node,
        # one node: internal topics need few partitions, and a new group need not wait for more members
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.num.partitions": "10",
        "group.initial.rebalance.delay.ms": "0",
        # the broker's heartbeats go to the controller in its own process: only a starved machine misses
        # them, and then the default 9 s lease fences the one broker and refuses every topic creation. Not
        # much longer: after an unclean stop the restarted broker cannot register before the lease ends.
        "broker.session.timeout.ms": "18000",
        "num.network.threads": "2",
        "num.io.threads": "4",
    }
    return {**properties, **settings.stack.kafka_properties}


def _previous_controller_port(properties_file: Path) -> int | None:
    if not properties_file.exists():
        return None
    for line in properties_file.read_text().splitlines():
        if line.startswith("controller.quorum.voters="):
            return int(line.rsplit(":", 1)[1])
    return None


def _cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (not starting with '-')."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


KAFKA_LOG4J = """Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        Pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Logger:
      - name: kafka.server.KafkaRaftServer
        level: INFO
    Root:
      level: WARN
      AppenderRef:
        - ref: STDOUT
"""


def start_kafka(launcher: Launcher, settings: Settings, data_dir: Path, port: int = 0) -> str:
    """Apache Kafka, one KRaft node, its log in ``data_dir/log`` (kept across restarts); returns its
    bootstrap address. ``port`` 0 takes ``stack.kafka_port`` (0 there: any free port)."""
    try:
        classpath = kafka_classpath(settings)
    except ConnectorJarError as error:
        raise StackError(str(error)) from None
    host = settings.stack.host
    port = port or claim_port(host, settings.stack.kafka_port, "stack.kafka_port")
    data_dir.mkdir(parents=True, exist_ok=True)
    properties_file, log_dir = data_dir / "server.properties", data_dir / "log"
    controller_port = _previous_controller_port(properties_file) or free_port(host)
    properties = kafka_properties(settings, log_dir, port, controller_port)
    properties_file.write_text("".join(f"{key}={value}\n" for key, value in properties.items()))
    (data_dir / "log4j2.yaml").write_text(KAFKA_LOG4J)
    java = [java_binary(), f"-Dlog4j2.configurationFile={data_dir / 'log4j2.yaml'}", "-cp", classpath]
    if not (log_dir / "meta.properties").exists():
        formatted = subprocess.run(
            [
                *java,
                "kafka.tools.StorageTool",
                "format",
                "--cluster-id",
                _cluster_id(),
                "--config",
                str(properties_file),
            ],
            capture_output=True,
            text=True,
            timeout=settings.stack.start_timeout_s,
        )
        if formatted.returncode != 0:
            raise StackError(f"formatting the Kafka log folder {log_dir} failed:\n{formatted.stdout}{formatted.stderr}")
    heap = f"{settings.stack.kafka_heap_mb}m"
    broker = [
        *java[:1],
        f"-Xms{heap}",
        f"-Xmx{heap}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        *java[1:],
        "kafka.Kafka",
        str(properties_file),
    ]
    process = launcher.start("kafka", broker)
    wait_for_port(host, port, settings.stack.start_timeout_s, process)
    bootstrap = f"{host}:{port}"
    wait_until(
        lambda: _kafka_ready(bootstrap), settings.stack.start_timeout_s, "Kafka to answer metadata requests", process
    )
    return bootstrap


def _kafka_ready(bootstrap: str) -> bool:
    """The broker answers a metadata request and lists itself, unfenced."""
    from kafka import KafkaAdminClient
    from kafka.errors import BrokerNotAvailableError, RetriableError

    not_yet = (RetriableError, BrokerNotAvailableError, OSError)  # KafkaTimeoutError, connection errors, ...
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
    except not_yet:
        return False
    try:
        return any(not broker.get("is_fenced") for broker in admin.describe_cluster().get("brokers", []))
    except not_yet:
        return False
    finally:
        admin.close()


def mosquitto_config(
    port: int,
    host: str,
    data_dir: Path,
    password_file: Path,
    acl_file: Path,
    tls: TlsFiles | None = None,
    max_packet_bytes: int = 262_144,
) -> str:
    lines = [f"listener {port} {host}"]
    if tls is not None:  # TLS only on this listener: a plain-TCP client gets no MQTT session
        lines += [
            f"cafile {tls.ca_cert}",
            f"certfile {tls.server_cert}",
            f"keyfile {tls.server_key}",
            "tls_version tlsv1.2",
        ]
    lines += [
        "allow_anonymous false",
        f"password_file {password_file}",
        f"acl_file {acl_file}",
        "persistence true",
        f"persistence_location {data_dir}/",
        "autosave_interval 30",
        "log_dest stdout",
        "log_type error",
        "log_type warning",
        "log_type notice",
        # QoS 1 messages a client may have unacknowledged; the bridge acknowledges only after Kafka did,
        # so this bounds its throughput (default 20 would cap it at a few thousand readings/s).
        "max_inflight_messages 1000",
        # readings held for an offline persistent session (the bridge during a restart)
        "max_queued_messages 2000000",
        f"max_packet_size {max_packet_bytes}",
    ]
    if os.geteuid() == 0:
        lines.append("user root")  # otherwise mosquitto switches to a 'mosquitto' user that cannot write data_dir
    return "\n".join(lines) + "\n"


def start_mosquitto(
    launcher: Launcher, settings: Settings, data_dir: Path, accounts: dict[str, str]
) -> tuple[str, int, Path | None]:
    """Start mosquitto; returns its host, port and (with ``stack.mqtt_tls``) the CA certificate clients trust."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        raise StackError("mosquitto is not installed; run scripts/setup.sh (apt-get install mosquitto)")
    host = settings.stack.host
    port = claim_port(host, settings.stack.mqtt_port, "stack.mqtt_port")
    data_dir.mkdir(parents=True, exist_ok=True)
    password_file, acl_file = data_dir / "passwords", data_dir / "acl"
    mqtt_auth.update_password_file(password_file, accounts)  # meters' accounts from an earlier run are kept
    mqtt = settings.mqtt
    acl_file.write_text(
        mqtt_auth.acl_text(
            mqtt.readings_topic,
            mqtt.commands_topic,
            mqtt.status_topic,
            settings.bridge.adapters.values(),
            mqtt.home_assistant_topic,
            mqtt.credentials_topic,
        )
    )
    config = data_dir / "mosquitto.conf"
    tls = ensure_tls(data_dir / "tls", host) if settings.stack.mqtt_tls else None
    config.write_text(
        mosquitto_config(port, host, data_dir, password_file, acl_file, tls, settings.stack.mqtt_max_packet_bytes)
    )
    process = launcher.start("mqtt", [binary, "-c", str(config)])
    wait_for_port(host, port, settings.stack.start_timeout_s, process)
    return host, port, tls.ca_cert if tls else None


def reload_mosquitto_accounts(
    launcher: Launcher, data_dir: Path, accounts: dict[str, str] | None = None, remove=()
) -> None:
    """Change accounts in the password file and make the running mosquitto reload it: new passwords
    hold at once, and a client whose account was removed or whose password changed is disconnected."""
    pid = launcher.pid_of("mqtt")
    if pid is None:
        raise StackError(f"mosquitto of the stack in {launcher.run_dir} is not running ('gridflow stack up' first)")
    mqtt_auth.update_password_file(data_dir / "passwords", accounts, remove)
    os.kill(pid, signal.SIGHUP)


def write_flink_conf_dir(settings: Settings, target: Path, rest_port: int, rpc_port: int) -> Path:
    """A Flink configuration folder for the standalone cluster: our options plus the ports chosen."""
    target.mkdir(parents=True, exist_ok=True)
    source = default_conf_dir()
    for properties in source.glob("log4j*.properties"):
        shutil.copy(properties, target / properties.name)
    options = settings.flink.options()
    options.update(
        {
            "rest.port": str(rest_port),
            "rest.address": settings.stack.host,
            "rest.bind-address": settings.stack.host,
            "jobmanager.rpc.port": str(rpc_port),
            "jobmanager.rpc.address": settings.stack.host,
            "python.executable": options.get("python.executable", sys.executable),
            "execution.checkpointing.dir": (target.parent / "checkpoints").as_uri(),
            "execution.checkpointing.savepoint-dir": (target.parent / "savepoints").as_uri(),
        }
    )
    (target / FLINK_FILE).write_text("".join(f"{key}: {json.dumps(value)}\n" for key, value in sorted(options.items())))
    return target


def start_flink_cluster(launcher: Launcher, settings: Settings, run_dir: Path) -> str:
    """A standalone Flink cluster (one JobManager, one TaskManager); returns the REST address."""
    host = settings.stack.host
    rest_port = claim_port(host, settings.stack.flink_rest_port, "stack.flink_rest_port")
    conf_dir = write_flink_conf_dir(settings, run_dir / "flink-conf", rest_port, free_port(host))
    env = flink_env(conf_dir, run_dir)
    bin_dir = flink_home() / "bin"
    jobmanager = launcher.start(
        "flink-jobmanager", ["bash", str(bin_dir / "jobmanager.sh"), "start-foreground"], env=env
    )
    rest = f"http://{host}:{rest_port}"
    wait_until(
        lambda: _rest_json(f"{rest}/overview") is not None,
        settings.stack.start_timeout_s,
        "the Flink REST API",
        jobmanager,
    )
    start_taskmanager(launcher, settings, run_dir, rest)
    return rest


def start_taskmanager(launcher: Launcher, settings: Settings, run_dir: Path, rest: str) -> None:
    """Start (or restart) the TaskManager and wait until the JobManager sees it."""
    before = {tm["id"] for tm in (_rest_json(f"{rest}/taskmanagers") or {}).get("taskmanagers", [])}
    env = flink_env(run_dir / "flink-conf", run_dir)
    argv = ["bash", str(flink_home() / "bin" / "taskmanager.sh"), "start-foreground"]
    taskmanager = launcher.start("flink-taskmanager", argv, env=env)

    def registered() -> bool:
        overview = _rest_json(f"{rest}/taskmanagers") or {}
        return any(tm["id"] not in before for tm in overview.get("taskmanagers", []))

    wait_until(registered, settings.stack.start_timeout_s, "the TaskManager to register", taskmanager)


def flink_lib_dir(run_dir: Path) -> Path:
    """The cluster's class path: the wheel's lib/ plus flink-python from opt/ (PyFlink jobs need it on the
    cluster; a binary Flink distribution asks users to copy it into lib/, the wheel cannot be changed)."""
    lib = run_dir / "flink-lib"
    lib.mkdir(parents=True, exist_ok=True)
    home = flink_home()
    for jar in [*(home / "lib").glob("*.jar"), *(home / "opt").glob("flink-python*.jar")]:
        link = lib / jar.name
        if not link.exists():
            link.symlink_to(jar)
    return lib


def flink_env(conf_dir: Path, run_dir: Path) -> dict[str, str]:
    return {
        "FLINK_CONF_DIR": str(conf_dir),
        "FLINK_LIB_DIR": str(flink_lib_dir(run_dir)),
        "FLINK_LOG_DIR": str(run_dir / "logs" / "flink"),
        "FLINK_PID_DIR": str(run_dir / "flink-pids"),
        "PATH": path_with_interpreter_first(),
    }


def _rest_json(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.load(response)
    except (OSError, ValueError):
        return None


def prometheus_config(targets_file: Path, scrape_interval_s: float) -> str:
    interval = f"{int(scrape_interval_s * 1000)}ms"
    return (
        f"global:\n  scrape_interval: {interval}\n  evaluation_interval: {interval}\n"
        f"scrape_configs:\n  - job_name: gridflow\n    file_sd_configs:\n      - files: ['{targets_file}']\n"
    )


def write_prometheus_targets(targets_file: Path, targets: list[str]) -> None:
    """Point the running Prometheus at ``host:port`` targets (file-based discovery, picked up on change)."""
    tmp = targets_file.with_suffix(".tmp")
    tmp.write_text(json.dumps([{"targets": list(targets), "labels": {"stack": "gridflow"}}]))
    tmp.replace(targets_file)


def start_prometheus(launcher: Launcher, settings: Settings, data_dir: Path, scrape_interval_s: float = 1.0) -> str:
    """A Prometheus server (Debian package) scraping the targets of ``data_dir/targets.json``; returns its URL."""
    binary = shutil.which("prometheus")
    if not binary:
        raise StackError("prometheus is not installed; run scripts/setup.sh (apt-get install prometheus)")
    host = settings.stack.host
    port = claim_port(host, 0, "prometheus port")
    data_dir.mkdir(parents=True, exist_ok=True)
    targets = data_dir / "targets.json"
    write_prometheus_targets(targets, [])
    config = data_dir / "prometheus.yml"
    config.write_text(prometheus_config(targets, scrape_interval_s))
    process = launcher.start(
        "prometheus",
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={data_dir / 'tsdb'}",
            f"--web.listen-address={host}:{port}",
        ],
    )
    wait_for_port(host, port, settings.stack.start_timeout_s, process)
    return f"http://{host}:{port}"
