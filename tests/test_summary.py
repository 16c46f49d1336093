import math

import pytest

from gridflow import summary


def test_hand_worked_window():
    acc = summary.new_accumulator()
    for power in [100.0, 300.0, 200.0]:
        summary.add(acc, power)
    result = summary.summary("h-1", 0, 60_000, acc)
    assert result["readings"] == 3
    assert result["mean_power_w"] == 200.0
    assert result["peak_power_w"] == 300.0 and result["min_power_w"] == 100.0
    assert result["energy_kwh"] == pytest.approx(200.0 / 60 / 1000)  # 200 W for one minute
    assert result["load_factor"] == pytest.approx(2 / 3)


def test_merge_equals_adding_everything():
    a, b, whole = summary.new_accumulator(), summary.new_accumulator(), summary.new_accumulator()
    for i, power in enumerate([5.0, -20.0, 7.5, 1000.0, 3.0]):
        summary.add(a if i % 2 else b, power)
        summary.add(whole, power)
    assert summary.merge(a, b) == whole
    assert summary.merge(summary.new_accumulator(), whole) == whole


def test_empty_window_is_an_error_and_export_has_no_load_factor():
    with pytest.raises(ValueError):
        summary.summary("h", 0, 1, summary.new_accumulator())
    acc = summary.add(summary.new_accumulator(), -500.0)
    assert summary.summary("h", 0, 1000, acc)["load_factor"] is None
    assert math.isclose(summary.summary("h", 0, 3_600_000, acc)["energy_kwh"], -0.5)
