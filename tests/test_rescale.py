"""Every DataStream job survives an upgrade: stop with a savepoint mid-stream at parallelism 2, resume from it
at parallelism 1 with the rest of its input, and its outputs equal those of one uninterrupted run.

The seven jobs (clustering, anomaly, price forecasting, appliance learning, load forecasting, scheduling,
recommendations) are built side by side into one Flink job on the mini-cluster, each on topics of its own
with its own settings (``datastream_cases``, exactly-once delivery read with read_committed); the reference
is one uninterrupted bounded run over the whole inputs. Here the first half of every input goes in, the job runs until every part
has written output (its state is not empty) and stops with a savepoint; the second half goes in, the job
resumes from the savepoint with one parallel instance instead of two, reads to the end of its inputs (its
consumer groups committed the inputs' end offsets) and stops draining, which ends event time as the end of a
bounded input does. Each part's outputs and dead letters must equal the reference's (``JobCase.compare``),
no record twice.
"""

from __future__ import annotations

from collections import Counter

import pytest

from datastream_cases import CASES, RUN_SETTINGS, CaseTopics, cancelled_on_failure, comparable, dead_letters
from datastream_cases import run_side_by_side, wait_for_all, without_wall_clock

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _stop_with_savepoint(job, folder, drain: bool = False) -> str:
    """PyFlink's JobClient.stop_with_savepoint calls a signature Flink 2 no longer has: call Java directly."""
    from pyflink.java_gateway import get_gateway

    canonical = get_gateway().jvm.org.apache.flink.core.execution.SavepointFormatType.CANONICAL
    return job._j_job_client.stopWithSavepoint(drain, str(folder), canonical).get()


def test_every_datastream_job_resumes_from_a_savepoint_with_another_parallelism(stack, uninterrupted_outputs, tmp_path):
    base = stack.settings.with_overrides(*RUN_SETTINGS)
    parts = {name: CaseTopics(make(), base) for name, make in CASES.items()}
    for part in parts.values():
        part.produce(0)
    first_run = base.with_overrides("flink.parallelism.default=2")
    with cancelled_on_failure(run_side_by_side(parts, first_run, False, "part-1")) as first:
        wait_for_all(parts, CaseTopics.has_output, "no output before the savepoint")
        savepoint = _stop_with_savepoint(first, tmp_path / "savepoints")
    before = {name: part.outputs(idle_timeout_s=1) for name, part in parts.items()}

    for part in parts.values():
        part.produce(1)
    resumed = base.with_overrides("flink.parallelism.default=1", f"flink.execution.savepoint.path={savepoint}")
    with cancelled_on_failure(run_side_by_side(parts, resumed, False, "part-2")) as second:
        wait_for_all(parts, CaseTopics.consumed_everything, "the resumed job did not read the inputs of")
        _stop_with_savepoint(second, tmp_path / "savepoints", drain=True)

    for name, part in parts.items():
        case, got, expected = part.case, part.outputs(), uninterrupted_outputs[name]
        assert before[name][case.outputs[0]], f"{name}: output before the savepoint (state to carry over)"
        for output in case.outputs:
            records = [repr(without_wall_clock(value)) for _, value in got[output]]
            assert max(Counter(records).values()) == 1, f"{name}: a record written twice"
            assert comparable(case, got[output]) == comparable(case, expected[output]), name
        assert dead_letters(got) == dead_letters(expected), f"{name}: dead letters"
