"""``gridflow schedule``: schedule one household's appliances against a day of prices.

    gridflow schedule --household examples/household.yaml --prices examples/prices_rtp.csv \\
        [--algorithm heap|pso|milp] [--slot-minutes N] [--png plan.png] [--json plan.json]

Household file (YAML or JSON); clock times are ``"HH:MM"`` strings or minutes after midnight (YAML reads
an unquoted ``18:00`` as 1080, which is the same), on slot boundaries; the horizon is one day from 00:00::

    breaker: {amps: 40, volts: 230}            # optional: cap on the total power
    pv: {peak_w: 3000, sunrise: "06:30", sunset: "19:30"}   # optional: half-sine PV forecast
    appliances:
      - name: washing_machine
        kind: deferrable                       # fixed | deferrable | regulatable
        power_w: 1000
        duration_min: 120                      # rounded up to whole slots
        window: ["09:00", "17:00"]             # [earliest start, latest end]
        comfort_margin_min: 60                 # optional: the window may stretch this much (rounded down)
        due: "16:00"                           # optional: must be done by then
        interruptible: false                   # optional
        energy_wh: 9000                        # regulatable only (default power_w x duration)

Price file: ``.csv`` with one price per slot (currency/kWh) per line, the last column being the price
(a header line and a leading time column are skipped), or ``.json`` with a list of prices or an object
``{"price_per_kwh": [...], "slot_minutes": 15, "ibr_thresholds_kwh": [...], "ibr_multipliers": [...]}``
(IBR thresholds per slot, see :class:`~gridflow.scheduling.model.Tariff`). The slot length is
``--slot-minutes``, else the file's ``slot_minutes``, else ``1440 / number of prices``.

Weights and PSO parameters come from the ``scheduler`` settings (``--set scheduler.w_comfort=0.001``).
Exit status: 0 done, 1 no feasible schedule, 2 a bad argument or file (the message names the field).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import yaml

from gridflow.cli_args import add_settings_arguments

APPLIANCE_FIELDS = (
    "name",
    "kind",
    "power_w",
    "duration_min",
    "window",
    "comfort_margin_min",
    "due",
    "interruptible",
    "energy_wh",
)
HOUSEHOLD_FIELDS = ("appliances", "breaker", "pv")
PNG_SIZE_PX = (1000, 500)


class InputFileError(ValueError):
    """A household or price file is unreadable or has a bad field (the message names the file and field)."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``schedule`` subcommand on ``subparsers`` (of the ``gridflow`` command)."""
    parser = subparsers.add_parser(
        "schedule",
        help="schedule a household's appliances against a price file",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--household", required=True, help="household file (YAML or JSON)")
    parser.add_argument("--prices", required=True, help="price file (CSV or JSON), one price per slot")
    parser.add_argument("--algorithm", choices=["heap", "pso", "milp"], help="default: scheduler.algorithm")
    parser.add_argument("--slot-minutes", type=int, help="slot length (default: from the price file)")
    parser.add_argument("--png", help="draw the load before/after and the price curve here")
    parser.add_argument("--json", help="write the schedule and its figures here")
    add_settings_arguments(parser)
    return parser


def run(args: argparse.Namespace, settings) -> None:
    """Read the files, schedule, print the table and write the requested outputs."""
    from gridflow.scheduling.heap_scheduler import ScheduleInfeasible

    try:
        problem = read_household(args.household, read_prices(args.prices, args.slot_minutes))
    except InputFileError as error:
        print(f"gridflow schedule: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    algorithm = args.algorithm or settings.scheduler.algorithm
    try:
        schedule, info = _solve(problem, algorithm, settings.scheduler)
    except (ScheduleInfeasible, RuntimeError) as error:  # RuntimeError: HiGHS stopped without a schedule
        print(f"gridflow schedule: no feasible schedule: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    report = _report(problem, schedule, algorithm, info, settings.tariff.currency)
    print(_table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    if args.png:
        draw_png(problem, schedule, args.png, settings.tariff.currency)


def read_prices(path: str, slot_minutes: int | None = None):
    """The :class:`~gridflow.scheduling.model.Tariff` (prices, slot length, IBR) of a CSV or JSON price file."""
    from gridflow.scheduling.model import Tariff

    text = _read(path)
    fields: dict = {}
    if Path(path).suffix.lower() == ".json" or text.lstrip().startswith(("[", "{")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise InputFileError(f"{path}: not valid JSON: {error}") from None
        if isinstance(data, dict):
            unknown = sorted(set(data) - {"price_per_kwh", "slot_minutes", "ibr_thresholds_kwh", "ibr_multipliers"})
            if unknown:
                raise InputFileError(
                    f"{path}: unknown field(s) {unknown}; valid: price_per_kwh, slot_minutes, "
                    f"ibr_thresholds_kwh, ibr_multipliers"
                )
            fields = {k: v for k, v in data.items() if k != "price_per_kwh"}
            data = data.get("price_per_kwh")
        values = data
    else:
        rows = [row for row in csv.reader(text.splitlines()) if row and any(cell.strip() for cell in row)]
        if rows and not _is_number(rows[0][-1]):
            rows = rows[1:]  # header
        values = [row[-1].strip() for row in rows]
    if not isinstance(values, list) or not values or not all(_is_number(v) and float(v) >= 0 for v in values):
        raise InputFileError(f"{path}: price_per_kwh must be a non-empty list of numbers >= 0 (one per slot)")
    prices = [float(v) for v in values]
    minutes = slot_minutes if slot_minutes is not None else fields.get("slot_minutes", 1440 // len(prices))
    if (
        isinstance(minutes, bool)
        or not isinstance(minutes, int)
        or not 1 <= minutes <= 60
        or 1440 % minutes
        or len(prices) * minutes != 1440
    ):
        raise InputFileError(
            f"{path}: slot_minutes must divide a day (1..60) and len(price_per_kwh) x slot_minutes "
            f"must be 1440 minutes; got {len(prices)} prices and slot_minutes={minutes!r}"
        )
    try:
        return Tariff(prices, minutes, fields.get("ibr_thresholds_kwh", ()), fields.get("ibr_multipliers", ()))
    except (TypeError, ValueError) as error:
        raise InputFileError(f"{path}: {error}") from None


def read_household(path: str, tariff):
    """The :class:`~gridflow.scheduling.model.Problem` of a household file under ``tariff`` (see module doc)."""
    from dataclasses import replace

    from gridflow.scheduling.model import Appliance, Problem

    try:
        data = yaml.safe_load(_read(path))
    except yaml.YAMLError as error:
        raise InputFileError(f"{path}: not valid YAML/JSON: {error}") from None
    if not isinstance(data, dict):
        raise InputFileError(f"{path}: must be a mapping with the fields {HOUSEHOLD_FIELDS}")
    if unknown := sorted(set(data) - set(HOUSEHOLD_FIELDS)):
        raise InputFileError(f"{path}: unknown field(s) {unknown}; valid: {', '.join(HOUSEHOLD_FIELDS)}")
    slot = tariff.slot_minutes
    entries = data.get("appliances")
    if not isinstance(entries, list) or not entries:
        raise InputFileError(f"{path}: appliances must be a non-empty list of appliances")
    appliances = []
    for i, entry in enumerate(entries):
        where = f"{path}: appliances[{i}]"
        try:
            appliances.append(Appliance(**_appliance_fields(where, entry, slot)))
        except ValueError as error:
            raise InputFileError(f"{where}: {error}") from None
    try:
        household_tariff = replace(
            tariff, pv_w=_pv(path, data.get("pv"), slot, tariff.n_slots), breaker_w=_breaker(path, data.get("breaker"))
        )
        return Problem(tuple(appliances), household_tariff)
    except ValueError as error:
        raise InputFileError(f"{path}: {error}") from None


def _appliance_fields(where: str, entry, slot: int) -> dict:
    if not isinstance(entry, dict):
        raise InputFileError(f"{where}: must be a mapping with the fields {APPLIANCE_FIELDS}")
    if unknown := sorted(set(entry) - set(APPLIANCE_FIELDS)):
        raise InputFileError(f"{where}: unknown field(s) {unknown}; valid: {', '.join(APPLIANCE_FIELDS)}")
    required = ["name", "kind", "power_w", "window"] + (["duration_min"] if "energy_wh" not in entry else [])
    if missing := [name for name in required if name not in entry]:
        raise InputFileError(f"{where}: missing field(s) {missing}")
    window = entry["window"]
    if not isinstance(window, list) or len(window) != 2:
        raise InputFileError(f"{where}.window must be [start, end] clock times, got {window!r}")
    start, end = (_clock(f"{where}.window[{k}]", value, slot) for k, value in enumerate(window))
    fields = {
        "name": entry["name"],
        "kind": entry["kind"],
        "power_w": entry["power_w"],
        "alpha_slot": start,
        "beta_slot": end,
        "interruptible": entry.get("interruptible", False),
    }
    if "energy_wh" in entry:
        fields["energy_wh"] = entry["energy_wh"]
    duration = entry.get("duration_min")
    if duration is None and _is_number(entry["energy_wh"]) and _is_number(entry["power_w"]) and entry["power_w"] > 0:
        duration = entry["energy_wh"] / entry["power_w"] * 60.0
    fields["duration_slots"] = _minutes(f"{where}.duration_min", duration, slot, up=True)
    if "comfort_margin_min" in entry:
        fields["comfort_margin_slots"] = _minutes(
            f"{where}.comfort_margin_min", entry["comfort_margin_min"], slot, up=False
        )
    if entry.get("due") is not None:
        fields["due_slot"] = _clock(f"{where}.due", entry["due"], slot)
    return fields


def _clock(field: str, value, slot: int) -> int:
    """Slot index of a clock time (``"HH:MM"`` or minutes after midnight) on a slot boundary."""
    minutes = value
    if isinstance(value, str):
        hours, sep, mins = value.strip().partition(":")
        minutes = int(hours) * 60 + int(mins) if sep and hours.isdigit() and mins.isdigit() else None
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 0 <= minutes <= 1440 or minutes % slot:
        raise InputFileError(
            f"{field} must be a clock time 00:00..24:00 on a {slot}-minute slot boundary "
            f'("HH:MM" or minutes after midnight), got {value!r}'
        )
    return minutes // slot


def _minutes(field: str, value, slot: int, up: bool) -> int:
    """Minutes as whole slots, rounded up (durations) or down (margins)."""
    if not _is_number(value) or not 0 <= float(value) <= 1440:
        raise InputFileError(f"{field} must be a number of minutes in [0, 1440], got {value!r}")
    slots = float(value) / slot
    return math.ceil(slots - 1e-9) if up else math.floor(slots + 1e-9)


def _breaker(path: str, breaker) -> float | None:
    if breaker is None:
        return None
    if not isinstance(breaker, dict) or set(breaker) - {"amps", "volts"} or "amps" not in breaker:
        raise InputFileError(f"{path}: breaker must be a mapping {{amps, volts (default 230)}}, got {breaker!r}")
    amps, volts = breaker["amps"], breaker.get("volts", 230)
    for name, value in (("amps", amps), ("volts", volts)):
        if not _is_number(value) or not 0 < float(value) <= 1000:
            raise InputFileError(f"{path}: breaker.{name} must be a number in (0, 1000], got {value!r}")
    return float(amps) * float(volts)


def _pv(path: str, pv, slot: int, n_slots: int):
    """Half-sine PV forecast per slot (W) between sunrise and sunset, or the given list."""
    if pv is None or isinstance(pv, list):
        return pv
    if not isinstance(pv, dict) or set(pv) != {"peak_w", "sunrise", "sunset"}:
        raise InputFileError(
            f"{path}: pv must be a list of W per slot or a mapping {{peak_w, sunrise, sunset}}, got {pv!r}"
        )
    if not _is_number(pv["peak_w"]) or not 0 <= float(pv["peak_w"]) <= 1e6:
        raise InputFileError(f"{path}: pv.peak_w must be a number in [0, 1e6] W, got {pv['peak_w']!r}")
    rise, set_ = (_clock(f"{path}: pv.{k}", pv[k], 1) for k in ("sunrise", "sunset"))
    if set_ <= rise:
        raise InputFileError(f"{path}: pv.sunset must be after pv.sunrise")
    middle = (np.arange(n_slots) + 0.5) * slot
    return (
        float(pv["peak_w"])
        * np.clip(np.sin(np.pi * (middle - rise) / (set_ - rise)), 0.0, None)
        * ((middle > rise) & (middle < set_))
    )


def _solve(problem, algorithm: str, scheduler):
    from gridflow.scheduling.heap_scheduler import schedule_heap
    from gridflow.scheduling.milp import solve_milp
    from gridflow.scheduling.pso import pso_options, schedule_pso

    comfort = scheduler.w_comfort / scheduler.w_cost if scheduler.w_cost > 0 else 0.0
    if algorithm == "heap":
        return schedule_heap(problem), {}
    if algorithm == "milp":
        exact = solve_milp(problem, comfort_weight=comfort)
        return exact.schedule, {
            "objective": exact.objective,
            "optimal": exact.optimal,
            "solve_time_s": exact.solve_time_s,
        }
    swarm = schedule_pso(problem, **pso_options(scheduler))
    return swarm.schedule, {
        "objective": swarm.objective,
        "iterations": swarm.iterations,
        "feasible": swarm.feasible,
        "fallback": swarm.fallback,
        "comfort_deviation_slots": swarm.comfort_deviation_slots,
    }


def _report(problem, schedule, algorithm: str, info: dict, currency: str) -> dict:
    from gridflow.scheduling.scenarios import unscheduled_baseline

    baseline, tariff, slot = unscheduled_baseline(problem), problem.tariff, problem.tariff.slot_minutes
    cost, before = schedule.cost(tariff), baseline.cost(tariff)
    rows = []
    for a in problem.appliances:
        slots = sorted(schedule.power_w.get(a.name, {}))
        rows.append(
            {
                "name": a.name,
                "kind": a.kind,
                "power_w": a.power_w,
                "start": _hhmm(slots[0] * slot),
                "end": _hhmm((slots[-1] + 1) * slot),
                "slots": len(slots),
                "energy_kwh": sum(schedule.power_w[a.name].values()) * tariff.slot_h / 1000.0,
            }
        )
    return {
        "algorithm": algorithm,
        "slot_minutes": slot,
        "currency": currency,
        "cost": cost,
        "unscheduled_cost": before,
        "savings": before - cost,
        "savings_percent": 100.0 * (before - cost) / before if before > 0 else 0.0,
        "par_before": baseline.peak_to_average_ratio(),
        "par_after": schedule.peak_to_average_ratio(),
        "appliances": rows,
        "info": info,
        "power_w": {name: {str(s): p for s, p in slots.items()} for name, slots in schedule.power_w.items()},
    }


def _table(report: dict) -> str:
    lines = [f"{'appliance':<20}{'kind':<13}{'power W':>9}{'start':>7}{'end':>7}{'slots':>7}{'kWh':>8}"]
    lines += [
        f"{r['name']:<20}{r['kind']:<13}{r['power_w']:>9.0f}{r['start']:>7}{r['end']:>7}{r['slots']:>7}"
        f"{r['energy_kwh']:>8.2f}"
        for r in report["appliances"]
    ]
    unit = report["currency"]
    lines += [
        "",
        f"algorithm: {report['algorithm']}, {report['slot_minutes']}-minute slots",
        f"expected cost: {report['cost']:.3f} {unit} (unscheduled {report['unscheduled_cost']:.3f} {unit}; "
        f"savings {report['savings']:.3f} {unit} = {report['savings_percent']:.1f}%)",
        f"peak-to-average ratio: {report['par_before']:.2f} before, {report['par_after']:.2f} after",
    ]
    return "\n".join(lines)


def draw_png(problem, schedule, path: str, currency: str = "EUR") -> None:
    """Load profile before (unscheduled) and after, PV and the price curve, as a ``PNG_SIZE_PX`` image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gridflow.scheduling.scenarios import unscheduled_baseline

    hours = np.arange(problem.horizon_slots + 1) * problem.tariff.slot_h
    figure, load_axis = plt.subplots(figsize=(PNG_SIZE_PX[0] / 100, PNG_SIZE_PX[1] / 100), dpi=100)
    for label, plan, style in (("before (unscheduled)", unscheduled_baseline(problem), "--"), ("after", schedule, "-")):
        profile = plan.load_profile_w(problem.horizon_slots) / 1000.0
        load_axis.stairs(profile, hours, linestyle=style, label=f"load {label}")
    if problem.tariff.pv_w is not None:
        load_axis.stairs(problem.tariff.pv_w / 1000.0, hours, color="tab:green", linestyle=":", label="PV forecast")
    load_axis.set_xlabel("hour of day")
    load_axis.set_ylabel("load (kW)")
    load_axis.set_xlim(0, 24)
    price_axis = load_axis.twinx()
    price_axis.stairs(problem.tariff.price_per_kwh, hours, color="tab:red", alpha=0.6, label="price")
    price_axis.set_ylabel(f"price ({currency}/kWh)")
    handles = load_axis.get_legend_handles_labels()[0] + price_axis.get_legend_handles_labels()[0]
    load_axis.legend(handles=handles, loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise InputFileError(f"{path}: cannot read: {error}") from None


def _is_number(value) -> bool:
    if isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _hhmm(minutes: float) -> str:
    return f"{int(minutes) // 60:02d}:{int(minutes) % 60:02d}"
