"""The preprocessing job submitted with `flink run` to the standalone Flink cluster, with a TaskManager crash.

The job writes with exactly-once delivery (Kafka transactions committed with Flink checkpoints); its outputs
are read committed. It is crashed (SIGKILL of the TaskManager and its Python workers) after it has committed
output and while half of the readings have still to arrive; a new TaskManager takes over, the job restores
its last checkpoint, and the outputs must account for every reading exactly once. The DataStream jobs go
through the same crash in ``test_cluster_failover``; the jobs one after another on each other's outputs run
in the demo (``test_demo``).
"""

from __future__ import annotations

import pytest

from gridflow import kafka_io
from gridflow.cluster import FlinkCluster

from cluster_data import TwoHalves, job_overlay
from conftest import unique_topics

pytestmark = [pytest.mark.integration, pytest.mark.cluster, pytest.mark.slow]


def test_preprocessing_on_the_cluster_counts_every_reading_once_across_a_taskmanager_crash(flink_stack, tmp_path):
    settings = unique_topics(flink_stack.settings).with_overrides(
        "kafka.delivery_guarantee=exactly-once",
        "stream.out_of_orderness_ms=30000",
        "stream.idle_timeout_ms=0",
    )
    t = settings.topics
    kafka_io.create_topics(settings, t.model_dump().values())
    cluster = FlinkCluster(flink_stack.info.flink_rest, flink_stack.info.flink_conf_dir)
    job_args = job_overlay(settings, tmp_path, "pipeline")

    day = TwoHalves(settings)
    preprocess = cluster.submit("preprocess", [*job_args, *day.stop_arg()])
    cluster.wait_until_running(preprocess.job_id)
    committed_before = day.wait_for_committed_output(cluster, preprocess.job_id)
    assert cluster.state(preprocess.job_id) == "RUNNING"

    flink_stack.kill_taskmanager()  # SIGKILL: no chance to flush or commit anything
    flink_stack.start_taskmanager()
    day.produce_second_half()
    preprocess.wait(timeout_s=600)
    assert cluster.exceptions(preprocess.job_id), "the job recovered from a failure (its exception history)"

    features, _, _ = day.check_every_reading_once()
    assert 0 < committed_before < len(features), "the crash came after committed output and before the end"

    jobs = {job["jid"]: job["state"] for job in cluster.jobs()}
    assert jobs[preprocess.job_id] == "FINISHED"
