"""The scheduling job planning a fleet of homes with PV, a battery and an EV: plans per second through Flink.

``benchmarks/scheduling_fleet.py`` measures the fleet planner alone; this runs the same homes through
``jobs/scheduling.py`` on the embedded stack (real Kafka, the Flink mini-cluster, ``parallelism.default``
subtasks): each home's ``home_energy`` record (battery, EV, its PV as a 15-minute forecast), its load
forecast (the base load), its washer where it has one, and one day-ahead price forecast for the market,
all pre-loaded; the job runs bounded at the loaded offsets.

One market means one price forecast for every home: the first home's day (import = (day-ahead + 0.15) x
1.21), and export at the day-ahead price through ``scheduler.export_price_factor = 1/1.21`` and
``scheduler.export_price_offset = -0.15``. A home is planned again whenever one of its records reaches the
scheduler after the forecast, so the job may plan a home up to three times: the figure is schedules per
second after start-up (the time of the same job over ``--warmup`` homes, run just before in the same JVM,
subtracted), and from it the time to plan ``--fleet`` homes once each.

    python benchmarks/scheduling_job_fleet.py --homes 3000 --fleet 50000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scheduling_fleet import SLOT_MINUTES, household  # noqa: E402

from gridflow import kafka_io  # noqa: E402
from gridflow.contracts import CONTRACTS, encode  # noqa: E402
from gridflow.jobs import scheduling  # noqa: E402
from gridflow.runtime import create_env  # noqa: E402
from gridflow.settings import load_settings  # noqa: E402
from gridflow.stack import EmbeddedStack  # noqa: E402

START_MS = 1_714_557_600_000  # 2024-05-01 12:00 CEST: a noon-to-noon horizon


def records(n: int, seed: int, offset: int) -> tuple[list, list, list, dict]:
    """(home_energy, load_forecast, appliance) records of ``n`` homes and the market's price forecast."""
    slot_ms = SLOT_MINUTES * 60_000
    homes, loads, washers, forecast = [], [], [], None
    for index in range(n):
        p = household(offset + index, seed)
        hid = f"h-{offset + index:06d}"
        b = p.battery
        assert b is not None
        record = {
            "v": 1,
            "household_id": hid,
            "updated_ts_ms": START_MS - 3_600_000,
            "import_max_w": float(p.import_max_w),
            "battery": {
                "capacity_kwh": b.capacity_kwh,
                "max_charge_kw": b.max_charge_kw,
                "max_discharge_kw": b.max_discharge_kw,
                "round_trip_efficiency": b.round_trip_efficiency,
                "soc_min": b.soc_min,
                "soc_max": b.soc_max,
                "soc_now": b.soc_initial,
            },
            "pv_forecast": {
                "start_ts_ms": START_MS,
                "slot_minutes": SLOT_MINUTES,
                "power_w": np.asarray(p.pv_w).tolist(),
            },
        }
        for ev in p.evs:
            record["ev"] = {
                "name": ev.name,
                "arrival_ts_ms": START_MS + ev.arrival_slot * slot_ms,
                "departure_ts_ms": START_MS + ev.departure_slot * slot_ms,
                "energy_kwh": ev.energy_kwh,
                "max_kw": ev.max_kw,
                "min_kw": ev.min_kw,
                "efficiency": ev.efficiency,
            }
        homes.append((hid, encode(record)))
        base = np.asarray(p.base_load_w).tolist()
        loads.append(
            (
                hid,
                encode(
                    {
                        **CONTRACTS["load_forecast"].example,
                        "household_id": hid,
                        "start_ts_ms": START_MS,
                        "slot_minutes": SLOT_MINUTES,
                        "slots": len(base),
                        "load_w": base,
                        "energy_kwh": float(np.sum(base)) * SLOT_MINUTES / 60 / 1000,
                        "peak_w": float(max(base)),
                        "peak_ts_ms": START_MS,
                    }
                ),
            )
        )
        if p.appliances:
            washer = {
                **CONTRACTS["appliance"].example,
                "household_id": hid,
                "horizon_start_minute": 720,
                "slot_minutes": SLOT_MINUTES,
                "name": "washer",
                "power_w": 2000.0,
                "duration_minutes": 120,
                "alpha_minute": 360,
                "beta_minute": 1140,
                "comfort_margin_minutes": 0,
            }
            washers.append((hid, encode(washer)))
        if forecast is None:
            forecast = {
                **CONTRACTS["price_forecast"].example,
                "start_ts_ms": START_MS,
                "issued_ts_ms": START_MS - 3_600_000,
                "slot_minutes": SLOT_MINUTES,
                "slots": p.n_slots,
                "price_per_kwh": [round(float(x), 6) for x in np.asarray(p.import_price)],
            }
    assert forecast is not None
    return homes, loads, washers, forecast


def run(settings, n: int, seed: int, offset: int, tag: str) -> tuple[float, int, int]:
    """(job wall seconds, schedules written, dead letters) for ``n`` homes on topics of their own."""
    settings = settings.with_overrides(
        *(f"topics.{name}={value}.{tag}" for name, value in settings.topics.model_dump().items())
    )
    t = settings.topics
    kafka_io.create_topics(
        settings, [t.appliances, t.price_forecasts, t.load_forecasts, t.home_energy, t.schedules, t.dead_letter]
    )
    homes, loads, washers, forecast = records(n, seed, offset)
    stops = {
        t.home_energy: kafka_io.produce(settings, t.home_energy, homes),
        t.load_forecasts: kafka_io.produce(settings, t.load_forecasts, loads),
        t.appliances: kafka_io.produce(settings, t.appliances, washers),
        t.price_forecasts: kafka_io.produce(settings, t.price_forecasts, [("NL", json.dumps(forecast))]),
    }
    for topic in stops:  # a topic some partition of which got nothing still needs its end
        stops[topic] = {p: stops[topic].get(p, 0) for p in range(settings.kafka.partitions)}
    env = create_env(settings)
    scheduling.build(env, settings, stop_offsets=stops)
    started = time.perf_counter()
    env.execute(f"scheduling-fleet-{tag}")
    wall = time.perf_counter() - started
    schedules = len(kafka_io.read_records(settings, t.schedules, until_end=True))
    dead = len(kafka_io.read_records(settings, t.dead_letter, until_end=True))
    return wall, schedules, dead


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--homes", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--fleet", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as run_dir, EmbeddedStack(load_settings(), run_dir, mqtt=False) as stack:
        settings = stack.settings.with_overrides(
            "scheduler.slot_minutes=15",
            "scheduler.home_solver=fleet",
            f"scheduler.export_price_factor={1 / 1.21}",
            "scheduler.export_price_offset=-0.15",
        )
        small, small_schedules, _ = run(settings, args.warmup, args.seed, 10_000_000, "warmup")
        wall, schedules, dead = run(settings, args.homes, args.seed, 0, "fleet")
    rate = (schedules - small_schedules) / max(wall - small, 1e-9)
    print(f"parallelism {settings.flink.parallelism_default}, {args.homes} homes, 15-minute slots")
    print(f"  warm-up job ({args.warmup} homes): {small:.1f} s, {small_schedules} schedules")
    print(
        f"  fleet job: {wall:.1f} s, {schedules} schedules ({schedules / args.homes:.2f} per home), {dead} dead letters"
    )
    print(f"  after start-up: {rate:.1f} schedules/s ({1000 / rate:.1f} ms each)")
    print(f"  {args.fleet} homes planned once each: about {args.fleet / rate:.0f} s plus {small:.0f} s of start-up")


if __name__ == "__main__":
    main()
