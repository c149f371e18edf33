"""Expected amplitude of shot-noise-limited intensities: what amplitude coefficients measure.

A pixel that records ``N ~ Poisson(lam)`` counts of intensity ``g`` each has the amplitude
``sqrt(g N)``, whose expectation is ``sqrt(g) phi(lam)`` with ``phi(lam) = E[sqrt(N)]``:
``~sqrt(lam)`` for many counts, but ``~lam`` for ``lam << 1`` (a sparse dark field). The
amplitude coefficients ``c = M sqrt(I)`` are linear, so their expectation is ``M psi(v)``
with the predicted amplitude ``v = sqrt(E[I])`` and

    psi(v) = v r(v^2 n),    r(lam) = phi(lam) / sqrt(lam),

``n`` the counts per unit intensity (``1 / g``). With ``n -> inf`` (noise-free data)
``psi(v) = v``. Matching ``M v`` to the coefficients of a sparse dark field instead would
sharpen the prediction towards the counts' (intensity-like) shape; matching ``M psi(v)``
removes that bias without changing noise-free data. The measured energy ``||c||^2 + p^2 =
sum I`` is unbiased at any count rate and is matched as it is.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy.special import gammaln

from py4dstem_compressed.core.backend import get_array_module

__all__ = ["LOG_COUNT_GRID", "expected_amplitude", "sqrt_poisson_ratio"]

#: ``log(lam)`` of the tabulated ratio ``r(lam)`` (uniform, 0.0576 per step): below it ``r =
#: sqrt(lam)`` to float precision (it starts below any float32 ``v^2 n`` that is not 0),
#: above it its last value (within 1.3e-7 of the exact ratio)
LOG_COUNT_GRID = (np.log(1e-45), np.log(1e6), 2041)


@functools.cache
def _table() -> tuple[np.ndarray, np.ndarray]:
    """``(log lam, r(lam))`` on :data:`LOG_COUNT_GRID` (computed once)."""
    log_lam = np.linspace(*LOG_COUNT_GRID)
    ratio = np.empty_like(log_lam)
    for i, lam in enumerate(np.exp(log_lam)):
        spread = 12.0 * np.sqrt(lam) + 20.0
        if lam < 1e-12:  # E[sqrt N] = lam (1 - lam + ...) + O(lam^2): r = sqrt(lam) (1 - lam)
            ratio[i] = np.sqrt(lam) * (1.0 - lam)
            continue
        k = np.arange(int(max(lam - spread, 0)), int(lam + spread) + 1, dtype=np.float64)
        pmf = np.exp(k * np.log(lam) - lam - gammaln(k + 1.0))
        ratio[i] = float((pmf * np.sqrt(k)).sum() / np.sqrt(lam))
    return log_lam, ratio


@functools.cache
def _steps() -> tuple[np.ndarray, ...]:
    """``r``, its increments and ``d log r / d log lam`` per grid interval.

    The slope of an interval is that of ``log r`` across it: piecewise constant, which is
    all a Newton curvature needs, and one gather fewer than interpolating it.
    """
    log_lam, ratio = _table()
    slope = np.diff(np.log(ratio)) / np.diff(log_lam)
    return np.append(ratio, ratio[-1]), np.append(np.diff(ratio), 0.0), np.append(slope, 0.0)


def sqrt_poisson_ratio(lam):
    """``r(lam) = E[sqrt(N)] / sqrt(lam)`` for ``N ~ Poisson(lam)`` (NumPy arrays).

    Tabulated on :data:`LOG_COUNT_GRID` and interpolated in ``log lam``; exact sums, not an
    approximation (relative error < 1e-4 between grid points).
    """
    log_lam, ratio = _table()
    lam = np.asarray(lam, np.float64)
    small = lam < np.exp(log_lam[0])
    out = np.interp(np.log(np.maximum(lam, np.exp(log_lam[0]))), log_lam, ratio)
    return np.where(small, np.sqrt(np.maximum(lam, 0.0)), out)


def expected_amplitude(values, counts_per_intensity: float | None, with_slope: bool = True):
    """``psi(v)`` and ``d log psi / d log v`` for predicted amplitudes ``v >= 0``.

    Parameters
    ----------
    values : array
        Predicted amplitudes ``v`` (any shape; NumPy or CuPy).
    counts_per_intensity : float or None
        Counts one unit of ``v^2`` stands for; None or inf: noise-free data
        (``psi(v) = v``).
    with_slope : bool
        Also return the slope (False: one gather fewer, the slope is None).

    Returns
    -------
    psi : array
        Expected measured amplitudes, the dtype of ``values``.
    slope : array, float or None
        ``d log psi / d log v`` (between 1 and 2; 1.0 for noise-free data; None without
        ``with_slope``).
    """
    if counts_per_intensity is None or not np.isfinite(counts_per_intensity):
        return values, 1.0
    xp = get_array_module(values)
    dtype = values.dtype
    start, stop, num = LOG_COUNT_GRID
    spacing = (stop - start) / (num - 1)
    # per grid interval: value and increment of r in one complex table (one gather for
    # both), and the slope; gathered by indexing (NumPy 1.26: 0.8 ms for 0.5 M int32 indices,
    # where ``take`` converts them to intp first and needs 4 ms)
    ratio, increment, slope_table = _steps()
    pairs = xp.asarray(
        ratio[: len(increment)] + 1j * increment, dtype=np.result_type(dtype, np.complex64)
    )
    lam = values * values * dtype.type(counts_per_intensity)
    # the grid is uniform in log(lam) and starts below every float32 lam but 0: linear
    # interpolation by direct indexing (np.interp's binary search costs ~10x more on a batch
    # of far fields); lam = 0 takes the first point, psi = 0 there
    position = xp.log(xp.maximum(lam, dtype.type(np.exp(start))))
    position -= dtype.type(start)
    position *= dtype.type(1.0 / spacing)
    position = xp.minimum(position, dtype.type(num - 1), out=position)
    index = position.astype(xp.int32)
    position -= index.astype(dtype)  # the fraction within the interval
    pair = pairs[index]
    r = pair.imag * position
    r += pair.real
    if not with_slope:
        return values * r, None
    s = xp.asarray(slope_table, dtype=dtype)[index]
    return values * r, dtype.type(1) + dtype.type(2) * s
