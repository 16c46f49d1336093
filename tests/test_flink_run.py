"""Submit the job to the standalone Flink cluster with `flink run` and check its output."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gridflow import kafka_io
from gridflow.stack.processes import path_with_interpreter_first
from gridflow.stack.services import flink_home

from conftest import unique_topics
from pipeline_data import MALFORMED, check_outputs, readings, records

pytestmark = [pytest.mark.integration, pytest.mark.cluster]
REPO = Path(__file__).resolve().parent.parent


def test_flink_run_submits_the_job_to_the_standalone_cluster(flink_stack, tmp_path):
    settings = unique_topics(flink_stack.settings).with_overrides("stream.window_s=120")
    topics = settings.topics
    kafka_io.create_topics(settings, [topics.readings, topics.summaries, topics.dead_letter])
    rows = readings(households=5, minutes=10, seed=11)
    ends = kafka_io.produce(settings, topics.readings, records(rows))

    overlay = tmp_path / "job.yaml"
    overlay.write_text(
        yaml.safe_dump(
            {
                "kafka": {
                    "bootstrap_servers": settings.kafka.bootstrap_servers,
                    "group_id_prefix": settings.kafka.group_id_prefix,
                },
                "topics": settings.topics.model_dump(),
                "stream": {"window_s": 120},
            }
        )
    )
    command = [
        str(flink_home() / "bin" / "flink"),
        "run",
        "-pyexec",
        sys.executable,
        "-pyclientexec",
        sys.executable,
        "-py",
        str(REPO / "jobs" / "reading_summary.py"),
        "--config",
        str(overlay),
        "--stop-offsets",
        ",".join(f"{p}={o}" for p, o in sorted(ends.items())),
    ]
    env = {**os.environ, "FLINK_CONF_DIR": flink_stack.info.flink_conf_dir, "PATH": path_with_interpreter_first()}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Job has been submitted with JobID" in result.stdout

    n_windows = len({(r["household_id"], r["ts_ms"] // 120_000) for r in rows})
    summaries = [json.loads(v) for v in kafka_io.read_topic(settings, topics.summaries, expected=n_windows)]
    dead = [json.loads(v) for v in kafka_io.read_topic(settings, topics.dead_letter, expected=len(MALFORMED))]
    check_outputs(summaries, dead, rows, window_ms=120_000)

    jobs = json.load(__import__("urllib.request").request.urlopen(f"{flink_stack.info.flink_rest}/jobs/overview"))
    assert [job["state"] for job in jobs["jobs"]].count("FINISHED") >= 1
