"""Scale benchmark: a simulated fleet through the whole live pipeline on the standalone Flink cluster.

    gridflow simulate (N meters, real time, MQTT) -> mosquitto -> gridflow bridge -> Kafka
      -> preprocess -> clustering, anomaly -> recommendations   (each submitted with flink run, unbounded)

Everything runs on this machine: the broker, mosquitto, the bridge, the simulator, the JobManager, the
TaskManager and its Python workers. The benchmark process only watches: it reads the readings, features,
alerts and recommendations topics and samples every process's CPU and memory.

Latency, per output record (all clocks are this machine's):
  - event time to emit: ``emitted_ms - window_end_ms`` of each feature record. It contains the wait for the
    window to be complete by design: the watermark passes a window end only when a reading at least
    ``stream.out_of_orderness_ms`` later has arrived (with 10 s sampling: the tick 10 s after the window end).
  - processing latency: emit time minus the moment the window's input was complete in Kafka, i.e. when every
    partition of the readings topic had received a reading with event time >= window end + out-of-orderness
    (from the records' Kafka timestamps, stamped by the bridge when it produced them). This is the latency
    the pipeline adds, from the meter publish that completed the window to the output.
  - the same two for recommendations made from spike alerts (reading -> feature -> alert -> recommendation,
    through three jobs). A spike the cleaning replaced within its minute is alerted on that minute; one
    confirmed by the next minute falling back (a level shift is no spike) only once that minute is in: its
    processing latency counts from the moment the next window was complete in Kafka.
  - ingest lag: Kafka timestamp minus the reading's own time stamp (simulator + MQTT + bridge).

    python benchmarks/scale_pipeline.py --meters 50000 --interval-s 10 --duration-s 600
"""

from __future__ import annotations

import argparse
import bisect
import json
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import orjson
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gridflow import kafka_io  # noqa: E402
from gridflow.cluster import FlinkCluster  # noqa: E402
from gridflow.settings import load_settings  # noqa: E402
from gridflow.stack import EmbeddedStack  # noqa: E402

JOBS = ("preprocess", "clustering", "anomaly", "recommendations")


class Watch:
    """Reads the pipeline's topics as they are written and keeps what the latency figures need."""

    def __init__(self, settings, ooo_ms: int):
        from confluent_kafka import Consumer

        self.settings, self.ooo_ms = settings, ooo_ms
        self.consumer = Consumer(
            {
                "bootstrap.servers": settings.kafka.bootstrap_servers,
                "group.id": "scale-watch",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        t = settings.topics
        self.topics = {
            t.readings: self._reading,
            t.features: self._feature,
            t.alerts: self._alert,
            t.recommendations: self._recommendation,
        }
        self.consumer.subscribe(list(self.topics))
        self.max_ts: dict[int, int] = {}
        self.progress: dict[int, list[tuple[int, int]]] = defaultdict(list)  # partition -> (max event ts, kafka ts)
        self.readings, self.ingest_lag = 0, []
        self.features: list[tuple[int, int, int]] = []  # (window_end, emitted, n_readings)
        self.alerts: dict[tuple, str | None] = {}  # (household, type, end) -> confirmed_by
        self.recommendations: list[tuple[int, int, int]] = []  # spike alerts: (window end, created, wait)
        self.alert_types: dict[str, int] = defaultdict(int)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _reading(self, message) -> None:
        self.readings += 1
        ts = orjson.loads(message.value()).get("ts_ms")
        kafka_ts = message.timestamp()[1]
        if not isinstance(ts, int):
            return
        if self.readings % 50 == 0:
            self.ingest_lag.append((kafka_ts, kafka_ts - ts))
        p = message.partition()
        if ts > self.max_ts.get(p, -1):
            self.max_ts[p] = ts
            self.progress[p].append((ts, kafka_ts))

    def _feature(self, message) -> None:
        f = orjson.loads(message.value())
        self.features.append((f["window_end_ms"], f["emitted_ms"], f["n_readings"]))

    def _alert(self, message) -> None:
        a = orjson.loads(message.value())
        self.alerts[(a["household_id"], a["type"], a["window_end_ms"])] = (a.get("evidence") or {}).get("confirmed_by")

    def _recommendation(self, message) -> None:
        r = orjson.loads(message.value())
        # A spike alert's time is the end of the one window that showed it; other alert types summarise
        # several windows (a stuck run, sustained load), so their time says nothing about latency.
        if r.get("kind") == "alert":
            self.alert_types[r.get("alert_type")] += 1
            if r.get("alert_type") == "spike" and r.get("from_ts_ms"):
                # a spike confirmed by the next minute falling back could only be raised once that minute was in
                end = int(r["from_ts_ms"])
                next_minute = self.alerts.get((r.get("household_id"), "spike", end)) == "next minute fell back"
                wait = self.settings.preprocess.window_s * 1000 if next_minute else 0
                self.recommendations.append((end, int(r["created_ms"]), wait))

    def _run(self) -> None:
        while not self.stop.is_set():
            for message in self.consumer.consume(2000, timeout=0.5):
                if message.error() is None:
                    self.topics[message.topic()](message)
        self.consumer.close()

    def complete_ms(self, event_ms: int) -> int | None:
        """When every readings partition had received a reading with event time >= ``event_ms``."""
        times = []
        for points in self.progress.values():
            i = bisect.bisect_left(points, (event_ms, -1))
            if i == len(points):
                return None
            times.append(points[i][1])
        return max(times) if times else None


class Sampler:
    """CPU (% of one core) and resident memory of process groups, every ``every_s`` seconds."""

    def __init__(self, groups: dict[str, list[int]], every_s: float = 2.0):
        import psutil

        self.psutil, self.groups, self.every_s = psutil, groups, every_s
        self.samples: list[tuple[float, str, float, float]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _processes(self, pids):
        out = []
        for pid in pids:
            try:
                parent = self.psutil.Process(pid)
                out += [parent, *parent.children(recursive=True)]
            except self.psutil.NoSuchProcess:
                pass
        return out

    def _run(self) -> None:
        known: dict[int, object] = {}
        while not self.stop.wait(self.every_s):
            now = time.time()
            for name, pids in self.groups.items():
                cpu = rss = 0.0
                for process in self._processes(pids):
                    process = known.setdefault(process.pid, process)
                    try:
                        cpu += process.cpu_percent(None)
                        rss += process.memory_info().rss
                    except self.psutil.NoSuchProcess:
                        pass
                self.samples.append((now, name, cpu, rss / 2**20))


def percentiles(values) -> dict:
    if not len(values):
        return {"n": 0}
    a = np.asarray(values, dtype=float)
    return {
        "n": int(a.size),
        "p50": float(np.percentile(a, 50)),
        "p95": float(np.percentile(a, 95)),
        "p99": float(np.percentile(a, 99)),
        "max": float(a.max()),
        "mean": float(a.mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meters", type=int, default=50_000)
    parser.add_argument("--interval-s", type=float, default=10.0, help="each meter's sampling and publish interval")
    parser.add_argument("--duration-s", type=float, default=600.0, help="measured time after the warm-up")
    parser.add_argument("--warmup-s", type=float, default=120.0, help="not measured: start-up, first windows")
    parser.add_argument("--fault-rate", type=float, default=20.0, help="labelled faults per meter and day")
    parser.add_argument("--preprocess-parallelism", type=int, default=2)
    parser.add_argument("--bridges", type=int, default=1, help="bridge processes on a shared subscription")
    parser.add_argument("--bridge-linger-ms", type=int, help="bridge.kafka_linger_ms (fewer, larger produce requests)")
    parser.add_argument(
        "--job-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a settings override for every submitted job, e.g. jobs.anomaly.bundle_time_ms=100",
    )
    parser.add_argument("--run-dir", default="/tmp/gridflow-scale")
    parser.add_argument("--out", default=str(REPO / "docs" / "benchmarks" / "scale_latency.png"))
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))  # so the stack is stopped on kill

    run_dir = Path(args.run_dir)
    base = load_settings(
        overrides=[
            f"stack.run_dir={run_dir}",
            "flink.taskmanager.numberOfTaskSlots=6",
            "flink.taskmanager.memory.process.size=3072m",
            f"simulator.sample_interval_s={args.interval_s}",
            f"simulator.publish_interval_s={args.interval_s}",
            f"simulator.fault_rate_per_day={args.fault_rate}",
            "simulator.connections=8",
        ]
    )
    stack = EmbeddedStack(base, run_dir / "stack", mqtt=True, flink=True)
    info = stack.up()
    children: list[subprocess.Popen] = []
    try:
        settings = stack.settings
        kafka_io.create_topics(settings, settings.topics.model_dump().values())
        overlay = run_dir / "bench.yaml"
        overlay.write_text(
            yaml.safe_dump(
                {
                    **info.overlay(),
                    "simulator": {
                        **info.overlay()["simulator"],
                        "sample_interval_s": args.interval_s,
                        "publish_interval_s": args.interval_s,
                        "fault_rate_per_day": args.fault_rate,
                        "connections": 8,
                    },
                    "bridge": {**info.overlay()["bridge"], "metrics_port": 0},
                }
            )
        )
        common = ["--config", str(overlay)]
        cluster = FlinkCluster(info.flink_rest, info.flink_conf_dir)
        started = time.time()
        submissions = []
        for job in JOBS:
            parallelism = args.preprocess_parallelism if job == "preprocess" else 1
            overrides = [
                arg for o in [f"flink.parallelism.default={parallelism}", *args.job_set] for arg in ("--set", o)
            ]
            submissions.append(cluster.submit(job, [*common, *overrides]))
        for s in submissions:
            cluster.wait_until_running(s.job_id)
            s.detach()
        print(f"{len(JOBS)} jobs running on the cluster after {time.time() - started:.0f} s", flush=True)

        gridflow = [sys.executable, "-m", "gridflow.cli"]
        bridges = []
        for i in range(args.bridges):
            # several bridges share the readings subscription (MQTT 5 shared subscription: each message goes to
            # one of them); the first also runs the downlink
            shared = (
                []
                if args.bridges == 1
                else [
                    "--set",
                    f"bridge.subscription=$share/bridges/{settings.bridge.subscription}",
                    "--set",
                    f"bridge.client_id={settings.bridge.client_id}-{i}",
                    *([] if i == 0 else ["--no-downlink"]),
                ]
            )
            if args.bridge_linger_ms is not None:
                shared += ["--set", f"bridge.kafka_linger_ms={args.bridge_linger_ms}"]
            bridges.append(
                subprocess.Popen(
                    [*gridflow, "bridge", *common, *shared],
                    stdout=subprocess.DEVNULL,
                    stderr=open(run_dir / f"bridge-{i}.log", "w"),
                )
            )
        children.extend(bridges)
        time.sleep(3)
        total_s = args.warmup_s + args.duration_s + 30
        simulator = subprocess.Popen(
            [
                *gridflow,
                "simulate",
                "--meters",
                str(args.meters),
                "--duration-s",
                str(total_s),
                "--no-progress",
                *common,
            ],
            stdout=open(run_dir / "simulator.log", "w"),
            stderr=subprocess.STDOUT,
        )
        children.append(simulator)
        watch = Watch(settings, settings.stream.out_of_orderness_ms)
        watch.thread.start()
        groups = {
            "broker (Apache Kafka)": [stack.launcher.processes["kafka"].pid],
            "mosquitto": [stack.launcher.processes["mqtt"].pid],
            "Flink JobManager": [stack.launcher.processes["flink-jobmanager"].pid],
            "Flink TaskManager + Python workers": [stack.launcher.processes["flink-taskmanager"].pid],
            "bridge": [b.pid for b in bridges],
            "simulator": [simulator.pid],
        }
        sampler = Sampler(groups)
        sampler.thread.start()
        t0 = time.time()
        measure_from_ms = int((t0 + args.warmup_s) * 1000)
        measure_to_ms = int((t0 + args.warmup_s + args.duration_s) * 1000)
        while time.time() < t0 + args.warmup_s + args.duration_s + 20:
            time.sleep(10)
            print(
                f"  t={time.time() - t0:5.0f}s readings in Kafka {watch.readings:,}  features {len(watch.features):,}"
                f"  alerts {len(watch.alerts):,}  recommendations {len(watch.recommendations):,}",
                flush=True,
            )
        watch.stop.set()
        sampler.stop.set()
        watch.thread.join(timeout=10)
        report(args, watch, sampler, measure_from_ms, measure_to_ms, t0)
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
                try:
                    child.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    child.kill()
        stack.down()


def report(args, watch: Watch, sampler: Sampler, from_ms: int, to_ms: int, t0: float) -> None:
    ooo = watch.ooo_ms
    feats = [(end, emitted, n) for end, emitted, n in watch.features if from_ms <= emitted < to_ms]
    event_latency = [emitted - end for end, emitted, _ in feats]
    processing = [emitted - c for end, emitted, _ in feats if (c := watch.complete_ms(end + ooo)) is not None]
    series = [
        (emitted, emitted - end, emitted - c)
        for end, emitted, _ in watch.features  # whole run, plotted
        if (c := watch.complete_ms(end + ooo)) is not None
    ]
    recs = [(end, created, wait) for end, created, wait in watch.recommendations if from_ms <= created < to_ms]
    rec_event = [created - end for end, created, _ in recs]
    rec_processing = [
        created - c for end, created, wait in recs if (c := watch.complete_ms(end + wait + ooo)) is not None
    ]
    ingest = [lag for kafka_ts, lag in watch.ingest_lag if from_ms <= kafka_ts < to_ms]
    seconds = (to_ms - from_ms) / 1000
    readings_out = sum(n for _, _, n in feats)
    offered = args.meters / args.interval_s
    result = {
        "meters": args.meters,
        "interval_s": args.interval_s,
        "offered_readings_per_s": offered,
        "measured_s": seconds,
        "readings_per_s_through_preprocess": readings_out / seconds,
        "features_per_s": len(feats) / seconds,
        "spike_alert_recommendations": len(recs),
        "alert_recommendations_by_type_whole_run": dict(watch.alert_types),
        "event_time_to_emit_ms": percentiles(event_latency),
        "processing_latency_ms": percentiles(processing),
        "recommendation_event_time_to_emit_ms": percentiles(rec_event),
        "recommendation_processing_latency_ms": percentiles(rec_processing),
        "ingest_lag_ms": percentiles(ingest),
    }
    usage = defaultdict(list)
    for ts, name, cpu, rss in sampler.samples:
        if from_ms / 1000 <= ts < to_ms / 1000:
            usage[name].append((cpu, rss))
    result["cpu_percent_of_one_core_mean"] = {n: round(float(np.mean([c for c, _ in v])), 1) for n, v in usage.items()}
    result["rss_mb_max"] = {n: round(float(np.max([r for _, r in v])), 0) for n, v in usage.items()}
    print(json.dumps(result, indent=2))
    plot(series, recs, watch, t0, from_ms, to_ms, args)


def plot(series, recs, watch, t0, from_ms, to_ms, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    if series:
        a = np.asarray(series, dtype=float)
        t = (a[:, 0] - t0 * 1000) / 1000
        buckets = np.floor(t / 10) * 10
        for column, label, colour in (
            (1, "feature: event time to emit", "tab:blue"),
            (2, "feature: processing latency", "tab:green"),
        ):
            keys = np.unique(buckets)
            p50 = [np.percentile(a[buckets == k, column], 50) / 1000 for k in keys]
            p99 = [np.percentile(a[buckets == k, column], 99) / 1000 for k in keys]
            ax.plot(keys, p50, color=colour, label=f"{label} p50")
            ax.plot(keys, p99, color=colour, linestyle="--", label=f"{label} p99")
    if watch.recommendations:
        r = np.asarray(
            [
                (created, created - c)
                for end, created, wait in watch.recommendations
                if (c := watch.complete_ms(end + wait + watch.ooo_ms)) is not None
            ],
            dtype=float,
        )
        if len(r):
            ax.scatter(
                (r[:, 0] - t0 * 1000) / 1000,
                r[:, 1] / 1000,
                s=6,
                color="tab:red",
                label="spike-alert recommendation: processing latency",
            )
    ax.axvspan((from_ms / 1000 - t0), (to_ms / 1000 - t0), color="0.93", zorder=0, label="measured")
    ax.axhline(2.0, color="0.4", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("seconds since the meters started")
    ax.set_ylabel("latency (s)")
    ax.set_title(
        f"{args.meters:,} meters every {args.interval_s:g} s ({args.meters / args.interval_s:,.0f} readings/s)"
    )
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"plot: {out}")


if __name__ == "__main__":
    main()
