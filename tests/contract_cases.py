"""Records that break a topic's contract, for the consumer tests: each job must dead-letter every one of
them, naming the field, while good records keep flowing."""

from __future__ import annotations

import json


def breaking(
    good: dict, key: str, *, drop: str, mistype: str, key_field: str = "household_id", intruder: str = "h-intruder"
) -> list[tuple[str, str, str]]:
    """``(kafka key, payload, field the dead letter names)`` of four records made from the valid ``good``:
    ``drop`` missing, ``mistype`` a string, an unknown schema version, and ``good`` keyed as another
    household's (or market's) record."""
    missing = {k: v for k, v in good.items() if k != drop}
    return [
        (key, json.dumps(missing), drop),
        (key, json.dumps({**good, mistype: "not a number"}), mistype),
        (key, json.dumps({**good, "v": 99}), "v"),
        (intruder, json.dumps(good), key_field),
    ]


def check_dead_letters(dead: list[dict], cases: list[tuple[str, str, str]], source: str) -> None:
    """Every breaking record is in ``dead`` (by payload) with its field, a reason and the source topic."""
    by_payload = {d["payload"]: d for d in dead}
    for key, payload, field in cases:
        assert payload in by_payload, f"not dead-lettered: {payload[:120]}"
        letter = by_payload[payload]
        assert letter["field"] == field and letter["reason"], letter
        assert letter["source"] == source, letter


def feature(household: str, meter: str, start_ms: int, mean_w: float, window_ms: int = 60_000, **fields) -> dict:
    """A complete feature record of a steady window (six readings at ``mean_w``), ``fields`` overriding."""
    return {
        "v": 1,
        "household_id": household,
        "meter_id": meter,
        "window_start_ms": start_ms,
        "window_end_ms": start_ms + window_ms,
        "n_readings": 6,
        "n_duplicates": 0,
        "n_missing": 0,
        "n_interpolated": 0,
        "n_outliers": 0,
        "coverage": 1.0,
        "energy_wh": mean_w * window_ms / 3_600_000,
        "mean_w": mean_w,
        "peak_w": mean_w,
        "min_w": mean_w,
        "std_w": 0.0,
        "load_factor": 1.0,
        "peak_share": 0.0,
        "raw_max_w": mean_w,
        "stuck_run": 1,
        "grid_w": [mean_w] * 6,
        "outlier_values": [],
        "emitted_ms": start_ms + window_ms + 500,
        **fields,
    }
