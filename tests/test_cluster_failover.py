"""Every job survives a TaskManager crash mid-stream on the standalone cluster, with exactly-once delivery: no
output twice, none missing.

The preprocessing job and all seven DataStream jobs (clustering, anomaly, price forecasting, appliance
learning, load forecasting, scheduling, recommendations) run at once on the cluster, each submitted with
`flink run` (the eight at the same time) on topics of its own that hold the first half of its input, bounded
at the offsets the whole input reaches, with exactly-once Kafka sinks; the anomaly job in its default thread mode (its Python in the TaskManager's JVM), the reference run in
process mode. Once every job has committed output, the TaskManager and its Python workers are SIGKILLed, a
new TaskManager takes over, the second half of the inputs arrives, and every job restores its last checkpoint
and runs to its end. Each job's committed output (read with read_committed) must hold no record twice and
equal an uninterrupted run's (``datastream_cases``, ``JobCase.compare``); its dead letters (a schedule whose
run lies outside its horizon) the same, each once. The preprocessing job's outputs (a simulated fleet's day,
malformed payloads among it, ``cluster_data.TwoHalves``) must account for every reading exactly once: in one
feature record or one dead letter, every (meter, window) written once, one profile per household.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from gridflow import kafka_io
from gridflow.cluster import FlinkCluster

from cluster_data import TwoHalves, job_overlay
from conftest import unique_topics
from datastream_cases import CASES, RUN_SETTINGS, CaseTopics, comparable, dead_letters, wait_for_all
from datastream_cases import without_wall_clock

pytestmark = [pytest.mark.integration, pytest.mark.cluster, pytest.mark.slow]


def test_every_job_writes_each_output_once_across_a_taskmanager_crash(flink_stack, uninterrupted_outputs, tmp_path):
    base = flink_stack.settings  # CaseTopics adds RUN_SETTINGS: exactly-once among them
    cluster = FlinkCluster(flink_stack.info.flink_rest, flink_stack.info.flink_conf_dir)
    parts = {name: CaseTopics(make(), base) for name, make in CASES.items()}

    def submit(name: str, part: CaseTopics):
        part.produce(0)
        args = job_overlay(part.settings, tmp_path, name)
        args += [a for override in (*RUN_SETTINGS, *part.case.overrides) for a in ("--set", override)]
        return cluster.submit(part.case.job, [*args, *part.stop_args()])

    day_settings = unique_topics(base).with_overrides(*RUN_SETTINGS)
    kafka_io.create_topics(day_settings, day_settings.topics.model_dump().values())
    day = TwoHalves(day_settings)  # the first half of a fleet's day of readings is in

    def submit_preprocess():
        return cluster.submit("preprocess", [*job_overlay(day_settings, tmp_path, "preprocess"), *day.stop_arg()])

    with ThreadPoolExecutor(len(parts) + 1) as pool:  # each `flink run` mostly waits: submit them side by side
        preprocessing = pool.submit(submit_preprocess)
        jobs = dict(zip(parts, pool.map(submit, parts, parts.values())))
        jobs["preprocess"] = preprocessing.result()
    cluster.wait_until_running(jobs["preprocess"].job_id)
    committed_before = day.wait_for_committed_output(cluster, jobs["preprocess"].job_id)
    wait_for_all(parts, CaseTopics.has_output, "no committed output before the crash from", timeout_s=300)
    before = {name: part.outputs(idle_timeout_s=1) for name, part in parts.items()}
    for name, job in jobs.items():
        assert cluster.state(job.job_id) == "RUNNING", f"{name} ended before the crash: it was not mid-stream"

    flink_stack.kill_taskmanager()  # SIGKILL: no chance to flush or commit anything
    flink_stack.start_taskmanager()
    day.produce_second_half()
    for part in parts.values():
        part.produce(1)
    for job in jobs.values():
        job.wait(timeout_s=600)

    assert cluster.exceptions(jobs["preprocess"].job_id), "preprocess: the job recovered from a failure"
    features, _, _ = day.check_every_reading_once()
    assert 0 < committed_before < len(features), "preprocess: the crash came after committed output, before the end"
    assert cluster.state(jobs["preprocess"].job_id) == "FINISHED"

    for name, part in parts.items():
        case, got, expected = part.case, part.outputs(), uninterrupted_outputs[name]
        assert cluster.exceptions(jobs[name].job_id), f"{name}: the job recovered from a failure"
        assert 0 < len(before[name][case.outputs[0]]) <= len(got[case.outputs[0]]), f"{name}: output before"
        for output in case.outputs:
            records = [repr(without_wall_clock(value)) for _, value in got[output]]
            assert max(Counter(records).values()) == 1, f"{name}: a record written twice"
            assert comparable(case, got[output]) == comparable(case, expected[output]), name
        assert dead_letters(got) == dead_letters(expected), f"{name}: dead letters"
