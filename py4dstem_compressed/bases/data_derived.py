"""Bases derived from sampled patterns: Gram-Schmidt diffraction patterns and PCA.

Each generator is a function returning a :class:`~py4dstem_compressed.Basis`
whose masks are orthonormal on the pixel grid, BF masks supported on the
bright-field disk and DF masks on the dark-field region of the geometry.
``num_df=1`` is one uniform DF mask: its coefficient is the (scaled) mean DF
signal, what an annular dark-field detector measures.
"""

from __future__ import annotations

import warnings
from itertools import islice

import numpy as np

from py4dstem_compressed.bases.assembly import (
    assemble_basis,
    check_count,
    region_pixels,
    uniform_df_masks,
)
from py4dstem_compressed.bases.basis import Basis
from py4dstem_compressed.bases.denoise import denoised_components, denoised_gram_schmidt
from py4dstem_compressed.bases.descan import descan_shifts
from py4dstem_compressed.bases.geometry import DetectorGeometry
from py4dstem_compressed.bases.sampling import (
    check_detector,
    gram_schmidt_of_vectors,
    in_mode,
    position_stream,
    principal_components,
    read_pattern,
    smooth_in_region,
)
from py4dstem_compressed.core.backend import check_mode
from py4dstem_compressed.core.sources import data_array

__all__ = ["default_smoothing_px", "diffraction_pattern_basis", "pca_basis"]

#: Patterns sampled (at random, seeded) for the denoising subspace of the DF masks of
#: :func:`diffraction_pattern_basis`: the size of the paper's PCA sample.
DF_DENOISE_SAMPLES = 320


# --------------------------------------------------------- data-derived bases
#: default smoothing of :func:`diffraction_pattern_basis`, as a fraction of the BF radius
SMOOTHING_BF_RADIUS_FRACTION = 0.25


#: Smoothings of the sampled DF intensities tried for the principal components beyond the
#: signal rank (:func:`pca_basis`), as fractions of the BF radius: none to the quarter of
#: :func:`diffraction_pattern_basis`; the one that captures the most held-out signal is used
DF_SMOOTHING_TRIALS_BF_RADIUS = (0.0, 1 / 32, 1 / 16, 1 / 8, 3 / 16, 1 / 4)


def default_smoothing_px(geometry: DetectorGeometry) -> float:
    """Default smoothing of :func:`diffraction_pattern_basis` [px]: a quarter of the BF radius."""
    return SMOOTHING_BF_RADIUS_FRACTION * float(geometry.bf_radius)


def _gram_schmidt_from_stream(
    data,
    region: np.ndarray,
    count: int,
    stream,
    mode: str,
    name: str,
    smoothing_px: float = 0,
    shifts_px=None,
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    def vector(position):
        pattern = read_pattern(data, position, mode, shifts_px)
        return smooth_in_region(pattern, region, smoothing_px)[region]

    return gram_schmidt_of_vectors(region, count, stream, vector, name)


def _smoothing_trials(smoothing_px: float, automatic: bool) -> list[float]:
    """Smoothings to try in order [px]: the automatic default gives way (halved, down to 0)."""
    if automatic and smoothing_px > 0:
        return [smoothing_px, smoothing_px / 2, smoothing_px / 4, 0.0]
    return [smoothing_px]


def _gram_schmidt_with_smoothing(
    data, region, count, stream, mode, name, smoothing_px, automatic, shifts_px=None
) -> tuple[np.ndarray, list[tuple[int, int]], float]:
    """Masks from smoothed sampled patterns; the default smoothing gives way to the rank.

    Smoothing lowers the number of independent patterns a region can hold (about
    ``(radius / smoothing)^2``). With the automatic default the smoothing is halved (down to
    0, with a warning) until ``count`` independent patterns are found; a smoothing the
    caller chose is kept and the shortfall raises.
    """
    trials = _smoothing_trials(smoothing_px, automatic)
    for attempt, sigma in enumerate(trials):
        try:
            masks, used = _gram_schmidt_from_stream(
                data, region, count, stream(), mode, name, sigma, shifts_px
            )
            break
        except ValueError:
            if attempt == len(trials) - 1:
                raise
    if attempt:
        warnings.warn(
            f"the default smoothing of {smoothing_px:.2f} px leaves fewer than {count} "
            f"independent {name} patterns; used {sigma:.2f} px (pass smoothing_px to "
            "choose it)",
            stacklevel=4,
        )
    return masks, used, sigma


def diffraction_pattern_basis(
    datacube,
    geometry: DetectorGeometry,
    num_bf: int,
    num_df: int = 1,
    seed: int | None = None,
    positions=None,
    mode: str = "amplitude",
    smoothing_px: float | None = None,
    descan: str | np.ndarray | None = "auto",
    denoise_df: bool = True,
) -> Basis:
    """Gram-Schmidt-orthonormalised diffraction patterns from (random) scan positions.

    The BF parts of patterns at random (seeded) or given scan positions are
    orthonormalised in order with re-orthogonalisation. A nearly dependent
    pattern (less than 0.1% of its norm outside the span so far) is skipped
    and the next position is drawn, so the basis always has ``num_bf`` BF
    masks or the call raises. Needs only the sampled patterns, so it can be
    built from a quick pre-scan before the acquisition.

    Parameters
    ----------
    datacube : py4DSTEM.DataCube or array-like
        ``(Rx, Ry, Qx, Qy)`` data [counts]; only sampled patterns are read.
    geometry : DetectorGeometry
        Detector regions.
    num_bf : int
        Number of BF masks.
    num_df : int
        Number of DF masks: 1 = uniform, more = DF parts of sampled patterns (denoised,
        see ``denoise_df``).
    seed : int, optional
        Seed of the random positions (and of the DF denoising sample).
    positions : array-like of int, optional
        ``(N, 2)`` scan positions ``(rx, ry)`` to use in order instead of random ones.
    mode : {"amplitude", "intensity"}
        Build masks from ``sqrt(I)`` or ``I``, matching the compression mode.
    smoothing_px : float, optional
        Standard deviation [px] of a Gaussian smoothing of each sampled pattern inside
        its region before orthonormalisation; default (None)
        ``SMOOTHING_BF_RADIUS_FRACTION * geometry.bf_radius`` (a quarter of the BF radius,
        3.3 px for a 13 px BF radius); 0 keeps the raw
        patterns, as in the paper. Shot noise of a single sampled pattern would otherwise
        become part of the masks, and fine detail of one pattern does not recur in the
        others, so such masks capture less of the other patterns' signal (the README's
        benchmark section gives the measured effect). Scaled with the BF radius,
        the smoothing is the same fraction of the disk on any detector. Smoothing also
        lowers how many independent patterns a region holds (about ``(radius /
        smoothing)^2``): when the default leaves fewer than ``num_bf`` (or ``num_df``), it
        is halved, down to 0, with a warning; the value used is stored in
        ``parameters["smoothing_px"]``.
    descan : "auto", array-like or None
        Build the masks in the frame of the disk, as descan-aware compression applies them:
        each sampled pattern is moved back by its whole-pixel descan (see
        :func:`~py4dstem_compressed.bases.descan.descan_shifts`; the same default as
        :func:`~py4dstem_compressed.compress`, so a drifting disk does not smear the masks);
        None: patterns as recorded.
    denoise_df : bool
        With ``num_df > 1``, build the DF masks from denoised patterns (default): the DF
        intensities of each sampled pattern are projected on the leading Poisson-scaled
        principal components of ``DF_DENOISE_SAMPLES`` random patterns (as many as stand
        above the noise, found without a parameter: ``parameters["df_rank"]``; see
        :mod:`~py4dstem_compressed.bases.denoise`), then taken to the mode, without
        smoothing. At a realistic dose one pattern's DF part is mostly shot noise, and
        masks made from it span that noise (the README's benchmark section gives the
        measured effect). Masks beyond what these patterns give
        (``parameters["df_denoised"]`` come from them) are smoothed DF parts, as the BF
        masks: components beyond the signal rank would put the sampled patterns' own noise
        into the masks that measure them. False: smoothed DF parts only (the behaviour
        of 0.1).

    Returns
    -------
    Basis
        With ``positions`` holding the BF (then DF) positions actually used.
    """
    data = data_array(datacube)
    check_detector(data, geometry)
    num_bf = check_count("num_bf", num_bf, 1)
    num_df = check_count("num_df", num_df, 0)
    mode = check_mode(mode)
    scan = tuple(data.shape[:2])
    region_pixels(geometry.bf, "bright-field")
    automatic = smoothing_px is None
    if automatic:
        smoothing_px = default_smoothing_px(geometry)
    if not np.isfinite(smoothing_px) or smoothing_px < 0:
        raise ValueError(f"smoothing_px must be >= 0, got {smoothing_px}")
    shifts_px = descan_shifts(descan, data, geometry)

    def region_masks(region, count, name):
        return _gram_schmidt_with_smoothing(
            data,
            region,
            count,
            lambda: position_stream(scan, seed, positions),
            mode,
            name,
            smoothing_px,
            automatic,
            shifts_px,
        )

    bf, used, bf_smoothing = region_masks(geometry.bf, num_bf, "bright-field")
    params = {
        "num_bf": num_bf,
        "num_df": num_df,
        "seed": seed,
        "mode": mode,
        "smoothing_px": float(bf_smoothing),
    }
    if num_df <= 1:
        df = uniform_df_masks(geometry, num_df)
    elif denoise_df:
        region_pixels(geometry.df, "dark-field")
        sample = list(islice(position_stream(scan, seed, None), DF_DENOISE_SAMPLES))
        trials = _smoothing_trials(smoothing_px, automatic)
        df, used_df, params["df_rank"], params["df_denoised"] = denoised_gram_schmidt(
            data,
            geometry.df,
            num_df,
            sample,
            lambda: position_stream(scan, seed, positions),
            mode,
            shifts_px,
            trials,
        )
        used = used + used_df
    else:
        region_pixels(geometry.df, "dark-field")
        df, used_df, df_smoothing = region_masks(geometry.df, num_df, "dark-field")
        used = used + used_df
        if df_smoothing != bf_smoothing:
            params["df_smoothing_px"] = float(df_smoothing)
    params["denoise_df"] = bool(denoise_df)
    return assemble_basis(geometry, bf, df, "diffraction_pattern", params, used, mode)


def pca_basis(
    datacube,
    geometry: DetectorGeometry,
    num_bf: int,
    num_df: int = 1,
    num_samples: int = 320,
    seed: int | None = None,
    mode: str = "amplitude",
    descan: str | np.ndarray | None = "auto",
    denoise_df: bool = True,
) -> Basis:
    """Leading principal components of the BF parts of a random sample of patterns.

    Components are those of the *uncentred* sample (its right singular
    vectors), so the first follows the mean pattern and ``num_bf``
    components span the best ``num_bf``-dimensional subspace for
    representing the sample in least squares (Eckart-Young).

    Parameters
    ----------
    datacube : py4DSTEM.DataCube or array-like
        ``(Rx, Ry, Qx, Qy)`` data [counts]; only sampled patterns are read.
    geometry : DetectorGeometry
        Detector regions.
    num_bf : int
        Number of BF components.
    num_df : int
        Number of DF masks: 1 = uniform, more = DF principal components (of the denoised
        sample, see ``denoise_df``).
    num_samples : int
        Number of random patterns (the paper used 320); capped at the scan size.
    seed : int, optional
        Seed of the random sample.
    mode : {"amplitude", "intensity"}
        Components of ``sqrt(I)`` or ``I``, matching the compression mode.
    descan : "auto", array-like or None
        Build the masks in the frame of the disk, as descan-aware compression applies them:
        each sampled pattern is moved back by its whole-pixel descan (see
        :func:`~py4dstem_compressed.bases.descan.descan_shifts`; the same default as
        :func:`~py4dstem_compressed.compress`, so a drifting disk does not smear the masks);
        None: patterns as recorded.
    denoise_df : bool
        With ``num_df > 1``, take the DF components of the denoised sample (default): its
        DF intensities projected on their leading Poisson-scaled principal components (as
        many as stand above the noise, found without a parameter: ``parameters["df_rank"]``;
        see :mod:`~py4dstem_compressed.bases.denoise`), then taken to the mode. Components of
        ``sqrt(counts)`` at a realistic dose follow the shot noise (and ``sqrt`` of sparse
        counts is a biased amplitude). Components beyond the signal rank
        (``parameters["df_denoised"]`` come from the denoised sample) are those of the
        sample's DF intensities smoothed, taken to the mode and centred, with the first ones
        projected out (the denoised sample's further components would be its shot noise);
        the smoothing (``parameters["df_smoothing_px"]``) is the one of
        :data:`DF_SMOOTHING_TRIALS_BF_RADIUS` whose components, built on half of the
        sample, capture the most scan-varying signal of the other half beyond its shot
        noise (:func:`~py4dstem_compressed.bases.denoise.held_out_signal`). False: components of
        the raw sample (the behaviour of 0.1).
        Applies in amplitude mode only: in intensity mode the principal components of the
        sample already are its least-squares denoised subspace (measured: denoising it
        again makes them worse), and
        ``parameters["denoise_df"]`` is False.

    Returns
    -------
    Basis
    """
    data = data_array(datacube)
    check_detector(data, geometry)
    num_bf = check_count("num_bf", num_bf, 1)
    num_df = check_count("num_df", num_df, 0)
    num_samples = check_count("num_samples", num_samples, 1)
    mode = check_mode(mode)
    scan = tuple(data.shape[:2])
    count = min(num_samples, scan[0] * scan[1])
    stream = position_stream(scan, seed, None)
    used = [next(stream) for _ in range(count)]
    shifts_px = descan_shifts(descan, data, geometry)
    intensities = np.stack([read_pattern(data, p, "intensity", shifts_px) for p in used])
    region_pixels(geometry.bf, "bright-field")
    bf = np.zeros((num_bf, *geometry.shape))
    bf_parts = in_mode(np.clip(intensities[:, geometry.bf], 0, None), mode)
    bf[:, geometry.bf] = principal_components(bf_parts, num_bf, "bright-field")
    params = {
        "num_bf": num_bf,
        "num_df": num_df,
        "num_samples": count,
        "seed": seed,
        "mode": mode,
        # in intensity mode the components of the sample already are its least-squares
        # denoised subspace (measured: denoising it again makes them worse)
        "denoise_df": bool(denoise_df) and mode == "amplitude",
    }
    if num_df <= 1:
        df = uniform_df_masks(geometry, num_df)
    else:
        region_pixels(geometry.df, "dark-field")
        df = np.zeros((num_df, *geometry.shape))
        df_parts = intensities[:, geometry.df]
        if params["denoise_df"]:
            radius = float(geometry.bf_radius)
            trials = [fraction * radius for fraction in DF_SMOOTHING_TRIALS_BF_RADIUS]

            def smooth(parts, sigma):
                full = np.zeros((len(parts), *geometry.shape))
                full[:, geometry.df] = parts
                smoothed = [smooth_in_region(p, geometry.df, sigma) for p in full]
                return np.stack(smoothed)[:, geometry.df]

            (
                df[:, geometry.df],
                params["df_rank"],
                params["df_denoised"],
                params["df_smoothing_px"],
            ) = denoised_components(df_parts, num_df, mode, smooth, trials)
        else:
            df_parts = in_mode(np.clip(df_parts, 0, None), mode)
            df[:, geometry.df] = principal_components(df_parts, num_df, "dark-field")
    return assemble_basis(geometry, bf, df, "pca", params, used, mode)
