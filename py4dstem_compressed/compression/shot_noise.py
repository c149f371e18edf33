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
the fit leaves of unit white noise, is ``g sum I`` plus any structure the fit misses.
Structure only ever adds, and it gathers where the pattern has features (Bragg disks, lines,
the disk's rim) while the noise is everywhere: each region's interior (BF and DF) is cut
into :data:`NUM_RINGS` rings of equal area times :data:`NUM_SECTORS` sectors, each part's
ratio is ``g`` plus that part's structure, and the region's estimate is the *median* over
its parts (``g`` wherever at least half the parts hold no more structure than noise); the
smaller of the two regions' estimates is kept. It scales with the data's unit (counts x 3.1
gives 3.1 g), so the number of counts a pattern stands for, ``I / g``, does not depend on
the unit. On the benchmark's noisy sets (Poisson counts, ``g = 1``) it gives 0.99-1.01. On
noise-free simulations (structure only) it gives tens of millions of counts per pattern;
the whole-region ratio of 0.5 gave ~5e5 on the noise-free crystal, whose dark field the
data step then modelled as sparse counts: noise-free, the coefficients are those of the
amplitude itself, and that model's biased target slowed the reconstruction
(README, "Thin specimens").
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
    "NUM_RINGS",
    "NUM_SECTORS",
    "intensity_per_count",
    "local_fit_kernel",
    "region_parts",
    "sampled_intensity_per_count",
    "white_noise_residual",
]

#: Patterns sampled over the scan for the estimate
NOISE_SAMPLES = 64
#: Pixels of a region's rim left out (the BF disk's edge is sharp structure, not noise)
INTERIOR_MARGIN_PX = 3
#: Rings of equal area a region's interior is cut into for the median over its parts
NUM_RINGS = 4
#: Sectors of equal angle each ring is cut into
NUM_SECTORS = 8


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
        ``g`` [data units per count]: the smaller of the regions' estimates, each the median
        over the parts of its interior (:func:`region_parts`) of the residual energy per
        unit intensity; 0.0 when no region has an interior with intensity (noise cannot be
        measured, the data step then treats the data as noise-free).
    """
    frames = np.asarray(frames, np.float64)
    frames = np.clip(frames[np.isfinite(frames).all(axis=(1, 2))], 0.0, None)
    kernel = local_fit_kernel()
    white = white_noise_residual(kernel)
    residual = frames - convolve(frames, kernel[None], mode="nearest")
    margin = INTERIOR_MARGIN_PX + int(np.ceil(abs(max_shift_px)))
    intensity = frames.sum(axis=0)
    energy = (residual * residual).sum(axis=0)
    estimates = []
    for region in (geometry.bf, geometry.df):
        region = np.asarray(region, bool)
        if geometry.mask is not None:
            region = region & ~np.asarray(geometry.mask, bool)
        inner = binary_erosion(region, iterations=margin)
        ratios = [
            float(energy[part].sum()) / white / float(intensity[part].sum())
            for part in region_parts(inner, geometry.center)
            if intensity[part].sum() > 0
        ]
        if ratios:
            estimates.append(float(np.median(ratios)))
    return min(estimates) if estimates else 0.0


def region_parts(inner: np.ndarray, center) -> list[np.ndarray]:
    """``inner`` cut into :data:`NUM_RINGS` rings of equal area x :data:`NUM_SECTORS` sectors.

    Parameters
    ----------
    inner : numpy.ndarray
        ``(Qx, Qy)`` bool, a region's interior.
    center : (float, float)
        Centre of the rings and sectors [px].

    Returns
    -------
    list of numpy.ndarray
        The non-empty parts, ``(Qx, Qy)`` bool each.
    """
    if not inner.any():
        return []
    qx, qy = np.indices(inner.shape, dtype=np.float64)
    qx -= center[0]
    qy -= center[1]
    radius = np.hypot(qx, qy)
    edges = np.quantile(radius[inner], np.linspace(0.0, 1.0, NUM_RINGS + 1))
    ring = np.clip(np.searchsorted(edges, radius, side="right") - 1, 0, NUM_RINGS - 1)
    sector = np.floor((np.arctan2(qy, qx) + np.pi) / (2 * np.pi) * NUM_SECTORS).astype(int)
    label = ring * NUM_SECTORS + np.clip(sector, 0, NUM_SECTORS - 1)
    parts = [inner & (label == k) for k in range(NUM_RINGS * NUM_SECTORS)]
    return [part for part in parts if part.any()]


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
