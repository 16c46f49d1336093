"""Clear-sky PV of a home's panels (pvlib): geometry and yields against published clear-sky figures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gridflow.scheduling.pv import clear_sky_pv_w

AMSTERDAM = {"latitude": 52.37, "longitude": 4.90, "kwp": 5.0, "tilt_deg": 35.0, "azimuth_deg": 180.0}


def day_ms(day: str) -> int:
    return int(pd.Timestamp(day, tz="UTC").value // 1_000_000)


def test_a_south_facing_system_peaks_at_solar_noon_and_yields_what_a_clear_day_gives():
    june = clear_sky_pv_w(AMSTERDAM, day_ms("2026-06-21"), 15, 96)
    december = clear_sky_pv_w(AMSTERDAM, day_ms("2026-12-21"), 15, 96)
    # solar noon at 4.9 deg E is 11:40 UTC in June (equation of time -1.7 min), 11:38 in December
    assert 11.0 <= june.argmax() / 4 <= 12.25 and 11.0 <= december.argmax() / 4 <= 12.25
    assert june[:8].max() == 0 and june[-4:].max() == 0, "nothing before 02:00 or after 23:00 UTC"
    # clear-sky yields at 52 deg N for 35 deg south: about 6-7 kWh/kWp in June, 1.5-2 in December
    assert 5.0 <= june.sum() / 4 / 1000 / 5.0 <= 7.5
    assert 1.0 <= december.sum() / 4 / 1000 / 5.0 <= 2.6
    assert june.max() <= 5000.0 * 0.86 + 1e-6, "never above the panels' rating after losses"


def test_orientation_correction_and_slot_length_behave_as_physics_says():
    june = day_ms("2026-06-21")
    east = clear_sky_pv_w({**AMSTERDAM, "azimuth_deg": 90.0}, june, 60, 24)
    west = clear_sky_pv_w({**AMSTERDAM, "azimuth_deg": 270.0}, june, 60, 24)
    assert east.argmax() < 11 < west.argmax()
    half = clear_sky_pv_w({**AMSTERDAM, "correction": 0.5}, june, 60, 24)
    assert half == pytest.approx(clear_sky_pv_w(AMSTERDAM, june, 60, 24) / 2)
    # the hourly values are the means of the 15-minute ones
    quarter = clear_sky_pv_w(AMSTERDAM, june, 15, 96)
    assert clear_sky_pv_w(AMSTERDAM, june, 60, 24) == pytest.approx(quarter.reshape(24, 4).mean(axis=1), rel=1e-9)
    small_inverter = clear_sky_pv_w({**AMSTERDAM, "inverter_kw": 2.5}, june, 15, 96)
    assert small_inverter.max() == pytest.approx(2500.0) and np.all(small_inverter <= 2500.0 + 1e-9)
