"""Tests of the compressed data step (reconstruction.projection) against naive NumPy."""

from __future__ import annotations

import numpy as np
import pytest

from py4dstem_compressed.reconstruction.operator import CompressedOperator, mask_coefficients
from py4dstem_compressed.reconstruction.options import DataStepOptions, ProjectionWeights
from py4dstem_compressed.reconstruction.projection import (
    descan_ramp,
    fourier_difference,
    fourier_projection,
    probe_aperture_step,
    project_values,
)

try:
    import cupy as cp

    cp.cuda.runtime.getDeviceCount()
except Exception:
    cp = None

DEVICES = [
    "cpu",
    pytest.param("gpu", marks=[pytest.mark.gpu, pytest.mark.skipif(cp is None, reason="no GPU")]),
]
SHAPE = (12, 12)
CENTER = (6, 6)


def _regions(shape=SHAPE, center=CENTER, bf_radius=3.0, df_radius=5.0):
    qx, qy = np.indices(shape)
    r = np.hypot(qx - center[0], qy - center[1])
    bf = r <= bf_radius
    df = (r > bf_radius) & (r <= df_radius)
    return bf, df


def _random_masks(region, num, rng):
    """``num`` random orthonormal masks supported on ``region`` (QR)."""
    pixels = np.flatnonzero(region)
    q, _ = np.linalg.qr(rng.normal(size=(pixels.size, num)))
    masks = np.zeros((num, region.size))
    masks[:, pixels] = q.T
    return masks.reshape((num, *region.shape))


def _operator(rng, num_bf=6, num_df=2, mode="amplitude", origin=(0, 0), xp=np):
    bf, df = _regions()
    masks = np.concatenate([_random_masks(bf, num_bf, rng), _random_masks(df, num_df, rng)])
    op = CompressedOperator.from_detector(masks, bf, df, origin, mode=mode, xp=xp)
    return op, masks, bf, df


def _naive_projection(v, c, masks, regions, edge, p, w):
    """Pixel-by-pixel reference of steps 1-3 for a single pattern (float64)."""
    v = v.astype(np.float64)
    k, npix = masks.shape
    chat = np.array([sum(masks[n, i] * v[i] for i in range(npix)) for n in range(k)])
    out = v.copy()
    for n in range(k):
        out += w.coefficient * (c[n] - chat[n]) * masks[n]
    in_span = np.zeros(npix)
    for n in range(k):
        in_span += sum(masks[n] * out) * masks[n]
    for r, region in enumerate(regions):
        perp = (out - in_span) * region
        norm = np.sqrt(np.sum(perp**2))
        if p is not None and norm > 0:
            out += w.perpendicular * (p[r] / norm - 1.0) * perp
    out[edge] *= 1.0 - w.edge
    return out


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0), (0.7, 0.5, 0.3), (1.0, 0.0, 0.0)])
def test_project_values_matches_naive_reference(weights):
    rng = np.random.default_rng(0)
    op, masks, bf, df = _operator(rng)
    w = ProjectionWeights(*weights)
    v = rng.random((3, bf.size)).astype(np.float32)
    c = rng.random((3, masks.shape[0])).astype(np.float32)
    p = rng.random((3, 2)).astype(np.float32)
    # regions not energy-matched take the additive step (signed DF: see test_signed_region_step)
    options = DataStepOptions(weights=w, match_energy=False)
    projected, residual = project_values(v, c, op, p, options)
    flat = masks.reshape(masks.shape[0], -1)
    edge = ~(bf | df).ravel()
    regions = [bf.ravel(), df.ravel()]
    for j in range(3):
        ref = _naive_projection(v[j], c[j], flat, regions, edge, p[j], w)
        np.testing.assert_allclose(projected[j], ref, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(residual[j], c[j] - flat @ v[j], rtol=1e-4, atol=1e-5)


def test_full_projection_reaches_the_measured_data():
    """With all weights 1 the result has the measured coefficients, norms and no EDGE."""
    rng = np.random.default_rng(1)
    op, masks, bf, df = _operator(rng)
    v = rng.random((4, bf.size)).astype(np.float32)
    c = rng.random((4, masks.shape[0])).astype(np.float32)
    p = rng.random((4, 2)).astype(np.float32)
    additive = DataStepOptions(weights=ProjectionWeights(perpendicular=1.0), match_energy=False)
    projected, _ = project_values(v, c, op, p, additive)
    np.testing.assert_allclose(mask_coefficients(projected, op.masks), c, atol=1e-5)
    orth = projected - mask_coefficients(projected, op.masks) @ op.masks
    norms = np.sqrt((orth**2) @ op.region_maps.T)
    np.testing.assert_allclose(norms, p, rtol=1e-4)
    assert np.all(projected[:, ~(bf | df).ravel()] == 0)
    # and projecting again changes nothing (idempotent)
    again, residual = project_values(projected, c, op, p, additive)
    np.testing.assert_allclose(again, projected, atol=1e-5)
    np.testing.assert_allclose(residual, 0, atol=1e-5)


def test_complete_basis_is_plain_amplitude_replacement():
    """Identity masks: the step is py4DSTEM's ``amplitudes * exp(1j * angle(F))``."""
    rng = np.random.default_rng(2)
    shape = (8, 8)
    eye = np.eye(64, dtype=np.float32).reshape(64, *shape)
    bf = np.ones(shape, bool)
    op = CompressedOperator.from_detector(eye, bf, ~bf, (0, 0))
    fourier = (rng.normal(size=(5, *shape)) + 1j * rng.normal(size=(5, *shape))).astype(
        np.complex64
    )
    amplitudes = rng.random((5, *shape)).astype(np.float32)
    coefficients = amplitudes.reshape(5, -1)
    modified, error = fourier_projection(fourier, coefficients, op, np.zeros((5, 2)))
    reference = amplitudes * np.exp(1j * np.angle(fourier))
    np.testing.assert_allclose(modified, reference, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(error, np.sum((amplitudes - np.abs(fourier)) ** 2), rtol=1e-5)


@pytest.mark.parametrize("modes", [None, 3])
def test_fourier_difference_is_the_modified_minus_the_predicted_far_field(modes):
    """The gradient step's shortcut equals fourier_projection - prediction, zeros included."""
    rng = np.random.default_rng(11)
    op, masks, _bf, _df = _operator(rng, origin=CENTER)
    shape = (4,) + (() if modes is None else (modes,)) + SHAPE
    fourier = (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)
    fourier[..., 0, :3] = 0  # pixels with no predicted intensity (every mode)
    c = rng.random((4, masks.shape[0])).astype(np.float32)
    norms = rng.random((4, 2)).astype(np.float32)
    modified, error = fourier_projection(fourier, c, op, norms)
    difference, error_too = fourier_difference(fourier, c, op, norms)
    scale = np.abs(modified).max()
    np.testing.assert_allclose(difference, modified - fourier, rtol=0, atol=1e-6 * scale)
    if modes is None:  # the phase-0 convention gives the projected amplitude there
        assert np.abs(difference[..., 0, :3]).max() > 0
    assert error_too == error


def test_intensity_mode_complete_basis_gives_measured_amplitude():
    rng = np.random.default_rng(3)
    shape = (6, 6)
    eye = np.eye(36, dtype=np.float32).reshape(36, *shape)
    bf = np.ones(shape, bool)
    op = CompressedOperator.from_detector(eye, bf, ~bf, (0, 0), mode="intensity")
    fourier = (rng.normal(size=(2, *shape)) + 1j * rng.normal(size=(2, *shape))).astype(
        np.complex64
    )
    intensity = rng.random((2, *shape)).astype(np.float32)
    modified, error = fourier_projection(fourier, intensity.reshape(2, -1), op)
    np.testing.assert_allclose(np.abs(modified), np.sqrt(intensity), rtol=2e-4, atol=1e-6)
    np.testing.assert_allclose(np.angle(modified), np.angle(fourier), atol=1e-5)
    np.testing.assert_allclose(error, np.sum((intensity - np.abs(fourier) ** 2) ** 2), rtol=1e-4)


def test_intensity_step_is_a_descent_direction_of_the_coefficient_loss():
    """Small residual: the step is the Gauss-Newton-preconditioned negative gradient."""
    rng = np.random.default_rng(4)
    op, masks, bf, _df = _operator(rng, mode="intensity")
    psi = (rng.normal(size=(1, *bf.shape)) + 1j * rng.normal(size=(1, *bf.shape))).astype(
        np.complex128
    )
    flat = masks.reshape(masks.shape[0], -1)
    c = (np.abs(psi.reshape(1, -1)) ** 2 @ flat.T) * 1.01
    modified, _ = fourier_projection(psi.astype(np.complex64), c.astype(np.float32), op)
    step = modified.astype(np.complex128) - psi
    resid = (np.abs(psi.reshape(1, -1)) ** 2) @ flat.T - c
    gradient = 2 * (resid @ flat).reshape(psi.shape) * psi
    assert np.sum(np.real(np.conj(gradient) * step)) < 0


def test_edge_weight_one_zeroes_edge_pixels_of_the_prediction():
    rng = np.random.default_rng(5)
    op, masks, _bf, _df = _operator(rng, origin=CENTER)
    fourier = (rng.normal(size=(3, *SHAPE)) + 1j * rng.normal(size=(3, *SHAPE))).astype(
        np.complex64
    )
    c = rng.random((3, masks.shape[0])).astype(np.float32)
    edge = op.edge_map.reshape(SHAPE) > 0
    modified, _ = fourier_projection(
        fourier, c, op, None, DataStepOptions(weights=ProjectionWeights(edge=1.0))
    )
    assert np.all(modified[:, edge] == 0)
    untouched, _ = fourier_projection(
        fourier, c, op, None, DataStepOptions(weights=ProjectionWeights(edge=0.0))
    )
    np.testing.assert_allclose(untouched[:, edge], fourier[:, edge], rtol=1e-5)


def test_operator_rolls_masks_into_corner_frame_and_stays_orthonormal():
    rng = np.random.default_rng(6)
    op, masks, _bf, _df = _operator(rng, origin=CENTER)
    rolled = op.masks.reshape(-1, *SHAPE)
    np.testing.assert_array_equal(
        rolled[0], np.roll(masks[0].astype(np.float32), (-6, -6), axis=(0, 1))
    )
    np.testing.assert_allclose(op.masks @ op.masks.T, np.eye(op.num_masks), atol=1e-5)
    # BF region contains the corner pixel (the undiffracted beam) after the roll
    assert op.region_maps[0].reshape(SHAPE)[0, 0] == 1


def test_descan_ramp_shifts_the_far_field():
    rng = np.random.default_rng(7)
    wave = (rng.normal(size=(1, 16, 16)) + 1j * rng.normal(size=(1, 16, 16))).astype(np.complex64)
    ramp = descan_ramp(np.array([[3.0, -2.0]]), (16, 16))
    shifted = np.fft.fft2(wave * ramp)
    np.testing.assert_allclose(
        shifted, np.roll(np.fft.fft2(wave), (3, -2), axis=(1, 2)), rtol=1e-4, atol=1e-3
    )
    np.testing.assert_allclose(np.abs(ramp), 1, rtol=1e-6)


def test_probe_aperture_step_damps_only_outside():
    rng = np.random.default_rng(8)
    probe = (rng.normal(size=(8, 8)) + 1j * rng.normal(size=(8, 8))).astype(np.complex64)
    outside = np.zeros((8, 8), bool)
    outside[3:5, :] = True
    new = probe_aperture_step(probe, outside, 1.0)
    np.testing.assert_allclose(np.fft.fft2(new)[outside], 0, atol=1e-5)
    np.testing.assert_allclose(np.fft.fft2(new)[~outside], np.fft.fft2(probe)[~outside], atol=1e-4)
    assert probe_aperture_step(probe, outside, 0.0) is probe


def test_weights_validation_and_names():
    assert ProjectionWeights.from_mapping({"edge": 0.5}, perpendicular_weight=0.0) == (
        ProjectionWeights(edge=0.5, perpendicular=0.0)
    )
    with pytest.raises(ValueError, match="unknown weight 'tv_weigth'"):
        ProjectionWeights.from_mapping({"tv_weigth": 1.0})
    with pytest.raises(ValueError, match="edge_weight must lie in"):
        ProjectionWeights(edge=2.0)
    with pytest.raises(ValueError, match="coefficient_weight"):
        ProjectionWeights(coefficient=0.0)
    assert set(ProjectionWeights().as_dict()) == set(ProjectionWeights.names())


@pytest.mark.parametrize("device", DEVICES)
def test_device_agnostic(device):
    rng = np.random.default_rng(9)
    xp = cp if device == "gpu" else np
    op, masks, _bf, _df = _operator(rng, xp=xp)
    fourier = xp.asarray(
        (rng.normal(size=(2, *SHAPE)) + 1j * rng.normal(size=(2, *SHAPE))).astype(np.complex64)
    )
    c = xp.asarray(rng.random((2, masks.shape[0])).astype(np.float32))
    modified, error = fourier_projection(fourier, c, op, xp.ones((2, 2), dtype=xp.float32))
    assert type(modified) is type(fourier)
    assert float(error) > 0


def test_masks_spanning_two_regions_are_rejected():
    bf, df = _regions()
    mask = (bf | df).astype(float)
    mask /= np.linalg.norm(mask)
    with pytest.raises(ValueError, match="inside one region"):
        CompressedOperator.from_detector(mask[None], bf, df, (0, 0))


def test_scalable_masks_are_matched_by_rescaling_the_prediction():
    """A uniform DF mask and BF bins: coefficients matched, the predicted shape kept."""
    rng = np.random.default_rng(5)
    bf, df = _regions()
    bins = np.zeros((2, *SHAPE))
    left = bf & (np.indices(SHAPE)[1] < CENTER[1])
    bins[0][left], bins[1][bf & ~left] = 1.0, 1.0
    bins /= np.sqrt(bins.sum(axis=(1, 2)))[:, None, None]
    uniform_df = df / np.sqrt(df.sum())
    masks = np.concatenate([bins, uniform_df[None]])
    op = CompressedOperator.from_detector(masks, bf, df, (0, 0))
    np.testing.assert_array_equal(np.asarray(op.scalable_index), [0, 1, 2])
    v = rng.random((3, bf.size)).astype(np.float32) + 0.1
    c = rng.random((3, 3)).astype(np.float32) + 0.5
    projected, _ = project_values(v, c, op)
    np.testing.assert_allclose(mask_coefficients(projected, op.masks), c, rtol=1e-5)
    for support in np.asarray(op.scalable_support).astype(bool):
        ratio = projected[:, support] / v[:, support]  # one factor per pattern and mask
        np.testing.assert_allclose(ratio, ratio[:, :1].repeat(support.sum(), 1), rtol=1e-5)
    additive, _ = project_values(v, c, op, options=DataStepOptions(scale_nonnegative=False))
    np.testing.assert_allclose(mask_coefficients(additive, op.masks), c, rtol=1e-5)
    assert not np.allclose(additive, projected)
    # signed masks are never rescaled
    signed, _, _, _ = _operator(rng)
    assert signed.scalable_index is None


def test_shape_matching_meets_both_coefficient_and_region_energy():
    """One DF mask: a too-peaked prediction is reshaped until ``c`` and ``c^2 + p^2`` both hold."""
    rng = np.random.default_rng(6)
    bf, df = _regions(shape=(16, 16), center=(8, 8), bf_radius=3.0, df_radius=8.0)
    masks = np.stack([bf / np.sqrt(bf.sum()), df / np.sqrt(df.sum())])
    op = CompressedOperator.from_detector(masks, bf, df, (0, 0))
    truth = rng.gamma(2.0, 1.0, (4, bf.size)) * (bf | df).ravel()
    c = truth @ np.asarray(op.masks, np.float64).T
    energy = truth**2 @ np.asarray(op.region_maps, np.float64).T
    p = np.sqrt(energy - c**2)
    v = (rng.gamma(0.3, 1.0, (4, bf.size)) * (bf | df).ravel()).astype(np.float32)
    plain, _ = project_values(v, c, op, p, DataStepOptions(match_energy=False))
    assert np.all((plain**2 @ op.region_maps.T)[:, 1] > 1.1 * energy[:, 1])  # too peaked
    for _ in range(4):  # one limited Newton step for the exponent per call
        v, _ = project_values(v, c, op, p, DataStepOptions(match_energy=False, match_shape=True))
        v = np.maximum(v, 0).astype(np.float32)
        # every step meets the coefficients exactly
        np.testing.assert_allclose(mask_coefficients(v, op.masks), c, rtol=1e-4)
    np.testing.assert_allclose(v**2 @ op.region_maps.T, energy, rtol=1e-3)
    # the reshaping keeps zeros and the order of the pixels
    assert np.all(v[plain == 0] == 0)
    order = np.argsort(plain[0, df.ravel()], kind="stable")
    assert np.all(np.diff(v[0, df.ravel()][order]) >= -1e-6)
    # regions that are energy-matched, data without norms and single-pixel masks: no-op
    peaked = plain.astype(np.float32)
    once, _ = project_values(peaked, c, op, p, DataStepOptions(match_energy=True, match_shape=True))
    np.testing.assert_array_equal(
        once, project_values(peaked, c, op, p, DataStepOptions(match_energy=True))[0]
    )
    no_norms, _ = project_values(peaked, c, op, None, DataStepOptions(match_shape=True))
    np.testing.assert_array_equal(no_norms, project_values(peaked, c, op, None)[0])
    eye = np.eye(16 * 16, dtype=np.float32).reshape(-1, 16, 16)
    everything = np.ones_like(bf)
    pixels = CompressedOperator.from_detector(eye, everything, ~everything, (0, 0))
    assert pixels.energy_regions is not None and pixels.shape_regions == (False, False)


def test_operator_in_the_dtype_of_the_values():
    """The data step multiplies arrays of one dtype (a float64 x float32 product does not run
    on BLAS): the cast operator holds the same numbers, is cached, and gives the same step."""
    rng = np.random.default_rng(7)
    op = _operator(rng, num_bf=6, num_df=2)[0]
    wide = op.in_dtype(np.float64)
    assert op.in_dtype(np.float32) is op
    assert op.in_dtype(np.float64) is wide
    for name in CompressedOperator.FLOAT_ARRAYS:
        narrow, cast = getattr(op, name), getattr(wide, name)
        if narrow is not None:
            assert cast.dtype == np.float64
            np.testing.assert_array_equal(cast, narrow.astype(np.float64))
    values = rng.random((5, op.masks.shape[1]))
    coefficients = (values @ op.masks.T.astype(np.float64) * 1.1).astype(np.float32)
    norms = rng.random((5, 2)).astype(np.float32)
    slow, _ = project_values(values, coefficients, op, norms)
    fast, _ = project_values(values, coefficients, wide, norms)
    assert fast.dtype == np.float64
    np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-12 * np.abs(slow).max())
