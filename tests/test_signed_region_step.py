"""The data step of a region of signed masks (several DF masks): coefficients and energy.

:func:`match_signed_region` multiplies the prediction by ``exp(M^T lam)`` (one Newton step
of the I-projection towards the measured coefficient direction) and rescales the region to
its measured energy ``||c||^2 + p^2``.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from test_ptychography import COMMON, _correlation, _run, _simulate

import py4dstem_compressed as pc
from py4dstem_compressed.reconstruction.operator import CompressedOperator
from py4dstem_compressed.reconstruction.options import DataStepOptions
from py4dstem_compressed.reconstruction.projection import project_values
from py4dstem_compressed.reconstruction.region_matching import match_signed_region

SHAPE = (16, 16)


def _regions():
    qx, qy = np.indices(SHAPE)
    r = np.hypot(qx - 8, qy - 8)
    return r <= 3.0, (r > 3.0) & (r <= 7.5)


def _masks(region, num, rng):
    """``(num, P)`` orthonormal masks on ``region``: the uniform mask, then random signed ones."""
    pixels = np.flatnonzero(region.ravel())
    start = np.concatenate([np.ones((pixels.size, 1)), rng.normal(size=(pixels.size, num - 1))], 1)
    q, _ = np.linalg.qr(start)
    q *= np.sign(q[0, 0])
    masks = np.zeros((num, region.size))
    masks[:, pixels] = q.T
    return masks


def _spotty(region, rng, spots=5):
    """A non-negative dark-field amplitude: a few spots, (nearly) zero elsewhere."""
    qx, qy = np.indices(SHAPE)
    a = np.zeros(SHAPE)
    inside = np.argwhere(region)
    for x, y in inside[rng.choice(len(inside), spots, replace=False)]:
        a += rng.uniform(0.5, 2) * np.exp(-((qx - x) ** 2 + (qy - y) ** 2) / 1.5)
    return (a * region).ravel()


def _data(pattern, masks):
    """Coefficients and energy of ``pattern`` as the compressed data store them."""
    return masks @ pattern, np.sum(pattern**2)


def test_a_pattern_that_meets_the_data_is_left_unchanged():
    rng = np.random.default_rng(0)
    _, df = _regions()
    for num in (1, 3, 8):
        masks = _masks(df, num, rng)
        truth = _spotty(df, rng)
        c, energy = _data(truth, masks)
        out = match_signed_region(truth[None], c[None], np.array([energy]), df.ravel(), masks)
        np.testing.assert_allclose(out[0], truth, atol=1e-9 * truth.max())


def test_energy_is_exact_and_repeated_steps_reach_the_data_where_they_allow():
    """From ``truth * exp(M^T lam0)`` (the data allow a return) the steps go back to truth."""
    rng = np.random.default_rng(1)
    _, df = _regions()
    masks = _masks(df, 6, rng)
    truth = _spotty(df, rng)
    c, energy = _data(truth, masks)
    wrong = truth * np.exp(rng.normal(scale=0.3, size=6) / np.abs(masks).max() / 6 @ masks)
    values = wrong[None]
    errors = [np.linalg.norm(masks @ wrong - c) / np.linalg.norm(c)]
    for _ in range(60):
        values = match_signed_region(values, c[None], np.array([energy]), df.ravel(), masks)
        # the energy is met exactly after every step
        np.testing.assert_allclose(np.sum(values**2), energy, rtol=1e-10)
        errors.append(np.linalg.norm(masks @ values[0] - c) / np.linalg.norm(c))
    assert errors[0] > 1e-2  # the start was really off
    assert errors[-1] < 1e-3 * errors[0]
    np.testing.assert_allclose(values[0], truth, atol=1e-3 * truth.max())


def test_one_uniform_mask_is_the_energy_rescaling_of_a_single_dark_field_value():
    rng = np.random.default_rng(2)
    _, df = _regions()
    masks = _masks(df, 1, rng)
    v = rng.random(df.size) * df.ravel()
    c, energy = np.array([3.0]), 7.0
    out = match_signed_region(v[None], c[None], np.array([energy]), df.ravel(), masks)
    np.testing.assert_allclose(out[0], v * np.sqrt(energy / np.sum(v**2)), rtol=1e-12)


def test_result_is_non_negative_keeps_zeros_and_leaves_other_pixels():
    rng = np.random.default_rng(3)
    _, df = _regions()
    masks = _masks(df, 5, rng)
    v = rng.normal(size=(4, df.size))  # negative values too: the region is clipped first
    c = rng.normal(size=(4, 5))
    energy = rng.uniform(1, 2, 4)
    out = match_signed_region(v, c, energy, df.ravel(), masks)
    inside = df.ravel()
    assert (out[:, inside] >= 0).all()
    assert (out[:, inside][v[:, inside] <= 0] == 0).all()
    np.testing.assert_array_equal(out[:, ~inside], v[:, ~inside])


@pytest.mark.parametrize("unit", [3.1, 1e-3, 1e4])
def test_the_step_does_not_depend_on_the_intensity_unit(unit):
    """Intensities x u: amplitudes, coefficients x sqrt(u), energy x u; the step scales along."""
    rng = np.random.default_rng(4)
    _, df = _regions()
    masks = _masks(df, 6, rng)
    v = rng.random((3, df.size)) * df.ravel()
    c = np.stack([masks @ _spotty(df, rng) for _ in range(3)])
    energy = rng.uniform(5, 10, 3)
    out = match_signed_region(v, c, energy, df.ravel(), masks)
    s = np.sqrt(unit)
    scaled = match_signed_region(v * s, c * s, energy * unit, df.ravel(), masks)
    np.testing.assert_allclose(scaled, out * s, rtol=1e-9, atol=1e-12 * s)


def test_project_values_takes_it_for_a_signed_dark_field_by_default():
    rng = np.random.default_rng(5)
    bf, df = _regions()
    masks = np.concatenate([_masks(bf, 4, rng), _masks(df, 5, rng)]).astype(np.float32)
    op = CompressedOperator.from_detector(masks.reshape(-1, *SHAPE), bf, df, (0, 0))
    assert op.signed_regions == (True, True)
    v = (rng.random((3, bf.size)) * (bf | df).ravel()).astype(np.float32)
    c = rng.random((3, 9)).astype(np.float32)
    norms = rng.random((3, 2)).astype(np.float32)
    projected, _ = project_values(v, c, op, norms)
    energy = (c[:, 4:] ** 2).sum(1) + norms[:, 1] ** 2
    expected = match_signed_region(v, c[:, 4:], energy, df.ravel(), masks[4:])
    inside = df.ravel()
    np.testing.assert_allclose(projected[:, inside], expected[:, inside], rtol=1e-5, atol=1e-6)
    # the BF (not energy-matched by default) keeps the additive projection onto its coefficients
    np.testing.assert_allclose(projected @ masks[:4].T, c[:, :4], rtol=1e-4, atol=1e-5)
    # match_region_energy=False: the DF is projected additively onto its coefficients too
    additive, _ = project_values(v, c, op, norms, DataStepOptions(match_energy=False))
    np.testing.assert_allclose(additive @ masks[4:].T, c[:, 4:], rtol=1e-4, atol=1e-5)


def test_more_dark_field_masks_never_lower_the_quality():
    """Noise-free diffraction-pattern DF masks N = 1, 4, 16 on a small synthetic scan.

    With shot noise (3e3 and 3e4 electrons per pattern) this scan is not monotone in N
    (README, "Thin specimens"): the test holds the noise-free case.
    """
    datacube, truth = _simulate()
    geometry = pc.DetectorGeometry.from_datacube(datacube)
    scores = []
    for num_df in (1, 4, 16):
        basis = pc.diffraction_pattern_basis(datacube, geometry, 8, num_df, seed=0)
        compressed = pc.compress(datacube, basis, progress_bar=False)
        ptycho = _run(pc.CompressedMultislicePtychography(datacube=compressed, **COMMON), 8)
        scores.append(_correlation(ptycho, truth))
    # tolerance: two reconstructions of the same data differ by ~1e-6; allow 0.005
    assert all(b >= a - 5e-3 for a, b in itertools.pairwise(scores)), scores
