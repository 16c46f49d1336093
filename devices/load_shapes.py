"""Household load shapes for the smart-meter fleet simulator, built from real measured days.

A :class:`LoadShapeLibrary` holds whole days of measured household load at one slot length, grouped in
*sequences* (one per measured home) of consecutive days:

* the UCI household (:func:`gridflow.datasets.load_uci_household`): one home, the days with less than 5 %
  of their minutes missing and no gap longer than ``max_gap_min`` (shorter gaps linearly interpolated);
* the 17 CityLearn homes (:func:`gridflow.datasets.load_citylearn`): 365 hourly days each.

A slot's value is the average power over the slot; it is placed at the slot's centre and values between
centres are linearly interpolated (cyclically within a sequence), which is how hourly data is upsampled.

A simulated household (:class:`HouseholdProfile`) follows one sequence day after day from a start day,
scaled by a lognormal factor (median 1, sigma 0.35, clipped to 0.3..3) and shifted by up to +-90 minutes.
Its parameters and its noise (2 % multiplicative, 5 W additive, Gaussian) are counter-based hashes of
(seed, household index, timestamp), so a household's power at a given instant never depends on which
other households or which time window were asked for. Times of day are taken from the UTC clock of
``ts_ms``; shift ``start_ms`` to simulate another time zone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

DAY_S = 86_400
SCALE_SIGMA = 0.35
SCALE_MIN, SCALE_MAX = 0.3, 3.0
MAX_SHIFT_S = 5_400.0
NOISE_REL, NOISE_W = 0.02, 5.0
_CHUNK_VALUES = 1 << 20  # values computed per vectorised step (bounds memory for large fleets)


@dataclass(frozen=True)
class LoadShapeLibrary:
    """Measured days of household load, at one slot length, grouped in sequences of consecutive days.

    Attributes
    ----------
    days_w : numpy.ndarray
        ``(n_days, slots_per_day)`` average power (W) per slot; no NaN.
    slot_s : int
        Slot length in seconds (divides a day).
    sequence_start : numpy.ndarray
        First row of each sequence in ``days_w``; sequences are contiguous and in order.
    sequence_names : tuple of str
        Where each sequence comes from, e.g. ``"uci"`` or ``"citylearn:Building_3"``.
    """

    days_w: np.ndarray
    slot_s: int
    sequence_start: np.ndarray
    sequence_names: tuple[str, ...]

    @property
    def n_days(self) -> int:
        return self.days_w.shape[0]

    @property
    def slots_per_day(self) -> int:
        return self.days_w.shape[1]

    @property
    def sequence_length(self) -> np.ndarray:
        """Days in each sequence."""
        return np.diff(np.append(self.sequence_start, self.n_days))

    @classmethod
    def from_uci(
        cls, data: dict[str, np.ndarray], max_missing_fraction: float = 0.05, max_gap_min: int = 30
    ) -> "LoadShapeLibrary":
        """Whole days (UTC-read clock) of the UCI household at 60 s slots.

        Parameters
        ----------
        data : dict
            As returned by :func:`gridflow.datasets.load_uci_household` (``ts_ms``, ``power_w``).
        max_missing_fraction : float
            Days with this fraction of missing minutes or more are dropped.
        max_gap_min : int
            Gaps up to this many minutes are linearly interpolated; days with a longer gap are dropped.
        """
        minute = (data["ts_ms"] - data["ts_ms"][0]) // 60_000
        first_midnight = -(data["ts_ms"][0] // 60_000 % 1440) % 1440  # minute index of the first 00:00
        grid_w = np.full(int(minute[-1]) + 1, np.nan)
        grid_w[minute] = data["power_w"]
        missing = np.isnan(grid_w)
        filled_w = _fill_short_gaps(grid_w, max_gap_min)
        n_days = (len(grid_w) - first_midnight) // 1440
        window = slice(first_midnight, first_midnight + n_days * 1440)
        days_w = filled_w[window].reshape(n_days, 1440)
        missing_fraction = missing[window].reshape(n_days, 1440).mean(axis=1)
        keep = (missing_fraction < max_missing_fraction) & ~np.isnan(days_w).any(axis=1)
        return cls(days_w[keep].copy(), 60, np.array([0]), ("uci",))

    @classmethod
    def from_citylearn(cls, data: dict[str, np.ndarray]) -> "LoadShapeLibrary":
        """The 17 CityLearn homes, 365 whole days each, at 3600 s slots (a day starts with hour 1)."""
        first = int(np.argmax(data["hour"] == 1))
        load_w = np.roll(data["load_w"], -first, axis=1)
        n_buildings, n_hours = load_w.shape
        days_w = load_w[:, : n_hours // 24 * 24].reshape(n_buildings * (n_hours // 24), 24)
        starts = np.arange(n_buildings) * (n_hours // 24)
        return cls(days_w, 3600, starts, tuple(f"citylearn:Building_{b + 1}" for b in range(n_buildings)))

    @classmethod
    def combine(cls, libraries: Sequence["LoadShapeLibrary"]) -> "LoadShapeLibrary":
        """One library holding all sequences, resampled to the shortest slot length."""
        slot_s = min(library.slot_s for library in libraries)
        days = [library.profiles_w(slot_s) for library in libraries]
        offsets = np.cumsum([0] + [library.n_days for library in libraries[:-1]])
        starts = np.concatenate([library.sequence_start + offset for library, offset in zip(libraries, offsets)])
        names = tuple(name for library in libraries for name in library.sequence_names)
        return cls(np.concatenate(days), slot_s, starts, names)

    @classmethod
    def load(cls, settings, sources: Iterable[str] = ("uci", "citylearn")) -> "LoadShapeLibrary":
        """Build the library from the fetched datasets (``gridflow data fetch``)."""
        from gridflow import datasets

        builders = {
            "uci": lambda: cls.from_uci(datasets.load_uci_household(settings)),
            "citylearn": lambda: cls.from_citylearn(datasets.load_citylearn(settings)),
        }
        libraries = [builders[source]() for source in sources]
        return libraries[0] if len(libraries) == 1 else cls.combine(libraries)

    def profiles_w(self, interval_s: int) -> np.ndarray:
        """Every day resampled to ``interval_s`` slots, ``(n_days, 86400 // interval_s)``.

        Each output value is the interpolated load at the centre of its slot, so ``interval_s == slot_s``
        returns the days unchanged and longer slots from hourly data are linearly upsampled.
        """
        if DAY_S % interval_s:
            raise ValueError(f"interval_s must divide a day (86400 s), got {interval_s}")
        if interval_s == self.slot_s:
            return self.days_w.copy()
        sequence = np.repeat(np.arange(len(self.sequence_start)), self.sequence_length)
        day_in_sequence = np.arange(self.n_days) - self.sequence_start[sequence]
        centre_s = (np.arange(DAY_S // interval_s) + 0.5) * interval_s
        position = day_in_sequence[:, None] * self.slots_per_day + centre_s[None, :] / self.slot_s
        return self._sample(sequence[:, None], position)

    def _sample(self, sequence: np.ndarray, position: np.ndarray) -> np.ndarray:
        """Load at fractional slot ``position`` (slot units from the sequence start), cyclic per sequence."""
        flat_w = self.days_w.reshape(-1)
        start = self.sequence_start[sequence] * self.slots_per_day
        length = self.sequence_length[sequence] * self.slots_per_day
        x = position - 0.5  # slot values sit at slot centres
        below = np.floor(x)
        weight = x - below
        i0 = below.astype(np.int64) % length
        i1 = (i0 + 1) % length
        return flat_w[start + i0] * (1.0 - weight) + flat_w[start + i1] * weight


def _fill_short_gaps(values: np.ndarray, max_gap: int) -> np.ndarray:
    """Linearly interpolate runs of NaN of at most ``max_gap`` samples that have data on both sides."""
    missing = np.isnan(values)
    out = values.copy()
    if not missing.any():
        return out
    edges = np.diff(np.concatenate(([0], missing.astype(np.int8), [0])))
    run_start, run_end = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    length = run_end - run_start
    fillable = (length <= max_gap) & (run_start > 0) & (run_end < len(values))
    fill = np.zeros(len(values), dtype=bool)
    fill[missing] = np.repeat(fillable, length)  # missing samples, in run order
    valid = np.flatnonzero(~missing)
    out[fill] = np.interp(np.flatnonzero(fill), valid, values[valid])
    return out


@dataclass(frozen=True)
class HouseholdProfile:
    """What one simulated household replays: a source sequence from a start day, scaled and shifted.

    Attributes
    ----------
    household_index : int
    sequence : int
        Index into ``library.sequence_names``.
    first_day : int
        Day of the sequence replayed on UTC day 0 (1970-01-01); day ``d`` replays ``first_day + d`` (cyclic).
    scale : float
        Multiplies the source load (lognormal, median 1, sigma 0.35, clipped to 0.3..3).
    shift_s : float
        The household runs this many seconds later than its source (-5400..5400).
    """

    household_index: int
    sequence: int
    first_day: int
    scale: float
    shift_s: float


def household_profile(library: LoadShapeLibrary, household_index: int, seed: int) -> HouseholdProfile:
    """The parameters of one simulated household (deterministic from ``seed`` and ``household_index``)."""
    sequence, first_day, scale, shift_s = _parameters(library, np.array([household_index]), seed)
    return HouseholdProfile(
        int(household_index), int(sequence[0]), int(first_day[0]), float(scale[0]), float(shift_s[0])
    )


def timestamps_ms(start_ms: int, n: int, interval_s: float) -> np.ndarray:
    """``n`` timestamps (int64 ms) from ``start_ms``, ``interval_s`` apart."""
    return start_ms + np.round(np.arange(n) * (interval_s * 1000.0)).astype(np.int64)


def household_series(
    library: LoadShapeLibrary,
    household_index: int,
    start_ms: int,
    n: int,
    interval_s: float,
    seed: int,
    noise_rel: float = NOISE_REL,
    noise_w: float = NOISE_W,
    appliances: bool = False,
) -> np.ndarray:
    """Power (W) of one simulated household at ``timestamps_ms(start_ms, n, interval_s)``.

    Parameters
    ----------
    library : LoadShapeLibrary
    household_index : int
        Which simulated household; with ``seed`` it fixes the source days, scale and shift.
    start_ms : int
        First timestamp (ms since the epoch, UTC).
    n : int
        Number of readings.
    interval_s : float
        Seconds between readings.
    seed : int
        Fleet seed.
    noise_rel, noise_w : float
        Standard deviations of the multiplicative (fraction) and additive (W) Gaussian noise.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` float64, never negative; equal to the matching row of :func:`fleet_series`.
    """
    return fleet_series(library, [household_index], start_ms, n, interval_s, seed, noise_rel, noise_w, appliances)[0]


def fleet_series(
    library: LoadShapeLibrary,
    household_indices: Sequence[int] | np.ndarray,
    start_ms: int,
    n: int,
    interval_s: float,
    seed: int,
    noise_rel: float = NOISE_REL,
    noise_w: float = NOISE_W,
    appliances: bool = False,
) -> np.ndarray:
    """Power (W) of many simulated households at the same timestamps, ``(len(household_indices), n)``.

    See :func:`household_series` for the parameters. ``appliances``: add each household's own appliance runs
    (:func:`gridflow.devices.appliances.appliance_power`) to its load shape.
    """
    indices = np.asarray(household_indices, dtype=np.int64).reshape(-1)
    ts_ms = timestamps_ms(start_ms, n, interval_s)
    out = np.empty((len(indices), n))
    step = max(1, _CHUNK_VALUES // max(n, 1))
    for lo in range(0, len(indices), step):
        chunk = indices[lo : lo + step]
        sequence, first_day, scale, shift_s = _parameters(library, chunk, seed)
        local_s = ts_ms[None, :] / 1000.0 - shift_s[:, None]
        day = np.floor(local_s / DAY_S)
        position = (first_day[:, None] + day) * library.slots_per_day + (local_s - day * DAY_S) / library.slot_s
        base_w = library._sample(sequence[:, None], position) * scale[:, None]
        if appliances:
            from gridflow.devices.appliances import appliance_power

            base_w += appliance_power(chunk, ts_ms, seed)
        z_rel, z_abs = _normal_pair(_household_keys(chunk, seed)[:, None] ^ _mix(ts_ms.astype(np.uint64))[None, :])
        out[lo : lo + step] = np.maximum(base_w * (1.0 + noise_rel * z_rel) + noise_w * z_abs, 0.0)
    return out


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a well-mixed 64-bit hash of each uint64."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _household_keys(indices: np.ndarray, seed: int, stream: int = 0) -> np.ndarray:
    stream_key = np.array([_GOLDEN]) * np.uint64(stream + 1)  # array maths: wraps silently
    seed_key = _mix(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64) + stream_key)
    return _mix(seed_key ^ (indices.astype(np.uint64) * _GOLDEN))


def _uniform_pair(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two independent uniforms in (0, 1) from the two 32-bit halves of each hash."""
    h = _mix(keys)
    return (
        ((h >> np.uint64(32)).astype(np.float64) + 0.5) / 2.0**32,
        ((h & np.uint64(0xFFFFFFFF)).astype(np.float64) + 0.5) / 2.0**32,
    )


def _normal_pair(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two independent standard normals per key (Box-Muller)."""
    u1, u2 = _uniform_pair(keys)
    radius = np.sqrt(-2.0 * np.log(u1))
    return radius * np.cos(2.0 * np.pi * u2), radius * np.sin(2.0 * np.pi * u2)


def _parameters(library: LoadShapeLibrary, indices: np.ndarray, seed: int):
    """Per household: sequence, first day in it, scale and shift (arrays aligned with ``indices``)."""
    z_scale, _ = _normal_pair(_household_keys(indices, seed, stream=1))
    u_day, u_shift = _uniform_pair(_household_keys(indices, seed, stream=2))
    row = np.minimum((u_day * library.n_days).astype(np.int64), library.n_days - 1)
    sequence = np.searchsorted(library.sequence_start, row, side="right") - 1
    first_day = row - library.sequence_start[sequence]
    scale = np.clip(np.exp(SCALE_SIGMA * z_scale), SCALE_MIN, SCALE_MAX)
    shift_s = np.round((2.0 * u_shift - 1.0) * MAX_SHIFT_S)
    return sequence, first_day, scale, shift_s
