"""What a suggestion's masks miss of the scan-varying signal, less the shot noise.

Held-out curves (:func:`~py4dstem_compressed.analysis.angle_curves.angle_curves` with
``variation=True`` and a ``noise_variance``) record, per mask count, what the masks miss of
the held-out patterns' variation about their mean and how much of their shot noise the masks
capture. Here the noise is estimated per pixel, scaled to stay within what every curve misses,
and subtracted: what is left is the signal the masks miss, in units of the patterns' mean
energy (:func:`~py4dstem_compressed.analysis.basis_suggestion.suggest_basis` spends its budget
on it).
"""

from __future__ import annotations

import numpy as np

from py4dstem_compressed.analysis.angle_curves import AngleCurves
from py4dstem_compressed.bases.denoise import pixel_noise_variance
from py4dstem_compressed.compression.shot_noise import intensity_per_count

__all__ = ["curve_points", "held_out_noise_variance", "noise_scale", "signal_curves"]


def held_out_noise_variance(frames: np.ndarray, held_out: np.ndarray, geometry, mode) -> np.ndarray:
    """``(Qx, Qy)`` shot-noise variance of the held-out patterns' values in the mode.

    The intensity of one count ``g`` is measured from the sample's pixel-to-pixel noise
    (:func:`~py4dstem_compressed.compression.shot_noise.intensity_per_count`, the estimate
    the data step uses), each pixel's variance from the held-out patterns' mean intensity
    (:func:`~py4dstem_compressed.bases.denoise.pixel_noise_variance`). Scales with the
    data's unit as the patterns' energy does. Structure finer than the estimate's local fit
    (noise-free data) passes for noise: :func:`noise_scale` caps it.

    Parameters
    ----------
    frames : numpy.ndarray
        ``(N, Qx, Qy)`` sampled intensities [any unit] the intensity of one count is measured on.
    held_out : numpy.ndarray
        ``(..., Qx, Qy)`` held-out intensities [same unit].
    geometry : DetectorGeometry
        Detector regions.
    mode : {"amplitude", "intensity"}
        Variance of ``sqrt(I)`` or of ``I``.

    Returns
    -------
    numpy.ndarray
        ``(Qx, Qy)`` float64 variances [unit of ``I`` in amplitude mode, its square otherwise].
    """
    g = intensity_per_count(frames, geometry)
    mean = np.clip(np.asarray(held_out, np.float64).reshape(-1, *geometry.shape).mean(0), 0, None)
    return pixel_noise_variance(mean, g, mode)


def curve_points(curves: dict, family: str, region: str) -> dict:
    """``count -> value`` of a family's curve; the DF's one-mask point is the uniform mask
    (Zernike's) for every family.

    Parameters
    ----------
    curves : dict
        ``region -> family -> (counts, values)``, e.g. ``AngleCurves.variation`` or its
        ``"captured_noise"`` entry.
    family, region : str
        The curve.

    Returns
    -------
    dict
        ``{int count: float value}``.
    """
    points = dict(zip(*(np.asarray(a).tolist() for a in curves[region].get(family, ((), ())))))
    if region == "df":
        zernike = curves["df"]["zernike"]
        points.setdefault(1, float(zernike[1][list(zernike[0]).index(1)]))
    return {int(k): float(v) for k, v in points.items()}


def noise_scale(curves: AngleCurves) -> dict:
    """Per region, the factor (at most 1) that keeps the noise estimate within what every
    held-out curve leaves uncaptured.

    Noise of held-out patterns is independent of masks built from other patterns: of the
    noise energy ``N``, masks capturing ``C`` of it leave ``N - C`` uncaptured, so ``N - C``
    is at most what they miss of the patterns' variation at every point of every family's
    curve. Structure finer than the noise estimate's local fit (noise-free data) would
    otherwise pass for noise.

    Parameters
    ----------
    curves : AngleCurves
        Held-out curves measured with a ``noise_variance``.

    Returns
    -------
    dict
        ``{"bf": s, "df": s}``, each in [0, 1].
    """
    scale = {}
    for region in ("bf", "df"):
        total = curves.variation["totals"][region]["noise"]
        ratios = [1.0]
        for family in curves.variation[region]:
            missed = curve_points(curves.variation, family, region)
            captured = curve_points(curves.variation["captured_noise"], family, region)
            ratios += [
                missed[k] / (total - captured[k])
                for k in missed
                if k in captured and total - captured[k] > 0
            ]
        scale[region] = max(min(ratios), 0.0)
    return scale


def signal_curves(
    curves: AngleCurves, bf_family: str, df_family: str, scale: dict, geometry
) -> tuple:
    """Uncaptured scan-varying signal of the ``bf_family`` BF and ``df_family`` DF masks, per count,
    and the shot noise a mask stores, in units of the patterns' mean energy.

    What ``k`` masks miss of a held-out pattern's variation about the mean pattern
    (``curves.variation``) holds the part of its shot noise they do not capture: the
    region's noise energy less what those masks capture of it (``"captured_noise"``,
    measured per mask set: masks that follow the bright pixels of a sparse dark field
    capture much more of its noise than ``k / pixels``), both times :func:`noise_scale`.
    The rest is signal the masks miss. A mask stores, on average over the region, the noise
    energy over the region's pixel count.

    Parameters
    ----------
    curves : AngleCurves
        Held-out curves measured with a ``noise_variance``.
    bf_family, df_family : str
        The BF and DF curves' families.
    scale : dict
        :func:`noise_scale` of the curves.
    geometry : DetectorGeometry
        Detector regions.

    Returns
    -------
    tuple
        ``(bf, df, per_mask)``: ``{count: uncaptured signal}`` of each region and ``{region:
        noise energy per mask}``.
    """
    out, per_mask = [], {}
    for region, family in (("bf", bf_family), ("df", df_family)):
        missed = curve_points(curves.variation, family, region)
        captured = curve_points(curves.variation["captured_noise"], family, region)
        noise = scale[region] * curves.variation["totals"][region]["noise"]
        out.append(
            {k: max(v - (noise - scale[region] * captured[k]), 0.0) for k, v in missed.items()}
        )
        per_mask[region] = noise / int(getattr(geometry, region).sum())
    return out[0], out[1], per_mask
