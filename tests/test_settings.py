import re
import subprocess
import sys
import os
from pathlib import Path

import pytest

from gridflow.settings import Settings, SettingsError, load_settings

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "flink-conf"


def test_repository_configuration_is_valid_and_reaches_flink_options():
    settings = load_settings(CONF)
    options = settings.flink.options()
    assert "python.execution-mode" not in options, "set per job (jobs.<job>), not for the whole cluster"
    assert options["parallelism.default"] == str(settings.flink.parallelism_default)
    assert "state.backend.type" in options
    # cluster-only keys stay out of a job's configuration
    assert "rest.port" in options and "rest.port" not in settings.flink.job_options()
    assert "taskmanager.memory.process.size" not in settings.flink.job_options()


def test_each_job_has_one_runtime_block():
    settings = load_settings(CONF)
    assert settings.jobs.anomaly.python_execution_mode == "thread"
    assert settings.jobs.forecasting.flink_options() == {
        "python.execution-mode": "process",
        "python.fn-execution.bundle.size": "100000",
        "python.fn-execution.bundle.time": "100",
        "python.fn-execution.arrow.batch.size": "10000",
    }
    tuned = settings.with_overrides("jobs.preprocess.arrow_batch_size=500", "jobs.preprocess.bundle_time_ms=50")
    assert tuned.jobs.preprocess.flink_options()["python.fn-execution.arrow.batch.size"] == "500"
    assert tuned.jobs.anomaly == settings.jobs.anomaly


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "flink.python.execution-mode=thread",
            "python.execution-mode is set per job: use jobs.<job>.python_execution_mode",
        ),
        ("flink.python.fn-execution.bundle.time=10", "use jobs.<job>.bundle_time_ms"),
        ("jobs.forecasting.python_execution_mode=thread", "forecasting.python_execution_mode must be 'process'"),
        ("jobs.anomaly.arrow_batch_size=200000", "must not exceed bundle_size (100000)"),
        ("jobs.nightly.bundle_size=5", "jobs.nightly"),
    ],
)
def test_a_misplaced_or_impossible_job_runtime_is_refused(override, message):
    with pytest.raises(SettingsError, match=re.escape(message)):
        load_settings(CONF, overrides=[override])


def test_defaults_live_in_the_model():
    assert Settings().clustering.n_clusters == 4
    assert Settings().stream.window_s == 60


@pytest.mark.parametrize(
    "override, key, allowed",
    [
        ("clustering.n_clusters=0", "clustering.n_clusters", "2 <= value <= 64"),
        ("anomaly.dbscan_eps=-1", "anomaly.dbscan_eps", "0.0 < value <= 1000000.0"),
        ("stream.window_s=abc", "stream.window_s", "1 <= value <= 86400"),
        ("scheduler.algorithm=annealing", "scheduler.algorithm", "one of 'heap', 'pso', 'milp'"),
        ("flink.parallelism.default=0", "flink.parallelism.default", "1 <= value <= 4096"),
        ("flink.state.backend.type=memory", "flink.state.backend.type", "one of 'hashmap', 'rocksdb'"),
        ("tariff.tou=[{start_hour: 0, end_hour: 30, price_per_kwh: 0.2}]", "tariff.tou.0.end_hour", "1 <= value <= 24"),
    ],
)
def test_out_of_range_values_name_the_key_and_allowed_range(override, key, allowed):
    with pytest.raises(SettingsError) as error:
        load_settings(CONF, overrides=[override])
    assert f"'{key}'" in str(error.value)
    assert allowed in str(error.value)


def test_unknown_keys_are_rejected_with_the_valid_ones():
    with pytest.raises(SettingsError, match=r"unknown key 'clustering.n_cluster'.*n_clusters, halflife"):
        load_settings(CONF, overrides=["clustering.n_cluster=3"])
    with pytest.raises(SettingsError, match=r"unknown key 'clustring'"):
        load_settings(CONF, overrides=["clustring.n_clusters=3"])


def test_cross_field_rules():
    with pytest.raises(SettingsError, match="slot_minutes.*must divide a day"):
        load_settings(CONF, overrides=["scheduler.slot_minutes=7"])
    with pytest.raises(SettingsError, match="ibr_multipliers needs one more entry"):
        load_settings(CONF, overrides=["tariff.ibr_multipliers=[1.0]"])
    with pytest.raises(SettingsError, match="bootstrap_servers.*host:port"):
        load_settings(CONF, overrides=["kafka.bootstrap_servers=broker-without-port"])


def test_layers_files_then_extra_files_then_command_line(tmp_path):
    extra = tmp_path / "site.yaml"
    extra.write_text("stream:\n  window_s: 120\nclustering:\n  n_clusters: 6\n")
    settings = load_settings(CONF, extra_files=[extra], overrides=["stream.window_s=300", "flink.pipeline.name=x"])
    assert settings.stream.window_s == 300
    assert settings.clustering.n_clusters == 6
    assert settings.flink.options()["pipeline.name"] == "x"  # untyped Flink keys pass through


def test_bad_files_and_overrides_are_reported(tmp_path):
    (tmp_path / "gridflow.yaml").write_text("- just\n- a list\n")
    with pytest.raises(SettingsError, match="must hold a mapping"):
        load_settings(tmp_path)
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "missing")
    with pytest.raises(SettingsError, match="section.key=value"):
        load_settings(CONF, overrides=["window_s=3"])


def test_a_job_with_a_bad_value_fails_fast_naming_the_key(tmp_path):
    # settings are checked before Flink starts: with no Java to start, the job still names the key
    env = {**os.environ, "JAVA_HOME": str(tmp_path / "no-java")}
    result = subprocess.run(
        [sys.executable, str(REPO / "jobs" / "reading_summary.py"), "--set", "stream.window_s=0"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 2
    assert "'stream.window_s'" in result.stderr and "1 <= value <= 86400" in result.stderr
    assert "Traceback" not in result.stderr


def test_gridflow_config_check_rejects_a_bad_file(tmp_path):
    (tmp_path / "gridflow.yaml").write_text("anomaly:\n  dbscan_min_samples: 0\n")
    result = subprocess.run(
        [sys.executable, "-m", "gridflow.cli", "config", "check", "--conf-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "'anomaly.dbscan_min_samples'" in result.stderr and "1 <= value <= 10000" in result.stderr


def test_the_command_reports_the_installed_version():
    import subprocess
    import sys
    from importlib.metadata import version

    result = subprocess.run([sys.executable, "-m", "gridflow.cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == f"gridflow {version('gridflow')}"
