"""gridflow's exact home plan side by side with EMHASS's day-ahead optimisation, on the same homes.

EMHASS (PyPI ``emhass``, the Home Assistant energy optimiser) is installed in a virtualenv of its own
(``build/emhass-venv``, created on the first run: it needs numpy 2 and cvxpy, which gridflow's Flink
dependencies cannot share) and driven by ``benchmarks/emhass_driver.py`` through its own
``Optimization.perform_optimization`` (cost function ``profit``, HiGHS).

Homes: those of ``benchmarks/scheduling_fleet.py`` without EV and washer (EMHASS models an EV only as a
deferrable load): a CityLearn home's load and PV, a Dutch day-ahead day (import with network, tax and VAT;
export at the day-ahead price, negative hours included), a battery with its SoC now and the same SoC at the
end, a 17.25 kW connection, one noon-to-noon day of 96 slots of 15 minutes.

Both plans are judged by the same code: the bill is :meth:`HomeProblem.cost` of each plan's import and export;
constraint violations are :meth:`HomePlan.violations` (energy balance, SoC recursion and bounds, end target,
power limits, simultaneous import/export or charge/discharge); self-consumption is the share of the PV
produced that the home used; solve time is each solver's own call (EMHASS: ``perform_optimization``;
gridflow: ``solve_home``, model building included).

    python benchmarks/compare_emhass.py [--households 50] [--seed 1] [--emhass-python PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scheduling_fleet import household  # noqa: E402

from gridflow.scheduling.home import HomePlan, HomeProblem  # noqa: E402
from gridflow.scheduling.home_milp import solve_home  # noqa: E402
from gridflow.scheduling.model import Schedule  # noqa: E402

EMHASS_VERSION = "0.18.7"
ROOT = Path(__file__).resolve().parent.parent
DRIVER = Path(__file__).resolve().parent / "emhass_driver.py"


def emhass_python(given: str | None) -> Path:
    """The EMHASS virtualenv's interpreter, created (and EMHASS installed) when absent."""
    if given:
        return Path(given)
    venv = ROOT / "build" / "emhass-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        base = getattr(sys, "_base_executable", sys.executable)
        print(f"installing emhass=={EMHASS_VERSION} into {venv} (about 2 minutes) ...", file=sys.stderr)
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"emhass=={EMHASS_VERSION}"], check=True)
    return python


def _request(problems: list[HomeProblem]) -> dict:
    rows = []
    for index, p in enumerate(problems):
        b = p.battery
        assert b is not None
        rows.append(
            {
                "id": f"h{index}",
                "load_w": np.asarray(p.base_load_w).tolist(),
                "pv_w": np.asarray(p.pv_w).tolist(),
                "import_price": np.asarray(p.import_price).tolist(),
                "export_price": np.asarray(p.export_price).tolist(),
                "import_max_w": p.import_max_w,
                "export_max_w": p.import_max_w if math.isinf(p.export_max_w) else p.export_max_w,
                "battery": {
                    "capacity_kwh": b.capacity_kwh,
                    "max_charge_kw": b.max_charge_kw,
                    "max_discharge_kw": b.max_discharge_kw,
                    "eta_charge": b.efficiency,
                    "eta_discharge": b.efficiency,
                    "soc_min": b.soc_min,
                    "soc_max": b.soc_max,
                    "soc_initial": b.soc_initial,
                    "soc_final": b.soc_final,
                },
            }
        )
    return {
        "slot_minutes": 15,
        "time_zone": "Europe/Amsterdam",
        "start": "2024-05-01T12:00:00+02:00",
        "households": rows,
    }


def emhass_plan(problem: HomeProblem, row: dict) -> HomePlan:
    """EMHASS's flows as a :class:`HomePlan` of ``problem`` (its battery energy rebuilt from its SoC)."""
    b = problem.battery
    assert b is not None
    import_w, export_w = np.asarray(row["import_w"], float), np.asarray(row["export_w"], float)
    soc = np.concatenate(([b.soc_initial], np.asarray(row["soc"], float))) * b.capacity_kwh
    cost = problem.cost(import_w, export_w)
    return HomePlan(
        import_w=import_w,
        export_w=export_w,
        pv_used_w=np.asarray(row["pv_used_w"], float),
        charge_w=np.asarray(row["charge_w"], float),
        discharge_w=np.asarray(row["discharge_w"], float),
        battery_kwh=soc,
        ev_w={},
        appliances=Schedule(problem.n_slots),
        cost=cost,
        objective=cost,
        solve_time_s=float(row["solve_time_s"]),
        optimal=True,
        solver=f"emhass {EMHASS_VERSION}",
    )


def _kind(violation: str) -> str:
    """A violation's sentence without its slots and figures, to count homes per kind."""
    return re.sub(r"[-+]?\d[\d.e+-]*", "#", re.sub(r"( in slots| at steps| in the same slots).*$", "", violation))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--households", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--emhass-python", help="an interpreter with emhass installed (default: build/emhass-venv)")
    args = parser.parse_args()
    problems = [household(i, args.seed, ev=False, washer=False) for i in range(args.households)]
    python = emhass_python(args.emhass_python)
    started = time.perf_counter()
    done = subprocess.run(
        [str(python), str(DRIVER)], input=json.dumps(_request(problems)), capture_output=True, text=True, check=False
    )
    if done.returncode:
        sys.exit(f"the EMHASS driver failed ({done.returncode}):\n{done.stderr[-4000:]}")
    emhass = json.loads(done.stdout)
    emhass_wall = time.perf_counter() - started
    rows = []
    for problem, row in zip(problems, emhass["households"]):
        ours = solve_home(problem)
        theirs = emhass_plan(problem, row)
        rows.append(
            {
                "ours": ours.cost,
                "theirs": theirs.cost,
                "ours_s": ours.solve_time_s,
                "theirs_s": theirs.solve_time_s,
                "ours_bad": ours.violations(problem),
                "theirs_bad": theirs.violations(problem),
                "ours_sc": ours.self_consumption(problem),
                "theirs_sc": theirs.self_consumption(problem),
                "status": row["status"],
            }
        )
    print(
        f"{'home':>5} {'gridflow EUR':>12} {'EMHASS EUR':>11} {'diff':>8} {'gridflow ms':>11} {'EMHASS ms':>10} "
        f"{'SC gridflow':>11} {'SC EMHASS':>9} {'EMHASS violations':>17}  EMHASS status"
    )
    for i, r in enumerate(rows):
        print(
            f"{i:>5} {r['ours']:>12.4f} {r['theirs']:>11.4f} {r['theirs'] - r['ours']:>8.4f} {1000 * r['ours_s']:>11.1f} "
            f"{1000 * r['theirs_s']:>10.1f} {r['ours_sc']:>11.1%} {r['theirs_sc']:>9.1%} {len(r['theirs_bad']):>17}  {r['status']}"
        )
    ours, theirs = np.array([r["ours"] for r in rows]), np.array([r["theirs"] for r in rows])
    clean = [not r["theirs_bad"] for r in rows]
    tol = 1e-4 * np.maximum(1.0, np.abs(theirs))
    print(f"\n{len(rows)} homes (seed {args.seed}), EMHASS {emhass['emhass_version']}:")
    print(
        f"  gridflow cost <= EMHASS cost (within {tol.max():.1g} EUR): {int(np.sum(ours <= theirs + tol))} of {len(rows)}"
    )
    print(
        f"  mean daily cost: gridflow {ours.mean():.4f} EUR, EMHASS {theirs.mean():.4f} EUR "
        f"(EMHASS plans with no violation: {sum(clean)} of {len(rows)})"
    )
    print(f"  gridflow plans with a violation: {sum(bool(r['ours_bad']) for r in rows)}")
    kinds: dict[str, int] = {}
    for r in rows:
        for kind in {_kind(v) for v in r["theirs_bad"]}:
            kinds[kind] = kinds.get(kind, 0) + 1
    for kind, count in sorted(kinds.items()):
        print(f"    EMHASS: {kind} ({count} homes)")
    ms = np.array([[r["ours_s"], r["theirs_s"]] for r in rows]) * 1000
    print(
        f"  solve time per home, median (p95): gridflow {np.median(ms[:, 0]):.1f} ms ({np.percentile(ms[:, 0], 95):.1f}), "
        f"EMHASS {np.median(ms[:, 1]):.1f} ms ({np.percentile(ms[:, 1], 95):.1f}); EMHASS process wall {emhass_wall:.1f} s"
    )


if __name__ == "__main__":
    main()
