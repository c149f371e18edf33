import numpy as np
import pytest

import py4dstem_compressed as pc


def test_compression_ratio_eq17(geometry):
    basis = pc.zernike_basis(geometry, 36, 1)
    assert pc.compression_ratio(basis) == pytest.approx(32 * 32 / 39)


def test_angles_zero_in_span_and_right_angle_when_orthogonal(geometry, rng):
    basis = pc.zernike_basis(geometry, 10, 1)
    m = basis.masks.astype(np.float64)
    # amplitude in the span of the BF masks plus the uniform DF mask: intensity = amplitude^2
    amplitude = np.tensordot([3.0, 0.5, -0.4, 0.2, 0, 0, 0, 0, 0, 0, 2.0], m, axes=1)
    assert np.all(amplitude[geometry.bf] > 0)  # stays positive: a valid amplitude
    data = np.broadcast_to(amplitude**2, (2, 3, 32, 32))
    angles = pc.basis_angles(data, basis)
    assert np.allclose(angles.bf, 0, atol=1e-6) and np.allclose(angles.df, 0, atol=1e-6)
    # a BF pattern orthogonal to every BF mask: angle pi/2
    residual = rng.normal(size=(32, 32)) * geometry.bf
    residual -= np.tensordot(m[:10].reshape(10, -1) @ residual.ravel(), m[:10], axes=1)
    angles = pc.basis_angles(np.broadcast_to(residual, (1, 1, 32, 32)), basis, mode="intensity")
    assert np.allclose(angles.bf, np.pi / 2, atol=1e-6)


def test_angles_from_compressed_match_raw(datacube, geometry):
    basis = pc.zernike_basis(geometry, 15, 3)
    raw = pc.basis_angles(datacube, basis)
    compressed = pc.basis_angles(pc.compress(datacube, basis, progress_bar=False))
    assert np.allclose(raw.bf, compressed.bf, atol=2e-3)
    assert np.allclose(raw.df, compressed.df, atol=2e-3)
    summary = raw.summary()
    assert 0 < summary["bf_mean_rad"] < np.pi / 2
    assert summary["bf_mean_deg"] == pytest.approx(np.degrees(summary["bf_mean_rad"]))
    fig, _ = raw.show()
    assert fig is not None


def test_angle_naive_arccos_reference(datacube, geometry):
    basis = pc.binning_basis(geometry, 3)
    angles = pc.basis_angles(datacube, basis)
    for rx, ry in [(0, 0), (4, 5)]:
        a = np.sqrt(datacube.data[rx, ry].astype(np.float64))
        bf = a * geometry.bf
        proj = basis.bf_masks.reshape(basis.num_bf, -1).astype(np.float64) @ bf.ravel()
        expected = np.arccos(np.clip(np.linalg.norm(proj) / np.linalg.norm(bf), 0, 1))
        assert angles.bf[rx, ry] == pytest.approx(expected, abs=1e-5)


def test_angle_curves_decrease_with_more_masks(datacube, geometry):
    curves = pc.angle_curves(
        datacube, geometry, num_masks=(1, 4, 10), num_samples=16, progress_bar=False
    )
    for family in ("zernike", "diffraction_pattern", "pca", "binning"):
        ks, means = curves.bf[family]
        assert np.all(np.diff(ks) > 0)
        assert means[-1] < means[0]
    assert "zernike_m0" in curves.df
    fig, _ = curves.show()
    assert len(fig.axes) == 2


def test_basis_angles_print_degrees_and_keep_radian_arrays(datacube, geometry):
    angles = pc.basis_angles(datacube, pc.zernike_basis(geometry, 15, 3))
    text = repr(angles)
    assert "deg" in text and "rad" in text  # says which unit is which
    assert "deg" in angles.describe()
    assert f"{np.degrees(angles.mean_bf):.2f}°" in angles.describe()
    assert f"{np.degrees(angles.mean_df):.2f}°" in text
    np.testing.assert_array_equal(angles.bf_deg, np.degrees(angles.bf))
    np.testing.assert_array_equal(angles.df_deg, np.degrees(angles.df))
    assert angles.mean_bf_deg == pytest.approx(np.degrees(angles.mean_bf), rel=1e-12)
    assert angles.mean_df_deg == pytest.approx(np.degrees(angles.mean_df), rel=1e-12)
    summary = angles.summary()
    for region in ("bf", "df"):
        for stat in ("mean", "median", "max"):
            assert summary[f"{region}_{stat}_deg"] == pytest.approx(
                np.degrees(summary[f"{region}_{stat}_rad"]), rel=1e-12
            )
    assert summary["bf_max_rad"] == pytest.approx(np.nanmax(angles.bf), rel=1e-12)


def test_uncaptured_variation_against_a_naive_reference(datacube, geometry, rng):
    """What masks miss of the patterns' variation about their mean, per region, against
    explicit least squares (float64), in units of the mean pattern energy; a variation in
    the span is missed by nothing, identical patterns vary by nothing, and the unit of the
    intensities does not matter."""
    from py4dstem_compressed.analysis.metrics import uncaptured_variation

    basis = pc.zernike_basis(geometry, 10, 1)
    frames = datacube.data.reshape(-1, 32, 32)[:20].astype(np.float64)
    measured = uncaptured_variation(frames, basis)
    v = np.sqrt(frames.reshape(20, -1))
    v /= np.sqrt((v * v).sum(1).mean())
    u = v - v.mean(0)
    for region, masks in (("bf", basis.bf_masks), ("df", basis.df_masks)):
        inside = getattr(geometry, region).ravel()
        m = masks.reshape(len(masks), -1).astype(np.float64)
        fit = np.linalg.lstsq(m.T, u.T, rcond=None)[0].T @ m
        missed = ((u - fit)[:, inside] ** 2).sum(1).mean()
        assert measured[region]["uncaptured"] == pytest.approx(missed, rel=1e-6)
        assert measured[region]["variation"] == pytest.approx((u[:, inside] ** 2).sum(1).mean())
        assert measured[region]["energy"] == pytest.approx((v[:, inside] ** 2).sum(1).mean())
    scaled = uncaptured_variation(frames * 7.3, basis)
    for region in ("bf", "df"):
        for key, value in measured[region].items():
            assert scaled[region][key] == pytest.approx(value, rel=1e-9)
    # amplitudes that vary only within the span of the masks (BF masks and the DF's uniform)
    m = basis.masks.astype(np.float64)
    weights = np.array([3.0, 0.5, -0.4, 0.2, 0, 0, 0, 0, 0, 0, 2.0])
    amplitudes = [np.tensordot(weights + 0.05 * rng.normal(size=11), m, axes=1) for _ in range(6)]
    spanned = uncaptured_variation(np.stack(amplitudes) ** 2, basis)
    assert spanned["bf"]["uncaptured"] < 1e-9 * spanned["bf"]["variation"]
    assert spanned["bf"]["variation"] > 0
    same = uncaptured_variation(np.stack([frames[0]] * 4), basis)
    assert same["bf"]["variation"] == pytest.approx(0, abs=1e-20)


def test_captured_noise_against_a_naive_reference(datacube, geometry, rng):
    """The shot noise masks capture, sum_k sum_p w_kp^2 sigma_p^2 with w the orthonormalised
    masks, against QR in float64; a mask on one pixel captures that pixel's variance, and the
    unit of the intensities does not matter."""
    from py4dstem_compressed.analysis.metrics import uncaptured_variation

    frames = datacube.data.reshape(-1, 32, 32)[:20].astype(np.float64)
    variance = rng.uniform(0.1, 2.0, size=(32, 32))
    zernike = pc.zernike_basis(geometry, 10, 6)
    measured = uncaptured_variation(frames, zernike, noise_variance=variance)
    unit = (frames.reshape(20, -1).sum(1)).mean()  # amplitude mode: energy = total intensity
    for region, masks in (("bf", zernike.bf_masks), ("df", zernike.df_masks)):
        q = np.linalg.qr(masks.reshape(len(masks), -1).astype(np.float64).T)[0]
        naive = float(((q**2).T @ variance.ravel()).sum()) / unit
        assert measured[region]["captured_noise"] == pytest.approx(naive, rel=1e-9)
        inside = getattr(geometry, region)
        assert measured[region]["noise"] == pytest.approx(variance[inside].sum() / unit)
        u = np.sqrt(frames.reshape(20, -1)) / np.sqrt(unit)
        captured = (((u - u.mean(0)) @ q) ** 2).sum(1)
        se = captured.std() / np.sqrt(20)
        assert measured[region]["captured_se"] == pytest.approx(se, rel=1e-6)
    scaled = uncaptured_variation(frames * 7.3, zernike, noise_variance=variance * 7.3)
    for region in ("bf", "df"):
        for key, value in measured[region].items():
            assert scaled[region][key] == pytest.approx(value, rel=1e-9)
    # a DF mask on one pixel captures that pixel's noise variance
    pixel = tuple(np.argwhere(geometry.df)[7])
    masks = zernike.masks[: zernike.num_bf + 1].copy()
    masks[-1] = 0
    masks[-1][pixel] = 1
    one = pc.Basis(masks, zernike.num_bf, 1, geometry, "custom")
    measured = uncaptured_variation(frames, one, noise_variance=variance)
    assert measured["df"]["captured_noise"] == pytest.approx(variance[pixel] / unit, rel=1e-6)
    with pytest.raises(ValueError, match="one value per detector pixel"):
        uncaptured_variation(frames, one, noise_variance=variance[:8])


def test_angle_curves_with_the_uncaptured_variation(datacube, geometry):
    curves = pc.angle_curves(
        datacube,
        geometry,
        num_masks=(1, 4, 10),
        families=("zernike", "pca"),
        num_samples=16,
        progress_bar=False,
        variation=True,
    )
    ks, missed = curves.variation["bf"]["zernike"]
    assert list(ks) == list(curves.bf["zernike"][0])
    assert np.all(np.diff(missed) <= 1e-12) and missed[-1] < missed[0]
    for region in ("bf", "df"):
        assert missed[0] <= curves.variation["totals"]["bf"]["variation"] + 1e-12
        assert set(curves.variation["totals"][region]) == {"variation", "energy"}
