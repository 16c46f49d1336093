# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Clean one meter's window of readings in a single nogil pass (the hot loop of the preprocessing job).

Validation, allocation and the record live in ``gridflow/preprocess/clean.py``; the numpy reference
used by the tests is ``native/reference.py: clean_window_reference``.
"""
from libc.math cimport NAN, fabs, sqrt, isnan, isfinite
from libc.stdint cimport int64_t, uint8_t

import numpy as np

# indices into the ``stats`` output
DEF S_ENERGY = 0
DEF S_MEAN = 1
DEF S_PEAK = 2
DEF S_MIN = 3
DEF S_STD = 4
DEF S_PEAK_ENERGY = 5
DEF S_KNOWN = 6
DEF S_INTERPOLATED = 7
DEF S_RAW_MAX = 8
DEF S_STUCK_RUN = 9
DEF S_OUTLIERS = 10
N_STATS = 11


cdef inline double _median(double* buf, Py_ssize_t n) noexcept nogil:
    """Median of ``buf[:n]`` (sorted in place by insertion sort: windows are small)."""
    cdef Py_ssize_t i, j
    cdef double x
    for i in range(1, n):
        x = buf[i]
        j = i - 1
        while j >= 0 and buf[j] > x:
            buf[j + 1] = buf[j]
            j -= 1
        buf[j + 1] = x
    if n % 2:
        return buf[n // 2]
    return 0.5 * (buf[n // 2 - 1] + buf[n // 2])


cdef Py_ssize_t _clean_one(const int64_t* ts_in, const double* power_in, Py_ssize_t n, int64_t start_ms,
                           int64_t step_ms, int64_t max_gap_ms, Py_ssize_t hampel_window, double n_sigmas,
                           double min_sigma, double noise_floor, int64_t utc_offset_ms, const uint8_t* peak_hour,
                           int64_t* ts, double* raw, double* clean, uint8_t* outlier, double* grid, Py_ssize_t n_grid,
                           uint8_t* measured, double* medians, double* sigmas, double* buf,
                           double* stats) noexcept nogil:
    """One window (``n >= 1`` readings): the body of :func:`clean_kernel`, on raw pointers so that
    :func:`clean_batch` can run it over many windows without touching Python objects."""
    cdef Py_ssize_t i, j, k, m, width, half, c, n_known = 0
    cdef Py_ssize_t n_interp = 0, n_out = 0, stuck = 0
    cdef int64_t t, x_ts
    cdef double x, med, energy = 0.0, peak_energy = 0.0, total = 0.0, sq = 0.0, hi = 0.0, lo = 0.0
    cdef double step_h = step_ms / 3_600_000.0, raw_max
    # 1. stable insertion sort by time (windows arrive nearly sorted), then drop repeated timestamps
    for i in range(n):
        x_ts = ts_in[i]
        x = power_in[i]
        j = i - 1
        while j >= 0 and ts[j] > x_ts:
            ts[j + 1] = ts[j]
            raw[j + 1] = raw[j]
            j -= 1
        ts[j + 1] = x_ts
        raw[j + 1] = x
    m = 0
    for i in range(n):
        if m == 0 or ts[i] != ts[m - 1]:
            ts[m] = ts[i]
            raw[m] = raw[i]
            m += 1
    # 2. Hampel: medians and robust sigmas of every full window, endpoints never judged
    for i in range(m):
        clean[i] = raw[i]
        outlier[i] = 0
    if m >= 3:
        width = hampel_window if hampel_window < m else (m if m % 2 else m - 1)
        half = width // 2
        for j in range(m - width + 1):
            for k in range(width):
                buf[k] = raw[j + k]
            med = _median(&buf[0], width)
            for k in range(width):
                buf[k] = fabs(raw[j + k] - med)
            medians[j] = med
            sigmas[j] = max(1.4826 * _median(&buf[0], width), min_sigma)
        for i in range(1, m - 1):
            c = min(max(i - half, 0), m - width)
            if fabs(raw[i] - medians[c]) > n_sigmas * sigmas[c]:
                outlier[i] = 1
                clean[i] = medians[c]
                n_out += 1
    # 3. noise floor
    for i in range(m):
        if fabs(clean[i]) < noise_floor:
            clean[i] = 0.0
    # 4. resample onto the grid; hold an edge reading for less than one step
    i = 0
    for k in range(n_grid):
        t = start_ms + k * step_ms
        measured[k] = 0
        while i < m and ts[i] < t:
            i += 1
        if i < m and ts[i] == t:
            grid[k] = clean[i]
        elif 0 < i < m:
            if ts[i] - ts[i - 1] <= max_gap_ms:
                grid[k] = clean[i - 1] + (clean[i] - clean[i - 1]) * (<double>(t - ts[i - 1]) / <double>(ts[i] - ts[i - 1]))
            else:
                grid[k] = NAN
        elif i == 0 and ts[0] - t < step_ms:
            grid[k] = clean[0]
        elif i == m and t - ts[m - 1] < step_ms:
            grid[k] = clean[m - 1]
        else:
            grid[k] = NAN
    for i in range(m):
        measured[(ts[i] - start_ms) // step_ms] = 1
    # 5. features over the known grid points
    for k in range(n_grid):
        x = grid[k]
        if isnan(x):
            continue
        if n_known == 0 or x > hi:
            hi = x
        if n_known == 0 or x < lo:
            lo = x
        n_known += 1
        total += x
        if not measured[k]:
            n_interp += 1
        t = ((start_ms + k * step_ms + utc_offset_ms) // 3_600_000) % 24
        if t < 0:
            t += 24
        if peak_hour[t]:
            peak_energy += x * step_h
    energy = total * step_h
    raw_max = raw[0]
    for i in range(m):
        raw_max = max(raw_max, raw[i])
    for i in range(m - 1, -1, -1):
        if raw[i] != raw[m - 1]:
            break
        stuck += 1
    stats[S_ENERGY] = energy
    stats[S_PEAK_ENERGY] = peak_energy
    stats[S_KNOWN] = n_known
    stats[S_INTERPOLATED] = n_interp
    stats[S_RAW_MAX] = raw_max
    stats[S_STUCK_RUN] = stuck
    stats[S_OUTLIERS] = n_out
    if n_known:
        stats[S_MEAN] = total / n_known
        for k in range(n_grid):
            if not isnan(grid[k]):
                sq += (grid[k] - stats[S_MEAN]) * (grid[k] - stats[S_MEAN])
        stats[S_STD] = sqrt(sq / n_known)
        stats[S_PEAK] = hi
        stats[S_MIN] = lo
    else:
        stats[S_MEAN] = NAN
        stats[S_STD] = NAN
        stats[S_PEAK] = NAN
        stats[S_MIN] = NAN
    return m


def clean_kernel(const int64_t[::1] ts_in, const double[::1] power_in, int64_t start_ms, int64_t step_ms,
                 int64_t max_gap_ms, Py_ssize_t hampel_window, double n_sigmas, double min_sigma,
                 double noise_floor, int64_t utc_offset_ms, const uint8_t[::1] peak_hour,
                 int64_t[::1] ts, double[::1] raw, double[::1] clean, uint8_t[::1] outlier,
                 double[::1] grid, uint8_t[::1] measured, double[::1] medians, double[::1] sigmas,
                 double[::1] buf, double[::1] stats):
    """Sort, de-duplicate, Hampel-filter, de-noise, resample and summarise; returns the number of unique
    readings ``m`` (``ts[:m]``, ``raw[:m]``, ``clean[:m]``, ``outlier[:m]`` are filled).

    Output buffers are allocated by the caller: ``ts``, ``raw``, ``clean``, ``outlier``, ``medians``,
    ``sigmas`` of ``len(ts_in)``; ``buf`` of ``hampel_window``; ``grid``, ``measured`` of the grid size;
    ``stats`` of ``N_STATS``.
    """
    cdef Py_ssize_t m
    with nogil:
        m = _clean_one(&ts_in[0], &power_in[0], ts_in.shape[0], start_ms, step_ms, max_gap_ms, hampel_window,
                       n_sigmas, min_sigma, noise_floor, utc_offset_ms, &peak_hour[0], &ts[0], &raw[0], &clean[0],
                       &outlier[0], &grid[0], grid.shape[0], &measured[0], &medians[0], &sigmas[0], &buf[0], &stats[0])
    return m


def clean_batch(const int64_t[::1] ts_in, const double[::1] power_in, const int64_t[::1] offsets,
                const int64_t[::1] starts, const int64_t[::1] utc_offsets, int64_t step_ms, int64_t max_gap_ms,
                Py_ssize_t hampel_window, double n_sigmas, double min_sigma, double noise_floor,
                const uint8_t[::1] peak_hour, int64_t[::1] m_out, double[:, ::1] stats, double[:, ::1] grid,
                int64_t[::1] ts, double[::1] raw, uint8_t[::1] outlier):
    """:func:`clean_kernel` over many windows in one call (the job's vectorised path).

    Window ``w`` holds the readings ``offsets[w]:offsets[w + 1]`` of ``ts_in``/``power_in`` (any order,
    duplicates allowed, at least one), starts at ``starts[w]`` and has the local-time offset
    ``utc_offsets[w]``; its grid (``grid.shape[1]`` points of ``step_ms``) is the window. Outputs per window:
    ``m_out[w]`` unique readings, ``stats[w]`` (``N_STATS``), ``grid[w]``, and at the window's own offsets
    the sorted unique readings ``ts``/``raw`` and their ``outlier`` flags (first ``m_out[w]`` entries).
    Raises ValueError naming the first window with a reading outside it or a non-finite power.
    """
    cdef Py_ssize_t n_windows = starts.shape[0], n_grid = grid.shape[1], w, i, a, n, max_n = 1, bad = -1
    cdef int64_t end_ms
    if offsets.shape[0] != n_windows + 1 or utc_offsets.shape[0] != n_windows or m_out.shape[0] != n_windows:
        raise ValueError("offsets must have one entry more than starts; utc_offsets and m_out one per window")
    if stats.shape[0] != n_windows or grid.shape[0] != n_windows or stats.shape[1] != N_STATS:
        raise ValueError(f"stats must be (windows, {N_STATS}) and grid (windows, grid points)")
    if ts_in.shape[0] != power_in.shape[0] or ts.shape[0] < ts_in.shape[0] or raw.shape[0] < ts_in.shape[0] \
            or outlier.shape[0] < ts_in.shape[0] or peak_hour.shape[0] != 24 or hampel_window < 1:
        raise ValueError("ts_in and power_in must be equally long, the outputs at least as long; peak_hour of 24")
    for w in range(n_windows):
        n = offsets[w + 1] - offsets[w]
        if n < 1 or offsets[w] < 0 or offsets[w + 1] > ts_in.shape[0]:
            raise ValueError(f"window {w}: offsets {offsets[w]}..{offsets[w + 1]} must hold at least one reading")
        max_n = max(max_n, n)
    clean_np = np.empty(max_n, dtype=np.float64)
    medians_np = np.empty(max_n, dtype=np.float64)
    sigmas_np = np.empty(max_n, dtype=np.float64)
    measured_np = np.empty(max(n_grid, 1), dtype=np.uint8)
    buf_np = np.empty(hampel_window, dtype=np.float64)
    cdef double[::1] clean = clean_np, medians = medians_np, sigmas = sigmas_np, buf = buf_np
    cdef uint8_t[::1] measured = measured_np
    with nogil:
        for w in range(n_windows):
            a = offsets[w]
            n = offsets[w + 1] - a
            end_ms = starts[w] + n_grid * step_ms
            for i in range(a, a + n):
                if ts_in[i] < starts[w] or ts_in[i] >= end_ms or not isfinite(power_in[i]):
                    bad = w
                    break
            if bad >= 0:
                break
            m_out[w] = _clean_one(&ts_in[a], &power_in[a], n, starts[w], step_ms, max_gap_ms, hampel_window,
                                  n_sigmas, min_sigma, noise_floor, utc_offsets[w], &peak_hour[0], &ts[a], &raw[a],
                                  &clean[0], &outlier[a], &grid[w, 0], n_grid, &measured[0], &medians[0], &sigmas[0],
                                  &buf[0], &stats[w, 0])
    if bad >= 0:
        raise ValueError(f"window {bad} (start {starts[bad]}): every ts_ms must lie in the window and every "
                         f"power_w must be finite")
