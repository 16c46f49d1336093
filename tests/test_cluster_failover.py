"""Every DataStream job survives a TaskManager crash mid-stream on the standalone cluster, with exactly-once
delivery: no output twice, none missing.

All six jobs (clustering, anomaly, price forecasting, appliance learning, scheduling, recommendations) run at
once on the cluster, each submitted with `flink run`, with exactly-once Kafka sinks. First each runs once,
uninterrupted, over its whole input (the reference). Then each runs again on topics of its own that hold the
first half of its input, bounded at the offsets the whole input reaches; once every job has committed
output, the TaskManager and its Python workers are SIGKILLed, a new TaskManager takes over, the second half
of the input arrives, and every job restores its last checkpoint and runs to its end. Each job's committed
output (read with read_committed) must hold no record twice and equal the reference (see
``datastream_cases.JobCase.compare``), and its dead letters (a schedule whose run lies outside its horizon)
the reference's, each once.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from gridflow import kafka_io
from gridflow.cli_args import format_topic_offsets
from gridflow.cluster import FlinkCluster

from cluster_data import job_overlay, partition
from conftest import unique_topics
from datastream_cases import CASES, JobCase, comparable, without_wall_clock

pytestmark = [pytest.mark.integration, pytest.mark.cluster, pytest.mark.slow]


def dead_letters(outputs) -> list[tuple]:
    letters = [without_wall_clock(value) for _, value in outputs["dead_letter"]]
    return sorted((d["payload"], d["field"], d["reason"]) for d in letters)


class Run:
    """One job of one case on topics of its own."""

    def __init__(self, case: JobCase, base, tmp_path, label: str):
        self.case = case
        self.settings = unique_topics(base).with_overrides(*case.overrides)
        t = self.settings.topics
        names = [*case.inputs, *case.outputs, "dead_letter"]
        for name in names:
            kafka_io.create_topics(
                self.settings, [getattr(t, name)], partitions=1 if name in case.one_partition else None
            )
        self.args = [*job_overlay(self.settings, tmp_path, f"{case.job}-{label}")]
        self.args += [arg for override in case.overrides for arg in ("--set", override)]
        self.partitions = {
            name: 1 if name in case.one_partition else self.settings.kafka.partitions for name in case.inputs
        }

    def topic(self, name: str) -> str:
        return getattr(self.settings.topics, name)

    def produce(self, name: str, records) -> dict[int, int]:
        return kafka_io.produce(self.settings, self.topic(name), records)

    def stops(self, first: dict[str, dict[int, int]], later: dict[str, list]) -> list[str]:
        """``--stop-at`` arguments: per input, the offsets its whole input reaches (first half written plus
        the second half, counted per partition of its keys)."""
        args = []
        for name, records in later.items():
            ends = dict.fromkeys(range(self.partitions[name]), 0) | first.get(name, {})
            for key, _ in records:
                p = partition(key.encode(), self.partitions[name])
                ends[p] = ends.get(p, 0) + 1
            args += ["--stop-at", format_topic_offsets(self.topic(name), ends)]
        return args

    def outputs(self, idle_timeout_s: float = 3.0) -> dict[str, list[tuple[bytes | None, bytes]]]:
        return {
            name: kafka_io.read_records(self.settings, self.topic(name), idle_timeout_s=idle_timeout_s)
            for name in [*self.case.outputs, "dead_letter"]
        }

    def has_committed_output(self) -> bool:
        name = self.case.outputs[0]
        return bool(kafka_io.read_records(self.settings, self.topic(name), expected=1, idle_timeout_s=0.5))


def test_every_datastream_job_writes_each_output_once_across_a_taskmanager_crash(flink_stack, tmp_path):
    base = flink_stack.settings.with_overrides("kafka.delivery_guarantee=exactly-once")
    cluster = FlinkCluster(flink_stack.info.flink_rest, flink_stack.info.flink_conf_dir)
    cases = {name: make() for name, make in CASES.items()}

    # The reference: each job once, uninterrupted, over its whole input (all six at once).
    references = {name: Run(case, base, tmp_path, "reference") for name, case in cases.items()}
    submitted = []
    for name, run in references.items():
        stops = run.stops({}, run.case.inputs)
        for input_name, records in run.case.inputs.items():
            run.produce(input_name, records)
        submitted.append(cluster.submit(run.case.job, [*run.args, *stops]))
    for submission in submitted:
        submission.wait(timeout_s=600)
    expected = {name: run.outputs() for name, run in references.items()}
    for name, outputs in expected.items():
        assert all(outputs[o] for o in cases[name].outputs), f"{name}: the uninterrupted run wrote nothing"

    # The crash: each job mid-stream, having committed output, with half of its input still to come.
    runs = {name: Run(case, base, tmp_path, "crash") for name, case in cases.items()}
    halves = {
        name: {n: (r[: case.split(r)], r[case.split(r) :]) for n, r in case.inputs.items()}
        for name, case in cases.items()
    }
    jobs = {}
    for name, run in runs.items():
        first = {n: run.produce(n, halves[name][n][0]) for n in run.case.inputs}
        stops = run.stops(first, {n: halves[name][n][1] for n in run.case.inputs})
        jobs[name] = cluster.submit(run.case.job, [*run.args, *stops])
    deadline = time.monotonic() + 300
    waiting = set(runs)
    while waiting:
        assert time.monotonic() < deadline, f"no committed output before the crash from {sorted(waiting)}"
        waiting = {name for name in waiting if not runs[name].has_committed_output()}
    committed_before = {name: run.outputs(idle_timeout_s=1) for name, run in runs.items()}
    for name, job in jobs.items():
        assert cluster.state(job.job_id) == "RUNNING", f"{name} ended before the crash: it was not mid-stream"

    flink_stack.kill_taskmanager()  # SIGKILL: no chance to flush or commit anything
    flink_stack.start_taskmanager()
    for name, run in runs.items():
        for n in run.case.inputs:
            run.produce(n, halves[name][n][1])
    for job in jobs.values():
        job.wait(timeout_s=600)

    for name, run in runs.items():
        case, job = cases[name], jobs[name]
        assert cluster.exceptions(job.job_id), f"{name}: the job recovered from a failure (its exception history)"
        got = run.outputs()
        for output in case.outputs:
            records = [without_wall_clock(value) for _, value in got[output]]
            twice = [r for r, n in Counter(map(repr, records)).items() if n > 1]
            assert not twice, f"{name}: {len(twice)} records written twice, e.g. {twice[0][:300]}"
            assert comparable(case, got[output]) == comparable(case, expected[name][output]), name
        first_output = committed_before[name][case.outputs[0]]
        assert 0 < len(first_output) <= len(got[case.outputs[0]]), f"{name}: committed output before the crash"
        assert dead_letters(got) == dead_letters(expected[name]), f"{name}: the same inputs dead-lettered once"
