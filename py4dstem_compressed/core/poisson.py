"""``E[sqrt(N)]`` of Poisson counts, from exact sums: the shot noise of amplitudes.

A pixel that records ``N ~ Poisson(lam)`` counts has the amplitude ``sqrt(N)``, whose mean
``E[sqrt(N)] = sqrt(lam) r(lam)`` is ``~lam`` for ``lam << 1`` and ``~sqrt(lam)`` for many
counts, and whose variance is ``lam (1 - r(lam)^2)``. The data step models the mean
(:mod:`~py4dstem_compressed.reconstruction.shot_noise_model`), the data-derived masks the
variance (:mod:`~py4dstem_compressed.bases.denoise`).
"""

from __future__ import annotations

import functools

import numpy as np
from scipy.special import gammaln

__all__ = ["LOG_COUNT_GRID", "sqrt_poisson_ratio", "sqrt_poisson_table", "sqrt_poisson_variance"]

#: ``log(lam)`` of the tabulated ratio ``r(lam)`` (uniform, 0.0576 per step): below it ``r =
#: sqrt(lam)`` to float precision (it starts below any float32 ``v^2 n`` that is not 0),
#: above it its last value (within 1.3e-7 of the exact ratio)
LOG_COUNT_GRID = (np.log(1e-45), np.log(1e6), 2041)


@functools.cache
def sqrt_poisson_table() -> tuple[np.ndarray, np.ndarray]:
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


def sqrt_poisson_ratio(lam):
    """``r(lam) = E[sqrt(N)] / sqrt(lam)`` for ``N ~ Poisson(lam)`` (NumPy arrays).

    Tabulated on :data:`LOG_COUNT_GRID` and interpolated in ``log lam``; exact sums, not an
    approximation (relative error < 1e-4 between grid points).
    """
    log_lam, ratio = sqrt_poisson_table()
    lam = np.asarray(lam, np.float64)
    small = lam < np.exp(log_lam[0])
    out = np.interp(np.log(np.maximum(lam, np.exp(log_lam[0]))), log_lam, ratio)
    return np.where(small, np.sqrt(np.maximum(lam, 0.0)), out)


def sqrt_poisson_variance(lam):
    """``Var[sqrt(N)] = lam (1 - r(lam)^2)`` for ``N ~ Poisson(lam)`` (NumPy arrays).

    ``~lam`` for sparse counts, ``~1/4`` for many; 0 where ``lam <= 0``.
    """
    lam = np.maximum(np.asarray(lam, np.float64), 0.0)
    return np.maximum(lam * (1.0 - sqrt_poisson_ratio(lam) ** 2), 0.0)
