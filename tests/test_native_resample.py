import numpy as np
import pytest

from gridflow.native.reference import resample_reference
from gridflow.native.resample import resample


def test_hand_worked_case():
    out = resample([0, 10, 40], [0.0, 10.0, 40.0], start_ms=-5, step_ms=5, n_slots=11, max_gap_ms=10)
    expected = [np.nan, 0.0, 5.0, 10.0, np.nan, np.nan, np.nan, np.nan, np.nan, 40.0, np.nan]
    np.testing.assert_array_equal(out, expected)


def test_gap_exactly_max_gap_is_interpolated():
    out = resample([0, 30], [0.0, 3.0], 0, 10, 4, max_gap_ms=30)
    np.testing.assert_allclose(out, [0.0, 1.0, 2.0, 3.0])
    assert np.isnan(resample([0, 30], [0.0, 3.0], 0, 10, 4, max_gap_ms=29)[1:3]).all()


@pytest.mark.parametrize("seed", range(20))
def test_matches_the_numpy_reference_on_random_series(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 300))
    ts = np.unique(rng.integers(0, 100_000, size=n))
    values = rng.normal(500, 200, size=ts.size)
    args = (
        int(rng.integers(-5_000, 5_000)),
        int(rng.integers(1, 2_000)),
        int(rng.integers(0, 200)),
        int(rng.integers(0, 3_000)),
    )
    np.testing.assert_array_equal(resample(ts, values, *args), resample_reference(ts, values, *args))


def test_input_is_not_modified_and_bad_arguments_raise():
    ts, values = np.array([0, 10, 20]), np.array([1.0, 2.0, 3.0])
    resample(ts, values, 0, 5, 5, 10)
    np.testing.assert_array_equal(ts, [0, 10, 20])
    np.testing.assert_array_equal(values, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="strictly increasing"):
        resample([0, 0], [1.0, 2.0], 0, 1, 1, 1)
    with pytest.raises(ValueError, match="step_ms"):
        resample(ts, values, 0, 0, 1, 1)
    with pytest.raises(ValueError, match="n_slots"):
        resample(ts, values, 0, 1, -1, 1)
    with pytest.raises(ValueError, match="max_gap_ms"):
        resample(ts, values, 0, 1, 1, -1)
    with pytest.raises(ValueError, match="equal length"):
        resample(ts, values[:2], 0, 1, 1, 1)
    with pytest.raises(ValueError, match="finite"):
        resample(ts, [1.0, np.nan, 2.0], 0, 1, 1, 1)
