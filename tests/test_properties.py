"""Property tests (hypothesis) of the bases and of the data step, on small random cases."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import py4dstem_compressed as pc
from py4dstem_compressed.reconstruction.operator import CompressedOperator, mask_coefficients
from py4dstem_compressed.reconstruction.options import DataStepOptions, ProjectionWeights
from py4dstem_compressed.reconstruction.projection import (
    project_values,
)

FAST = settings(max_examples=25, deadline=None)


@st.composite
def geometries(draw):
    """A detector of 16-40 px with a BF disk somewhere near its centre."""
    size = draw(st.integers(16, 40))
    radius = draw(st.floats(3.0, size / 4))
    offset = draw(st.tuples(st.floats(-2.0, 2.0), st.floats(-2.0, 2.0)))
    center = (size / 2 + offset[0], size / 2 + offset[1])
    df_radius = draw(st.one_of(st.none(), st.floats(radius + 2.0, size / 2)))
    return pc.DetectorGeometry((size, size), center, radius, df_radius)


def _check_basis(basis: pc.Basis) -> None:
    masks = basis.masks_flat.astype(np.float64)
    gram = masks @ masks.T
    assert np.abs(gram - np.eye(basis.num_masks)).max() < 1e-5  # orthonormal
    g = basis.geometry
    assert not np.any(basis.bf_masks[:, ~g.bf])  # BF masks live in the BF disk
    assert not np.any(basis.df_masks[:, ~g.df])  # DF masks in the DF region


@FAST
@given(geometries(), st.integers(1, 10), st.integers(0, 4))
def test_zernike_basis_is_orthonormal_in_its_regions(geometry, num_bf, num_df):
    _check_basis(pc.zernike_basis(geometry, num_bf, num_df))


@FAST
@given(geometries(), st.integers(1, 4), st.one_of(st.none(), st.integers(3, 8)))
def test_binning_basis_is_orthonormal_in_its_regions(geometry, bf_bin, df_bin):
    _check_basis(pc.binning_basis(geometry, bf_bin, df_bin))


@FAST
@given(geometries(), st.integers(0, 2**32 - 1))
def test_pattern_in_the_span_has_zero_basis_angle(geometry, seed):
    basis = pc.zernike_basis(geometry, 10, 3)
    weights = np.random.default_rng(seed).normal(size=basis.num_masks)
    pattern = np.tensordot(weights, basis.masks.astype(np.float64), axes=1)
    angles = pc.basis_angles(pattern[None, None], basis, mode="intensity")
    assert angles.bf.max() < 1e-3 and angles.df.max() < 1e-3  # [rad], float32 rounding


def _random_operator(rng, size, num_bf, num_df, complete=False):
    """Random orthonormal masks on a BF disk and a DF annulus of a ``size`` x ``size`` grid."""
    qx, qy = np.indices((size, size))
    r = np.hypot(qx - size / 2, qy - size / 2)
    bf, df = r <= size / 4, (r > size / 4) & (r <= size / 2)
    masks = []
    for region, count in ((bf, num_bf), (df, num_df)):
        pixels = np.flatnonzero(region)
        count = pixels.size if complete else count
        q, _ = np.linalg.qr(rng.normal(size=(pixels.size, count)))
        block = np.zeros((count, size * size))
        block[:, pixels] = q.T
        masks.append(block)
    masks = np.concatenate(masks).astype(np.float32)
    op = CompressedOperator.from_detector(masks.reshape(-1, size, size), bf, df, (0, 0))
    return op, masks, bf | df


@FAST
@given(st.integers(0, 2**32 - 1), st.integers(6, 10))
def test_complete_basis_step_returns_the_measured_amplitudes(seed, size):
    rng = np.random.default_rng(seed)
    op, masks, measured = _random_operator(rng, size, 0, 0, complete=True)
    amplitudes = rng.random((3, size * size)).astype(np.float32) * measured.ravel()
    coefficients = amplitudes @ masks.T
    predicted = rng.random((3, size * size)).astype(np.float32)
    projected, _ = project_values(
        predicted, coefficients, op, np.zeros((3, 2), np.float32), DataStepOptions()
    )
    np.testing.assert_allclose(projected, amplitudes, atol=1e-5)


@FAST
@given(
    st.integers(0, 2**32 - 1),
    st.integers(1, 8),
    st.integers(1, 4),
    st.floats(0.0, 1.0),
)
def test_coefficients_are_met_after_the_step(seed, num_bf, num_df, perpendicular_weight):
    rng = np.random.default_rng(seed)
    op, masks, _ = _random_operator(rng, 12, num_bf, num_df)
    predicted = rng.random((4, 144)).astype(np.float32)
    coefficients = rng.normal(size=(4, masks.shape[0])).astype(np.float32)
    norms = rng.random((4, 2)).astype(np.float32)
    weights = ProjectionWeights(perpendicular=perpendicular_weight)
    # the additive step (regions not energy-matched) meets the coefficients exactly
    additive = DataStepOptions(weights=weights, match_energy=False)
    projected, _ = project_values(predicted, coefficients, op, norms, additive)
    np.testing.assert_allclose(mask_coefficients(projected, op.masks), coefficients, atol=1e-4)
    # by default the dark field is energy-matched: its measured energy ||c||^2 + p^2 is met
    projected, _ = project_values(
        predicted, coefficients, op, norms, DataStepOptions(weights=weights)
    )
    df_masks = np.asarray(op.mask_regions)[1] > 0
    energy = (coefficients[:, df_masks] ** 2).sum(1) + norms[:, 1] ** 2
    df_energy = (projected**2) @ np.asarray(op.region_maps)[1]
    np.testing.assert_allclose(df_energy, energy, rtol=1e-4)
