"""Coefficients in: what ``CompressedDataCube.from_virtual_images`` estimates from images.

Acquisition software that applies the exported masks itself (see
:mod:`~py4dstem_compressed.bases.mask_export`) returns one image per mask,
``c_k(R) = sum_q m_k(q) v_R(q)``. It often cannot compute the perpendicular norms
``||v_R||^2 - sum_k c_k^2`` (they need a second, non-linear pass over every pixel), the total
intensity or the centre of mass. What it did not measure is either left out (perpendicular
norms: NaN, and the reconstruction runs without them) or estimated from the coefficients by
projecting the patterns onto the masks' span (totals, centres of mass): exact when the
constant and the linear ramps over the measured regions lie in that span (e.g. a binning
basis, or Zernike BF masks up to tilt with one uniform DF mask), an approximation otherwise.
"""

from __future__ import annotations

import numpy as np

from py4dstem_compressed.bases.basis import Basis
from py4dstem_compressed.core.backend import to_numpy

__all__ = ["check_images", "projected_moments"]


def check_images(images, basis: Basis) -> np.ndarray:
    """``(Rx, Ry, K)`` images as float64, or a ValueError naming what is wrong with them."""
    images = np.asarray(to_numpy(images), dtype=np.float64)
    if images.ndim != 3 or images.shape[2] != basis.num_masks:
        raise ValueError(
            f"images must be (Rx, Ry, K={basis.num_masks}): one virtual image per mask of the "
            f"basis, last axis in the basis's mask order; got shape {images.shape}"
        )
    if not np.all(np.isfinite(images)):
        raise ValueError("images contain NaN or inf; mask or drop those scan positions first")
    return images


def projected_moments(
    coefficients: np.ndarray, basis: Basis, mode: str, perpendicular_norms=None
) -> tuple[np.ndarray, np.ndarray]:
    """Total intensity and centre of mass of the patterns' projection onto the masks.

    Parameters
    ----------
    coefficients : numpy.ndarray
        ``(Rx, Ry, K)`` coefficients of ``v = I`` (intensity) or ``v = sqrt(I)`` (amplitude).
    basis : Basis
        Orthonormal masks, detector frame.
    mode : {"amplitude", "intensity"}
    perpendicular_norms : numpy.ndarray, optional
        ``(Rx, Ry, 2)``: in amplitude mode they complete the total (``||v||^2 = |c|^2 + |p|^2``).

    Returns
    -------
    total : numpy.ndarray
        ``(Rx, Ry)`` estimated ``sum_q I`` [counts].
    center_of_mass : numpy.ndarray
        ``(Rx, Ry, 2)`` estimated ``(qx, qy)`` [px].
    """
    masks = basis.masks_flat.astype(np.float64)
    qx, qy = np.indices(basis.shape, dtype=np.float64).reshape(2, -1)
    c = np.asarray(coefficients, dtype=np.float64)
    if mode == "intensity":  # sum_q w P I = sum_k c_k <m_k, w>
        total = c @ masks.sum(axis=1)
        moments = np.stack([c @ (masks @ qx), c @ (masks @ qy)], axis=-1)
    else:  # sum_q w (P v)^2 = c^T G_w c, G_w = M diag(w) M^T
        total = np.sum(c**2, axis=-1)
        moments = np.stack(
            [np.einsum("...k,kl,...l->...", c, (masks * w) @ masks.T, c) for w in (qx, qy)],
            axis=-1,
        )
        if perpendicular_norms is not None:
            total = total + np.sum(np.asarray(perpendicular_norms, np.float64) ** 2, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        center = np.where(total[..., None] > 0, moments / total[..., None], np.nan)
    fallback = np.asarray(basis.geometry.center, dtype=np.float64)
    center = np.where(np.isfinite(center), center, fallback)
    return total, center
