"""The simulated households' own appliances (devices/appliances.py): what each owns, when it runs them,
and that the power added to the load shape is exactly the labelled runs."""

import numpy as np

from gridflow.devices.appliances import CATALOGUE, appliance_power, appliance_runs, owned_appliances
from gridflow.devices.load_shapes import LoadShapeLibrary, fleet_series
from gridflow.settings import load_settings

DAY_MS = 86_400_000
START_MS = 1_715_385_600_000  # 2024-05-11 00:00 UTC
SEED = 2024


def test_homes_own_different_appliances_in_the_catalogue_proportions():
    owned = [owned_appliances(h, SEED) for h in range(2000)]
    assert all(owned), "every home owns at least one appliance"
    assert len({tuple(a.kind for a in o) for o in owned[:50]}) >= 10, "homes differ in what they own"
    for k, kind in enumerate(CATALOGUE):
        share = sum(any(a.kind == kind.name for a in o) for o in owned) / len(owned)
        # binomial standard error at n=2000 is at most 0.011; the first kind also takes the homes that drew none
        assert abs(share - kind.ownership) < 0.05 + (0.05 if k == 0 else 0.0), (kind.name, share)
        for o in owned:
            for a in o:
                if a.kind == kind.name:
                    assert kind.power_w[0] <= a.power_w <= kind.power_w[1] + 5
                    assert kind.minutes[0] <= a.minutes <= kind.minutes[1]


def test_appliance_power_is_the_sum_of_the_labelled_runs_and_runs_keep_their_usual_hours():
    ts = np.arange(START_MS - 14 * DAY_MS, START_MS, 60_000)
    households = [0, 1, 2, 3, 7]
    power = appliance_power(households, ts, SEED)
    kinds = {k.name: k for k in CATALOGUE}
    for row, h in enumerate(households):
        # runs that started up to a day before the window can reach into it
        runs = appliance_runs(h, int(ts[0]) - DAY_MS, int(ts[-1]) + 1, SEED)
        expected = np.zeros(len(ts))
        for run in runs:
            expected[(ts >= run["start_ms"]) & (ts < run["end_ms"])] += run["power_w"]
            kind = kinds[run["kind"]]
            hour = (run["start_ms"] % DAY_MS) / 3_600_000
            assert kind.start_hours[0] <= hour <= kind.start_hours[1], run
            (own,) = [a for a in owned_appliances(h, SEED) if a.kind == run["kind"]]
            minutes = (run["end_ms"] - run["start_ms"]) / 60_000
            assert 0.9 * own.minutes - 1 <= minutes <= 1.1 * own.minutes + 1, run
        assert np.array_equal(power[row], expected), h
        assert len(runs) >= 5, "two weeks hold several runs"


def test_a_household_appliances_do_not_depend_on_the_window_or_the_other_households_asked_for():
    ts = np.arange(START_MS, START_MS + 3 * DAY_MS, 60_000)
    whole = appliance_power([4, 5, 6], ts, SEED)
    assert np.array_equal(appliance_power([5], ts[1000:3000], SEED)[0], whole[1, 1000:3000])


def test_the_simulated_load_is_the_load_shape_plus_the_appliances():
    library = LoadShapeLibrary.load(load_settings())
    args = (library, [0, 1, 2], START_MS, 8640, 10.0, SEED)
    plain = fleet_series(*args, noise_rel=0.0, noise_w=0.0)
    with_appliances = fleet_series(*args, noise_rel=0.0, noise_w=0.0, appliances=True)
    ts = START_MS + np.arange(8640) * 10_000
    assert np.allclose(with_appliances - plain, appliance_power([0, 1, 2], ts, SEED), atol=1e-9)
    assert np.array_equal(fleet_series(*args), fleet_series(*args, appliances=False)), "off by default"
