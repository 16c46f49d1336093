"""The Flink Kafka connector jars every job needs, and how PyFlink is made to work with them.

The ``apache-flink`` wheel has no Kafka connector. Two ways to bring one:

* ``gridflow jars fetch`` downloads the ``shigawire-apache-flink-libraries`` wheel (Apache-2.0) from
  PyPI without installing it and keeps only its ``flink-connector-kafka.jar`` (4.0.1-2.0) and
  ``kafka-clients.jar`` (3.9.1) in the jar cache. Their SHA-256 digests are pinned below.
* on a real cluster, list the official ``flink-sql-connector-kafka`` jar in ``connector.jars``.

The official SQL jar shades kafka-clients under ``org.apache.flink.kafka.shaded``, and PyFlink's
Kafka wrapper names those shaded classes. With the plain jars the same classes live under their own
names; :func:`adapt_pyflink_to_connector` checks which are on the class path and points PyFlink at them.
"""
from __future__ import annotations

from pathlib import Path

from gridflow.assets import AssetError, WheelAsset, fetch
from gridflow.settings import Settings

CONNECTOR = WheelAsset(
    requirement="shigawire-apache-flink-libraries==2.0.0.post1",
    members={
        "pyflink/lib/flink-connector-kafka.jar": "842885a51c768b2f31c946a2071656c166ee8cc6d3c02fe6c557e134e03bf228",
        "pyflink/lib/kafka-clients.jar": "7568b998572d256f0b7bc0afdc1b7a2588b8b08415c62ce314c864a6851ae9d9",
    },
    target_names={"pyflink/lib/flink-connector-kafka.jar": "flink-connector-kafka.jar",
                  "pyflink/lib/kafka-clients.jar": "kafka-clients.jar"},
)


class ConnectorJarError(AssetError):
    """The connector jars are missing or damaged."""


def cache_dir(settings: Settings) -> Path:
    return Path(settings.connector.cache_dir).expanduser()


def fetch_connector_jars(settings: Settings) -> list[Path]:
    """Download the connector jars into the cache unless they are already there; returns their paths."""
    return fetch(CONNECTOR, cache_dir(settings))


def connector_jar_urls(settings: Settings) -> list[str]:
    """``file://`` URLs of the connector jars for ``pipeline.jars``."""
    if settings.connector.jars:
        paths = [Path(jar.removeprefix("file://")).expanduser() for jar in settings.connector.jars]
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise ConnectorJarError(f"connector.jars lists files that do not exist: {missing}")
    else:
        folder = cache_dir(settings)
        if not CONNECTOR.present(folder):
            raise ConnectorJarError(
                f"the Kafka connector jars are not in {folder}; run 'gridflow jars fetch' or set connector.jars"
            )
        paths = CONNECTOR.paths(folder)
    return [path.resolve().as_uri() for path in paths]


def adapt_pyflink_to_connector() -> str:
    """Point PyFlink's Kafka wrapper at the kafka-clients classes on the class path.

    Returns ``"shaded"`` or ``"plain"``. Call after the jars are on the class path (after the
    execution environment was created with ``pipeline.jars``).
    """
    from py4j.java_gateway import JavaClass
    from pyflink.datastream.connectors import kafka
    from pyflink.java_gateway import get_gateway

    jvm = get_gateway().jvm
    if isinstance(jvm.org.apache.flink.kafka.shaded.org.apache.kafka.common.TopicPartition, JavaClass):
        return "shaded"
    if not isinstance(jvm.org.apache.kafka.common.TopicPartition, JavaClass):
        raise ConnectorJarError("no kafka-clients classes on the class path: are the connector jars in pipeline.jars?")

    def topic_partition(self):
        return get_gateway().jvm.org.apache.kafka.common.TopicPartition(self._topic, self._partition)

    def reset_strategy(self):
        return getattr(get_gateway().jvm.org.apache.kafka.clients.consumer.OffsetResetStrategy, self.name)

    kafka.KafkaTopicPartition._to_j_topic_partition = topic_partition
    kafka.KafkaOffsetResetStrategy._to_j_offset_reset_strategy = reset_strategy
    return "plain"

