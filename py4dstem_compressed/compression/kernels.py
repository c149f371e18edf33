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

import os
from pathlib import Path

import numpy as np

from py4dstem_compressed.bases.basis import Basis

__all__ = ["CompressionKernel", "frame_statistics", "has_numba"]

CONSTANT_TOLERANCE = 1e-5
#: Frames per block of the explicit residual (a buffer that stays in cache)
RESIDUAL_BLOCK = 32

try:  # optional accelerator
    import numba
except ImportError:  # pragma: no cover - exercised where numba is missing
    numba = None


def has_numba() -> bool:
    """Whether the fused numba pass is available."""
    return numba is not None


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


def _numba_cache_directory() -> Path:
    """Directory of the compiled-kernel cache, outside the installed package.

    numba's own ``cache=True`` writes next to the source file, i.e. into the
    installed package's ``__pycache__``; a later ``pip install -e`` leaves that
    folder behind as an empty namespace package that shadows the editable install.

    Returns
    -------
    pathlib.Path
        ``$NUMBA_CACHE_DIR`` (numba's setting) if set, else
        ``$XDG_CACHE_HOME/py4dstem-compressed/numba``, else
        ``~/.cache/py4dstem-compressed/numba``.
    """
    configured = getattr(getattr(numba, "config", None), "CACHE_DIR", "")
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "py4dstem-compressed" / "numba"


def _enable_user_cache(dispatcher) -> bool:
    """Cache a numba dispatcher's compiled code in :func:`_numba_cache_directory`.

    Only this dispatcher is affected (no global numba setting changes). Where
    numba's caching internals differ or the directory is not writable, the
    kernel is compiled on first use in every process instead (about 5 s).

    Returns
    -------
    bool
        Whether caching is on.
    """
    try:
        from numba.core.caching import (
            CompileResultCacheImpl,
            FunctionCache,
            _CacheLocator,
            _SourceFileBackedLocatorMixin,
        )
    except ImportError:  # pragma: no cover - other numba versions
        return False

    class _UserCacheLocator(_SourceFileBackedLocatorMixin, _CacheLocator):
        def __init__(self, py_func, py_file):
            self._py_file = py_file
            self._lineno = py_func.__code__.co_firstlineno
            subpath = self.get_suitable_cache_subpath(py_file)
            self._cache_path = str(_numba_cache_directory() / subpath)

        def get_cache_path(self):
            return self._cache_path

    class _UserCacheImpl(CompileResultCacheImpl):
        _locator_classes = (_UserCacheLocator,)

    class _UserFunctionCache(FunctionCache):
        _impl_class = _UserCacheImpl

    try:
        dispatcher._cache = _UserFunctionCache(dispatcher.py_func)
    except (RuntimeError, OSError):  # no writable cache directory
        return False
    return True


if numba is not None:
    _FLAGS = {"reassoc", "contract", "nsz", "arcp"}  # no nnan/ninf: NaN must propagate

    # cache=False: numba would write into the package; _enable_user_cache below
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
            raw = 0.0
            total = 0.0
            moment_x = 0.0
            moment_y = 0.0
            extra = 0.0
            negative = 0.0
            bf_sum = 0.0
            bf_extra = 0.0
            edge_sum = 0.0
            edge_extra = 0.0
            not_bf_sum = 0.0
            not_bf_extra = 0.0
            for i in range(nx):
                row_raw = zero
                row = zero
                row_y = zero
                row_extra = zero
                row_negative = zero
                row_edge = zero
                row_edge_extra = zero
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
                    out_sum = zero
                    out_extra = zero
                    for j in range(c0):
                        v = np.float32(frames[n, i, j])
                        v = max(v, zero) if amplitude else v
                        out_sum += v
                        out_extra += np.sqrt(v) if amplitude else v * v
                    for j in range(c1, ny):
                        v = np.float32(frames[n, i, j])
                        v = max(v, zero) if amplitude else v
                        out_sum += v
                        out_extra += np.sqrt(v) if amplitude else v * v
                    not_bf_sum += out_sum
                    not_bf_extra += out_extra
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

    _enable_user_cache(_frame_pass)


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

    def take(self, cropped: np.ndarray) -> np.ndarray:
        """``(B, h*w)`` float32 view or copy of this rectangle of the union crop."""
        if self.is_union:
            return cropped.reshape(len(cropped), -1)
        crop = np.array(cropped[:, self.local[0], self.local[1]], dtype=np.float32)
        return crop.reshape(len(crop), -1)


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
        self.edge_weights = g.edge.astype(np.float32) if g.edge.any() else None
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
                value = float(values.astype(np.float64).mean())  # exact for equal values
                if n >= self.num_bf and np.array_equal(support, df_region):
                    region_df.append((n, value))
                else:
                    constant.append((n, value, support))
            else:
                dense.append(n)
        if len(constant) <= max_dense_constant:
            dense = sorted(dense + [n for n, _, _ in constant])
            constant = []
        # a region with dense masks takes its constant masks into its matrix product too,
        # so that its perpendicular norm is one explicit residual (see _DenseGroup)
        dense_bf = any(n < self.num_bf for n in dense)
        dense_df = any(n >= self.num_bf for n in dense)

        def joins_dense(n):
            return dense_bf if n < self.num_bf else dense_df

        dense = sorted(
            dense
            + [n for n, *_ in constant if joins_dense(n)]
            + [n for n, _ in region_df if joins_dense(n)]
        )
        constant = [entry for entry in constant if not joins_dense(entry[0])]
        region_df = [entry for entry in region_df if not joins_dense(entry[0])]
        self.region_df = region_df
        self.num_df_pixels = int(g.df.sum())

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
            self.segment_size = np.array([len(o) for o in order], dtype=np.float64)

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
            self.dense_groups.append(
                _DenseGroup(region, np.array(index, dtype=np.intp), crop, matrix, g)
            )
        crops = [self.bf_crop] + [group.crop for group in self.dense_groups]
        if self.segment_crop is not None:
            crops.append(self.segment_crop)
        union = np.zeros(g.shape, bool)
        for crop in crops:
            union[crop.rows, crop.cols] = True
        self.crop = _Crop(union)
        # BF indicator over the union crop: the fused pass sums the BF region there
        self.bf_in_crop = np.ascontiguousarray(g.bf[self.crop.rows, self.crop.cols], np.float32)
        for crop in crops:
            crop.within(self.crop)
        self.plan = {
            "dense": {group.region: len(group.index) for group in self.dense_groups},
            "segment_sums": len(constant),
            "df_region_sum": len(region_df),
        }

    @np.errstate(invalid="ignore", over="ignore", divide="ignore")  # NaN frames are reported
    def __call__(self, frames: np.ndarray) -> dict:
        """Compress ``(B, Qx, Qy)`` frames (see :func:`~py4dstem_compressed.compress_frames`)."""
        frames = np.asarray(frames)
        num = frames.shape[0]
        stats, cropped = frame_statistics(
            frames,
            self.amplitude,
            self.use_numba,
            (self.crop.rows, self.crop.cols),
            self.bf_in_crop,
            self.edge_weights,
        )
        bf_sum, bf_extra = stats[:, BF_SUM], stats[:, BF_EXTRA]
        edge_sum, edge_extra = stats[:, EDGE_SUM], stats[:, EDGE_EXTRA]
        # DF = not BF - EDGE: neither side holds the bright field, so nothing cancels
        df_sum = stats[:, NOT_BF_SUM] - edge_sum
        df_extra = stats[:, NOT_BF_EXTRA] - edge_extra  # sum sqrt(I) or sum I^2 over DF

        coefficients = np.empty((num, self.num_masks), np.float64)
        if self.amplitude:  # ||sqrt(I)_R||^2 = sum_R I
            norms_sq = np.stack([bf_sum, df_sum], 1)
        else:  # sum_R I^2
            norms_sq = np.stack([bf_extra, df_extra], 1)
        for group in self.dense_groups:
            group.apply(cropped, coefficients, norms_sq[:, 0 if group.region == "bf" else 1])
        # constant masks live only in regions without dense masks: float64 sums, no residual
        for n, value in self.region_df:
            coefficients[:, n] = value * (df_extra if self.amplitude else df_sum)
            norms_sq[:, 1] -= _constant_captured(coefficients[:, n], value, self.num_df_pixels)
        if self.segment_crop is not None:
            self._segment_sums(cropped, coefficients, norms_sq)
        perpendicular = np.sqrt(np.maximum(norms_sq, 0))
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

    def _segment_sums(self, cropped, coefficients, norms_sq) -> None:
        """Coefficients of the constant masks (segment sums) and their captured energy."""
        crop = self.segment_crop.take(cropped)[:, self.segment_order]
        sums = np.add.reduceat(crop, self.segment_starts, axis=1, dtype=np.float64)
        values = sums * self.segment_value
        coefficients[:, self.segment_index] = values
        captured = _constant_captured(values, self.segment_value, self.segment_size)
        in_bf = self.segment_index < self.num_bf
        norms_sq[:, 0] -= captured[:, in_bf].sum(1)
        norms_sq[:, 1] -= captured[:, ~in_bf].sum(1)


def _constant_captured(coefficient, value, size):
    """``||v||^2 - ||v - c m||^2`` for a constant mask ``m`` (``value`` on ``size`` pixels).

    Equals ``c**2 (2 - value**2 size)``: ``c**2`` for an exactly normalised mask, and for
    the float32-rounded stored mask exactly what removing its component takes away, so
    that the perpendicular norm is that of the explicit residual ``v - M^T c``.
    """
    return coefficient**2 * (2.0 - np.square(value) * size)


class _DenseGroup:
    """The dense masks of one region, applied as one float32 product over their bounding box.

    The perpendicular norm of the region is computed from the explicit residual
    ``x - M^T c`` over the box, not as ``||x||^2 - ||c||^2``: for a basis that captures
    nearly all of a region's signal, the difference of the two large float32-rounded
    numbers would lose most of the small remainder's digits, while the residual is
    accurate to float32 rounding of ``x`` and insensitive (to first order) to rounding
    in ``c``.

    Parameters
    ----------
    region : {"bf", "df"}
        The region the masks live in.
    index : numpy.ndarray
        Indices of the masks in the basis.
    crop : _Crop
        Bounding box of their support.
    matrix : numpy.ndarray
        ``(h*w, K)`` float32 masks over the box.
    geometry : DetectorGeometry
        The detector regions.
    """

    def __init__(self, region, index, crop, matrix, geometry) -> None:
        self.region = region
        self.index = index
        self.crop = crop
        self.matrix = matrix
        region_map = geometry.bf if region == "bf" else geometry.df
        in_box = region_map[crop.rows, crop.cols]
        #: 1 on the region's pixels of the box; None when every pixel of the box is in it
        self.weights = None if in_box.all() else in_box.ravel().astype(np.float32)
        #: whether region pixels lie outside the box (their energy is then added separately)
        self.region_outside = int(in_box.sum()) < int(region_map.sum())

    def apply(self, cropped, coefficients, norm_sq) -> None:
        """Set the coefficients and replace ``norm_sq``'s share of the box by the residual's.

        ``norm_sq`` is the ``(B,)`` float64 squared norm of the region, updated in place.
        """
        x = self.crop.take(cropped)
        c = x @ self.matrix
        coefficients[:, self.index] = c
        residual_sq = self.residual_sq(x, c)
        if self.region_outside:  # keep the region's energy outside the box
            inside = x * self.weights if self.weights is not None else x
            outside = norm_sq - np.square(inside, dtype=np.float64).sum(1)
            norm_sq[:] = outside + residual_sq
        else:
            norm_sq[:] = residual_sq

    def residual_sq(self, x, c) -> np.ndarray:
        """``(B,)`` squared norms of ``x - M^T c`` on the region's pixels of the box.

        Computed block by block in one small float32 buffer: a fresh ``(B, h*w)``
        temporary would cost more (in page faults) than the product itself.
        """
        num = len(x)
        out = np.empty(num, np.float64)
        buffer = np.empty((min(num, RESIDUAL_BLOCK), x.shape[1]), np.float32)
        for start in range(0, num, RESIDUAL_BLOCK):
            stop = min(start + RESIDUAL_BLOCK, num)
            block = buffer[: stop - start]
            np.matmul(c[start:stop], self.matrix.T, out=block)
            np.subtract(x[start:stop], block, out=block)
            if self.weights is not None:
                block *= self.weights
            out[start:stop] = np.einsum("ij,ij->i", block, block)
        return out
