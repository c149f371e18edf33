"""The expected-amplitude table look-up as one fused pass over a batch (numba).

:func:`~py4dstem_compressed.reconstruction.shot_noise_model.expected_amplitude` reads
``r(lam)`` from a table indexed by the bits of the float32 ``lam = v^2 n``. In NumPy that
is a dozen passes over the batch's far fields; this kernel does it in one, per pattern
element, with the same table and the same arithmetic (results agree to float rounding).
Without numba, :data:`AVAILABLE` is False and the NumPy form runs.
"""

from __future__ import annotations

import numpy as np

from py4dstem_compressed.core.numba_cache import enable_user_cache, numba

__all__ = ["AVAILABLE", "table_lookup"]

AVAILABLE = numba is not None

if AVAILABLE:
    _FLAGS = {"reassoc", "contract", "nsz", "arcp"}  # no nnan/ninf: NaN must propagate

    # cache=False: numba would write into the package; enable_user_cache below
    @numba.njit(nogil=True, cache=False, fastmath=_FLAGS)
    def _lookup(
        values, counts, first_bits, shift, last, scale, ratio, increment, slope, psi, slopes
    ):  # pragma: no cover - compiled
        """``psi = v r(lam)`` and (if ``slopes`` has the size of ``values``) the log-slope."""
        with_slope = slopes.size == values.size
        lam = np.empty(1, np.float32)
        bits = lam.view(np.int32)
        fraction_mask = (1 << shift) - 1
        for i in range(values.size):
            v = values[i]
            lam[0] = np.float32(v * v * counts)
            offset = max(bits[0] - first_bits, 0)
            j = min(offset >> shift, last)
            fraction = (offset & fraction_mask) * scale
            psi[i] = v * (increment[j] * fraction + ratio[j])
            if with_slope:
                slopes[i] = slope[j]

    enable_user_cache(_lookup)


def table_lookup(values, counts_per_intensity, table, with_slope):
    """``(psi, slope or None)`` of NumPy ``values`` from the bit-indexed ``table``.

    Parameters
    ----------
    values : numpy.ndarray
        Predicted amplitudes, float32 or float64, any shape.
    counts_per_intensity : float
        Counts one unit of ``v^2`` stands for.
    table : BitTable
        The grid and its ``r``, increments and log-slopes (``1 + 2 d log r / d log lam``),
        of :func:`~py4dstem_compressed.reconstruction.shot_noise_model.bit_table`.
    with_slope : bool
        Also return the log-slope of ``psi``.
    """
    dtype = values.dtype
    flat = np.ascontiguousarray(values).reshape(-1)
    psi = np.empty_like(flat)
    slopes = np.empty_like(flat) if with_slope else np.empty(0, dtype)
    ratio, increment, slope = table.arrays(dtype)
    _lookup(
        flat,
        dtype.type(counts_per_intensity),
        np.int32(table.first_bits),
        table.shift,
        table.last,
        dtype.type(table.fraction_scale),
        ratio,
        increment,
        slope,
        psi,
        slopes,
    )
    shape = values.shape
    return psi.reshape(shape), (slopes.reshape(shape) if with_slope else None)
