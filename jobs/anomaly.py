"""Anomaly job: per-minute window features -> anomaly alerts per household.

    meter.features --event time, key household/meter--> DBSCAN micro-windows + rules + silence timers
        --> household.alerts            (unusable feature records --> dead-letter topic with the reason)

The detector's state per meter is Flink keyed state: it survives a restart from a checkpoint or savepoint.
A meter that falls silent raises a dropout alert once the watermark (moved by the rest of the fleet) passes
``anomaly.dropout_minutes`` after its last minute.

Its own job, apart from the clustering job, because it runs once per meter and minute (833 records/s at
50,000 meters) where clustering runs once per household and day: keyed Python state costs about 1 ms per
record in process-mode workers and a tenth of that in thread mode (``benchmarks/anomaly_throughput.py``),
and the detector imports no river or scipy, which thread-mode workers cannot import.
``jobs.anomaly.python_execution_mode`` chooses (thread by default).

Run locally on the mini-cluster:      python jobs/anomaly.py --config <stack>/settings.yaml
Submit to a cluster:                  flink run -py jobs/anomaly.py -- --config ...
"""

from __future__ import annotations

import sys

from pyflink.common import Types

from gridflow.connectors.flink_kafka import read_contract, sink_json
from gridflow.contracts import CONTRACTS
from gridflow.operators.anomaly import DEAD_LETTER, DetectAnomalies, meter_key_of
from gridflow.runtime import configure_job, run_datastream_job
from gridflow.settings import Settings

NAME = "anomaly"


def build(env, settings: Settings, stop_offsets: dict[str, dict[int, int]] | None = None) -> None:
    topics = settings.topics
    configure_job(env, settings.jobs.anomaly)
    # event time: a window's last millisecond; watermarks from the source, per partition
    features, rejected = read_contract(
        env, settings, CONTRACTS["feature"], NAME, stop_offsets, event_time=("window_end_ms", -1)
    )
    alerts = (
        features.key_by(meter_key_of, key_type=Types.STRING())
        .process(DetectAnomalies(settings, f"kafka:{topics.features}"), output_type=Types.STRING())
        .name("anomaly detection")
        .uid("anomaly-detection")
    )
    sink_json(alerts, settings, topics.alerts, NAME)
    sink_json(rejected.union(alerts.get_side_output(DEAD_LETTER)), settings, topics.dead_letter, NAME, "dead letters")


def main(argv: list[str] | None = None) -> None:
    run_datastream_job(__doc__, NAME, build, argv, stop_topic=lambda settings: settings.topics.features)


if __name__ == "__main__":
    main(sys.argv[1:])
