import numpy as np
import pytest

import py4dstem_compressed as pc
from py4dstem_compressed.bases.zernike import osa_index_to_nm, zernike_polynomial


@pytest.fixture(scope="module")
def big_geometry():
    return pc.DetectorGeometry((64, 64), (31.7, 32.2), 12.3, df_radius=28.0)


def assert_valid(basis, num_bf, num_df):
    assert basis.masks.dtype == np.float32
    assert basis.masks.shape == (num_bf + num_df, *basis.geometry.shape)
    assert (basis.num_bf, basis.num_df) == (num_bf, num_df)
    m = basis.masks_flat.astype(np.float64)
    assert np.abs(m @ m.T - np.eye(basis.num_masks)).max() < 1e-5
    assert np.all(basis.bf_masks[:, ~basis.geometry.bf] == 0)
    assert np.all(basis.df_masks[:, ~basis.geometry.df] == 0)


def test_zernike_first_36_and_45(big_geometry):
    for k in (36, 45):
        basis = pc.zernike_basis(big_geometry, k)
        assert_valid(basis, k, 1)
        assert basis.parameters["ordering"] == "OSA/ANSI"


def test_zernike_masks_span_the_closed_form_polynomials(big_geometry):
    g = big_geometry
    basis = pc.zernike_basis(g, 10, 1)
    qx, qy = np.meshgrid(np.arange(64) - g.center[0], np.arange(64) - g.center[1], indexing="ij")
    rho, phi = np.hypot(qx, qy) / g.bf_radius, np.arctan2(qy, qx)
    bf = basis.bf_masks.reshape(10, -1).astype(np.float64)
    for j in range(10):
        z = (zernike_polynomial(*osa_index_to_nm(j), rho, phi) * g.bf).ravel()
        # orthonormalised "in order": Z_j lies in the span of masks 0..j, and mask j is
        # the normalised part of Z_j orthogonal to masks 0..j-1
        coef = bf[: j + 1] @ z
        assert np.allclose(coef @ bf[: j + 1], z, atol=1e-4 * np.abs(z).max())
        residual = z - (bf[:j] @ z) @ bf[:j]
        assert np.allclose(residual / np.linalg.norm(residual), bf[j], atol=1e-5)
    # mask 0 is the uniform BF disk
    assert np.allclose(bf[0], g.bf.ravel() / np.sqrt(g.bf.sum()), atol=1e-6)


def test_zernike_dark_field_doughnuts(big_geometry):
    basis = pc.zernike_basis(big_geometry, 6, 10)
    assert_valid(basis, 6, 10)
    sym = pc.zernike_basis(big_geometry, 6, 5, df_rotationally_symmetric=True)
    assert_valid(sym, 6, 5)
    r = big_geometry.radius_map()
    for mask in sym.df_masks:  # m = 0: a function of radius only
        values = mask[big_geometry.df]
        radii = np.round(r[big_geometry.df], 6)
        for radius in np.unique(radii)[:20]:
            assert np.ptp(values[radii == radius]) < 1e-5


def test_zernike_too_many_for_pixels():
    g = pc.DetectorGeometry((16, 16), (8, 8), 2.0)
    with pytest.raises(ValueError, match="fewer"):
        pc.zernike_basis(g, 36)


def test_binning_coefficients_are_scaled_bin_sums(big_geometry, rng):
    basis = pc.binning_basis(big_geometry, 5, df_bin=None)
    assert_valid(basis, basis.num_bf, 1)
    bins = basis.bf_masks > 0
    # bins tile the BF disk exactly, without overlap
    assert np.array_equal(bins.sum(0), big_geometry.bf.astype(int))
    image = rng.random((64, 64))
    for mask, support in zip(basis.bf_masks, bins):
        assert np.isclose(
            (mask * image).sum(), image[support].sum() / np.sqrt(support.sum()), rtol=1e-5
        )
        rows, cols = np.nonzero(support)
        assert np.ptp(rows) < 5 and np.ptp(cols) < 5
    assert np.isclose(basis.df_masks[0][big_geometry.df].std(), 0)


def test_binning_dark_field_bins(big_geometry):
    basis = pc.binning_basis(big_geometry, 7, df_bin=11)
    assert basis.num_df > 1
    assert_valid(basis, basis.num_bf, basis.num_df)
    assert np.array_equal((basis.df_masks > 0).sum(0), big_geometry.df.astype(int))


def test_diffraction_pattern_basis_spans_its_patterns(datacube, geometry):
    basis = pc.diffraction_pattern_basis(datacube, geometry, 10, 3, seed=3, smoothing_px=0)
    assert_valid(basis, 10, 3)
    assert basis.positions.shape == (13, 2)
    again = pc.diffraction_pattern_basis(datacube, geometry, 10, 3, seed=3, smoothing_px=0)
    assert np.array_equal(basis.masks, again.masks)
    # every sampled BF pattern lies in the span: angle 0
    sub = np.stack([datacube.data[rx, ry] for rx, ry in basis.positions[:10]])[:, None]
    angles = pc.basis_angles(sub, basis)
    assert np.all(angles.bf < 1e-3)


def test_smoothing_keeps_the_noise_of_the_sampled_patterns_out_of_the_masks(datacube, geometry):
    rng = np.random.default_rng(0)
    clean = np.asarray(datacube.data, dtype=np.float64)
    counts = 200.0 / clean.sum(axis=(2, 3)).mean()  # ~200 electrons per pattern: shot noise
    noisy = rng.poisson(clean * counts).astype(np.float32)
    kwargs = {"seed": 3}
    raw = pc.diffraction_pattern_basis(noisy, geometry, 10, 1, smoothing_px=0, **kwargs)
    smooth = pc.diffraction_pattern_basis(noisy, geometry, 10, 1, **kwargs)
    assert_valid(smooth, 10, 1)
    # default: a quarter of the BF radius
    assert smooth.parameters["smoothing_px"] == pytest.approx(0.25 * geometry.bf_radius)
    # the noise-free patterns lie closer to the span of the smoothed masks
    assert pc.basis_angles(clean, smooth).bf.mean() < pc.basis_angles(clean, raw).bf.mean()
    with pytest.raises(ValueError, match="smoothing_px"):
        pc.diffraction_pattern_basis(noisy, geometry, 10, 1, smoothing_px=-1)


def test_default_smoothing_gives_way_when_it_leaves_too_few_independent_patterns(
    datacube, geometry
):
    """Many masks on a small disk: the default halves its smoothing (warns); a chosen one raises."""
    with pytest.warns(UserWarning, match="default smoothing"):
        basis = pc.diffraction_pattern_basis(datacube, geometry, 30, 1, seed=3)
    assert_valid(basis, 30, 1)
    assert 0 < basis.parameters["smoothing_px"] < 0.25 * geometry.bf_radius
    with pytest.raises(ValueError, match="linearly independent"):
        pc.diffraction_pattern_basis(
            datacube, geometry, 30, 1, seed=3, smoothing_px=0.25 * geometry.bf_radius
        )


def test_diffraction_pattern_basis_given_positions_and_mode(datacube, geometry):
    positions = [(0, 0), (3, 4), (7, 7)]
    basis = pc.diffraction_pattern_basis(
        datacube, geometry, 3, positions=positions, mode="intensity", smoothing_px=0
    )
    assert basis.mode == "intensity"
    first = datacube.data[0, 0].astype(np.float64) * geometry.bf
    assert np.allclose(basis.masks[0], first / np.linalg.norm(first), atol=1e-6)


def test_diffraction_pattern_basis_skips_dependent_patterns(geometry, rng):
    pattern = rng.random((32, 32)) + 1
    data = np.broadcast_to(pattern, (4, 4, 32, 32)).copy()
    data[1, 2] *= rng.random((32, 32))  # the only other independent pattern
    basis = pc.diffraction_pattern_basis(data, geometry, 2, seed=0)
    assert_valid(basis, 2, 1)
    assert [1, 2] in basis.positions.tolist()
    with pytest.raises(ValueError, match="only 2 of the 16"):
        pc.diffraction_pattern_basis(data, geometry, 3, seed=0)


def test_pca_basis_matches_naive_eigendecomposition(datacube, geometry):
    basis = pc.pca_basis(datacube, geometry, 6, 2, num_samples=40, seed=1)
    assert_valid(basis, 6, 2)
    x = np.stack([np.sqrt(datacube.data[rx, ry][geometry.bf]) for rx, ry in basis.positions])
    _, evecs = np.linalg.eigh(x.T @ x)
    top = evecs[:, ::-1][:, :6]
    bf = basis.bf_masks[:, geometry.bf].astype(np.float64)
    # same subspace: projector difference ~ 0
    assert np.abs(top @ top.T - bf.T @ bf).max() < 1e-4
    assert basis.parameters["num_samples"] == 40


def test_generators_reject_bad_arguments(datacube, geometry):
    with pytest.raises(ValueError, match="num_bf"):
        pc.zernike_basis(geometry, 0)
    with pytest.raises(ValueError, match="mode"):
        pc.pca_basis(datacube, geometry, 3, mode="log")
    other = pc.DetectorGeometry((40, 40), (20, 20), 6)
    with pytest.raises(ValueError, match=r"\(40, 40\)"):
        pc.diffraction_pattern_basis(datacube, other, 3)


def test_basis_validation_and_show(geometry):
    basis = pc.zernike_basis(geometry, 6)
    masks = basis.masks.copy()
    masks[1] *= 1.01
    with pytest.raises(ValueError, match="orthonormal"):
        pc.Basis(masks, 6, 1, geometry)
    masks = basis.masks.copy()
    masks[0, 0, 0] = 0.1
    with pytest.raises(ValueError, match="outside"):
        pc.Basis(masks, 6, 1, geometry)
    fig, _ = basis.show()
    assert len(fig.axes) >= 7
