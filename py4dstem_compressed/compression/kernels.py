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

The full-frame pass is :func:`~.frame_statistics.frame_statistics`. A
:class:`~.descan_kernel.DescanKernel` applies kernels with the masks moved with the disk.
"""

from __future__ import annotations

import numpy as np

from py4dstem_compressed.bases.basis import Basis
from py4dstem_compressed.compression.frame_statistics import (
    BF_EXTRA,
    BF_SUM,
    EDGE_EXTRA,
    EDGE_SUM,
    MOMENT_X,
    MOMENT_Y,
    NEGATIVE,
    NOT_BF_EXTRA,
    NOT_BF_SUM,
    RAW,
    RESIDUAL_BLOCK,
    TOTAL,
    frame_statistics,
)
from py4dstem_compressed.core.backend import check_mode

__all__ = ["CompressionKernel"]

#: A mask counts as constant on its support when its values differ by less than this
#: fraction of their mean (then it is applied as a segment sum, not a matrix product)
CONSTANT_TOLERANCE = 1e-5
#: Up to this many constant masks are cheaper as columns of the dense product than as
#: segment sums (a gather per mask costs more than a few extra matrix columns)
MAX_CONSTANT_AS_DENSE = 8


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
        """Sort the masks into segment sums, region sums and dense products; crop for them."""
        self.basis = basis
        self.mode = check_mode(mode)
        self.amplitude = mode == "amplitude"
        self.use_numba = use_numba
        g = basis.geometry
        self.num_masks = basis.num_masks
        self.num_bf = basis.num_bf
        self.bf_crop = _Crop(g.bf)
        self.edge_weights = g.edge.astype(np.float32) if g.edge.any() else None
        self.num_df_pixels = int(g.df.sum())
        constant, dense, region_df = self._classify_masks(basis.masks_flat, g.df.ravel())
        self.region_df = region_df
        self._plan_segment_sums(constant, g)
        self._plan_dense_products(dense, basis.masks_flat, g)
        self._plan_union_crop(g)
        self.plan = {
            "dense": {group.region: len(group.index) for group in self.dense_groups},
            "segment_sums": len(constant),
            "df_region_sum": len(region_df),
        }

    def _classify_masks(self, masks: np.ndarray, df_region: np.ndarray):
        """Split mask indices into constant-on-disjoint-support, dense and whole-DF-region.

        Returns ``(constant, dense, region_df)``: ``(n, value, support)`` triples, sorted
        indices, and ``(n, value)`` pairs.
        """
        constant, dense, region_df = [], [], []
        covered = np.zeros(masks.shape[1], bool)
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
        if len(constant) <= MAX_CONSTANT_AS_DENSE:
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
        return constant, dense, region_df

    def _plan_segment_sums(self, constant, g) -> None:
        """Pixels of the constant masks, sorted by mask, within their bounding box."""
        self.segment_index = np.array([n for n, _, _ in constant], dtype=np.intp)
        self.segment_value = np.array([v for _, v, _ in constant], dtype=np.float64)
        self.segment_crop = None
        if not constant:
            return
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

    def _plan_dense_products(self, dense, masks: np.ndarray, g) -> None:
        """One float32 matrix per region over the bounding box of its dense masks."""
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

    def _plan_union_crop(self, g) -> None:
        """The one crop the fused pass copies: the union of the BF, dense and segment crops."""
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

    @np.errstate(invalid="ignore", over="ignore", divide="ignore")  # NaN frames are reported
    def __call__(self, frames: np.ndarray) -> dict:
        """Compress a batch of frames.

        Parameters
        ----------
        frames : numpy.ndarray
            ``(B, Qx, Qy)`` intensities [counts]. In amplitude mode negative values are
            clipped to 0; NaN/inf frames get a non-finite ``total_intensity``.

        Returns
        -------
        dict
            ``coefficients (B, K)``, ``perpendicular_norms (B, 2)``, ``edge_intensity (B,)``,
            ``total_intensity (B,)``, ``center_of_mass (B, 2)`` (float32 NumPy arrays) and
            ``num_negative`` (number of clipped pixels).
        """
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
