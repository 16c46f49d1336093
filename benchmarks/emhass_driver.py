"""Runs EMHASS's own day-ahead optimisation on households given as JSON; the EMHASS side of ``compare_emhass.py``.

This script runs inside a virtualenv of its own that has ``emhass`` installed (EMHASS needs numpy 2 and cvxpy,
which gridflow's environment cannot share), never inside gridflow's. It reads households on stdin, solves each
with ``emhass.optimization.Optimization.perform_optimization`` (the call ``perform_dayahead_forecast_optim``
makes, with the same arguments), cost function ``profit`` (maximise export revenue minus import cost) on HiGHS,
and writes one JSON object on stdout. Every log line (EMHASS's, cvxpy's, HiGHS's) goes to stderr: file
descriptor 1 is pointed at stderr for the whole run and the result is written to the original stdout at the end.

    /path/to/emhass-venv/bin/python benchmarks/emhass_driver.py < households.json > emhass.json

Configuration. EMHASS's own defaults (``emhass/data/config_defaults.json``) are loaded and categorised with
EMHASS's own ``utils.build_config`` / ``build_params`` / ``get_yaml_parse``, then these keys are overridden per
household (see ``_overrides``): ``optimization_time_step`` (minutes), ``delta_forecast_daily``, ``costfun``
"profit", ``set_use_battery``, ``number_of_batteries`` 1, ``battery_nominal_energy_capacity`` (Wh),
``battery_charge_power_max`` / ``battery_discharge_power_max`` (W, see below), ``battery_charge_efficiency``,
``battery_discharge_efficiency``, ``battery_minimum_state_of_charge``, ``battery_maximum_state_of_charge``,
``battery_target_state_of_charge`` (only a fallback; soc_init and soc_final are passed to the call),
``maximum_power_from_grid``, ``maximum_power_to_grid``, ``compute_curtailment`` true (PV may be curtailed),
``set_nocharge_from_grid`` false, ``set_nodischarge_to_grid`` false (EMHASS's default is true),
``set_total_pv_sell`` false, ``inverter_is_hybrid`` false (an AC-coupled battery), ``number_of_deferrable_loads``
0, ``weight_battery_charge`` / ``weight_battery_discharge`` 0, ``battery_stress_cost`` 0,
``battery_soc_final_reward_factor`` 0, ``set_battery_dynamic`` false, ``set_battery_first_priority`` false,
``capacity_cost_per_kw`` 0, ``lp_solver_mip_rel_gap`` (default 1e-7, gridflow's own gap, instead of EMHASS's 0.01:
see ``mip_rel_gap`` below), ``lp_solver_timeout`` and ``num_threads`` (EMHASS's defaults, 45 s and 0 = HiGHS's own
choice); ``set_use_pv`` true and the ``*_forecast_method`` keys "list" only say where the data come from (EMHASS's
forecaster, not used here, reads them). The solver is HiGHS: EMHASS picks it unless the environment variable
``LP_SOLVER`` names another, which this script removes.

EMHASS's battery model (``Optimization._add_battery_constraints`` and ``_build_results_dataframe``, 0.18.7).
``P_batt = p_sto_pos + p_sto_neg`` is the battery's power at its AC terminals in the home's power balance,
``> 0`` discharging (``p_sto_pos >= 0``), ``< 0`` charging (``p_sto_neg <= 0``); a binary per slot makes the two
exclusive. Stored energy (Wh) after slot t, with ``h`` the slot in hours::

    E[t] = soc_init * C - h * sum_{s <= t} (p_sto_pos[s] / eta_discharge + p_sto_neg[s] * eta_charge)

i.e. charging ``c = -p_sto_neg`` W stores ``eta_charge * c`` (efficiency multiplies), discharging ``d = p_sto_pos``
W draws ``d / eta_discharge`` from the cells (efficiency divides): the same recursion as gridflow's
``soc[t+1] = soc[t] + eta_c * charge * h - discharge * h / eta_d``. ``SOC_opt[t] = E[t] / C`` is the SoC
fraction at the END of slot t (after its flows), so the ``soc`` output has one value per slot and the SoC at
the start is ``soc_initial``. ``soc_min * C <= E[t] <= soc_max * C`` for every t.

EMHASS's power limits are not symmetric. Its variable bounds are ``p_sto_pos <= battery_discharge_power_max`` and
``-p_sto_neg <= battery_charge_power_max``, and its exclusivity constraints add ``p_sto_pos <= eta_discharge *
battery_discharge_power_max`` and ``-p_sto_neg <= battery_charge_power_max / eta_charge``; so AC charging is
bounded by ``battery_charge_power_max`` itself and AC discharging by ``eta_discharge * battery_discharge_power_max``
(a cell-side limit). The households' ``max_charge_kw`` / ``max_discharge_kw`` are limits at the AC terminals
(gridflow's :class:`Battery`), so this script passes ``battery_charge_power_max = max_charge_kw`` and
``battery_discharge_power_max = max_discharge_kw / eta_discharge`` (in W): EMHASS's AC powers are then bounded by
exactly the household's limits.

EMHASS's end-of-horizon SoC is a soft equality: ``E[n-1] = soc_final * C`` up to two non-negative slacks, both
priced at 100 times the horizon's highest import price per kWh (with ``battery_soc_final_reward_factor`` 0 an
excess is penalised like a shortfall). It holds exactly whenever some plan can meet it; gridflow's soc_final is
a lower bound (``>=``), which EMHASS cannot express.

Grid: ``P_grid_pos >= 0`` import, ``P_grid_neg <= 0`` export, exclusive through a binary per slot, bounded by
``maximum_power_from_grid`` / ``maximum_power_to_grid``. Balance per slot (``compute_curtailment`` on, no
deferrable loads): ``P_PV - P_PV_curtailment - P_Load + P_grid_pos + P_grid_neg + P_batt = 0``. Objective
(profit): maximise ``-0.001 * h * sum(unit_load_cost * P_grid_pos + unit_prod_price * P_grid_neg)`` (prices per
kWh, either may be negative) plus the SoC-target penalty and a 1e-7 per-W curtailment-timing tie-break;
``cost_profit`` is that first term per slot (positive = income).

Input (stdin)::

    {"slot_minutes": 15, "time_zone": "Europe/Amsterdam", "start": "2024-05-01T12:00:00+02:00",
     "mip_rel_gap": 1e-7,                                   (optional: lp_solver_mip_rel_gap; 0.01 = EMHASS's default)
     "households": [{"id": "h0", "load_w": [n], "pv_w": [n], "import_price": [n], "export_price": [n],
                     "import_max_w": 17250, "export_max_w": 17250,
                     "battery": {"capacity_kwh": 10, "max_charge_kw": 5, "max_discharge_kw": 5,
                                 "eta_charge": 0.95, "eta_discharge": 0.95, "soc_min": 0.1, "soc_max": 1.0,
                                 "soc_initial": 0.5, "soc_final": 0.5}}]}        (battery may be null)

Output (stdout)::

    {"emhass_version": "0.18.7", "settings": {...},
     "households": [{"id": "h0", "status": "Optimal", "solve_time_s": s, "stage_times_s": {...}, "highs_time_s": s,
                     "import_w": [n], "export_w": [n], "pv_used_w": [n], "charge_w": [n], "discharge_w": [n],
                     "soc": [n], "emhass_cost": EUR}]}

``status`` is EMHASS's ``optim_status`` (its arrays are empty when EMHASS returns no plan; an unreachable soc_final
still says "Optimal", with ``soc[-1]`` short of it). ``solve_time_s`` is the wall time of ``perform_optimization``
alone; for a new ``Optimization`` that includes building the cvxpy problem and cvxpy's compilation of it for HiGHS
on its first solve (``stage_times_s`` splits it as EMHASS measures it: ``build``, ``solve``, ``extract``;
``highs_time_s`` is HiGHS's own time as cvxpy reports it). A new ``Optimization`` is made per household, because
capacity, efficiencies and SoC bounds are constants of EMHASS's problem (its ``OptimizationCache`` would rebuild it
too). ``import_w = P_grid_pos``, ``export_w = -P_grid_neg``, ``pv_used_w = P_PV - P_PV_curtailment``, ``discharge_w
= max(P_batt, 0)``, ``charge_w = max(-P_batt, 0)``, ``soc = SOC_opt`` (empty without a battery), ``emhass_cost =
-sum(cost_profit)`` (import cost minus export revenue, EUR).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import pathlib
import sys
import tempfile
import time
from importlib.metadata import version

import numpy as np
import pandas as pd
from emhass import utils
from emhass.optimization import Optimization

DEFAULT_MIP_REL_GAP = 1e-7  # gridflow's solve_home gap; EMHASS's config default is 0.01


def _emhass_conf(data_path: pathlib.Path) -> dict:
    """The paths EMHASS's config helpers and ``Optimization`` read."""
    root = pathlib.Path(utils.__file__).resolve().parent
    return {
        "root_path": root,
        "data_path": data_path,
        "defaults_path": root / "data" / "config_defaults.json",
        "associations_path": root / "data" / "associations.csv",
    }


def _overrides(request: dict, home: dict, mip_rel_gap: float) -> dict:
    """The config.json keys this household sets on top of EMHASS's defaults (see the module docstring)."""
    n = len(home["load_w"])
    slot_minutes = request["slot_minutes"]
    conf = {
        "costfun": "profit",
        "optimization_time_step": slot_minutes,
        "delta_forecast_daily": n * slot_minutes / 1440,
        "set_use_pv": True,
        "weather_forecast_method": "list",
        "load_forecast_method": "list",
        "load_cost_forecast_method": "list",
        "production_price_forecast_method": "list",
        "set_total_pv_sell": False,
        "inverter_is_hybrid": False,
        "compute_curtailment": True,
        "maximum_power_from_grid": _finite(home, "import_max_w"),
        "maximum_power_to_grid": _finite(home, "export_max_w"),
        "number_of_deferrable_loads": 0,
        "nominal_power_of_deferrable_loads": [],
        "operating_hours_of_each_deferrable_load": [],
        "minimum_power_of_deferrable_loads": [],
        "cost_forecast_per_deferrable_load": [],
        "is_electric_load": [],
        "set_nocharge_from_grid": False,
        "set_nodischarge_to_grid": False,
        "set_battery_first_priority": False,
        "set_battery_dynamic": False,
        "weight_battery_charge": 0.0,
        "weight_battery_discharge": 0.0,
        "capacity_cost_per_kw": 0.0,
        "lp_solver_mip_rel_gap": mip_rel_gap,
    }
    battery = home.get("battery")
    conf["set_use_battery"] = battery is not None
    if battery is not None:
        conf.update(
            {
                "number_of_batteries": 1,
                "battery_nominal_energy_capacity": 1000.0 * battery["capacity_kwh"],
                # EMHASS bounds AC charge power by this value and AC discharge power by eta_discharge times
                # its value (module docstring): these make both AC bounds the household's AC limits.
                "battery_charge_power_max": 1000.0 * battery["max_charge_kw"],
                "battery_discharge_power_max": 1000.0 * battery["max_discharge_kw"] / battery["eta_discharge"],
                "battery_charge_efficiency": battery["eta_charge"],
                "battery_discharge_efficiency": battery["eta_discharge"],
                "battery_minimum_state_of_charge": battery["soc_min"],
                "battery_maximum_state_of_charge": battery["soc_max"],
                "battery_target_state_of_charge": battery["soc_final"],
                "battery_stress_cost": 0.0,
                "battery_soc_deficit_cost": 0.0,
                "battery_soc_surplus_cost": 0.0,
                "battery_soc_final_reward_factor": 0.0,
                "battery_charge_power_derating": [],
            }
        )
    return conf


def _finite(home: dict, key: str) -> float:
    value = float(home[key])
    if not math.isfinite(value) or value < 0:
        raise ValueError(
            f"household {home.get('id')}: {key} must be a finite power >= 0 (EMHASS has no unbounded grid)"
        )
    return value


def _configure(emhass_conf: dict, overrides: dict, time_zone: str, logger: logging.Logger) -> tuple[dict, dict, dict]:
    """EMHASS's retrieve_hass_conf, optim_conf and plant_conf: its defaults with ``overrides``, through its helpers."""
    config = asyncio.run(utils.build_config(emhass_conf, logger, str(emhass_conf["defaults_path"])))
    if not config:
        raise RuntimeError("EMHASS could not read its config_defaults.json")
    config.update(overrides)
    secrets = {"time_zone": time_zone, "Latitude": 52.37, "Longitude": 4.89, "Altitude": 0.0}
    params = asyncio.run(utils.build_params(emhass_conf, secrets, config, logger))
    if not params:
        raise RuntimeError("EMHASS's build_params failed")
    return utils.get_yaml_parse(params, logger)


def _solve(request: dict, home: dict, emhass_conf: dict, mip_rel_gap: float, logger: logging.Logger) -> dict:
    """One household through ``Optimization.perform_optimization``; its flows in the output's terms."""
    retrieve_hass_conf, optim_conf, plant_conf = _configure(
        emhass_conf, _overrides(request, home, mip_rel_gap), request["time_zone"], logger
    )
    n = len(home["load_w"])
    series = {k: np.asarray(home[k], dtype=float) for k in ("load_w", "pv_w", "import_price", "export_price")}
    if any(v.shape != (n,) for v in series.values()):
        raise ValueError(f"household {home.get('id')}: load_w, pv_w and the prices need {n} values each")
    index = pd.date_range(
        pd.Timestamp(request["start"]).tz_convert(retrieve_hass_conf["time_zone"]),
        periods=n,
        freq=retrieve_hass_conf["optimization_time_step"],
    )
    # The frame perform_dayahead_forecast_optim receives: forecasts, unit_load_cost and unit_prod_price (EUR/kWh).
    data_opt = pd.DataFrame(
        {
            "p_pv_forecast": series["pv_w"],
            "p_load_forecast": series["load_w"],
            "unit_load_cost": series["import_price"],
            "unit_prod_price": series["export_price"],
        },
        index=index,
    )
    opt = Optimization(
        retrieve_hass_conf,
        optim_conf,
        plant_conf,
        "unit_load_cost",
        "unit_prod_price",
        optim_conf.get("costfun", "profit"),
        emhass_conf,
        logger,
        num_timesteps=n,
    )
    battery = home.get("battery")
    stage_times: dict[str, float] = {}
    started = time.perf_counter()
    res = opt.perform_optimization(
        data_opt,
        series["pv_w"],
        series["load_w"],
        data_opt["unit_load_cost"].values,
        data_opt["unit_prod_price"].values,
        soc_init=None if battery is None else float(battery["soc_initial"]),
        soc_final=None if battery is None else float(battery["soc_final"]),
        stage_times=stage_times,
    )
    elapsed = time.perf_counter() - started
    row = {
        "id": home.get("id"),
        "status": str(opt.optim_status),
        "solve_time_s": elapsed,
        "stage_times_s": {k.removeprefix("optim_solve."): v for k, v in stage_times.items()},
        "highs_time_s": getattr(getattr(opt.prob, "solver_stats", None), "solve_time", None),
    }
    if "P_grid_pos" not in res.columns:  # EMHASS found no plan: its frame has only optim_status
        return row | {k: [] for k in ("import_w", "export_w", "pv_used_w", "charge_w", "discharge_w", "soc")}
    p_batt = res["P_batt"].to_numpy() if "P_batt" in res else np.zeros(n)
    curtailed = res["P_PV_curtailment"].to_numpy() if "P_PV_curtailment" in res else np.zeros(n)
    soc = res["SOC_opt"].to_numpy() if "SOC_opt" in res else np.zeros(0)  # no battery: no SoC
    flows = {
        "import_w": res["P_grid_pos"].to_numpy(),  # >= 0
        "export_w": -res["P_grid_neg"].to_numpy(),  # P_grid_neg <= 0
        "pv_used_w": res["P_PV"].to_numpy() - curtailed,
        "charge_w": np.maximum(-p_batt, 0.0),  # P_batt < 0: charging (AC side)
        "discharge_w": np.maximum(p_batt, 0.0),  # P_batt > 0: discharging (AC side)
        "soc": soc,  # SoC fraction at the end of each slot
    }
    row.update({k: [float(x) for x in v] for k, v in flows.items()})
    row["emhass_cost"] = -float(res["cost_profit"].sum())  # cost_profit is profit per slot
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--log-level", default=os.environ.get("EMHASS_DRIVER_LOG", "WARNING"), help="on stderr")
    args = parser.parse_args()
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # anything printed by EMHASS, cvxpy or HiGHS goes to stderr
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logger = logging.getLogger("emhass_driver")
    logger.addHandler(handler)
    logger.setLevel(args.log_level.upper())
    logger.propagate = False
    os.environ.pop("LP_SOLVER", None)  # EMHASS then uses HiGHS

    request = json.load(sys.stdin)
    mip_rel_gap = float(request.get("mip_rel_gap", DEFAULT_MIP_REL_GAP))
    rows = []
    with tempfile.TemporaryDirectory(prefix="emhass-driver-") as data_path:
        emhass_conf = _emhass_conf(pathlib.Path(data_path))
        for home in request["households"]:
            rows.append(_solve(request, home, emhass_conf, mip_rel_gap, logger))
            logger.info("%s: %s in %.3f s", rows[-1]["id"], rows[-1]["status"], rows[-1]["solve_time_s"])
        defaults = asyncio.run(utils.build_config(emhass_conf, logger, str(emhass_conf["defaults_path"])))
    settings = {
        "costfun": "profit",
        "solver": "HiGHS",
        "lp_solver_mip_rel_gap": mip_rel_gap,
        "lp_solver_timeout": defaults["lp_solver_timeout"],
        "num_threads": defaults["num_threads"],
    }
    result = {"emhass_version": version("emhass"), "settings": settings, "households": rows}
    json.dump(result, out)
    out.write("\n")
    out.close()


if __name__ == "__main__":
    main()
