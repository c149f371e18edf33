"""The basis as the reconstruction sees it: masks and regions in py4DSTEM's frame."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from py4dstem_compressed.core.backend import check_mode

__all__ = ["CompressedOperator", "mask_coefficients"]

#: Largest fraction of a mask's energy allowed outside its region (float32 rounding of
#: orthonormal masks is far below it; a mask straddling BF and DF is far above).
REGION_LEAK_TOLERANCE = 1e-3


@dataclass(frozen=True, eq=False)
class CompressedOperator:
    """A basis as the reconstruction sees it: masks in py4DSTEM's corner-centred frame.

    Build it with :meth:`from_detector`; the arrays live on the reconstruction device.

    Attributes
    ----------
    masks : array
        ``(K, P)`` float32 masks, flattened corner-centred frame.
    region_maps : array
        ``(2, P)`` float32 indicator maps of the BF and DF regions.
    edge_map : array
        ``(P,)`` float32 indicator map of the EDGE region (unmeasured pixels).
    mask_regions : array
        ``(2, K)`` float32 indicator of the region (BF, DF) each mask lives in.
    shape : tuple of int
        ``(Sx, Sy)`` pattern shape [px].
    mode : str
        ``"amplitude"`` (coefficients of ``sqrt(I)``) or ``"intensity"`` (of ``I``).
    scalable_index : array or None
        ``(Ks,)`` indices of the *scalable* masks: non-negative masks whose support no
        other mask touches (a uniform DF mask, bins). Their coefficient can be matched by
        rescaling the prediction on their support (see :func:`project_values`).
    scalable_support : array or None
        ``(Ks, P)`` float32 indicator of each scalable mask's support.
    energy_regions : array or None
        ``(Ks, 2)`` float32: row ``i`` marks the region (BF, DF) of scalable mask ``i`` when
        *every* mask of that region is scalable (the single DF mask, DF bins), else zeros.
        In amplitude mode those regions can be matched to their measured energy
        ``sum_n c_n^2 + p_R^2`` (see :func:`project_values`).
    shape_regions : tuple of bool
        Whether each region (BF, DF) is an energy region with a mask wider than one pixel:
        where the prediction's shape can be matched to the region's measured energy (see
        :func:`project_values`, ``match_shape``).
    signed_regions : tuple of bool
        Whether each region (BF, DF) holds masks, is not made only of scalable masks (signed
        Zernike, diffraction-pattern or PCA masks) and is not spanned completely by them
        (then the coefficients are the pattern): such a region is matched to its
        coefficients and its measured energy together (see
        :func:`~py4dstem_compressed.reconstruction.region_matching.match_signed_region`).
    region_index : tuple of array
        ``(K_BF,)`` and ``(K_DF,)`` indices of the masks of each region.
    """

    masks: Any
    region_maps: Any
    edge_map: Any
    mask_regions: Any
    shape: tuple[int, int]
    mode: str = "amplitude"
    scalable_index: Any = None
    scalable_support: Any = None
    energy_regions: Any = None
    shape_regions: tuple[bool, bool] = (False, False)
    signed_regions: tuple[bool, bool] = (False, False)
    region_index: tuple[Any, Any] = (None, None)
    _by_dtype: dict = field(default_factory=dict, repr=False)

    #: Arrays that enter matrix products with the predicted values
    FLOAT_ARRAYS = (
        "masks",
        "region_maps",
        "edge_map",
        "mask_regions",
        "scalable_support",
        "energy_regions",
    )

    def in_dtype(self, dtype: Any) -> CompressedOperator:
        """This operator with its float arrays in ``dtype`` (cached; ``self`` if they are).

        A matrix product of float64 values with float32 masks does not run on BLAS (NumPy
        falls back to a loop about 40x slower); the data step therefore multiplies arrays
        of one dtype.
        """
        key = str(dtype)
        if self.masks.dtype == dtype:
            return self
        if key not in self._by_dtype:
            cast = {
                name: getattr(self, name).astype(dtype)
                for name in self.FLOAT_ARRAYS
                if getattr(self, name) is not None
            }
            self._by_dtype[key] = replace(self, **cast, _by_dtype={})
        return self._by_dtype[key]

    @classmethod
    def from_detector(
        cls,
        masks: np.ndarray,
        bf: np.ndarray,
        df: np.ndarray,
        origin_px: tuple[int, int],
        mode: str = "amplitude",
        xp: Any = np,
    ) -> CompressedOperator:
        """Map detector-frame masks and regions into the corner-centred frame.

        Parameters
        ----------
        masks : numpy.ndarray
            ``(K, Qx, Qy)`` orthonormal masks, detector frame.
        bf, df : numpy.ndarray of bool
            ``(Qx, Qy)`` BF and DF region maps, detector frame. EDGE is the rest.
        origin_px : tuple of int
            Detector pixel ``(qx, qy)`` that becomes the corner pixel ``(0, 0)``: the
            masks are rolled (wrapping around) by ``-origin_px``. An integer roll keeps
            them exactly orthonormal; sub-pixel offsets go into the descan ramp.
        mode : {"amplitude", "intensity"}
            What the coefficients were computed from.
        xp : module
            Array module of the reconstruction device (``numpy`` or ``cupy``).
        """
        check_mode(mode)
        masks = np.asarray(masks, dtype=np.float32)
        shift = (-int(origin_px[0]), -int(origin_px[1]))
        rolled = np.roll(masks, shift, axis=(-2, -1)).reshape(masks.shape[0], -1)
        regions = np.stack([np.asarray(bf, bool), np.asarray(df, bool)])
        regions = np.roll(regions, shift, axis=(-2, -1)).reshape(2, -1)
        edge = ~(regions[0] | regions[1])
        # region of each mask: where its energy is (BF masks in BF, DF masks in DF)
        energy = (rolled.astype(np.float64) ** 2) @ regions.T.astype(np.float64)  # (K, 2)
        outside = 1.0 - energy.sum(axis=1)
        if np.any(outside > REGION_LEAK_TOLERANCE) or np.any(
            energy.min(axis=1) > REGION_LEAK_TOLERANCE
        ):
            raise ValueError(
                "every mask must lie inside one region (BF or DF) of the detector geometry"
            )
        mask_regions = (energy == energy.max(axis=1, keepdims=True)).T
        index, support = _scalable_masks(rolled)
        # regions made only of scalable masks: their energy can be matched as a whole
        scalable = np.zeros(masks.shape[0], bool)
        scalable[index] = True
        whole = np.array([bool(scalable[row].all()) and row.any() for row in mask_regions])
        energy_regions = (mask_regions[:, index].T & whole[None, :]).astype(np.float32)
        # regions whose shape can change: some mask covers more than one pixel
        sizes = support.sum(axis=1)
        shapeable = energy_regions.T @ (sizes > 1) > 0  # (2,)
        # a region its masks span completely is its coefficients: no energy left to match
        signed = [
            bool(row.any()) and not bool(w) and int(row.sum()) < int(region.sum())
            for row, w, region in zip(mask_regions, whole, regions)
        ]
        region_index = tuple(xp.asarray(np.flatnonzero(row)) for row in mask_regions)
        return cls(
            masks=xp.asarray(rolled),
            region_maps=xp.asarray(regions, dtype=xp.float32),
            edge_map=xp.asarray(edge, dtype=xp.float32),
            mask_regions=xp.asarray(mask_regions, dtype=xp.float32),
            shape=(int(masks.shape[-2]), int(masks.shape[-1])),
            mode=mode,
            scalable_index=xp.asarray(index) if index.size else None,
            scalable_support=xp.asarray(support) if index.size else None,
            energy_regions=xp.asarray(energy_regions) if energy_regions.any() else None,
            shape_regions=(bool(shapeable[0]), bool(shapeable[1])),
            signed_regions=(signed[0], signed[1]),
            region_index=region_index,
        )

    @property
    def num_masks(self) -> int:
        """Number of masks ``K``."""
        return int(self.masks.shape[0])


def _scalable_masks(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices and supports of non-negative masks whose support no other mask touches."""
    support = masks != 0
    coverage = support.sum(axis=0)
    scalable = (masks >= 0).all(axis=1) & (coverage[None, :] == 1).sum(axis=1).astype(bool)
    scalable &= ~(support & (coverage[None, :] > 1)).any(axis=1)
    index = np.flatnonzero(scalable)
    return index, support[index].astype(np.float32)


def mask_coefficients(values: Any, masks: Any) -> Any:
    """Coefficients ``<v, M_n>`` of a batch (Eq. 8).

    Parameters
    ----------
    values : array
        ``(B, P)`` or ``(B, Sx, Sy)`` amplitudes or intensities.
    masks : array
        ``(K, P)`` masks.

    Returns
    -------
    array
        ``(B, K)`` coefficients.
    """
    flat = values.reshape(values.shape[0], -1)
    return flat @ masks.T
