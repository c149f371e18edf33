"""Full-frame statistics of a batch of frames: the one pass over every pixel that compression needs.

Per frame it gathers the total, the centre-of-mass numerators, the sum of squares (intensity
mode) or of square roots (amplitude mode), the bright-field and EDGE region sums, and copies the
bright-field disk's bounding box (transformed: sqrt in amplitude mode) for the masks. With numba
installed this is one fused, multi-threaded loop compiled once and cached outside the package;
otherwise NumPy does it in a few vectorised passes (same results to float32 rounding).
"""

from __future__ import annotations

import numpy as np

from py4dstem_compressed.core.numba_cache import enable_user_cache, numba

__all__ = ["NUM_STATS", "RESIDUAL_BLOCK", "frame_statistics"]

RESIDUAL_BLOCK = 32

# Columns of the full-frame statistics
(
    RAW,
    TOTAL,
    MOMENT_X,
    MOMENT_Y,
    EXTRA,
    NEGATIVE,
    BF_SUM,
    BF_EXTRA,
    EDGE_SUM,
    EDGE_EXTRA,
    NOT_BF_SUM,
    NOT_BF_EXTRA,
) = range(12)
NUM_STATS = 12


def _stats_python(frames, amplitude, crop, bf_weights, edge_weights, out):
    """Full-frame statistics with NumPy (fallback for :func:`frame_statistics`)."""
    x = frames.astype(np.float32, copy=False)
    qx = np.arange(x.shape[1], dtype=np.float64)
    qy = np.arange(x.shape[2], dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        out[:, RAW] = x.sum(axis=(1, 2), dtype=np.float64)
        if amplitude:
            negative = np.count_nonzero(x < 0, axis=(1, 2))
            out[:, NEGATIVE] = negative
            if negative.any():
                x = np.maximum(x, 0)
            extra = np.sqrt(x)
        else:
            out[:, NEGATIVE] = 0
            extra = x * x
        out[:, EXTRA] = extra.sum(axis=(1, 2), dtype=np.float64)
        rows = x.sum(axis=2, dtype=np.float64)
        cols = x.sum(axis=1, dtype=np.float64)
        rs, cs = crop
        out[:, BF_SUM] = np.einsum("nij,ij->n", x[:, rs, cs], bf_weights, dtype=np.float64)
        out[:, BF_EXTRA] = np.einsum("nij,ij->n", extra[:, rs, cs], bf_weights, dtype=np.float64)
        out[:, EDGE_SUM] = np.einsum("nij,ij->n", x, edge_weights, dtype=np.float64)
        out[:, EDGE_EXTRA] = np.einsum("nij,ij->n", extra, edge_weights, dtype=np.float64)
        not_bf = np.ones(x.shape[1:], np.float64)
        not_bf[rs, cs] -= bf_weights
        out[:, NOT_BF_SUM] = np.einsum("nij,ij->n", x, not_bf)
        out[:, NOT_BF_EXTRA] = np.einsum("nij,ij->n", extra, not_bf)
        cropped = np.array((extra if amplitude else x)[:, rs, cs], dtype=np.float32)
    out[:, TOTAL] = rows.sum(1)
    out[:, MOMENT_X] = rows @ qx
    out[:, MOMENT_Y] = cols @ qy
    return cropped


if numba is not None:
    _FLAGS = {"reassoc", "contract", "nsz", "arcp"}  # no nnan/ninf: NaN must propagate

    @numba.njit(nogil=True, cache=False, fastmath=_FLAGS, inline="always")
    def _row_sums(frames, n, i, j0, j1, amplitude):  # pragma: no cover - compiled
        """float32 sums of the values and of ``sqrt`` (amplitude) or squares over row part."""
        zero = np.float32(0.0)
        part_sum = zero
        part_extra = zero
        for j in range(j0, j1):
            v = np.float32(frames[n, i, j])
            v = max(v, zero) if amplitude else v
            part_sum += v
            part_extra += np.sqrt(v) if amplitude else v * v
        return part_sum, part_extra

    # cache=False: numba would write into the package; enable_user_cache below
    @numba.njit(nogil=True, cache=False, fastmath=_FLAGS)
    def _frame_pass(
        frames, qy, amplitude, r0, r1, c0, c1, bf_w, edge_w, has_edge, crop, out
    ):  # pragma: no cover - compiled
        """One fused pass: sums, moments, region sums and the (transformed) crop.

        Whole-frame sums accumulate in float32 within a detector row (float64 across
        rows). The not-BF sums are gathered apart from them, never as a difference with
        the bright field (which would cancel: the BF disk holds almost all of ``I**2``):
        the rows of the crop box (which holds the BF disk) are read a second time, the box
        in float64 (split into BF and not-BF) and the rest of the row in float32.
        """
        num, nx, ny = frames.shape
        zero = np.float32(0.0)
        for n in range(num):
            raw = total = moment_x = moment_y = extra = negative = 0.0
            bf_sum = bf_extra = edge_sum = edge_extra = not_bf_sum = not_bf_extra = 0.0
            for i in range(nx):
                row_raw = row = row_y = row_extra = zero
                row_negative = row_edge = row_edge_extra = zero
                in_rows = r0 <= i < r1
                for j in range(ny):
                    v = np.float32(frames[n, i, j])
                    row_raw += v
                    if amplitude:
                        row_negative += np.float32(v < zero)
                        v = max(v, zero)
                        e = np.sqrt(v)
                    else:
                        e = v * v
                    row += v
                    row_y += qy[j] * v
                    row_extra += e
                    if has_edge:
                        w = edge_w[i, j]
                        row_edge += w * v
                        row_edge_extra += w * e
                # the not-BF sums: the row outside the box in float32, the box in float64
                box_sum = 0.0
                box_extra = 0.0
                if in_rows:
                    for j in range(c0, c1):
                        v = np.float32(frames[n, i, j])
                        if amplitude:
                            v = max(v, zero)
                            value = np.sqrt(v)  # what the masks see
                            e64 = np.float64(value)
                        else:
                            value = v
                            e64 = np.float64(v) * np.float64(v)
                        v64 = np.float64(v)
                        w = np.float64(bf_w[i - r0, j - c0])
                        bf_sum += w * v64
                        bf_extra += w * e64
                        not_bf_sum += (1.0 - w) * v64
                        not_bf_extra += (1.0 - w) * e64
                        box_sum += v64
                        box_extra += e64
                        crop[n, i - r0, j - c0] = value
                    left_sum, left_extra = _row_sums(frames, n, i, 0, c0, amplitude)
                    right_sum, right_extra = _row_sums(frames, n, i, c1, ny, amplitude)
                    not_bf_sum += left_sum + right_sum
                    not_bf_extra += left_extra + right_extra
                else:
                    not_bf_sum += row
                    not_bf_extra += row_extra
                raw += row_raw
                total += row
                moment_x += i * np.float64(row)
                moment_y += row_y
                extra += row_extra
                negative += row_negative
                edge_sum += row_edge
                edge_extra += row_edge_extra
            out[n, 0] = raw
            out[n, 1] = total if amplitude else raw
            out[n, 2] = moment_x
            out[n, 3] = moment_y
            out[n, 4] = extra
            out[n, 5] = negative
            out[n, 6] = bf_sum
            out[n, 7] = bf_extra
            out[n, 8] = edge_sum
            out[n, 9] = edge_extra
            out[n, 10] = not_bf_sum
            out[n, 11] = not_bf_extra

    enable_user_cache(_frame_pass)


def frame_statistics(
    frames: np.ndarray,
    amplitude: bool,
    use_numba: bool = True,
    crop: tuple[slice, slice] | None = None,
    bf_weights: np.ndarray | None = None,
    edge_weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Full-frame sums, region sums and a crop of a batch in one pass.

    Parameters
    ----------
    frames : numpy.ndarray
        ``(B, Qx, Qy)`` intensities [counts], any real dtype.
    amplitude : bool
        Clip negatives to 0 (and count them), and sum ``sqrt(I)`` as the "extra" value;
        otherwise sum ``I**2``.
    use_numba : bool
        Use the fused numba loop when available.
    crop : (slice, slice), optional
        Rectangle of every frame to return (as ``sqrt(max(I, 0))`` in amplitude mode, raw
        ``I`` otherwise) and where ``bf_weights`` apply. Default: empty.
    bf_weights : numpy.ndarray, optional
        ``(h, w)`` weights (the BF indicator) over the crop for the BF sums.
    edge_weights : numpy.ndarray, optional
        ``(Qx, Qy)`` weights (the EDGE indicator) for the EDGE sums; None: no EDGE.

    Returns
    -------
    stats : numpy.ndarray
        ``(B, 12)`` float64: raw sum (NaN/inf detection), total, ``sum qx I``,
        ``sum qy I`` [counts px], ``sum sqrt(I)`` or ``sum I**2``, number of negative
        pixels, then the BF, EDGE and not-BF sums of ``I`` and of the extra value.
    cropped : numpy.ndarray
        ``(B, h, w)`` float32 crop.
    """
    num, nx, ny = frames.shape
    rows, cols = crop if crop is not None else (slice(0, 0), slice(0, 0))
    shape = (rows.stop - rows.start, cols.stop - cols.start)
    bf_w = np.zeros(shape, np.float32) if bf_weights is None else bf_weights
    bf_w = np.ascontiguousarray(bf_w, dtype=np.float32)
    has_edge = edge_weights is not None and bool(np.any(edge_weights))
    edge_w = (
        np.ascontiguousarray(edge_weights, dtype=np.float32)
        if has_edge
        else np.zeros((1, 1), np.float32)
    )
    out = np.empty((num, NUM_STATS), np.float64)
    if use_numba and numba is not None and frames.dtype.kind in "fiu":
        cropped = np.empty((num, *shape), np.float32)
        qy = np.arange(ny, dtype=np.float32)
        _frame_pass(
            np.ascontiguousarray(frames),
            qy,
            bool(amplitude),
            rows.start,
            rows.stop,
            cols.start,
            cols.stop,
            bf_w,
            edge_w,
            has_edge,
            cropped,
            out,
        )
    else:
        edge_full = edge_w if has_edge else np.zeros((nx, ny), np.float32)
        cropped = _stats_python(frames, amplitude, (rows, cols), bf_w, edge_full, out)
    return out, cropped
