"""Checks of a scan against its basis while it is compressed: centre, disk radius, signal."""

from __future__ import annotations

import warnings

import numpy as np

from py4dstem_compressed.bases.basis import Basis
from py4dstem_compressed.bases.geometry import find_bright_field_disk
from py4dstem_compressed.core.sources import FrameSource, sampled_frames

__all__ = ["check_bf_radius", "check_center", "check_signal"]

#: Patterns averaged to measure the data's bright-field radius before compressing
RADIUS_SAMPLES = 16

#: Radius mismatch [px] tolerated below this many pixels (the regions are pixel-discretised)
RADIUS_TOLERANCE_PX = 1.0

#: ... and below this fraction of the basis's BF radius (the measurement's own spread)
RADIUS_TOLERANCE_FRACTION = 0.1


def check_center(result: dict, basis: Basis, shifts_px: np.ndarray | None = None) -> None:
    """Warn when the compressed patterns' centre of mass is far from the basis's disk centre.

    ``result`` is a kernel's output; ``shifts_px`` the integer descan shifts the masks were
    moved by (descan-aware compression), ``(B, 2)`` [px].
    """
    total = result["total_intensity"]
    if not np.any(total > 0):
        return
    com = result["center_of_mass"]
    if shifts_px is not None:  # descan-aware: where the disk is relative to the moved masks
        com = com - shifts_px
    com = np.average(com, axis=0, weights=np.maximum(total, 0))
    geometry = basis.geometry
    offset = float(np.hypot(*(com - np.asarray(geometry.center))))
    if offset > max(2.0, 0.25 * geometry.bf_radius):
        raise ValueError(
            f"the data's bright-field centre is near ({com[0]:.1f}, {com[1]:.1f}) px but the "
            f"basis was built for a disk centred at ({geometry.center[0]:.1f}, "
            f"{geometry.center[1]:.1f}) px (both on a {geometry.shape} px detector); build the "
            "basis from this data's geometry (DetectorGeometry.from_datacube), or pass "
            "check_center=False if the offset is intended"
        )


def check_bf_radius(source: FrameSource, basis: Basis) -> None:
    """Warn when the data's bright-field radius differs from the basis's.

    The radius is measured (:func:`~py4dstem_compressed.bases.geometry.find_bright_field_disk`)
    on the mean of ``RADIUS_SAMPLES`` patterns spread over the scan. Differences below
    ``RADIUS_TOLERANCE_PX`` only move rim pixels between the (pixel-discretised) regions,
    and the measurement itself spreads by a few percent with the edge blur and the
    sample's scattering, hence ``RADIUS_TOLERANCE_FRACTION``. Data without a
    measurable disk (e.g. all zero) are left to the other checks.
    """
    geometry = basis.geometry
    frames = [f.astype(np.float64) for f in sampled_frames(source.data, RADIUS_SAMPLES, 0)]
    pattern = np.mean(frames, axis=0)
    if geometry.mask is not None:
        pattern = np.where(geometry.mask, 0.0, pattern)
    if not np.all(np.isfinite(pattern)) or not np.any(pattern > 0):
        return
    try:
        _, radius = find_bright_field_disk(pattern)
    except ValueError:
        return
    tolerance = max(RADIUS_TOLERANCE_PX, RADIUS_TOLERANCE_FRACTION * geometry.bf_radius)
    if abs(radius - geometry.bf_radius) > tolerance:
        warnings.warn(
            f"the data's bright-field disk has a radius of ~{radius:.1f} px (measured on "
            f"{len(frames)} patterns) but the basis was built for {geometry.bf_radius:.1f} px "
            f"(tolerance {tolerance:.1f} px); build the basis from this data's geometry "
            "(DetectorGeometry.from_datacube), or pass check_center=False if intended",
            stacklevel=3,
        )


def check_signal(total_intensity: np.ndarray, source: FrameSource) -> None:
    """Refuse a scan in which no pattern has positive total intensity."""
    if np.any(total_intensity > 0):
        return
    largest = float(np.max(total_intensity)) if total_intensity.size else 0.0
    raise ValueError(
        f"all {source.num_frames} patterns of {source.name} (scan {source.scan_shape}) have "
        f"zero or negative total intensity (largest: {largest:g} counts), so their "
        "coefficients would all be 0 and their centres of mass undefined; pass the "
        "recorded intensities (check the file's datapath= and the detector's exposure)"
    )
