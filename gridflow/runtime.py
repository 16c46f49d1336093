"""The Flink execution environment every job runs in, built from settings.

The same code serves the local mini-cluster (``python jobs/x.py``) and a cluster submission
(``flink run -py jobs/x.py``): job options from ``flink-conf/config.yaml`` are applied, the Kafka
connector jars go into ``pipeline.jars``, and for a local run the Python workers use this interpreter.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from gridflow.jars import check_connector_on_classpath, connector_jar_urls
from gridflow.settings import Settings
from gridflow.stack.processes import path_with_interpreter_first


def _pyflink_home() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("pyflink")  # without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("apache-flink (pyflink) is not installed in this environment")
    return Path(list(spec.submodule_search_locations)[0])


def local_lib_dir() -> Path:
    """Class path folder of the local mini-cluster: the wheel's lib/ jars plus the metric reporter jars
    from its plugins/ folder (a standalone cluster loads those as plugins; the mini-cluster does not)."""
    import hashlib

    home = _pyflink_home()
    jars = [*(home / "lib").glob("*.jar"), *(home / "plugins" / "metrics-prometheus").glob("*.jar")]
    folder = (
        Path.home() / ".cache" / "gridflow" / f"local-flink-lib-{hashlib.sha256(str(home).encode()).hexdigest()[:12]}"
    )
    folder.mkdir(parents=True, exist_ok=True)
    for jar in jars:
        link = folder / jar.name
        if not link.exists():
            try:
                link.symlink_to(jar)
            except FileExistsError:
                pass  # another job made it first
    return folder


def submitted_by_flink_cli() -> bool:
    """True when this process was started by ``flink run`` (the CLI owns the cluster connection)."""
    return "PYFLINK_GATEWAY_PORT" in os.environ


def create_env(settings: Settings):
    if not submitted_by_flink_cli():
        # Before any pyflink.datastream import: importing it starts the Java gateway.
        # Thread-mode Python workers (pemja) find their packages through the ``python`` on PATH, not
        # through python.executable: without this a job started by a venv's interpreter from a shell
        # that did not activate the venv fails with "No module named 'pemja'".
        os.environ["PATH"] = path_with_interpreter_first()
        # A local job's Python workers run in this process (loopback mode) and copy their environment into
        # it, JAVA_HOME="" among it; PyFlink would then start its gateway as "bin/java". Empty means unset.
        if os.environ.get("JAVA_HOME") == "":
            del os.environ["JAVA_HOME"]
        # The local mini-cluster finds no plugins, so the Prometheus reporter goes on its class path.
        # With FLINK_HOME unset PyFlink overwrites FLINK_LIB_DIR with the wheel's lib/, so set both.
        if "FLINK_LIB_DIR" not in os.environ:
            os.environ["FLINK_LIB_DIR"] = str(local_lib_dir())
            os.environ.setdefault("FLINK_HOME", str(_pyflink_home()))
    from pyflink.common import Configuration
    from pyflink.datastream import StreamExecutionEnvironment

    options = settings.flink.job_options()
    jars = connector_jar_urls(settings)
    existing = [j for j in options.get("pipeline.jars", "").split(";") if j]
    options["pipeline.jars"] = ";".join(dict.fromkeys(existing + jars))
    if not submitted_by_flink_cli():
        options.setdefault("python.executable", sys.executable)
    config = Configuration()
    for key, value in options.items():
        config.set_string(key, value)
    env = StreamExecutionEnvironment.get_execution_environment(config)
    env.set_parallelism(settings.flink.parallelism_default)
    check_connector_on_classpath()
    return env


def run_datastream_job(doc: str, name: str, build, argv: list[str] | None, stop_topic=None) -> None:
    """The ``main`` of a DataStream job: parse its arguments (``--config``, ``--set``, ``--stop-offsets``),
    build it on a fresh environment and run it. ``stop_topic(settings)`` names the topic ``--stop-offsets``
    bounds (jobs with one input); ``--stop-at TOPIC:P=O,...`` bounds any input by name."""
    from gridflow.cli_args import job_argument_parser, settings_from_args

    args = job_argument_parser(doc).parse_args(argv)
    settings = settings_from_args(args)
    env = create_env(settings)
    stops = {stop_topic(settings): args.stop_offsets} if stop_topic is not None and args.stop_offsets else {}
    stops.update(dict(args.stop_at))
    build(env, settings, stops or None)
    env.execute(name)


def configure_job(env, runtime) -> None:
    """Apply one job's block of the ``jobs`` settings (``gridflow.settings.JobRuntime``: Python execution
    mode, bundle size and time, Arrow batch size) to its StreamExecutionEnvironment or TableEnvironment."""
    options = runtime.flink_options()
    if hasattr(env, "configure"):  # StreamExecutionEnvironment
        from pyflink.common import Configuration

        config = Configuration()
        for key, value in options.items():
            config.set_string(key, value)
        env.configure(config)
    else:  # TableEnvironment
        for key, value in options.items():
            env.get_config().set(key, value)
