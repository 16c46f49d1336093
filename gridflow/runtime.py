"""The Flink execution environment every job runs in, built from settings.

The same code serves the local mini-cluster (``python jobs/x.py``) and a cluster submission
(``flink run -py jobs/x.py``): job options from ``flink-conf/config.yaml`` are applied, the Kafka
connector jars go into ``pipeline.jars``, and for a local run the Python workers use this interpreter.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from gridflow.jars import adapt_pyflink_to_connector, connector_jar_urls
from gridflow.settings import Settings


def submitted_by_flink_cli() -> bool:
    """True when this process was started by ``flink run`` (the CLI owns the cluster connection)."""
    return "PYFLINK_GATEWAY_PORT" in os.environ


def _put_interpreter_first_on_path() -> None:
    """Thread-mode Python workers (pemja) find their packages through the ``python`` on PATH, not
    through ``python.executable``: without this a job started by a venv's interpreter from a shell
    that did not activate the venv fails with "No module named 'pemja'". Must run before the JVM starts."""
    interpreter_dir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if path.split(os.pathsep)[0] != interpreter_dir:
        os.environ["PATH"] = interpreter_dir + os.pathsep + path


def create_env(settings: Settings):
    from pyflink.common import Configuration
    from pyflink.datastream import StreamExecutionEnvironment

    options = settings.flink.job_options()
    jars = connector_jar_urls(settings)
    existing = [j for j in options.get("pipeline.jars", "").split(";") if j]
    options["pipeline.jars"] = ";".join(dict.fromkeys(existing + jars))
    if not submitted_by_flink_cli():
        options.setdefault("python.executable", sys.executable)
        _put_interpreter_first_on_path()
    config = Configuration()
    for key, value in options.items():
        config.set_string(key, value)
    env = StreamExecutionEnvironment.get_execution_environment(config)
    env.set_parallelism(settings.flink.parallelism_default)
    adapt_pyflink_to_connector()
    return env
