"""Native DBSCAN (gridflow.native.dbscan) against scikit-learn's DBSCAN (algorithm='auto', n_jobs=1).

Data per (n, d), default ``--data blobs``: 5 Gaussian blobs (standard deviations 0.5-1.5, centres
uniform in [-10, 10]^d) holding 90% of the points, plus 10% uniform noise over [-15, 15]^d.
``--data uniform``: uniform in the unit cube (no structure at all, the worst case for an index).
eps is a quantile (default the median) of the distance to the min_samples-th nearest neighbour,
the point itself counted, so about half the points are core, clusters are found and
neighbourhoods stay small; the table prints eps, the clusters and noise found and the mean
neighbourhood size (over 1,000 sampled points). Both implementations get the same X, eps and
min_samples, and their labels are compared. Best of 3 runs each; prints a table, asserts nothing.

    python benchmarks/dbscan_vs_sklearn.py [--sizes 1000 10000 50000] [--dims 2 8 24] [--repeats 3]
                                           [--quantile 0.5] [--min-samples 10] [--data blobs]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.cluster import DBSCAN
from sklearn.neighbors import NearestNeighbors

from gridflow.native.dbscan import dbscan


def make_data(n: int, d: int, kind: str = "blobs", seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        return rng.uniform(size=(n, d))
    n_noise = n // 10
    centres = rng.uniform(-10, 10, size=(5, d))
    scales = rng.uniform(0.5, 1.5, size=5)
    which = rng.integers(0, 5, size=n - n_noise)
    blobs = centres[which] + rng.normal(size=(n - n_noise, d)) * scales[which, None]
    X = np.vstack([blobs, rng.uniform(-15, 15, size=(n_noise, d))])
    return X[rng.permutation(n)]


def k_distance_eps(X: np.ndarray, k: int, quantile: float = 0.5) -> float:
    """The quantile of the distance to the k-th nearest neighbour, the point itself counted."""
    dist, _ = NearestNeighbors(n_neighbors=k).fit(X).kneighbors(X)
    return float(np.quantile(dist[:, -1], quantile))


def mean_neighbours(X: np.ndarray, eps: float, sample: int = 1000) -> float:
    queries = X[np.random.default_rng(1).choice(len(X), size=min(sample, len(X)), replace=False)]
    found = NearestNeighbors(radius=eps).fit(X).radius_neighbors(queries, return_distance=False)
    return float(np.mean([len(f) for f in found]))


def best_of(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - started)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 50_000])
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 8, 24])
    parser.add_argument("--min-samples", type=int, default=10)
    parser.add_argument("--quantile", type=float, default=0.5, help="k-distance quantile giving eps")
    parser.add_argument("--data", choices=["blobs", "uniform"], default="blobs")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    ms = args.min_samples
    print(f"data={args.data}, min_samples={ms}, eps = {args.quantile} quantile of the {ms}-NN distance, "
          f"best of {args.repeats}; sklearn DBSCAN(algorithm='auto', n_jobs=1)")
    header = ("| n | d | eps | clusters | noise | mean neighbours | sklearn s | ours s | speed-up "
              "| same labels |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for d in args.dims:
        for n in args.sizes:
            X = make_data(n, d, args.data)
            eps = k_distance_eps(X, ms, args.quantile)
            sk_s, sk = best_of(lambda: DBSCAN(eps=eps, min_samples=ms, algorithm="auto", n_jobs=1).fit(X).labels_,
                               args.repeats)
            our_s, ours = best_of(lambda: dbscan(X, eps, ms), args.repeats)
            print(f"| {n:,} | {d} | {eps:.4g} | {int(ours.max()) + 1} | {np.mean(ours == -1):.1%} "
                  f"| {mean_neighbours(X, eps):.0f} | {sk_s:.4f} | {our_s:.4f} | {sk_s / our_s:.1f}x "
                  f"| {np.array_equal(sk, ours)} |", flush=True)


if __name__ == "__main__":
    main()
