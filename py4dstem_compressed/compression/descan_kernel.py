"""Descan-aware compression: each pattern compressed with the masks moved by its integer descan."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from py4dstem_compressed.bases.basis import Basis
from py4dstem_compressed.bases.descan import shifted_basis

__all__ = ["DescanKernel"]


class DescanKernel:
    """Compress each pattern with the masks moved by its integer descan.

    Parameters
    ----------
    basis : Basis
        Masks in the detector frame (for an undrifted pattern).
    shifts_px : numpy.ndarray
        ``(N,)`` + ``(2,)`` integer shifts [px], one per pattern in row-major scan order.
    make_kernel : callable
        ``make_kernel(basis) -> kernel``: builds the fixed-mask kernel of one shift
        (a :class:`~py4dstem_compressed.compression.kernels.CompressionKernel` factory).

    Notes
    -----
    A kernel is built once per distinct shift (a linear drift of a few pixels has a few);
    a batch is split into runs of equal shift, so each frame is read once, by the same
    fused pass as without descan.
    """

    def __init__(self, basis: Basis, shifts_px: np.ndarray, make_kernel) -> None:
        self.basis = basis
        self.shifts_px = np.asarray(shifts_px, dtype=np.int16).reshape(-1, 2)
        self._make_kernel = make_kernel
        self._kernels: dict[tuple[int, int], Any] = {}
        self.num_masks = basis.num_masks

    def kernel_for(self, shift: tuple[int, int]):
        """The fixed-mask kernel of one integer shift (built on first use)."""
        key = (int(shift[0]), int(shift[1]))
        if key not in self._kernels:
            self._kernels[key] = self._make_kernel(shifted_basis(self.basis, key))
        return self._kernels[key]

    def __call__(self, frames: np.ndarray, start: int = 0) -> dict:
        """Compress ``(B, Qx, Qy)`` frames that are patterns ``start..start+B-1``."""
        shifts = self.shifts_px[start : start + len(frames)]
        if len(shifts) != len(frames):
            raise ValueError(
                f"frames {start}..{start + len(frames) - 1} lie beyond the "
                f"{len(self.shifts_px)} descan shifts"
            )
        change = np.flatnonzero(np.any(shifts[1:] != shifts[:-1], axis=1)) + 1
        bounds = [0, *change.tolist(), len(frames)]
        parts = [self.kernel_for(shifts[a])(frames[a:b]) for a, b in itertools.pairwise(bounds)]
        if len(parts) == 1:
            return parts[0]
        out = {
            key: np.concatenate([p[key] for p in parts])
            for key in parts[0]
            if key != "num_negative"
        }
        out["num_negative"] = sum(p["num_negative"] for p in parts)
        return out
