"""Helpers every basis family shares: argument checks, region sizes, BF-then-DF assembly."""

from __future__ import annotations

import numpy as np

from py4dstem_compressed.bases.basis import Basis
from py4dstem_compressed.bases.geometry import DetectorGeometry

__all__ = ["assemble_basis", "check_count", "region_pixels", "uniform_df_masks", "uniform_mask"]


def check_count(name: str, value: int, minimum: int = 0) -> int:
    """``value`` as an int if it is a whole number ``>= minimum``; a ValueError otherwise."""
    if int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def region_pixels(region: np.ndarray, name: str) -> int:
    """Pixel count of a detector region; a ValueError naming the fix if it is empty."""
    count = int(region.sum())
    if count == 0:
        raise ValueError(
            f"the {name} region of the detector geometry has no pixel; adjust bf_radius, "
            "df_radius or the mask"
        )
    return count


def uniform_mask(region: np.ndarray) -> np.ndarray:
    """The unit-norm mask that is constant on ``region`` (float64, detector shape)."""
    return region.astype(np.float64) / np.sqrt(region.sum())


def assemble_basis(
    geometry: DetectorGeometry,
    bf: np.ndarray,
    df: np.ndarray,
    kind: str,
    parameters: dict,
    positions=None,
    mode=None,
) -> Basis:
    """A :class:`Basis` of the BF masks ``bf`` then the DF masks ``df`` (any leading shape)."""
    masks = np.concatenate([bf.reshape(-1, *geometry.shape), df.reshape(-1, *geometry.shape)])
    return Basis(masks, len(bf), len(df), geometry, kind, parameters, positions, mode)


def uniform_df_masks(geometry: DetectorGeometry, num_df: int) -> np.ndarray:
    """No DF mask (``num_df=0``) or the one uniform DF mask, as a ``(num_df, Qx, Qy)`` stack."""
    if num_df == 0:
        return np.zeros((0, *geometry.shape))
    region_pixels(geometry.df, "dark-field")
    return uniform_mask(geometry.df)[None]
