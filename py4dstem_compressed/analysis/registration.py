"""Registration of a reconstruction to a ground truth: sub-pixel alignment and agreement.

:func:`register_to_ground_truth` brings a reconstructed phase and a simulated projected
potential (which usually have different pixel sizes and fields of view) onto one grid, finds
their sub-pixel offset and reports the FSC and the Pearson correlation of the aligned pair.

Conventions: images are indexed ``[row, column]``; ``sampling`` is the real-space pixel size
[A] as a scalar or ``(row, column)`` pair. A shift ``d`` [px] moves image content towards
larger indices: ``fourier_shift(f, d)(i) = f(i - d)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from py4dstem_compressed.analysis.resampling import fourier_shift, resample
from py4dstem_compressed.analysis.resolution import (
    FSCResult,
    SamplingLike,
    as_sampling,
    band_pass,
    check_image,
    fourier_shell_correlation,
    normalized_cross_correlation,
    window_2d,
)

__all__ = ["RegistrationResult", "fourier_shift", "register_to_ground_truth", "resample"]

#: Smallest side [px] of a compared region: fewer pixels carry no usable correlation.
MIN_REGION_PX = 4
#: Tukey taper of the sub-pixel search's window: damps the patch edges' FFT leakage while
#: keeping the centre half flat.
SUBPIXEL_WINDOW_ALPHA = 0.5
#: The sub-pixel search starts +-1.5 px around the integer peak (it can be off by one pixel
#: either way) on a 1/8 px grid, and zooms in by 8 per pass.
SUBPIXEL_HALF_WIDTH_PX = 1.5
SUBPIXEL_FIRST_STEP_PX = 1.0 / 8
SUBPIXEL_PASSES = 3
#: Sums of squares below this fraction of the largest are round-off: such an overlap is flat
#: and gets no correlation.
RELATIVE_ROUNDOFF = 1e-10


# ----------------------------------------------------------------------------- registration


@dataclass(frozen=True)
class RegistrationResult:
    """A reconstruction aligned to a ground truth.

    Attributes
    ----------
    shift_px : tuple of float
        Position ``(row, column)`` of the ground truth's origin in the reconstruction's pixel
        frame [px]: ``reconstruction(i) ~ truth_resampled(i - shift_px)``. For a periodic
        truth the smallest such shift is reported.
    shift_angstrom : tuple of float
        The same shift [A].
    sign : int
        +1, or -1 if the contrast was inverted (only with ``allow_sign_flip=True``).
    reconstruction : numpy.ndarray
        The compared region of the reconstruction (after ``crop``/``roi``).
    ground_truth : numpy.ndarray
        The ground truth resampled onto the same pixels, aligned, times ``sign``.
    sampling : tuple of float
        Pixel size of both aligned images [A].
    roi : tuple of int
        ``(row_start, row_stop, column_start, column_stop)`` of the compared region in the
        reconstruction [px].
    fsc : FSCResult
        Fourier shell correlation of the aligned pair.
    correlation : float
        Pearson correlation of the aligned pair over the overlap [dimensionless].
    """

    shift_px: tuple[float, float]
    shift_angstrom: tuple[float, float]
    sign: int
    reconstruction: np.ndarray
    ground_truth: np.ndarray
    sampling: tuple[float, float]
    roi: tuple[int, int, int, int]
    fsc: FSCResult
    correlation: float


def _fold(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Sum ``image`` modulo ``shape`` (wrap it onto a periodic grid of that shape)."""
    rows = -(-image.shape[0] // shape[0]) * shape[0]
    cols = -(-image.shape[1] // shape[1]) * shape[1]
    padded = np.zeros((rows, cols), dtype=image.dtype)
    padded[: image.shape[0], : image.shape[1]] = image
    return padded.reshape(rows // shape[0], shape[0], cols // shape[1], shape[1]).sum(axis=(0, 2))


def _ncc_map(
    template: np.ndarray, truth: np.ndarray, periodic: bool, min_overlap: float
) -> tuple[np.ndarray, tuple[int, int]]:
    """Pearson correlation of ``template`` against ``truth`` for every integer offset.

    Returns the map and its shape; entry ``o`` compares ``template(i)`` with ``truth(i + o)``
    (modulo the truth's shape if periodic; offsets wrap modulo the map's shape otherwise).
    Uses the masked normalised cross-correlation of Padfield (2012) computed with FFTs.
    """
    m = template.shape
    if periodic:
        shape = truth.shape
        r = _fold(template, shape)
        r2 = _fold(template**2, shape)
        mr = _fold(np.ones(m), shape)
        t = truth
        mt = np.ones(shape)
    else:
        shape = (m[0] + truth.shape[0] - 1, m[1] + truth.shape[1] - 1)
        r, r2, mr, t, mt = (np.zeros(shape) for _ in range(5))
        r[: m[0], : m[1]] = template
        r2[: m[0], : m[1]] = template**2
        mr[: m[0], : m[1]] = 1
        t[: truth.shape[0], : truth.shape[1]] = truth
        mt[: truth.shape[0], : truth.shape[1]] = 1

    fft, ifft = np.fft.rfft2, np.fft.irfft2

    def corr(x_hat: np.ndarray, y: np.ndarray) -> np.ndarray:
        # sum_i x(i) y(i + o)
        return ifft(np.conj(x_hat) * fft(y), s=shape)

    r_hat, r2_hat, mr_hat = fft(r), fft(r2), fft(mr)
    n = corr(mr_hat, mt)
    sr = corr(r_hat, mt)
    srr = corr(r2_hat, mt)
    st = corr(mr_hat, t)
    stt = corr(mr_hat, t**2)
    srt = corr(r_hat, t)
    n = np.round(n)
    with np.errstate(invalid="ignore", divide="ignore"):
        num = srt - sr * st / n
        den = (srr - sr**2 / n) * (stt - st**2 / n)
        ncc = num / np.sqrt(np.maximum(den, 0))
    eps = RELATIVE_ROUNDOFF * max(np.max(np.abs(srr)), np.max(np.abs(stt)), 1e-300)
    bad = (n < max(min_overlap * min(template.size, truth.size), 2)) | (den <= eps**2)
    ncc[bad] = np.nan
    return ncc, shape


def _subpixel_peak(template: np.ndarray, patch: np.ndarray, upsample: int, sign: int) -> np.ndarray:
    """Sub-pixel offset ``d`` (within +-1.5 px) maximising ``sum template(i) patch(i + d)``.

    Matrix-multiply DFT of the windowed cross-power spectrum on an upsampled grid
    (Guizar-Sicairos et al., 2008), refined in two passes.
    """
    window = window_2d(template.shape, SUBPIXEL_WINDOW_ALPHA)
    a = (template - template.mean()) * window
    b = (patch - patch.mean()) * window
    product = np.conj(np.fft.fft2(a)) * np.fft.fft2(b)
    fy = np.fft.fftfreq(template.shape[0])
    fx = np.fft.fftfreq(template.shape[1])
    center = np.zeros(2)
    half, step = SUBPIXEL_HALF_WIDTH_PX, SUBPIXEL_FIRST_STEP_PX
    for _ in range(SUBPIXEL_PASSES):
        oy = center[0] + np.arange(-half, half + step / 2, step)
        ox = center[1] + np.arange(-half, half + step / 2, step)
        ey = np.exp(2j * np.pi * oy[:, None] * fy[None, :])
        ex = np.exp(2j * np.pi * ox[:, None] * fx[None, :])
        surface = sign * (ey @ product @ ex.T).real
        iy, ix = np.unravel_index(np.argmax(surface), surface.shape)
        center = np.array([oy[iy], ox[ix]])
        half, step = 2 * step, max(step * SUBPIXEL_FIRST_STEP_PX, 1.0 / upsample)
    return center


def _normalize_roi(
    shape: tuple[int, int],
    crop: int | tuple[int, int] | None,
    roi: Sequence[int] | None,
) -> tuple[int, int, int, int]:
    if crop is not None and roi is not None:
        raise ValueError("give either crop or roi, not both")
    if roi is not None:
        r0, r1, c0, c1 = (int(v) for v in roi)
    elif crop is not None:
        cy, cx = (crop, crop) if np.isscalar(crop) else crop
        r0, r1, c0, c1 = int(cy), shape[0] - int(cy), int(cx), shape[1] - int(cx)
    else:
        r0, r1, c0, c1 = 0, shape[0], 0, shape[1]
    if (
        not (0 <= r0 < r1 <= shape[0] and 0 <= c0 < c1 <= shape[1])
        or min(r1 - r0, c1 - c0) < MIN_REGION_PX
    ):
        raise ValueError(f"region {(r0, r1, c0, c1)} is empty or outside the image {shape}")
    return r0, r1, c0, c1


def register_to_ground_truth(
    reconstruction: np.ndarray,
    ground_truth: np.ndarray,
    sampling: SamplingLike,
    ground_truth_sampling: SamplingLike | None = None,
    *,
    crop: int | tuple[int, int] | None = None,
    roi: Sequence[int] | None = None,
    periodic: bool = True,
    allow_sign_flip: bool = False,
    band: tuple[float | None, float | None] | None = None,
    fsc_cutoff: float | None = None,
    num_shells: int | None = None,
    window_alpha: float = 0.0,
    upsample_factor: int = 64,
    min_overlap: float = 0.5,
    expected_shift_px: Sequence[float] | None = None,
    search_radius_px: float | None = None,
) -> RegistrationResult:
    """Align a reconstruction to a ground truth and measure their agreement.

    The ground truth is resampled onto the reconstruction's pixel size, the best integer
    offset is found by normalised cross-correlation over all offsets, refined to sub-pixel
    precision by an upsampled DFT of the cross-power spectrum, and the truth is finally
    resampled once more with that shift applied (one interpolation only).

    Parameters
    ----------
    reconstruction : numpy.ndarray
        Real 2D image, e.g. the summed object phase [rad] of a py4DSTEM reconstruction.
    ground_truth : numpy.ndarray
        Real 2D image, e.g. the projected potential [V A].
    sampling : float or (float, float)
        Pixel size of the reconstruction [A].
    ground_truth_sampling : float or (float, float), optional
        Pixel size of the ground truth [A]; default ``sampling``.
    crop : int or (int, int), optional
        Pixels to drop at each border of the reconstruction (its padded, unscanned margin).
    roi : (int, int, int, int), optional
        ``(row_start, row_stop, column_start, column_stop)`` of the reconstruction to compare;
        excludes ``crop``.
    periodic : bool
        The ground truth is one period of a periodic function (abTEM potentials are); else
        only the valid overlap is compared.
    allow_sign_flip : bool
        Also accept an inverted contrast (``sign = -1``).
    band : (float or None, float or None), optional
        ``(low_angstrom, high_angstrom)`` band-pass both images (see :func:`band_pass`) before
        the shift search (the reported images and metrics are not filtered).
    fsc_cutoff : float, optional
        Highest FSC frequency [1/A]; default Nyquist.
    num_shells : int, optional
        Number of FSC shells.
    window_alpha : float
        Tukey-window both aligned images with this taper fraction before the FSC (0: none).
    upsample_factor : int
        Sub-pixel precision of the shift, ``1 / upsample_factor`` [px].
    min_overlap : float
        Smallest overlap (fraction of the smaller image) considered for a non-periodic truth.
    expected_shift_px : (float, float), optional
        Known approximate shift [px] (e.g. from the scan positions); with
        ``search_radius_px`` only shifts within that distance are considered. Useful for
        crystals, where every lattice translation correlates almost equally well.
    search_radius_px : float, optional
        Radius of the search around ``expected_shift_px`` [px]; default: search everywhere.

    Returns
    -------
    RegistrationResult
        Shift, aligned pair, FSC and peak correlation.
    """
    recon = check_image(reconstruction, "reconstruction")
    truth = check_image(ground_truth, "ground_truth")
    if np.iscomplexobj(recon) or np.iscomplexobj(truth):
        raise ValueError("registration needs real images; pass e.g. np.angle(object) instead")
    s_rec = as_sampling(sampling)
    s_truth = s_rec if ground_truth_sampling is None else as_sampling(ground_truth_sampling)
    r0, r1, c0, c1 = _normalize_roi(recon.shape, crop, roi)
    template = recon[r0:r1, c0:c1].astype(float)

    search_template, search_truth = _search_images(template, truth, s_rec, s_truth, periodic, band)
    peak, sign, shape = _best_integer_offset(
        search_template,
        search_truth,
        periodic,
        min_overlap,
        allow_sign_flip,
        origin=(r0, c0),
        expected_shift_px=expected_shift_px,
        search_radius_px=search_radius_px,
    )
    offset = _refine_offset(
        search_template, search_truth, peak, shape, periodic, upsample_factor, sign
    )
    # recon pixel (r0 + i) ~ truth_on_grid(i + offset)  =>  shift = (r0, c0) - offset
    shift = np.array([r0, c0], dtype=float) - offset
    aligned_truth = sign * resample(
        truth,
        s_truth,
        s_rec,
        shape=template.shape,
        shift_px=(shift[0] - r0, shift[1] - c0),
        periodic=periodic,
    )
    aligned_recon = template
    compared = (r0, r1, c0, c1)
    if not periodic:
        aligned_recon, aligned_truth, compared = _trim_to_overlap(
            aligned_recon, aligned_truth, (r0, c0)
        )
    correlation, fsc = _agreement(
        aligned_recon, aligned_truth, s_rec, window_alpha, fsc_cutoff, num_shells
    )
    return RegistrationResult(
        shift_px=(float(shift[0]), float(shift[1])),
        shift_angstrom=(float(shift[0] * s_rec[0]), float(shift[1] * s_rec[1])),
        sign=sign,
        reconstruction=aligned_recon,
        ground_truth=aligned_truth,
        sampling=s_rec,
        roi=tuple(int(v) for v in compared),
        fsc=fsc,
        correlation=correlation,
    )


def _search_images(template, truth, s_rec, s_truth, periodic, band):
    """The reconstruction's region and the truth on its pixel size, as the shift search sees
    them (band-passed if ``band`` is given; a non-periodic truth is zero outside its field)."""
    truth_on_grid = resample(truth, s_truth, s_rec, periodic=periodic)
    if not periodic:
        truth_on_grid = np.nan_to_num(truth_on_grid)
    if band is None:
        return template, truth_on_grid
    return band_pass(template, s_rec, *band), band_pass(truth_on_grid, s_rec, *band)


def _best_integer_offset(
    template,
    truth,
    periodic,
    min_overlap,
    allow_sign_flip,
    origin,
    expected_shift_px,
    search_radius_px,
):
    """Integer offset ``o`` maximising the correlation of ``template(i)`` with ``truth(i + o)``.

    With ``expected_shift_px`` and ``search_radius_px``, only offsets whose shift
    ``origin - o`` lies within the radius (modulo the map's period) count. Returns the peak
    ``(row, column)``, the contrast sign (-1 only if ``allow_sign_flip`` and the peak is
    anti-correlated) and the shape of the correlation map.
    """
    ncc, shape = _ncc_map(template, truth, periodic, min_overlap)
    score = np.abs(ncc) if allow_sign_flip else ncc
    if expected_shift_px is not None and search_radius_px is not None:
        # offset o <=> shift origin - o, modulo the map's period
        distance2 = np.zeros(shape)
        for axis, start in enumerate(origin):
            o = np.arange(shape[axis], dtype=float)
            d = start - o - expected_shift_px[axis]
            d = (d + shape[axis] / 2) % shape[axis] - shape[axis] / 2
            distance2 = distance2 + np.expand_dims(d**2, 1 - axis)
        score = np.where(distance2 <= search_radius_px**2, score, np.nan)
    if not np.any(np.isfinite(score)):
        raise ValueError("no valid overlap between the reconstruction and the ground truth")
    peak = np.unravel_index(np.nanargmax(score), shape)
    sign = -1 if (allow_sign_flip and ncc[peak] < 0) else 1
    return peak, sign, shape


def _refine_offset(template, truth, peak, shape, periodic, upsample_factor, sign) -> np.ndarray:
    """Sub-pixel offset: ``template(i) ~ truth(i + offset)``, refined around the integer
    ``peak`` on the matched patch (the smallest equivalent offset for a periodic truth)."""
    offset = np.array(peak, dtype=float)
    if periodic:
        patch_rows = (np.arange(template.shape[0]) + peak[0]) % shape[0]
        patch_cols = (np.arange(template.shape[1]) + peak[1]) % shape[1]
        patch = truth[np.ix_(patch_rows % truth.shape[0], patch_cols % truth.shape[1])]
        offset += _subpixel_peak(template, patch, upsample_factor, sign)
        for axis in range(2):  # smallest equivalent offset
            offset[axis] = (offset[axis] + shape[axis] / 2) % shape[axis] - shape[axis] / 2
        return offset
    offset = np.where(
        offset >= np.array(shape) - np.array(template.shape) + 1, offset - shape, offset
    )
    pr = np.arange(template.shape[0]) + int(offset[0])
    pc = np.arange(template.shape[1]) + int(offset[1])
    valid_r = (pr >= 0) & (pr < truth.shape[0])
    valid_c = (pc >= 0) & (pc < truth.shape[1])
    if valid_r.sum() >= MIN_REGION_PX and valid_c.sum() >= MIN_REGION_PX:
        patch = truth[np.ix_(pr[valid_r], pc[valid_c])]
        offset += _subpixel_peak(template[np.ix_(valid_r, valid_c)], patch, upsample_factor, sign)
    return offset


def _trim_to_overlap(recon, truth, origin):
    """Crop both images to the rows and columns where the aligned (non-periodic) truth is
    defined; returns them and the compared region ``(r0, r1, c0, c1)`` in the reconstruction."""
    rows = np.all(np.isfinite(truth), axis=1)
    cols = np.all(np.isfinite(truth), axis=0)
    if rows.sum() < MIN_REGION_PX or cols.sum() < MIN_REGION_PX:
        raise ValueError("the aligned ground truth does not overlap the reconstruction")
    ri, ci = np.nonzero(rows)[0], np.nonzero(cols)[0]
    sl = np.s_[ri[0] : ri[-1] + 1, ci[0] : ci[-1] + 1]
    truth, recon = truth[sl], recon[sl]
    r0, c0 = origin[0] + ri[0], origin[1] + ci[0]
    return recon, truth, (r0, r0 + recon.shape[0], c0, c0 + recon.shape[1])


def _agreement(recon, truth, sampling, window_alpha, fsc_cutoff, num_shells):
    """Pearson correlation and FSC (of the mean-free, optionally Tukey-windowed) pair."""
    correlation = normalized_cross_correlation(recon, truth)
    a, b = recon - recon.mean(), truth - truth.mean()
    if window_alpha > 0:
        window = window_2d(a.shape, window_alpha)
        a, b = a * window, b * window
    fsc = fourier_shell_correlation(a, b, sampling, cutoff=fsc_cutoff, num_shells=num_shells)
    return correlation, fsc
