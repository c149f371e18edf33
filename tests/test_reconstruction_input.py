"""What reconstruction does with incomplete data and nonsense arguments.

Tiny scans (8x8 positions, 32x32 px, 2 slices) simulated with py4DSTEM's own forward model
(``tests/test_ptychography.py``).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from py4DSTEM.process.calibration import fit_origin
from test_ptychography import (
    ANGULAR_SAMPLING,
    CENTER,
    COMMON,
    DETECTOR,
    PREPROCESS,
    RECONSTRUCT,
    SEMIANGLE,
    _correlation,
    _simulate,
)

import py4dstem_compressed as pc
from py4dstem_compressed.reconstruction.ptychography import CompressedMultislicePtychography

NUM_ITER = 8
NUM_POSITIONS = 64
NUM_MISSING = 6  # ~10% of the scan


@pytest.fixture(scope="module")
def simulated():
    """Compressed complete scan (Zernike 21 + 1) and the true potential."""
    datacube, truth = _simulate()
    geometry = pc.DetectorGeometry((DETECTOR, DETECTOR), CENTER, SEMIANGLE / ANGULAR_SAMPLING + 0.5)
    basis = pc.zernike_basis(geometry, num_bf=21, num_df=1)
    return pc.compress(datacube, basis, progress_bar=False), truth


def _with_missing(data: pc.CompressedDataCube, valid: np.ndarray) -> pc.CompressedDataCube:
    """The same data as a file of an interrupted acquisition: missing patterns are NaN."""
    return pc.CompressedDataCube(
        coefficients=data.coefficients,
        perpendicular_norms=data.perpendicular_norms,
        edge_intensity=data.edge_intensity,
        total_intensity=data.total_intensity,
        center_of_mass=data.center_of_mass,
        basis=data.basis,
        mode=data.mode,
        calibration=data.calibration,
        valid=valid,
    )


def _valid_map(where: str) -> np.ndarray:
    valid = np.ones((8, 8), bool)
    if where == "interrupted":  # the scan stopped before its last patterns
        valid.flat[-NUM_MISSING:] = False
    else:  # dropped frames anywhere in the scan
        valid.flat[np.random.default_rng(7).choice(NUM_POSITIONS, NUM_MISSING, False)] = False
    return valid


def _shifted(potential: np.ndarray, shift_px: np.ndarray) -> np.ndarray:
    """``potential`` (slices, x, y) moved by ``shift_px`` [px] (Fourier shift, periodic)."""
    kx = np.fft.fftfreq(potential.shape[-2])[:, None]
    ky = np.fft.fftfreq(potential.shape[-1])[None, :]
    ramp = np.exp(-2j * np.pi * (kx * shift_px[0] + ky * shift_px[1]))
    return np.fft.ifft2(np.fft.fft2(potential) * ramp).real


# ------------------------------------------------------------------ missing patterns
@pytest.mark.parametrize("where", ["interrupted", "scattered"])
def test_partial_file_reconstructs_from_its_complete_patterns(simulated, where):
    """Missing patterns are dropped (with a warning): the run equals one on that subset."""
    compressed, truth = simulated
    valid = _valid_map(where)
    partial = _with_missing(compressed, valid)
    assert np.isnan(partial.coefficients[~valid]).all()
    complete = NUM_POSITIONS - NUM_MISSING
    message = (
        rf"^{NUM_MISSING} of {NUM_POSITIONS} patterns are missing \(NaN\); "
        rf"reconstructing from the {complete} complete ones$"
    )
    ours = CompressedMultislicePtychography(datacube=partial, **COMMON)
    with pytest.warns(UserWarning, match=message):
        ours.preprocess(**PREPROCESS)
    # the centres of mass are fitted over the complete patterns only (py4DSTEM's plane fit)
    com = np.asarray(compressed.center_of_mass, dtype=np.float32)
    expected = fit_origin((com[..., 0], com[..., 1]), mask=valid, fitfunction="plane")
    np.testing.assert_allclose(ours._com_fitted_x, expected[0], rtol=1e-6)
    np.testing.assert_allclose(ours._com_fitted_y, expected[1], rtol=1e-6)
    # one measurement row per complete pattern, in scan order
    k = compressed.num_masks
    assert ours._num_diffraction_patterns == complete
    np.testing.assert_array_equal(ours._compressed_rows[:, :k], compressed.coefficients[valid])
    ours.reconstruct(num_iter=NUM_ITER, **RECONSTRUCT)

    # the same complete patterns, selected explicitly from the complete file
    reference = CompressedMultislicePtychography(
        datacube=compressed, positions_mask=valid, **COMMON
    )
    reference.preprocess(**PREPROCESS, force_com_shifts=expected)
    reference.reconstruct(num_iter=NUM_ITER, **RECONSTRUCT)

    for array in (ours.object, ours.probe, ours.error_iterations):
        assert np.all(np.isfinite(array))
    np.testing.assert_array_equal(ours._positions_px, reference._positions_px)
    np.testing.assert_array_equal(ours._object_fov_mask, reference._object_fov_mask)
    # float32 iterates of identical arithmetic: equal to a few ulps of the largest value
    ulps = 4 * np.finfo(np.float32).eps
    for name in ("object", "probe"):
        mine, theirs = np.asarray(getattr(ours, name)), np.asarray(getattr(reference, name))
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=ulps * np.abs(theirs).max())
    np.testing.assert_allclose(ours.error_iterations, reference.error_iterations, rtol=ulps)
    # and a reconstruction of the specimen: the potential correlates with the truth, moved
    # (sub-pixel) with the positions, which preprocess centres in the field of view
    full = CompressedMultislicePtychography(datacube=compressed, **COMMON)
    full.preprocess(**PREPROCESS)
    offsets = np.asarray(ours._positions_px) - np.asarray(full._positions_px)[valid.ravel()]
    np.testing.assert_allclose(offsets, np.broadcast_to(offsets[0], offsets.shape), atol=1e-4)
    assert ours.object.shape == truth.shape
    assert _correlation(ours, _shifted(truth, offsets[0])) > 0.8


def test_all_missing_file_is_a_clear_error(simulated):
    compressed, _ = simulated
    empty = _with_missing(compressed, np.zeros((8, 8), bool))
    ptycho = CompressedMultislicePtychography(datacube=empty, **COMMON)
    with pytest.raises(ValueError, match="all 64 patterns of the data are missing"):
        ptycho.preprocess(**PREPROCESS)


def test_positions_mask_of_only_missing_patterns_is_a_clear_error(simulated):
    compressed, _ = simulated
    valid = _valid_map("interrupted")
    ptycho = CompressedMultislicePtychography(
        datacube=_with_missing(compressed, valid), positions_mask=~valid, **COMMON
    )
    with pytest.raises(ValueError, match="selects none of the 58 complete patterns"):
        ptycho.preprocess(**PREPROCESS)


def test_positions_mask_and_missing_patterns_combine(simulated):
    """A user selection and the missing patterns: the selected complete ones are used."""
    compressed, _ = simulated
    valid = _valid_map("scattered")
    selected = np.zeros((8, 8), bool)
    selected[:, :6] = True
    used = valid & selected
    ptycho = CompressedMultislicePtychography(
        datacube=_with_missing(compressed, valid), positions_mask=selected, **COMMON
    )
    message = rf"from the 58 complete ones \({used.sum()} selected by positions_mask\)$"
    with pytest.warns(UserWarning, match=message):
        ptycho.preprocess(**PREPROCESS)
    k = compressed.num_masks
    np.testing.assert_array_equal(ptycho._compressed_rows[:, :k], compressed.coefficients[used])
    np.testing.assert_array_equal(ptycho._positions_mask, used)


def test_given_scan_positions_of_missing_patterns_are_dropped(simulated):
    """``initial_scan_positions`` [Å] of the whole scan: those of missing patterns go."""
    compressed, _ = simulated
    valid = _valid_map("scattered")
    partial = _with_missing(compressed, valid)
    step = compressed.calibration.get_R_pixel_size()
    x, y = np.meshgrid(np.arange(8) * step, np.arange(8) * step, indexing="ij")
    raster = np.stack([x.ravel(), y.ravel()], axis=-1)
    ptychos = []
    for positions in (None, raster):
        ptycho = CompressedMultislicePtychography(
            datacube=partial, initial_scan_positions=positions, **COMMON
        )
        with pytest.warns(UserWarning, match="6 of 64 patterns are missing"):
            ptychos.append(ptycho.preprocess(**PREPROCESS))
    assert ptychos[1]._positions_px.shape == (NUM_POSITIONS - NUM_MISSING, 2)
    np.testing.assert_allclose(ptychos[1]._positions_px, ptychos[0]._positions_px, atol=1e-4)


# ---------------------------------------------------------------- nonsense arguments
def _range_error(name: str, value, valid_range: str) -> str:
    """Regex of the message: the argument, its valid range and the value given."""
    return rf"^{re.escape(name)} must .*{re.escape(valid_range)}.*got {re.escape(repr(value))}$"


NAN, INF = float("nan"), float("inf")
CONSTRUCTOR_CASES = [
    ("num_slices", 0, ">= 1"),
    ("num_slices", -2, ">= 1"),
    ("num_slices", 2.5, ">= 1"),
    ("num_slices", NAN, ">= 1"),
    ("num_slices", INF, ">= 1"),
    ("energy", 0, "(0, inf) [eV]"),
    ("energy", -80e3, "(0, inf) [eV]"),
    ("energy", NAN, "(0, inf) [eV]"),
    ("energy", INF, "(0, inf) [eV]"),
    ("semiangle_cutoff", 0, "(0, inf] [mrad]"),
    ("semiangle_cutoff", -20.0, "(0, inf] [mrad]"),
    ("semiangle_cutoff", NAN, "(0, inf] [mrad]"),
    ("slice_thicknesses", -4, "(0, inf) [Å]"),
    ("slice_thicknesses", 0, "(0, inf) [Å]"),
    ("slice_thicknesses", NAN, "(0, inf) [Å]"),
    ("slice_thicknesses", INF, "(0, inf) [Å]"),
]


@pytest.mark.parametrize("name, value, valid_range", CONSTRUCTOR_CASES)
def test_nonsense_constructor_arguments_raise_in_init(simulated, name, value, valid_range):
    compressed, _ = simulated
    with pytest.raises(ValueError, match=_range_error(name, value, valid_range)):
        CompressedMultislicePtychography(datacube=compressed, **{**COMMON, name: value})


def test_one_negative_slice_thickness_in_a_sequence_raises(simulated):
    compressed, _ = simulated
    options = {**COMMON, "num_slices": 3, "slice_thicknesses": [4.0, -1.0]}
    with pytest.raises(ValueError, match=_range_error("slice_thicknesses", -1.0, "(0, inf)")):
        CompressedMultislicePtychography(datacube=compressed, **options)


def test_nan_loss_weight_in_the_constructor_raises(simulated):
    compressed, _ = simulated
    with pytest.raises(ValueError, match=_range_error("edge_weight", NAN, "[0, 1]")):
        CompressedMultislicePtychography(datacube=compressed, weights={"edge": NAN}, **COMMON)


PREPROCESS_CASES = [
    ("force_scan_sampling", 0.0, "(0, inf) [Å]"),
    ("force_scan_sampling", -0.6, "(0, inf) [Å]"),
    ("force_scan_sampling", NAN, "(0, inf) [Å]"),
    ("force_angular_sampling", 0.0, "(0, inf) [mrad]"),
    ("force_angular_sampling", INF, "(0, inf) [mrad]"),
    ("force_reciprocal_sampling", -0.1, "(0, inf) [1/Å]"),
    ("force_com_rotation", NAN, "(-inf, inf) [deg]"),
    ("max_batch_size", 0, ">= 1"),
]


@pytest.mark.parametrize("name, value, valid_range", PREPROCESS_CASES)
def test_nonsense_preprocess_arguments_raise(simulated, name, value, valid_range):
    compressed, _ = simulated
    ptycho = CompressedMultislicePtychography(datacube=compressed, **COMMON)
    with pytest.raises(ValueError, match=_range_error(name, value, valid_range)):
        ptycho.preprocess(**{**PREPROCESS, name: value})
    assert not ptycho._preprocessed  # rejected before any work


RECONSTRUCT_CASES = [
    ("num_iter", 0, ">= 1"),
    ("num_iter", -1, ">= 1"),
    ("num_iter", 2.5, ">= 1"),
    ("num_iter", NAN, ">= 1"),
    ("max_batch_size", 0, ">= 1"),
    ("max_batch_size", -16, ">= 1"),
    ("max_batch_size", 7.5, ">= 1"),
    ("step_size", 0.0, "(0, inf)"),
    ("step_size", -0.5, "(0, inf)"),
    ("step_size", NAN, "(0, inf)"),
    ("step_size", INF, "(0, inf)"),
    ("positions_step_size", NAN, "(0, inf)"),
    ("normalization_min", -1.0, "[0, 1]"),
    ("coefficient_weight", NAN, "(0, 2)"),
    ("coefficient_weight", INF, "(0, 2)"),
    ("perpendicular_weight", NAN, "[0, 1]"),
    ("perpendicular_weight", -INF, "[0, 1]"),
    ("edge_weight", NAN, "[0, 1]"),
    ("edge_weight", INF, "[0, 1]"),
    ("probe_aperture_weight", NAN, "[0, 1]"),
]


@pytest.mark.parametrize("name, value, valid_range", RECONSTRUCT_CASES)
def test_nonsense_reconstruct_arguments_raise(simulated, name, value, valid_range):
    compressed, _ = simulated
    ptycho = CompressedMultislicePtychography(datacube=compressed, **COMMON)
    ptycho.preprocess(**PREPROCESS)
    options = {**RECONSTRUCT, "num_iter": 1, name: value}
    with pytest.raises(ValueError, match=_range_error(name, value, valid_range)):
        ptycho.reconstruct(**options)
    assert not hasattr(ptycho, "error_iterations") or not ptycho.error_iterations
