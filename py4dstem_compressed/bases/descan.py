"""Descan: the drift of the diffraction pattern across the detector during a scan.

On a real microscope the pattern moves by a few pixels over a scan (imperfect descan).
Masks fixed in the detector frame then see the bright-field disk's rim wander into the
dark-field region. Descan-aware compression applies the masks in the frame of the disk
instead: pattern ``j`` is compressed with the masks moved by an integer shift ``s_j``
[detector px] (the rounded descan), and ``s_j`` is stored with the data, so the
reconstruction only has to move its predictions by the sub-pixel remainder.

Everything here is in detector pixels, in the detector frame (first axis ``qx``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from py4dstem_compressed.bases.basis import Basis
from py4dstem_compressed.bases.geometry import DetectorGeometry

__all__ = [
    "DESCAN_SAMPLES",
    "descan_shifts",
    "fit_descan",
    "integer_descan",
    "shifted_basis",
]

#: Patterns sampled to fit the descan plane: the fit of 3 parameters per axis from a
#: few hundred centres of mass averages out the specimen's own deflections (DPC signal).
DESCAN_SAMPLES = 256


def _center_of_mass(frame: np.ndarray) -> tuple[float, float] | None:
    """Centre of mass ``(qx, qy)`` [px] of one non-negative pattern, None if empty."""
    frame = np.maximum(np.asarray(frame, dtype=np.float64), 0.0)
    total = frame.sum()
    if not np.isfinite(total) or total <= 0:
        return None
    qx = np.arange(frame.shape[0]) @ frame.sum(axis=1) / total
    qy = np.arange(frame.shape[1]) @ frame.sum(axis=0) / total
    return float(qx), float(qy)


def fit_descan(
    data: Any,
    geometry: DetectorGeometry,
    num_samples: int = DESCAN_SAMPLES,
    seed: int | None = 0,
) -> np.ndarray:
    """Fit a linear descan (a plane over the scan) to the patterns' centres of mass.

    Parameters
    ----------
    data : array-like
        ``(Rx, Ry, Qx, Qy)`` intensities (NumPy, memmap, h5py, zarr, dask).
    geometry : DetectorGeometry
        The geometry the masks were built for; shifts are relative to its centre.
    num_samples : int
        Patterns read at random (seeded) scan positions.
    seed : int, optional
        Seed of the sampling.

    Returns
    -------
    numpy.ndarray
        ``(Rx, Ry, 2)`` float64 descan [px]: where the disk centre is at each scan
        position minus ``geometry.center``; zeros when fewer than three sampled patterns
        hold any intensity.
    """
    rx, ry = data.shape[:2]
    count = min(int(num_samples), rx * ry)
    flat = np.sort(np.random.default_rng(seed).choice(rx * ry, size=count, replace=False))
    rows, centers = [], []
    for index in flat:
        com = _center_of_mass(np.asarray(data[index // ry, index % ry]))
        if com is not None:
            rows.append((1.0, index // ry, index % ry))
            centers.append(com)
    if len(rows) < 3:  # nothing to fit (an empty scan is refused later, by its totals)
        return np.zeros((rx, ry, 2))
    design = np.asarray(rows, dtype=np.float64)
    plane, *_ = np.linalg.lstsq(design, np.asarray(centers), rcond=None)  # (3, 2)
    grid_x, grid_y = np.meshgrid(np.arange(rx), np.arange(ry), indexing="ij")
    every = np.stack([np.ones_like(grid_x), grid_x, grid_y], axis=-1).astype(np.float64)
    return every @ plane - np.asarray(geometry.center)


def integer_descan(descan_px: np.ndarray) -> np.ndarray:
    """Round a descan ``(..., 2)`` [px] to the integer shifts the masks are moved by (int16)."""
    descan_px = np.asarray(descan_px, dtype=np.float64)
    if descan_px.shape[-1:] != (2,) or not np.all(np.isfinite(descan_px)):
        raise ValueError(
            f"descan must be finite (Rx, Ry, 2) shifts [px], got shape {descan_px.shape}"
        )
    return np.rint(descan_px).astype(np.int16)


def descan_shifts(descan, data: Any, geometry: DetectorGeometry) -> np.ndarray:
    """``(Rx, Ry, 2)`` whole-pixel shifts [px] that move the masks with the disk.

    Parameters
    ----------
    descan : "auto", array-like or None
        ``"auto"``: the variation of :func:`fit_descan`'s plane about the scan's mean (where
        the disk sits on average is the geometry's business); an ``(Rx, Ry, 2)`` array: the
        descan [px] relative to ``geometry.center`` (e.g. from a pre-scan); None: zeros.
    data : array-like
        ``(Rx, Ry, Qx, Qy)`` intensities (only sampled patterns are read, for ``"auto"``).
    geometry : DetectorGeometry
        The geometry the masks were built for.

    Returns
    -------
    numpy.ndarray
        int16 shifts.

    Raises
    ------
    ValueError
        For another string than ``"auto"`` or an array of another shape.
    """
    scan_shape = tuple(int(n) for n in data.shape[:2])
    if descan is None:
        return np.zeros((*scan_shape, 2), np.int16)
    if isinstance(descan, str):
        if descan != "auto":
            raise ValueError(
                f"descan must be 'auto', None or an (Rx, Ry, 2) array of shifts [px], "
                f"got {descan!r}"
            )
        drift = fit_descan(data, geometry)
        return integer_descan(drift - drift.mean(axis=(0, 1)))
    shifts = np.asarray(descan, dtype=np.float64)
    if shifts.shape != (*scan_shape, 2):
        raise ValueError(
            f"descan must have shape {(*scan_shape, 2)} (one (qx, qy) shift [px] per scan "
            f"position), got {shifts.shape}"
        )
    return integer_descan(shifts)


def shifted_basis(basis: Basis, shift: tuple[int, int]) -> Basis:
    """The basis moved by an integer ``shift`` [px], as applied to a pattern that drifted so.

    The masks and the BF/DF regions move with the disk. The masks are rolled: what the shift
    pushes past one border of the detector comes back at the opposite border, where a
    dark field reaching the detector's edge holds its weakest intensity; so the regions of
    the moved geometry are exactly the rolled regions, and a basis whose geometry has no
    EDGE region keeps the kernel's fast path (no EDGE sums). The detector's own
    unmeasured pixels (``geometry.mask``) are fixed to the detector: masks are zeroed on
    them and they stay unmeasured, as do the pixels the rolled mask map covers.

    Parameters
    ----------
    basis : Basis
        Masks in the detector frame.
    shift : (int, int)
        Shift ``(qx, qy)`` [px].

    Returns
    -------
    Basis
        A basis for the same detector (not validated: masks that lose pixels on dead
        pixels are no longer exactly orthonormal; the model keeps the original).
    """
    shift = (int(shift[0]), int(shift[1]))
    if shift == (0, 0):
        return basis
    geometry = basis.geometry
    masks = np.roll(basis.masks, shift, axis=(1, 2))
    unmeasured = None
    if geometry.mask is not None:
        unmeasured = geometry.mask | np.roll(geometry.mask, shift, axis=(0, 1))
        masks[:, geometry.mask] = 0.0
    moved = DetectorGeometry(
        shape=geometry.shape,
        center=(geometry.center[0] + shift[0], geometry.center[1] + shift[1]),
        bf_radius=geometry.bf_radius,
        df_radius=geometry.df_radius,
        mask=unmeasured,
    )
    return Basis(
        masks,
        basis.num_bf,
        basis.num_df,
        moved,
        kind=basis.kind,
        parameters=basis.parameters,
        mode=basis.mode,
        name=basis.name,
        validate=False,
    )
