"""Native DBSCAN (gridflow.native.dbscan) against scikit-learn's DBSCAN (algorithm='auto', n_jobs=1).

Data per (n, d):

* ``blobs`` (realistic): 5 Gaussian blobs (standard deviations 0.5-1.5, centres uniform in
  [-10, 10]^d) holding 90% of the points, plus 10% uniform noise over [-15, 15]^d; eps is the 0.9
  quantile of the distance to the min_samples-th nearest neighbour (the point itself counted), so
  the blobs come out as clusters (5 in 8 and 24 dimensions; overlapping blobs merge in 2) and about
  the injected 10% as noise.
* ``uniform``: uniform in the unit cube, no structure at all (the worst case for an index); eps is
  the median of that distance, so about half the points are core.

The table prints eps, the clusters and noise found, the mean neighbourhood size (over 1,000 sampled
points), both times and their ratio, and whether the labels are identical; then a 3 x 3 summary of
the speed-ups (sizes x dimensions) per data kind. Best of ``--repeats`` runs each (one run when a
run takes over 5 s). Both get the same X, eps and min_samples, in the same process.

Threads: scikit-learn's brute-force radius search (its choice from 16 dimensions on) runs OpenMP
threads whatever ``n_jobs`` says, and BLAS may thread too; both implementations are pinned to
``--threads`` (default 1, via threadpoolctl) so the comparison is single core against single core.

    python benchmarks/dbscan_vs_sklearn.py [--sizes 1000 10000 50000] [--dims 2 8 24]
                                           [--data blobs uniform] [--repeats 3] [--min-samples 10]
                                           [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.cluster import DBSCAN
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_limits

from gridflow.native._dbscan import BRUTE_MIN_DIMENSIONS
from gridflow.native.dbscan import dbscan

EPS_QUANTILE = {"blobs": 0.9, "uniform": 0.5}


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


def k_distance_eps(X: np.ndarray, k: int, quantile: float) -> float:
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
        if best > 5.0:
            break
    return best, out


def method(d: int) -> str:
    return "grid" if d <= 3 else ("kd-tree" if d < BRUTE_MIN_DIMENSIONS else "tiled BLAS")


def run(kind: str, sizes, dims, ms: int, repeats: int) -> dict[tuple[int, int], float]:
    q = EPS_QUANTILE[kind]
    print(f"\ndata={kind}, min_samples={ms}, eps = {q} quantile of the {ms}-NN distance, best of {repeats}")
    header = (
        "| n | d | ours uses | eps | clusters | noise | mean neighbours | sklearn s | ours s | speed-up | same labels |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    speedups = {}
    for d in dims:
        for n in sizes:
            X = make_data(n, d, kind)
            eps = k_distance_eps(X, ms, q)
            sk_s, sk = best_of(
                lambda: DBSCAN(eps=eps, min_samples=ms, algorithm="auto", n_jobs=1).fit(X).labels_, repeats
            )
            our_s, ours = best_of(lambda: dbscan(X, eps, ms), repeats)
            speedups[n, d] = sk_s / our_s
            print(
                f"| {n:,} | {d} | {method(d)} | {eps:.4g} | {int(ours.max()) + 1} | {np.mean(ours == -1):.1%} "
                f"| {mean_neighbours(X, eps):.0f} | {sk_s:.4f} | {our_s:.4f} | {sk_s / our_s:.1f}x "
                f"| {np.array_equal(sk, ours)} |",
                flush=True,
            )
    return speedups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 50_000])
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 8, 24])
    parser.add_argument("--data", choices=sorted(EPS_QUANTILE), nargs="+", default=["blobs", "uniform"])
    parser.add_argument("--min-samples", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads for both (threadpoolctl)")
    args = parser.parse_args()
    print(f"sklearn DBSCAN(algorithm='auto', n_jobs=1) vs gridflow.native.dbscan, threads pinned to {args.threads}")
    summaries = {}
    with threadpool_limits(limits=args.threads):
        for kind in args.data:
            summaries[kind] = run(kind, args.sizes, args.dims, args.min_samples, args.repeats)
    for kind, speedups in summaries.items():
        print(f"\nspeed-up over sklearn, {kind} (rows n, columns d; > 1 = faster):")
        print("| n \\ d | " + " | ".join(str(d) for d in args.dims) + " |")
        print("|---|" + "---|" * len(args.dims))
        for n in args.sizes:
            print(f"| {n:,} | " + " | ".join(f"{speedups[n, d]:.1f}x" for d in args.dims) + " |")
        print(f"slowest cell: {min(speedups.values()):.2f}x")


if __name__ == "__main__":
    main()
