"""Resolution metrics: Fourier shell correlation, normalised cross-correlation, band-pass.

Pure NumPy/SciPy, array in and array out. The Fourier shell correlation follows Eq. 19 of
the source paper,

    FSC(q) = Re sum_{|k| in shell q} F1(k) F2*(k) / sqrt(sum |F1(k)|^2 sum |F2(k)|^2),

with shells in reciprocal Angstrom. Bringing a reconstruction and a ground truth onto one
grid first is :mod:`py4dstem_compressed.analysis.registration`'s job.

Conventions: images are indexed ``[row, column]``; ``sampling`` is the real-space pixel size
[A] as a scalar or ``(row, column)`` pair. A shift ``d`` [px] moves image content towards
larger indices: ``fourier_shift(f, d)(i) = f(i - d)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

__all__ = [
    "FSCResult",
    "SamplingLike",
    "as_sampling",
    "band_pass",
    "check_image",
    "fourier_shell_correlation",
    "normalized_cross_correlation",
    "window_2d",
]

SamplingLike = float | Sequence[float]


# ----------------------------------------------------------------------------- input checks


def as_sampling(sampling: SamplingLike, name: str = "sampling") -> tuple[float, float]:
    """Return a ``(row, column)`` pixel size [A] from a scalar or a pair.

    Raises
    ------
    ValueError
        Naming ``name``, unless ``sampling`` is one or two finite positive numbers.
    """
    values = np.atleast_1d(np.asarray(sampling, dtype=float)).ravel()
    if values.size == 1:
        values = np.repeat(values, 2)
    if values.size != 2 or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(
            f"{name} must be a positive scalar or (row, column) pair, got {sampling!r}"
        )
    return float(values[0]), float(values[1])


def check_image(image: np.ndarray, name: str) -> np.ndarray:
    """Return ``image`` as a finite numeric 2D array (no copy if it already is one).

    Raises
    ------
    ValueError
        Naming ``name``, if the image is not 2D, not numeric or holds NaN or infinity.
    """
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


def window_2d(shape: tuple[int, int], alpha: float) -> np.ndarray:
    """Separable 2D Tukey window of ``shape`` with taper fraction ``alpha`` (0: flat, 1: Hann).

    Values in [0, 1]; used to taper images before FFT-based comparisons.
    """
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
    a = check_image(a, "a")
    b = check_image(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"images must have the same shape, got {a.shape} and {b.shape}")
    s = as_sampling(sampling)
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
    a = check_image(a, "a")
    b = check_image(b, "b")
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
    image = check_image(image, "image")
    s = as_sampling(sampling)
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
