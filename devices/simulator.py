"""The fleet simulator: N meters running the real firmware, replaying real household load shapes.

Each simulated meter is the firmware's own :class:`~gridflow.devices.firmware.meter.Meter` (sampling,
buffering, batching, reconnect backoff, commands), reading a :class:`ReplayDriver` instead of a
metering chip and publishing through a umqtt-compatible client on a few shared MQTT connections.
Load shapes come from the UCI household and CityLearn data (scaled, time-shifted, noisy per
household); labelled faults are injected and their ground truth written as JSON Lines.

Simulated time runs ``simulator.speed`` times faster than the wall clock. A run that would put
readings in the future (speed > 1) starts far enough in the past that its last reading is "now".

In real time (no start given, speed 1 or slower) each meter keeps a phase of its own within the sample interval,
as real meters do (each one's clock started when it was powered on): meter ``i`` samples at
``phase(i) + k * interval`` (:func:`phase_offsets_ms`, ``simulator.spread_publish``), so a fleet
publishes a steady stream instead of one burst per interval. Replays (speed > 1) stay on the common
grid: their time stamps are the replayed series' own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gridflow.devices.faults import apply_faults, faults_by_household, plan_faults, write_ground_truth
from gridflow.devices.firmware.meter import Meter
from gridflow.devices.load_shapes import LoadShapeLibrary, fleet_series, timestamps_ms
from gridflow.devices.umqtt_paho import SharedConnection
from gridflow.mqtt_tls import client_context
from gridflow.settings import Settings

NOMINAL_VOLTAGE_V = 230.0
PHASE_SLOTS = 100  # phases a real-time fleet spreads over within its interval (0.1 s apart at 10 s)


class SimulatedDropout(Exception):
    """The meter produced no reading (a labelled dropout fault)."""


class ReplayDriver:
    """A metering chip replaying one household's precomputed series; ``index`` selects the sample."""

    __slots__ = ("power_w", "keep", "index")

    def __init__(self, power_w: np.ndarray, keep: np.ndarray):
        self.power_w, self.keep, self.index = power_w, keep, 0

    def read(self) -> dict:
        if not self.keep[self.index]:
            raise SimulatedDropout("no reading (dropout)")
        power_w = float(self.power_w[self.index])
        voltage_v = NOMINAL_VOLTAGE_V + 3.0 - power_w * 0.0004  # a little sag under load
        return {"power_w": power_w, "voltage_v": voltage_v, "current_a": power_w / voltage_v, "energy_kwh": None}


@dataclass
class FleetSummary:
    meters: int
    samples_per_meter: int
    sampled: int
    published: int
    dropped: int
    dropouts: int
    faults: int
    elapsed_s: float

    @property
    def readings_per_s(self) -> float:
        return self.published / self.elapsed_s if self.elapsed_s else 0.0

    def line(self) -> str:
        return (
            f"simulated {self.meters} meters x {self.samples_per_meter} samples: {self.published} readings "
            f"published ({self.sampled} sampled, {self.dropouts} dropouts, {self.dropped} dropped from full "
            f"buffers), {self.faults} labelled faults, {self.elapsed_s:.1f} s, {self.readings_per_s:,.0f} readings/s"
        )


def phase_offsets_ms(meters: int, interval_ms: int, slots: int) -> np.ndarray:
    """Each meter's phase in the interval: ``slots`` evenly spaced phases, meters dealt round-robin
    (meter ``i`` in slot ``i % slots``), so every slot holds the same number of meters (+-1)."""
    slots = max(1, min(int(slots), meters, interval_ms))
    return (np.arange(meters) % slots) * interval_ms // slots


def household_ids(meters: int, prefix: str = "h-") -> list[str]:
    width = max(5, len(str(meters - 1)))
    return [f"{prefix}{i:0{width}d}" for i in range(meters)]


class FleetSimulator:
    def __init__(
        self,
        settings: Settings,
        meters: int,
        duration_s: float,
        library: LoadShapeLibrary,
        start_ms: int | None = None,
        faults_path: str | Path | None = None,
        prefix: str = "h-",
    ):
        sim = settings.simulator
        if meters < 1 or duration_s < sim.sample_interval_s:
            raise ValueError("need at least one meter and a duration of at least one sample interval")
        self.settings = settings
        self.interval_s = sim.sample_interval_s
        self.n = int(duration_s // self.interval_s)
        step_ms = int(self.interval_s * 1000)
        # Real time (no start given, speed 1 or slower): the first sample is stamped at the next multiple of
        # the interval and published at that moment, so a reading's time stamp is when its meter sent it.
        self.realtime = start_ms is None and sim.speed <= 1
        if start_ms is None:
            now_ms = int(time.time() * 1000)
            if sim.speed > 1:  # replay the past up to now
                start_ms = now_ms - int(duration_s * 1000)
                start_ms -= start_ms % step_ms
            else:
                start_ms = now_ms + (-now_ms) % step_ms
        self.start_ms = start_ms
        self.ts_ms = timestamps_ms(start_ms, self.n, self.interval_s)
        # the slots of the interval the meters' phases fall in (one slot, phase 0, when not spread)
        self.phase_ms = phase_offsets_ms(meters, step_ms, PHASE_SLOTS if self.realtime and sim.spread_publish else 1)
        self.household_ids = household_ids(meters, prefix)
        power = fleet_series(
            library, np.arange(meters), start_ms, self.n, self.interval_s, sim.seed, appliances=sim.appliances
        )
        end_ms = int(self.ts_ms[-1]) + step_ms
        self.faults = (
            plan_faults(
                self.household_ids, start_ms, end_ms, sim.fault_rate_per_day, seed=sim.seed, interval_s=self.interval_s
            )
            if sim.fault_rate_per_day > 0
            else []
        )
        keep = np.ones_like(power, dtype=bool)
        by_household = faults_by_household(self.faults)
        for i, household in enumerate(self.household_ids):
            if household in by_household:
                power[i], keep[i] = apply_faults(self.ts_ms, power[i], by_household[household])
        if faults_path is not None:
            write_ground_truth(Path(faults_path), self.faults)
        self.power_w, self.keep = power, keep
        self.connections: list[SharedConnection] = []
        self.meters: list[Meter] = []
        self.drivers: list[ReplayDriver] = []

    def connect(self) -> None:
        sim, mqtt = self.settings.simulator, self.settings.mqtt
        self.connections = [
            SharedConnection(
                mqtt.host,
                mqtt.port,
                f"{sim.client_id_prefix}-{k}",
                sim.mqtt_username,
                sim.mqtt_password,
                commands_filter=mqtt.commands_topic.replace("{household_id}", "+"),
                ssl_context=client_context(mqtt),
            ).start()
            for k in range(min(sim.connections, len(self.household_ids)))
        ]
        config = {
            "sample_interval_ms": int(self.interval_s * 1000),
            "publish_interval_ms": int(sim.publish_interval_s * 1000),
            "batch_max": sim.batch_max,
            "readings_topic": mqtt.readings_topic,
            "commands_topic": mqtt.commands_topic,
        }
        for i, household in enumerate(self.household_ids):
            driver = ReplayDriver(self.power_w[i], self.keep[i])
            client = self.connections[i % len(self.connections)].client_for(household)
            self.drivers.append(driver)
            self.meters.append(
                Meter({**config, "household_id": household, "meter_id": f"m-{household}"}, driver, client)
            )

    def run(self, progress: bool = True) -> FleetSummary:
        """Step every meter through every sample time, pacing simulated time by ``simulator.speed``."""
        from tqdm import tqdm

        if not self.meters:
            self.connect()
        speed = self.settings.simulator.speed
        started = time.monotonic()
        if self.realtime:  # the monotonic moment of the first sample's wall-clock time stamp
            started += max(0.0, int(self.ts_ms[0]) / 1000 - time.time())
        # meters grouped by phase: each group steps at its own moment of every interval
        phases = np.unique(self.phase_ms)
        groups = [np.flatnonzero(self.phase_ms == phase) for phase in phases]
        ticks = tqdm(range(self.n), desc="simulating", unit="tick", disable=not progress, mininterval=1.0)
        for k in ticks:
            for phase, group in zip(phases.tolist(), groups):
                wall_due = started + (k * self.interval_s + phase / 1000) / speed
                while time.monotonic() < wall_due:  # keep the connections alive while waiting
                    for connection in self.connections:
                        connection.service(min(0.05, max(0.0, wall_due - time.monotonic())))
                self.step_all(int(self.ts_ms[k]) + phase, k, group if len(groups) > 1 else None)
        flush_ms = int(self.ts_ms[-1]) + int(self.settings.simulator.publish_interval_s * 1000)
        for i, meter in enumerate(self.meters):
            meter.publish_pending(flush_ms)
            if i % 200 == 0:
                for connection in self.connections:
                    connection.service()
        for connection in self.connections:
            connection.wait_until_sent()
        return self.summary(time.monotonic() - started)

    def step_all(self, now_ms: int, sample_index: int | None = None, meters=None, service_every: int = 200) -> None:
        """One firmware step at ``now_ms`` of every meter (or of the meters at the indices ``meters``),
        replaying sample ``sample_index``."""
        connections = self.connections
        indices = range(len(self.meters)) if meters is None else meters
        for n, i in enumerate(indices):
            if sample_index is not None:
                self.drivers[i].index = sample_index
            if n % service_every == 0:
                for connection in connections:
                    connection.service()
            self.meters[i].step(now_ms)
        for connection in connections:
            connection.service()

    def summary(self, elapsed_s: float) -> FleetSummary:
        def total(key: str) -> int:
            return sum(meter.stats[key] for meter in self.meters)

        return FleetSummary(
            meters=len(self.meters),
            samples_per_meter=self.n,
            sampled=total("sampled"),
            published=total("published"),
            dropped=total("dropped"),
            dropouts=total("driver_errors"),
            faults=len(self.faults),
            elapsed_s=round(elapsed_s, 3),
        )

    def close(self) -> None:
        for connection in self.connections:
            connection.stop()
