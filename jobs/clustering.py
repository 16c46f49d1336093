"""Clustering and anomaly job: daily profiles -> household clusters and typical load shapes; window
features -> anomaly alerts.

    household.profiles --key grid--> online k-means (river) --> household.clusters (assignments)
                                                           \\--> cluster.centroids (typical load shapes)
    meter.features --key household--> DBSCAN micro-windows + rules --> household.alerts
    (unusable records of either input --> dead-letter topic with the reason)

Both models are Flink state: they survive a restart from a checkpoint or savepoint.

Run locally on the mini-cluster:      python jobs/clustering.py --config <stack>/settings.yaml
Submit to a cluster:                  flink run -py jobs/clustering.py -- --config ...
"""
from __future__ import annotations

import sys

from pyflink.common import Types

from gridflow.connectors.flink_kafka import json_sink, read_strings
from gridflow.operators.analytics import (
    ASSIGNMENT, CENTROIDS, DEAD_LETTER, GRID, ClusterProfiles, DetectAnomalies, pair_type,
)
from gridflow.readings import household_id_of
from gridflow.runtime import run_datastream_job
from gridflow.settings import Settings

NAME = "clustering"


def build(env, settings: Settings, stop_offsets: dict[str, dict[int, int]] | None = None) -> None:
    topics = settings.topics

    def read(topic: str):
        return read_strings(env, settings, topic, NAME, stop_offsets)

    clustered = (read(topics.profiles).key_by(lambda _: GRID, key_type=Types.STRING())
                 .process(ClusterProfiles(settings, f"kafka:{topics.profiles}"), output_type=pair_type())
                 .name("online k-means").uid("online-kmeans"))
    for kind, topic in ((ASSIGNMENT, topics.assignments), (CENTROIDS, topics.centroids)):
        (clustered.filter(lambda e, kind=kind: e[0] == kind).map(lambda e: e[1], output_type=Types.STRING())
         .sink_to(json_sink(settings, topic, NAME)).name(topic))
    alerts = (read(topics.features).key_by(household_id_of, key_type=Types.STRING())
              .process(DetectAnomalies(settings, f"kafka:{topics.features}"), output_type=Types.STRING())
              .name("anomaly detection").uid("anomaly-detection"))
    alerts.sink_to(json_sink(settings, topics.alerts, NAME)).name("alerts")
    clustered.get_side_output(DEAD_LETTER).union(alerts.get_side_output(DEAD_LETTER)).sink_to(
        json_sink(settings, topics.dead_letter, NAME)).name("dead letters")


def main(argv: list[str] | None = None) -> None:
    run_datastream_job(__doc__, NAME, build, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
