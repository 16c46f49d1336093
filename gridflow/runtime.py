"""The Flink execution environment every job runs in, built from settings.

The same code serves the local mini-cluster (``python jobs/x.py``) and a cluster submission
(``flink run -py jobs/x.py``): job options from ``flink-conf/config.yaml`` are applied, the Kafka
connector jars go into ``pipeline.jars``, and for a local run the Python workers use this interpreter.
"""
from __future__ import annotations

import os
import sys

from gridflow.jars import adapt_pyflink_to_connector, connector_jar_urls
from gridflow.settings import Settings
from gridflow.stack.processes import path_with_interpreter_first


def submitted_by_flink_cli() -> bool:
    """True when this process was started by ``flink run`` (the CLI owns the cluster connection)."""
    return "PYFLINK_GATEWAY_PORT" in os.environ


def create_env(settings: Settings):
    from pyflink.common import Configuration
    from pyflink.datastream import StreamExecutionEnvironment

    options = settings.flink.job_options()
    jars = connector_jar_urls(settings)
    existing = [j for j in options.get("pipeline.jars", "").split(";") if j]
    options["pipeline.jars"] = ";".join(dict.fromkeys(existing + jars))
    if not submitted_by_flink_cli():
        options.setdefault("python.executable", sys.executable)
        # Thread-mode Python workers (pemja) find their packages through the ``python`` on PATH, not
        # through python.executable: without this a job started by a venv's interpreter from a shell
        # that did not activate the venv fails with "No module named 'pemja'". Before the JVM starts.
        os.environ["PATH"] = path_with_interpreter_first()
    config = Configuration()
    for key, value in options.items():
        config.set_string(key, value)
    env = StreamExecutionEnvironment.get_execution_environment(config)
    env.set_parallelism(settings.flink.parallelism_default)
    adapt_pyflink_to_connector()
    return env
