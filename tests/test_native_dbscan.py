"""The Cython DBSCAN (grid for 1-3 dimensions, KD-tree for 4-7, tiled BLAS products from 8 on) against
scikit-learn's DBSCAN and the brute-force numpy reference: same labels, same numbering, same core points."""

import numpy as np
import pytest
from sklearn.cluster import DBSCAN

from gridflow.native._dbscan import dbscan_brute, dbscan_grid, dbscan_kdtree
from gridflow.native.dbscan import dbscan
from gridflow.native.reference import dbscan_reference


def sklearn_labels(X, eps, min_samples):
    X = np.asarray(X, dtype=np.float64)
    if X.shape[0] == 0:
        return np.empty(0, dtype=np.int64), np.zeros(0, dtype=bool)
    fitted = DBSCAN(eps=eps, min_samples=min_samples).fit(X)
    core = np.zeros(X.shape[0], dtype=bool)
    core[fitted.core_sample_indices_] = True
    return fitted.labels_, core


def assert_same_as_sklearn(X, eps, min_samples):
    labels, core = dbscan(X, eps, min_samples, return_core_mask=True)
    expected_labels, expected_core = sklearn_labels(X, eps, min_samples)
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(core, expected_core)
    np.testing.assert_array_equal(labels, expected_labels)
    return labels


def lattice_data(rng, n, d, side):
    """Integer points (exact squared distances) with many duplicates and exact-eps pairs."""
    return rng.integers(0, side, size=(n, d)).astype(np.float64)


def blob_data(rng, n, d):
    k = int(rng.integers(1, 5))
    centres = rng.uniform(-10, 10, size=(k, d))
    which = rng.integers(0, k, size=n)
    X = centres[which] + rng.normal(size=(n, d)) * rng.uniform(0.3, 1.5, size=k)[which, None]
    n_noise = int(rng.integers(0, n // 5 + 1))
    X[:n_noise] = rng.uniform(-15, 15, size=(n_noise, d))
    return X[rng.permutation(n)]


# --- hand-worked cases ------------------------------------------------------------------------


def test_line_with_one_core_point():
    labels, core = dbscan([[0.0], [1.0], [2.0], [4.0]], eps=1.0, min_samples=3, return_core_mask=True)
    np.testing.assert_array_equal(labels, [0, 0, 0, -1])
    np.testing.assert_array_equal(core, [False, True, False, False])


@pytest.mark.parametrize(
    "order, expected",
    [
        # a border point (x = 1) within eps of a core point of each cluster takes the first cluster,
        # and clusters are numbered by their lowest-index core point
        ([-1, -1, 0, 1, 2, 3, 3], [0, 0, 0, 0, 1, 1, 1]),
        ([3, 3, 2, 1, 0, -1, -1], [0, 0, 0, 0, 1, 1, 1]),
        ([1, 3, 3, 2, 0, -1, -1], [0, 0, 0, 0, 1, 1, 1]),
        # numbered by the lowest-index core point (x = 2 at index 3), not the lowest-index point
        ([-1, 1, 3, 2, 3, 0, -1], [1, 0, 0, 0, 0, 1, 1]),
    ],
)
def test_border_point_goes_to_the_first_cluster(order, expected):
    X = np.array(order, dtype=float)[:, None]
    labels, core = dbscan(X, eps=1.0, min_samples=4, return_core_mask=True)
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_array_equal(core, np.isin(X[:, 0], [0, 2]))
    assert_same_as_sklearn(X, 1.0, 4)


def test_distance_exactly_eps_is_a_neighbour():
    # (3, 4) and (1, 2, 2): integer coordinates at distance exactly 5 and 3
    X = np.array([[0, 0], [3, 4], [6, 8], [9, 12]], dtype=float)
    np.testing.assert_array_equal(dbscan(X, eps=5.0, min_samples=3), [0, 0, 0, 0])
    np.testing.assert_array_equal(dbscan(X, eps=np.nextafter(5.0, 0), min_samples=2), [-1, -1, -1, -1])
    Y = np.array([[0, 0, 0], [1, 2, 2], [2, 4, 4], [10, 10, 10]], dtype=float)
    np.testing.assert_array_equal(dbscan(Y, eps=3.0, min_samples=2), [0, 0, 0, -1])
    np.testing.assert_array_equal(dbscan(Y, eps=np.nextafter(3.0, 0), min_samples=2), [-1, -1, -1, -1])
    for data, eps in ((X, 5.0), (Y, 3.0)):
        assert_same_as_sklearn(data, eps, 2)


@pytest.mark.parametrize("d", range(1, 25))
def test_exact_eps_chains_in_many_dimensions(d):
    # a chain of points one step of length exactly 7 = |(2, 3, 6)| apart, then a gap of 8
    step = np.zeros(d)
    step[:3] = [2, 3, 6][:d] if d >= 3 else [7, 0][:d]
    X = np.vstack([np.arange(6)[:, None] * step, 5 * step + np.eye(d)[0] * 8 + np.arange(3)[:, None] * step])
    labels = assert_same_as_sklearn(X, 7.0, 2)
    np.testing.assert_array_equal(labels, [0] * 6 + [1] * 3)
    assert_same_as_sklearn(X, np.nextafter(7.0, 0), 2)
    assert_same_as_sklearn(X, 8.0, 2)


def test_duplicates_single_cluster_all_noise_and_min_samples_one():
    same = np.ones((10, 3))
    np.testing.assert_array_equal(dbscan(same, 0.1, 10), np.zeros(10))
    np.testing.assert_array_equal(dbscan(same, 0.1, 11), -np.ones(10))
    X = np.array([[0.0, 0.0], [0.0, 0.5], [10.0, 10.0], [30.0, 0.0]])
    np.testing.assert_array_equal(dbscan(X, 1.0, 1), [0, 0, 1, 2])  # every point is core
    np.testing.assert_array_equal(dbscan(X, 100.0, 4), [0, 0, 0, 0])
    np.testing.assert_array_equal(dbscan(X, 1.0, 5), [-1, -1, -1, -1])
    labels, core = dbscan(X, 1.0, 1, return_core_mask=True)
    assert core.dtype == bool and core.all()


def test_empty_and_single_point():
    assert dbscan(np.empty((0, 4)), 1.0, 3).shape == (0,)
    labels, core = dbscan(np.empty((0, 2)), 1.0, 1, return_core_mask=True)
    assert labels.dtype == np.int64 and labels.shape == core.shape == (0,)
    np.testing.assert_array_equal(dbscan([[1.0, 2.0]], 1.0, 1), [0])
    np.testing.assert_array_equal(dbscan([[1.0, 2.0]], 1.0, 2), [-1])


# --- randomized against scikit-learn and the reference -----------------------------------------


@pytest.mark.parametrize("d", range(1, 25))
def test_matches_sklearn_on_random_lattices(d):
    rng = np.random.default_rng(1000 + d)
    for _ in range(3):
        n = int(rng.integers(1, 400))
        side = int(rng.integers(2, 8))
        X = lattice_data(rng, n, d, side)
        # eps = sqrt(k): many pairs at exactly eps
        eps = float(np.sqrt(rng.integers(1, 3 * d + 2)))
        assert_same_as_sklearn(X, eps, int(rng.integers(1, 12)))


@pytest.mark.parametrize("d", range(1, 25))
def test_matches_sklearn_on_random_blobs(d):
    rng = np.random.default_rng(2000 + d)
    for _ in range(3):
        n = int(rng.integers(50, 600))
        X = blob_data(rng, n, d)
        eps = float(rng.uniform(0.3, 1.5) * np.sqrt(d))
        assert_same_as_sklearn(X, eps, int(rng.integers(1, 15)))


@pytest.mark.parametrize("seed", range(12))
def test_matches_the_reference(seed):
    rng = np.random.default_rng(seed)
    d = int(rng.integers(1, 25))
    n = int(rng.integers(0, 300))
    X = lattice_data(rng, n, d, 4) if seed % 2 else blob_data(rng, max(n, 1), d)
    eps = float(np.sqrt(rng.integers(1, 2 * d + 2))) if seed % 2 else float(rng.uniform(0.3, 1.5) * np.sqrt(d))
    min_samples = int(rng.integers(1, 10))
    labels, core = dbscan(X, eps, min_samples, return_core_mask=True)
    ref_labels, ref_core = dbscan_reference(X, eps, min_samples, return_core_mask=True)
    np.testing.assert_array_equal(labels, ref_labels)
    np.testing.assert_array_equal(core, ref_core)


@pytest.mark.parametrize("d", [1, 2, 3, 5, 8, 12, 24])
def test_both_indexes_and_every_leaf_size_agree(d):
    """The grid (1-3 dimensions), the KD-tree and the tiled products whatever their leaf size (tiny
    leaves make empty nodes, big ones a single leaf) give scikit-learn's labels."""
    rng = np.random.default_rng(d)
    for trial in range(4):
        n = int(rng.integers(1, 500))
        X = lattice_data(rng, n, d, 6) if trial % 2 else blob_data(rng, n, d)
        eps = float(np.sqrt(rng.integers(1, d + 3))) if trial % 2 else float(rng.uniform(0.2, 1.5) * np.sqrt(d))
        ms = int(rng.integers(1, 10))
        expected, expected_core = sklearn_labels(X, eps, ms)
        labels, core = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.uint8)
        runs = [lambda: dbscan_grid(X, eps, ms, labels, core)] if d <= 3 else []
        runs += [lambda size=size: dbscan_kdtree(X, eps, ms, labels, core, size) for size in (1, 2, 3, 16, 64, 1000)]
        runs += [lambda size=size: dbscan_brute(X, eps, ms, labels, core, size) for size in (1, 2, 3, 16, 64, 1000)]
        for run in runs:
            labels[:] = 7
            core[:] = 7
            assert run() == expected.max() + 1
            np.testing.assert_array_equal(labels, expected)
            np.testing.assert_array_equal(core, expected_core.astype(np.uint8))


@pytest.mark.parametrize("d", [2, 10])
def test_wide_spans_fall_back_to_the_kdtree(d):
    rng = np.random.default_rng(5)
    X = np.vstack([rng.normal(0, 1, (100, d)), rng.normal(1e12, 1, (100, d))])
    labels, core = np.empty(200, dtype=np.int64), np.empty(200, dtype=np.uint8)
    declines = dbscan_grid if d <= 3 else dbscan_brute  # too many cells / too wide a rounding band
    assert declines(X, 0.5, 5, labels, core) == -1
    assert_same_as_sklearn(X, 0.5, 5)
    np.testing.assert_array_equal(dbscan(X, 0.5, 5), dbscan_reference(X, 0.5, 5))


@pytest.mark.parametrize("d", [8, 13, 24])
def test_products_decide_pairs_at_exactly_eps_like_the_plain_sum(d):
    """Pairs whose in-order squared distance is exactly eps^2, with coordinates far from 0 (wide
    norms): the rounding band sends them to the exact sum, on both sides of eps."""
    rng = np.random.default_rng(d)
    X = 1000.0 + rng.normal(size=(300, d))
    X[150:] = X[:150] + rng.normal(scale=0.3, size=(150, d))
    for pair in range(0, 150, 15):
        t = X[pair] - X[150 + pair]
        d2 = 0.0
        for v in t:
            d2 += v * v
        eps = float(np.sqrt(d2))
        while eps * eps > d2:
            eps = np.nextafter(eps, 0)
        while eps * eps < d2:
            eps = np.nextafter(eps, np.inf)
        if eps * eps != d2:
            continue
        for e in (eps, np.nextafter(eps, 0), np.nextafter(eps, np.inf)):
            labels, core = np.empty(300, dtype=np.int64), np.empty(300, dtype=np.uint8)
            assert dbscan_brute(X, e, 2, labels, core) >= 0
            expected, expected_core = dbscan_reference(X, e, 2, return_core_mask=True)
            np.testing.assert_array_equal(labels, expected)
            np.testing.assert_array_equal(core.astype(bool), expected_core)


def test_large_and_dense_inputs():
    """Whole-box shortcuts (eps larger than the data) and many points per cell or leaf."""
    rng = np.random.default_rng(7)
    for d in (2, 6, 16):
        X = rng.normal(size=(3000, d))
        np.testing.assert_array_equal(dbscan(X, 100.0, 5), np.zeros(3000))
        assert_same_as_sklearn(X, 0.6 * np.sqrt(d), 20)
        assert_same_as_sklearn(np.round(X, 1), 0.3, 30)  # many duplicates


# --- input handling ------------------------------------------------------------------------------


def test_input_is_not_modified_and_other_layouts_are_accepted():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 5))
    before = X.copy()
    expected = dbscan(X, 1.5, 4)
    np.testing.assert_array_equal(X, before)
    readonly = X.copy()
    readonly.setflags(write=False)
    np.testing.assert_array_equal(dbscan(readonly, 1.5, 4), expected)
    np.testing.assert_array_equal(dbscan(np.asfortranarray(X), 1.5, 4), expected)
    np.testing.assert_array_equal(dbscan(X.tolist(), 1.5, 4), expected)
    np.testing.assert_array_equal(dbscan(X[::2], 1.5, 4), dbscan(np.ascontiguousarray(X[::2]), 1.5, 4))
    ints = rng.integers(0, 5, size=(100, 3))
    ints_before = ints.copy()
    np.testing.assert_array_equal(dbscan(ints, 1.0, 3), dbscan(ints.astype(float), 1.0, 3))
    np.testing.assert_array_equal(ints, ints_before)
    np.testing.assert_array_equal(
        dbscan(X.astype(np.float32), 1.5, 4), dbscan(X.astype(np.float32).astype(float), 1.5, 4)
    )


@pytest.mark.parametrize("eps", [0, 0.0, -1.0, float("nan"), float("inf"), "1", None, True, 1j])
def test_bad_eps_raises(eps):
    with pytest.raises(ValueError, match="eps"):
        dbscan([[0.0]], eps, 1)


@pytest.mark.parametrize("min_samples", [0, -3, 1.5, 2.0, "3", None, True])
def test_bad_min_samples_raises(min_samples):
    with pytest.raises(ValueError, match="min_samples"):
        dbscan([[0.0]], 1.0, min_samples)


@pytest.mark.parametrize(
    "X",
    [
        [1.0, 2.0],  # 1-D
        np.zeros((2, 2, 2)),  # 3-D
        np.zeros((3, 0)),  # no features
        [[0.0, np.nan]],
        [[0.0], [np.inf]],
        [["a", "b"]],
        [[1.0, 2.0], [3.0]],  # ragged
        np.zeros((2, 2), dtype=complex),
    ],
)
def test_bad_X_raises(X):
    with pytest.raises(ValueError, match="X"):
        dbscan(X, 1.0, 2)


def test_numpy_scalars_are_accepted():
    X = [[0.0], [0.5], [3.0]]
    np.testing.assert_array_equal(dbscan(X, np.float32(1.0), np.int64(2)), [0, 0, -1])
