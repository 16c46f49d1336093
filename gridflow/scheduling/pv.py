"""A PV system's clear-sky output per slot, from its site and orientation (pvlib).

Clear sky (Ineichen with the site's monthly Linke turbidity), the sun's position, the irradiance on the
tilted plane (isotropic sky), the cell temperature (Faiman, the given air temperature and 1 m/s wind),
PVWatts DC with -0.4 %/K, ``losses`` (wiring, soiling, mismatch), and PVWatts AC limited to the inverter's
rating. The result is what the panels make under a cloudless sky: ``correction`` (the home's own ratio of
measured to clear-sky output, e.g. from the exports its meter saw on recent days) scales it to what the
home can expect. A slot's value is the mean over 5-minute points within it.
"""

from __future__ import annotations

import numpy as np


def clear_sky_pv_w(site: dict, start_ms: int, slot_minutes: int, n_slots: int) -> np.ndarray:
    """AC power (W) of the PV system ``site`` (a home-energy record's ``pv_site``) per slot from ``start_ms``.

    ``site``: ``latitude``, ``longitude`` (degrees), ``kwp`` (DC peak power), optional ``tilt_deg``
    (default 35), ``azimuth_deg`` (default 180 = south), ``altitude_m`` (0), ``inverter_kw`` (``kwp``),
    ``losses`` (0.14), ``temp_air_c`` (20) and ``correction`` (1.0)."""
    import pandas as pd
    from pvlib import inverter, irradiance, location, pvsystem, temperature

    step = min(5, slot_minutes) if slot_minutes % min(5, slot_minutes) == 0 else 1
    per_slot = slot_minutes // step
    first = pd.Timestamp(start_ms, unit="ms", tz="UTC") + pd.Timedelta(minutes=step / 2)
    times = pd.date_range(first, periods=n_slots * per_slot, freq=pd.Timedelta(minutes=step))
    place = location.Location(
        float(site["latitude"]), float(site["longitude"]), altitude=float(site.get("altitude_m", 0))
    )
    sky = place.get_clearsky(times, model="ineichen")
    sun = place.get_solarposition(times)
    plane = irradiance.get_total_irradiance(
        float(site.get("tilt_deg", 35.0)),
        float(site.get("azimuth_deg", 180.0)),
        sun["apparent_zenith"],
        sun["azimuth"],
        sky["dni"],
        sky["ghi"],
        sky["dhi"],
    )["poa_global"].fillna(0.0)
    cell = temperature.faiman(plane, temp_air=float(site.get("temp_air_c", 20.0)), wind_speed=1.0)
    kwp = float(site["kwp"])
    dc = pvsystem.pvwatts_dc(plane, cell, pdc0=kwp * 1000.0, gamma_pdc=-0.004) * (1.0 - float(site.get("losses", 0.14)))
    rating_w = float(site.get("inverter_kw", kwp)) * 1000.0
    ac = inverter.pvwatts(dc, pdc0=rating_w / 0.96, eta_inv_nom=0.96)
    power = np.clip(np.asarray(ac, dtype=np.float64), 0.0, rating_w) * float(site.get("correction", 1.0))
    return power.reshape(n_slots, per_slot).mean(axis=1)
