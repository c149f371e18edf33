"""Bases fixed by the geometry alone: square bins and Zernike polynomials.

Masks are orthonormal on the pixel grid, BF masks supported on the bright-field disk and DF
masks on the dark-field region; ``num_df=1`` is one uniform DF mask (what an annular dark-field
detector measures).
"""

from __future__ import annotations

import numpy as np

from py4dstem_compressed.bases.assembly import (
    assemble_basis,
    check_count,
    region_pixels,
    uniform_df_masks,
)
from py4dstem_compressed.bases.basis import Basis
from py4dstem_compressed.bases.geometry import DetectorGeometry
from py4dstem_compressed.bases.zernike import (
    orthonormalize_rows,
    zernike_orders,
    zernike_polynomial,
)

__all__ = ["binning_basis", "zernike_basis"]


def _square_bins(geometry: DetectorGeometry, region: np.ndarray, bin_px: int) -> np.ndarray:
    """Unit-norm square bins of ``bin_px`` px tiling ``region``, one bin centred on the disk."""
    qx, qy = np.nonzero(region)
    ix = np.floor((qx - geometry.center[0]) / bin_px + 0.5).astype(np.int64)
    iy = np.floor((qy - geometry.center[1]) / bin_px + 0.5).astype(np.int64)
    keys, index = np.unique(np.stack([ix, iy], axis=1), axis=0, return_inverse=True)
    masks = np.zeros((len(keys), *geometry.shape), np.float64)  # bins in row-major order
    masks[index.ravel(), qx, qy] = 1.0
    masks /= np.sqrt(masks.sum(axis=(1, 2)))[:, None, None]
    return masks


# ------------------------------------------------------------------- binning
def binning_basis(geometry: DetectorGeometry, bf_bin: int, df_bin: int | None = None) -> Basis:
    """Square, non-overlapping bins scaled to unit norm.

    Parameters
    ----------
    geometry : DetectorGeometry
        Detector regions.
    bf_bin : int
        Bin width [px] in the bright field. Bins tile the BF disk (one bin is
        centred on the disk centre) and are clipped to it.
    df_bin : int, optional
        Bin width [px] in the dark field; ``None`` = one uniform DF mask.

    Returns
    -------
    Basis
    """
    bf_bin = check_count("bf_bin", bf_bin, 1)
    region_pixels(geometry.bf, "bright-field")
    bf = _square_bins(geometry, geometry.bf, bf_bin)
    if df_bin is None:
        df = uniform_df_masks(geometry, 1)
    else:
        df_bin = check_count("df_bin", df_bin, 1)
        region_pixels(geometry.df, "dark-field")
        df = _square_bins(geometry, geometry.df, df_bin)
    return assemble_basis(geometry, bf, df, "binning", {"bf_bin": bf_bin, "df_bin": df_bin})


# ------------------------------------------------------------------- Zernike
def _polar(geometry: DetectorGeometry, radius: float) -> tuple[np.ndarray, np.ndarray]:
    qx = np.arange(geometry.shape[0], dtype=np.float64)[:, None] - geometry.center[0]
    qy = np.arange(geometry.shape[1], dtype=np.float64)[None, :] - geometry.center[1]
    rho = np.hypot(qx, qy) / radius
    phi = np.arctan2(qy, qx)  # angle measured from the qx axis towards qy
    return rho, phi


def _orthonormal_polynomials(
    geometry: DetectorGeometry,
    region: np.ndarray,
    radius: float,
    orders: list[tuple[int, int]],
    name: str,
) -> np.ndarray:
    rho, phi = _polar(geometry, radius)
    raw = np.stack([zernike_polynomial(n, m, rho, phi) * region for n, m in orders])
    rows, independent = orthonormalize_rows(raw.reshape(len(orders), -1))
    if not independent.all():
        first = int(np.argmin(independent))
        raise ValueError(
            f"Zernike polynomial #{first} (n, m = {orders[first]}) is linearly dependent on "
            f"the previous ones on the {int(region.sum())} {name} pixels; ask for fewer "
            f"masks (at most about {int(region.sum()) // 2}) or use a finer detector"
        )
    return rows.reshape(len(orders), *geometry.shape) * region


def zernike_basis(
    geometry: DetectorGeometry,
    num_bf: int,
    num_df: int = 1,
    df_rotationally_symmetric: bool = False,
) -> Basis:
    """Zernike polynomials on the BF disk and DF annulus, orthonormalised on the grid.

    BF masks are the first ``num_bf`` polynomials (OSA/ANSI order: the first
    36 are all radial orders ``n <= 7``, the first 45 all ``n <= 8``) with
    ``rho = |q - center| / bf_radius``, orthonormalised in order on the BF
    pixels. DF masks (``num_df > 1``) are polynomials on the disk of the DF
    outer radius with the BF hole cut out ("doughnut" masks), Gram-Schmidt
    orthonormalised; ``num_df = 1`` is the uniform mask (``Z_0^0``).

    Parameters
    ----------
    geometry : DetectorGeometry
        Detector regions.
    num_bf : int
        Number of BF masks.
    num_df : int
        Number of DF masks (0 allowed: no DF coefficient).
    df_rotationally_symmetric : bool
        Use only azimuthally invariant (``m = 0``) DF polynomials, as the
        paper's 22 DF masks.

    Returns
    -------
    Basis
    """
    num_bf = check_count("num_bf", num_bf, 1)
    num_df = check_count("num_df", num_df, 0)
    region_pixels(geometry.bf, "bright-field")
    bf = _orthonormal_polynomials(
        geometry, geometry.bf, geometry.bf_radius, zernike_orders(num_bf), "bright-field"
    )
    if num_df <= 1:
        df = uniform_df_masks(geometry, num_df)
    else:
        region_pixels(geometry.df, "dark-field")
        orders = zernike_orders(num_df, df_rotationally_symmetric)
        df = _orthonormal_polynomials(
            geometry, geometry.df, geometry.outer_radius, orders, "dark-field"
        )
    params = {
        "num_bf": num_bf,
        "num_df": num_df,
        "df_rotationally_symmetric": bool(df_rotationally_symmetric),
        "ordering": "OSA/ANSI",
    }
    return assemble_basis(geometry, bf, df, "zernike", params)
