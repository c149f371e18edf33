"""Shot-noise removal for data-derived masks: a low-rank model of sampled intensities.

At a realistic dose most dark-field pixels of one pattern hold 0 or 1 electron, so a
mask made from one pattern (or from the principal components of a few hundred
``sqrt(counts)``) spans shot noise rather than the dark-field signal. Here the sampled
intensities are denoised by projecting them on the leading principal components of a
sample, after scaling for Poisson noise (Keenan & Kotula, Surf. Interface Anal. 36, 203
(2004): divide by the square roots of the pixel and pattern means, so that the noise has
about the same variance everywhere; a pattern's mean is floored at ``ROW_FLOOR_FRACTION``
of the sample's mean). How many components carry signal is the optimal hard
threshold of the singular values for noise of unknown level (Gavish & Donoho, IEEE Trans.
Inf. Theory 60, 5040 (2014)): no parameter to tune, and a noise-free sample keeps
(nearly) all its components. The amplitude ``sqrt(I)`` is taken only after denoising:
``sqrt`` of a Poisson count is a biased estimate of the amplitude where counts are sparse.

Everything is scale-free: intensities in counts, gain-scaled counts or normalised give
the same components (up to float rounding).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from py4dstem_compressed.bases.sampling import (
    gram_schmidt_of_vectors,
    in_mode,
    principal_components,
    read_pattern,
    region_intensities,
)

__all__ = [
    "IntensitySubspace",
    "denoised_components",
    "denoised_gram_schmidt",
    "fit_intensity_subspace",
    "gavish_donoho_omega",
]

#: A pattern's mean is floored at this fraction of the sample's mean before it scales the
#: pattern: a pattern holding one or two electrons would otherwise be scaled up into a spike
#: that the threshold takes for signal (measured on 12 DF electrons per pattern).
ROW_FLOOR_FRACTION = 0.25
#: Singular values below this fraction of the largest are numerically zero.
RANK_TOLERANCE = 1e-6


def gavish_donoho_omega(beta: float) -> float:
    """Optimal hard threshold over the median singular value, unknown noise level.

    Parameters
    ----------
    beta : float
        Aspect ratio ``min(n, p) / max(n, p)`` of the matrix, in (0, 1].

    Returns
    -------
    float
        ``omega(beta)``: singular values above ``omega * median`` are kept (the paper's
        polynomial approximation, accurate to a few per mille).
    """
    return 0.56 * beta**3 - 0.95 * beta**2 + 1.82 * beta + 1.43


@dataclass(frozen=True)
class IntensitySubspace:
    """Principal components of Poisson-scaled intensities of a region.

    Attributes
    ----------
    pixel_scale : numpy.ndarray
        ``(P,)`` square root of each pixel's mean sampled intensity [sqrt(intensity unit)];
        0 where the sample never holds intensity.
    components : numpy.ndarray
        ``(K, P)`` orthonormal right singular vectors of the scaled sample, strongest
        first, numerically non-zero ones only.
    signal_rank : int
        How many leading components stand above the noise (Gavish-Donoho threshold).
    """

    pixel_scale: np.ndarray
    components: np.ndarray
    signal_rank: int

    def denoise(self, intensities: np.ndarray, rank: int) -> np.ndarray:
        """Project intensities on the ``rank`` leading components (clipped at 0).

        Parameters
        ----------
        intensities : numpy.ndarray
            ``(..., P)`` intensities of the region's pixels [any unit].
        rank : int
            Number of leading components kept.

        Returns
        -------
        numpy.ndarray
            ``(..., P)`` float64 denoised intensities [same unit], ``>= 0``.
        """
        safe = np.where(self.pixel_scale > 0, self.pixel_scale, 1.0)
        scaled = np.where(self.pixel_scale > 0, intensities / safe, 0.0)
        kept = self.components[:rank]
        return np.clip((scaled @ kept.T) @ kept * self.pixel_scale, 0.0, None)

    def ranks_to_try(self, minimum: int = 1) -> list[int]:
        """Ranks from the signal rank (at least ``minimum``), doubled up to all components.

        A mask family may need more independent patterns than the signal rank gives (more
        masks than signal components); the caller tries the ranks in order.
        """
        total = len(self.components)
        rank = max(1, min(max(self.signal_rank, minimum), total))
        ranks = [rank]
        while ranks[-1] < total:
            ranks.append(min(2 * ranks[-1], total))
        return ranks


def fit_intensity_subspace(samples: np.ndarray) -> IntensitySubspace:
    """Poisson-scaled principal components of sampled intensities and their signal rank.

    Parameters
    ----------
    samples : numpy.ndarray
        ``(n, P)`` non-negative intensities of one region's ``P`` pixels in ``n`` sampled
        patterns [any unit].

    Returns
    -------
    IntensitySubspace
    """
    x = np.clip(np.asarray(samples, dtype=np.float64), 0.0, None)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"need a (patterns, pixels) sample, got shape {x.shape}")
    pixel_scale = np.sqrt(x.mean(axis=0))
    row_scale = np.sqrt(np.maximum(x.mean(axis=1), ROW_FLOOR_FRACTION * x.mean()))
    scaled = np.where(pixel_scale > 0, x / np.where(pixel_scale > 0, pixel_scale, 1.0), 0.0)
    scaled /= np.where(row_scale > 0, row_scale, 1.0)[:, None]
    _, s, vt = np.linalg.svd(scaled, full_matrices=False)
    if s.size == 0 or s[0] == 0:
        return IntensitySubspace(pixel_scale, vt[:0], 0)
    nonzero = int((s > s[0] * RANK_TOLERANCE).sum())
    beta = min(x.shape) / max(x.shape)
    threshold = gavish_donoho_omega(beta) * np.median(s)
    signal = int((s[:nonzero] > threshold).sum())
    return IntensitySubspace(pixel_scale, vt[:nonzero], signal)


def denoised_gram_schmidt(
    data, region, count, sample, stream, mode, shifts_px
) -> tuple[np.ndarray, list[tuple[int, int]], int | None]:
    """DF masks: Gram-Schmidt of sampled patterns denoised on a sample's leading components.

    Each pattern of ``stream()`` is replaced by its projection on the leading
    Poisson-scaled principal components of the intensities at the ``sample`` positions
    (the signal rank, at least ``count``), then taken to the mode. When they give fewer
    than ``count`` independent patterns the rank is doubled, up to all components, then
    the patterns are used as recorded. Returns the masks, the positions
    used and the rank (None: not denoised).
    """
    intensities = region_intensities(data, sample, region, shifts_px)
    read = dict(zip(sample, intensities))
    subspace = fit_intensity_subspace(intensities)

    def vectors(rank):
        def vector(position):
            i = read.get(position)
            if i is None:
                i = read_pattern(data, position, "intensity", shifts_px)[region]
            i = np.clip(i, 0, None) if rank is None else subspace.denoise(i, rank)
            return in_mode(i, mode)

        return vector

    ranks = [*subspace.ranks_to_try(count), None]
    for rank in ranks:
        try:
            masks, used = gram_schmidt_of_vectors(
                region, count, stream(), vectors(rank), "dark-field"
            )
            return masks, used, rank
        except ValueError:
            if rank is None:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def denoised_components(intensities, count, mode) -> tuple[np.ndarray, int | None]:
    """DF principal components of the denoised sample, with the rank used (None: raw)."""
    subspace = fit_intensity_subspace(intensities)
    for rank in [*subspace.ranks_to_try(count), None]:
        denoised = (
            np.clip(intensities, 0, None) if rank is None else subspace.denoise(intensities, rank)
        )
        try:
            return principal_components(in_mode(denoised, mode), count, "dark-field"), rank
        except ValueError:
            if rank is None:
                raise
    raise AssertionError("unreachable")  # pragma: no cover
