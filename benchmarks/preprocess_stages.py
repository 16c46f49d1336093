"""Where the preprocessing job spends its time: the job's own SQL cut at each stage, each a separate bounded
job on the same pre-loaded readings (embedded broker, local mini-cluster), the anchor (the job before the
vectorised redesign) alongside.

Each stage runs twice, on all readings and on 1 % of them: the difference gives its marginal rate and CPU
microseconds per reading (start-up and shut-down excluded), the figures to compare on a shared machine.

    python benchmarks/preprocess_stages.py [--meters 5000 --samples 404 --repeats 1]

A thin front end of ``preprocess_variants.py`` (which holds the stage definitions, ``--list`` shows them).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import preprocess_variants  # noqa: E402

STAGES = [
    "anchor",  # the whole job before the redesign
    "bh-raw",  # Kafka source (raw payload) and its watermark, blackhole
    "stage-valid",  # + decoding and checks (decode_readings) -> good readings
    "stage-windows",  # + per-meter TUMBLE window with ARRAY_AGG
    "stage-clean",  # + the vectorised cleaning (clean_windows) and JSON features, blackhole
    "stage-features-sink",  # + keyed Kafka sink of the features
    "job",  # the whole job (features, daily profiles, dead letters)
]


def main() -> None:
    args = sys.argv[1:]
    if "--variants" not in args:
        args = ["--variants", ",".join(STAGES), *args]
    if "--calibrate" not in args:
        args = [*args, "--calibrate", "0.01"]
    sys.argv = [sys.argv[0], *args]
    preprocess_variants.main()


if __name__ == "__main__":
    main()
