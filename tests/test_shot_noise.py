"""Shot noise: the intensity of one count measured from raw frames, and the model of the
amplitude coefficients of sparse counts that the dark-field step matches."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from test_ptychography import DETECTOR, _simulate

import py4dstem_compressed as pc
from py4dstem_compressed.compression.shot_noise import intensity_per_count
from py4dstem_compressed.reconstruction.region_matching import match_signed_region
from py4dstem_compressed.reconstruction.shot_noise_model import (
    expected_amplitude,
    sqrt_poisson_ratio,
)


@pytest.fixture(scope="module")
def scan():
    datacube, _ = _simulate()
    frames = datacube.data.reshape(-1, DETECTOR, DETECTOR).astype(np.float64)
    return datacube, frames / frames.sum((1, 2)).mean()


@pytest.mark.parametrize("electrons", [300, 30000])
@pytest.mark.parametrize("gain", [1.0, 3.1, 1e-4])
def test_the_intensity_of_one_count_is_measured_in_any_unit(scan, electrons, gain):
    """Poisson counts x gain: the estimate is the gain (64 patterns of 32x32 px spread by
    ~10% between noise draws; 20% allowed)."""
    datacube, shape = scan
    geometry = pc.DetectorGeometry.from_datacube(datacube)
    counts = np.random.default_rng(0).poisson(shape * electrons)
    assert intensity_per_count(counts * gain, geometry) == pytest.approx(gain, rel=0.2)


def test_structure_in_a_few_parts_of_a_region_does_not_raise_the_estimate(scan):
    """Sharp bright spots (Bragg-like, one pixel each) in two parts of each region: the
    regions' whole ratios (0.5's estimate took the smaller) take their structure for noise
    (~100x the gain), the median over each region's parts does not (20% allowed, as above)."""
    from scipy.ndimage import binary_erosion, convolve

    from py4dstem_compressed.compression.shot_noise import (
        INTERIOR_MARGIN_PX,
        local_fit_kernel,
        white_noise_residual,
    )

    datacube, shape = scan
    geometry = pc.DetectorGeometry.from_datacube(datacube)
    radius = geometry.radius_map()
    interiors = [
        binary_erosion(r, iterations=INTERIOR_MARGIN_PX) for r in (geometry.bf, geometry.df)
    ]
    spots = np.zeros(shape.shape[1:])
    for inner in interiors:
        for row, col in np.argwhere(inner & (radius >= np.median(radius[inner])))[:2]:
            spots[row, col] = 0.02  # 2% of the mean pattern in one pixel
    counts = np.random.default_rng(9).poisson((shape + spots) * 30000).astype(np.float64)
    assert intensity_per_count(counts, geometry) == pytest.approx(1.0, rel=0.2)
    residual = counts - convolve(counts, local_fit_kernel()[None], mode="nearest")
    white = white_noise_residual(local_fit_kernel())
    whole = [(residual[:, i] ** 2).sum() / white / counts[:, i].sum() for i in interiors]
    assert min(whole) > 10.0


def test_noise_free_patterns_look_like_far_more_counts_than_any_dose(scan):
    datacube, shape = scan
    geometry = pc.DetectorGeometry.from_datacube(datacube)
    assert 1.0 / intensity_per_count(shape, geometry) > 1e5  # counts per mean pattern


def test_compress_stores_it_and_it_scales_with_the_unit(scan):
    datacube, shape = scan
    basis = pc.zernike_basis(pc.DetectorGeometry.from_datacube(datacube), 6, 1)
    counts = np.random.default_rng(1).poisson(shape * 3000).reshape(datacube.data.shape)
    first = pc.compress(counts, basis, progress_bar=False, check_center=False)
    scaled = pc.compress(counts * 3.1, basis, progress_bar=False, check_center=False)
    assert first.intensity_per_count == pytest.approx(1.0, rel=0.2)
    assert scaled.intensity_per_count == pytest.approx(3.1 * first.intensity_per_count, rel=1e-6)
    given = pc.compress(
        counts, basis, progress_bar=False, check_center=False, intensity_per_count=1.0
    )
    assert given.intensity_per_count == 1.0


def test_it_round_trips_through_a_file_in_a_fresh_process(scan, tmp_path):
    datacube, shape = scan
    basis = pc.zernike_basis(pc.DetectorGeometry.from_datacube(datacube), 6, 1)
    counts = np.random.default_rng(2).poisson(shape * 3000).reshape(datacube.data.shape)
    compressed = pc.compress(counts, basis, progress_bar=False, check_center=False)
    path = compressed.save(tmp_path / "c.h5")
    code = (
        "import py4DSTEM, py4dstem_compressed\n"
        f"c = py4DSTEM.read({str(path)!r})\n"
        "print(repr(c.intensity_per_count))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(out.stdout.strip().splitlines()[-1]) == compressed.intensity_per_count


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "one"])
def test_a_bad_value_is_refused_with_the_fix(scan, bad):
    datacube, _ = scan
    basis = pc.zernike_basis(pc.DetectorGeometry.from_datacube(datacube), 6, 1)
    images = np.ones((2, 2, basis.num_masks), np.float32)
    with pytest.raises(ValueError, match="intensity_per_count must be a finite number >= 0"):
        pc.CompressedDataCube.from_virtual_images(images, basis, intensity_per_count=bad)


@pytest.mark.parametrize("lam", [1e-3, 0.05, 0.5, 3.0, 40.0])
def test_the_tabulated_expectation_of_sqrt_counts_matches_sampling(lam):
    draws = np.sqrt(np.random.default_rng(3).poisson(lam, 2_000_000))
    standard_error = draws.std() / np.sqrt(draws.size)
    expected = sqrt_poisson_ratio(lam) * np.sqrt(lam)
    assert abs(draws.mean() - expected) < 5 * standard_error


@pytest.fixture(params=["numba", "numpy"])
def lookup_path(request, monkeypatch):
    """The expected amplitude's fused numba pass, or its NumPy form (CuPy's, and where numba
    is missing)."""
    from py4dstem_compressed.reconstruction import shot_noise_kernel

    if request.param == "numba" and not shot_noise_kernel.AVAILABLE:
        pytest.skip("numba is not installed")
    if request.param == "numpy":
        monkeypatch.setattr(shot_noise_kernel, "AVAILABLE", False)
    return request.param


def test_the_fast_expected_amplitude_follows_the_exact_sums_over_every_count_rate(lookup_path):
    """psi(v) of the batch evaluation (float32, a table indexed by the bits of lam) against
    the exact sums of sqrt(N) (float64, np.interp), from far below one count per pixel to far
    above, zeros included; its log-slope against a finite difference (between 1 and 2)."""
    counts_per_intensity = 37.0
    lam = np.concatenate([[0.0], np.geomspace(1e-30, 1e7, 4000)])  # psi: normal float32
    values = np.sqrt(lam / counts_per_intensity).astype(np.float32)
    psi, slope = expected_amplitude(values, counts_per_intensity)
    exact_lam = values.astype(np.float64) ** 2 * counts_per_intensity
    exact = values * sqrt_poisson_ratio(exact_lam)
    assert psi[0] == 0
    np.testing.assert_allclose(psi, exact, rtol=1e-4, atol=0)
    step = 1e-3
    shifted, _ = expected_amplitude(values * np.float32(1 + step), counts_per_intensity)
    positive = (values > 0) & (psi > 1e-30)
    finite_difference = np.log(shifted[positive] / psi[positive]) / np.log1p(step)
    assert np.all((slope >= 1 - 1e-6) & (slope <= 2 + 1e-6))
    np.testing.assert_allclose(slope[positive], finite_difference, atol=0.03)
    # without the slope: the same psi bit for bit (float32 and float64), no slope
    for dtype in (np.float32, np.float64):
        v = values.astype(dtype)
        alone, none = expected_amplitude(v, counts_per_intensity, with_slope=False)
        assert none is None and alone.dtype == dtype
        np.testing.assert_array_equal(alone, expected_amplitude(v, counts_per_intensity)[0])


def test_the_fused_pass_and_the_numpy_form_agree(monkeypatch):
    """The numba pass and the NumPy form (CuPy's) read the same table with the same
    arithmetic: equal to float rounding on a batch of far fields of every count rate, in
    float32 and float64, for non-contiguous input, with NaN propagated and lam beyond the
    table's range taking its ends."""
    from py4dstem_compressed.reconstruction import shot_noise_kernel

    if not shot_noise_kernel.AVAILABLE:
        pytest.skip("numba is not installed")
    rng = np.random.default_rng(11)
    far_fields = (rng.random((6, 40, 40)) ** 6 * 3.0).astype(np.float32)
    far_fields[0, :3, :3] = [[0.0, 1e-30, 1e-22], [1e3, 1e6, np.inf], [np.nan, 2.0, 5e-3]]
    counts = 4.2e5
    for values in (far_fields, far_fields.astype(np.float64), far_fields[:, ::2, 1::3]):
        fused, fused_slope = expected_amplitude(values, counts)
        with monkeypatch.context() as patch:
            patch.setattr(shot_noise_kernel, "AVAILABLE", False)
            plain, plain_slope = expected_amplitude(values, counts)
        assert fused.dtype == plain.dtype == values.dtype and fused.shape == values.shape
        rounding = 8 * np.finfo(values.dtype).eps
        np.testing.assert_allclose(fused, plain, rtol=rounding, atol=0)
        np.testing.assert_array_equal(fused_slope, plain_slope)
        if values.shape == far_fields.shape:
            assert np.isnan(fused[0, 2, 0]) and np.isnan(plain[0, 2, 0])
    # beyond the table: zeros stay 0, huge counts give psi -> v
    psi, slope = expected_amplitude(np.array([0.0, 1e3], np.float32), counts)
    assert psi[0] == 0 and abs(psi[1] / 1e3 - 1) < 1e-6 and slope[1] == 1


def test_amplitude_coefficients_of_sparse_counts_are_those_of_the_expected_amplitude():
    """The mean over many Poisson draws of ``M sqrt(N)`` is ``M psi(sqrt(E[N]))``; taking it for
    ``M sqrt(E[N])`` (noise-free model) is off by many standard errors in a sparse field."""
    rng = np.random.default_rng(4)
    pixels = 400
    lam = rng.uniform(0, 0.2, pixels) * (rng.random(pixels) < 0.3)  # sparse DF, 1 count = 1
    masks = np.linalg.qr(rng.normal(size=(pixels, 6)))[0].T
    draws = np.sqrt(rng.poisson(lam, (20000, pixels)))
    coefficients = draws @ masks.T
    mean = coefficients.mean(0)
    error = coefficients.std(0) / np.sqrt(len(draws))
    psi, slope = expected_amplitude(np.sqrt(lam), 1.0)
    assert np.all(np.abs(mean - masks @ psi) < 5 * error)
    assert np.max(np.abs(mean - masks @ np.sqrt(lam)) / error) > 50
    assert np.all((slope >= 1 - 1e-6) & (slope <= 2 + 1e-6))


def test_noise_free_data_keep_the_amplitude():
    v = np.random.default_rng(5).random((3, 10)).astype(np.float32)
    for counts in (None, np.inf):
        psi, slope = expected_amplitude(v, counts)
        assert psi is v and slope == 1.0
    # many counts per pixel: psi -> v (1 - 1 / (8 lam)), lam = v^2 n
    psi, _ = expected_amplitude(v, 1e7)
    np.testing.assert_allclose(psi, v, rtol=1e-3)


def test_the_signed_step_leaves_a_pattern_that_meets_the_noisy_data_model():
    """The fixed point: a prediction whose expected coefficients ``M psi(v)`` and energy are
    the measured ones is not moved."""
    rng = np.random.default_rng(6)
    pixels = 200
    support = np.ones(pixels)
    v = np.sqrt(rng.uniform(0, 0.3, pixels))  # amplitudes of a sparse field, counts = 1
    masks = np.linalg.qr(np.concatenate([np.ones((pixels, 1)), rng.normal(size=(pixels, 4))], 1))
    masks = masks[0].T * np.sign(masks[0][0, 0])
    psi, _ = expected_amplitude(v, 1.0)
    coefficients, energy = masks @ psi, np.sum(v**2)
    out = match_signed_region(
        v[None], coefficients[None], np.array([energy]), support, masks, counts_per_intensity=1.0
    )
    np.testing.assert_allclose(out[0], v, rtol=1e-6)
    # the noise-free model takes the same data for a sharper pattern and moves it
    moved = match_signed_region(v[None], coefficients[None], np.array([energy]), support, masks)
    assert np.max(np.abs(moved[0] - v)) > 1e-2 * v.max()


def test_a_residual_within_the_shot_noise_moves_nothing_and_a_large_one_is_followed():
    """Shrinkage ``max(0, 1 - sigma^2 / r^2)``: adding masks that measure only noise adds no
    noise to the step; a residual of many sigma is followed."""
    rng = np.random.default_rng(7)
    pixels = 300
    support = np.ones(pixels)
    v = np.sqrt(rng.uniform(0, 0.3, pixels))
    masks = np.linalg.qr(np.concatenate([np.ones((pixels, 1)), rng.normal(size=(pixels, 5))], 1))
    masks = masks[0].T * np.sign(masks[0][0, 0])
    psi, _ = expected_amplitude(v, 1.0)
    sigma = np.sqrt(np.maximum(v**2 - psi**2, 0) @ (masks**2).T)
    energy = np.array([np.sum(v**2)])
    direction = np.zeros(6)
    direction[3] = 1.0

    def step(size):
        c = masks @ psi + size * sigma * direction
        out = match_signed_region(
            v[None], c[None], energy, support, masks, counts_per_intensity=1.0
        )
        return out[0]

    np.testing.assert_allclose(step(0.5), v, rtol=1e-6)  # within the noise: no move
    # a residual of 20 sigma is followed: one data step (the energy held, as every step
    # holds it) takes 12% of it off the expected coefficients (0.2's step: 7%)
    c = masks @ psi + 20 * sigma * direction
    moved_psi, _ = expected_amplitude(step(20.0), 1.0)
    before = np.linalg.norm(masks @ psi - c)
    assert np.linalg.norm(masks @ moved_psi - c) < 0.92 * before


def test_masks_of_pure_noise_do_not_pull_the_common_scale_down():
    """``kappa = <M psi, c> / (||c||^2 - sum sigma^2)``: over many Poisson draws its median is 1
    with 30 masks of which most measure only noise, where ``/ ||c||^2`` would give ~0.8 (one
    draw's ``kappa`` spreads by ~0.15; the median of 4000 is within ~0.01)."""
    from py4dstem_compressed.reconstruction.region_matching import (
        _coefficient_noise,
        _common_scale,
    )

    rng = np.random.default_rng(8)
    pixels = 2000
    lam = rng.uniform(0, 0.1, pixels)  # sparse: ~100 counts per pattern
    masks = np.linalg.qr(np.concatenate([np.ones((pixels, 1)), rng.normal(size=(pixels, 29))], 1))
    masks = masks[0].T * np.sign(masks[0][0, 0])
    v = np.sqrt(lam)[None]
    psi, _ = expected_amplitude(v, 1.0)
    noise = _coefficient_noise(v, psi, masks**2, 1.0)
    draws = np.sqrt(rng.poisson(lam, (4000, pixels))) @ masks.T
    current = np.broadcast_to(psi @ masks.T, draws.shape)
    kappa = _common_scale(current, draws, np.broadcast_to(noise, draws.shape))
    naive = _common_scale(current, draws, None)
    assert abs(np.median(kappa) - 1) < 0.03
    assert np.median(naive) < 0.9
