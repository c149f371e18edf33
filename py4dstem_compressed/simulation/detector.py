"""What a detector records of simulated patterns: descan drift, cropping and binning, partial
spatial coherence and shot noise.

Every function takes and returns ``(R_x, R_y, Q_x, Q_y)`` patterns; the simulation applies them
in the order descan drift, crop and bin, source blur, shot noise (:func:`record`). The drifts
(:func:`linear_descan`, :func:`shift_patterns`) are also what the benchmarks use to mimic an
experiment's descan.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "blur_over_scan",
    "crop_and_bin",
    "linear_descan",
    "record",
    "shift_patterns",
    "shot_noise",
]


def linear_descan(patterns: np.ndarray, total_px: float) -> np.ndarray:
    """Shift the patterns of a scan by a descan drift growing linearly along the scan.

    Pattern ``j`` of the ``N`` row-major scan positions moves by ``total_px * j / (N - 1)``
    pixels along the detector diagonal (``/ sqrt(2)`` along each axis). The shift is a
    linear interpolation: it keeps intensities non-negative and adds no ringing around the
    bright-field disk (a Fourier shift would spread the disk edge into the dark field).

    Parameters
    ----------
    patterns : numpy.ndarray
        ``(R_x, R_y, Q_x, Q_y)`` noise-free intensities.
    total_px : float
        Drift of the last pattern [px].

    Returns
    -------
    numpy.ndarray
        Shifted patterns, same shape, float32; zero where the shift uncovers the border.
    """
    from scipy.ndimage import shift

    rx, ry, qx, qy = patterns.shape
    flat = np.asarray(patterns, dtype=np.float32).reshape(rx * ry, qx, qy)
    out = np.empty_like(flat)
    steps = max(flat.shape[0] - 1, 1)
    for j, pattern in enumerate(flat):
        along_axis = total_px * j / steps / math.sqrt(2.0)
        out[j] = shift(pattern, (along_axis, along_axis), order=1, mode="constant", cval=0.0)
    return out.reshape(patterns.shape)


def shift_patterns(patterns: np.ndarray, shift_px: float) -> np.ndarray:
    """Shift every pattern by the same amount along both detector axes (bilinear).

    A constant descan offset of ``shift_px`` [px] along ``Q_x`` and ``Q_y``; linear
    interpolation (SciPy's ``shift``, ``order=1``), zero where the shift uncovers the border.

    Parameters
    ----------
    patterns : numpy.ndarray
        ``(R_x, R_y, Q_x, Q_y)`` intensities.
    shift_px : float
        Shift along each detector axis [px].

    Returns
    -------
    numpy.ndarray
        Shifted patterns, same shape and dtype as ``patterns``.
    """
    from scipy.ndimage import shift

    flat = patterns.reshape(-1, *patterns.shape[2:])
    step = (shift_px,) * 2
    return np.stack([shift(f, step, order=1) for f in flat]).reshape(patterns.shape)


def crop_and_bin(patterns: np.ndarray, detector_gpts: int, binning: int) -> np.ndarray:
    """Centred crop of ``detector_gpts * binning`` pixels, then sum ``binning x binning`` blocks.

    Parameters
    ----------
    patterns : numpy.ndarray
        ``(R_x, R_y, n, n)`` patterns on the simulation grid, zero frequency at ``n // 2``.
    detector_gpts : int
        Side of the recorded patterns [px].
    binning : int
        Simulated pixels per detector pixel, per axis (>= 1).

    Returns
    -------
    numpy.ndarray
        ``(R_x, R_y, detector_gpts, detector_gpts)`` patterns.
    """
    n_det = detector_gpts * binning
    gpts = patterns.shape[-1]
    first = gpts // 2 - n_det // 2
    patterns = patterns[..., first : first + n_det, first : first + n_det]
    if binning > 1:
        shape = (*patterns.shape[:2], detector_gpts, binning, detector_gpts, binning)
        patterns = patterns.reshape(shape).sum(axis=(3, 5))
    return patterns


def blur_over_scan(patterns: np.ndarray, source_size: float, scan_step: float) -> np.ndarray:
    """Partial spatial coherence: Gaussian blur of the 4D data over the scan positions.

    Accurate when ``scan_step`` is at most about half of ``source_size`` (simulate finer and
    keep every n-th position, as :func:`record` does with ``preset.source_oversampling``).

    Parameters
    ----------
    patterns : numpy.ndarray
        ``(R_x, R_y, Q_x, Q_y)`` patterns.
    source_size : float
        Standard deviation of the effective source [A] (> 0).
    scan_step : float
        Distance between probe positions [A].

    Returns
    -------
    numpy.ndarray
        Blurred patterns (edges continued with the nearest scan position).
    """
    from scipy.ndimage import gaussian_filter

    sigma_px = source_size / scan_step
    return gaussian_filter(patterns, sigma=(sigma_px, sigma_px, 0, 0), mode="nearest")


def shot_noise(
    patterns: np.ndarray, dose_per_area: float, scan_step: float, seed: int
) -> tuple[np.ndarray, float]:
    """Poisson counts at a dose: each pattern's mean total is its beam fraction times the dose.

    Parameters
    ----------
    patterns : numpy.ndarray
        ``(R_x, R_y, Q_x, Q_y)`` fractions of the beam per pixel.
    dose_per_area : float
        Electron dose [e/A^2] (> 0).
    scan_step : float
        Distance between probe positions [A]; one pattern gets ``dose_per_area * scan_step**2``
        electrons.
    seed : int
        Seed of the noise.

    Returns
    -------
    counts : numpy.ndarray
        Poisson counts, float32.
    electrons_per_pattern : float
        ``dose_per_area * scan_step**2``.

    Raises
    ------
    ValueError
        If ``dose_per_area`` is not positive.
    """
    if dose_per_area <= 0:
        raise ValueError(f"dose_per_area must be positive or None, got {dose_per_area}")
    electrons_per_pattern = float(dose_per_area * scan_step**2)
    rng = np.random.default_rng(seed)
    return rng.poisson(patterns * electrons_per_pattern).astype(np.float32), electrons_per_pattern


def record(
    patterns: np.ndarray, preset, dose_per_area: float | None, seed: int
) -> tuple[np.ndarray, float | None]:
    """What the detector of ``preset`` records of simulated patterns.

    In order: the blur of a finite source (``source_size``, over the scan simulated
    ``preset.source_oversampling`` times finer, of which every n-th position is kept), the
    preset's linear descan drift (``descan_px`` detector pixels, i.e. ``descan_px *
    detector_binning`` simulated ones), the centred crop and binning, and shot noise (if
    ``dose_per_area`` is given).

    Parameters
    ----------
    patterns : numpy.ndarray
        ``(R_x n, R_y n, g, g)`` float32 fractions of the beam on the simulation grid, ``n =
        preset.source_oversampling``.
    preset : SimulationPreset
        Detector, scan and source parameters.
    dose_per_area : float or None
        Electron dose [e/A^2]; None: no noise.
    seed : int
        Seed of the noise.

    Returns
    -------
    patterns : numpy.ndarray
        ``(R_x, R_y, detector_gpts, detector_gpts)`` recorded patterns.
    electrons_per_pattern : float or None
        Electrons per pattern, None without noise.
    """
    b = preset.detector_binning
    n = preset.source_oversampling
    if preset.source_size > 0:  # on the fine scan, then the recorded positions are kept
        patterns = blur_over_scan(patterns, preset.source_size, preset.scan_step / n)
        patterns = np.ascontiguousarray(patterns[::n, ::n])
    if preset.descan_px:
        patterns = linear_descan(patterns, preset.descan_px * b)
    patterns = crop_and_bin(patterns, preset.detector_gpts, b)
    electrons_per_pattern = None
    if dose_per_area is not None:
        patterns, electrons_per_pattern = shot_noise(
            patterns, dose_per_area, preset.scan_step, seed
        )
    return patterns, electrons_per_pattern
