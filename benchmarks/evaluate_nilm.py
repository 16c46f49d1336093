"""Energy disaggregation on the UCI household: event precision/recall per sub-meter, window and duration errors.

Data: the UCI "Individual household electric power consumption" house (``gridflow.datasets.load_uci_household``;
run ``gridflow data fetch`` first), whole days from 2006-12-17 on, whole-house active power per minute.
The learner (``gridflow.nilm.ApplianceLearner``, defaults of ``NilmSettings``) sees only the whole-house real
and reactive power (``--no-reactive``: real power alone, as from a plain meter).

Ground truth: the three sub-meters (kitchen; laundry; water heater + air conditioner) are *on* above
``gridflow.nilm.UCI_THRESHOLDS_W`` (1000 / 1000 / 500 W, see ``gridflow.nilm.evaluation``); runs of >= 2
minutes are true activations, their power the run's median minus the lowest of the ``--base-minutes``
readings before it (2; 1 = the reading just before, the first protocol, which understates loads switched on
in the middle of a minute). Learned clusters are named after a sub-meter on the first ``--learn-days``
days (when its activations are the majority of the cluster's matches and at least ``--min-share`` of the
cluster's activations there; 0 = the first protocol); precision and recall are counted on the remaining
days (on-events within +-2 minutes and 30 % power). Windows [alpha, beta) (10th percentile of starts, 90th
of ends), median durations and powers are learned over all days, once from the whole-house activations of
a sub-meter's clusters and once directly from the sub-meter, in minutes from noon (the Touhs horizon).

    python benchmarks/evaluate_nilm.py [--days 1441] [--learn-days 365] [--base-minutes 2] [--min-share 0.1]
        [--no-reactive]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from gridflow.datasets import load_uci_household
from gridflow.nilm import UCI_THRESHOLDS_W, ApplianceLearner, evaluate_household
from gridflow.settings import load_settings


def whole_days(data: dict[str, np.ndarray], n_days: int | None):
    """Day starts and (days, 1440) arrays from the first local midnight on."""
    ts = data["ts_ms"]
    first = int(np.searchsorted(ts, (ts[0] // 86_400_000 + 1) * 86_400_000))
    available = (ts.size - first) // 1440
    n_days = available if n_days is None else min(n_days, available)
    rows = slice(first, first + n_days * 1440)
    shaped = {name: values[rows].reshape(n_days, 1440) for name, values in data.items() if name != "ts_ms"}
    return ts[rows][::1440], shaped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=None, help="days to use (default: all whole days)")
    parser.add_argument("--learn-days", type=int, default=365)
    parser.add_argument("--base-minutes", type=int, default=2, help="ground truth: readings giving the level before")
    parser.add_argument("--min-share", type=float, default=0.1, help="naming: share of a cluster a sub-meter needs")
    parser.add_argument("--no-reactive", action="store_true", help="learn from real power alone")
    args = parser.parse_args()

    settings = load_settings()
    days, data = whole_days(load_uci_household(settings), args.days)
    learner = ApplianceLearner.from_settings(settings.nilm.model_copy(update={"history_days": len(days)}))
    began = time.perf_counter()
    reactive = None if args.no_reactive else data["reactive_power_var"]
    scores = evaluate_household(
        days,
        data["power_w"],
        {name: data[name] for name in UCI_THRESHOLDS_W},
        learner,
        UCI_THRESHOLDS_W,
        learn_days=args.learn_days,
        reactive_var=reactive,
        base_minutes=args.base_minutes,
        min_share=args.min_share,
    )
    seconds = time.perf_counter() - began
    first, last = (np.datetime64(int(d), "ms").astype("datetime64[D]") for d in (days[0], days[-1]))
    print(
        f"UCI household: {len(days)} days {first} .. {last}; clusters named on the first {args.learn_days}, "
        f"scored on the other {len(days) - args.learn_days}; ground truth base {args.base_minutes} min, "
        f"naming share {args.min_share:g}; "
        f"{seconds:.1f} s\n"
    )
    print(f"Learned profiles (whole-house {'real power' if args.no_reactive else 'real and reactive power'} only):")
    for p in learner.profiles():
        a = p.to_appliance(15)
        print(
            f"  {p.name}: {p.power_w:.0f} W, {p.duration_minutes} min, window [{p.alpha_minute}, {p.beta_minute}) "
            f"min from noon, margin {p.comfort_margin_minutes} min, {p.activations_per_day:.2f}/day -> 15-min "
            f"slots: l={a.duration_slots} alpha={a.alpha_slot} beta={a.beta_slot} margin={a.comfort_margin_slots}"
        )
    print("\n| sub-meter | threshold W | true on-events | detection recall | clusters | precision | recall |")
    print("|---|---:|---:|---:|---|---:|---:|")
    for s in scores:
        print(
            f"| {s.name} | {UCI_THRESHOLDS_W[s.name]:.0f} | {s.n_true} | {s.detection_recall:.3f} | "
            f"{','.join(map(str, s.clusters)) or '-'} | {s.precision:.3f} | {s.recall:.3f} |"
        )
    print(
        "\n| sub-meter | power W (sub-meter / learned) | duration min | alpha min | beta min | "
        "abs. error power / duration / alpha / beta |"
    )
    print("|---|---|---|---|---|---|")
    for s in scores:
        ref, got = s.reference, s.learned
        if ref is None or got is None:
            print(
                f"| {s.name} | {ref.power_w if ref else '-'} / - | {ref.duration_minutes if ref else '-'} / - | "
                f"{ref.alpha_minute if ref else '-'} / - | {ref.beta_minute if ref else '-'} / - | "
                f"no cluster named after it |"
            )
            continue
        errors = (
            abs(got.power_w - ref.power_w),
            abs(got.duration_minutes - ref.duration_minutes),
            abs(got.alpha_minute - ref.alpha_minute),
            abs(got.beta_minute - ref.beta_minute),
        )
        print(
            f"| {s.name} | {ref.power_w:.0f} / {got.power_w:.0f} | {ref.duration_minutes} / {got.duration_minutes} | "
            f"{ref.alpha_minute} / {got.alpha_minute} | {ref.beta_minute} / {got.beta_minute} | "
            f"{errors[0]:.0f} W / {errors[1]} / {errors[2]} / {errors[3]} min |"
        )


if __name__ == "__main__":
    main()
