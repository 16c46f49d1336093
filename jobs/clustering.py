"""Clustering job: daily profiles -> household clusters and typical load shapes.

    household.profiles --key grid--> online k-means (river) --> household.clusters (assignments)
                                                           \\--> cluster.centroids (typical load shapes)
    (unusable profile records --> dead-letter topic with the reason)

The model is Flink state: it survives a restart from a checkpoint or savepoint. Anomaly alerts come from
their own job (``jobs/anomaly.py``).

Run locally on the mini-cluster:      python jobs/clustering.py --config <stack>/settings.yaml
Submit to a cluster:                  flink run -py jobs/clustering.py -- --config ...
"""

from __future__ import annotations

import sys

from pyflink.common import Types

from gridflow.connectors.flink_kafka import read_contract, sink_json
from gridflow.contracts import CONTRACTS
from gridflow.operators.analytics import ASSIGNMENT, CENTROIDS, DEAD_LETTER, GRID, ClusterProfiles, pair_type
from gridflow.runtime import configure_job, run_datastream_job
from gridflow.settings import Settings

NAME = "clustering"


def build(env, settings: Settings, stop_offsets: dict[str, dict[int, int]] | None = None) -> None:
    configure_job(env, settings.jobs.clustering)
    topics = settings.topics
    profiles, rejected = read_contract(env, settings, CONTRACTS["profile"], NAME, stop_offsets)
    clustered = (
        profiles.key_by(lambda _: GRID, key_type=Types.STRING())
        .process(ClusterProfiles(settings, f"kafka:{topics.profiles}"), output_type=pair_type())
        .name("online k-means")
        .uid("online-kmeans")
    )
    for kind, topic in ((ASSIGNMENT, topics.assignments), (CENTROIDS, topics.centroids)):
        sink_json(
            clustered.filter(lambda e, kind=kind: e[0] == kind).map(lambda e: e[1], output_type=Types.STRING()),
            settings,
            topic,
            NAME,
        )
    sink_json(
        rejected.union(clustered.get_side_output(DEAD_LETTER)), settings, topics.dead_letter, NAME, "dead letters"
    )


def main(argv: list[str] | None = None) -> None:
    run_datastream_job(__doc__, NAME, build, argv, stop_topic=lambda settings: settings.topics.profiles)


if __name__ == "__main__":
    main(sys.argv[1:])
