import shutil

import pytest

from gridflow.jars import CONNECTOR, ConnectorJarError, cache_dir, connector_jar_urls
from gridflow.settings import Settings


def test_missing_jars_give_the_command_that_fetches_them(tmp_path):
    settings = Settings().with_overrides(f"connector.cache_dir={tmp_path}")
    with pytest.raises(ConnectorJarError, match="gridflow jars fetch"):
        connector_jar_urls(settings)


def test_configured_jars_must_exist(tmp_path):
    settings = Settings().with_overrides(f"connector.jars=[{tmp_path / 'flink-sql-connector-kafka.jar'}]")
    with pytest.raises(ConnectorJarError, match="do not exist"):
        connector_jar_urls(settings)
    (tmp_path / "flink-sql-connector-kafka.jar").write_bytes(b"PK")
    assert connector_jar_urls(settings) == [(tmp_path / "flink-sql-connector-kafka.jar").as_uri()]


def test_cached_jars_are_checked_against_their_digests(tmp_path, base_settings):
    source = cache_dir(base_settings)  # filled by the setup step
    assert CONNECTOR.present(source)
    for path in CONNECTOR.paths(source):
        shutil.copy(path, tmp_path / path.name)
    assert CONNECTOR.present(tmp_path)
    (tmp_path / "kafka-clients.jar").write_bytes(b"tampered")
    assert not CONNECTOR.present(tmp_path)
    with pytest.raises(ConnectorJarError):
        connector_jar_urls(Settings().with_overrides(f"connector.cache_dir={tmp_path}"))
