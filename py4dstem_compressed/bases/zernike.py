"""Zernike polynomials (Eqs. 14-16) and orthonormalisation on a pixel grid (pure maths).

Ordering is OSA/ANSI: single index ``j = (n (n + 2) + m) / 2``, i.e. by radial
order ``n`` then azimuthal order ``m = -n, -n + 2, ..., n``. The first 36
polynomials are every polynomial with ``n <= 7`` and the first 45 every one with
``n <= 8`` -- the same sets as Noll's first 36 / 45, which is what the paper's
"first 36" / "first 45" masks use.
"""

from __future__ import annotations

from math import factorial

import numpy as np

__all__ = [
    "orthonormalize_rows",
    "osa_index_to_nm",
    "radial_polynomial",
    "zernike_orders",
    "zernike_polynomial",
]


def osa_index_to_nm(j: int) -> tuple[int, int]:
    """Radial and azimuthal orders ``(n, m)`` of the OSA/ANSI index ``j >= 0``."""
    if j < 0:
        raise ValueError(f"OSA index must be >= 0, got {j}")
    n = int((np.sqrt(8 * j + 1) - 1) // 2)
    while (n + 1) * (n + 2) // 2 <= j:
        n += 1
    while n * (n + 1) // 2 > j:
        n -= 1
    m = 2 * j - n * (n + 2)
    return n, m


def radial_polynomial(n: int, m: int, rho: np.ndarray) -> np.ndarray:
    """Zernike radial polynomial ``R_n^|m|(rho)`` (Eq. 15)."""
    m = abs(m)
    if (n - m) % 2:
        return np.zeros_like(rho, dtype=np.float64)
    out = np.zeros_like(rho, dtype=np.float64)
    for s in range((n - m) // 2 + 1):
        coeff = (-1) ** s * factorial(n - s)
        coeff /= factorial(s) * factorial((n + m) // 2 - s) * factorial((n - m) // 2 - s)
        out += coeff * rho ** (n - 2 * s)
    return out


def zernike_polynomial(n: int, m: int, rho: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Normalised Zernike polynomial ``Z_n^m(rho, phi)`` (Eqs. 14 and 16).

    ``N_n^m R_n^|m|(rho) cos(m phi)`` for ``m >= 0`` and ``N_n^m R_n^|m|(rho) sin(|m| phi)``
    for ``m < 0``, with ``N_n^m = sqrt(2 (n + 1) / (1 + delta_m0))``; zero for ``rho > 1``.
    """
    if n < 0 or abs(m) > n or (n - abs(m)) % 2:
        raise ValueError(f"invalid Zernike orders n={n}, m={m}")
    norm = np.sqrt(2.0 * (n + 1) / (1.0 + (m == 0)))
    angular = np.cos(m * phi) if m >= 0 else np.sin(-m * phi)
    values = norm * radial_polynomial(n, m, rho) * angular
    return np.where(rho <= 1.0, values, 0.0)


def orthonormalize_rows(
    vectors: np.ndarray, rank_tolerance: float = 1e-6
) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormalise rows in order (Gram-Schmidt, computed by a Householder QR).

    Parameters
    ----------
    vectors : numpy.ndarray
        ``(K, P)`` rows to orthonormalise, in priority order.
    rank_tolerance : float
        A row whose component orthogonal to the previous rows is below this
        fraction of its own norm is *dependent*.

    Returns
    -------
    rows : numpy.ndarray
        ``(K, P)`` float64 orthonormal rows; row ``k`` spans the same space as
        input rows ``0..k`` and has a positive inner product with input row ``k``.
    independent : numpy.ndarray of bool
        ``(K,)``; False where a row was (numerically) dependent on earlier ones.
        Those output rows are meaningless and must be discarded by the caller.
    """
    a = np.asarray(vectors, dtype=np.float64)
    q, r = np.linalg.qr(a.T, mode="reduced")
    diag = np.diag(r)
    signs = np.where(diag < 0, -1.0, 1.0)
    rows = (q * signs).T
    norms = np.linalg.norm(a, axis=1)
    independent = np.abs(diag) > rank_tolerance * np.maximum(norms, np.finfo(float).tiny)
    return rows, independent


def zernike_orders(count: int, rotationally_symmetric: bool = False) -> list[tuple[int, int]]:
    """The first ``count`` Zernike orders ``(n, m)`` in OSA/ANSI order (or only m = 0)."""
    if rotationally_symmetric:
        return [(2 * k, 0) for k in range(count)]
    return [osa_index_to_nm(j) for j in range(count)]
