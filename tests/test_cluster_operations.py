"""Operating the preprocessing job on the standalone cluster: rescale through a savepoint, survive a broker
restart. Both mid-stream (half of the readings still to come), both with exactly-once delivery, and both
must end with every reading in exactly one output and every window written once."""

from __future__ import annotations

import pytest

from gridflow.cluster import FlinkCluster

from cluster_data import TwoHalves, job_overlay
from conftest import start_stack, unique_topics

pytestmark = [pytest.mark.integration, pytest.mark.cluster, pytest.mark.slow]


def _job_settings(stack):
    settings = unique_topics(stack.settings).with_overrides(
        "kafka.delivery_guarantee=exactly-once", "stream.out_of_orderness_ms=30000", "stream.idle_timeout_ms=0"
    )
    from gridflow import kafka_io

    kafka_io.create_topics(settings, settings.topics.model_dump().values())
    return settings


def test_stop_with_savepoint_and_resume_with_other_parallelism(flink_stack, tmp_path):
    settings = _job_settings(flink_stack)
    cluster = FlinkCluster(flink_stack.info.flink_rest, flink_stack.info.flink_conf_dir)
    job_args = job_overlay(settings, tmp_path, "preprocess")
    day = TwoHalves(settings)

    first = cluster.submit("preprocess", [*job_args, *day.stop_arg(), "--set", "flink.parallelism.default=2"])
    cluster.wait_until_running(first.job_id)
    day.wait_for_committed_output(cluster, first.job_id)
    assert max(v["parallelism"] for v in cluster.job(first.job_id)["vertices"]) == 2
    savepoint = cluster.stop_with_savepoint(first.job_id, tmp_path / "savepoints")
    first.wait(timeout_s=120)

    # Same job, same settings, one parallel instance instead of two: state is redistributed by key group.
    resumed = cluster.submit(
        "preprocess", [*job_args, *day.stop_arg(), "--set", "flink.parallelism.default=1"], savepoint=savepoint
    )
    cluster.wait_until_running(resumed.job_id)
    assert max(v["parallelism"] for v in cluster.job(resumed.job_id)["vertices"]) == 1
    assert cluster.checkpoints(resumed.job_id)["latest"]["restored"]["external_path"] == savepoint
    day.produce_second_half()
    # A bounded job resumed from a savepoint does not end by itself (see gridflow.cluster): once it has
    # read its input, end it with a draining stop, which fires the open windows and commits their output.
    day.wait_until_consumed("preprocess")
    cluster.stop_with_savepoint(resumed.job_id, tmp_path / "savepoints", drain=True)
    resumed.wait(timeout_s=120)
    day.check_every_reading_once()


@pytest.fixture(scope="module")
def durable_stack(base_settings, tmp_path_factory):
    """A broker of its own (restarted by the test; its log folder keeps the data) and a standalone cluster."""
    running = start_stack(base_settings, tmp_path_factory.mktemp("durable"), mqtt=False, flink=True)
    try:
        yield running
    finally:
        running.down()


def test_broker_restart_on_its_log_folder_mid_stream(durable_stack, tmp_path):
    settings = _job_settings(durable_stack)
    cluster = FlinkCluster(durable_stack.info.flink_rest, durable_stack.info.flink_conf_dir)
    day = TwoHalves(settings)
    job = cluster.submit("preprocess", [*job_overlay(settings, tmp_path, "preprocess"), *day.stop_arg()])
    cluster.wait_until_running(job.job_id)
    before = day.wait_for_committed_output(cluster, job.job_id)

    durable_stack.restart_kafka()  # the job loses its source and its transactions mid-stream
    day.produce_second_half()  # the broker kept the first half: the offsets continue from it
    job.wait(timeout_s=600)
    features, _, _ = day.check_every_reading_once()
    assert 0 < before < len(features)
