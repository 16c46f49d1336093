"""Readings for pipeline tests and an independent reference of the summaries they must produce."""

from __future__ import annotations

import json
import random
from collections import defaultdict

START_MS = 1_768_435_200_000  # 2026-01-15 00:00 UTC
MALFORMED = [
    (b"{broken json", ""),
    (b'{"household_id": "h-01", "meter_id": "m-01", "ts_ms": 1768435200000}', "power_w"),
    (b'{"household_id": "h-02", "meter_id": "m-02", "ts_ms": 1768435200000, "power_w": 1e12}', "power_w"),
    (b'{"household_id": "h 03", "meter_id": "m-03", "ts_ms": 1768435200000, "power_w": 5}', "household_id"),
    (b'{"household_id": "h-04", "meter_id": "m-04", "ts_ms": -5, "power_w": 5}', "ts_ms"),
    (b'{"household_id": "h-05", "meter_id": "m-05", "ts_ms": 1768435200000, "power_w": 5, "volts": 3}', "volts"),
]


def readings(households: int, minutes: int, seed: int, jitter_ms: int = 2_000) -> list[dict]:
    """Time-ordered readings every ~7 s per household, locally out of order by up to ``jitter_ms``."""
    rng = random.Random(seed)
    rows = []
    for h in range(households):
        t = START_MS + rng.randrange(0, 7_000)
        while t < START_MS + minutes * 60_000:
            rows.append(
                {
                    "household_id": f"h-{h:02d}",
                    "meter_id": f"m-{h:02d}",
                    "ts_ms": t,
                    "power_w": round(rng.uniform(50, 4000), 2),
                }
            )
            t += 7_000
    rows.sort(key=lambda r: r["ts_ms"] + rng.randrange(0, jitter_ms))  # arrival order
    return rows


def expected_summaries(rows: list[dict], window_ms: int) -> dict[tuple[str, int], dict]:
    groups: dict[tuple[str, int], list[float]] = defaultdict(list)
    for row in rows:
        groups[(row["household_id"], row["ts_ms"] - row["ts_ms"] % window_ms)].append(row["power_w"])
    return {
        key: {
            "readings": len(powers),
            "mean_power_w": sum(powers) / len(powers),
            "peak_power_w": max(powers),
            "min_power_w": min(powers),
            "energy_kwh": sum(powers) / len(powers) * window_ms / 3.6e9,
        }
        for key, powers in groups.items()
    }


def records(rows: list[dict]) -> list[tuple[str | None, bytes]]:
    """Kafka (key, value) records: the readings keyed by household, malformed payloads interleaved."""
    out = [(row["household_id"], json.dumps(row).encode()) for row in rows]
    for i, (payload, _) in enumerate(MALFORMED):
        out.insert((i + 1) * len(out) // (len(MALFORMED) + 1), (None, payload))
    return out


def check_outputs(summaries: list[dict], dead: list[dict], rows: list[dict], window_ms: int) -> None:
    expected = expected_summaries(rows, window_ms)
    got = {(s["household_id"], s["window_start_ms"]): s for s in summaries}
    assert len(summaries) == len(got), "a window was emitted twice"
    assert set(got) == set(expected)
    assert sum(s["readings"] for s in summaries) == len(rows), "every valid reading is counted once"
    for key, want in expected.items():
        have = got[key]
        assert have["window_end_ms"] - have["window_start_ms"] == window_ms
        assert have["readings"] == want["readings"]
        for name in ("mean_power_w", "peak_power_w", "min_power_w", "energy_kwh"):
            assert abs(have[name] - want[name]) <= 1e-9 * max(1.0, abs(want[name])), (key, name)
    assert sorted(d["field"] for d in dead) == sorted(field for _, field in MALFORMED)
    assert sorted(d["payload"] for d in dead) == sorted(p.decode() for p, _ in MALFORMED)
    assert all(d["reason"] for d in dead)
