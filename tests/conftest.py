"""Shared fixtures: settings, the embedded stack (real broker processes) and per-test topic names.

Every stack started here is stopped at the end of the session, also when tests fail; the session
then fails if any process of those stacks is still alive.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from gridflow.settings import Settings, load_settings
from gridflow.stack import CREATED_STACK_IDS, EmbeddedStack
from gridflow.stack.processes import Launcher, marked_pids


@pytest.fixture(scope="session")
def base_settings(tmp_path_factory) -> Settings:
    """The repository's flink-conf/ settings, with a private run folder."""
    return load_settings(overrides=[f"stack.run_dir={tmp_path_factory.mktemp('gridflow-run')}"])


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
    the six DataStream jobs the fail-over test runs at once)."""
    settings = base_settings.with_overrides(
        "flink.taskmanager.numberOfTaskSlots=6", "flink.taskmanager.memory.process.size=2560m"
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
# built once), and these modules' tests all on one worker: they share the session fixtures that start a
# standalone Flink cluster or run the six DataStream jobs once for reference (SHARED_HEAVY_FIXTURES), which
# each worker would otherwise build again.
FLINK_CLUSTER_GROUP = {
    "tests/test_cluster_failover.py",
    "tests/test_cluster_operations.py",
    "tests/test_cluster_pipeline.py",
    "tests/test_flink_run.py",
    "tests/test_rescale.py",
}
SHARED_HEAVY_FIXTURES = {"flink_stack", "uninterrupted_outputs", "durable_stack"}


def pytest_collection_modifyitems(config, items):
    """A test that uses a shared heavy fixture outside FLINK_CLUSTER_GROUP is a collection error: it would
    start a second cluster on another worker."""
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        heavy = SHARED_HEAVY_FIXTURES.intersection(getattr(item, "fixturenames", ()))
        if heavy and module not in FLINK_CLUSTER_GROUP:
            raise pytest.UsageError(f"{item.nodeid} uses {sorted(heavy)}: add {module} to FLINK_CLUSTER_GROUP")


@pytest.hookimpl(optionalhook=True, tryfirst=True)  # a pytest-xdist hook: the controller's scheduler
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        """Whole modules to whichever worker is free; FLINK_CLUSTER_GROUP as one unit."""

        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "flink-cluster" if module in FLINK_CLUSTER_GROUP else module

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
