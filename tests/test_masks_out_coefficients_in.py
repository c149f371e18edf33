"""Masks out (``Basis.export_masks``) and coefficients in (``from_virtual_images``)."""

import json

import h5py
import numpy as np
import pytest
import tifffile

import py4dstem_compressed as pc


@pytest.fixture(scope="module")
def zernike(geometry):
    return pc.zernike_basis(geometry, num_bf=10, num_df=1)


def _external_software(frames, masks):
    """What acquisition software computes: one virtual image per mask, in float64."""
    return np.tensordot(
        np.asarray(frames, np.float64), np.asarray(masks, np.float64), ([2, 3], [1, 2])
    )


@pytest.mark.parametrize("suffix", [".npy", ".tif", ".h5"])
def test_exported_masks_are_the_basis_masks(zernike, tmp_path, suffix):
    path = tmp_path / f"masks{suffix}"
    sidecar = zernike.export_masks(path)
    if suffix == ".npy":
        stack = np.load(path)
    elif suffix == ".tif":
        stack = tifffile.imread(path)
    else:
        with h5py.File(path, "r") as file:
            stack = file["masks"][()]
    assert stack.dtype == np.float32
    np.testing.assert_array_equal(stack, zernike.masks)  # bit for bit
    on_disk = json.loads((tmp_path / f"masks{suffix}.json").read_text())
    assert on_disk == json.loads(json.dumps(sidecar))
    assert on_disk["shape"] == list(zernike.masks.shape)
    regions = [m["region"] for m in on_disk["masks"]]
    assert regions == ["bright_field"] * 10 + ["dark_field"]
    assert on_disk["masks"][0]["zernike_nm"] == [0, 0]
    assert on_disk["masks"][2]["zernike_nm"] in ([1, 1], [1, -1])
    geometry = pc.DetectorGeometry.from_json(json.dumps(on_disk["geometry"]))
    assert geometry.matches(zernike.geometry)
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic writes left no temporary


def test_integer_masks_with_scales_reproduce_the_masks_to_the_reported_angle(zernike, tmp_path):
    angles = {}
    for bits in (8, 16):
        sidecar = zernike.export_masks(tmp_path / f"int{bits}.npy", integer_bits=bits)
        integers = np.load(tmp_path / f"int{bits}.npy")
        scale = np.asarray(sidecar["scale"])
        assert integers.dtype == np.dtype(f"int{bits}")
        assert np.abs(integers).max() == 2 ** (bits - 1) - 1
        approx = integers * scale[:, None, None]
        # rounding moves each value by at most half a step
        assert np.all(np.abs(approx - zernike.masks) <= 0.5 * scale[:, None, None] * (1 + 1e-6))
        exact = zernike.masks_flat.astype(np.float64)
        cosine = np.sum(exact * approx.reshape(len(exact), -1), 1) / (
            np.linalg.norm(exact, axis=1) * np.linalg.norm(approx.reshape(len(exact), -1), axis=1)
        )
        recomputed = np.degrees(np.arccos(np.clip(cosine, -1, 1)))
        np.testing.assert_allclose(sidecar["quantization_angle_deg"], recomputed, atol=1e-9)
        angles[bits] = sidecar["max_quantization_angle_deg"]
    assert 0 < angles[16] < angles[8] / 100  # 256x finer steps


def test_bad_export_arguments_are_named(zernike, tmp_path):
    with pytest.raises(ValueError, match="suffix"):
        zernike.export_masks(tmp_path / "masks.png")
    with pytest.raises(ValueError, match="integer_bits"):
        zernike.export_masks(tmp_path / "masks.npy", integer_bits=12)


def test_virtual_images_give_the_coefficients_of_compress(datacube, geometry, tmp_path):
    basis = pc.binning_basis(geometry, bf_bin=3)
    basis.export_masks(tmp_path / "masks.npy")
    images = _external_software(datacube.data, np.load(tmp_path / "masks.npy"))
    compressed = pc.compress(datacube, basis, mode="intensity", progress_bar=False)
    virtual = pc.CompressedDataCube.from_virtual_images(images, basis)
    scale = np.abs(compressed.coefficients).max()
    np.testing.assert_allclose(virtual.coefficients, compressed.coefficients, atol=1e-6 * scale)
    assert np.all(np.isnan(virtual.perpendicular_norms))  # not measured
    # bins tile the bright field and one mask covers the dark field: the constant lies in
    # the span, so the projected total is the measured one outside the EDGE region
    measured = compressed.total_intensity - compressed.edge_intensity
    np.testing.assert_allclose(virtual.total_intensity, measured, rtol=1e-5)
    # the centre of mass of binned patterns is off by less than a bin
    offset = np.hypot(*np.moveaxis(virtual.center_of_mass - compressed.center_of_mass, -1, 0))
    assert offset.max() < 3.0


def test_amplitude_images_with_norms_complete_the_total(datacube, geometry):
    basis = pc.zernike_basis(geometry, num_bf=10, num_df=1)
    compressed = pc.compress(datacube, basis, progress_bar=False)  # amplitude mode
    virtual = pc.CompressedDataCube.from_virtual_images(
        compressed.coefficients,
        basis,
        mode="amplitude",
        perpendicular_norms=compressed.perpendicular_norms,
    )
    # ||sqrt(I)||^2 = |c|^2 + |p|^2 = sum I (outside EDGE); norms are good to 1e-3 of themselves
    measured = compressed.total_intensity - compressed.edge_intensity
    np.testing.assert_allclose(virtual.total_intensity, measured, rtol=2e-3)
    given = pc.CompressedDataCube.from_virtual_images(
        compressed.coefficients, basis, mode="amplitude", total_intensity=measured
    )
    np.testing.assert_array_equal(given.total_intensity, measured.astype(np.float32))


def test_bad_virtual_images_are_named(geometry):
    basis = pc.zernike_basis(geometry, num_bf=10, num_df=1)
    with pytest.raises(ValueError, match=r"\(Rx, Ry, K=11\)"):
        pc.CompressedDataCube.from_virtual_images(np.zeros((4, 4, 10)), basis)
    bad = np.ones((4, 4, 11))
    bad[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        pc.CompressedDataCube.from_virtual_images(bad, basis)
    with pytest.raises(TypeError, match="Basis"):
        pc.CompressedDataCube.from_virtual_images(np.ones((4, 4, 11)), basis.masks)
    with pytest.raises(ValueError, match="mode"):
        pc.CompressedDataCube.from_virtual_images(np.ones((4, 4, 11)), basis, mode="counts")


def test_reconstruction_from_virtual_images_without_norms_correlates_with_truth():
    from test_ptychography import COMMON, _correlation, _run, _simulate

    from py4dstem_compressed.reconstruction.ptychography import CompressedMultislicePtychography

    datacube, truth = _simulate()
    geometry = pc.DetectorGeometry((32, 32), (16, 16), 20.0 / 4.0 + 0.5)
    basis = pc.zernike_basis(geometry, num_bf=21, num_df=1)
    images = _external_software(datacube.data, basis.masks)
    virtual = pc.CompressedDataCube.from_virtual_images(
        images, basis, calibration=datacube.calibration
    )
    ptycho = _run(CompressedMultislicePtychography(datacube=virtual, **COMMON), 8)
    errors = ptycho.error_iterations
    # intensity-mode errors fall more slowly than amplitude-mode ones (the same happens with
    # pc.compress(mode="intensity") on these data: 0.64 of the first error after 8 iterations)
    assert np.all(np.isfinite(errors)) and errors[-1] < 0.8 * errors[0]
    assert _correlation(ptycho, truth) > 0.8
