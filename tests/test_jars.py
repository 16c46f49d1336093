"""The Java artifacts from Maven Central: pinned by the lock files, checked in the cache, offline once fetched."""

import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from gridflow.jars import (
    ARTIFACT_SETS,
    FLINK_CONNECTORS,
    KAFKA_BROKER,
    ArtifactSet,
    ConnectorJarError,
    connector_jar_urls,
    kafka_classpath,
)
from gridflow.settings import Settings


def _copy_cache(base_settings, target):
    """The jar sets the setup step fetched, copied into a private cache ``target``."""
    for artifacts in ARTIFACT_SETS:
        shutil.copytree(artifacts.folder(base_settings), target / artifacts.name)
    return Settings().with_overrides(f"connector.cache_dir={target}")


def test_missing_jars_give_the_command_that_fetches_them(tmp_path):
    settings = Settings().with_overrides(f"connector.cache_dir={tmp_path}")
    with pytest.raises(ConnectorJarError, match="missing flink-sql-connector-kafka-.*gridflow jars fetch"):
        connector_jar_urls(settings)
    with pytest.raises(ConnectorJarError, match="missing kafka_2.13-.*gridflow jars fetch"):
        kafka_classpath(settings)


def test_configured_jars_must_exist(tmp_path):
    settings = Settings().with_overrides(f"connector.jars=[{tmp_path / 'flink-sql-connector-kafka.jar'}]")
    with pytest.raises(ConnectorJarError, match="do not exist"):
        connector_jar_urls(settings)
    (tmp_path / "flink-sql-connector-kafka.jar").write_bytes(b"PK")
    assert connector_jar_urls(settings) == [(tmp_path / "flink-sql-connector-kafka.jar").as_uri()]


def test_the_lock_pins_the_official_connector_and_a_kafka_4_broker():
    connector = FLINK_CONNECTORS.locked()
    assert len(connector) == 1 and next(iter(connector)).startswith("flink-sql-connector-kafka-")
    broker = KAFKA_BROKER.locked()
    kafka = [name for name in broker if name.startswith("kafka_2.13-")]
    assert len(kafka) == 1 and kafka[0].removeprefix("kafka_2.13-").startswith("4.")
    assert all(len(digest) == 64 and int(digest, 16) >= 0 for digest in {**connector, **broker}.values())


def test_cached_jars_are_checked_against_their_digests(tmp_path, base_settings):
    settings = _copy_cache(base_settings, tmp_path)
    assert all(artifacts.present(settings) for artifacts in ARTIFACT_SETS)
    assert connector_jar_urls(settings) == [p.resolve().as_uri() for p in FLINK_CONNECTORS.paths(settings)]
    jar = next(p for p in KAFKA_BROKER.paths(settings) if p.name.startswith("kafka-clients-"))
    jar.write_bytes(b"tampered")
    assert KAFKA_BROKER.problems(KAFKA_BROKER.folder(settings)) == [f"{jar.name} does not match its pinned SHA-256"]
    with pytest.raises(ConnectorJarError, match="does not match its pinned SHA-256"):
        kafka_classpath(settings)
    (FLINK_CONNECTORS.folder(settings) / "kafka-clients-3.9.1.jar").write_bytes(b"PK")
    with pytest.raises(ConnectorJarError, match="not in the lock: kafka-clients-3.9.1.jar"):
        connector_jar_urls(settings)


def test_the_official_connector_carries_the_shaded_kafka_classes_pyflink_names(base_settings):
    """PyFlink's Kafka wrapper builds these classes by name; with this jar it needs no patch."""
    with zipfile.ZipFile(FLINK_CONNECTORS.paths(base_settings)[0]) as jar:
        names = set(jar.namelist())
    shaded = "org/apache/flink/kafka/shaded/org/apache/kafka/"
    assert f"{shaded}common/TopicPartition.class" in names
    assert f"{shaded}clients/consumer/OffsetResetStrategy.class" in names
    assert "org/apache/flink/connector/kafka/source/KafkaSource.class" in names


def test_a_fetched_cache_works_offline_without_maven(tmp_path, base_settings):
    settings = _copy_cache(base_settings, tmp_path / "cache")
    env = {**os.environ, "PATH": os.path.dirname(sys.executable)}  # no mvn, no network tool on the path
    result = subprocess.run(
        [sys.executable, "-m", "gridflow.cli", "jars", "fetch", "--set", f"connector.cache_dir={tmp_path / 'cache'}"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split()) == sorted(str(p) for a in ARTIFACT_SETS for p in a.paths(settings))
    # ... while a damaged cache needs Maven again, and says so
    KAFKA_BROKER.paths(settings)[0].unlink()
    result = subprocess.run(
        [sys.executable, "-m", "gridflow.cli", "jars", "fetch", "--set", f"connector.cache_dir={tmp_path / 'cache'}"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode != 0 and "Apache Maven ('mvn') is needed" in result.stderr


def test_a_bad_lock_line_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr("gridflow.jars.MAVEN_DIR", tmp_path)
    (tmp_path / "x.lock").write_text("# header\nabc  one.jar\nnot-a-pin\n")
    with pytest.raises(ConnectorJarError, match=r"x.lock:3: expected 'sha256  file-name', got 'not-a-pin'"):
        ArtifactSet("x").locked()


@pytest.mark.integration
def test_a_job_given_a_jar_that_is_not_the_sql_connector_stops_at_once_and_says_why(tmp_path):
    """PyFlink's Kafka wrapper names the SQL connector's shaded classes; with any other jar (here Flink's
    own JSON format jar stands in for the plain flink-connector-kafka) the job must not start."""
    from gridflow.stack.services import flink_home

    wrong = next((flink_home() / "lib").glob("flink-json-*.jar"))
    script = (
        "from gridflow.settings import load_settings\n"
        "from gridflow.runtime import create_env\n"
        f"create_env(load_settings(overrides=['connector.jars=[{wrong}]']))\n"
    )
    # a fresh client process (this one may have run thread-mode Python jobs, which disable its gateway)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYFLINK")}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env
    )
    assert result.returncode != 0
    assert "is not Flink's SQL connector jar (flink-sql-connector-kafka" in result.stderr, result.stderr[-2000:]


@pytest.mark.integration
def test_a_job_starts_from_a_process_whose_java_home_is_empty(tmp_path):
    """A process that ran a local job carries JAVA_HOME="" (PyFlink's loopback workers copy their environment
    into it), and so does everything it starts: a job started from there still finds Java."""
    script = (
        "from gridflow.settings import load_settings\n"
        "from gridflow.runtime import create_env\n"
        "print(create_env(load_settings()).get_parallelism())\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYFLINK")}
    env["JAVA_HOME"] = ""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-1].isdigit()
