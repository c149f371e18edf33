"""Sampling primitives of the data-derived bases: patterns, Gram-Schmidt, principal components.

Patterns are read at scan positions (random and seeded, or given), moved into the frame of
the bright-field disk by their whole-pixel descan, and orthonormalised (Gram-Schmidt) or
decomposed (principal components) over one detector region.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from py4dstem_compressed.bases.geometry import DetectorGeometry

__all__ = [
    "DEPENDENCE_TOLERANCE",
    "GramSchmidt",
    "check_detector",
    "extend_gram_schmidt",
    "gram_schmidt_of_vectors",
    "in_mode",
    "masks_of_rows",
    "position_stream",
    "principal_components",
    "read_pattern",
    "region_intensities",
    "smooth_in_region",
]

#: A sampled pattern is skipped when the part of it orthogonal to the masks
#: accepted so far is below this fraction of its norm (nearly dependent).
DEPENDENCE_TOLERANCE = 1e-3


def check_detector(data, geometry: DetectorGeometry) -> None:
    if tuple(data.shape[2:]) != geometry.shape:
        raise ValueError(
            f"the geometry describes a {geometry.shape} px detector but the data has "
            f"{tuple(data.shape[2:])} px patterns"
        )


def position_stream(
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


def read_pattern(data, position: tuple[int, int], mode: str, shifts_px=None) -> np.ndarray:
    """One sampled pattern, moved into the frame of the disk by its descan shift."""
    frame = np.asarray(data[position[0], position[1]], dtype=np.float64)
    if not np.all(np.isfinite(frame)):
        raise ValueError(f"the pattern at scan position {position} contains NaN or inf")
    if shifts_px is not None:  # the masks move by +s with the disk: the pattern by -s
        shift = shifts_px[position[0], position[1]]
        if shift.any():
            frame = np.roll(frame, (-int(shift[0]), -int(shift[1])), axis=(0, 1))
    return np.sqrt(np.clip(frame, 0, None)) if mode == "amplitude" else frame


class GramSchmidt:
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


def extend_gram_schmidt(gs: GramSchmidt, accepted: list, count: int, positions, vector) -> int:
    """Add ``vector(position)`` of new positions to ``gs`` until ``accepted`` holds ``count``.

    Returns how many positions were tried.
    """
    tried = 0
    for position in positions:
        if len(accepted) >= count:
            break
        tried += 1
        if position not in accepted and gs.add(vector(position)):
            accepted.append(position)
    return tried


def masks_of_rows(
    region: np.ndarray, gs: GramSchmidt, accepted: list, count: int, tried: int, name: str
) -> np.ndarray:
    """``(count, *region.shape)`` masks from the rows of ``gs``, or a clear error if short."""
    if len(accepted) < count:
        raise ValueError(
            f"only {len(accepted)} of the {tried} sampled patterns have linearly independent "
            f"{name} parts, fewer than the {count} masks asked for; ask for fewer masks or "
            "give other positions"
        )
    masks = np.zeros((count, *region.shape))
    masks[:, region] = gs.rows
    return masks


def gram_schmidt_of_vectors(
    region: np.ndarray, count: int, stream, vector, name: str
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Masks from the region vectors ``vector(position)`` of the positions of ``stream``."""
    gs = GramSchmidt(int(region.sum()))
    accepted: list[tuple[int, int]] = []
    tried = extend_gram_schmidt(gs, accepted, count, stream, vector)
    return masks_of_rows(region, gs, accepted, count, tried, name), accepted


def smooth_in_region(pattern: np.ndarray, region: np.ndarray, sigma_px: float) -> np.ndarray:
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


def in_mode(intensities: np.ndarray, mode: str) -> np.ndarray:
    """Non-negative intensities as the compression mode sees them: ``sqrt(I)`` or ``I``."""
    return np.sqrt(intensities) if mode == "amplitude" else intensities


def region_intensities(data, positions, region: np.ndarray, shifts_px) -> np.ndarray:
    """``(n, P)`` intensities of the region's pixels at the positions (in the disk's frame)."""
    return np.stack([read_pattern(data, p, "intensity", shifts_px)[region] for p in positions])


def principal_components(samples: np.ndarray, count: int, name: str) -> np.ndarray:
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
