"""Cleaning one meter's readings of one window into a feature record (numpy only, no Flink).

Steps, in order, on the readings of one meter in ``[start_ms, start_ms + window_ms)``:

1. **Order and de-duplicate**: sort by time; a second reading with the same ``ts_ms`` (a redelivery)
   is dropped and counted in ``n_duplicates``.
2. **Outliers (Hampel)**: a reading further than ``n_sigmas * sigma`` from the median of the
   ``hampel_window`` readings centred on it is replaced by that median; ``sigma = 1.4826 * MAD``,
   floored at ``min_sigma_w`` so a flat load does not turn every small step into an outlier. Near the
   window edges the window is the first/last full window. The first and last reading of a window are
   not judged: without the neighbouring window a spike cannot be told from a step (an appliance
   switching on); the raw maximum is kept in ``raw_max_w`` for the anomaly detector either way.
3. **Noise**: ``|power| < noise_floor_w`` is sensor noise and becomes 0 W.
4. **Resample** onto the grid ``start_ms + k * step_ms``: linear interpolation between readings at
   most ``max_gap_ms`` apart (Cython kernel ``native.resample``); a grid point inside a longer gap is
   missing (NaN), never invented. A grid point before the first or after the last reading takes that
   reading's value only if it is less than one grid step away (sampling jitter), else it is missing.
5. **Features** over the known grid points: energy, mean, peak, min, standard deviation, load factor,
   share of energy in peak hours, and counts of what was done (duplicates, outliers, interpolated and
   missing grid points).

>>> p = CleaningParams(window_ms=60_000, step_ms=10_000)
>>> f = clean_window([0, 10_000, 20_000, 20_000, 30_000, 40_000, 50_000],
...                  [100.0, 110.0, 5_000.0, 5_000.0, 120.0, 100.0, 110.0], start_ms=0, params=p)
>>> f.n_readings, f.n_duplicates, f.n_outliers, f.outlier_values, f.mean_w
(6, 1, 1, [5000.0], 108.33333333333333)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gridflow.native._clean import N_STATS, clean_batch, clean_kernel

MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution times this is its standard deviation


@dataclass(frozen=True)
class CleaningParams:
    """Parameters of :func:`clean_window`; :meth:`from_settings` reads the ``preprocess`` section."""

    window_ms: int = 60_000
    step_ms: int = 10_000
    max_gap_ms: int = 300_000
    hampel_window: int = 7
    hampel_n_sigmas: float = 3.0
    hampel_min_sigma_w: float = 20.0
    noise_floor_w: float = 5.0
    peak_hours: frozenset[int] = frozenset({17, 18, 19, 20})

    def __post_init__(self):
        if self.window_ms <= 0 or self.step_ms <= 0 or self.window_ms % self.step_ms:
            raise ValueError(f"window_ms ({self.window_ms}) must be a positive multiple of step_ms ({self.step_ms})")
        if self.hampel_window < 3 or self.hampel_window % 2 == 0:
            raise ValueError(f"hampel_window must be odd and >= 3, got {self.hampel_window}")

    @classmethod
    def from_settings(cls, preprocess) -> "CleaningParams":
        return cls(
            preprocess.window_s * 1000,
            preprocess.resample_s * 1000,
            preprocess.max_gap_s * 1000,
            preprocess.hampel_window,
            preprocess.hampel_n_sigmas,
            preprocess.hampel_min_sigma_w,
            preprocess.noise_floor_w,
            frozenset(preprocess.peak_hours),
        )


@dataclass
class WindowFeatures:
    """Features of one meter's window; values in W, Wh; NaN-free (None when nothing is known)."""

    window_start_ms: int
    window_end_ms: int
    n_readings: int
    n_duplicates: int
    n_outliers: int
    n_interpolated: int
    n_missing: int
    coverage: float
    energy_wh: float
    mean_w: float | None
    peak_w: float | None
    min_w: float | None
    std_w: float | None
    load_factor: float | None
    peak_share: float | None
    raw_max_w: float
    stuck_run: int
    outlier_values: list[float] = field(default_factory=list)
    grid_w: list[float | None] = field(default_factory=list)

    def to_record(self, household_id: str, meter_id: str) -> dict:
        return {"household_id": household_id, "meter_id": meter_id, **self.__dict__}


def _none(value: float) -> float | None:
    return None if value != value else value


def clean_window(
    ts_ms, power_w, start_ms: int, params: CleaningParams = CleaningParams(), utc_offset_ms: int = 0
) -> WindowFeatures:
    """Clean the readings of one meter in one window and compute its features.

    Parameters
    ----------
    ts_ms, power_w : sequence
        Reading times (epoch ms, any order, duplicates allowed) and power (W), same length, at least one.
    start_ms : int
        Window start; every ``ts_ms`` must lie in ``[start_ms, start_ms + params.window_ms)``.
    params : CleaningParams
        See the module docstring.
    utc_offset_ms : int
        Offset of local time at the window (peak hours are local hours).
    """
    ts = np.ascontiguousarray(ts_ms, dtype=np.int64)
    power = np.ascontiguousarray(power_w, dtype=np.float64)
    end_ms = start_ms + params.window_ms
    n = ts.size
    if ts.ndim != 1 or ts.shape != power.shape or not n:
        raise ValueError(f"ts_ms and power_w must be 1-D, equally long and non-empty, got {ts.shape}, {power.shape}")
    if ts.min() < start_ms or ts.max() >= end_ms:
        raise ValueError(f"ts_ms must lie in the window [{start_ms}, {end_ms}), got {ts.min()}..{ts.max()}")
    if not np.isfinite(power).all():
        raise ValueError("power_w must be finite")
    n_grid = params.window_ms // params.step_ms
    work = np.empty((5, n), dtype=np.float64)  # raw, clean, medians, sigmas + int64 view for ts
    ts_sorted = np.empty(n, dtype=np.int64)
    outlier = np.empty(n, dtype=np.uint8)
    grid = np.empty(n_grid, dtype=np.float64)
    measured = np.empty(n_grid, dtype=np.uint8)
    buf = np.empty(params.hampel_window, dtype=np.float64)
    stats = np.empty(N_STATS, dtype=np.float64)
    m = clean_kernel(
        ts,
        power,
        start_ms,
        params.step_ms,
        params.max_gap_ms,
        params.hampel_window,
        params.hampel_n_sigmas,
        params.hampel_min_sigma_w,
        params.noise_floor_w,
        utc_offset_ms,
        _peak_mask(params.peak_hours),
        ts_sorted,
        work[0],
        work[1],
        outlier,
        grid,
        measured,
        work[2],
        work[3],
        buf,
        stats,
    )
    raw = work[0, :m]
    return WindowFeatures(
        **_fields(int(start_ms), int(end_ms), n, m, n_grid, stats.tolist(), grid.tolist(), raw, outlier[:m])
    )


def _fields(
    start_ms: int,
    end_ms: int,
    n: int,
    m: int,
    n_grid: int,
    stats: list,
    grid: list,
    raw: np.ndarray,
    outlier: np.ndarray,
) -> dict:
    """The :class:`WindowFeatures` fields of one window from the kernel's outputs (shared by the one-window and
    the batched path, so both give the same record). ``raw``/``outlier`` are the window's ``m`` unique readings."""
    energy, mean, peak, low, std, peak_energy, known, interpolated, raw_max, stuck, n_out = stats
    return {
        "window_start_ms": start_ms,
        "window_end_ms": end_ms,
        "n_readings": m,
        "n_duplicates": n - m,
        "n_outliers": int(n_out),
        "n_interpolated": int(interpolated),
        "n_missing": n_grid - int(known),
        "coverage": known / n_grid,
        "energy_wh": energy,
        "mean_w": _none(mean),
        "peak_w": _none(peak),
        "min_w": _none(low),
        "std_w": _none(std),
        "load_factor": (mean / peak if peak else None) if known else None,
        "peak_share": peak_energy / energy if energy > 0 else None,
        "raw_max_w": raw_max,
        "stuck_run": int(stuck),
        "outlier_values": raw[outlier.view(bool)].tolist() if n_out else [],
        "grid_w": [None if v != v else v for v in grid],
    }


def clean_windows(
    ts_ms: np.ndarray,
    power_w: np.ndarray,
    offsets: np.ndarray,
    starts_ms: np.ndarray,
    params: CleaningParams = CleaningParams(),
    utc_offsets_ms: np.ndarray | None = None,
) -> list[dict]:
    """:func:`clean_window` of many windows in one call (one Cython pass, ``native._clean.clean_batch``).

    Window ``w`` holds the readings ``offsets[w]:offsets[w + 1]`` of the concatenated ``ts_ms``/``power_w``
    (at least one each) and starts at ``starts_ms[w]``. Returns per window the fields of its
    :class:`WindowFeatures` as a dict (``WindowFeatures(**d)`` rebuilds it), equal to :func:`clean_window`'s.

    >>> p = CleaningParams(window_ms=60_000, step_ms=10_000)
    >>> a, b = clean_windows(np.array([0, 10_000, 60_000]), np.array([100.0, 300.0, 50.0]), np.array([0, 2, 3]),
    ...                      np.array([0, 60_000]), p)
    >>> a["mean_w"], a["n_missing"], b["grid_w"]
    (200.0, 4, [50.0, None, None, None, None, None])
    """
    ts = np.ascontiguousarray(ts_ms, dtype=np.int64)
    power = np.ascontiguousarray(power_w, dtype=np.float64)
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    starts = np.ascontiguousarray(starts_ms, dtype=np.int64)
    n_windows = starts.size
    utc = (
        np.zeros(n_windows, dtype=np.int64)
        if utc_offsets_ms is None
        else np.ascontiguousarray(utc_offsets_ms, dtype=np.int64)
    )
    n_grid = params.window_ms // params.step_ms
    m = np.empty(n_windows, dtype=np.int64)
    stats = np.empty((n_windows, N_STATS), dtype=np.float64)
    grid = np.empty((n_windows, n_grid), dtype=np.float64)
    ts_sorted = np.empty(ts.size, dtype=np.int64)
    raw = np.empty(ts.size, dtype=np.float64)
    outlier = np.empty(ts.size, dtype=np.uint8)
    clean_batch(
        ts,
        power,
        offsets,
        starts,
        utc,
        params.step_ms,
        params.max_gap_ms,
        params.hampel_window,
        params.hampel_n_sigmas,
        params.hampel_min_sigma_w,
        params.noise_floor_w,
        _peak_mask(params.peak_hours),
        m,
        stats,
        grid,
        ts_sorted,
        raw,
        outlier,
    )
    window_ms = params.window_ms
    lengths = np.diff(offsets).tolist()
    return [
        _fields(start, start + window_ms, n, mw, n_grid, st, gr, raw[a : a + mw], outlier[a : a + mw])
        for start, n, mw, st, gr, a in zip(
            starts.tolist(), lengths, m.tolist(), stats.tolist(), grid.tolist(), offsets.tolist()
        )
    ]


_PEAK_MASKS: dict[frozenset, np.ndarray] = {}


def _peak_mask(hours: frozenset) -> np.ndarray:
    mask = _PEAK_MASKS.get(hours)
    if mask is None:
        mask = np.zeros(24, dtype=np.uint8)
        mask[list(hours)] = 1
        _PEAK_MASKS[hours] = mask
    return mask
