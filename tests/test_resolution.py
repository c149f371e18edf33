"""Tests of the Fourier shell correlation and the registration to a ground truth."""

import numpy as np
import pytest

from py4dstem_compressed.analysis.registration import register_to_ground_truth
from py4dstem_compressed.analysis.resampling import fourier_shift, resample
from py4dstem_compressed.analysis.resolution import (
    FSCResult,
    band_pass,
    fourier_shell_correlation,
    normalized_cross_correlation,
)


def smooth_random_image(shape, seed=0, sigma_px=2.0):
    """Band-limited random image: white noise with a Gaussian low-pass."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(shape)
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.fftfreq(shape[1])[None, :]
    gauss = np.exp(-2 * (np.pi * sigma_px) ** 2 * (ky**2 + kx**2))
    return np.fft.ifft2(np.fft.fft2(noise) * gauss).real


def lattice_image(shape, sampling, period=3.9, seed=0):
    """Gaussian 'atoms' on a square lattice with a few random vacancies (periodic)."""
    rng = np.random.default_rng(seed)
    rows, cols = np.meshgrid(
        np.arange(shape[0]) * sampling, np.arange(shape[1]) * sampling, indexing="ij"
    )
    extent = (shape[0] * sampling, shape[1] * sampling)
    image = np.zeros(shape)
    for y in np.arange(0, extent[0], period):
        for x in np.arange(0, extent[1], period):
            if rng.random() < 0.15:
                continue
            dy = (rows - y + extent[0] / 2) % extent[0] - extent[0] / 2
            dx = (cols - x + extent[1] / 2) % extent[1] - extent[1] / 2
            image += np.exp(-(dy**2 + dx**2) / (2 * 0.35**2))
    return image


def naive_fsc(a, b, sampling, num_shells):
    """Loop implementation of Eq. 19 (DC excluded), shells of equal width up to Nyquist."""
    f1, f2 = np.fft.fft2(a), np.fft.fft2(b)
    cutoff = 1 / (2 * sampling)
    cross = np.zeros(num_shells)
    p1 = np.zeros(num_shells)
    p2 = np.zeros(num_shells)
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            if i == 0 and j == 0:
                continue
            qy = np.fft.fftfreq(a.shape[0], sampling)[i]
            qx = np.fft.fftfreq(a.shape[1], sampling)[j]
            q = np.hypot(qy, qx)
            if q > cutoff:
                continue
            k = max(int(np.ceil(q / cutoff * num_shells - 1e-9)) - 1, 0)
            cross[k] += (f1[i, j] * np.conj(f2[i, j])).real
            p1[k] += abs(f1[i, j]) ** 2
            p2[k] += abs(f2[i, j]) ** 2
    return cross / np.sqrt(p1 * p2)


def test_identical_images_give_one_in_every_shell():
    image = np.random.default_rng(1).standard_normal((64, 48))
    result = fourier_shell_correlation(image, image, sampling=0.2)
    assert isinstance(result, FSCResult)
    assert np.all(result.num_pixels_per_shell > 0)
    np.testing.assert_allclose(result.fsc, 1.0, atol=1e-12)
    assert result.mean() == pytest.approx(1.0)
    assert result.frequencies_inverse_angstrom[-1] <= 1 / (2 * 0.2) + 1e-12


def test_complex_identical_and_scaled_images():
    rng = np.random.default_rng(2)
    image = np.exp(1j * rng.standard_normal((32, 32)))
    np.testing.assert_allclose(fourier_shell_correlation(image, 3 * image, 0.1).fsc, 1, atol=1e-12)
    np.testing.assert_allclose(fourier_shell_correlation(image, -image, 0.1).fsc, -1, atol=1e-12)


def test_independent_noise_gives_zero():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((2, 256, 256))
    result = fourier_shell_correlation(a, b, sampling=0.1)
    assert abs(result.mean()) < 0.05
    # each shell of n pixels fluctuates like 1/sqrt(n)
    inner = result.num_pixels_per_shell > 100
    assert np.all(np.abs(result.fsc[inner]) < 5 / np.sqrt(result.num_pixels_per_shell[inner]))


def test_fsc_hand_computed_4x4():
    a = np.zeros((4, 4))
    a[0, 0] = 1.0  # delta: flat spectrum F1 = 1
    b = np.zeros((4, 4))
    b[0, 1] = 1.0  # shifted delta: F2(k) = exp(-2 pi i kx / 4)
    # sampling 1 A: frequencies 0, +-1/4, -1/2 [1/A] per axis, Nyquist 0.5; two shells
    # (0, 0.25] and (0.25, 0.5], DC excluded. |F1| = |F2| = 1 and Re F1 F2* = cos(2 pi kx).
    # shell 1: (0, +-1/4) -> cos(+-pi/2) = 0, 0; (+-1/4, 0) -> 1, 1: FSC = 2 / 4
    # shell 2: (+-1/4, +-1/4) -> 0 (4 px); (0, -1/2) -> -1; (-1/2, 0) -> 1: FSC = 0 / 6
    # (+-1/4, -1/2), (-1/2, +-1/4), (-1/2, -1/2) lie beyond Nyquist.
    result = fourier_shell_correlation(a, b, sampling=1.0, num_shells=2)
    assert result.num_pixels_per_shell.tolist() == [4, 6]
    np.testing.assert_allclose(result.fsc, [0.5, 0.0], atol=1e-12)
    np.testing.assert_allclose(result.fsc, naive_fsc(a, b, 1.0, 2), atol=1e-12)
    np.testing.assert_allclose(result.frequencies_inverse_angstrom, [0.25, np.sqrt(2) / 6 + 1 / 6])


def test_fsc_matches_naive_loop():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((12, 10))
    b = a + rng.standard_normal((12, 10))
    result = fourier_shell_correlation(a, b, sampling=0.5, num_shells=5)
    np.testing.assert_allclose(result.fsc, naive_fsc(a, b, 0.5, 5))


def test_fsc_cutoff_value_at_and_resolution():
    rng = np.random.default_rng(55)
    a = 10 * smooth_random_image((128, 128), seed=5, sigma_px=1.0)
    b = a + rng.standard_normal(a.shape)  # white noise: FSC falls with frequency
    result = fourier_shell_correlation(a, b, sampling=0.1, cutoff=4.0)
    assert result.frequencies_inverse_angstrom.max() <= 4.0
    assert result.fsc[0] > 0.9
    q = result.frequencies_inverse_angstrom[[2, 5]]
    np.testing.assert_allclose(result.value_at(q), result.fsc[[2, 5]])
    np.testing.assert_allclose(result.value_at(q + 1e-4, method="nearest"), result.fsc[[2, 5]])
    assert np.isnan(result.value_at(10.0))
    res = result.resolution(0.5)
    assert 0 < res < 4.0
    assert result.value_at(res) == pytest.approx(0.5, abs=0.05)


@pytest.mark.parametrize(
    "a, b, match",
    [
        (np.zeros((4, 4)), np.zeros((4, 5)), "same shape"),
        (np.full((4, 4), np.nan), np.zeros((4, 4)), "NaN"),
        (np.zeros(4), np.zeros(4), "2D"),
    ],
)
def test_fsc_rejects_bad_input(a, b, match):
    with pytest.raises(ValueError, match=match):
        fourier_shell_correlation(a, b, sampling=1.0)


def test_normalized_cross_correlation_matches_numpy():
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((2, 20, 30))
    assert normalized_cross_correlation(a, b) == pytest.approx(
        np.corrcoef(a.ravel(), b.ravel())[0, 1]
    )
    assert normalized_cross_correlation(a, 2 * a + 1) == pytest.approx(1.0)
    mask = a > 0
    expected = np.corrcoef(a[mask], b[mask])[0, 1]
    assert normalized_cross_correlation(a, b, mask=mask) == pytest.approx(expected)


def test_band_pass_keeps_band_and_removes_low_frequency():
    sampling = 0.05
    n = 256  # 12.8 A field of view
    x = np.arange(n) * sampling
    rows, cols = np.meshgrid(x, x, indexing="ij")
    low = np.cos(2 * np.pi * cols / 6.4)  # 6.4 A period: outside [0.35, 1.2] A
    inside = np.cos(2 * np.pi * (rows / 0.8 + cols / 0.8))  # period 0.566 A: inside
    fine = np.cos(2 * np.pi * rows / 0.2)  # 0.2 A period: too fine
    filtered = band_pass(low + inside + fine + 5.0, sampling, 0.35, 1.2)
    np.testing.assert_allclose(filtered, inside, atol=1e-10)
    with pytest.raises(ValueError, match="smaller"):
        band_pass(low, sampling, 1.2, 0.35)


def test_fourier_shift_integer_matches_roll():
    image = np.random.default_rng(7).standard_normal((16, 12))
    np.testing.assert_allclose(
        fourier_shift(image, (3, -2)), np.roll(image, (3, -2), (0, 1)), atol=1e-12
    )


def test_resample_periodic_is_exact_for_band_limited_images():
    image = smooth_random_image((64, 64), seed=8, sigma_px=3.0)
    finer = resample(image, 0.2, 0.1)
    assert finer.shape == (128, 128)
    np.testing.assert_allclose(finer[::2, ::2], image, atol=1e-10)
    back = resample(finer, 0.1, 0.2)
    np.testing.assert_allclose(back, image, atol=1e-6)


def test_registration_recovers_subpixel_shift():
    truth = smooth_random_image((96, 96), seed=9, sigma_px=2.0)
    shifted = fourier_shift(truth, (3.4, -2.7))
    result = register_to_ground_truth(shifted, truth, sampling=0.1)
    np.testing.assert_allclose(result.shift_px, (3.4, -2.7), atol=0.1)
    np.testing.assert_allclose(result.shift_angstrom, (0.34, -0.27), atol=0.01)
    assert result.correlation > 0.999
    assert result.fsc.mean() > 0.99
    assert result.sign == 1


def test_registration_with_crop_and_sign_flip():
    truth = smooth_random_image((80, 80), seed=10, sigma_px=2.0)
    recon = -fourier_shift(truth, (10.25, 5.5))
    result = register_to_ground_truth(recon, truth, 0.1, crop=8, allow_sign_flip=True)
    assert result.sign == -1
    np.testing.assert_allclose(result.shift_px, (10.25, 5.5), atol=0.1)
    assert result.reconstruction.shape == (64, 64)
    assert result.correlation > 0.99
    flat = register_to_ground_truth(recon, truth, 0.1, crop=8)
    assert flat.sign == 1 and flat.correlation < 0.5


def test_registration_after_resampling_to_another_sampling():
    truth_sampling = 0.05
    truth = lattice_image((312, 312), truth_sampling)  # 15.6 A periodic cell
    recon_sampling = 0.12
    # a 'reconstruction': the truth on a coarser grid, shifted, with a padded border of noise
    core = resample(truth, truth_sampling, recon_sampling, shape=(100, 100), shift_px=(7.3, 12.6))
    rng = np.random.default_rng(11)
    recon = rng.standard_normal((130, 130)) * 0.1
    recon[15:115, 15:115] = core + 0.05 * rng.standard_normal(core.shape)
    result = register_to_ground_truth(
        recon, truth, recon_sampling, truth_sampling, roi=(20, 110, 20, 110)
    )
    np.testing.assert_allclose(result.shift_px, (15 + 7.3, 15 + 12.6), atol=0.1)
    assert result.correlation > 0.95
    assert result.roi == (20, 110, 20, 110)
    assert result.fsc.value_at(1 / 1.95) > 0.9  # lattice reflection (200) of the 3.9 A cell


def test_registration_non_periodic_overlap():
    big = smooth_random_image((120, 120), seed=12, sigma_px=2.0)
    truth = big[10:100, 5:95]  # not periodic
    recon = big[30:80, 40:90]  # recon(i) = truth(i + (20, 35)) => shift (-20, -35)
    result = register_to_ground_truth(recon, truth, 0.1, periodic=False)
    np.testing.assert_allclose(result.shift_px, (-20, -35), atol=0.1)
    assert result.correlation > 0.99


def test_shared_input_checks_name_the_argument():
    from py4dstem_compressed.analysis.resolution import as_sampling, check_image, window_2d

    assert as_sampling(0.5) == (0.5, 0.5) and as_sampling((0.5, 0.25)) == (0.5, 0.25)
    with pytest.raises(ValueError, match="new_sampling must be a positive"):
        as_sampling((0.5, -1.0), "new_sampling")
    with pytest.raises(ValueError, match="truth must be a 2D image"):
        check_image(np.zeros(3), "truth")
    with pytest.raises(ValueError, match="truth contains NaN"):
        check_image(np.array([[0.0, np.nan]]), "truth")
    window = window_2d((9, 5), 0.5)
    assert window.shape == (9, 5) and window.max() == 1.0 and window.min() == 0.0
    np.testing.assert_array_equal(window_2d((4, 4), 0.0), np.ones((4, 4)))
