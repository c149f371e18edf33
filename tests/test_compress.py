import re
import warnings

import numpy as np
import pytest

import py4dstem_compressed as pc


def naive_compress(data, basis, mode):
    """Per-pattern loops in float64: the reference for the batched kernel."""
    g = basis.geometry
    m = basis.masks.astype(np.float64)
    out = {k: [] for k in ("c", "p", "edge", "total", "com")}
    qx, qy = np.meshgrid(*(np.arange(s) for s in g.shape), indexing="ij")
    for frame in data.reshape(-1, *g.shape).astype(np.float64):
        i = np.clip(frame, 0, None) if mode == "amplitude" else frame
        v = np.sqrt(i) if mode == "amplitude" else i
        c = np.array([(v * mask).sum() for mask in m])
        p = []
        for region, sl in ((g.bf, slice(0, basis.num_bf)), (g.df, slice(basis.num_bf, None))):
            p.append(np.sqrt(max((v[region] ** 2).sum() - (c[sl] ** 2).sum(), 0)))
        out["c"].append(c)
        out["p"].append(p)
        out["edge"].append(i[g.edge].sum())
        out["total"].append(i.sum())
        out["com"].append([(i * qx).sum() / i.sum(), (i * qy).sum() / i.sum()])
    return {k: np.array(v) for k, v in out.items()}


@pytest.mark.parametrize("use_numba", [True, False], ids=["numba", "numpy"])
@pytest.mark.parametrize("mode", ["amplitude", "intensity"])
@pytest.mark.parametrize("family", ["zernike", "binning", "dp"])
def test_compress_matches_naive_reference(datacube, geometry, mode, family, use_numba):
    # a DF radius inside the detector: the corners are EDGE pixels
    geometry = pc.DetectorGeometry(geometry.shape, geometry.center, geometry.bf_radius, 14.0)
    basis = {
        "zernike": lambda: pc.zernike_basis(geometry, 15, 3),
        "binning": lambda: pc.binning_basis(geometry, 3, df_bin=8),
        "dp": lambda: pc.diffraction_pattern_basis(datacube, geometry, 8, 1, seed=0, mode=mode),
    }[family]()
    compressed = pc.compress(
        datacube, basis, mode=mode, max_batch_size=7, progress_bar=False, use_numba=use_numba
    )
    assert geometry.edge.any()  # the EDGE sums are exercised
    ref = naive_compress(datacube.data, basis, mode)
    scale = np.abs(ref["c"]).max()
    assert compressed.coefficients.shape == (8, 8, basis.num_masks)
    assert np.allclose(
        compressed.coefficients.reshape(-1, basis.num_masks), ref["c"], atol=1e-5 * scale
    )
    pnorm = np.sqrt((ref["c"] ** 2).sum(1) + (ref["p"] ** 2).sum(1))[:, None]
    # float32 norms of the orthogonal part: accurate to ~1e-3 of the pattern norm
    assert np.all(np.abs(compressed.perpendicular_norms.reshape(-1, 2) - ref["p"]) < 2e-3 * pnorm)
    assert np.allclose(compressed.edge_intensity.ravel(), ref["edge"], rtol=1e-5)
    assert np.allclose(compressed.total_intensity.ravel(), ref["total"], rtol=1e-5)
    assert np.allclose(compressed.center_of_mass.reshape(-1, 2), ref["com"], atol=1e-3)
    assert compressed.mode == mode


def test_plain_sqrt_matmul_reference(datacube, geometry):
    basis = pc.zernike_basis(geometry, 21)
    compressed = pc.compress(datacube.data, basis, progress_bar=False)
    expected = np.sqrt(datacube.data.astype(np.float64)).reshape(
        64, -1
    ) @ basis.masks_flat.T.astype(np.float64)
    assert np.allclose(compressed.coefficients.reshape(64, -1), expected, rtol=1e-5, atol=1e-3)


def test_complete_basis_has_no_perpendicular_part(datacube, geometry):
    bf_pixels = np.flatnonzero(geometry.bf)
    df_pixels = np.flatnonzero(geometry.df)
    masks = np.zeros((len(bf_pixels) + len(df_pixels), 32 * 32), np.float32)
    masks[np.arange(len(bf_pixels)), bf_pixels] = 1
    masks[len(bf_pixels) + np.arange(len(df_pixels)), df_pixels] = 1
    basis = pc.Basis(masks.reshape(-1, 32, 32), len(bf_pixels), len(df_pixels), geometry)
    compressed = pc.compress(datacube, basis, progress_bar=False)
    norms = np.linalg.norm(compressed.coefficients, axis=-1)
    assert np.all(compressed.perpendicular_norms < 2e-3 * norms[..., None])
    angles = pc.basis_angles(datacube, basis)
    assert np.nanmax(angles.bf) < 1e-6 and np.nanmax(angles.df) < 1e-6


def test_calibration_and_metadata_are_carried(datacube, geometry):
    compressed = pc.compress(datacube, pc.zernike_basis(geometry, 10), progress_bar=False)
    assert compressed.calibration.get_R_pixel_size() == datacube.calibration.get_R_pixel_size()
    assert compressed.calibration.get_Q_pixel_units() == "mrad"
    assert compressed.package_version == pc.__version__
    assert compressed.scan_shape == (8, 8) and compressed.detector_shape == (32, 32)
    assert compressed.compression_ratio == pytest.approx(32 * 32 / (11 + 2))
    assert compressed.stored_compression_ratio == pytest.approx(32 * 32 / (11 + 6))
    # compressing does not graft anything onto the source's tree
    assert datacube.root is not compressed.root


def test_nan_names_first_bad_position(datacube, geometry):
    data = datacube.data.copy()
    data[5, 3, 10, 10] = np.nan
    data[6, 0, 1, 1] = np.inf
    with pytest.raises(ValueError, match=r"\(5, 3\)"):
        pc.compress(data, pc.zernike_basis(geometry, 6), max_batch_size=50, progress_bar=False)


def test_negative_intensities_clipped_with_one_warning(datacube, geometry):
    data = datacube.data.copy()
    data[0, 0, :2, :2] = -5.0
    data[7, 7, 0, 0] = -1.0
    basis = pc.zernike_basis(geometry, 6)
    with pytest.warns(UserWarning, match="5 negative intensities") as record:
        compressed = pc.compress(data, basis, max_batch_size=10, progress_bar=False)
    assert len([w for w in record if "negative" in str(w.message)]) == 1
    assert np.all(np.isfinite(compressed.coefficients))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pc.compress(data, basis, mode="intensity", progress_bar=False)


def test_basis_for_another_detector(datacube, geometry):
    other = pc.zernike_basis(pc.DetectorGeometry((48, 48), (24, 24), 8), 6)
    with pytest.raises(ValueError, match=r"\(48, 48\).*\(32, 32\)"):
        pc.compress(datacube, other, progress_bar=False)
    shifted = pc.zernike_basis(pc.DetectorGeometry((32, 32), (11.0, 16.0), 7.7), 6)
    with pytest.raises(ValueError, match="centre"):
        pc.compress(datacube, shifted, progress_bar=False)


def test_bad_arguments(datacube, geometry):
    basis = pc.zernike_basis(geometry, 6)
    with pytest.raises(ValueError, match="mode"):
        pc.compress(datacube, basis, mode="sqrt")
    with pytest.raises(ValueError, match="4D"):
        pc.compress(np.zeros((3, 32, 32)), basis)
    with pytest.raises(TypeError, match="Basis"):
        pc.compress(datacube, basis.masks)


def test_decompress_reproduces_a_pattern_in_the_span(geometry, rng):
    basis = pc.zernike_basis(geometry, 15, 1)
    weights = rng.normal(size=16)
    amplitude = np.tensordot(weights, basis.masks.astype(np.float64), axes=1)
    amplitude = np.abs(amplitude)  # |.| leaves the span in general: use the intensity mode
    data = np.broadcast_to(amplitude, (2, 2, 32, 32)).copy()
    compressed = pc.compress(data, basis, mode="intensity", check_center=False, progress_bar=False)
    projected = np.tensordot(
        basis.masks_flat.astype(np.float64) @ amplitude.ravel(), basis.masks, axes=1
    )
    assert np.allclose(compressed.decompress(1, 1), projected, atol=1e-4)


def test_threads_do_not_change_the_results(datacube, geometry):
    basis = pc.zernike_basis(geometry, 15, 1)
    one = pc.compress(datacube, basis, max_batch_size=24, num_threads=1, progress_bar=False)
    three = pc.compress(datacube, basis, max_batch_size=24, num_threads=3, progress_bar=False)
    # threads take whole chunks, each computed as on one thread: bit-identical results
    for key in ("coefficients", "perpendicular_norms", "total_intensity", "center_of_mass"):
        assert np.array_equal(getattr(one, key), getattr(three, key)), key
    with pytest.raises(ValueError, match="num_threads"):
        pc.compress(datacube, basis, num_threads=0, progress_bar=False)


def explicit_residual_norms(data, basis, mode):
    """Float64 reference of the perpendicular norms: ``||v_R - M_R^T (M_R v_R)||`` per region."""
    g = basis.geometry
    masks = basis.masks.astype(np.float64)
    frames = data.reshape(-1, *g.shape).astype(np.float64)
    v = np.sqrt(np.clip(frames, 0, None)) if mode == "amplitude" else frames
    norms = []
    for region, index in ((g.bf, slice(0, basis.num_bf)), (g.df, slice(basis.num_bf, None))):
        v_r = v[:, region]
        m_r = masks[index][:, region]
        norms.append(np.linalg.norm(v_r - (v_r @ m_r.T) @ m_r, axis=1))
    return np.stack(norms, 1)


FAMILIES = {
    "zernike": lambda data, g, mode: pc.zernike_basis(g, 15, 3),
    "binning": lambda data, g, mode: pc.binning_basis(g, 3, df_bin=8),
    "diffraction_pattern": lambda data, g, mode: pc.diffraction_pattern_basis(
        data, g, 8, 4, seed=0, mode=mode
    ),
    "diffraction_pattern_one_df": lambda data, g, mode: pc.diffraction_pattern_basis(
        data, g, 12, 1, seed=0, mode=mode
    ),
    "pca": lambda data, g, mode: pc.pca_basis(data, g, 8, 4, seed=0, mode=mode),
}


@pytest.mark.parametrize("use_numba", [True, False], ids=["numba", "numpy"])
@pytest.mark.parametrize("mode", ["amplitude", "intensity"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_perpendicular_norms_accurate_to_their_own_value(
    datacube, geometry, family, mode, use_numba
):
    # a DF radius inside the detector: the corners are EDGE pixels
    geometry = pc.DetectorGeometry(geometry.shape, geometry.center, geometry.bf_radius, 14.0)
    basis = FAMILIES[family](datacube, geometry, mode)
    compressed = pc.compress(
        datacube, basis, mode=mode, max_batch_size=40, progress_bar=False, use_numba=use_numba
    )
    reference = explicit_residual_norms(datacube.data, basis, mode)
    assert np.all(reference > 0)
    error = np.abs(compressed.perpendicular_norms.reshape(-1, 2) - reference) / reference
    # required: 1e-3 of each norm's own value; asserted at half of it, so that a norm off
    # by 0.1% is caught (measured: < 3e-5)
    assert error.max() < 0.5e-3, (error.max(axis=0), family, mode)


def test_empty_scan_is_refused(geometry):
    basis = pc.zernike_basis(geometry, 6)
    with pytest.raises(ValueError, match=r"scan shape \(0, 4\).*at least one scan position"):
        pc.compress(np.zeros((0, 4, 32, 32), np.float32), basis, progress_bar=False)


def test_complex_data_are_refused(datacube, geometry):
    basis = pc.zernike_basis(geometry, 6)
    data = datacube.data.astype(np.complex64) * (1 + 1j)
    with pytest.raises(TypeError, match=r"complex \(complex64\).*np.abs\(data\) \*\* 2"):
        pc.compress(data, basis, progress_bar=False)


def test_basis_for_another_bf_radius_warns_with_both_radii(datacube, geometry):
    # same detector and centre, a BF disk half as large again as the data's
    larger = pc.DetectorGeometry(geometry.shape, geometry.center, 1.5 * geometry.bf_radius)
    basis = pc.zernike_basis(larger, 6)
    radii = (f"{geometry.bf_radius:.1f}", f"{larger.bf_radius:.1f}")  # 7.7 and 11.5 px
    expected = r"radius of ~{} px.*built for {} px".format(*(re.escape(r) for r in radii))
    with pytest.warns(UserWarning, match=expected):
        pc.compress(datacube, basis, progress_bar=False)
    with warnings.catch_warnings():  # the intended case is silent
        warnings.simplefilter("error")
        pc.compress(datacube, basis, check_center=False, progress_bar=False)
        pc.compress(datacube, pc.zernike_basis(geometry, 6), progress_bar=False)


def test_all_zero_scan_is_refused(geometry):
    basis = pc.zernike_basis(geometry, 6)
    with pytest.raises(ValueError, match=r"all 12 patterns.*zero or negative total intensity"):
        pc.compress(np.zeros((3, 4, 32, 32), np.float32), basis, progress_bar=False)


def test_centre_is_checked_on_the_first_chunk_with_signal(datacube, geometry):
    data = datacube.data.copy()
    data[:2] = 0  # the first chunk (16 frames) holds no signal
    shifted = pc.zernike_basis(pc.DetectorGeometry((32, 32), (11.0, 16.0), 7.7), 6)
    with pytest.raises(ValueError, match="centre"):
        pc.compress(data, shifted, max_batch_size=16, num_threads=1, progress_bar=False)
