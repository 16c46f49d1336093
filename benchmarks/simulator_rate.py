"""Fleet simulator publish rate against the embedded mosquitto.

Builds N meters (real load shapes, labelled faults) and steps every meter through T sample times as
fast as possible; each step runs the firmware's Meter code and publishes with QoS 1. Reports set-up
time, readings/s published (until the broker acknowledged the last one) and the process's peak memory.

    python benchmarks/simulator_rate.py [--meters 50000] [--samples 6]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time

from gridflow.devices.load_shapes import LoadShapeLibrary
from gridflow.devices.simulator import FleetSimulator
from gridflow.settings import load_settings
from gridflow.stack import EmbeddedStack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meters", type=int, nargs="+", default=[5000, 50000])
    parser.add_argument("--samples", type=int, default=6)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    base = load_settings()
    started = time.monotonic()
    library = LoadShapeLibrary.load(base)
    library_s = time.monotonic() - started
    with tempfile.TemporaryDirectory() as run_dir, EmbeddedStack(base, run_dir, kafka=False) as stack:
        for meters in args.meters:
            settings = stack.settings.with_overrides(
                "simulator.speed=100000", f"simulator.connections={args.connections}", "simulator.fault_rate_per_day=1"
            )
            started = time.monotonic()
            simulator = FleetSimulator(
                settings,
                meters,
                args.samples * settings.simulator.sample_interval_s,
                library,
                start_ms=1_768_464_000_000,
            )
            simulator.connect()
            setup_s = time.monotonic() - started
            summary = simulator.run(progress=False)
            simulator.close()
            print(
                json.dumps(
                    {
                        "meters": meters,
                        "samples_per_meter": args.samples,
                        "connections": args.connections,
                        "library_load_s": round(library_s, 2),
                        "fleet_setup_s": round(setup_s, 2),
                        "published": summary.published,
                        "run_s": summary.elapsed_s,
                        "readings_per_s": round(summary.readings_per_s),
                        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
