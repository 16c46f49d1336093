"""Shared fixtures: settings, the embedded stack (real broker processes) and per-test topic names.

Every stack started here is stopped at the end of the session, also when tests fail; the session
then fails if any process of those stacks is still alive.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from gridflow.settings import Settings, load_settings
from gridflow.stack import CREATED_STACK_IDS, EmbeddedStack
from gridflow.stack.processes import Launcher, marked_pids

# Property tests draw the same examples on every run (derived from each test), so a run cannot fail on an
# example the previous one never drew; GRIDFLOW_HYPOTHESIS=explore draws new ones (and replays failures).
hypothesis_settings.register_profile("repeatable", derandomize=True, database=None)
hypothesis_settings.register_profile("explore", derandomize=False)
hypothesis_settings.load_profile(os.environ.get("GRIDFLOW_HYPOTHESIS", "repeatable"))


@pytest.fixture(scope="session")
def base_settings(tmp_path_factory) -> Settings:
    """The repository's flink-conf/ settings, with a private run folder.

    The tests' standalone Flink clusters run their JobManager and TaskManager on the quick JIT tier: their
    jobs run for seconds, and compiling them with C2 cost a third of the test's CPU (the savepoint test:
    256 -> 181 CPU-s). Clusters outside the tests keep the JVM's default."""
    return load_settings(
        overrides=[
            f"stack.run_dir={tmp_path_factory.mktemp('gridflow-run')}",
            *(f"flink.env.java.opts.{role}=-XX:TieredStopAtLevel=1" for role in ("jobmanager", "taskmanager")),
        ]
    )


def start_stack(settings: Settings, run_dir, **services) -> EmbeddedStack:
    stack = EmbeddedStack(settings, run_dir, **services)
    stack.up()
    return stack


@pytest.fixture(scope="session")
def stack(base_settings, tmp_path_factory):
    """Kafka-protocol broker and mosquitto, shared by the session."""
    running = start_stack(base_settings, tmp_path_factory.mktemp("stack"))
    try:
        yield running
    finally:
        running.down()


@pytest.fixture(scope="session")
def flink_stack(base_settings, tmp_path_factory):
    """Kafka-protocol broker and a standalone Flink cluster (JobManager + TaskManager with a slot for each of
    the eight jobs the fail-over test runs at once)."""
    settings = base_settings.with_overrides(
        "flink.taskmanager.numberOfTaskSlots=8", "flink.taskmanager.memory.process.size=2816m"
    )
    running = start_stack(settings, tmp_path_factory.mktemp("flink-stack"), mqtt=False, flink=True)
    try:
        yield running
    finally:
        running.down()


def unique_topics(settings: Settings) -> Settings:
    """Settings whose topics and consumer groups belong to one test only."""
    suffix = uuid.uuid4().hex[:8]
    names = {name: f"{value}.{suffix}" for name, value in settings.topics.model_dump().items()}
    return settings.with_overrides(
        *(f"topics.{name}={value}" for name, value in names.items()), f"kafka.group_id_prefix=test-{suffix}"
    )


@pytest.fixture(scope="session")
def uninterrupted_outputs(stack):
    """The DataStream jobs' outputs over the fault tests' inputs, uninterrupted (``datastream_cases``)."""
    from datastream_cases import uninterrupted_outputs

    return uninterrupted_outputs(stack.settings)


@pytest.fixture
def kafka_settings(stack) -> Settings:
    return unique_topics(stack.settings)


# Under pytest-xdist (scripts/run-tests.sh) each module's tests run on one worker (its module fixtures are
# built once), and the modules of a unit below all on one worker: they share session fixtures that start a
# standalone Flink cluster (each unit starts one) or run the seven DataStream jobs once for reference, which
# every worker would otherwise build again. The units are the longest stretches of the suite: they go first.
UNITS = {
    "tests/test_cluster_failover.py": "datastream-faults",  # flink_stack, uninterrupted_outputs
    "tests/test_rescale.py": "datastream-faults",  # uninterrupted_outputs
    "tests/test_cluster_operations.py": "flink-cluster",  # flink_stack, durable_stack
    "tests/test_flink_run.py": "flink-cluster",  # flink_stack
}
SHARED_HEAVY_FIXTURES = {"flink_stack": 2, "uninterrupted_outputs": 1}  # how many units may build each


def _module(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def pytest_collection_modifyitems(config, items):
    """The units' tests first; a test that uses a shared heavy fixture outside UNITS, or in more units than
    allowed, is a collection error (it would build the fixture on yet another worker)."""
    users: dict[str, set[str]] = {}
    for item in items:
        module = _module(item.nodeid)
        for fixture in SHARED_HEAVY_FIXTURES.keys() & set(getattr(item, "fixturenames", ())):
            if module not in UNITS:
                raise pytest.UsageError(f"{item.nodeid} uses {fixture}: add {module} to a unit in UNITS")
            users.setdefault(fixture, set()).add(UNITS[module])
    for fixture, units in users.items():
        if len(units) > SHARED_HEAVY_FIXTURES[fixture]:
            raise pytest.UsageError(
                f"{fixture} is used by the units {sorted(units)}: at most {SHARED_HEAVY_FIXTURES[fixture]}"
            )
    items.sort(key=lambda item: _module(item.nodeid) not in UNITS)  # stable: else collection order


@pytest.hookimpl(optionalhook=True, tryfirst=True)  # a pytest-xdist hook: the controller's scheduler
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    config.option.loadscopereorder = False  # the collection's order (units first), not the largest module first

    class ModuleScheduling(LoadScopeScheduling):
        """Whole modules, or whole UNITS, to whichever worker is free."""

        def _split_scope(self, nodeid: str) -> str:
            return UNITS.get(_module(nodeid), _module(nodeid))

    return ModuleScheduling(config, log)


def pytest_sessionfinish(session, exitstatus):
    """Fail the session if any stack created in it left a process running (and stop those processes).

    A pytest-xdist worker checks its own stacks and hands what it found to the controller
    (``pytest_testnodedown``), whose exit status is the run's."""
    leaked = {stack_id: marked_pids(stack_id) for stack_id in CREATED_STACK_IDS}
    leaked = {stack_id: pids for stack_id, pids in leaked.items() if pids}
    for stack_id in leaked:
        Launcher(Path(session.config.rootpath), stack_id).stop_all()
    reports = [f"processes left running by embedded stacks: {leaked}"] if leaked else []
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # a worker
        workeroutput["gridflow_leaks"] = reports
        return
    reports += getattr(session.config, "gridflow_worker_leaks", [])
    if reports:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        for report in reports:
            reporter.write_line(report, red=True)
        session.exitstatus = 1


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: on the controller, as each worker ends
def pytest_testnodedown(node, error):
    reports = getattr(node, "workeroutput", {}).get("gridflow_leaks", [])
    node.config.gridflow_worker_leaks = [*getattr(node.config, "gridflow_worker_leaks", []), *reports]
