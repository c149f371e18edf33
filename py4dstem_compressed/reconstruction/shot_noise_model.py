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
from dataclasses import dataclass, field

import numpy as np

from py4dstem_compressed.core.backend import get_array_module
from py4dstem_compressed.core.poisson import (
    LOG_COUNT_GRID,
    sqrt_poisson_ratio,
    sqrt_poisson_table,
)
from py4dstem_compressed.reconstruction import shot_noise_kernel as kernel

__all__ = [
    "LOG_COUNT_GRID",
    "TABLE_MANTISSA_BITS",
    "TABLE_RANGE",
    "BitTable",
    "bit_table",
    "expected_amplitude",
    "sqrt_poisson_ratio",
]

#: Points per octave of ``lam`` of the look-up table, as bits of the float32 mantissa: the
#: table is indexed by the float32 bit pattern of ``lam`` (no logarithm), linear in ``lam``
#: within each of its intervals (relative width 1/64: the interpolation adds < 1e-5 to the
#: error of its nodes, :func:`sqrt_poisson_ratio`)
TABLE_MANTISSA_BITS = 6
#: ``lam`` range of the look-up table: float32's smallest normal number (below it, psi is
#: below 1e-19 v) to 2**24 (above it r = r(2**24), within 1e-7 of 1)
TABLE_RANGE = (np.float32(2.0**-126), np.float32(2.0**24))


@dataclass(frozen=True, eq=False)
class BitTable:
    """``r(lam)`` on the float32 values ``lam`` whose low mantissa bits are 0.

    Node ``j`` is the float32 whose bit pattern is ``first_bits + (j << shift)``; ``lam``
    falls in interval ``j = (bits(lam) - first_bits) >> shift`` (clamped to ``[0, last]``)
    at the fraction ``((bits(lam) - first_bits) & (2**shift - 1)) * fraction_scale``.
    """

    first_bits: int
    shift: int
    last: int
    fraction_scale: float
    ratio: np.ndarray  # r at each node (float64)
    increment: np.ndarray  # r[j + 1] - r[j], 0 at the last node
    slope: np.ndarray  # 1 + 2 d log r / d log lam across each interval (psi's log-slope)
    _in_dtype: dict = field(default_factory=dict, repr=False)

    def arrays(self, dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(ratio, increment, slope)`` in ``dtype`` (NumPy), made once per dtype."""
        dtype = np.dtype(dtype)
        if dtype not in self._in_dtype:
            tables = (self.ratio, self.increment, self.slope)
            self._in_dtype[dtype] = tuple(np.ascontiguousarray(a, dtype=dtype) for a in tables)
        return self._in_dtype[dtype]


@functools.cache
def bit_table() -> BitTable:
    """The look-up table of :func:`expected_amplitude` (computed once).

    Its values are :func:`sqrt_poisson_ratio` at the nodes; the log-slope of an interval is
    that of ``r`` across the interval of :data:`LOG_COUNT_GRID` that holds its middle
    (piecewise constant, all a Newton curvature needs).
    """
    shift = 23 - TABLE_MANTISSA_BITS
    low, high = (int(np.asarray(x, np.float32).view(np.int32)) for x in TABLE_RANGE)
    last = (high - low) >> shift
    nodes = (low + (np.arange(last + 1, dtype=np.int64) << shift)).astype(np.int32)
    lam = nodes.view(np.float32).astype(np.float64)
    ratio = sqrt_poisson_ratio(lam)
    increment = np.append(np.diff(ratio), 0.0)
    # the log-slope of r across the interval of the (coarser) log grid holding each interval's
    # middle: ratios interpolated within a log-grid interval are not a power of lam, so the
    # slope between two of this table's nodes would wobble about it
    log_lam, grid_ratio = sqrt_poisson_table()
    log_slope = np.append(np.diff(np.log(grid_ratio)) / np.diff(log_lam), 0.0)  # 0 above it
    middle = np.log(0.5 * (lam[:-1] + lam[1:]))
    inside = np.clip(np.searchsorted(log_lam, middle) - 1, 0, len(log_lam) - 1)
    slope = np.append(np.where(middle > log_lam[-1], 0.0, log_slope[inside]), 0.0)
    return BitTable(low, shift, int(last), 2.0**-shift, ratio, increment, 1.0 + 2.0 * slope)


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
    table = bit_table()
    if xp is np and kernel.AVAILABLE:
        return kernel.table_lookup(values, counts_per_intensity, table, with_slope)
    dtype = values.dtype
    ratio, increment, slope_table = table.arrays(dtype)
    # value and increment of r per interval in one complex table: one gather for both
    pairs = xp.asarray(ratio + 1j * increment, dtype=np.result_type(dtype, np.complex64))
    lam = values * values
    lam *= dtype.type(counts_per_intensity)
    bits = lam.astype(np.float32, copy=False).view(np.int32)  # lam is a temporary
    bits -= np.int32(table.first_bits)
    bits = xp.maximum(bits, 0, out=bits)
    index = bits >> table.shift
    index = xp.minimum(index, table.last, out=index)  # above the table: its last r
    bits &= (1 << table.shift) - 1
    fraction = bits.astype(dtype)
    fraction *= dtype.type(table.fraction_scale)
    pair = pairs[index]
    r = pair.imag * fraction
    r += pair.real
    if not with_slope:
        return values * r, None
    return values * r, xp.asarray(slope_table)[index]
