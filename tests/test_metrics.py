"""Metrics: the preprocessing job on the mini-cluster with Flink's Prometheus reporter, scraped by a real
Prometheus server; Flink's and gridflow's series exist and move, and the dashboard asks for series that exist."""

import json
import re
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from gridflow import kafka_io
from gridflow.jobs import preprocess
from gridflow.stack import EmbeddedStack
from gridflow.stack.processes import free_port

pytestmark = pytest.mark.integration
PREFIX = "flink_taskmanager_job_task_operator_gridflow_"
DASHBOARD = Path(__file__).parent.parent / "docs" / "grafana" / "gridflow.json"


def _query(url: str, path: str, **params) -> dict:
    with urllib.request.urlopen(f"{url}/api/v1/{path}?{urllib.parse.urlencode(params)}", timeout=10) as reply:
        body = json.load(reply)
    assert body["status"] == "success", body
    return body["data"]


def _series(url: str, name: str, start: float, end: float) -> list[list[float]]:
    """Values of every series of ``name`` (one per subtask) at every second between start and end.

    Each subtask's counter is checked on its own: a sum over subtasks drops when one subtask finishes before the
    others and its series goes stale."""
    data = _query(url, "query_range", query=name, start=start, end=end, step=1)
    return [[float(v) for _, v in series["values"]] for series in data["result"]]


def test_prometheus_scrapes_flink_and_domain_metrics(stack, base_settings, tmp_path):
    sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
    from conftest import unique_topics
    from preprocess_throughput import preload

    from gridflow.devices.load_shapes import LoadShapeLibrary

    port = free_port()
    settings = unique_topics(stack.settings).with_overrides(f"flink.metrics.reporter.prom.port={port}")
    t = settings.topics
    kafka_io.create_topics(settings, [t.readings, t.features, t.profiles, t.dead_letter])
    sent, ends = preload(settings, LoadShapeLibrary.load(settings), meters=300, samples=300)
    with EmbeddedStack(base_settings, tmp_path / "monitoring", kafka=False, mqtt=False, prometheus=True) as monitoring:
        monitoring.scrape([f"127.0.0.1:{port}"])
        started = time.time()
        preprocess.build(preprocess.create_table_env(settings), settings, ends).execute().wait()
        # the reporter stopped with the job; poll until Prometheus answers the same twice (the last scrape is in)
        url, deadline, clean = monitoring.prometheus_url, time.monotonic() + 30, None
        while True:
            ended = time.time()
            now = _series(url, f"{PREFIX}readings_clean", started, ended)
            if now and now == clean:
                break
            assert time.monotonic() < deadline, f"Prometheus never settled on readings_clean: {now}"
            clean = now
            time.sleep(1)
        records_in = _series(url, "flink_taskmanager_job_task_operator_numRecordsIn", started, ended)
        names = set(_query(url, "label/__name__/values"))
    assert clean, sorted(n for n in names if "gridflow" in n or "numRecordsIn" in n)[:30]
    assert all(values == sorted(values) for values in clean), f"a readings_clean counter went backwards: {clean}"
    assert any(len(set(values)) >= 2 for values in clean), f"readings_clean did not move: {clean}"
    assert 0 < sum(values[-1] for values in clean) <= sent
    assert records_in and max(max(values) for values in records_in) > 0
    assert {f"{PREFIX}{m}" for m in ("readings_clean", "windows", "outliers_replaced")} <= names
    wanted = set(re.findall(r"flink_taskmanager_job_task_operator_gridflow_[a-z_]+", DASHBOARD.read_text()))
    # (profiles come once per household-day, at the end of this bounded run: after the last scrape)
    preprocess_metrics = {f"{PREFIX}{m}" for m in ("readings_clean", "windows", "outliers_replaced")}
    assert preprocess_metrics & wanted <= names, "the dashboard asks for series the job does not export"
