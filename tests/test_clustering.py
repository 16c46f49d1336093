"""Online k-means of daily load shapes (gridflow.analytics.clustering): determinism, state round trips,
convergence on separable shapes, missing slots, bad configuration, and real CityLearn profiles against
scikit-learn's batch k-means."""

import json
import pickle

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

from gridflow.analytics.clustering import LoadProfileClusterer
from gridflow.datasets import fetch_datasets, load_citylearn
from gridflow.settings import Settings

HOURS = np.arange(24)
SHAPES = np.array(
    [
        np.where((HOURS >= 6) & (HOURS < 9), 4.0, 0.6),  # morning peak
        np.where((HOURS >= 17) & (HOURS < 22), 3.0, 0.5),  # evening peak
        np.ones(24),  # flat
    ]
)
SHAPES /= SHAPES.mean(axis=1, keepdims=True)


def synthetic_days(n_days, seed=0, noise=0.05):
    """(household, profile in W, true shape) for 30 households of 3 shapes and sizes 200-3000 W."""
    rng = np.random.default_rng(seed)
    scale = rng.uniform(200, 3000, size=30)
    for _ in range(n_days):
        for h in range(30):
            shape = h % 3
            yield f"h-{h:02d}", scale[h] * SHAPES[shape] * (1 + rng.normal(0, noise, 24)), shape


def trained(seed=42, n_days=20, **params):
    model = LoadProfileClusterer(n_clusters=3, seed=seed, **params)
    for household, profile, _ in synthetic_days(n_days):
        model.learn_one(household, profile)
    return model


def test_same_seed_same_model_and_assignments():
    a, b = trained(seed=7), trained(seed=7)
    np.testing.assert_array_equal(a.centers(), b.centers())
    assert all(a.assignment(f"h-{h:02d}") == b.assignment(f"h-{h:02d}") for h in range(30))
    assert a.snapshot() == b.snapshot()


def test_centroids_converge_on_separable_shapes():
    model = trained(n_days=30)
    centers = model.centers()
    match = [int(np.argmin(np.abs(centers - shape).max(axis=1))) for shape in SHAPES]
    assert sorted(match) == [0, 1, 2]
    np.testing.assert_allclose(centers[match], SHAPES, atol=0.1)
    for household, profile, shape in synthetic_days(1, seed=99):
        assert model.predict_one(profile) == match[shape]
        assert model.assignment(household)["cluster"] == match[shape]
    records = model.centroids()
    assert [r["cluster"] for r in records] == [0, 1, 2]
    assert all(r["slots"] == 24 and len(r["shape"]) == 24 and abs(r["shape_mean"] - 1) < 1e-6 for r in records)
    assert sum(r["n_profiles"] for r in records) == 30 * 30
    assert records[match[0]]["peak_slot"] in (6, 7, 8) and records[match[1]]["peak_slot"] in range(17, 22)


def test_pickle_and_snapshot_round_trips_keep_predictions_and_learning():
    model = trained(n_days=5)
    copies = [pickle.loads(pickle.dumps(model)), LoadProfileClusterer.restore(json.loads(json.dumps(model.snapshot())))]
    probes = [profile for _, profile, _ in synthetic_days(1, seed=5)]
    for copy in copies:
        assert [copy.predict_one(p) for p in probes] == [model.predict_one(p) for p in probes]
        assert copy.assignment("h-04") == model.assignment("h-04")
    for household, profile, _ in synthetic_days(3, seed=6):
        for m in (model, *copies):
            m.learn_one(household, profile)
    for copy in copies:
        np.testing.assert_allclose(copy.centers(), model.centers(), rtol=0, atol=1e-12)


def test_warmup_then_records_with_missing_slots():
    model = LoadProfileClusterer(n_clusters=3, warmup_profiles=6, min_coverage=0.75, seed=1)
    record = {
        "household_id": "h-00",
        "meter_id": "m-00",
        "day": "2026-11-20",
        "day_start_ms": 1_763_596_800_000,
        "slots": 24,
        "profile_w": list(500 * SHAPES[0]),
        "profile_norm": list(SHAPES[0]),
        "coverage": 1.0,
    }
    assert model.learn_record(record) is None and not model.is_initialised  # warming up
    for household, profile, _ in synthetic_days(1):
        model.learn_one(household, profile)
    assert model.is_initialised and model.centers().shape == (3, 24)
    morning = model.predict_one(SHAPES[0])
    gappy = list(SHAPES[0] * 800)
    gappy[0] = gappy[12] = gappy[20] = None  # 21/24 known: imputed from the centroid
    before = model.centers()
    out = model.learn_record({**record, "profile_norm": None, "profile_w": gappy})
    assert out == {
        "household_id": "h-00",
        "meter_id": "m-00",
        "day": "2026-11-20",
        "day_start_ms": 1_763_596_800_000,
        "cluster": morning,
        "distance": pytest.approx(out["distance"]),
        "coverage": 0.875,
        "imputed_slots": 3,
        "slots": 24,
    }
    after = model.centers()
    np.testing.assert_array_equal(after[morning][[0, 12, 20]], before[morning][[0, 12, 20]])  # not pulled
    sparse = [None] * 8 + list(SHAPES[0][8:])  # 16/24 known < 0.75: skipped
    assert model.learn_record({**record, "household_id": "h-01", "profile_norm": sparse}) is None
    assert model.assignment("h-01") is None and model.predict_one(sparse) is None
    assert model.predict_one([0.0] * 24) is None  # no consumption, no shape
    with pytest.raises(ValueError, match="slots"):
        model.learn_record({**record, "slots": 48})
    with pytest.raises(ValueError, match="24 slots"):
        model.learn_one("h-00", [1.0] * 23)


@pytest.mark.parametrize(
    "field, value",
    [
        ("n_clusters", 1),
        ("n_clusters", 2.5),
        ("n_clusters", True),
        ("halflife", 0.0),
        ("halflife", 1.5),
        ("halflife", float("nan")),
        ("seed", -1),
        ("slots", 25),
        ("min_coverage", 0.0),
        ("min_coverage", 1.1),
        ("warmup_profiles", 3),  # fewer than n_clusters (4)
    ],
)
def test_bad_configuration_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        LoadProfileClusterer(**{field: value})


def test_from_settings():
    settings = Settings().with_overrides("clustering.n_clusters=6", "preprocess.profile_slots=48")
    model = LoadProfileClusterer.from_settings(settings)
    assert (model.n_clusters, model.slots, model.halflife) == (6, 48, settings.clustering.halflife)


@pytest.fixture(scope="module")
def citylearn_days(base_settings):
    fetch_datasets(base_settings)
    data = load_citylearn(base_settings)
    first = int(np.argmax(data["hour"] == 1))
    days = np.roll(data["load_w"], -first, axis=1)[:, : 365 * 24].reshape(17, 365, 24)
    return days.transpose(1, 0, 2).reshape(-1, 24)  # day by day, the 17 homes each day (stream order)


def test_citylearn_profiles_close_to_batch_kmeans(citylearn_days):
    """The 17 CityLearn homes' 6,205 daily profiles streamed once, day by day, with the default settings,
    against scikit-learn's batch k-means (10 restarts, many passes) on the same normalised profiles.

    Justification of the bounds: the online model sees each profile once and its centroids follow the
    last weeks (halflife 0.05), so it cannot reach batch k-means' optimum; measured inertia ratios are
    1.11-1.17 over seeds 0-2 and 42 (1.04-1.06 on the UCI household; benchmarks/
    evaluate_clustering_anomaly.py), so 1.25 leaves room for another seed. These daily shapes are weakly clustered (batch silhouette about 0.14); the
    online partition must keep at least 60% of the batch silhouette, and no centroid may die (river's
    default random start leaves one of four without a profile here, at 1.39x the batch inertia)."""
    X = citylearn_days
    settings = Settings()
    model = LoadProfileClusterer.from_settings(settings)
    for i, profile in enumerate(X):
        model.learn_one(f"b{i % 17 + 1}", profile)
    Xn = X / X.mean(axis=1, keepdims=True)
    batch = KMeans(settings.clustering.n_clusters, n_init=10, random_state=0).fit(Xn)
    C = model.centers()
    labels = ((Xn[:, None, :] - C[None]) ** 2).sum(-1).argmin(axis=1)
    inertia = float(((Xn - C[labels]) ** 2).sum())
    assert inertia / batch.inertia_ <= 1.25
    ours = silhouette_score(Xn, labels, sample_size=2000, random_state=0)
    theirs = silhouette_score(Xn, batch.labels_, sample_size=2000, random_state=0)
    assert ours >= 0.6 * theirs
    assert np.bincount(labels, minlength=C.shape[0]).min() >= 0.01 * len(X)
