"""Resolution metrics: Fourier shell correlation and registration to a ground truth.

Pure NumPy/SciPy, array in and array out. The Fourier shell correlation follows Eq. 19 of
the design notes,

    FSC(q) = Re sum_{|k| in shell q} F1(k) F2*(k) / sqrt(sum |F1(k)|^2 sum |F2(k)|^2),

with shells in reciprocal Angstrom. :func:`register_to_ground_truth` brings a reconstructed
phase and a simulated projected potential (which usually have different pixel sizes and fields
of view) onto one grid, finds their sub-pixel offset and reports the FSC and the Pearson
correlation of the aligned pair.

Conventions: images are indexed ``[row, column]``; ``sampling`` is the real-space pixel size
[A] as a scalar or ``(row, column)`` pair. A shift ``d`` [px] moves image content towards
larger indices: ``fourier_shift(f, d)(i) = f(i - d)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import scipy.ndimage as ndi

__all__ = [
    "FSCResult",
    "RegistrationResult",
    "band_pass",
    "fourier_shell_correlation",
    "fourier_shift",
    "normalized_cross_correlation",
    "register_to_ground_truth",
    "resample",
]

SamplingLike = float | Sequence[float]


# ----------------------------------------------------------------------------- helpers


def _as_sampling(sampling: SamplingLike, name: str = "sampling") -> tuple[float, float]:
    """Return a ``(row, column)`` pixel size [A] from a scalar or a pair."""
    values = np.atleast_1d(np.asarray(sampling, dtype=float)).ravel()
    if values.size == 1:
        values = np.repeat(values, 2)
    if values.size != 2 or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(
            f"{name} must be a positive scalar or (row, column) pair, got {sampling!r}"
        )
    return float(values[0]), float(values[1])


def _check_image(image: np.ndarray, name: str) -> np.ndarray:
    """Return ``image`` as a finite 2D array or raise a ValueError naming it."""
    array = np.asarray(image)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2D image, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{name} must be numeric, got dtype {array.dtype}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _spatial_frequencies(shape: tuple[int, int], sampling: tuple[float, float]) -> np.ndarray:
    """Modulus of the spatial frequency [1/A] of every FFT pixel (unshifted layout)."""
    qy = np.fft.fftfreq(shape[0], sampling[0])
    qx = np.fft.fftfreq(shape[1], sampling[1])
    return np.sqrt(qy[:, None] ** 2 + qx[None, :] ** 2)


def _tukey(n: int, alpha: float) -> np.ndarray:
    """1D Tukey (tapered cosine) window; ``alpha=0`` is flat, ``alpha=1`` is Hann."""
    if alpha <= 0 or n < 3:
        return np.ones(n)
    x = np.linspace(0.0, 1.0, n)
    w = np.ones(n)
    edge = alpha / 2
    left = x < edge
    right = x > 1 - edge
    w[left] = 0.5 * (1 + np.cos(np.pi * (x[left] / edge - 1)))
    w[right] = 0.5 * (1 + np.cos(np.pi * ((x[right] - 1) / edge + 1)))
    return w


def _window_2d(shape: tuple[int, int], alpha: float) -> np.ndarray:
    return _tukey(shape[0], alpha)[:, None] * _tukey(shape[1], alpha)[None, :]


# ----------------------------------------------------------------------------- FSC


@dataclass(frozen=True)
class FSCResult:
    """Fourier shell correlation curve.

    Attributes
    ----------
    frequencies_inverse_angstrom : numpy.ndarray
        Mean spatial frequency of the pixels in each shell [1/A]; the shell's centre if empty.
    fsc : numpy.ndarray
        Correlation in each shell [dimensionless, -1..1]; NaN for empty shells or shells in
        which one of the images has no power.
    num_pixels_per_shell : numpy.ndarray
        Number of Fourier pixels in each shell.
    shell_edges_inverse_angstrom : numpy.ndarray
        The ``num_shells + 1`` shell boundaries [1/A].
    """

    frequencies_inverse_angstrom: np.ndarray
    fsc: np.ndarray
    num_pixels_per_shell: np.ndarray
    shell_edges_inverse_angstrom: np.ndarray | None = field(repr=False, default=None)

    def __len__(self) -> int:
        return len(self.fsc)

    def mean(self, max_frequency: float | None = None, weighted: bool = False) -> float:
        """Mean FSC over the non-empty shells.

        Parameters
        ----------
        max_frequency : float, optional
            Only shells whose frequency is at most this [1/A] are averaged.
        weighted : bool
            Weight each shell by its number of pixels (default: every shell counts equally).

        Returns
        -------
        float
            The mean correlation [dimensionless]; NaN if no shell qualifies.
        """
        keep = np.isfinite(self.fsc) & (self.num_pixels_per_shell > 0)
        if max_frequency is not None:
            keep &= self.frequencies_inverse_angstrom <= max_frequency
        if not np.any(keep):
            return float("nan")
        weights = self.num_pixels_per_shell[keep] if weighted else None
        return float(np.average(self.fsc[keep], weights=weights))

    def value_at(
        self,
        frequencies: float | Sequence[float] | np.ndarray,
        method: Literal["linear", "nearest"] = "linear",
    ) -> np.ndarray:
        """FSC at given spatial frequencies, e.g. at Bragg reflections.

        Parameters
        ----------
        frequencies : float or array_like
            Spatial frequencies [1/A].
        method : {"linear", "nearest"}
            Linear interpolation between shell frequencies, or the value of the nearest shell.

        Returns
        -------
        numpy.ndarray
            FSC values with the shape of ``frequencies`` (a 0-d array for a scalar); NaN outside
            the evaluated range.
        """
        q = np.asarray(frequencies, dtype=float)
        valid = np.isfinite(self.fsc)
        freqs = self.frequencies_inverse_angstrom[valid]
        values = self.fsc[valid]
        out = np.full(q.shape, np.nan)
        if freqs.size == 0:
            return out
        edges = self.shell_edges_inverse_angstrom
        upper = edges[-1] if edges is not None else freqs[-1]
        inside = (q >= 0) & (q <= upper)
        if method == "nearest":
            index = np.abs(q[..., None] - freqs).argmin(axis=-1)
            out = np.where(inside, values[index], np.nan)
        elif method == "linear":
            out = np.where(inside, np.interp(q, freqs, values), np.nan)
        else:
            raise ValueError(f"method must be 'linear' or 'nearest', got {method!r}")
        return out

    def resolution(self, threshold: float = 0.5) -> float:
        """First frequency at which the FSC drops below ``threshold``.

        Parameters
        ----------
        threshold : float
            FSC threshold [dimensionless], e.g. 0.5 or 0.143.

        Returns
        -------
        float
            Linearly interpolated crossing frequency [1/A]; the last shell's frequency if the
            curve never drops below the threshold (the resolution is then cutoff-limited).
            The corresponding length is ``1 / resolution`` [A].
        """
        valid = np.isfinite(self.fsc)
        freqs = self.frequencies_inverse_angstrom[valid]
        values = self.fsc[valid]
        if freqs.size == 0:
            return float("nan")
        below = np.nonzero(values < threshold)[0]
        if below.size == 0:
            return float(freqs[-1])
        i = below[0]
        if i == 0:
            return float(freqs[0])
        f0, f1, v0, v1 = freqs[i - 1], freqs[i], values[i - 1], values[i]
        return float(f0 + (v0 - threshold) * (f1 - f0) / (v0 - v1))


def fourier_shell_correlation(
    a: np.ndarray,
    b: np.ndarray,
    sampling: SamplingLike,
    cutoff: float | None = None,
    num_shells: int | None = None,
    exclude_dc: bool = True,
) -> FSCResult:
    """Fourier shell (ring) correlation of two 2D images (Eq. 19).

    ``FSC(q) = Re sum_shell F1 F2* / sqrt(sum_shell |F1|^2 sum_shell |F2|^2)``.

    Parameters
    ----------
    a, b : numpy.ndarray
        Real or complex images of equal shape ``(rows, columns)``.
    sampling : float or (float, float)
        Real-space pixel size [A], scalar or ``(row, column)``.
    cutoff : float, optional
        Highest spatial frequency evaluated [1/A]; default (and upper limit) is the Nyquist
        frequency of the coarser axis, ``1 / (2 max(sampling))``.
    num_shells : int, optional
        Number of equally wide shells ``(edge_i, edge_i+1]`` between 0 and ``cutoff``.
        Default: shells as wide as the coarser Fourier pixel,
        ``max(1 / (rows * s_row), 1 / (columns * s_col))``.
    exclude_dc : bool
        Leave out the zero-frequency pixel (an image's mean carries no resolution).

    Returns
    -------
    FSCResult
        Shell frequencies [1/A], correlations and pixel counts.

    Raises
    ------
    ValueError
        If the shapes differ, an image is not 2D, or contains NaN/inf.
    """
    a = _check_image(a, "a")
    b = _check_image(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"images must have the same shape, got {a.shape} and {b.shape}")
    s = _as_sampling(sampling)
    nyquist = 1.0 / (2.0 * max(s))
    if cutoff is None:
        cutoff = nyquist
    if not cutoff > 0:
        raise ValueError(f"cutoff must be positive, got {cutoff}")
    cutoff = min(float(cutoff), nyquist)
    if num_shells is None:
        dq = max(1.0 / (a.shape[0] * s[0]), 1.0 / (a.shape[1] * s[1]))
        num_shells = max(1, round(cutoff / dq))
    if num_shells < 1:
        raise ValueError(f"num_shells must be >= 1, got {num_shells}")

    f1 = np.fft.fft2(a)
    f2 = np.fft.fft2(b)
    q = _spatial_frequencies(a.shape, s)
    edges = np.linspace(0.0, cutoff, num_shells + 1)
    # shells are half-open, (edge_i, edge_i+1]; the DC pixel joins the first one
    index = np.ceil(q / cutoff * num_shells - 1e-9).astype(int) - 1
    index = np.clip(index, 0, num_shells - 1)
    use = q <= cutoff * (1 + 1e-12)
    if exclude_dc:
        use[0, 0] = False
    index = index[use]
    cross = np.bincount(index, (f1 * np.conj(f2)).real[use], minlength=num_shells)
    p1 = np.bincount(index, (np.abs(f1) ** 2)[use], minlength=num_shells)
    p2 = np.bincount(index, (np.abs(f2) ** 2)[use], minlength=num_shells)
    counts = np.bincount(index, minlength=num_shells)
    qsum = np.bincount(index, q[use], minlength=num_shells)
    with np.errstate(invalid="ignore", divide="ignore"):
        fsc = cross / np.sqrt(p1 * p2)
        freqs = np.where(counts > 0, qsum / np.maximum(counts, 1), 0.5 * (edges[1:] + edges[:-1]))
    fsc = np.where((counts > 0) & (p1 > 0) & (p2 > 0), fsc, np.nan)
    return FSCResult(freqs, fsc, counts, edges)


# ----------------------------------------------------------------------------- filters


def normalized_cross_correlation(
    a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None
) -> float:
    """Pearson correlation coefficient of two images.

    Parameters
    ----------
    a, b : numpy.ndarray
        Images of equal shape (complex images use the real part of ``<a, b>``).
    mask : numpy.ndarray of bool, optional
        Only pixels where ``mask`` is True are compared.

    Returns
    -------
    float
        ``Re <a - mean a, b - mean b> / (||a - mean a|| ||b - mean b||)`` [dimensionless];
        NaN if either image is constant.
    """
    a = _check_image(a, "a")
    b = _check_image(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"images must have the same shape, got {a.shape} and {b.shape}")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != a.shape:
            raise ValueError(f"mask shape {mask.shape} differs from image shape {a.shape}")
        a, b = a[mask], b[mask]
    a = a - a.mean()
    b = b - b.mean()
    norm = np.sqrt(np.sum(np.abs(a) ** 2) * np.sum(np.abs(b) ** 2))
    if norm == 0:
        return float("nan")
    return float(np.real(np.vdot(b, a)) / norm)


def band_pass(
    image: np.ndarray,
    sampling: SamplingLike,
    low_angstrom: float | None,
    high_angstrom: float | None,
    rolloff: float = 0.1,
) -> np.ndarray:
    """Keep the detail of an image between two length scales.

    The filter passes spatial frequencies ``1 / high_angstrom <= |q| <= 1 / low_angstrom``
    unchanged and falls to zero with a raised-cosine edge over a relative width ``rolloff``
    outside that band (the image is treated as periodic).

    Parameters
    ----------
    image : numpy.ndarray
        Real or complex 2D image.
    sampling : float or (float, float)
        Pixel size [A].
    low_angstrom : float or None
        Smallest length scale (period) kept [A], e.g. 0.35; None: no high-frequency limit.
    high_angstrom : float or None
        Largest length scale (period) kept [A], e.g. 1.2; None: keep everything down to and
        including the mean.
    rolloff : float
        Relative width of the cosine transitions [dimensionless], 0 for a hard edge.

    Returns
    -------
    numpy.ndarray
        The filtered image (real if ``image`` is real).
    """
    image = _check_image(image, "image")
    s = _as_sampling(sampling)
    if low_angstrom is not None and high_angstrom is not None and low_angstrom >= high_angstrom:
        raise ValueError(
            f"low_angstrom ({low_angstrom}) must be smaller than high_angstrom ({high_angstrom})"
        )
    if rolloff < 0:
        raise ValueError(f"rolloff must be >= 0, got {rolloff}")
    q = _spatial_frequencies(image.shape, s)
    gain = np.ones_like(q)
    if high_angstrom is not None:
        q_low = 1.0 / high_angstrom
        start = q_low * (1 - rolloff)
        gain[q < start] = 0.0
        ramp = (q >= start) & (q < q_low)
        if rolloff > 0:
            gain[ramp] = 0.5 * (1 - np.cos(np.pi * (q[ramp] - start) / (q_low - start)))
    if low_angstrom is not None:
        q_high = 1.0 / low_angstrom
        stop = q_high * (1 + rolloff)
        gain[q > stop] = 0.0
        ramp = (q > q_high) & (q <= stop)
        if rolloff > 0:
            gain[ramp] *= 0.5 * (1 + np.cos(np.pi * (q[ramp] - q_high) / (stop - q_high)))
    out = np.fft.ifft2(np.fft.fft2(image) * gain)
    return out if np.iscomplexobj(image) else out.real


def fourier_shift(image: np.ndarray, shift_px: Sequence[float]) -> np.ndarray:
    """Shift a periodic image by a sub-pixel amount with the Fourier shift theorem.

    Parameters
    ----------
    image : numpy.ndarray
        Real or complex 2D image.
    shift_px : (float, float)
        Shift ``(rows, columns)`` [px]; the result is ``image(i - shift)``.

    Returns
    -------
    numpy.ndarray
        The shifted image (real if ``image`` is real).
    """
    image = _check_image(image, "image")
    ky = np.fft.fftfreq(image.shape[0])
    kx = np.fft.fftfreq(image.shape[1])
    phase = np.exp(-2j * np.pi * (ky[:, None] * shift_px[0] + kx[None, :] * shift_px[1]))
    out = np.fft.ifft2(np.fft.fft2(image) * phase)
    return out if np.iscomplexobj(image) else out.real


# ----------------------------------------------------------------------------- resampling


def _fourier_evaluate(
    image: np.ndarray, coords_rows: np.ndarray, coords_cols: np.ndarray, max_freq: tuple
) -> np.ndarray:
    """Evaluate the periodic band-limited interpolant of ``image`` on a separable grid.

    ``coords_*`` are positions in input pixels; ``max_freq`` [cycles/px] keeps only the Fourier
    components below that frequency along each axis (anti-aliasing when downsampling).
    """
    spectrum = np.fft.fft2(image) / image.size
    fy = np.fft.fftfreq(image.shape[0])
    fx = np.fft.fftfreq(image.shape[1])
    ky = np.abs(fy) < max_freq[0]
    kx = np.abs(fx) < max_freq[1]
    spectrum = spectrum[np.ix_(ky, kx)]
    ey = np.exp(2j * np.pi * coords_rows[:, None] * fy[ky][None, :])
    ex = np.exp(2j * np.pi * coords_cols[:, None] * fx[kx][None, :])
    out = ey @ spectrum @ ex.T
    return out if np.iscomplexobj(image) else out.real


def resample(
    image: np.ndarray,
    sampling: SamplingLike,
    new_sampling: SamplingLike,
    shape: tuple[int, int] | None = None,
    shift_px: Sequence[float] = (0.0, 0.0),
    periodic: bool = True,
) -> np.ndarray:
    """Resample an image onto a grid of another pixel size, optionally shifted.

    Output pixel ``i`` samples the input at position ``(i - shift_px) * new_sampling`` [A]
    (pixel ``j`` of the input sits at ``j * sampling``). Downsampling removes frequencies above
    the new Nyquist frequency first, so the result is not aliased.

    Parameters
    ----------
    image : numpy.ndarray
        2D image, real or complex.
    sampling : float or (float, float)
        Input pixel size [A].
    new_sampling : float or (float, float)
        Output pixel size [A].
    shape : (int, int), optional
        Output shape; default covers the input's field of view.
    shift_px : (float, float)
        Shift of the content in output pixels (content moves to larger indices).
    periodic : bool
        True: the image is one period of a periodic function (e.g. an abTEM potential) and is
        interpolated exactly with Fourier series. False: low-pass plus cubic splines; samples
        outside the input are NaN.

    Returns
    -------
    numpy.ndarray
        The resampled image, shape ``shape``.
    """
    image = _check_image(image, "image")
    s_in = _as_sampling(sampling)
    s_out = _as_sampling(new_sampling, "new_sampling")
    if shape is None:
        shape = tuple(
            max(1, int(np.floor(n * a / b + 1e-9))) for n, a, b in zip(image.shape, s_in, s_out)
        )
    rows = (np.arange(shape[0]) - shift_px[0]) * s_out[0] / s_in[0]
    cols = (np.arange(shape[1]) - shift_px[1]) * s_out[1] / s_in[1]
    # frequency limit in cycles per input pixel: the output Nyquist, or the input's own
    max_freq = tuple(min(0.5 * a / b, 0.5 + 1e-9) for a, b in zip(s_in, s_out))
    if periodic:
        return _fourier_evaluate(image, rows, cols, max_freq)
    smooth = image
    if any(f < 0.5 for f in max_freq):
        f = np.fft.fft2(image)
        fy = np.abs(np.fft.fftfreq(image.shape[0]))[:, None]
        fx = np.abs(np.fft.fftfreq(image.shape[1]))[None, :]
        f = f * ((fy < max_freq[0]) & (fx < max_freq[1]))
        smooth = np.fft.ifft2(f)
        if not np.iscomplexobj(image):
            smooth = smooth.real
    grid = np.meshgrid(rows, cols, indexing="ij")
    kwargs = dict(order=3, mode="nearest")
    if np.iscomplexobj(smooth):
        out = ndi.map_coordinates(smooth.real, grid, **kwargs) + 1j * ndi.map_coordinates(
            smooth.imag, grid, **kwargs
        )
    else:
        out = ndi.map_coordinates(smooth, grid, **kwargs)
    outside = (
        (grid[0] < -1e-9)
        | (grid[0] > image.shape[0] - 1 + 1e-9)
        | (grid[1] < -1e-9)
        | (grid[1] > image.shape[1] - 1 + 1e-9)
    )
    out = out.astype(np.result_type(out, float))
    out[outside] = np.nan
    return out


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
    eps = 1e-10 * max(np.max(np.abs(srr)), np.max(np.abs(stt)), 1e-300)
    bad = (n < max(min_overlap * min(template.size, truth.size), 2)) | (den <= eps**2)
    ncc[bad] = np.nan
    return ncc, shape


def _subpixel_peak(template: np.ndarray, patch: np.ndarray, upsample: int, sign: int) -> np.ndarray:
    """Sub-pixel offset ``d`` (within +-1.5 px) maximising ``sum template(i) patch(i + d)``.

    Matrix-multiply DFT of the windowed cross-power spectrum on an upsampled grid
    (Guizar-Sicairos et al., 2008), refined in two passes.
    """
    window = _window_2d(template.shape, 0.5)
    a = (template - template.mean()) * window
    b = (patch - patch.mean()) * window
    product = np.conj(np.fft.fft2(a)) * np.fft.fft2(b)
    fy = np.fft.fftfreq(template.shape[0])
    fx = np.fft.fftfreq(template.shape[1])
    center = np.zeros(2)
    half, step = 1.5, 1.0 / 8
    for _ in range(3):
        oy = center[0] + np.arange(-half, half + step / 2, step)
        ox = center[1] + np.arange(-half, half + step / 2, step)
        ey = np.exp(2j * np.pi * oy[:, None] * fy[None, :])
        ex = np.exp(2j * np.pi * ox[:, None] * fx[None, :])
        surface = sign * (ey @ product @ ex.T).real
        iy, ix = np.unravel_index(np.argmax(surface), surface.shape)
        center = np.array([oy[iy], ox[ix]])
        half, step = 2 * step, max(step / 8, 1.0 / upsample)
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
    if not (0 <= r0 < r1 <= shape[0] and 0 <= c0 < c1 <= shape[1]) or min(r1 - r0, c1 - c0) < 4:
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
    recon = _check_image(reconstruction, "reconstruction")
    truth = _check_image(ground_truth, "ground_truth")
    if np.iscomplexobj(recon) or np.iscomplexobj(truth):
        raise ValueError("registration needs real images; pass e.g. np.angle(object) instead")
    s_rec = _as_sampling(sampling)
    s_truth = s_rec if ground_truth_sampling is None else _as_sampling(ground_truth_sampling)
    r0, r1, c0, c1 = _normalize_roi(recon.shape, crop, roi)
    template = recon[r0:r1, c0:c1].astype(float)

    truth_on_grid = resample(truth, s_truth, s_rec, periodic=periodic)
    if not periodic:
        truth_on_grid = np.nan_to_num(truth_on_grid)
    search_template, search_truth = template, truth_on_grid
    if band is not None:
        search_template = band_pass(template, s_rec, *band)
        search_truth = band_pass(truth_on_grid, s_rec, *band)

    ncc, shape = _ncc_map(search_template, search_truth, periodic, min_overlap)
    score = np.abs(ncc) if allow_sign_flip else ncc
    if expected_shift_px is not None and search_radius_px is not None:
        # offset o <=> shift (r0, c0) - o, modulo the map's period
        distance2 = np.zeros(shape)
        for axis, origin in enumerate((r0, c0)):
            o = np.arange(shape[axis], dtype=float)
            d = origin - o - expected_shift_px[axis]
            d = (d + shape[axis] / 2) % shape[axis] - shape[axis] / 2
            distance2 = distance2 + np.expand_dims(d**2, 1 - axis)
        score = np.where(distance2 <= search_radius_px**2, score, np.nan)
    if not np.any(np.isfinite(score)):
        raise ValueError("no valid overlap between the reconstruction and the ground truth")
    peak = np.unravel_index(np.nanargmax(score), shape)
    sign = -1 if (allow_sign_flip and ncc[peak] < 0) else 1

    # template(i) ~ truth(i + offset); refine the offset on the matched patch
    offset = np.array(peak, dtype=float)
    patch_rows = (np.arange(template.shape[0]) + peak[0]) % shape[0]
    patch_cols = (np.arange(template.shape[1]) + peak[1]) % shape[1]
    if periodic:
        patch = search_truth[
            np.ix_(patch_rows % search_truth.shape[0], patch_cols % search_truth.shape[1])
        ]
        offset += _subpixel_peak(search_template, patch, upsample_factor, sign)
        for axis in range(2):  # smallest equivalent offset
            offset[axis] = (offset[axis] + shape[axis] / 2) % shape[axis] - shape[axis] / 2
    else:
        offset = np.where(
            offset >= np.array(shape) - np.array(template.shape) + 1, offset - shape, offset
        )
        pr = np.arange(template.shape[0]) + int(offset[0])
        pc = np.arange(template.shape[1]) + int(offset[1])
        valid_r = (pr >= 0) & (pr < search_truth.shape[0])
        valid_c = (pc >= 0) & (pc < search_truth.shape[1])
        if valid_r.sum() >= 4 and valid_c.sum() >= 4:
            patch = search_truth[np.ix_(pr[valid_r], pc[valid_c])]
            offset += _subpixel_peak(
                search_template[np.ix_(valid_r, valid_c)], patch, upsample_factor, sign
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
    if not periodic:
        rows = np.all(np.isfinite(aligned_truth), axis=1)
        cols = np.all(np.isfinite(aligned_truth), axis=0)
        if rows.sum() < 4 or cols.sum() < 4:
            raise ValueError("the aligned ground truth does not overlap the reconstruction")
        ri, ci = np.nonzero(rows)[0], np.nonzero(cols)[0]
        sl = np.s_[ri[0] : ri[-1] + 1, ci[0] : ci[-1] + 1]
        aligned_truth, aligned_recon = aligned_truth[sl], aligned_recon[sl]
        r0, c0 = r0 + ri[0], c0 + ci[0]
        r1, c1 = r0 + aligned_recon.shape[0], c0 + aligned_recon.shape[1]

    correlation = normalized_cross_correlation(aligned_recon, aligned_truth)
    a, b = aligned_recon - aligned_recon.mean(), aligned_truth - aligned_truth.mean()
    if window_alpha > 0:
        window = _window_2d(a.shape, window_alpha)
        a, b = a * window, b * window
    fsc = fourier_shell_correlation(a, b, s_rec, cutoff=fsc_cutoff, num_shells=num_shells)
    return RegistrationResult(
        shift_px=(float(shift[0]), float(shift[1])),
        shift_angstrom=(float(shift[0] * s_rec[0]), float(shift[1] * s_rec[1])),
        sign=sign,
        reconstruction=aligned_recon,
        ground_truth=aligned_truth,
        sampling=s_rec,
        roi=(int(r0), int(r1), int(c0), int(c1)),
        fsc=fsc,
        correlation=correlation,
    )
