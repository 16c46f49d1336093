"""Labelled fault injection: each kind changes exactly its window, plans are deterministic and at the asked rate."""

import json

import numpy as np
import pytest

from gridflow.devices.faults import (
    FAULT_KINDS,
    Fault,
    apply_faults,
    fault_mask,
    faults_by_household,
    plan_faults,
    read_ground_truth,
    write_ground_truth,
)

T0_MS = 1_704_067_200_000  # 2024-01-01 00:00 UTC
STEP_MS = 10_000
DAY_MS = 86_400_000


@pytest.fixture
def readings():
    ts_ms = T0_MS + np.arange(8_640) * STEP_MS  # one day at 10 s
    power_w = np.random.default_rng(0).uniform(200.0, 3_000.0, len(ts_ms))
    return ts_ms, power_w


def window(first: int, last_exclusive: int) -> tuple[int, int]:
    return T0_MS + first * STEP_MS, T0_MS + last_exclusive * STEP_MS


def only_changed(out, power_w, indices):
    changed = np.flatnonzero(out != power_w)
    return np.array_equal(changed, np.asarray(indices))


def test_spike_multiplies_one_reading(readings):
    ts_ms, power_w = readings
    out, keep = apply_faults(ts_ms, power_w, [Fault("h1", "spike", *window(100, 101), {"factor": 5.0})])
    assert out[100] == 5.0 * power_w[100] and only_changed(out, power_w, [100]) and keep.all()
    # a window longer than one interval still spikes only its first reading
    out, _ = apply_faults(ts_ms, power_w, [Fault("h1", "spike", T0_MS + 995_000, T0_MS + 1_060_000, {"factor": 7.5})])
    assert out[100] == 7.5 * power_w[100] and only_changed(out, power_w, [100])


def test_stuck_repeats_the_last_reported_value(readings):
    ts_ms, power_w = readings
    out, keep = apply_faults(ts_ms, power_w, [Fault("h1", "stuck", *window(200, 260), {})])  # 10 min
    assert np.all(out[200:260] == power_w[199]) and only_changed(out, power_w, range(200, 260)) and keep.all()
    out, _ = apply_faults(ts_ms, power_w, [Fault("h1", "stuck", *window(0, 90), {})])  # no reading before
    assert np.all(out[:90] == power_w[0]) and only_changed(out, power_w, range(1, 90))


def test_dropout_removes_readings(readings):
    ts_ms, power_w = readings
    out, keep = apply_faults(ts_ms, power_w, [Fault("h1", "dropout", *window(300, 330), {})])  # 5 min
    assert np.array_equal(np.flatnonzero(~keep), np.arange(300, 330))
    assert np.isnan(out[300:330]).all() and np.array_equal(out[keep], power_w[keep])


def test_drift_ramps_to_a_fraction_of_mean_load(readings):
    ts_ms, power_w = readings
    fault = Fault("h1", "drift", *window(400, 760), {"fraction": 0.3})  # 1 h
    out, keep = apply_faults(ts_ms, power_w, [fault])
    expected = power_w[400:760] + 0.3 * power_w.mean() * np.arange(360) / 360
    np.testing.assert_allclose(out[400:760], expected, rtol=1e-12)
    assert only_changed(out, power_w, range(401, 760)) and keep.all()  # the ramp starts at 0
    out, _ = apply_faults(ts_ms, power_w, [fault], mean_power_w=1_000.0)
    assert out[759] - power_w[759] == pytest.approx(300.0 * 359 / 360)


def test_appliance_left_on_adds_constant_power(readings):
    ts_ms, power_w = readings
    out, keep = apply_faults(
        ts_ms, power_w, [Fault("h1", "appliance_left_on", *window(1_000, 1_720), {"extra_w": 2_000.0})]
    )  # 2 h
    np.testing.assert_allclose(out[1_000:1_720] - power_w[1_000:1_720], 2_000.0)
    assert only_changed(out, power_w, range(1_000, 1_720)) and keep.all()


def test_faults_combine_and_leave_the_input_alone(readings):
    ts_ms, power_w = readings
    original = power_w.copy()
    faults = [
        Fault(1, "spike", *window(10, 11), {"factor": 4.0}),
        Fault(1, "dropout", *window(50, 80), {}),
        Fault(1, "appliance_left_on", *window(100, 200), {"extra_w": 1500.0}),
    ]
    out, keep = apply_faults(ts_ms, power_w, faults)
    assert np.array_equal(power_w, original)
    mask = fault_mask(ts_ms, faults)
    assert np.array_equal(np.flatnonzero(mask), np.r_[10, 50:80, 100:200])
    assert np.array_equal((out != power_w) | ~keep, mask)
    with pytest.raises(ValueError, match="unknown fault kind"):
        apply_faults(ts_ms, power_w, [Fault(1, "gremlin", *window(1, 2), {})])


def test_plan_is_deterministic_per_seed_and_household():
    households = [f"hh-{i:04d}" for i in range(200)]
    plan = plan_faults(households, T0_MS, T0_MS + 7 * DAY_MS, 0.5, seed=3)
    assert plan == plan_faults(households, T0_MS, T0_MS + 7 * DAY_MS, 0.5, seed=3)
    assert plan != plan_faults(households, T0_MS, T0_MS + 7 * DAY_MS, 0.5, seed=4)
    # a household's faults do not depend on the rest of the fleet
    subset = plan_faults(households[50:60], T0_MS, T0_MS + 7 * DAY_MS, 0.5, seed=3)
    assert subset == [fault for fault in plan if fault.household_id in households[50:60]]


def test_plan_rate_windows_and_parameters():
    households = np.arange(2_000)
    plan = plan_faults(households, T0_MS, T0_MS + DAY_MS, 1.0, seed=1)
    assert len(plan) == pytest.approx(2_000, rel=0.08)
    assert all(type(fault.household_id) is int for fault in plan)
    assert {fault.kind for fault in plan} == set(FAULT_KINDS)
    durations_s = {
        "spike": (10, 10),
        "stuck": (600, 3_600),
        "dropout": (300, 3_600),
        "drift": (3_600, 21_600),
        "appliance_left_on": (7_200, 28_800),
    }
    for fault in plan:
        assert T0_MS <= fault.start_ms < T0_MS + DAY_MS and (fault.start_ms - T0_MS) % STEP_MS == 0
        low, high = durations_s[fault.kind]
        assert low - 5 <= (fault.end_ms - fault.start_ms) / 1000 <= high + 5
    params = {kind: [f.params for f in plan if f.kind == kind] for kind in FAULT_KINDS}
    assert all(4 <= p["factor"] <= 10 for p in params["spike"])
    assert all(0.2 <= p["fraction"] <= 0.5 for p in params["drift"])
    assert all(1_500 <= p["extra_w"] <= 2_500 for p in params["appliance_left_on"])
    assert all(p == {} for p in params["stuck"] + params["dropout"])
    for faults in faults_by_household(plan).values():  # one fault at a time per household
        assert all(a.end_ms <= b.start_ms for a, b in zip(faults, faults[1:]))
    only = plan_faults(households[:300], T0_MS, T0_MS + 2 * DAY_MS, 2.0, kinds=["spike", "dropout"], seed=1)
    assert {fault.kind for fault in only} == {"spike", "dropout"}
    assert len(only) == pytest.approx(300 * 2 * 2.0, rel=0.1)
    assert plan_faults(households, T0_MS, T0_MS + DAY_MS, 0.0, seed=1) == []
    with pytest.raises(ValueError, match="unknown fault kinds"):
        plan_faults(households, T0_MS, T0_MS + DAY_MS, 1.0, kinds=["spike", "meteor"])


def test_planned_faults_touch_only_their_windows(readings):
    ts_ms, power_w = readings
    plan = plan_faults(range(50), T0_MS, T0_MS + DAY_MS, 3.0, seed=8)
    for household, faults in faults_by_household(plan).items():
        out, keep = apply_faults(ts_ms, power_w, faults)
        assert not ((out != power_w) & keep & ~fault_mask(ts_ms, faults)).any()
        dropped = sum(
            int(np.count_nonzero((ts_ms >= f.start_ms) & (ts_ms < f.end_ms))) for f in faults if f.kind == "dropout"
        )
        assert np.count_nonzero(~keep) == dropped


def test_ground_truth_round_trips_as_json_lines(tmp_path):
    plan = plan_faults(["a", "b", 3], T0_MS, T0_MS + 3 * DAY_MS, 2.0, seed=2)
    assert plan
    path = tmp_path / "faults.jsonl"
    write_ground_truth(path, plan)
    lines = path.read_text().splitlines()
    assert len(lines) == len(plan)
    assert set(json.loads(lines[0])) == {"household_id", "kind", "start_ms", "end_ms", "params"}
    assert read_ground_truth(path) == plan
