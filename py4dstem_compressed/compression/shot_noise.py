"""The shot-noise quantum of a scan: the intensity one detected electron adds [data units].

Amplitude coefficients of sparse counts are biased: for ``N ~ Poisson(lam)`` counts a pixel's
``E[sqrt(N)]`` is ``~lam`` for ``lam << 1``, not ``sqrt(lam)``, so in a thin specimen's dark
field (``~0.01`` counts per pixel at 2e4 e/A^2) the coefficients describe the expected
*intensity*'s shape rather than the amplitude's. The data step models this
(:mod:`~py4dstem_compressed.reconstruction.shot_noise_model`) and needs the number of counts a
pixel's intensity stands for, i.e. the intensity of one count, ``g``.

``g`` is measured on a sample of raw frames: Poisson noise of gain ``g`` has variance
``g E[I]`` per pixel, so inside a region (away from its rim, whose sharp edge is
structure), the energy of the residual of a local quadratic fit (3x3 pixels), divided by what
the fit leaves of unit white noise, is ``g sum I`` plus any structure the fit misses. The
estimate is taken in each region (BF and DF interiors) and the smallest is kept: structure
only ever adds, so each is an upper bound on ``g``. It scales with the data's unit (counts x
3.1 gives 3.1 g), so the number of counts a pattern stands for, ``I / g``, does not depend on
the unit. Noise-free simulations give a ``g`` thousands of times below the intensity of a
pattern (structure only); their data step is then the noise-free one to within float
rounding where it matters (bright pixels).
"""

from __future__ import annotations

import functools

import numpy as np
from scipy.ndimage import binary_erosion, convolve

from py4dstem_compressed.bases.geometry import DetectorGeometry
from py4dstem_compressed.core.sources import sampled_frames

__all__ = [
    "INTERIOR_MARGIN_PX",
    "NOISE_SAMPLES",
    "intensity_per_count",
    "local_fit_kernel",
    "sampled_intensity_per_count",
    "white_noise_residual",
]

#: Patterns sampled over the scan for the estimate
NOISE_SAMPLES = 64
#: Pixels of a region's rim left out (the BF disk's edge is sharp structure, not noise)
INTERIOR_MARGIN_PX = 3


@functools.cache
def local_fit_kernel() -> np.ndarray:
    """``(3, 3)`` kernel giving the centre value of a least-squares quadratic over 3x3 pixels.

    The fit (Savitzky-Golay, terms ``1, x, y, x^2, xy, y^2``) reproduces any structure that is
    locally quadratic, so its residual is mostly pixel-to-pixel noise.
    """
    x, y = np.meshgrid(np.arange(-1, 2), np.arange(-1, 2), indexing="ij")
    terms = np.stack(
        [np.ones(9), x.ravel(), y.ravel(), x.ravel() ** 2, (x * y).ravel(), y.ravel() ** 2], axis=1
    )
    return np.linalg.pinv(terms)[0].reshape(3, 3)


def white_noise_residual(kernel: np.ndarray) -> float:
    """Fraction of unit white noise's energy left in the residual ``f - kernel * f``.

    ``1 - 2 k_0 + sum k^2`` for the kernel ``k`` with centre value ``k_0``.
    """
    centre = tuple(s // 2 for s in kernel.shape)
    return float(1.0 - 2.0 * kernel[centre] + (kernel**2).sum())


def intensity_per_count(
    frames: np.ndarray, geometry: DetectorGeometry, max_shift_px: float = 0.0
) -> float:
    """Intensity of one detected electron, measured from the frames' pixel-to-pixel noise.

    Parameters
    ----------
    frames : numpy.ndarray
        ``(N, Qx, Qy)`` intensities in the data's unit.
    geometry : DetectorGeometry
        Detector regions (BF disk, DF ring).
    max_shift_px : float
        Largest descan [px] of the frames: widens the rim left out of each region
        (:data:`INTERIOR_MARGIN_PX` plus this) so the disk's edge stays outside.

    Returns
    -------
    float
        ``g`` [data units per count], the smallest of the regions' estimates; 0.0 when no
        region has an interior with intensity (noise cannot be measured, the data step then
        treats the data as noise-free).
    """
    frames = np.asarray(frames, np.float64)
    frames = np.clip(frames[np.isfinite(frames).all(axis=(1, 2))], 0.0, None)
    kernel = local_fit_kernel()
    white = white_noise_residual(kernel)
    residual = frames - convolve(frames, kernel[None], mode="nearest")
    margin = INTERIOR_MARGIN_PX + int(np.ceil(abs(max_shift_px)))
    estimates = []
    for region in (geometry.bf, geometry.df):
        region = np.asarray(region, bool)
        if geometry.mask is not None:
            region = region & ~np.asarray(geometry.mask, bool)
        inner = binary_erosion(region, iterations=margin)
        intensity = float(frames[:, inner].sum()) if inner.any() else 0.0
        if intensity > 0:
            estimates.append(float((residual[:, inner] ** 2).sum()) / white / intensity)
    return min(estimates) if estimates else 0.0


def sampled_intensity_per_count(
    data, geometry: DetectorGeometry, max_shift_px: float = 0.0, seed: int = 0
) -> float:
    """:func:`intensity_per_count` on :data:`NOISE_SAMPLES` patterns spread over a scan.

    Parameters
    ----------
    data : array-like
        ``(Rx, Ry, Qx, Qy)`` scan (array, memmap, dask, h5py dataset); read one pattern at
        a time.
    geometry : DetectorGeometry
        Detector regions.
    max_shift_px : float
        Largest descan [px]: widens the rim left out so the disk's edge stays outside.
    seed : int
        Seed of the sampled positions.

    Returns
    -------
    float
        ``g`` [data units per count] (see :func:`intensity_per_count`).
    """
    frames = np.stack([f.astype(np.float64) for f in sampled_frames(data, NOISE_SAMPLES, seed)])
    return intensity_per_count(frames, geometry, max_shift_px)
