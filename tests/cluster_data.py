"""Data and helpers of the cluster tests: a simulated fleet's day as Kafka records, job settings files."""

from __future__ import annotations

import json

import orjson
import yaml
from kafka.partitioner.default import murmur2

from gridflow import kafka_io
from gridflow.demo import DEMO_DAY_MS

HOUSEHOLDS = 4
MALFORMED = [
    b"not json at all",
    b'{"household_id": "h-00001", "meter_id": "m-h-00001", "ts_ms": 1715385600000}',
    b'{"household_id": "h-00002", "meter_id": "m-h-00002", "ts_ms": 1715385600000, "power_w": -9e9}',
]


def partition(key: bytes, partitions: int) -> int:
    """The partition a keyed record lands on (the Java client's and kafka-python's default partitioner)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def fleet_records(settings) -> tuple[list[tuple[str, bytes]], set[tuple[str, int]]]:
    """One day of simulated meters (real load shapes, labelled faults) as keyed Kafka records in time order,
    malformed payloads among them; and the (meter, window start) pairs that hold at least one valid reading."""
    from gridflow.devices.load_shapes import LoadShapeLibrary
    from gridflow.devices.simulator import FleetSimulator

    sim = FleetSimulator(settings, HOUSEHOLDS, 86_400, LoadShapeLibrary.load(settings), start_ms=DEMO_DAY_MS)
    window_ms = settings.preprocess.window_s * 1000
    records, windows = [], set()
    for k in range(sim.n):
        ts = int(sim.ts_ms[k])
        for i, household in enumerate(sim.household_ids):
            if sim.keep[i, k]:
                meter = f"m-{household}"
                records.append(
                    (
                        household,
                        orjson.dumps(
                            {
                                "household_id": household,
                                "meter_id": meter,
                                "ts_ms": ts,
                                "power_w": round(float(sim.power_w[i, k]), 2),
                            }
                        ),
                    )
                )
                windows.add((meter, ts - ts % window_ms))
    for j, payload in enumerate(MALFORMED):  # keyed, so their partition is known in advance
        records.insert((j + 1) * len(records) // 8, (f"h-{j:05d}", payload))
    return records, windows


def job_overlay(settings, tmp_path, name: str) -> list[str]:
    """Job arguments: one settings file for every job of the pipeline, as an operator would write it."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "kafka": {
                    "bootstrap_servers": settings.kafka.bootstrap_servers,
                    "delivery_guarantee": "exactly-once",
                    "group_id_prefix": settings.kafka.group_id_prefix,
                },
                "topics": settings.topics.model_dump(),
                "stream": {"out_of_orderness_ms": 30_000, "idle_timeout_ms": 0},
                "clustering": {"warmup_profiles": 2, "n_clusters": 2, "publish_every_s": 1},
                "flink": {"execution.checkpointing.interval": "2 s", "parallelism.default": 1},
            }
        )
    )
    return ["--config", str(path)]


def read(settings, topic) -> list[dict]:
    return [json.loads(v) for v in kafka_io.read_topic(settings, topic, idle_timeout_s=3, until_end=True)]


class TwoHalves:
    """A day of readings fed in two halves to a preprocessing job bounded at the offsets the whole day
    reaches: between the halves the job is mid-stream however fast the machine is."""

    def __init__(self, settings):
        self.settings = settings
        self.records, self.windows = fleet_records(settings)
        half = len(self.records) // 2
        self.first, self.second = self.records[:half], self.records[half:]
        partitions = settings.kafka.partitions
        written = kafka_io.produce(settings, settings.topics.readings, self.first)
        later = {}
        for key, _ in self.second:
            p = partition(key.encode(), partitions)
            later[p] = later.get(p, 0) + 1
        self.later = later
        self.stops = {p: written.get(p, 0) + later.get(p, 0) for p in range(partitions)}

    def stop_arg(self) -> list[str]:
        return ["--stop-offsets", ",".join(f"{p}={o}" for p, o in sorted(self.stops.items()))]

    def produce_second_half(self) -> None:
        ends_now = kafka_io.produce(self.settings, self.settings.topics.readings, self.second)
        assert ends_now == {p: self.stops[p] for p in self.later}

    def wait_until_consumed(self, job_name: str, timeout_s: float = 300.0) -> None:
        """Until the job's consumer group committed (with a checkpoint) every reading up to the stop offsets."""
        import time

        from gridflow.connectors.flink_kafka import group_id

        group, deadline = group_id(self.settings, job_name), time.monotonic() + timeout_s
        wanted = {p: o for p, o in self.stops.items() if o}
        while {
            p: o
            for p, o in kafka_io.committed_offsets(self.settings, self.settings.topics.readings, group).items()
            if o
        } != wanted:
            assert time.monotonic() < deadline, "the job did not consume its input"
            time.sleep(1)

    def wait_for_committed_output(self, cluster, job_id: str) -> int:
        """Until the job committed feature records (a checkpoint completed after some windows closed)."""
        checkpoints = cluster.wait_for_checkpoint(job_id)
        while not kafka_io.read_topic(self.settings, self.settings.topics.features, expected=1, idle_timeout_s=2):
            checkpoints = cluster.wait_for_checkpoint(job_id, after=checkpoints)
        return len(kafka_io.read_topic(self.settings, self.settings.topics.features, idle_timeout_s=2))

    def check_every_reading_once(self) -> tuple[list[dict], list[dict], list[dict]]:
        """Each window written once, every reading in exactly one output; returns features, profiles, dead."""
        t = self.settings.topics
        features, profiles, dead = (
            read(self.settings, t.features),
            read(self.settings, t.profiles),
            read(self.settings, t.dead_letter),
        )
        keys = {}
        for f in features:
            key = (f["meter_id"], f["window_start_ms"])
            keys[key] = keys.get(key, 0) + 1
        assert max(keys.values()) == 1, "no window was written twice"
        assert set(keys) == self.windows, "every window with readings was written"
        assert sum(f["n_readings"] + f["n_duplicates"] for f in features) + len(dead) == len(self.records)
        assert len(dead) == len(MALFORMED) and {d["payload"].encode() for d in dead} == set(MALFORMED)
        households = sorted({f"h-{i:05d}" for i in range(HOUSEHOLDS)})
        assert sorted(p["household_id"] for p in profiles) == households, "one daily profile per household"
        return features, profiles, dead
