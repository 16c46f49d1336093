"""The Java artifacts gridflow runs, resolved from Maven Central by Maven and pinned by SHA-256.

Two sets, each a small pom in ``gridflow/maven/`` and a lock file naming every jar it resolves to with
its SHA-256:

* ``flink-connectors``: Flink's official ``flink-sql-connector-kafka``, one self-contained jar
  (kafka-clients shaded inside) that every job puts in ``pipeline.jars``; on a real cluster users deploy
  the same jar, so PyFlink's Kafka wrapper works with it unchanged.
* ``kafka-broker``: Apache Kafka's broker (``kafka_2.13``) with its runtime dependencies, the embedded
  stack's broker (``gridflow.stack.services.start_kafka``).

``gridflow jars fetch`` runs ``mvn dependency:copy-dependencies`` once per set into the jar cache, with
Maven's own repository under ``<cache_dir>/m2`` and strict checksums (Maven Central's digests), then checks
every jar against the lock. A set that is complete and matches its lock is never fetched again, so
everything after the first fetch works offline. ``gridflow jars lock`` rewrites the lock files after a
version bump in a pom (maintainers only; commit both).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gridflow.assets import AssetError, sha256
from gridflow.settings import Settings

MAVEN_DIR = Path(__file__).parent / "maven"


class ConnectorJarError(AssetError):
    """The jars are missing or damaged, or Maven cannot fetch them."""


@dataclass(frozen=True)
class ArtifactSet:
    """Jars resolved by Maven from one pom, pinned by a lock file of ``sha256  file-name`` lines."""

    name: str
    scope: str = "runtime"

    @property
    def pom(self) -> Path:
        return MAVEN_DIR / f"{self.name}.pom.xml"

    @property
    def lock_file(self) -> Path:
        return MAVEN_DIR / f"{self.name}.lock"

    def locked(self) -> dict[str, str]:
        """File name -> SHA-256, as pinned in the lock file."""
        pins = {}
        for number, line in enumerate(self.lock_file.read_text().splitlines(), 1):
            if line.strip() and not line.startswith("#"):
                try:
                    digest, file_name = line.split()
                except ValueError:
                    raise ConnectorJarError(
                        f"{self.lock_file}:{number}: expected 'sha256  file-name', got {line!r}"
                    ) from None
                pins[file_name] = digest
        return pins

    def folder(self, settings: Settings) -> Path:
        return cache_dir(settings) / self.name

    def paths(self, settings: Settings) -> list[Path]:
        return [self.folder(settings) / name for name in sorted(self.locked())]

    def problems(self, folder: Path) -> list[str]:
        """What is wrong with the jars in ``folder`` (empty when they are exactly the locked ones)."""
        pins = self.locked()
        present = {p.name for p in folder.glob("*.jar")} if folder.is_dir() else set()
        found = [f"missing {name}" for name in sorted(set(pins) - present)]
        found += [f"not in the lock: {name}" for name in sorted(present - set(pins))]
        found += [
            f"{name} does not match its pinned SHA-256"
            for name in sorted(set(pins) & present)
            if sha256(folder / name) != pins[name]
        ]
        return found

    def present(self, settings: Settings) -> bool:
        return not self.problems(self.folder(settings))

    def verified_paths(self, settings: Settings, what: str, remedy: str) -> list[Path]:
        """The set's jars in the cache, or :class:`ConnectorJarError` naming each problem and the remedy."""
        problems = self.problems(self.folder(settings))
        if problems:
            raise ConnectorJarError(
                f"the {what} jars in {self.folder(settings)} are not usable ({'; '.join(problems)}); {remedy}"
            )
        return self.paths(settings)


FLINK_CONNECTORS = ArtifactSet("flink-connectors")
KAFKA_BROKER = ArtifactSet("kafka-broker")
ARTIFACT_SETS = (FLINK_CONNECTORS, KAFKA_BROKER)


def cache_dir(settings: Settings) -> Path:
    return Path(settings.connector.cache_dir).expanduser()


def _resolve(artifacts: ArtifactSet, settings: Settings, target: Path) -> None:
    """Copy the set's jars from Maven into ``target`` (Maven downloads what its repository lacks)."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ConnectorJarError(
            "Apache Maven ('mvn') is needed once to fetch the jars from Maven Central; "
            "install it (Debian: apt-get install maven; scripts/setup.sh does)"
        )
    command = [
        mvn,
        "--batch-mode",
        "--quiet",
        "--strict-checksums",
        "-Dstyle.color=never",
        f"-Dmaven.repo.local={cache_dir(settings) / 'm2'}",
        "-f",
        str(artifacts.pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={target}",
        f"-DincludeScope={artifacts.scope}",
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise ConnectorJarError(
            f"Maven could not resolve {artifacts.pom.name}:\n{(result.stdout + result.stderr)[-3000:]}"
        )


def fetch(artifacts: ArtifactSet, settings: Settings) -> list[Path]:
    """Make sure the set's jars are in the cache and match the lock; returns their paths."""
    folder = artifacts.folder(settings)
    if not artifacts.problems(folder):
        return artifacts.paths(settings)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{artifacts.name}-") as tmp:
        staged = Path(tmp) / "jars"
        _resolve(artifacts, settings, staged)
        problems = artifacts.problems(staged)
        if problems:
            raise ConnectorJarError(
                f"the jars Maven resolved for {artifacts.pom.name} do not match "
                f"{artifacts.lock_file.name}: {'; '.join(problems)}"
            )
        if folder.exists():
            shutil.rmtree(folder)
        staged.rename(folder)
    return artifacts.paths(settings)


def fetch_all(settings: Settings) -> list[Path]:
    return [path for artifacts in ARTIFACT_SETS for path in fetch(artifacts, settings)]


def write_lock(artifacts: ArtifactSet, settings: Settings) -> Path:
    """Resolve the set afresh and pin what Maven returned (after a version bump in its pom)."""
    with tempfile.TemporaryDirectory() as tmp:
        _resolve(artifacts, settings, Path(tmp))
        lines = [f"{sha256(path)}  {path.name}" for path in sorted(Path(tmp).glob("*.jar"))]
    header = f"# SHA-256 of every jar {artifacts.pom.name} resolves to; written by `gridflow jars lock`\n"
    artifacts.lock_file.write_text(header + "\n".join(lines) + "\n")
    return artifacts.lock_file


def connector_jar_urls(settings: Settings) -> list[str]:
    """``file://`` URLs of the connector jars for ``pipeline.jars``: ``connector.jars`` when set, else the
    official SQL connector from the jar cache."""
    if settings.connector.jars:
        paths = [Path(jar.removeprefix("file://")).expanduser() for jar in settings.connector.jars]
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise ConnectorJarError(f"connector.jars lists files that do not exist: {missing}")
    else:
        paths = FLINK_CONNECTORS.verified_paths(
            settings, "Kafka connector", "run 'gridflow jars fetch' or set connector.jars"
        )
    return [path.resolve().as_uri() for path in paths]


def kafka_classpath(settings: Settings) -> str:
    """The embedded broker's Java class path (every jar of the ``kafka-broker`` set)."""
    paths = KAFKA_BROKER.verified_paths(settings, "Kafka broker", "run 'gridflow jars fetch'")
    return ":".join(str(path) for path in paths)


def check_connector_on_classpath() -> None:
    """Fail clearly unless the shaded Kafka classes of the official SQL connector are on the class path.

    PyFlink's Kafka wrapper names those shaded classes; the plain ``flink-connector-kafka`` jar plus
    ``kafka-clients`` would fail later with an obscure py4j error. Call after the environment exists."""
    from py4j.java_gateway import JavaClass
    from pyflink.java_gateway import get_gateway

    jvm = get_gateway().jvm
    if not isinstance(jvm.org.apache.flink.kafka.shaded.org.apache.kafka.common.TopicPartition, JavaClass):
        raise ConnectorJarError(
            "the Kafka connector on the class path is not Flink's SQL connector jar (flink-sql-connector-kafka, "
            "kafka-clients shaded inside); list that jar in connector.jars, or leave it empty to use the fetched one"
        )
