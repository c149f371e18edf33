"""Resampling of images: sub-pixel Fourier shifts and changes of pixel size.

Conventions: images are indexed ``[row, column]``; ``sampling`` is the real-space pixel size
[A] as a scalar or ``(row, column)`` pair. A shift ``d`` [px] moves image content towards
larger indices: ``fourier_shift(f, d)(i) = f(i - d)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.ndimage as ndi

from py4dstem_compressed.analysis.resolution import SamplingLike, as_sampling, check_image

__all__ = ["EDGE_TOLERANCE", "fourier_shift", "resample"]

#: Tolerance of edge comparisons in floating point (pixel positions [px], frequencies
#: [cycles/px]): values this close to an edge count as on it.
EDGE_TOLERANCE = 1e-9


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
    image = check_image(image, "image")
    ky = np.fft.fftfreq(image.shape[0])
    kx = np.fft.fftfreq(image.shape[1])
    phase = np.exp(-2j * np.pi * (ky[:, None] * shift_px[0] + kx[None, :] * shift_px[1]))
    out = np.fft.ifft2(np.fft.fft2(image) * phase)
    return out if np.iscomplexobj(image) else out.real


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
    image = check_image(image, "image")
    s_in = as_sampling(sampling)
    s_out = as_sampling(new_sampling, "new_sampling")
    if shape is None:
        shape = tuple(
            max(1, int(np.floor(n * a / b + EDGE_TOLERANCE)))
            for n, a, b in zip(image.shape, s_in, s_out)
        )
    rows = (np.arange(shape[0]) - shift_px[0]) * s_out[0] / s_in[0]
    cols = (np.arange(shape[1]) - shift_px[1]) * s_out[1] / s_in[1]
    # frequency limit in cycles per input pixel: the output Nyquist, or the input's own
    max_freq = tuple(min(0.5 * a / b, 0.5 + EDGE_TOLERANCE) for a, b in zip(s_in, s_out))
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
    tol = EDGE_TOLERANCE
    outside = (
        (grid[0] < -tol)
        | (grid[0] > image.shape[0] - 1 + tol)
        | (grid[1] < -tol)
        | (grid[1] > image.shape[1] - 1 + tol)
    )
    out = out.astype(np.result_type(out, float))
    out[outside] = np.nan
    return out
