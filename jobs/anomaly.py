"""Anomaly job: feature batches (a window of a bucket of meters each) -> anomaly alerts per meter.

    meter.feature-batches --event time, key bucket--> rules + DBSCAN micro-windows + silence timers, per meter
        --> household.alerts            (unusable batches and feature records --> dead-letter topic with the reason)

The preprocessing job writes each window's features of a bucket of meters as one record
(``gridflow.feature_batches``), so this job calls Python once per bucket and window, and the detector works
on every meter of the batch at once (``gridflow.analytics.anomaly_batch``: numpy columns, one row per meter).
The detector's state per bucket (all its meters) is Flink keyed state: it survives a restart from a
checkpoint or savepoint. A meter that falls silent raises a dropout alert once the watermark (moved by the
rest of the fleet) passes ``anomaly.dropout_minutes`` after its last minute, and a back-online alert when it
returns.

It runs in thread-mode Python workers by default (``jobs.anomaly.python_execution_mode``): the detector
imports no river or scipy, which thread-mode workers cannot import.

Run locally on the mini-cluster:      python jobs/anomaly.py --config <stack>/settings.yaml
Submit to a cluster:                  flink run -py jobs/anomaly.py -- --config ...
"""

from __future__ import annotations

import sys

from pyflink.common import Types

from gridflow.connectors.flink_kafka import read_rows, sink_json
from gridflow.feature_batches import TIME_WITHIN_CHARS
from gridflow.operators.anomaly import DEAD_LETTER, DetectAnomalies, bucket_key_of
from gridflow.runtime import configure_job, run_datastream_job
from gridflow.settings import Settings

NAME = "anomaly"


def build(env, settings: Settings, stop_offsets: dict[str, dict[int, int]] | None = None) -> None:
    topics = settings.topics
    configure_job(env, settings.jobs.anomaly)
    # event time: the batch window's last millisecond; watermarks from the source, per partition
    batches = read_rows(
        env,
        settings,
        topics.feature_batches,
        NAME,
        stop_offsets,
        event_time=("window_end_ms", -1),
        name="batches",
        time_within_chars=TIME_WITHIN_CHARS,
    )
    alerts = (
        batches.key_by(bucket_key_of, key_type=Types.STRING())
        .process(DetectAnomalies(settings, f"kafka:{topics.feature_batches}"), output_type=Types.STRING())
        .name("anomaly detection")
        .uid("anomaly-detection-buckets")  # state per bucket of meters (was per meter: a new uid)
    )
    sink_json(alerts, settings, topics.alerts, NAME)
    sink_json(alerts.get_side_output(DEAD_LETTER), settings, topics.dead_letter, NAME, "dead letters")


def main(argv: list[str] | None = None) -> None:
    run_datastream_job(__doc__, NAME, build, argv, stop_topic=lambda settings: settings.topics.feature_batches)


if __name__ == "__main__":
    main(sys.argv[1:])
