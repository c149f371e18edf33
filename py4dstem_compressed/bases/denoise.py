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
from py4dstem_compressed.core.poisson import sqrt_poisson_variance

__all__ = [
    "IntensitySubspace",
    "captured_noise",
    "components_beyond",
    "denoised_components",
    "denoised_gram_schmidt",
    "fit_intensity_subspace",
    "gavish_donoho_omega",
    "held_out_signal",
    "pixel_noise_variance",
    "residual_intensity_per_count",
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


def denoised_components(
    intensities, count, mode, smooth, smoothings_px=(0.0,)
) -> tuple[np.ndarray, int, int, float | None]:
    """DF principal components of the denoised sample, then of the smoothed sample.

    As many leading components of the sample denoised at its signal rank ``r`` (taken to
    the mode) as it has signal components (at most ``count``), then the leading
    components of the sample smoothed (``smooth(intensities, sigma_px)``: ``(n, P) -> (n,
    P)``), taken to the mode and centred, with the first ones projected out (why not the
    denoised sample's further components: :func:`denoised_gram_schmidt`). The smoothing is
    the one of ``smoothings_px`` whose components, built on half of the sample, capture the
    most scan-varying signal of the other half, each half in turn (:func:`held_out_signal`,
    two-fold): the noise of the two halves is independent, so what the components capture
    of the held-out half beyond its shot noise is signal. Too little smoothing leaves the
    components following the noise of the half they come from, too much blurs the dark
    field's features; no parameter decides between them. Returns the ``(count, P)``
    components, ``r``, how many come from the denoised sample and the smoothing chosen [px]
    (None if none was needed).
    """
    subspace = fit_intensity_subspace(intensities)
    rank = max(1, subspace.signal_rank)
    denoised = in_mode(subspace.denoise(intensities, rank), mode)
    _, s, vt = np.linalg.svd(denoised, full_matrices=False)
    numerical = int((s > s[0] * RANK_TOLERANCE).sum()) if s.size and s[0] > 0 else 0
    first = min(count, rank, numerical)
    lead = principal_components(denoised, first, "dark-field") if first else vt[:0]
    if first == count:
        return lead, rank, first, None
    gain = residual_intensity_per_count(intensities, subspace, rank)
    halves = (intensities[0::2], intensities[1::2])
    folds = []  # two-fold: each half once the one the components are built on
    for train, test in (halves, halves[::-1]):
        test = np.clip(test, 0, None)
        values = in_mode(test, mode)
        variance = pixel_noise_variance(test.mean(axis=0), gain, mode)
        folds.append((train, values - values.mean(axis=0), variance))
    scores = []
    for sigma in smoothings_px:
        try:
            score = sum(
                held_out_signal(
                    components_beyond(train, lead, count - first, mode, smooth, sigma), *fold
                )
                for train, *fold in folds
            )
        except ValueError:  # heavy smoothing leaves the half fewer components than needed
            score = -np.inf
        scores.append(score)
    sigma = float(smoothings_px[int(np.argmax(scores))])
    more = components_beyond(intensities, lead, count - first, mode, smooth, sigma)
    return np.vstack([lead, more]), rank, first, sigma


def components_beyond(intensities, lead, count, mode, smooth, sigma_px) -> np.ndarray:
    """``count`` principal components of the smoothed, centred sample orthogonal to ``lead``.

    The intensities are smoothed before they are taken to the mode: ``sqrt`` of sparse
    counts is a biased amplitude, and smoothing the counts first averages them.
    """
    values = in_mode(np.clip(smooth(np.clip(intensities, 0, None), sigma_px), 0, None), mode)
    values = values - values.mean(axis=0)
    if len(lead):
        values = values - (values @ lead.T) @ lead
    return principal_components(values, count, "dark-field")


def held_out_signal(components, centred, variance) -> float:
    """Scan-varying signal of held-out patterns that components capture, less their noise.

    ``components`` (``(K, P)``, orthonormal, built without these patterns: see
    :func:`components_beyond`) capture ``sum_k <m_k, x - mean x>^2`` of each held-out
    pattern ``x`` (``centred``: ``(n, P)`` rows ``x - mean x`` in the mode); of that, ``sum_k
    sum_p m_kp^2 sigma_p^2`` is the pattern's own shot noise, independent of the components
    (``variance``: ``(P,)`` ``sigma_p^2`` of :func:`pixel_noise_variance`). Returns the mean
    over the patterns of the difference.
    """
    captured = float(((centred @ components.T) ** 2).mean(axis=0).sum())
    return captured - captured_noise(components, variance)


def captured_noise(components, variance) -> float:
    """Shot noise that orthonormal ``components`` capture of patterns independent of them.

    ``sum_k sum_p m_kp^2 sigma_p^2``: a pattern's noise, independent across pixels and of the
    components, projects onto component ``k`` with the variance ``sum_p m_kp^2 sigma_p^2``.

    Parameters
    ----------
    components : numpy.ndarray
        ``(K, P)`` orthonormal rows.
    variance : numpy.ndarray
        ``(P,)`` each pixel's noise variance ``sigma_p^2``.

    Returns
    -------
    float
        The captured noise energy, in the unit of ``variance``.
    """
    return float(((components**2) @ variance).sum())


def residual_intensity_per_count(intensities, subspace: IntensitySubspace, rank: int) -> float:
    """Intensity of one count from the sample's residual beyond its signal rank.

    Poisson noise of gain ``g`` has the variance ``g E[I]``: the residual energy of the
    sample's rank-``r`` model over its total intensity, with the degrees of freedom the
    model took, is ``g`` plus the structure beyond the rank (which only adds). Scales with
    the data's unit; 0 where the sample holds no intensity.
    """
    x = np.clip(np.asarray(intensities, dtype=np.float64), 0.0, None)
    total = float(x.sum())
    if total <= 0:
        return 0.0
    n, p = x.shape
    residual = float(((x - subspace.denoise(x, rank)) ** 2).sum())
    return residual * n * p / max(n * p - rank * (n + p), 1) / total


def pixel_noise_variance(mean_intensity, intensity_per_count: float, mode: str) -> np.ndarray:
    """Shot-noise variance of each pixel's value in the mode, from its mean intensity.

    ``I = g N`` with ``N ~ Poisson(lam)``, ``lam = E[I] / g``: the variance of ``sqrt(I)``
    is ``g Var[sqrt(N)]`` (:func:`~py4dstem_compressed.core.poisson.sqrt_poisson_variance`),
    that of ``I`` is ``g E[I]``. ``g = 0`` (no noise measured): 0.
    """
    mean_intensity = np.clip(np.asarray(mean_intensity, dtype=np.float64), 0.0, None)
    if not intensity_per_count > 0:
        return np.zeros_like(mean_intensity)
    if mode == "amplitude":
        lam = mean_intensity / intensity_per_count
        return intensity_per_count * sqrt_poisson_variance(lam)
    return intensity_per_count * mean_intensity
