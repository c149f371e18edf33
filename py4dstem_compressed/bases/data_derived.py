"""Bases derived from sampled patterns: Gram-Schmidt diffraction patterns and PCA.

Each generator is a function returning a :class:`~py4dstem_compressed.Basis`
whose masks are orthonormal on the pixel grid, BF masks supported on the
bright-field disk and DF masks on the dark-field region of the geometry.
``num_df=1`` is one uniform DF mask: its coefficient is the (scaled) mean DF
signal, what an annular dark-field detector measures.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np

from py4dstem_compressed.bases.assembly import (
    assemble_basis,
    check_count,
    region_pixels,
    uniform_df_masks,
)
from py4dstem_compressed.bases.basis import Basis
from py4dstem_compressed.bases.descan import descan_shifts
from py4dstem_compressed.bases.geometry import DetectorGeometry
from py4dstem_compressed.core.backend import check_mode
from py4dstem_compressed.core.sources import data_array

__all__ = ["default_smoothing_px", "diffraction_pattern_basis", "pca_basis"]

#: A sampled pattern is skipped when the part of it orthogonal to the masks
#: accepted so far is below this fraction of its norm (nearly dependent).
DEPENDENCE_TOLERANCE = 1e-3


# --------------------------------------------------------- data-derived bases
def _check_detector(data, geometry: DetectorGeometry) -> None:
    if tuple(data.shape[2:]) != geometry.shape:
        raise ValueError(
            f"the geometry describes a {geometry.shape} px detector but the data has "
            f"{tuple(data.shape[2:])} px patterns"
        )


def _position_stream(
    scan_shape: tuple[int, int], seed: int | None, positions
) -> Iterator[tuple[int, int]]:
    if positions is not None:
        pos = np.asarray(positions, dtype=np.int64).reshape(-1, 2)
        if (pos < 0).any() or (pos >= np.array(scan_shape)).any():
            raise ValueError(f"positions must lie inside the {scan_shape} scan")
        yield from (tuple(p) for p in pos)
        return
    order = np.random.default_rng(seed).permutation(scan_shape[0] * scan_shape[1])
    for i in order:
        yield int(i // scan_shape[1]), int(i % scan_shape[1])


def _pattern(data, position: tuple[int, int], mode: str, shifts_px=None) -> np.ndarray:
    """One sampled pattern, moved into the frame of the disk by its descan shift."""
    frame = np.asarray(data[position[0], position[1]], dtype=np.float64)
    if not np.all(np.isfinite(frame)):
        raise ValueError(f"the pattern at scan position {position} contains NaN or inf")
    if shifts_px is not None:  # the masks move by +s with the disk: the pattern by -s
        shift = shifts_px[position[0], position[1]]
        if shift.any():
            frame = np.roll(frame, (-int(shift[0]), -int(shift[1])), axis=(0, 1))
    return np.sqrt(np.clip(frame, 0, None)) if mode == "amplitude" else frame


class _GramSchmidt:
    """Incremental Gram-Schmidt with one re-orthogonalisation pass ("twice is enough")."""

    def __init__(self, size: int) -> None:
        self.rows = np.zeros((0, size))

    def add(self, vector: np.ndarray) -> bool:
        norm = np.linalg.norm(vector)
        if norm == 0:
            return False
        v = vector.copy()
        for _ in range(2):
            v -= self.rows.T @ (self.rows @ v)
        residual = np.linalg.norm(v)
        if residual < DEPENDENCE_TOLERANCE * norm:
            return False
        self.rows = np.vstack([self.rows, v / residual])
        return True


#: default smoothing of :func:`diffraction_pattern_basis`, as a fraction of the BF radius
SMOOTHING_BF_RADIUS_FRACTION = 0.25


def default_smoothing_px(geometry: DetectorGeometry) -> float:
    """Default smoothing of :func:`diffraction_pattern_basis` [px]: a quarter of the BF radius."""
    return SMOOTHING_BF_RADIUS_FRACTION * float(geometry.bf_radius)


def _smooth_in_region(pattern: np.ndarray, region: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian smoothing restricted to ``region`` (normalised convolution).

    ``G * (p R) / G * R`` on the region: the region's edge is not darkened by the pixels
    outside it (the BF disk keeps its sharp rim).
    """
    if sigma_px <= 0:
        return pattern
    from scipy.ndimage import gaussian_filter

    weight = region.astype(np.float64)
    smoothed = gaussian_filter(pattern * weight, sigma_px, mode="constant")
    norm = gaussian_filter(weight, sigma_px, mode="constant")
    return np.where(region, smoothed / np.maximum(norm, 1e-12), 0.0)


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
    gs = _GramSchmidt(int(region.sum()))
    accepted: list[tuple[int, int]] = []
    tried = 0
    for position in stream:
        tried += 1
        pattern = _pattern(data, position, mode, shifts_px)
        pattern = _smooth_in_region(pattern, region, smoothing_px)
        if gs.add(pattern[region]):
            accepted.append(position)
            if len(accepted) == count:
                break
    if len(accepted) < count:
        raise ValueError(
            f"only {len(accepted)} of the {tried} sampled patterns have linearly independent "
            f"{name} parts, fewer than the {count} masks asked for; ask for fewer masks or "
            "give other positions"
        )
    masks = np.zeros((count, *region.shape))
    masks[:, region] = gs.rows
    return masks, accepted


def _gram_schmidt_with_smoothing(
    data, region, count, stream, mode, name, smoothing_px, automatic, shifts_px=None
) -> tuple[np.ndarray, list[tuple[int, int]], float]:
    """Masks from smoothed sampled patterns; the default smoothing gives way to the rank.

    Smoothing lowers the number of independent patterns a region can hold (about
    ``(radius / smoothing)^2``). With the automatic default the smoothing is halved (down to
    0, with a warning) until ``count`` independent patterns are found; a smoothing the
    caller chose is kept and the shortfall raises.
    """
    trials = [smoothing_px]
    if automatic and smoothing_px > 0:
        trials += [smoothing_px / 2, smoothing_px / 4, 0.0]
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
        Number of DF masks: 1 = uniform, more = DF parts of sampled patterns.
    seed : int, optional
        Seed of the random positions.
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

    Returns
    -------
    Basis
        With ``positions`` holding the BF (then DF) positions actually used.
    """
    data = data_array(datacube)
    _check_detector(data, geometry)
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
            lambda: _position_stream(scan, seed, positions),
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
    else:
        region_pixels(geometry.df, "dark-field")
        df, used_df, df_smoothing = region_masks(geometry.df, num_df, "dark-field")
        used = used + used_df
        if df_smoothing != bf_smoothing:
            params["df_smoothing_px"] = float(df_smoothing)
    return assemble_basis(geometry, bf, df, "diffraction_pattern", params, used, mode)


def _principal_components(samples: np.ndarray, count: int, name: str) -> np.ndarray:
    _, s, vt = np.linalg.svd(samples, full_matrices=False)
    rank = int((s > s[0] * 1e-6).sum()) if s.size else 0
    if rank < count:
        raise ValueError(
            f"the sampled {name} parts have rank {rank}, fewer than the {count} components "
            "asked for; ask for fewer masks or sample more patterns"
        )
    components = vt[:count]
    signs = np.sign(components.sum(axis=1))
    signs[signs == 0] = 1.0
    return components * signs[:, None]


def pca_basis(
    datacube,
    geometry: DetectorGeometry,
    num_bf: int,
    num_df: int = 1,
    num_samples: int = 320,
    seed: int | None = None,
    mode: str = "amplitude",
    descan: str | np.ndarray | None = "auto",
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
        Number of DF masks: 1 = uniform, more = DF principal components.
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

    Returns
    -------
    Basis
    """
    data = data_array(datacube)
    _check_detector(data, geometry)
    num_bf = check_count("num_bf", num_bf, 1)
    num_df = check_count("num_df", num_df, 0)
    num_samples = check_count("num_samples", num_samples, 1)
    mode = check_mode(mode)
    scan = tuple(data.shape[:2])
    count = min(num_samples, scan[0] * scan[1])
    stream = _position_stream(scan, seed, None)
    used = [next(stream) for _ in range(count)]
    shifts_px = descan_shifts(descan, data, geometry)
    patterns = np.stack([_pattern(data, p, mode, shifts_px) for p in used])
    region_pixels(geometry.bf, "bright-field")
    bf = np.zeros((num_bf, *geometry.shape))
    bf[:, geometry.bf] = _principal_components(patterns[:, geometry.bf], num_bf, "bright-field")
    if num_df <= 1:
        df = uniform_df_masks(geometry, num_df)
    else:
        region_pixels(geometry.df, "dark-field")
        df = np.zeros((num_df, *geometry.shape))
        df[:, geometry.df] = _principal_components(patterns[:, geometry.df], num_df, "dark-field")
    params = {
        "num_bf": num_bf,
        "num_df": num_df,
        "num_samples": count,
        "seed": seed,
        "mode": mode,
    }
    return assemble_basis(geometry, bf, df, "pca", params, used, mode)
