"""How long the embedded broker takes to start and stop, and what memory it holds when idle.

Starts and stops the embedded stack's Kafka (no mosquitto, no Flink) ``--rounds`` times, each on a fresh run
folder, and prints the times and the broker's resident memory 5 s after it was ready.

    python benchmarks/stack_start.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from gridflow.settings import load_settings
from gridflow.stack import EmbeddedStack


def resident_mb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(status.read().split("VmRSS:")[1].split()[0]) // 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    settings = load_settings()
    ups, downs, memory = [], [], []
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as run_dir:
            started = time.monotonic()
            stack = EmbeddedStack(settings, run_dir, mqtt=False)
            stack.up()
            ups.append(round(time.monotonic() - started, 2))
            time.sleep(5)
            memory.append(resident_mb(stack.launcher.processes["kafka"].pid))
            stopped = time.monotonic()
            stack.down()
            downs.append(round(time.monotonic() - stopped, 2))
    print(json.dumps({"up_s": ups, "down_s": downs, "idle_rss_mb": memory}))


if __name__ == "__main__":
    main()
