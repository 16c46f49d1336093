"""``gridflow schedule`` as a user runs it: a subprocess on the example files, outputs checked by decoding them.

The JSON schedule is checked against the household and price files read back with the CLI's own readers
(``Schedule.violations``); bad files must fail with status 2 and a message naming the field, no traceback
(checked in a real process once; the many bad-file cases call ``gridflow.cli.main`` in-process).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest

from gridflow.cli import main
from gridflow.scheduling.cli import PNG_SIZE_PX, read_household, read_prices
from gridflow.scheduling.model import Schedule

ROOT = Path(__file__).resolve().parent.parent
HOUSEHOLD, PRICES = ROOT / "examples" / "household.yaml", ROOT / "examples" / "prices_rtp.csv"


def schedule_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gridflow.cli", "schedule", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def schedule_in_process(capsys, *args: str) -> tuple[int, str]:
    """Exit status and stderr of ``gridflow schedule`` run in this process (the bad-file cases: fast)."""
    with pytest.raises(SystemExit) as done:
        main(["schedule", *map(str, args)])
    return done.value.code, capsys.readouterr().err


@pytest.mark.parametrize("algorithm", ["heap", "pso", "milp"])
def test_example_household_png_and_json(tmp_path, algorithm):
    png, out = tmp_path / "plan.png", tmp_path / "plan.json"
    done = schedule_cli(
        "--household",
        HOUSEHOLD,
        "--prices",
        PRICES,
        "--algorithm",
        algorithm,
        "--png",
        png,
        "--json",
        out,
        "--set",
        "scheduler.w_comfort=0.001",
    )
    assert done.returncode == 0, done.stderr
    assert "washing_machine" in done.stdout and "expected cost" in done.stdout and "peak-to-average" in done.stdout
    image = matplotlib.image.imread(png)
    assert image.shape[:2] == (PNG_SIZE_PX[1], PNG_SIZE_PX[0]) and image.std() > 0
    report = json.loads(out.read_text())
    problem = read_household(str(HOUSEHOLD), read_prices(str(PRICES)))
    schedule = Schedule(
        problem.horizon_slots,
        {name: {int(s): p for s, p in slots.items()} for name, slots in report["power_w"].items()},
    )
    assert schedule.violations(problem) == []
    assert report["cost"] == pytest.approx(schedule.cost(problem.tariff))
    assert report["cost"] <= report["unscheduled_cost"] and report["algorithm"] == algorithm
    assert report["slot_minutes"] == 15 and {r["name"] for r in report["appliances"]} == {
        a.name for a in problem.appliances
    }


def test_json_prices_with_ibr_and_a_household_in_json(tmp_path):
    prices = tmp_path / "prices.json"
    prices.write_text(
        json.dumps(
            {"price_per_kwh": [0.3] * 12 + [0.1] * 12, "ibr_thresholds_kwh": [1.0], "ibr_multipliers": [1.0, 2.0]}
        )
    )
    household = tmp_path / "household.json"
    household.write_text(
        json.dumps(
            {
                "appliances": [
                    {
                        "name": "washer",
                        "kind": "deferrable",
                        "power_w": 1500,
                        "duration_min": 120,
                        "window": ["08:00", "24:00"],
                        "comfort_margin_min": 0,
                    },
                    {"name": "ev", "kind": "regulatable", "power_w": 3000, "energy_wh": 6000, "window": [0, 1440]},
                ],
                "breaker": {"amps": 20},
            }
        )
    )
    out = tmp_path / "plan.json"
    done = schedule_cli("--household", household, "--prices", prices, "--algorithm", "pso", "--json", out)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["slot_minutes"] == 60 and min(map(int, report["power_w"]["washer"])) >= 12  # cheap half


BAD_HOUSEHOLDS = [
    ("appliances: []", "appliances"),
    ("appliances:\n  - {name: w, kind: washer, power_w: 1000, duration_min: 60, window: ['01:00', '03:00']}", "kind"),
    (
        "appliances:\n  - {name: w, kind: deferrable, power_w: -5, duration_min: 60, window: ['01:00', '03:00']}",
        "power_w",
    ),
    ("appliances:\n  - {name: w, kind: deferrable, power_w: 900, duration_min: 60, window: ['01:00']}", "window"),
    (
        "appliances:\n  - {name: w, kind: deferrable, power_w: 900, duration_min: 60, window: ['01:10', '03:00']}",
        r"window\[0\]",
    ),
    ("appliances:\n  - {name: w, kind: deferrable, power_w: 900, window: ['01:00', '03:00']}", "duration_min"),
    (
        "appliances:\n  - {name: w, kind: deferrable, power_w: 900, duration_min: 60, window: ['01:00', '03:00'], "
        "colour: red}",
        "colour",
    ),
    (
        "appliances:\n  - {name: w, kind: deferrable, power_w: 900, duration_min: 60, window: ['01:00', '03:00'], "
        "due: 'noon'}",
        "due",
    ),
    (
        "appliances:\n  - {name: w, kind: fixed, power_w: 900, duration_min: 60, window: ['01:00', '03:00']}\n"
        "breaker: {amps: 0}",
        "breaker.amps",
    ),
    (
        "appliances:\n  - {name: w, kind: fixed, power_w: 900, duration_min: 60, window: ['01:00', '03:00']}\n"
        "pv: {peak_w: 3000}",
        "pv",
    ),
    ("appliances: [", "YAML"),
]


@pytest.mark.parametrize("text, field", BAD_HOUSEHOLDS)
def test_bad_household_files_exit_2_naming_the_field(tmp_path, capsys, text, field):
    household = tmp_path / "household.yaml"
    household.write_text(text)
    code, stderr = schedule_in_process(capsys, "--household", household, "--prices", PRICES)
    assert code == 2 and "household.yaml" in stderr and re.search(field, stderr), stderr


@pytest.mark.parametrize(
    "text, name, field",
    [
        ("price\n0.1\nabc\n", "prices.csv", "price_per_kwh"),
        ("0.1\n" * 23, "prices.csv", "slot_minutes"),
        ('{"price_per_kwh": [0.1, 0.2], "currency": "EUR"}', "prices.json", "currency"),
        (
            json.dumps({"price_per_kwh": [0.1] * 24, "ibr_thresholds_kwh": [1.0], "ibr_multipliers": [2.0, 1.0]}),
            "prices.json",
            "ibr_multipliers",
        ),
        ("[0.1, ", "prices.json", "JSON"),
    ],
)
def test_bad_price_files_exit_2_naming_the_field(tmp_path, capsys, text, name, field):
    prices = tmp_path / name
    prices.write_text(text)
    code, stderr = schedule_in_process(capsys, "--household", HOUSEHOLD, "--prices", prices)
    assert code == 2 and name in stderr and field in stderr, stderr


def test_a_bad_file_exits_2_without_a_traceback_in_a_real_process(tmp_path):
    household = tmp_path / "household.yaml"
    household.write_text(BAD_HOUSEHOLDS[2][0])
    done = schedule_cli("--household", household, "--prices", PRICES)
    assert done.returncode == 2 and "Traceback" not in done.stderr and "power_w" in done.stderr, done.stderr


def test_missing_file_and_infeasible_household(tmp_path, capsys):
    code, stderr = schedule_in_process(capsys, "--household", tmp_path / "nope.yaml", "--prices", PRICES)
    assert code == 2 and "nope.yaml" in stderr
    household = tmp_path / "household.yaml"
    household.write_text(
        "appliances:\n  - {name: kettle, kind: fixed, power_w: 3000, duration_min: 15, "
        "window: ['07:00', '07:15']}\nbreaker: {amps: 10}\n"
    )
    code, stderr = schedule_in_process(capsys, "--household", household, "--prices", PRICES, "--algorithm", "pso")
    assert code == 1 and "kettle" in stderr
