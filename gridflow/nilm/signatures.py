"""Grouping activations into appliances by their signature: density peaks in (log power, reactive, log duration).

Each activation is a point of normalised features: ``log(power_w) / power_eps``, ``reactive_var /
reactive_eps_var`` (clipped to +-1 kvar) and ``log(duration) / duration_eps``, so each ``*_eps`` is the
feature difference two activations of one appliance typically have (about a relative difference for power
and duration). Their density is estimated with a Gaussian kernel of unit width on a grid; every point
climbs the density to its peak (mean-shift on the grid) and each peak's basin is a group, the 2-D/3-D
generalisation of cutting a 1-D density at its valleys. Points whose density is below ``core_fraction`` of
their peak's are left out (label -1): they sit on the flanks where different loads and sums of loads mix.
Groups of fewer than ``min_samples`` core points are labelled -1 too. Groups are numbered by rising power.

Duration tells a water heater (1 kW for an hour or more) from a kettle of the same power; reactive power
tells a motor or compressor (an air conditioner's ~650 W with +150 var) from a resistive heater of the same
real power (a dishwasher's or washing machine's ~2 kW heater, both near 0 var).

>>> power = [1000, 1010, 990, 1005, 2000, 2040, 1980, 2010, 5000]
>>> signature_clusters(power, [30, 32, 29, 31, 10, 11, 10, 12, 3], min_samples=3).tolist()
[0, 0, 0, 0, 1, 1, 1, 1, -1]
"""

from __future__ import annotations

import numpy as np

_CELLS_PER_EPS = 3  # grid cells per kernel width
_MAX_GRID_CELLS = 20_000_000
_REACTIVE_CLIP_VAR = 1000.0


def density_peak_clusters(features, min_samples: int, core_fraction: float) -> np.ndarray:
    """Labels of the points of ``features`` (``(n, d)``, already in kernel-width units) by density basin."""
    z = np.asarray(features, dtype=np.float64) * _CELLS_PER_EPS
    n, dim = z.shape
    if n == 0:
        return np.zeros(0, np.int64)
    pad = 3 * _CELLS_PER_EPS + 1
    cell = np.floor(z - z.min(axis=0)).astype(np.int64) + pad
    shape = tuple(int(s) for s in cell.max(axis=0) + pad + 1)
    if np.prod(shape, dtype=np.float64) > _MAX_GRID_CELLS:
        raise ValueError(
            f"the signature grid would need {np.prod(shape, dtype=np.float64):.3g} cells: raise the "
            f"cluster bandwidths (power_eps, reactive_eps_var, duration_eps)"
        )
    counts = np.zeros(shape)
    np.add.at(counts, tuple(cell.T), 1.0)
    density = gaussian_density(counts, sigma=_CELLS_PER_EPS, truncate=3.0)
    # each grid cell points at its densest neighbour (itself on a peak); follow the pointers to the peaks
    index = np.arange(density.size).reshape(shape)
    best, uphill = density.copy(), index.copy()
    padded, padded_index = np.pad(density, 1, constant_values=-1.0), np.pad(index, 1)
    for offset in np.ndindex(*(3,) * dim):
        window = tuple(slice(o, o + s) for o, s in zip(offset, shape))
        higher = padded[window] > best
        best[higher], uphill[higher] = padded[window][higher], padded_index[window][higher]
    uphill = uphill.ravel()
    while True:
        jumped = uphill[uphill]
        if np.array_equal(jumped, uphill):
            break
        uphill = jumped
    flat = density.ravel()
    point_cell = np.ravel_multi_index(tuple(cell.T), shape)
    peak = uphill[point_cell]
    core = flat[point_cell] >= core_fraction * flat[peak]
    peaks, sizes = np.unique(peak[core], return_counts=True)
    kept = peaks[sizes >= min_samples]  # cell indices rise with the first feature: by rising power
    labels = np.full(n, -1, np.int64)
    number = np.searchsorted(kept, peak)
    member = core & (number < kept.size)
    member[member] = kept[number[member]] == peak[member]
    labels[member] = number[member]
    return labels


def gaussian_density(counts: np.ndarray, sigma: float, truncate: float) -> np.ndarray:
    """``counts`` smoothed by a Gaussian of ``sigma`` cells along every axis, zero outside the grid: the
    values of ``scipy.ndimage.gaussian_filter(counts, sigma, mode="constant", truncate=truncate)``, summed in
    the same order (so ties between cells break alike), in numpy alone: the appliance-learning job then runs
    in thread-mode Python workers, which cannot import scipy's extension modules."""
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 / (float(sigma) * float(sigma)) * x**2)
    weights /= weights.sum()
    out = np.asarray(counts, dtype=np.float64)
    for axis in range(out.ndim):
        line = np.moveaxis(out, axis, -1)
        n = line.shape[-1]
        padded = np.zeros(line.shape[:-1] + (n + 2 * radius,))
        padded[..., radius : radius + n] = line
        smoothed = line * weights[radius]
        for j in range(radius, 0, -1):  # the far weights first, as scipy's symmetric kernel loop does
            smoothed = (
                smoothed
                + (padded[..., radius - j : radius - j + n] + padded[..., radius + j : radius + j + n])
                * weights[radius - j]
            )
        out = np.moveaxis(smoothed, -1, axis)
    return np.ascontiguousarray(out)


def signature_clusters(
    power_w,
    duration_minutes,
    reactive_var=None,
    *,
    power_eps: float = 0.08,
    reactive_eps_var: float = 60.0,
    duration_eps: float = 0.4,
    min_samples: int = 10,
    core_fraction: float = 0.2,
) -> np.ndarray:
    """Cluster labels (-1 = none) of activations by power, duration and, when known, reactive power.

    Parameters
    ----------
    power_w, duration_minutes : array-like
        One entry per activation (power > 0 W, duration >= 1 minute).
    reactive_var : array-like, optional
        Reactive-power step of each activation (var); used only when every entry is finite.
    power_eps, reactive_eps_var, duration_eps : float
        Kernel widths: on ``log(power_w)``, on reactive power (var), on ``log(duration_minutes)``.
    min_samples : int
        Core activations a group needs.
    core_fraction : float
        Share of its peak's density below which an activation is left out, in [0, 1).
    """
    power = np.asarray(power_w, dtype=np.float64).reshape(-1)
    duration = np.asarray(duration_minutes, dtype=np.float64).reshape(-1)
    for name, value, high in (
        ("power_eps", power_eps, 2.0),
        ("reactive_eps_var", reactive_eps_var, 5000.0),
        ("duration_eps", duration_eps, 5.0),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not 0 < value <= high:
            raise ValueError(f"{name} must be a number in (0, {high:g}], got {value!r}")
    if isinstance(min_samples, bool) or not isinstance(min_samples, (int, np.integer)) or min_samples < 1:
        raise ValueError(f"min_samples must be an integer >= 1, got {min_samples!r}")
    if (
        isinstance(core_fraction, bool)
        or not isinstance(core_fraction, (int, float, np.number))
        or not 0 <= core_fraction < 1
    ):
        raise ValueError(f"core_fraction must be a number in [0, 1), got {core_fraction!r}")
    if power.shape != duration.shape:
        raise ValueError("power_w and duration_minutes must be equally long")
    if not np.all(np.isfinite(power) & (power > 0)) or not np.all(np.isfinite(duration) & (duration >= 1)):
        raise ValueError("power_w must be finite and > 0, duration_minutes finite and >= 1")
    columns = [np.log(power) / power_eps, np.log(duration) / duration_eps]
    if reactive_var is not None:
        reactive = np.asarray(reactive_var, dtype=np.float64).reshape(-1)
        if reactive.shape != power.shape:
            raise ValueError("reactive_var must have one entry per activation")
        if reactive.size and np.all(np.isfinite(reactive)):
            columns.insert(1, np.clip(reactive, -_REACTIVE_CLIP_VAR, _REACTIVE_CLIP_VAR) / reactive_eps_var)
    return density_peak_clusters(np.stack(columns, axis=1), int(min_samples), float(core_fraction))
