# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Resample irregular readings onto a fixed time grid (the hot loop; validation is in resample.py)."""
from libc.math cimport NAN


def resample_linear(const long long[::1] ts_ms, const double[::1] values, long long start_ms,
                    long long step_ms, long long max_gap_ms, double[::1] out):
    """Fill ``out[k]`` with the value at ``start_ms + k * step_ms``, linearly interpolated between the
    neighbouring readings when they are at most ``max_gap_ms`` apart, NaN otherwise.

    ``ts_ms`` must be strictly increasing; the caller allocates ``out``.
    """
    cdef Py_ssize_t n = ts_ms.shape[0], m = out.shape[0], i = 0, k
    cdef long long t, t0, t1
    with nogil:
        for k in range(m):
            t = start_ms + k * step_ms
            while i < n and ts_ms[i] < t:
                i += 1
            if i < n and ts_ms[i] == t:
                out[k] = values[i]
            elif 0 < i < n:
                t0 = ts_ms[i - 1]
                t1 = ts_ms[i]
                if t1 - t0 <= max_gap_ms:
                    out[k] = values[i - 1] + (values[i] - values[i - 1]) * (<double>(t - t0) / <double>(t1 - t0))
                else:
                    out[k] = NAN
            else:
                out[k] = NAN
