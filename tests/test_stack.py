"""The embedded stack starts real services and never leaves a process behind."""

import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gridflow import kafka_io
from gridflow.stack import EmbeddedStack, StackError, read_state
from gridflow.stack.mqtt_auth import BRIDGE_USER
from gridflow.stack.processes import marked_pids

from mqtt_helpers import Collector, stack_connect

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parent.parent


def _gridflow(*args, timeout=600):  # a guard only: the stack's own start timeouts report a service that hangs
    return subprocess.run(
        [sys.executable, "-m", "gridflow.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def test_stack_up_and_down_from_the_command_line(tmp_path):
    run_dir = tmp_path / "run"
    up = _gridflow("stack", "up", "--run-dir", str(run_dir))
    try:
        assert up.returncode == 0, up.stderr
        info = read_state(run_dir)
        pids = marked_pids(info.stack_id)
        assert len(pids) >= 2, "broker and mosquitto run after the CLI exited"
        host, port = info.kafka_bootstrap.rsplit(":", 1)
        socket.create_connection((host, int(port)), timeout=5).close()
        again = _gridflow("stack", "up", "--run-dir", str(run_dir))
        assert again.returncode != 0 and "already running" in again.stderr
        status = _gridflow("stack", "status", "--run-dir", str(run_dir))
        assert json.loads(status.stdout)["pids"] == pids
        for password in info.mqtt_accounts.values():
            assert password not in up.stdout + status.stdout, "passwords are not printed"
        assert oct((run_dir / "settings.yaml").stat().st_mode & 0o777) == "0o600"
    finally:
        down = _gridflow("stack", "down", "--run-dir", str(run_dir))
    assert down.returncode == 0, down.stderr
    assert marked_pids(info.stack_id) == []
    assert read_state(run_dir) is None


def test_services_answer_like_the_real_thing(stack, kafka_settings):
    # Kafka protocol: produce, then read back exactly what was sent, from every partition.
    kafka_io.create_topics(kafka_settings, [kafka_settings.topics.readings])
    sent = [(f"h-{i % 5}", f'{{"n": {i}}}') for i in range(200)]
    ends = kafka_io.produce(kafka_settings, kafka_settings.topics.readings, sent)
    assert sum(ends.values()) == 200
    got = kafka_io.read_topic(kafka_settings, kafka_settings.topics.readings, expected=200)
    assert sorted(got) == sorted(value for _, value in sent)

    # MQTT: a QoS 1 message published by a meter reaches the bridge account's subscription.
    accounts = stack.info.mqtt_accounts
    stack.add_meter_accounts({"h-svc": "pw-svc"})
    bridge = stack_connect(stack, BRIDGE_USER, accounts[BRIDGE_USER])
    received = Collector(bridge, "meters/+/readings")
    meter = stack_connect(stack, "h-svc", "pw-svc")
    meter.publish("meters/h-svc/readings", b"hello", qos=1).wait_for_publish(5)
    assert received.wait_for(1) == [("meters/h-svc/readings", b"hello")]
    for client in (bridge, meter):
        client.loop_stop()
        client.disconnect()


def test_a_meter_can_only_speak_for_its_own_household(stack):
    stack.add_meter_accounts({"h-acl-1": "secret-1", "h-acl-2": "secret-2"})
    with pytest.raises(ConnectionRefusedError):
        stack_connect(stack, "h-acl-1", "wrong password")
    with pytest.raises(ConnectionRefusedError):
        stack_connect(stack, None, None)  # no anonymous access

    bridge = stack_connect(stack, BRIDGE_USER, stack.info.mqtt_accounts[BRIDGE_USER])
    readings = Collector(bridge, "meters/+/readings")
    meter_1 = stack_connect(stack, "h-acl-1", "secret-1")
    spy = Collector(meter_1, "meters/h-acl-2/commands")  # another household's commands: not allowed
    meter_1.subscribe("meters/h-acl-1/commands", qos=1)  # its own: the barrier below arrives through it
    meter_2 = stack_connect(stack, "h-acl-2", "secret-2")
    own = Collector(meter_2, "meters/h-acl-2/commands")

    meter_1.publish("meters/h-acl-2/readings", b"forged", qos=1).wait_for_publish(5)  # dropped by the ACL
    meter_1.publish("meters/h-acl-1/readings", b"genuine", qos=1).wait_for_publish(5)
    bridge.publish("meters/h-acl-2/commands", b"run the dishwasher at 13:00", qos=1).wait_for_publish(5)

    # The broker handles each connection's messages in order: "genuine" reaches the bridge only after the
    # forged reading before it was dropped, and meter 1 gets the barrier on its own topic only after anything
    # queued for it earlier (the spied command) -- no waiting for something that must not come.
    assert readings.wait_for(1) == [("meters/h-acl-1/readings", b"genuine")]
    assert own.wait_for(1) == [("meters/h-acl-2/commands", b"run the dishwasher at 13:00")]
    bridge.publish("meters/h-acl-1/commands", b"barrier", qos=1).wait_for_publish(5)
    assert spy.wait_for(1) == [("meters/h-acl-1/commands", b"barrier")], "a command for h-acl-2 reached h-acl-1"
    assert readings.messages == [("meters/h-acl-1/readings", b"genuine")]
    for client in (bridge, meter_1, meter_2):
        client.loop_stop()
        client.disconnect()


def test_a_service_that_cannot_start_reports_why_and_leaves_nothing(base_settings, tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    # the port is claimed before anything starts; the start timeout stays as configured (Kafka, started first,
    # takes a while on a loaded machine)
    settings = base_settings.with_overrides(f"stack.mqtt_port={port}")
    stack = EmbeddedStack(settings, tmp_path / "run")
    try:
        with pytest.raises(StackError, match=f"stack.mqtt_port = {port}: .* already in use"):
            stack.up()
    finally:
        busy.close()
        stack.down()
    assert marked_pids(stack.info.stack_id) == [], "the broker started before the failure was stopped too"


def _run_pytest_on(folder, test_source: str, *args: str):
    (folder / "conftest.py").write_text((REPO / "tests" / "conftest.py").read_text())
    (folder / "test_inner.py").write_text(textwrap.dedent(test_source))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args, str(folder)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=folder,
    )


@pytest.mark.parametrize("workers", [(), ("-n", "1")], ids=["in-process", "on-an-xdist-worker"])
def test_a_session_that_leaks_a_process_fails_and_the_process_is_stopped(tmp_path, workers):
    id_file = tmp_path / "stack-id"
    result = _run_pytest_on(
        tmp_path,
        f"""
        from pathlib import Path
        from gridflow.stack import EmbeddedStack

        def test_leaks(base_settings, tmp_path):
            stack = EmbeddedStack(base_settings, tmp_path / "run", kafka=False)
            stack.up()  # never stopped
            Path({str(id_file)!r}).write_text(stack.info.stack_id)
    """,
        *workers,
    )
    assert "1 passed" in result.stdout and "processes left running by embedded stacks" in result.stdout, result.stdout
    assert result.returncode == 1
    assert marked_pids(id_file.read_text()) == []


def test_processes_are_cleaned_up_when_a_test_fails(tmp_path):
    """Run a failing test that uses the stack fixture in a separate pytest; nothing may survive it."""
    id_file = tmp_path / "stack-id"
    result = _run_pytest_on(
        tmp_path,
        f"""
        from pathlib import Path

        def test_fails(stack):
            Path({str(id_file)!r}).write_text(stack.info.stack_id)
            assert stack.pids()
            raise AssertionError("deliberate failure")
    """,
    )
    assert result.returncode == 1 and "deliberate failure" in result.stdout, result.stdout[-2000:]
    stack_id = id_file.read_text()
    assert marked_pids(stack_id) == []


def test_topics_survive_a_broker_restart_and_a_new_stack_on_the_same_run_folder(base_settings, tmp_path):
    from conftest import start_stack, unique_topics

    stack = start_stack(base_settings, tmp_path / "run", mqtt=False)
    try:
        settings = unique_topics(stack.settings)
        topic = settings.topics.readings
        kafka_io.create_topics(settings, [topic])
        sent = [(f"h-{i % 3}", f"reading-{i}") for i in range(50)]
        kafka_io.produce(settings, topic, sent)
        stack.restart_kafka()
        assert sorted(kafka_io.read_topic(settings, topic, expected=50)) == sorted(v for _, v in sent)
        kafka_io.produce(settings, topic, [("h-0", "after-restart")])
    finally:
        stack.down()
    assert stack.pids() == []
    again = start_stack(base_settings, tmp_path / "run", mqtt=False)  # `gridflow stack down`, then `up` again
    try:
        settings = unique_topics(again.settings).with_overrides(f"topics.readings={topic}")
        got = kafka_io.read_topic(settings, topic, expected=51)
        assert sorted(got) == sorted([v for _, v in sent] + ["after-restart"])
    finally:
        again.down()


def test_the_broker_is_apache_kafka_in_kraft_mode_with_its_log_in_the_run_folder(stack):
    log_dir = Path(stack.info.kafka_log_dir)
    assert log_dir.is_relative_to(stack.run_dir) and (log_dir / "meta.properties").exists()
    meta = (log_dir / "meta.properties").read_text()
    assert "node.id=1" in meta and "cluster.id=" in meta
    java = Path(f"/proc/{stack.launcher.processes['kafka'].pid}/cmdline").read_bytes().split(b"\0")
    assert b"kafka.Kafka" in java and any(b"kafka_2.13-4." in part for part in java)
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=stack.info.kafka_bootstrap)
    try:
        brokers = admin.describe_cluster()["brokers"]
    finally:
        admin.close()
    assert [(b["broker_id"], f"{b['host']}:{b['port']}") for b in brokers] == [(1, stack.info.kafka_bootstrap)]
