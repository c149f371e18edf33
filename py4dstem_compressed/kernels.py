"""The compression kernel: per-frame coefficients and region sums, doing only what a basis needs.

One full pass over each frame gathers the region sums (total, centre-of-mass
numerators, sum of squares or of square roots); the regions' other sums come
from small crops (the bright-field disk's bounding box, the EDGE pixels), so the
dark-field sums are differences (DF = total - BF - EDGE). Masks are applied
as:

- *segment sums* for masks that are constant on disjoint supports (binning
  bins, the single "mean dark field" mask): ``c = value * sum over the support``;
  a constant mask covering the whole DF region costs nothing beyond the region sums;
- float32 matrix products over the bounding box of their support for every
  other ("dense") mask, one product per region.

With numba installed the full-frame pass is one fused, multi-threaded loop;
otherwise NumPy does it in a few vectorised passes (same results to float32
rounding).
"""

from __future__ import annotations

import numpy as np

from py4dstem_compressed.basis import Basis

__all__ = ["CompressionKernel", "frame_statistics", "has_numba"]

CONSTANT_TOLERANCE = 1e-5

try:  # optional accelerator
    import numba
except ImportError:  # pragma: no cover - exercised where numba is missing
    numba = None


def has_numba() -> bool:
    """Whether the fused numba pass is available."""
    return numba is not None


# Columns of the full-frame statistics
RAW, TOTAL, MOMENT_X, MOMENT_Y, EXTRA, NEGATIVE = range(6)


def _stats_python(frames: np.ndarray, amplitude: bool, out: np.ndarray) -> None:
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
            out[:, EXTRA] = np.sqrt(x).sum(axis=(1, 2), dtype=np.float64)
        else:
            out[:, NEGATIVE] = 0
            flat = x.reshape(len(x), -1)
            out[:, EXTRA] = np.einsum("ij,ij->i", flat, flat, dtype=np.float64)
        rows = x.sum(axis=2, dtype=np.float64)
        cols = x.sum(axis=1, dtype=np.float64)
    out[:, TOTAL] = rows.sum(1)
    out[:, MOMENT_X] = rows @ qx
    out[:, MOMENT_Y] = cols @ qy


if numba is not None:
    _FLAGS = {"reassoc", "contract", "nsz", "arcp"}  # no nnan/ninf: NaN must propagate

    @numba.njit(nogil=True, cache=True, fastmath=_FLAGS)
    def _copy_crop(frames, r0, c0, crop):  # pragma: no cover - compiled
        for n in range(crop.shape[0]):
            for i in range(crop.shape[1]):
                for j in range(crop.shape[2]):
                    crop[n, i, j] = frames[n, r0 + i, c0 + j]

    @numba.njit(nogil=True, cache=True, fastmath=_FLAGS)
    def _stats_intensity(frames, qy, out):  # pragma: no cover - compiled
        num, nx, ny = frames.shape
        for n in range(num):
            total = 0.0
            moment_x = 0.0
            moment_y = 0.0
            squares = 0.0
            for i in range(nx):
                row = np.float32(0.0)
                row_y = np.float32(0.0)
                row_sq = np.float32(0.0)
                for j in range(ny):
                    v = np.float32(frames[n, i, j])
                    row += v
                    row_y += qy[j] * v
                    row_sq += v * v
                total += row
                moment_x += i * np.float64(row)
                moment_y += row_y
                squares += row_sq
            out[n, 0] = total
            out[n, 1] = total
            out[n, 2] = moment_x
            out[n, 3] = moment_y
            out[n, 4] = squares
            out[n, 5] = 0.0

    @numba.njit(nogil=True, cache=True, fastmath=_FLAGS)
    def _stats_amplitude(frames, qy, out):  # pragma: no cover - compiled
        num, nx, ny = frames.shape
        for n in range(num):
            raw = 0.0
            total = 0.0
            moment_x = 0.0
            moment_y = 0.0
            roots = 0.0
            negative = 0.0
            for i in range(nx):
                row_raw = np.float32(0.0)
                row = np.float32(0.0)
                row_y = np.float32(0.0)
                row_root = np.float32(0.0)
                row_negative = np.float32(0.0)
                for j in range(ny):
                    v = np.float32(frames[n, i, j])
                    row_raw += v
                    row_negative += np.float32(v < 0)
                    v = max(v, np.float32(0.0))
                    row += v
                    row_y += qy[j] * v
                    row_root += np.sqrt(v)
                raw += row_raw
                total += row
                moment_x += i * np.float64(row)
                moment_y += row_y
                roots += row_root
                negative += row_negative
            out[n, 0] = raw
            out[n, 1] = total
            out[n, 2] = moment_x
            out[n, 3] = moment_y
            out[n, 4] = roots
            out[n, 5] = negative


def frame_statistics(
    frames: np.ndarray,
    amplitude: bool,
    use_numba: bool = True,
    crop: tuple[slice, slice] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Full-frame sums of a batch in one pass.

    Parameters
    ----------
    frames : numpy.ndarray
        ``(B, Qx, Qy)`` intensities [counts], any real dtype.
    amplitude : bool
        Clip negatives to 0 (and count them), and sum ``sqrt(I)`` as the extra
        column; otherwise sum ``I**2``.
    use_numba : bool
        Use the fused numba loop when available.
    crop : (slice, slice), optional
        Also return a float32 copy of this rectangle of every frame (raw values),
        made during the same pass.

    Returns
    -------
    stats : numpy.ndarray
        ``(B, 6)`` float64: raw sum (NaN/inf detection), total, ``sum qx I``,
        ``sum qy I`` [counts px], ``sum sqrt(I)`` or ``sum I**2``, number of
        negative pixels.
    cropped : numpy.ndarray or None
        ``(B, h, w)`` float32 crop.
    """
    out = np.empty((frames.shape[0], 6), np.float64)
    rows, cols = crop if crop is not None else (slice(0, 0), slice(0, 0))
    if use_numba and numba is not None and frames.dtype.kind in "fiu":
        cropped = np.empty(
            (len(frames), rows.stop - rows.start, cols.stop - cols.start), np.float32
        )
        frames = np.ascontiguousarray(frames)
        qy = np.arange(frames.shape[2], dtype=np.float32)
        (_stats_amplitude if amplitude else _stats_intensity)(frames, qy, out)
        _copy_crop(frames, rows.start, cols.start, cropped)
    else:
        _stats_python(frames, amplitude, out)
        cropped = np.array(frames[:, rows, cols], dtype=np.float32)
    return out, (cropped if crop is not None else None)


def _bounding_box(support: np.ndarray) -> tuple[slice, slice]:
    rows = np.flatnonzero(support.any(1))
    cols = np.flatnonzero(support.any(0))
    if rows.size == 0:
        return slice(0, 0), slice(0, 0)
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


class _Crop:
    """A rectangle of the detector, located inside the kernel's union crop."""

    def __init__(self, support: np.ndarray) -> None:
        self.rows, self.cols = _bounding_box(support)
        self.shape = (self.rows.stop - self.rows.start, self.cols.stop - self.cols.start)

    def within(self, union: _Crop) -> None:
        """Remember where this crop sits inside ``union``."""
        self.local = (
            slice(self.rows.start - union.rows.start, self.rows.stop - union.rows.start),
            slice(self.cols.start - union.cols.start, self.cols.stop - union.cols.start),
        )
        self.is_union = self.shape == union.shape

    def take(self, cropped: np.ndarray, amplitude: bool) -> np.ndarray:
        """``(B, h*w)`` float32 from the union crop, ``sqrt(max(I, 0))`` in amplitude mode."""
        if self.is_union:
            crop = cropped.reshape(len(cropped), -1)
            crop = crop.copy() if amplitude else crop
        else:
            crop = np.array(cropped[:, self.local[0], self.local[1]], dtype=np.float32)
            crop = crop.reshape(len(crop), -1)
        if amplitude:
            np.maximum(crop, 0, out=crop)
            np.sqrt(crop, out=crop)
        return crop


class CompressionKernel:
    """A basis prepared for fast batch compression (see the module docstring).

    Parameters
    ----------
    basis : Basis
        Orthonormal masks.
    mode : {"amplitude", "intensity"}
        Project ``sqrt(I)`` or ``I``.
    use_numba : bool
        Use numba for the full-frame pass when installed.

    Attributes
    ----------
    plan : dict
        How many masks are dense per region, segment sums, or the DF region sum.
    """

    def __init__(self, basis: Basis, mode: str = "amplitude", use_numba: bool = True) -> None:
        self.basis = basis
        self.mode = mode
        self.amplitude = mode == "amplitude"
        self.use_numba = use_numba
        g = basis.geometry
        self.num_masks = basis.num_masks
        self.num_bf = basis.num_bf
        masks = basis.masks_flat
        self.bf_crop = _Crop(g.bf)
        self.bf_in_crop = g.bf[self.bf_crop.rows, self.bf_crop.cols].ravel().astype(np.float32)
        self.edge_pixels = np.flatnonzero(g.edge.ravel())
        df_region = g.df.ravel()

        constant, dense, region_df = [], [], []
        max_dense_constant = 8  # a few constant masks are cheaper as matrix columns
        covered = np.zeros(g.num_pixels, bool)
        for n, mask in enumerate(masks):
            support = mask != 0
            values = mask[support]
            is_constant = values.size > 0 and np.ptp(values) <= CONSTANT_TOLERANCE * np.abs(
                values
            ).max(initial=0)
            if is_constant and not (covered & support).any():
                covered |= support
                if n >= self.num_bf and np.array_equal(support, df_region):
                    region_df.append((n, float(values.mean())))
                else:
                    constant.append((n, float(values.mean()), support))
            else:
                dense.append(n)
        if len(constant) <= max_dense_constant:
            dense = sorted(dense + [n for n, _, _ in constant])
            constant = []
        self.region_df = region_df

        # segment sums: pixels of constant masks, sorted by mask, within their bounding box
        self.segment_index = np.array([n for n, _, _ in constant], dtype=np.intp)
        self.segment_value = np.array([v for _, v, _ in constant], dtype=np.float64)
        self.segment_crop = None
        if constant:
            union = np.zeros(g.num_pixels, bool)
            for _, _, support in constant:
                union |= support
            self.segment_crop = _Crop(union.reshape(g.shape))
            rows, cols = self.segment_crop.rows, self.segment_crop.cols
            order, starts = [], []
            for _, _, support in constant:
                local = np.flatnonzero(support.reshape(g.shape)[rows, cols].ravel())
                starts.append(sum(len(o) for o in order))
                order.append(local)
            self.segment_order = np.concatenate(order)
            self.segment_starts = np.array(starts, dtype=np.intp)

        # dense masks: one float32 product per region over its bounding box
        self.dense_groups = []
        for region, in_region in (("bf", lambda n: n < self.num_bf), ("df", lambda n: True)):
            index = [n for n in dense if in_region(n)]
            dense = [n for n in dense if n not in index]
            if not index:
                continue
            support = (masks[index] != 0).any(0).reshape(g.shape)
            crop = _Crop(support)
            local = masks[index].reshape(len(index), *g.shape)[:, crop.rows, crop.cols]
            matrix = np.ascontiguousarray(local.reshape(len(index), -1).T, dtype=np.float32)
            self.dense_groups.append((region, np.array(index, dtype=np.intp), crop, matrix))
        crops = [self.bf_crop] + [c for _, _, c, _ in self.dense_groups]
        if self.segment_crop is not None:
            crops.append(self.segment_crop)
        union = np.zeros(g.shape, bool)
        for crop in crops:
            union[crop.rows, crop.cols] = True
        self.crop = _Crop(union)
        for crop in crops:
            crop.within(self.crop)
        self.plan = {
            "dense": {r: len(i) for r, i, _, _ in self.dense_groups},
            "segment_sums": len(constant),
            "df_region_sum": len(region_df),
        }

    @np.errstate(invalid="ignore", over="ignore", divide="ignore")  # NaN frames are reported
    def __call__(self, frames: np.ndarray) -> dict:
        """Compress ``(B, Qx, Qy)`` frames (see :func:`~py4dstem_compressed.compress_frames`)."""
        frames = np.asarray(frames)
        num = frames.shape[0]
        stats, cropped = frame_statistics(
            frames, self.amplitude, self.use_numba, (self.crop.rows, self.crop.cols)
        )
        # BF crop: region sum of I and norm^2 of the projected vector (float32 BLAS)
        rows, cols = self.bf_crop.local
        bf = cropped[:, rows, cols].reshape(num, -1)
        weights = self.bf_in_crop
        if self.amplitude:  # float64 accumulation: the results do not depend on the batch
            bf = np.maximum(bf, 0)
            bf_sum = np.einsum("ij,j->i", bf, weights, dtype=np.float64)
            bf_extra = np.einsum("ij,j->i", np.sqrt(bf), weights, dtype=np.float64)
        else:
            bf_sum = np.einsum("ij,j->i", bf, weights, dtype=np.float64)
            bf_extra = np.einsum("ij,ij,j->i", bf, bf, weights, dtype=np.float64)
        del bf
        flat = frames.reshape(num, -1)
        edge = np.asarray(flat[:, self.edge_pixels], dtype=np.float64)
        if self.amplitude:
            np.maximum(edge, 0, out=edge)
        edge_sum = edge.sum(1)
        edge_extra = (np.sqrt(edge) if self.amplitude else edge * edge).sum(1)
        df_sum = stats[:, TOTAL] - bf_sum - edge_sum
        df_extra = stats[:, EXTRA] - bf_extra - edge_extra  # sum sqrt(I) or sum I^2 over DF

        coefficients = np.empty((num, self.num_masks), np.float64)
        for n, value in self.region_df:
            coefficients[:, n] = value * (df_extra if self.amplitude else df_sum)
        if self.segment_crop is not None:
            crop = self.segment_crop.take(cropped, self.amplitude)[:, self.segment_order]
            sums = np.add.reduceat(crop, self.segment_starts, axis=1, dtype=np.float64)
            coefficients[:, self.segment_index] = sums * self.segment_value
        for _, index, crop, matrix in self.dense_groups:
            coefficients[:, index] = crop.take(cropped, self.amplitude) @ matrix

        if self.amplitude:  # ||sqrt(I)_R||^2 = sum_R I
            norms_sq = np.stack([bf_sum, df_sum], 1)
        else:  # sum_R I^2
            norms_sq = np.stack([bf_extra, df_extra], 1)
        c_sq = coefficients**2
        captured = np.stack([c_sq[:, : self.num_bf].sum(1), c_sq[:, self.num_bf :].sum(1)], 1)
        perpendicular = np.sqrt(np.maximum(norms_sq - captured, 0))
        total = stats[:, TOTAL]
        finite = np.isfinite(stats[:, RAW])
        total = np.where(finite, total, stats[:, RAW])  # NaN/inf frames report it
        safe_total = np.where(total != 0, total, 1)
        com = stats[:, MOMENT_X : MOMENT_Y + 1] / safe_total[:, None]
        return {
            "coefficients": coefficients.astype(np.float32),
            "perpendicular_norms": perpendicular.astype(np.float32),
            "edge_intensity": edge_sum.astype(np.float32),
            "total_intensity": total.astype(np.float32),
            "center_of_mass": com.astype(np.float32),
            "num_negative": int(stats[:, NEGATIVE].sum()),
        }
