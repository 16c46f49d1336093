# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""DBSCAN hot loops (validation and dtype casting are in dbscan.py): one call clusters the points
into caller-allocated ``labels`` and ``is_core``; nothing in the loops touches a Python object.

Three ways (``dbscan_inner`` picks one by dimension; all exact, all give identical labels):

* 1 to 3 dimensions: a uniform grid, cells of side h = eps * (1 + 2^-20) hashed by their integer
  coordinates (open addressing), points counting-sorted by cell. All neighbours of a point lie in
  the 3^d cells around its own; each cell keeps the list of its occupied neighbour cells. The
  margin above eps covers the rounding of (x - min) / h as long as the data spans fewer than 2^20
  cells per dimension; wider data goes to the KD-tree.
* 4 to 7 dimensions (and every fallback): a balanced KD-tree stored as a complete binary tree in
  arrays (node ``i`` has children ``2i+1`` and ``2i+2``, every leaf on the same level, at most
  ``leaf_size`` points per leaf). A node owns a contiguous range of the tree-ordered copy of the
  points and keeps its tight bounding box; internal nodes split at the median (quickselect with a
  three-way partition) of the box's widest dimension, so duplicates and degenerate data cannot
  unbalance the tree. Traversal is iterative with a small fixed stack. Each leaf also keeps its
  points dimension-major, for a vectorised distance loop.
* 8 dimensions and more: no per-point queries (``dbscan_brute``). The KD-tree's leaves of at most
  64 points are tiles; every pair of leaves whose boxes come within eps is done as one block of
  distances from a BLAS product (squared norms and dot products, the GEMM trick), pairs within a
  rounding band of eps recomputed exactly; core points are merged with union-find as pairs are
  found. Per-point queries stop paying off there: in 16-24 dimensions with structureless data a
  query visits nearly every leaf, and the KD-tree was 3-24x slower than this (and than
  scikit-learn's brute force).

A full grid needs 3^d neighbour cells (2.8e11 for d = 24), and a grid on the first k <= 3
dimensions as a pre-filter lets nearly every point of a blob through in 8 or 24 dimensions; the
KD-tree prunes on all dimensions. All three were measured in benchmarks/dbscan_vs_sklearn.py: the
grid is ~1.5-2x faster than the KD-tree in 1 to 3 dimensions; from 8 dimensions on the tiled
products beat the KD-tree on clustered data too (1.2-3.7x at 2k-100k points).

Distances: squared, summed over the dimensions in index order and compared with ``eps * eps``
(inclusive), as scikit-learn's KD-tree does. A KD-tree box is skipped when its minimum squared
distance to the query exceeds eps^2 and taken whole, without per-point distances, when its maximum
squared distance is at most eps^2. Both bounds hold exactly in floating point (rounding is monotone
and the terms are summed in the same order as the point distances), and partial sums stop a
distance early only once they exceed eps^2, so every decision equals the plain computation's.

Grid and KD-tree: three steps, each cheaper than computing every neighbourhood (what
scikit-learn does):

1. Core points. A point counts neighbours only until min_samples (own cell or leaf first; a
   KD-tree node of diameter <= eps holding >= min_samples points makes all of them core without
   any query). A point that stays below min_samples keeps its (fewer than min_samples) neighbours.
2. Clusters of core points: depth-first from each not yet labelled core point, in the original
   point order; a point is labelled when first reached and only core points are expanded. Each
   node (cell) counts its core points not labelled yet, so a query skips whatever is done.
3. Border points: the lowest cluster label among the core points in the kept neighbour list.

The labels are scikit-learn's (sklearn/cluster/_dbscan_inner.pyx): it numbers clusters in the
order of their lowest-index core point and expands one cluster completely before the next, so a
border point belongs to the first (lowest-numbered) cluster with a core point within eps, and the
order of visits inside one cluster does not matter.
"""
import numpy as np
from libc.stdlib cimport free, malloc, realloc
from scipy.linalg.cython_blas cimport dgemm


cdef void _select(double* key, Py_ssize_t* idx, Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t nth) noexcept nogil:
    """Reorder key[lo:hi], and idx[lo:hi] along with it, so that key[nth] is the nth smallest and
    the keys before (after) it are <= (>=) it. Three-way partition: linear time on duplicates."""
    cdef Py_ssize_t lt, i, gt, ti
    cdef double a, b, c, p, v
    while hi - lo > 1:
        a = key[lo]
        b = key[lo + (hi - lo) // 2]
        c = key[hi - 1]
        if a < b:
            p = b if b < c else (c if a < c else a)
        else:
            p = a if a < c else (c if b < c else b)
        lt = lo
        i = lo
        gt = hi
        while i < gt:
            v = key[i]
            if v < p:
                key[i] = key[lt]
                key[lt] = v
                ti = idx[i]
                idx[i] = idx[lt]
                idx[lt] = ti
                lt += 1
                i += 1
            elif v > p:
                gt -= 1
                key[i] = key[gt]
                key[gt] = v
                ti = idx[i]
                idx[i] = idx[gt]
                idx[gt] = ti
            else:
                i += 1
        if nth < lt:
            hi = lt
        elif nth >= gt:
            lo = gt
        else:
            return


cdef inline bint _box_outside(const double* q, const double* lo, const double* hi, Py_ssize_t d,
                              double r2) noexcept nogil:
    """True when every point of the box [lo, hi] is farther than sqrt(r2) from q."""
    cdef double s = 0.0, t
    cdef Py_ssize_t j
    for j in range(d):
        if q[j] < lo[j]:
            t = lo[j] - q[j]
            s += t * t
            if s > r2:
                return True
        elif q[j] > hi[j]:
            t = q[j] - hi[j]
            s += t * t
            if s > r2:
                return True
    return False


cdef inline bint _box_inside(const double* q, const double* lo, const double* hi, Py_ssize_t d,
                             double r2) noexcept nogil:
    """True when every point of the box [lo, hi] is within sqrt(r2) of q."""
    cdef double s = 0.0, a, b
    cdef Py_ssize_t j
    for j in range(d):
        a = q[j] - lo[j]
        b = hi[j] - q[j]
        if b > a:
            a = b
        s += a * a
        if s > r2:
            return False
    return True


cdef inline bint _within(const double* q, const double* p, Py_ssize_t d, double r2) noexcept nogil:
    cdef double s = 0.0, t
    cdef Py_ssize_t j
    for j in range(d):
        t = q[j] - p[j]
        s += t * t
        if s > r2:
            return False
    return True


cdef inline Py_ssize_t _sqdist_le(const double* q, const double* p, Py_ssize_t d, double r2) noexcept nogil:
    """1 when the squared distance (summed over the dimensions in order) is <= r2, else 0; no
    early exit, for 1 to 3 dimensions."""
    cdef double t = q[0] - p[0], s = t * t
    if d > 1:
        t = q[1] - p[1]
        s += t * t
        if d > 2:
            t = q[2] - p[2]
            s += t * t
    return s <= r2


cdef struct Buf:
    Py_ssize_t* data
    Py_ssize_t size
    Py_ssize_t cap


cdef inline bint _reserve(Buf* b, Py_ssize_t extra) noexcept nogil:
    """Room for extra more entries; False when out of memory."""
    cdef Py_ssize_t cap
    cdef Py_ssize_t* data
    if b.size + extra <= b.cap:
        return True
    cap = 2 * b.cap
    if cap < b.size + extra:
        cap = b.size + extra
    data = <Py_ssize_t*> realloc(b.data, cap * sizeof(Py_ssize_t))
    if data == NULL:
        return False
    b.data = data
    b.cap = cap
    return True


cdef inline void _mark(Py_ssize_t* count, const Py_ssize_t* leaf_of, Py_ssize_t k) noexcept nogil:
    """One point fewer to find below every node on the path from point k's leaf to the root."""
    cdef Py_ssize_t node = leaf_of[k]
    while True:
        count[node] -= 1
        if node == 0:
            return
        node = (node - 1) >> 1


cdef void _finish(Py_ssize_t n, const unsigned char* core, Py_ssize_t* lab, const Py_ssize_t* off,
                  const Py_ssize_t* nb, const Py_ssize_t* pos, long long* labels,
                  unsigned char* is_core) noexcept nogil:
    """A border point takes the lowest cluster among its core neighbours (clusters expand one after
    the other, so the first to reach it keeps it, as in sklearn); then write labels and core flags
    back in the caller's row order (``pos`` maps rows to internal order)."""
    cdef Py_ssize_t i, k, t, m, best
    for k in range(n):
        if core[k]:
            continue
        best = -1
        for t in range(off[k], off[k + 1]):
            m = nb[t]
            if core[m] and (best == -1 or lab[m] < best):
                best = lab[m]
        lab[k] = best
    for i in range(n):
        k = pos[i]
        labels[i] = lab[k]
        is_core[i] = core[k]


cdef extern from *:
    """
    /* Squared distances from q to the m points of a leaf block B, stored dimension-major
       (B[j * m + p]), into acc; returns how many are <= r2. Every lane sums t * t over the
       dimensions in order, exactly like a scalar loop (no reassociation), so the results are the
       scalar ones. Eight points at a time with the accumulators in registers (GCC/Clang vector
       extensions: SSE2 on x86-64, NEON on arm64); a group of eight stops early, every four
       dimensions, once all its partial sums exceed r2 (acc then holds those partial sums, > r2). */
    #include <string.h>
    /* no fused multiply-add: it would round differently from the scalar loops and the reference */
    #if defined(__clang__)
    #pragma STDC FP_CONTRACT OFF
    #elif defined(__GNUC__)
    #pragma GCC push_options
    #pragma GCC optimize ("fp-contract=off")
    #endif
    #if defined(__GNUC__) || defined(__clang__)
    typedef double gf_v2d __attribute__((vector_size(16)));
    typedef long long gf_v2l __attribute__((vector_size(16)));
    #define GF_VECTOR 1
    #endif

    static inline Py_ssize_t gf_leaf_sqdist(const double* q, const double* B, Py_ssize_t m,
                                            Py_ssize_t d, double r2, double* acc) {
        Py_ssize_t p = 0, j, cnt = 0;
    #ifdef GF_VECTOR
        const gf_v2d r = {r2, r2};
        for (; p + 8 <= m; p += 8) {
            gf_v2d a0 = {0.0, 0.0}, a1 = a0, a2 = a0, a3 = a0, b0, b1, b2, b3, t0, t1, t2, t3;
            gf_v2l any;
            const double* row = B + p;
            for (j = 0; j < d; j++, row += m) {
                const gf_v2d qj = {q[j], q[j]};
                memcpy(&b0, row, 16); memcpy(&b1, row + 2, 16);
                memcpy(&b2, row + 4, 16); memcpy(&b3, row + 6, 16);
                t0 = qj - b0; t1 = qj - b1; t2 = qj - b2; t3 = qj - b3;
                a0 += t0 * t0; a1 += t1 * t1; a2 += t2 * t2; a3 += t3 * t3;
                if ((j & 3) == 3) {
                    any = (a0 <= r) | (a1 <= r) | (a2 <= r) | (a3 <= r);
                    if (!(any[0] | any[1])) break;
                }
            }
            memcpy(acc + p, &a0, 16); memcpy(acc + p + 2, &a1, 16);
            memcpy(acc + p + 4, &a2, 16); memcpy(acc + p + 6, &a3, 16);
            for (j = 0; j < 8; j++) cnt += acc[p + j] <= r2;
        }
    #endif
        for (; p < m; p++) {
            double s = 0.0, t;
            for (j = 0; j < d; j++) {
                t = q[j] - B[j * m + p];
                s += t * t;
                if (s > r2) break;
            }
            acc[p] = s;
            cnt += s <= r2;
        }
        return cnt;
    }

    /* Offsets j < m with g[j] <= t, into out; returns how many. Eight at a time: one test for the
       (usual) case of no hit among them. */
    static inline Py_ssize_t gf_scan_le(const double* g, Py_ssize_t m, double t, Py_ssize_t* out) {
        Py_ssize_t j = 0, k = 0, l;
        for (; j + 8 <= m; j += 8) {
            if ((g[j] <= t) | (g[j + 1] <= t) | (g[j + 2] <= t) | (g[j + 3] <= t)
                | (g[j + 4] <= t) | (g[j + 5] <= t) | (g[j + 6] <= t) | (g[j + 7] <= t)) {
                for (l = j; l < j + 8; l++) {
                    out[k] = l;
                    k += g[l] <= t;
                }
            }
        }
        for (; j < m; j++) {
            out[k] = j;
            k += g[j] <= t;
        }
        return k;
    }
    #if defined(__GNUC__) && !defined(__clang__)
    #pragma GCC pop_options
    #endif
    """
    Py_ssize_t _leaf_sqdist "gf_leaf_sqdist" (const double* q, const double* B, Py_ssize_t m, Py_ssize_t d,
                                              double r2, double* acc) noexcept nogil
    Py_ssize_t _scan_le "gf_scan_le" (const double* g, Py_ssize_t m, double t, Py_ssize_t* out) noexcept nogil


cdef void _build_tree(const double* Xp, Py_ssize_t n, Py_ssize_t d, Py_ssize_t n_nodes, Py_ssize_t first_leaf,
                      Py_ssize_t* idx, double* LO, double* HI, Py_ssize_t* NS, Py_ssize_t* NE, Py_ssize_t* SPLIT,
                      double* KEY, Py_ssize_t* leaf_of) noexcept nogil:
    """Build the complete KD-tree of ``n_nodes`` nodes over the rows ``idx`` (0..n-1 on entry,
    tree order on return): parents before children (heap order), each internal node split at the
    median of its box's widest dimension; ``NS``/``NE`` node ranges, ``LO``/``HI`` tight boxes
    (an empty node gets lo > hi), ``SPLIT`` split dimensions, ``leaf_of`` the leaf of every
    position. ``KEY`` is scratch (n)."""
    cdef Py_ssize_t node, s, e, j, k, mid, left, dim
    cdef double v, w
    cdef const double* q
    cdef double* lo
    cdef double* hi
    NS[0] = 0
    NE[0] = n
    for node in range(n_nodes):
        s = NS[node]
        e = NE[node]
        lo = LO + node * d
        hi = HI + node * d
        if s == e:  # empty node (tiny n against leaf_size): a box no query reaches into
            for j in range(d):
                lo[j] = 1.0
                hi[j] = -1.0
        else:
            for j in range(d):
                v = Xp[idx[s] * d + j]
                lo[j] = v
                hi[j] = v
            for k in range(s + 1, e):
                q = Xp + idx[k] * d
                for j in range(d):
                    v = q[j]
                    if v < lo[j]:
                        lo[j] = v
                    elif v > hi[j]:
                        hi[j] = v
        if node < first_leaf:
            mid = s + (e - s) // 2
            left = 2 * node + 1
            NS[left] = s
            NE[left] = mid
            NS[left + 1] = mid
            NE[left + 1] = e
            if e - s > 1:
                dim = 0
                w = hi[0] - lo[0]
                for j in range(1, d):
                    if hi[j] - lo[j] > w:
                        w = hi[j] - lo[j]
                        dim = j
                SPLIT[node] = dim
                for k in range(s, e):
                    KEY[k] = Xp[idx[k] * d + dim]
                _select(KEY, idx, s, e, mid)
        else:
            for k in range(s, e):
                leaf_of[k] = node


def dbscan_kdtree(const double[:, ::1] X, double eps, Py_ssize_t min_samples, long long[::1] labels,
                  unsigned char[::1] is_core, Py_ssize_t leaf_size=32):
    """Label the rows of ``X`` (C-contiguous, finite) in place: ``labels`` (length n, caller
    allocated, any content) gets the cluster of every point or -1 for noise, ``is_core`` (length
    n) 1 for core points and 0 for the others. ``eps > 0``, ``min_samples >= 1``,
    ``leaf_size >= 1`` (points per KD-tree leaf). Returns the number of clusters."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1]
    if labels.shape[0] != n or is_core.shape[0] != n:
        raise ValueError("labels and is_core must have one entry per row of X")
    if n == 0:
        return 0
    if d < 1 or not eps > 0 or min_samples < 1 or leaf_size < 1:
        raise ValueError("need d >= 1, eps > 0, min_samples >= 1 and leaf_size >= 1")

    # Complete binary tree of n_levels levels; a leaf holds at most leaf_size points.
    cdef Py_ssize_t n_levels = 1
    while (leaf_size << (n_levels - 1)) < n:
        n_levels += 1
    cdef Py_ssize_t n_nodes = (1 << n_levels) - 1, first_leaf = (1 << (n_levels - 1)) - 1

    idx_arr = np.arange(n, dtype=np.intp)        # tree position -> row of X
    pos_arr = np.empty(n, dtype=np.intp)         # row of X -> tree position
    pts_arr = np.empty((n, d), dtype=np.float64)  # points in tree order
    blk_arr = np.empty(n * d, dtype=np.float64)   # the same, dimension-major within each leaf
    lo_arr = np.empty((n_nodes, d), dtype=np.float64)
    hi_arr = np.empty((n_nodes, d), dtype=np.float64)
    nstart_arr = np.empty(n_nodes, dtype=np.intp)
    nend_arr = np.empty(n_nodes, dtype=np.intp)
    split_arr = np.zeros(n_nodes, dtype=np.intp)
    todo_count_arr = np.zeros(n_nodes, dtype=np.intp)
    leaf_of_arr = np.empty(n, dtype=np.intp)
    lab_arr = np.full(n, -1, dtype=np.intp)
    core_arr = np.zeros(n, dtype=np.uint8)
    off_arr = np.zeros(n + 1, dtype=np.intp)
    todo_arr = np.empty(n, dtype=np.intp)
    stack_arr = np.empty(2 * n_levels + 2, dtype=np.intp)
    acc_arr = np.empty(leaf_size, dtype=np.float64)
    key_arr = np.empty(n, dtype=np.float64)

    cdef Py_ssize_t[::1] idx_v = idx_arr, pos_v = pos_arr, nstart_v = nstart_arr, nend_v = nend_arr
    cdef Py_ssize_t[::1] split_v = split_arr, todo_count_v = todo_count_arr, leaf_of_v = leaf_of_arr
    cdef Py_ssize_t[::1] lab_v = lab_arr, off_v = off_arr, todo_v = todo_arr, stack_v = stack_arr
    cdef double[:, ::1] pts_v = pts_arr, lo_v = lo_arr, hi_v = hi_arr
    cdef double[::1] blk_v = blk_arr, acc_v = acc_arr, key_v = key_arr
    cdef unsigned char[::1] core_v = core_arr

    cdef const double* Xp = &X[0, 0]
    cdef Py_ssize_t* idx = &idx_v[0]
    cdef Py_ssize_t* pos = &pos_v[0]
    cdef double* P = &pts_v[0, 0]
    cdef double* BLK = &blk_v[0]
    cdef double* LO = &lo_v[0, 0]
    cdef double* HI = &hi_v[0, 0]
    cdef Py_ssize_t* NS = &nstart_v[0]
    cdef Py_ssize_t* NE = &nend_v[0]
    cdef Py_ssize_t* SPLIT = &split_v[0]
    cdef Py_ssize_t* TODO_COUNT = &todo_count_v[0]
    cdef Py_ssize_t* leaf_of = &leaf_of_v[0]
    cdef Py_ssize_t* lab = &lab_v[0]
    cdef Py_ssize_t* off = &off_v[0]
    cdef Py_ssize_t* todo = &todo_v[0]
    cdef Py_ssize_t* stk = &stack_v[0]
    cdef double* acc = &acc_v[0]
    cdef double* KEY = &key_v[0]
    cdef unsigned char* core = &core_v[0]

    cdef double r2 = eps * eps
    cdef Py_ssize_t own, own_s, own_e
    cdef Py_ssize_t node, s, e, k, m, j, dim, sp, cnt, c, i, top, label_num = 0, left
    cdef double diam
    cdef const double* q
    cdef double* lo
    cdef double* hi
    cdef bint whole, oom = False
    cdef Buf nb  # neighbours of the non-core points (fewer than min_samples each), CSR by off[]
    nb.size = 0
    nb.cap = 4 * n
    nb.data = <Py_ssize_t*> malloc(nb.cap * sizeof(Py_ssize_t))
    if nb.data == NULL:
        raise MemoryError()
    try:
        with nogil:
            _build_tree(Xp, n, d, n_nodes, first_leaf, idx, LO, HI, NS, NE, SPLIT, KEY, leaf_of)
            for k in range(n):
                pos[idx[k]] = k
                q = Xp + idx[k] * d
                for j in range(d):
                    P[k * d + j] = q[j]
            for node in range(first_leaf, n_nodes):
                s = NS[node]
                e = NE[node]
                for k in range(s, e):
                    for j in range(d):
                        BLK[s * d + j * (e - s) + (k - s)] = P[k * d + j]

            # ---- 1. core points. Nodes of diameter <= eps with >= min_samples points: all core.
            sp = 0
            stk[sp] = 0
            sp += 1
            while sp > 0:
                sp -= 1
                node = stk[sp]
                if NE[node] - NS[node] < min_samples:
                    continue
                lo = LO + node * d
                hi = HI + node * d
                diam = 0.0
                for j in range(d):
                    diam += (hi[j] - lo[j]) * (hi[j] - lo[j])
                    if diam > r2:
                        break
                if diam <= r2:
                    for k in range(NS[node], NE[node]):
                        core[k] = 1
                elif node < first_leaf:
                    stk[sp] = 2 * node + 1
                    stk[sp + 1] = 2 * node + 2
                    sp += 2
            # Every other point counts its neighbours until min_samples, in its own leaf first,
            # then from the root; a point that stays below keeps its (few) neighbours for step 3.
            for k in range(n):
                if core[k]:
                    off[k + 1] = nb.size
                    continue
                q = P + k * d
                own = leaf_of[k]
                own_s = NS[own]
                own_e = NE[own]
                cnt = _leaf_sqdist(q, BLK + own_s * d, own_e - own_s, d, r2, acc)
                if cnt >= min_samples:
                    core[k] = 1
                    off[k + 1] = nb.size
                    continue
                if not _reserve(&nb, cnt):
                    oom = True
                    break
                for m in range(own_s, own_e):
                    if acc[m - own_s] <= r2:
                        nb.data[nb.size] = m
                        nb.size += 1
                sp = 0
                stk[sp] = 0
                sp += 1
                while sp > 0:
                    sp -= 1
                    node = stk[sp]
                    if node == own:
                        continue
                    lo = LO + node * d
                    hi = HI + node * d
                    if _box_outside(q, lo, hi, d, r2):
                        continue
                    s = NS[node]
                    e = NE[node]
                    if _box_inside(q, lo, hi, d, r2):
                        c = e - s
                        if s <= k < e:  # an ancestor of the own leaf, already counted
                            c -= own_e - own_s
                        if cnt + c < min_samples:
                            if not _reserve(&nb, c):
                                oom = True
                                break
                            for m in range(s, e):
                                if m < own_s or m >= own_e:
                                    nb.data[nb.size] = m
                                    nb.size += 1
                        cnt += c
                    elif node >= first_leaf:
                        c = _leaf_sqdist(q, BLK + s * d, e - s, d, r2, acc)
                        if c > 0 and cnt + c < min_samples:
                            if not _reserve(&nb, c):
                                oom = True
                                break
                            for m in range(s, e):
                                if acc[m - s] <= r2:
                                    nb.data[nb.size] = m
                                    nb.size += 1
                        cnt += c
                    else:
                        # the child on the query's side first: min_samples is reached sooner
                        left = 2 * node + 1
                        dim = SPLIT[node]
                        if q[dim] - LO[(left + 1) * d + dim] < HI[left * d + dim] - q[dim]:
                            stk[sp] = left + 1
                            stk[sp + 1] = left
                        else:
                            stk[sp] = left
                            stk[sp + 1] = left + 1
                        sp += 2
                    if cnt >= min_samples:
                        core[k] = 1
                        nb.size = off[k]
                        break
                if oom:
                    break
                off[k + 1] = nb.size

            # ---- 2. clusters of core points, numbered in the order of their lowest-index core point
            # (scikit-learn's numbering). TODO_COUNT[node]: core points below node not yet labelled.
            if not oom:
                for k in range(n):
                    if core[k]:
                        TODO_COUNT[leaf_of[k]] += 1
                for node in range(first_leaf - 1, -1, -1):
                    TODO_COUNT[node] = TODO_COUNT[2 * node + 1] + TODO_COUNT[2 * node + 2]
            for i in range(n if not oom else 0):
                k = pos[i]
                if lab[k] != -1 or not core[k]:
                    continue
                lab[k] = label_num
                _mark(TODO_COUNT, leaf_of, k)
                top = 0
                todo[top] = k
                top += 1
                while top > 0:
                    top -= 1
                    q = P + todo[top] * d
                    sp = 0
                    stk[sp] = 0
                    sp += 1
                    while sp > 0:
                        sp -= 1
                        node = stk[sp]
                        if TODO_COUNT[node] == 0:
                            continue
                        lo = LO + node * d
                        hi = HI + node * d
                        if _box_outside(q, lo, hi, d, r2):
                            continue
                        whole = _box_inside(q, lo, hi, d, r2)
                        if node < first_leaf and not whole:
                            stk[sp] = 2 * node + 1
                            stk[sp + 1] = 2 * node + 2
                            sp += 2
                            continue
                        s = NS[node]
                        e = NE[node]
                        if whole:
                            for m in range(s, e):
                                if core[m] and lab[m] == -1:
                                    lab[m] = label_num
                                    _mark(TODO_COUNT, leaf_of, m)
                                    todo[top] = m
                                    top += 1
                        elif 4 * TODO_COUNT[node] < e - s:  # few candidates: one by one
                            for m in range(s, e):
                                if core[m] and lab[m] == -1 and _within(q, P + m * d, d, r2):
                                    lab[m] = label_num
                                    _mark(TODO_COUNT, leaf_of, m)
                                    todo[top] = m
                                    top += 1
                        elif _leaf_sqdist(q, BLK + s * d, e - s, d, r2, acc) > 0:
                            for m in range(s, e):
                                if core[m] and lab[m] == -1 and acc[m - s] <= r2:
                                    lab[m] = label_num
                                    _mark(TODO_COUNT, leaf_of, m)
                                    todo[top] = m
                                    top += 1
                label_num += 1

            # ---- 3. border points, then the labels back in the caller's row order
            if not oom:
                _finish(n, core, lab, off, nb.data, pos, &labels[0], &is_core[0])
    finally:
        free(nb.data)
    if oom:
        raise MemoryError()
    return label_num


cdef inline Py_ssize_t _slot(unsigned long long key, int shift) noexcept nogil:
    return <Py_ssize_t> ((key * 0x9E3779B97F4A7C15ULL) >> shift)


def dbscan_grid(const double[:, ::1] X, double eps, Py_ssize_t min_samples, long long[::1] labels,
                unsigned char[::1] is_core):
    """Same contract as :func:`dbscan_kdtree`, over a uniform grid for 1 to 3 dimensions; returns
    the number of clusters, or -1 without touching the outputs when the data spans 2^20 cells or
    more in some dimension (the caller then uses the KD-tree)."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1]
    if labels.shape[0] != n or is_core.shape[0] != n:
        raise ValueError("labels and is_core must have one entry per row of X")
    if n == 0:
        return 0
    if not 1 <= d <= 3 or not eps > 0 or min_samples < 1:
        raise ValueError("need 1 <= d <= 3, eps > 0 and min_samples >= 1")
    # Cell side a little above eps: with at most 2^20 cells per dimension the rounding of
    # (x - min) / h is far below the margin, so two points within eps are never more than one cell
    # apart in any dimension, and the 3^d cells around a point's cell hold all its neighbours.
    cdef double h = eps * (1.0 + 1.0 / 1048576.0)
    cdef double mn[3]
    cdef double mx[3]
    cdef Py_ssize_t j, k
    for j in range(d):
        mn[j] = X[0, j]
        mx[j] = X[0, j]
    for k in range(1, n):
        for j in range(d):
            if X[k, j] < mn[j]:
                mn[j] = X[k, j]
            elif X[k, j] > mx[j]:
                mx[j] = X[k, j]
    for j in range(d):
        if not (mx[j] - mn[j]) / h < 1048576.0:
            return -1

    cdef int shift = 64
    cdef Py_ssize_t table = 1
    while table < 2 * n:
        table *= 2
        shift -= 1
    cdef Py_ssize_t n_offsets = 3 if d == 1 else (9 if d == 2 else 27)

    hkey_arr = np.full(table, -1, dtype=np.int64)
    hval_arr = np.empty(table, dtype=np.intp)
    cellkey_arr = np.empty(n, dtype=np.int64)     # per cell: its packed coordinates
    cell_of_arr = np.empty(n, dtype=np.intp)      # per row of X, then per position: its cell
    cstart_arr = np.zeros(n + 1, dtype=np.intp)   # cell c holds positions cstart[c]:cstart[c+1]
    idx_arr = np.empty(n, dtype=np.intp)          # position (cell order) -> row of X
    pos_arr = np.empty(n, dtype=np.intp)          # row of X -> position
    pts_arr = np.empty((n, d), dtype=np.float64)  # points in cell order
    nboff_arr = np.zeros(n + 1, dtype=np.intp)    # neighbour cells of cell c: nbc[nboff[c]:nboff[c+1]]
    nbc_arr = np.empty(n * n_offsets, dtype=np.intp)
    todo_count_arr = np.zeros(n, dtype=np.intp)
    lab_arr = np.full(n, -1, dtype=np.intp)
    core_arr = np.zeros(n, dtype=np.uint8)
    off_arr = np.zeros(n + 1, dtype=np.intp)
    todo_arr = np.empty(n, dtype=np.intp)

    cdef long long[::1] hkey_v = hkey_arr, cellkey_v = cellkey_arr
    cdef Py_ssize_t[::1] hval_v = hval_arr, cell_of_v = cell_of_arr, cstart_v = cstart_arr
    cdef Py_ssize_t[::1] idx_v = idx_arr, pos_v = pos_arr, nboff_v = nboff_arr, nbc_v = nbc_arr
    cdef Py_ssize_t[::1] todo_count_v = todo_count_arr, lab_v = lab_arr, off_v = off_arr, todo_v = todo_arr
    cdef double[:, ::1] pts_v = pts_arr
    cdef unsigned char[::1] core_v = core_arr

    cdef const double* Xp = &X[0, 0]
    cdef long long* HKEY = &hkey_v[0]
    cdef long long* CELLKEY = &cellkey_v[0]
    cdef Py_ssize_t* HVAL = &hval_v[0]
    cdef Py_ssize_t* cell_of = &cell_of_v[0]
    cdef Py_ssize_t* CS = &cstart_v[0]
    cdef Py_ssize_t* idx = &idx_v[0]
    cdef Py_ssize_t* pos = &pos_v[0]
    cdef Py_ssize_t* NBOFF = &nboff_v[0]
    cdef Py_ssize_t* NBC = &nbc_v[0]
    cdef Py_ssize_t* TODO_COUNT = &todo_count_v[0]
    cdef Py_ssize_t* lab = &lab_v[0]
    cdef Py_ssize_t* off = &off_v[0]
    cdef Py_ssize_t* todo = &todo_v[0]
    cdef double* P = &pts_v[0, 0]
    cdef unsigned char* core = &core_v[0]

    cdef double r2 = eps * eps
    cdef Py_ssize_t n_cells = 0, slot, cid, i, m, t, o, a, cnt, c, e, top, w, label_num = 0
    cdef long long key, nkey
    cdef long long cc[3]
    cdef long long oc[3]
    cdef const double* q
    cdef bint oom = False, found
    cdef Buf nb  # neighbours of the non-core points (fewer than min_samples each), CSR by off[]
    nb.size = 0
    nb.cap = 4 * n
    nb.data = <Py_ssize_t*> malloc(nb.cap * sizeof(Py_ssize_t))
    if nb.data == NULL:
        raise MemoryError()
    try:
        with nogil:
            # ---- cells: hash the packed integer coordinates (21 bits per dimension)
            for i in range(n):
                key = 0
                for j in range(d):
                    key |= (<long long> ((Xp[i * d + j] - mn[j]) / h)) << (21 * j)
                slot = _slot(<unsigned long long> key, shift)
                while HKEY[slot] != -1 and HKEY[slot] != key:
                    slot = (slot + 1) & (table - 1)
                if HKEY[slot] == -1:
                    HKEY[slot] = key
                    HVAL[slot] = n_cells
                    CELLKEY[n_cells] = key
                    n_cells += 1
                cid = HVAL[slot]
                cell_of[i] = cid
                CS[cid + 1] += 1
            for c in range(n_cells):
                CS[c + 1] += CS[c]
            # counting sort by cell (todo[] as the fill cursor)
            for c in range(n_cells):
                todo[c] = CS[c]
            for i in range(n):
                k = todo[cell_of[i]]
                todo[cell_of[i]] += 1
                idx[k] = i
                pos[i] = k
                for j in range(d):
                    P[k * d + j] = Xp[i * d + j]
            for c in range(n_cells):
                for k in range(CS[c], CS[c + 1]):
                    cell_of[k] = c  # now per position
            # the occupied cells among the 3^d around each cell, itself first
            for c in range(n_cells):
                NBOFF[c + 1] = NBOFF[c]
                key = CELLKEY[c]
                for j in range(d):
                    cc[j] = (key >> (21 * j)) & 0x1FFFFF
                for o in range(n_offsets):
                    a = (o + n_offsets // 2) % n_offsets  # offset (0, .., 0) is number n_offsets // 2
                    nkey = 0
                    found = True
                    for j in range(d):
                        oc[j] = cc[j] + (a % 3) - 1
                        a //= 3
                        if oc[j] < 0:
                            found = False
                        nkey |= oc[j] << (21 * j)
                    if not found:
                        continue
                    slot = _slot(<unsigned long long> nkey, shift)
                    while HKEY[slot] != -1 and HKEY[slot] != nkey:
                        slot = (slot + 1) & (table - 1)
                    if HKEY[slot] != -1:
                        NBC[NBOFF[c + 1]] = HVAL[slot]
                        NBOFF[c + 1] += 1

            # ---- 1. core points: count neighbours until min_samples, own cell first; a point
            # that stays below keeps its (few) neighbours for step 3.
            for k in range(n):
                q = P + k * d
                c = cell_of[k]
                cnt = 0
                for t in range(NBOFF[c], NBOFF[c + 1]):
                    cid = NBC[t]
                    m = CS[cid]
                    e = CS[cid + 1]
                    while m < e and cnt < min_samples:
                        # 64 candidates at a time without branches: write each, keep the hits
                        a = m + 64 if e - m > 64 else e
                        if not _reserve(&nb, a - m):
                            oom = True
                            break
                        while m < a:
                            w = _sqdist_le(q, P + m * d, d, r2)
                            nb.data[nb.size] = m
                            nb.size += w
                            cnt += w
                            m += 1
                    if cnt >= min_samples or oom:
                        break
                if oom:
                    break
                if cnt >= min_samples:
                    core[k] = 1
                    nb.size = off[k]
                    TODO_COUNT[c] += 1
                off[k + 1] = nb.size

            # ---- 2. clusters of core points, numbered in the order of their lowest-index core
            # point; TODO_COUNT[cell]: its core points not yet labelled.
            for i in range(n if not oom else 0):
                k = pos[i]
                if lab[k] != -1 or not core[k]:
                    continue
                lab[k] = label_num
                TODO_COUNT[cell_of[k]] -= 1
                top = 0
                todo[top] = k
                top += 1
                while top > 0:
                    top -= 1
                    k = todo[top]
                    q = P + k * d
                    c = cell_of[k]
                    for t in range(NBOFF[c], NBOFF[c + 1]):
                        cid = NBC[t]
                        if TODO_COUNT[cid] == 0:
                            continue
                        for m in range(CS[cid], CS[cid + 1]):
                            if core[m] and lab[m] == -1 and _within(q, P + m * d, d, r2):
                                lab[m] = label_num
                                TODO_COUNT[cid] -= 1
                                todo[top] = m
                                top += 1
                label_num += 1

            # ---- 3. border points, then the labels back in the caller's row order
            if not oom:
                _finish(n, core, lab, off, nb.data, pos, &labels[0], &is_core[0])
    finally:
        free(nb.data)
    if oom:
        raise MemoryError()
    return label_num


cdef inline Py_ssize_t _find(Py_ssize_t* parent, Py_ssize_t k) noexcept nogil:
    """Root of k's tree (path halving)."""
    while parent[k] != k:
        parent[k] = parent[parent[k]]
        k = parent[k]
    return k


cdef inline void _union(Py_ssize_t* parent, Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    """Merge the trees of a and b; the root is the lower index, so a root is its tree's first point."""
    a = _find(parent, a)
    b = _find(parent, b)
    if a < b:
        parent[b] = a
    elif b < a:
        parent[a] = b


cdef inline bint _boxes_apart(const double* lo_a, const double* hi_a, const double* lo_b, const double* hi_b,
                              Py_ssize_t d, double r2) noexcept nogil:
    """True when every point of box a is farther than sqrt(r2) from every point of box b."""
    cdef double s = 0.0, t
    cdef Py_ssize_t j
    for j in range(d):
        if lo_b[j] > hi_a[j]:
            t = lo_b[j] - hi_a[j]
        elif lo_a[j] > hi_b[j]:
            t = lo_a[j] - hi_b[j]
        else:
            continue
        s += t * t
        if s > r2:
            return True
    return False


cdef struct Pairs:
    # the centred points in tree order, [c, 1] and [c, -|c|^2 / 2], K = d + 1 columns each
    double* rows
    double* cols
    double* norm      # |c|^2 per position
    const double* P   # the original points in tree order (exact distances)
    const Py_ssize_t* idx  # position -> row of X
    double* tile      # scratch: one tile of the product
    Py_ssize_t* hit   # scratch: column offsets of one row's candidates
    Py_ssize_t* count  # per row of X: neighbours found so far, itself included
    Py_ssize_t* parent  # per row of X: union-find of the core points
    Buf kept          # pairs of rows not merged on the spot, flat
    Py_ssize_t d
    Py_ssize_t chunk   # columns per dgemm call
    Py_ssize_t min_samples
    double r2
    double tol


cdef bint _tile_pairs(Pairs* w, Py_ssize_t i0, int ri, Py_ssize_t j0, Py_ssize_t je) noexcept nogil:
    """Every pair (i, j), i in positions [i0, i0 + ri), j in [j0, je), j > i, within eps: counted,
    and merged or kept. Columns in chunks of at most ``w.chunk``. False when out of memory."""
    cdef int K = <int> (w.d + 1), cj
    cdef double alpha = -2.0, beta = 0.0, maxn, band, t_hi, t_lo
    cdef char trans_t = b'T', trans_n = b'N'
    cdef Py_ssize_t i, j, k, t, js, nh, a, b, c0
    cdef double* g
    c0 = j0 - w.chunk
    while c0 + w.chunk < je:
        c0 += w.chunk
        cj = <int> (w.chunk if je - c0 > w.chunk else je - c0)
        if c0 + cj <= i0 + 1:  # every pair here has j <= i
            continue
        maxn = 0.0
        for j in range(c0, c0 + cj):
            if w.norm[j] > maxn:
                maxn = w.norm[j]
        # tile[k, t] = |c_j|^2 - 2 c_i.c_j (row-major ri x cj): cols . rows^T in BLAS's column-major terms
        dgemm(&trans_t, &trans_n, &cj, &ri, &K, &alpha, w.cols + c0 * K, &K, w.rows + i0 * K, &K, &beta,
              w.tile, &cj)
        for k in range(ri):
            i = i0 + k
            js = i + 1 - c0 if i >= c0 else 0
            if js >= cj:
                continue
            g = w.tile + k * cj + js
            band = w.tol * (w.norm[i] + maxn + w.r2)
            t_hi = w.r2 + band - w.norm[i]
            t_lo = w.r2 - band - w.norm[i]
            nh = _scan_le(g, cj - js, t_hi, w.hit)
            for t in range(nh):
                j = c0 + js + w.hit[t]
                if g[w.hit[t]] > t_lo and not _within(w.P + i * w.d, w.P + j * w.d, w.d, w.r2):
                    continue
                a = w.idx[i]
                b = w.idx[j]
                w.count[a] += 1
                w.count[b] += 1
                if w.count[a] >= w.min_samples and w.count[b] >= w.min_samples:
                    _union(w.parent, a, b)
                else:
                    if not _reserve(&w.kept, 2):
                        return False
                    w.kept.data[w.kept.size] = a
                    w.kept.data[w.kept.size + 1] = b
                    w.kept.size += 2
    return True


def dbscan_brute(const double[:, ::1] X, double eps, Py_ssize_t min_samples, long long[::1] labels,
                 unsigned char[::1] is_core, Py_ssize_t tile=64):
    """Same contract as :func:`dbscan_kdtree`, from BLAS matrix products between groups of at most
    ``tile`` nearby points (no per-point queries); returns the number of clusters, or -1 without
    touching the outputs when the data lies too far from its mean for the rounding band below to
    stay narrow (tol * |c|^2 > eps^2 / 1000: the caller then uses the KD-tree).

    Groups are the leaves of a KD-tree. For each leaf a, the leaves b >= a (tree order) whose box
    comes within eps of a's box form runs of consecutive leaves, and dgemm calls of at most 2^18
    multiply-adds each (below OpenBLAS's threshold for threading: many small single-threaded
    products beat threaded ones on a busy machine) give g_ij = |c_j|^2 - 2 c_i.c_j for the points
    centred on their mean (c). d_ij^2 is about g_ij + |c_i|^2, and differs from the exact in-order
    sum over the original coordinates by less than tol * (|c_i|^2 + |c_j|^2 + eps^2),
    tol = (d + 4) * 1e-15 (about four times the rounding bounds of the product, the centring and
    the plain sum): a pair below that band is a neighbour, a pair above it is not, a pair inside it
    gets its exact distance.

    Each pair is seen once (j > i). A pair within eps adds one to both points' counts; once both
    counts have reached min_samples both points are core and are merged on the spot (union-find
    over rows of X), otherwise the pair is kept. A kept pair is charged to an endpoint whose count
    is still below min_samples, so fewer than n * min_samples pairs are kept, and every pair of a
    non-core point is kept. At the end the kept pairs of two core points are merged too, clusters
    are numbered by their first core point (a union-find root is its tree's lowest row), and a
    border point takes the lowest cluster among its core neighbours."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1]
    if labels.shape[0] != n or is_core.shape[0] != n:
        raise ValueError("labels and is_core must have one entry per row of X")
    if n == 0:
        return 0
    if d < 1 or not eps > 0 or min_samples < 1 or tile < 1:
        raise ValueError("need d >= 1, eps > 0, min_samples >= 1 and tile >= 1")
    cdef Py_ssize_t chunk = max(1, (1 << 18) // (tile * (d + 1)))
    cdef Py_ssize_t n_levels = 1
    while (tile << (n_levels - 1)) < n:
        n_levels += 1
    cdef Py_ssize_t n_nodes = (1 << n_levels) - 1, first_leaf = (1 << (n_levels - 1)) - 1
    cdef Py_ssize_t K = d + 1
    idx_arr = np.arange(n, dtype=np.intp)
    lo_arr = np.empty((n_nodes, d), dtype=np.float64)
    hi_arr = np.empty((n_nodes, d), dtype=np.float64)
    nstart_arr = np.empty(n_nodes, dtype=np.intp)
    nend_arr = np.empty(n_nodes, dtype=np.intp)
    split_arr = np.zeros(n_nodes, dtype=np.intp)
    leaf_of_arr = np.empty(n, dtype=np.intp)
    key_arr = np.empty(n, dtype=np.float64)
    pts_arr = np.empty((n, d), dtype=np.float64)
    rows_arr = np.empty((n, K), dtype=np.float64)
    cols_arr = np.empty((n, K), dtype=np.float64)
    norm_arr = np.empty(n, dtype=np.float64)
    mean_arr = np.zeros(d, dtype=np.float64)
    tile_arr = np.empty(tile * chunk, dtype=np.float64)
    hit_arr = np.empty(chunk, dtype=np.intp)
    count_arr = np.ones(n, dtype=np.intp)
    parent_arr = np.arange(n, dtype=np.intp)
    lab_arr = np.full(n, -1, dtype=np.intp)
    cdef Py_ssize_t[::1] idx_v = idx_arr, nstart_v = nstart_arr, nend_v = nend_arr, split_v = split_arr
    cdef Py_ssize_t[::1] leaf_of_v = leaf_of_arr, hit_v = hit_arr, count_v = count_arr
    cdef Py_ssize_t[::1] parent_v = parent_arr, lab_v = lab_arr
    cdef double[:, ::1] lo_v = lo_arr, hi_v = hi_arr, pts_v = pts_arr, rows_v = rows_arr, cols_v = cols_arr
    cdef double[::1] key_v = key_arr, norm_v = norm_arr, mean_v = mean_arr, tile_v = tile_arr
    cdef const double* Xp = &X[0, 0]
    cdef Py_ssize_t* idx = &idx_v[0]
    cdef double* LO = &lo_v[0, 0]
    cdef double* HI = &hi_v[0, 0]
    cdef Py_ssize_t* NS = &nstart_v[0]
    cdef Py_ssize_t* NE = &nend_v[0]
    cdef double* P = &pts_v[0, 0]
    cdef double* mean = &mean_v[0]
    cdef Py_ssize_t* lab = &lab_v[0]
    cdef long long* out_lab = &labels[0]
    cdef unsigned char* core = &is_core[0]
    cdef Pairs w
    w.rows = &rows_v[0, 0]
    w.cols = &cols_v[0, 0]
    w.norm = &norm_v[0]
    w.P = P
    w.idx = idx
    w.tile = &tile_v[0]
    w.hit = &hit_v[0]
    w.count = &count_v[0]
    w.parent = &parent_v[0]
    w.d = d
    w.chunk = chunk
    w.min_samples = min_samples
    w.r2 = eps * eps
    w.tol = (d + 4) * 1e-15

    cdef Py_ssize_t i, j, k, t, a, b, s = 0, e = 0, j0, je, label_num = 0
    cdef double v, sq, maxn = 0.0
    cdef bint take, oom = False
    with nogil:
        _build_tree(Xp, n, d, n_nodes, first_leaf, idx, LO, HI, NS, NE, &split_v[0], &key_v[0], &leaf_of_v[0])
        for i in range(n):
            for j in range(d):
                mean[j] += Xp[i * d + j]
        for j in range(d):
            mean[j] /= n
        for k in range(n):
            sq = 0.0
            for j in range(d):
                v = Xp[idx[k] * d + j]
                P[k * d + j] = v
                v = v - mean[j]
                w.rows[k * K + j] = v
                w.cols[k * K + j] = v
                sq += v * v
            w.norm[k] = sq
            w.rows[k * K + d] = 1.0
            w.cols[k * K + d] = -0.5 * sq
            if not sq <= maxn:  # also catches NaN from overflow
                maxn = sq
    if not (maxn < 1e300 and w.tol * maxn <= 1e-3 * w.r2):
        return -1

    w.kept.size = 0
    w.kept.cap = 2 * n
    w.kept.data = <Py_ssize_t*> malloc(w.kept.cap * sizeof(Py_ssize_t))
    if w.kept.data == NULL:
        raise MemoryError()
    try:
        with nogil:
            # ---- every pair once, in tiles: rows from leaf a, columns from runs of leaves b >= a
            for a in range(first_leaf, n_nodes):
                if NE[a] == NS[a]:
                    continue
                j0 = -1
                je = -1
                for b in range(a, n_nodes + 1):
                    take = False
                    if b < n_nodes:
                        s = NS[b]
                        e = NE[b]
                        if s == e:
                            continue
                        take = not _boxes_apart(LO + a * d, HI + a * d, LO + b * d, HI + b * d, d, w.r2)
                    if j0 >= 0 and not take:
                        if not _tile_pairs(&w, NS[a], <int> (NE[a] - NS[a]), j0, je):
                            oom = True
                            break
                        j0 = -1
                    if take:
                        if j0 < 0:
                            j0 = s
                        je = e
                if oom:
                    break

            if not oom:
                # ---- core points, clusters (kept pairs of two core points merged too), borders
                for i in range(n):
                    core[i] = w.count[i] >= min_samples
                for t in range(w.kept.size // 2):
                    a = w.kept.data[2 * t]
                    b = w.kept.data[2 * t + 1]
                    if core[a] and core[b]:
                        _union(w.parent, a, b)
                for i in range(n):
                    if core[i]:
                        k = _find(w.parent, i)
                        if k == i:
                            lab[i] = label_num
                            label_num += 1
                        else:
                            lab[i] = lab[k]
                for t in range(w.kept.size // 2):
                    a = w.kept.data[2 * t]
                    b = w.kept.data[2 * t + 1]
                    if core[a] != core[b]:
                        if core[b]:
                            a, b = b, a
                        if lab[b] == -1 or lab[a] < lab[b]:
                            lab[b] = lab[a]
                for i in range(n):
                    out_lab[i] = lab[i]
    finally:
        free(w.kept.data)
    if oom:
        raise MemoryError()
    return label_num


BRUTE_MIN_DIMENSIONS = 8


def dbscan_inner(const double[:, ::1] X, double eps, Py_ssize_t min_samples, long long[::1] labels,
                 unsigned char[::1] is_core, Py_ssize_t leaf_size=0):
    """Cluster the rows of ``X`` (C-contiguous, finite, 2-D with >= 1 column) into the caller's
    ``labels`` (-1 noise, clusters 0..k-1) and ``is_core`` (1 for core points); returns k.

    By dimension: the grid for 1 to 3 (unless the data spans 2^20 cells or more in a dimension),
    the KD-tree for 4 to 7, the tiled BLAS products of :func:`dbscan_brute` from
    ``BRUTE_MIN_DIMENSIONS`` = 8 on (unless the data lies too far from its mean for them), the
    KD-tree whenever the first choice declines. All give the same labels. ``leaf_size`` 0 picks the
    KD-tree's leaf size from the dimension (larger leaves amortise the traversal when pruning
    gets weaker)."""
    cdef Py_ssize_t found, d = X.shape[1]
    if d <= 3:
        found = dbscan_grid(X, eps, min_samples, labels, is_core)
        if found >= 0:
            return found
    elif d >= BRUTE_MIN_DIMENSIONS:
        found = dbscan_brute(X, eps, min_samples, labels, is_core)
        if found >= 0:
            return found
    if leaf_size <= 0:
        leaf_size = 32 if d <= 3 else (128 if d < 12 else 256)
    return dbscan_kdtree(X, eps, min_samples, labels, is_core, leaf_size)
