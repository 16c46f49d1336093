"""Online k-means of households' daily load shapes (river's incremental ``KMeans`` underneath).

A profile is one household-day: ``slots`` (24, 48 or 96) mean powers, ``None``/NaN where the slot is
missing. It is divided by the mean of its known slots, so households of any size are compared by the
*shape* of their day (a mean-1 curve), and clustered into ``n_clusters`` typical load shapes.

Missing slots: a profile with less than ``min_coverage`` of its slots known is skipped (not learned,
no assignment). Otherwise it is assigned to the nearest centroid over its known slots only, its missing
slots are imputed from that centroid (so they do not move it), and river's ``KMeans.learn_one`` moves
the centroid ``halflife`` of the way towards it.

Start: river draws its initial centroids at random (normal per slot); one that starts far from the
profiles never wins one (on the CityLearn homes with river's defaults, one centroid of four stayed
empty and the inertia was 1.39 times batch k-means'). So the first ``warmup_profiles`` complete
profiles are buffered, the centroids are initialised by k-means++ and Lloyd iterations on that buffer
(numpy, seeded), and online learning starts from there; until then nothing is assigned. Same seed and
same profiles in the same order, same centroids and assignments.

State for a Flink operator: :meth:`LoadProfileClusterer.snapshot` gives a JSON-serialisable dict and
:meth:`LoadProfileClusterer.restore` rebuilds an equal model from it; instances also pickle.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

import numpy as np
from river.cluster import KMeans

SNAPSHOT_VERSION = 1
_LLOYD_ITERATIONS = 20


class LoadProfileClusterer:
    """Online k-means over normalised daily load profiles.

    Parameters
    ----------
    n_clusters : int, default 4
        Number of typical load shapes, >= 2.
    halflife : float, default 0.05
        Fraction of the way a centroid moves towards each profile assigned to it, in (0, 1]
        (river's ``halflife``; 0.05 remembers about the last 20 profiles of a cluster).
    seed : int, default 42
        Seed of the k-means++ initialisation (and of river's model).
    slots : {24, 48, 96}
        Slots per day.
    min_coverage : float, default 0.75
        Profiles with a smaller fraction of known slots are skipped, in (0, 1].
    warmup_profiles : int, default 32
        Usable profiles buffered before the centroids are initialised, >= ``n_clusters``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> hours = np.arange(24)
    >>> shapes = [1 + np.sin(hours / 24 * 2 * np.pi), 1 + np.cos(hours / 24 * 2 * np.pi)]
    >>> model = LoadProfileClusterer(n_clusters=2, seed=1, warmup_profiles=10)
    >>> for day in range(40):
    ...     model.learn_one(f"h-{day % 4}", shapes[day % 2] * 500 + rng.normal(0, 20, 24))
    >>> [model.predict_one(shape) for shape in shapes] in ([0, 1], [1, 0])
    True
    >>> model.assignment("h-1")["cluster"] == model.predict_one(shapes[1])
    True
    >>> round(model.centroids()[0]["shape_mean"], 6)
    1.0
    """

    def __init__(
        self,
        n_clusters: int = 4,
        halflife: float = 0.05,
        seed: int = 42,
        slots: int = 24,
        min_coverage: float = 0.75,
        warmup_profiles: int = 32,
    ):
        _check_int("n_clusters", n_clusters, 2)
        _check_real("halflife", halflife, 0.0, 1.0)
        _check_int("seed", seed, 0)
        if isinstance(slots, bool) or slots not in (24, 48, 96):
            raise ValueError(f"slots must be 24, 48 or 96, got {slots!r}")
        _check_real("min_coverage", min_coverage, 0.0, 1.0)
        _check_int("warmup_profiles", warmup_profiles, n_clusters)
        self.n_clusters = int(n_clusters)
        self.halflife = float(halflife)
        self.seed = int(seed)
        self.slots = int(slots)
        self.min_coverage = float(min_coverage)
        self.warmup_profiles = int(warmup_profiles)
        self._model = KMeans(n_clusters=self.n_clusters, halflife=self.halflife, mu=1.0, sigma=0.0, p=2, seed=self.seed)
        self._buffer: list[list[float]] = []  # normalised complete profiles until initialised
        self._warm = False
        self._C = np.empty((0, self.slots))  # river's centroids as an array, kept in step
        self._counts = [0] * self.n_clusters
        self._last: dict[str, dict[str, Any]] = {}

    @classmethod
    def from_settings(cls, settings) -> "LoadProfileClusterer":
        """A clusterer configured by ``settings.clustering`` and ``settings.preprocess.profile_slots``."""
        c = settings.clustering
        return cls(
            c.n_clusters, c.halflife, c.seed, settings.preprocess.profile_slots, c.min_coverage, c.warmup_profiles
        )

    # ---- learning and prediction -------------------------------------------------------------------

    @property
    def is_initialised(self) -> bool:
        """True once the centroids exist (after ``warmup_profiles`` usable profiles)."""
        return self._warm

    def learn_one(self, household_id: str, profile: Sequence[float | None]) -> None:
        """Learn one household-day profile (W or already normalised; ``None``/NaN = missing slot)."""
        self._learn(household_id, profile, {})

    def learn_record(self, record: dict[str, Any]) -> dict[str, Any] | None:
        """Learn a profile record of the preprocessing job and return its assignment record.

        Uses ``profile_norm`` (or ``profile_w`` when absent); ``slots`` must match. Returns ``None``
        when the profile is skipped (coverage below ``min_coverage``) or the model is still warming up.
        """
        slots = record.get("slots", self.slots)
        if slots != self.slots:
            raise ValueError(f"record has slots={slots!r}, this model clusters {self.slots}-slot profiles")
        profile = record.get("profile_norm") or record.get("profile_w")
        if profile is None:
            raise ValueError("record needs profile_norm or profile_w")
        context: dict[str, Any] = {key: record[key] for key in ("meter_id", "day", "day_start_ms") if key in record}
        return self._learn(str(record["household_id"]), profile, context)

    def predict_one(self, profile: Sequence[float | None]) -> int | None:
        """Nearest centroid over the profile's known slots; ``None`` if skipped or not initialised."""
        prepared = self._prepare(profile)
        if prepared is None or not self._warm:
            return None
        cluster, _ = self._nearest(*prepared)
        return cluster

    def assignment(self, household_id: str) -> dict[str, Any] | None:
        """The last assignment record of a household (``None`` if none yet)."""
        last = self._last.get(household_id)
        return dict(last) if last is not None else None

    def centers(self) -> np.ndarray:
        """Centroids as an ``(n_clusters, slots)`` array (empty before initialisation)."""
        return self._C.copy()

    def centroids(self) -> list[dict[str, Any]]:
        """The typical load shapes as records: ``cluster``, ``slots``, ``shape`` (mean-1 curve),
        ``shape_mean``, ``peak_slot``, ``peak_to_mean``, ``n_profiles`` (learned since the start)."""
        out = []
        for cluster, shape in enumerate(self.centers()):
            out.append(
                {
                    "cluster": cluster,
                    "slots": self.slots,
                    "shape": [float(v) for v in shape],
                    "shape_mean": float(shape.mean()),
                    "peak_slot": int(np.argmax(shape)),
                    "peak_to_mean": float(shape.max() / shape.mean()) if shape.mean() > 0 else None,
                    "n_profiles": self._counts[cluster],
                }
            )
        return out

    def _learn(self, household_id: str, profile, context: dict[str, Any]) -> dict[str, Any] | None:
        prepared = self._prepare(profile)
        if prepared is None:
            return None
        values, known = prepared
        if not self._warm:
            if known.all():
                self._buffer.append(values.tolist())
                if len(self._buffer) >= self.warmup_profiles:
                    self._initialise()
            if not self._warm:
                return None
            # the profile that completes the warm-up is in the initial centroids: assign it, learn nothing
            cluster, sq = self._nearest(values, known)
            record = {
                "household_id": household_id,
                **context,
                "cluster": cluster,
                "distance": float(np.sqrt(sq / known.sum())),
                "coverage": float(known.mean()),
                "imputed_slots": 0,
                "slots": self.slots,
            }
            self._last[household_id] = record
            return dict(record)
        nearest, _ = self._nearest(values, known)
        filled = np.where(known, values, self._C[nearest])
        before = self._C[nearest].copy()
        cluster = self._model.learn_predict_one(dict(enumerate(filled.tolist())))
        center = self._model.centers[cluster]
        self._C[cluster] = [center[slot] for slot in range(self.slots)]
        self._counts[cluster] += 1
        reference = before if cluster == nearest else self._C[cluster]
        distance = float(np.sqrt(np.mean((filled[known] - reference[known]) ** 2)))
        record = {
            "household_id": household_id,
            **context,
            "cluster": int(cluster),
            "distance": distance,
            "coverage": float(known.mean()),
            "imputed_slots": int((~known).sum()),
            "slots": self.slots,
        }
        self._last[household_id] = record
        return dict(record)

    def _prepare(self, profile) -> tuple[np.ndarray, np.ndarray] | None:
        if len(profile) != self.slots:
            raise ValueError(f"profile must have {self.slots} slots, got {len(profile)}")
        values = np.array([np.nan if v is None else v for v in profile], dtype=np.float64)
        known = np.isfinite(values)
        if known.mean() < self.min_coverage:
            return None
        mean = values[known].mean()
        if not mean > 0:
            return None  # no consumption: no shape
        return np.where(known, values / mean, np.nan), known

    def _nearest(self, values: np.ndarray, known: np.ndarray) -> tuple[int, float]:
        diff = self._C[:, known] - values[known]
        sq = (diff * diff).sum(axis=1)
        cluster = int(np.argmin(sq))
        return cluster, float(sq[cluster])

    def _initialise(self) -> None:
        """k-means++ then Lloyd iterations on the buffered profiles; the result seeds river's centroids."""
        X = np.array(self._buffer)
        rng = np.random.default_rng(self.seed)
        centers = [X[rng.integers(len(X))]]
        for _ in range(1, self.n_clusters):
            d2 = ((X[:, None, :] - np.array(centers)[None]) ** 2).sum(-1).min(axis=1)
            total = d2.sum()
            pick = rng.choice(len(X), p=d2 / total) if total > 0 else rng.integers(len(X))
            centers.append(X[pick])
        C = np.array(centers)
        for _ in range(_LLOYD_ITERATIONS):
            labels = ((X[:, None, :] - C[None]) ** 2).sum(-1).argmin(axis=1)
            C = np.array([X[labels == c].mean(axis=0) if (labels == c).any() else C[c] for c in range(len(C))])
        self._set_centers(C)
        self._counts = np.bincount(labels, minlength=self.n_clusters).tolist()
        self._buffer = []
        self._warm = True

    def _set_centers(self, C: np.ndarray) -> None:
        self._C = np.array(C, dtype=np.float64)
        for cluster, row in enumerate(C):
            center = self._model.centers[cluster]
            for slot, value in enumerate(row.tolist()):
                center[slot] = value

    # ---- state -------------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The whole model as a JSON-serialisable dict (for Flink state or a checkpoint file)."""
        return {
            "version": SNAPSHOT_VERSION,
            "params": {
                "n_clusters": self.n_clusters,
                "halflife": self.halflife,
                "seed": self.seed,
                "slots": self.slots,
                "min_coverage": self.min_coverage,
                "warmup_profiles": self.warmup_profiles,
            },
            "centers": self.centers().tolist() if self._warm else None,
            "buffer": [list(row) for row in self._buffer],
            "counts": list(self._counts),
            "last": {household: dict(record) for household, record in self._last.items()},
        }

    @classmethod
    def restore(cls, snapshot: dict[str, Any]) -> "LoadProfileClusterer":
        """The model a :meth:`snapshot` was taken from."""
        if snapshot.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unknown snapshot version {snapshot.get('version')!r}, expected {SNAPSHOT_VERSION}")
        model = cls(**snapshot["params"])
        model._buffer = [list(row) for row in snapshot["buffer"]]
        model._counts = list(snapshot["counts"])
        model._last = {household: dict(record) for household, record in snapshot["last"].items()}
        if snapshot["centers"] is not None:
            model._set_centers(np.array(snapshot["centers"], dtype=np.float64))
            model._warm = True
        return model


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_real(name: str, value, low: float, high: float) -> None:
    # value <= low, not low < value: typeshed's numbers.Real declares __le__ and __lt__ only (NaN fails <= high)
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or value <= low
        or not value <= high
        or not math.isfinite(value)
    ):
        raise ValueError(f"{name} must be a number in ({low}, {high}], got {value!r}")
