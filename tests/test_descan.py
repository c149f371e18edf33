"""Descan-aware compression: masks follow the drifting disk (naive references in NumPy)."""

import numpy as np
import pytest

import py4dstem_compressed as pc
from py4dstem_compressed.bases.descan import (
    fit_descan,
    integer_descan,
    shifted_basis,
)
from py4dstem_compressed.compression.descan_kernel import DescanKernel
from py4dstem_compressed.compression.kernels import CompressionKernel


def _shift(frame, shift):
    """Naive integer shift with zero fill."""
    out = np.zeros_like(frame)
    sx, sy = shift
    nx, ny = frame.shape
    for i in range(nx):
        for j in range(ny):
            if 0 <= i - sx < nx and 0 <= j - sy < ny:
                out[i, j] = frame[i - sx, j - sy]
    return out


@pytest.fixture(scope="module")
def small_geometry(scan):
    # DF ends 12 px from the centre: a 2 px shift moves nothing of the DF off the detector
    return pc.DetectorGeometry((32, 32), scan.center, scan.bf_radius, df_radius=12.0)


@pytest.fixture(scope="module")
def drift(scan):
    """An integer descan growing along the scan: (Rx, Ry, 2) px."""
    rx, ry = scan.datacube.data.shape[:2]
    j = np.arange(rx * ry).reshape(rx, ry)
    return np.stack([np.rint(2 * j / (rx * ry - 1)), -np.rint(j / (rx * ry - 1))], -1).astype(
        np.int16
    )


@pytest.fixture(scope="module")
def drifted(scan, drift):
    data = np.asarray(scan.datacube.data)
    out = np.empty_like(data)
    for index in np.ndindex(data.shape[:2]):
        out[index] = _shift(data[index], drift[index])
    return out


def test_shifted_basis_moves_masks_and_regions(small_geometry):
    basis = pc.zernike_basis(small_geometry, num_bf=10, num_df=3)
    moved = shifted_basis(basis, (2, -1))
    for mask, reference in zip(moved.masks, basis.masks):
        np.testing.assert_array_equal(mask, _shift(reference, (2, -1)))
    np.testing.assert_array_equal(moved.geometry.bf, _shift(small_geometry.bf, (2, -1)))
    np.testing.assert_array_equal(moved.geometry.df, _shift(small_geometry.df, (2, -1)))
    assert shifted_basis(basis, (0, 0)) is basis


@pytest.mark.parametrize("mode", ["amplitude", "intensity"])
@pytest.mark.parametrize("family", ["zernike", "binning"])
def test_drifted_disk_gives_the_coefficients_of_the_centred_one(
    scan, small_geometry, drift, drifted, mode, family
):
    if family == "zernike":
        basis = pc.zernike_basis(small_geometry, num_bf=15, num_df=4)
    else:
        basis = pc.binning_basis(small_geometry, bf_bin=3)
    centred = pc.compress(scan.datacube, basis, mode=mode, progress_bar=False, descan=None)
    aware = pc.compress(drifted, basis, mode=mode, progress_bar=False, descan=drift)
    fixed = pc.compress(drifted, basis, mode=mode, progress_bar=False, descan=None)
    scale = np.abs(centred.coefficients).max()
    np.testing.assert_allclose(aware.coefficients, centred.coefficients, atol=2e-6 * scale)
    # each norm is accurate to 1e-3 of its own value (test_compress), so two agree to 2e-3
    np.testing.assert_allclose(aware.perpendicular_norms, centred.perpendicular_norms, rtol=2e-3)
    np.testing.assert_array_equal(aware.descan_shift_px, drift)
    # masks fixed in the detector frame do not see the same thing: the test can fail
    assert np.abs(fixed.coefficients - centred.coefficients).max() > 1e-2 * scale


def test_descan_kernel_splits_batches_at_shift_changes(small_geometry, drift, drifted):
    basis = pc.zernike_basis(small_geometry, num_bf=8, num_df=1)
    shifts = drift.reshape(-1, 2)
    kernel = DescanKernel(basis, shifts, lambda b: CompressionKernel(b, "amplitude"))
    frames = drifted.reshape(-1, 32, 32)
    batch = kernel(frames[5:41], start=5)
    for n in (5, 20, 40):
        single = CompressionKernel(shifted_basis(basis, tuple(shifts[n])), "amplitude")(
            frames[n : n + 1]
        )
        for key in ("coefficients", "edge_intensity"):
            # equal up to float32 rounding of products over batches of other sizes
            scale = np.abs(single[key]).max()
            np.testing.assert_allclose(batch[key][n - 5], single[key][0], atol=1e-6 * scale)
        np.testing.assert_allclose(
            batch["perpendicular_norms"][n - 5], single["perpendicular_norms"][0], rtol=2e-3
        )


def test_fit_descan_recovers_a_linear_drift(scan, small_geometry, drift, drifted):
    fitted = fit_descan(drifted, small_geometry, num_samples=64)
    undrifted = fit_descan(np.asarray(scan.datacube.data), small_geometry, num_samples=64)
    # the specimen deflects the beam a little too: compare with the fit of the undrifted
    # scan; the drift moves in whole-pixel steps, a plane fits them to within ~0.3 px
    rx, ry = drift.shape[:2]
    j = np.arange(rx * ry).reshape(rx, ry)
    plane = np.stack([2 * j / (rx * ry - 1), -j / (rx * ry - 1)], -1)
    np.testing.assert_allclose(fitted - undrifted, plane, atol=0.35)
    assert np.mean(integer_descan(fitted - undrifted) == drift) > 0.9
    assert np.abs(integer_descan(undrifted)).max() == 0


def test_auto_descan_changes_nothing_without_drift(scan, small_geometry):
    basis = pc.zernike_basis(small_geometry, num_bf=8, num_df=1)
    auto = pc.compress(scan.datacube, basis, progress_bar=False)
    fixed = pc.compress(scan.datacube, basis, progress_bar=False, descan=None)
    np.testing.assert_array_equal(auto.coefficients, fixed.coefficients)
    assert not auto.descan_shift_px.any()


def test_bad_descan_is_refused(scan, small_geometry):
    basis = pc.zernike_basis(small_geometry, num_bf=8, num_df=1)
    with pytest.raises(ValueError, match="descan"):
        pc.compress(scan.datacube, basis, progress_bar=False, descan=np.zeros((3, 3, 2)))
    with pytest.raises(ValueError, match="descan"):
        pc.compress(scan.datacube, basis, progress_bar=False, descan="sideways")


def test_files_with_moved_masks_need_the_descan_aware_format(
    scan, small_geometry, drift, drifted, tmp_path
):
    """Readers that do not know ``descan_shift_px`` must refuse such files, and only those."""
    import h5py

    basis = pc.zernike_basis(small_geometry, num_bf=8, num_df=1)
    for name, data, descan, version in (
        ("fixed.h5", scan.datacube, None, 1),
        ("moved.h5", drifted, drift, pc.FORMAT_VERSION),
    ):
        compressed = pc.compress(data, basis, progress_bar=False, descan=descan)
        path = compressed.save(tmp_path / name)
        found = {}
        with h5py.File(path, "r") as f:

            def stamp(name, node, found=found):
                if name.endswith("py4dstem_compressed_format"):
                    key = "format_version"
                    found[name] = int(node[key][()] if key in node else node.attrs[key])

            f.visititems(stamp)
        assert max(found.values()) == version, found
        again = pc.read_compressed(path)
        np.testing.assert_array_equal(again.descan_shift_px, compressed.descan_shift_px)


@pytest.mark.parametrize("family", ["diffraction_pattern", "pca"])
def test_data_derived_masks_are_built_in_the_frame_of_the_disk(
    scan, small_geometry, drift, drifted, family
):
    build = getattr(pc, f"{family}_basis")
    centred = build(scan.datacube, small_geometry, 8, 1, seed=0, descan=None)
    aware = build(drifted, small_geometry, 8, 1, seed=0, descan=drift)
    smeared = build(drifted, small_geometry, 8, 1, seed=0, descan=None)
    np.testing.assert_allclose(aware.bf_masks, centred.bf_masks, atol=1e-6)
    assert np.abs(smeared.bf_masks - centred.bf_masks).max() > 1e-2  # the test can fail


@pytest.mark.slow
def test_descan_aware_compression_on_a_dask_cluster_equals_in_process(
    small_geometry, drift, drifted
):
    from distributed import Client, LocalCluster

    basis = pc.zernike_basis(small_geometry, num_bf=8, num_df=1)
    local = pc.compress(drifted, basis, max_batch_size=16, progress_bar=False, descan=drift)
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        remote = pc.compress(
            drifted, basis, max_batch_size=16, progress_bar=False, descan=drift, client=client
        )
    for key in ("coefficients", "perpendicular_norms", "edge_intensity", "descan_shift_px"):
        np.testing.assert_array_equal(getattr(remote, key), getattr(local, key))
