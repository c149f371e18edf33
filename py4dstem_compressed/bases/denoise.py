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

Masks beyond the signal rank are not taken from the remaining components (those are the
sample's shot noise, and the sampled patterns' own noise would then sit in the masks that
measure them); they come from smoothed patterns instead.

Everything is scale-free: intensities in counts, gain-scaled counts or normalised give
the same components (up to float rounding).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice

import numpy as np

from py4dstem_compressed.bases.sampling import (
    GramSchmidt,
    extend_gram_schmidt,
    in_mode,
    masks_of_rows,
    principal_components,
    read_pattern,
    region_intensities,
    smooth_in_region,
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
    data, region, count, sample, stream, mode, shifts_px, smoothings_px
) -> tuple[np.ndarray, list[tuple[int, int]], int, int]:
    """DF masks: Gram-Schmidt of patterns denoised on the sample's signal, then of smoothed ones.

    The first masks (as many as the sample has signal components, the Gavish-Donoho rank
    ``r``, at most ``count``) come from the patterns of ``stream()`` projected on the ``r``
    leading Poisson-scaled principal components of the intensities at the ``sample``
    positions, then taken to the mode. The rest continue the same Gram-Schmidt with the
    patterns smoothed inside the region (``smoothings_px`` tried in order, as the BF
    masks are built). Components beyond the signal rank are the sample's shot noise:
    masks made from them carry the noise of the sampled patterns, and those patterns'
    coefficients then hold their own noise several times over (the README's thin-specimen
    section gives the measurement), while smoothing averages the noise of one pattern out.
    Returns the masks, the positions used, ``r`` and how many masks come from the
    denoised patterns.
    """
    intensities = region_intensities(data, sample, region, shifts_px)
    read = dict(zip(sample, intensities))
    subspace = fit_intensity_subspace(intensities)
    rank = max(1, subspace.signal_rank)

    def denoised(position):
        i = read.get(position)
        if i is None:
            i = read_pattern(data, position, "intensity", shifts_px)[region]
        return in_mode(subspace.denoise(i, rank), mode)

    gs = GramSchmidt(int(region.sum()))
    used: list[tuple[int, int]] = []
    positions = islice(stream(), max(len(sample), count))
    tried = extend_gram_schmidt(gs, used, min(count, rank), positions, denoised)
    from_signal = len(used)
    for sigma in smoothings_px:

        def smoothed(position, sigma=sigma):
            pattern = read_pattern(data, position, mode, shifts_px)
            return smooth_in_region(pattern, region, sigma)[region]

        tried += extend_gram_schmidt(gs, used, count, stream(), smoothed)
    masks = masks_of_rows(region, gs, used, count, tried, "dark-field")
    return masks, used, rank, from_signal


def denoised_components(intensities, count, mode, smooth) -> tuple[np.ndarray, int, int]:
    """DF principal components of the denoised sample, then of the smoothed sample.

    As many leading components of the sample denoised at its signal rank ``r`` (taken to
    the mode) as it has signal components (at most ``count``), then the leading
    components of the sample taken to the mode and smoothed (``smooth``: ``(n, P) ->
    (n, P)``) with the first ones projected out (why: :func:`denoised_gram_schmidt`).
    Returns the ``(count, P)`` components, ``r`` and how many come from the denoised sample.
    """
    subspace = fit_intensity_subspace(intensities)
    rank = max(1, subspace.signal_rank)
    denoised = in_mode(subspace.denoise(intensities, rank), mode)
    _, s, vt = np.linalg.svd(denoised, full_matrices=False)
    numerical = int((s > s[0] * RANK_TOLERANCE).sum()) if s.size and s[0] > 0 else 0
    first = min(count, rank, numerical)
    lead = principal_components(denoised, first, "dark-field") if first else vt[:0]
    if first == count:
        return lead, rank, first
    rest = smooth(in_mode(np.clip(intensities, 0, None), mode))
    rest = rest - (rest @ lead.T) @ lead
    more = principal_components(rest, count - first, "dark-field")
    return np.vstack([lead, more]), rank, first
