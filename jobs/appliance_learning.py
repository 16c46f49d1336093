"""Appliance learning job: per-meter minute features -> each household's learned appliance profiles.

    meter.features --parse--> event time (window end) --key household--> collect the local day's minute means
           \\                                                   |  event-time timer at the local day's end
            \\--> dead-letter topic (malformed)                  v
                                                     learn the day (NILM) --> household.appliances
                                                           \\--> dead-letter topic (feature of a day already learned)

Input: the preprocessing job's feature records (``household_id``, ``meter_id``, ``window_start_ms``,
``window_end_ms``, ``mean_w`` (null when unknown), ...). A household's meters are summed into whole-house power
per local minute (``preprocess.timezone``); a day is complete when the watermark (window ends, bounded by
``stream.out_of_orderness_ms``) passes its local midnight. Its 1440 minute means, NaN where missing, go to the
household's :class:`~gridflow.nilm.ApplianceLearner`, which lives pickled in keyed state with the partial days and
is checkpointed with them; then every profile learned so far is published, one record per profile
(:meth:`~gridflow.nilm.ApplianceProfile.to_record`: window in minutes from ``nilm.horizon_start_minute``, slots
of ``scheduler.slot_minutes``, ``updated_ts_ms`` = the end of the learned day), for the scheduling job.

Run locally on the mini-cluster:      python jobs/appliance_learning.py --config <stack>/settings.yaml
Submit to a cluster:                  flink run -py jobs/appliance_learning.py -- --config ...
"""

from __future__ import annotations

import sys

from pyflink.common import Types

from gridflow.connectors.flink_kafka import read_contract, sink_json
from gridflow.contracts import CONTRACTS
from gridflow.operators.appliances import DEAD_LETTER, LearnAppliances, ParseFeatures, feature_type
from gridflow.runtime import configure_job, run_datastream_job
from gridflow.settings import Settings

# The learner imports neither river nor scipy (thread-mode workers cannot load them): thread mode by default.
NAME = "appliance-learning"


def build(env, settings: Settings, stop_offsets: dict[str, dict[int, int]] | None = None) -> None:
    topics = settings.topics
    configure_job(env, settings.jobs.appliance_learning)
    source_name = f"kafka:{topics.features}"
    # event time: a window's last millisecond; watermarks from the source, per partition
    raw, rejected = read_contract(
        env, settings, CONTRACTS["feature"], NAME, stop_offsets, event_time=("window_end_ms", -1)
    )
    features = raw.process(ParseFeatures(source_name), output_type=feature_type()).name("parse features")
    appliances = (
        features.key_by(lambda row: row[0], key_type=Types.STRING())
        .process(LearnAppliances(settings, source_name), output_type=Types.STRING())
        .name("learn appliances")
        .uid("appliance-learner")
    )
    sink_json(appliances, settings, topics.appliances, NAME)
    sink_json(
        rejected.union(features.get_side_output(DEAD_LETTER), appliances.get_side_output(DEAD_LETTER)),
        settings,
        topics.dead_letter,
        NAME,
        "dead letters",
    )


def main(argv: list[str] | None = None) -> None:
    run_datastream_job(__doc__, NAME, build, argv, stop_topic=lambda s: s.topics.features)


if __name__ == "__main__":
    main(sys.argv[1:])
