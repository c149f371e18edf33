"""Tests of CompressedMultislicePtychography on tiny data (8x8 positions, 32x32 px, 2 slices).

The data are simulated with py4DSTEM's own multislice forward model, so the ground-truth
potential lives in exactly the object frame the reconstruction uses.
"""

from __future__ import annotations

import numpy as np
import py4DSTEM
import pytest
from py4DSTEM.process.phase import MultislicePtychography

import py4dstem_compressed as pc
from py4dstem_compressed.analysis.evaluation import KNOWN_ROTATION_PREPROCESS_KWARGS
from py4dstem_compressed.core.calibration import calibrate
from py4dstem_compressed.reconstruction.options import DataStepOptions, ProjectionWeights
from py4dstem_compressed.reconstruction.projection import descan_ramp, project_values
from py4dstem_compressed.reconstruction.ptychography import CompressedMultislicePtychography

try:
    import cupy as cp

    cp.cuda.runtime.getDeviceCount()
except Exception:
    cp = None

ENERGY = 80e3
SEMIANGLE = 20.0  # mrad
ANGULAR_SAMPLING = 4.0  # mrad / px
SCAN_STEP = 0.6  # Å
DETECTOR = 32
CENTER = (16, 16)
COMMON = dict(
    energy=ENERGY,
    num_slices=2,
    slice_thicknesses=4.0,
    semiangle_cutoff=SEMIANGLE,
    object_type="potential",
    verbose=False,
)
PREPROCESS = KNOWN_ROTATION_PREPROCESS_KWARGS
RECONSTRUCT = dict(max_batch_size=16, seed_random=1, progress_bar=False, step_size=0.5)


def _calibrated(data: np.ndarray) -> py4DSTEM.DataCube:
    datacube = py4DSTEM.DataCube(data=data.astype(np.float32))
    calibrate(datacube, SCAN_STEP, ANGULAR_SAMPLING)
    return datacube


def _truth_potential(shape, sampling, rng):
    """Two slices of Gaussian atoms on a 2 Å square lattice with two vacancies [rad]."""
    x = np.arange(shape[0]) * sampling[0]
    y = np.arange(shape[1]) * sampling[1]
    xx, yy = np.meshgrid(x, y, indexing="ij")
    slices = np.zeros((2, *shape), np.float32)
    for s, offset in enumerate((0.0, 1.0)):
        for ax in np.arange(offset, x[-1], 2.0):
            for ay in np.arange(offset, y[-1], 2.0):
                if rng.random() < 0.1:
                    continue
                slices[s] += 0.4 * np.exp(-((xx - ax) ** 2 + (yy - ay) ** 2) / (2 * 0.25**2))
    return slices


def _simulate(descan_px=(0.0, 0.0), seed=0, source_offsets=((0.0, 0.0),)):
    """Patterns (detector frame, centre at CENTER) and the true potential.

    ``source_offsets`` [object px]: the intensities of the scan shifted by each offset are
    averaged (an incoherent source); the default is one coherent probe.
    """
    dummy = np.zeros((8, 8, DETECTOR, DETECTOR), np.float32)
    dummy[:, :, CENTER[0], CENTER[1]] = 1
    sim = MultislicePtychography(datacube=_calibrated(dummy), **COMMON).preprocess(
        force_com_shifts=(float(CENTER[0]), float(CENTER[1])), **PREPROCESS
    )
    truth = _truth_potential(sim._object.shape[-2:], sim.sampling, np.random.default_rng(seed))
    num = sim._positions_px.shape[0]
    ramps = np.linspace(0, 1, num)[:, None] * np.asarray(descan_px, np.float64)[None]
    intensities = 0.0
    for offset in source_offsets:
        positions = sim._positions_px + np.asarray(offset, np.float32)
        fractional = positions - np.round(positions)
        rows, cols = sim._extract_vectorized_patch_indices(positions)
        probes = sim._return_shifted_probes(sim._probe, fractional)
        _, _, exit_waves = sim._overlap_projection(truth, rows, cols, probes)
        exit_waves = exit_waves * descan_ramp(ramps, exit_waves.shape[-2:])
        intensities = intensities + np.abs(np.fft.fft2(exit_waves)) ** 2
    intensities = np.roll(intensities / len(source_offsets), CENTER, axis=(-2, -1))
    return _calibrated(intensities.reshape(8, 8, DETECTOR, DETECTOR)), truth


@pytest.fixture(scope="module")
def simulated():
    return _simulate()


@pytest.fixture(scope="module")
def geometry():
    return pc.DetectorGeometry((DETECTOR, DETECTOR), CENTER, SEMIANGLE / ANGULAR_SAMPLING + 0.5)


def _complete_basis(geometry):
    bf, df = geometry.bf.ravel(), geometry.df.ravel()
    eye = np.eye(bf.size, dtype=np.float32)
    masks = np.concatenate([eye[bf], eye[df]]).reshape(-1, *geometry.shape)
    return pc.Basis(masks, int(bf.sum()), int(df.sum()), geometry)


def _correlation(reconstruction, truth):
    """Pearson correlation of projected potentials inside the scanned field of view."""
    fov = reconstruction._object_fov_mask
    a = np.asarray(reconstruction.object).sum(0)[fov]
    b = truth.sum(0)[fov]
    return float(np.corrcoef(a, b)[0, 1])


def _run(ptycho, num_iter=4, preprocess=None, **kwargs):
    ptycho.preprocess(**{**PREPROCESS, **(preprocess or {})})
    return ptycho.reconstruct(num_iter=num_iter, **{**RECONSTRUCT, **kwargs})


def test_complete_basis_gives_the_same_iterates_as_py4dstem(simulated, geometry):
    datacube, _ = simulated
    shifts = {"force_com_shifts": (float(CENTER[0]), float(CENTER[1]))}
    # the same initial probe: py4DSTEM scales its probe by the mean intensity of the shifted
    # patterns, which differs in the last bits from the stored totals, and the first phase
    # retrieval step amplifies such differences where the predicted far field is ~0
    first = MultislicePtychography(datacube=datacube, **COMMON).preprocess(**PREPROCESS, **shifts)
    probe = first._probe.astype(np.complex64)
    plain = _run(
        MultislicePtychography(datacube=datacube, initial_probe_guess=probe.copy(), **COMMON),
        3,
        shifts,
    )
    compressed = _run(
        CompressedMultislicePtychography(
            datacube=datacube,
            basis=_complete_basis(geometry),
            initial_probe_guess=probe.copy(),
            **COMMON,
        ),
        3,
        shifts,
    )
    assert compressed._num_diffraction_patterns == 64
    np.testing.assert_allclose(compressed.object, plain.object, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(compressed.probe, plain.probe, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(compressed.error_iterations, plain.error_iterations, rtol=1e-4)


@pytest.mark.parametrize("kind", ["zernike", "diffraction_pattern"])
def test_compressed_reconstruction_converges_and_correlates_with_truth(simulated, geometry, kind):
    datacube, truth = simulated
    if kind == "zernike":
        basis = pc.zernike_basis(geometry, num_bf=21, num_df=1)
    else:
        basis = pc.diffraction_pattern_basis(datacube, geometry, num_bf=12, num_df=1, seed=0)
    compressed = pc.compress(datacube, basis, progress_bar=False)
    ptycho = _run(CompressedMultislicePtychography(datacube=compressed, **COMMON), 8)
    errors = ptycho.error_iterations
    assert errors[-1] < 0.5 * errors[0]
    assert _correlation(ptycho, truth) > 0.8


def test_compressed_preprocess_gives_the_full_data_rotation(simulated, geometry):
    datacube, _ = simulated
    options = {**PREPROCESS, "force_com_rotation": None, "force_com_transpose": None}
    plain = MultislicePtychography(datacube=datacube, **COMMON).preprocess(**options)
    compressed = pc.compress(datacube, pc.zernike_basis(geometry, 10, 1), progress_bar=False)
    ours = CompressedMultislicePtychography(datacube=compressed, **COMMON).preprocess(**options)
    assert ours._rotation_best_rad == pytest.approx(plain._rotation_best_rad, abs=1e-6)
    assert ours._rotation_best_transpose == plain._rotation_best_transpose
    np.testing.assert_allclose(ours._positions_px, plain._positions_px, atol=1e-4)
    assert ours._mean_diffraction_intensity == pytest.approx(
        plain._mean_diffraction_intensity, rel=1e-4
    )
    # memory: one row of K + 4 numbers per position, no per-pixel patterns
    assert ours._compressed_rows.shape == (64, compressed.num_masks + 4)
    # the field of view (probe overlaps by one convolution) is py4DSTEM's to a boundary pixel
    differ = ours._object_fov_mask != plain._object_fov_mask
    assert differ.sum() <= 0.02 * plain._object_fov_mask.sum()


def test_edge_weight_one_zeroes_edge_pixels_of_the_prediction(simulated):
    datacube, _ = simulated
    narrow = pc.DetectorGeometry((DETECTOR, DETECTOR), CENTER, 5.5, df_radius=9.0)
    compressed = pc.compress(datacube, pc.zernike_basis(narrow, 10, 1), progress_bar=False)
    ptycho = _run(CompressedMultislicePtychography(datacube=compressed, **COMMON), 1)
    overlap = np.ones((2, DETECTOR, DETECTOR), np.complex64)
    rows = np.asarray(ptycho._compressed_rows[:2])
    zero_edge = DataStepOptions(weights=ProjectionWeights(edge=1.0))
    modified, *_ = ptycho._fourier_data_step(rows, np.fft.ifft2(overlap * 3), zero_edge)
    edge = ptycho._operator.edge_map.reshape(DETECTOR, DETECTOR) > 0
    assert edge.any() and np.all(modified[:, edge] == 0)
    keep_edge = DataStepOptions(weights=ProjectionWeights(edge=0.0))
    modified, *_ = ptycho._fourier_data_step(rows, np.fft.ifft2(overlap * 3), keep_edge)
    np.testing.assert_allclose(np.abs(modified[:, edge]), 3, rtol=1e-5)


def test_perpendicular_weight_moves_the_orthogonal_norm_to_the_data(simulated, geometry):
    datacube, _ = simulated
    compressed = pc.compress(datacube, pc.zernike_basis(geometry, 6, 1), progress_bar=False)
    ptycho = _run(CompressedMultislicePtychography(datacube=compressed, **COMMON), 1)
    op = ptycho._operator
    rows = np.asarray(ptycho._compressed_rows[:4])
    measured = rows[:, op.num_masks : op.num_masks + 2]
    waves = np.fft.ifft2(np.random.default_rng(0).random((4, DETECTOR, DETECTOR)) + 0j)

    def orthogonal_norms(weight, clip=True):
        options = DataStepOptions(
            weights=ProjectionWeights(perpendicular=weight, edge=0.0),
            match_energy=False,  # the literal Eq. 11 step in both regions
        )
        modified, fourier, *_ = ptycho._fourier_data_step(rows, waves, options)
        amp = np.abs(modified if clip else fourier).reshape(4, -1)
        orth = amp - (amp @ op.masks.T) @ op.masks
        return np.sqrt((orth**2) @ op.region_maps.T)

    untouched = orthogonal_norms(0.0)
    full = orthogonal_norms(1.0)
    assert np.abs(full - measured).sum() < 0.2 * np.abs(untouched - measured).sum()
    # without the final clip at 0 the projection hits the measured norms exactly
    amp = np.abs(np.fft.fft2(waves)).reshape(4, -1)
    projected, _ = project_values(
        amp,
        rows[:, : op.num_masks],
        op,
        measured,
        DataStepOptions(weights=ProjectionWeights(perpendicular=1.0, edge=0.0), match_energy=False),
    )
    orth = projected - (projected @ op.masks.T) @ op.masks
    np.testing.assert_allclose(np.sqrt((orth**2) @ op.region_maps.T), measured, rtol=1e-4)


def test_dark_field_energy_matches_the_measured_intensity(simulated, geometry):
    """With one DF mask the DF prediction is rescaled to the measured DF intensity c^2 + p^2."""
    datacube, _ = simulated
    basis = pc.zernike_basis(geometry, 6, 1)
    compressed = pc.compress(datacube, basis, progress_bar=False)
    ptycho = _run(CompressedMultislicePtychography(datacube=compressed, **COMMON), 1)
    op = ptycho._operator
    rows = np.asarray(ptycho._compressed_rows[:4])
    k = op.num_masks
    coefficients, norms = rows[:, :k], rows[:, k : k + 2]
    waves = np.random.default_rng(1).random((4, DETECTOR, DETECTOR))
    amp = np.abs(np.fft.fft2(waves)).reshape(4, -1).astype(np.float32)
    df_mask = int(np.flatnonzero(np.asarray(op.mask_regions)[1])[0])
    measured_df_energy = coefficients[:, df_mask] ** 2 + norms[:, 1] ** 2
    weights = ProjectionWeights(edge=0.0)
    projected, _ = project_values(amp, coefficients, op, norms, DataStepOptions(weights=weights))
    df = np.asarray(op.region_maps)[1]
    np.testing.assert_allclose((projected**2) @ df, measured_df_energy, rtol=1e-3)
    # the DF pattern keeps the predicted shape (one common factor per pattern)
    ratio = projected[:, df > 0] / amp[:, df > 0]
    np.testing.assert_allclose(ratio, np.broadcast_to(ratio[:, :1], ratio.shape), rtol=1e-3)
    # without energy matching the DF coefficient is matched instead
    projected, _ = project_values(
        amp, coefficients, op, norms, DataStepOptions(weights=weights, match_energy=False)
    )
    np.testing.assert_allclose(
        projected @ np.asarray(op.masks)[df_mask], coefficients[:, df_mask], rtol=1e-4
    )


def test_probe_aperture_weight_removes_probe_power_outside_the_aperture(simulated, geometry):
    datacube, _ = simulated
    compressed = pc.compress(datacube, pc.zernike_basis(geometry, 10, 1), progress_bar=False)

    def outside_power(weight):
        ptycho = _run(
            CompressedMultislicePtychography(datacube=compressed, **COMMON),
            2,
            probe_aperture_weight=weight,
        )
        outside = np.asarray(ptycho._probe_outside_aperture())
        power = np.abs(np.fft.fft2(np.asarray(ptycho._probe))) ** 2
        return power[outside].sum() / power.sum()

    assert outside_power(1.0) < 1e-8 < outside_power(0.0)


def test_descan_is_followed_by_the_prediction(geometry):
    datacube, truth = _simulate(descan_px=(2.0, -1.5))
    basis = pc.zernike_basis(geometry, 21, 1)
    compressed = pc.compress(datacube, basis, progress_bar=False, check_center=False, descan=None)
    ptycho = _run(CompressedMultislicePtychography(datacube=compressed, **COMMON), 30)
    assert ptycho._has_descan
    shifts = np.asarray(ptycho._compressed_rows[:, -2:])
    assert np.ptp(shifts[:, 0]) == pytest.approx(2.0, abs=0.1)
    assert _correlation(ptycho, truth) > 0.8


def test_descan_aware_compression_leaves_the_sub_pixel_remainder_to_the_model(geometry):
    datacube, truth = _simulate(descan_px=(2.0, -1.5))
    basis = pc.zernike_basis(geometry, 21, 1)
    compressed = pc.compress(datacube, basis, progress_bar=False)  # descan="auto"
    moved = compressed.descan_shift_px.reshape(-1, 2)
    assert np.ptp(moved[:, 0]) == 2 and np.ptp(moved[:, 1]) in (1, 2)
    ptycho = _run(CompressedMultislicePtychography(datacube=compressed, **COMMON), 30)
    remainder = np.asarray(ptycho._compressed_rows[:, -2:])
    # the fitted descan minus the masks' whole-pixel shifts: at most half a pixel plus
    # the fit's own deviation from the rounded plane
    assert np.abs(remainder - remainder.mean(0)).max() < 0.75
    assert _correlation(ptycho, truth) > 0.8


def test_position_correction_from_coefficients_reduces_position_error(simulated, geometry):
    datacube, truth = simulated
    compressed = pc.compress(datacube, pc.zernike_basis(geometry, 21, 1), progress_bar=False)
    reference = CompressedMultislicePtychography(
        datacube=compressed, initial_object_guess=truth.copy(), **COMMON
    ).preprocess(**PREPROCESS)
    true_positions = np.asarray(reference._positions_px, dtype=np.float64)
    rng = np.random.default_rng(3)
    noisy_px = true_positions + rng.normal(scale=0.4, size=true_positions.shape)
    # known rotation 0, no transpose: scan positions [A] are object pixels times the sampling
    ptycho = CompressedMultislicePtychography(
        datacube=compressed,
        initial_object_guess=truth.copy(),
        initial_scan_positions=noisy_px * np.asarray(reference.sampling),
        **COMMON,
    ).preprocess(**PREPROCESS)
    before = np.abs(ptycho._positions_px - true_positions).mean()
    ptycho.reconstruct(
        num_iter=4,
        reset=False,
        fix_positions=False,
        fix_positions_com=False,
        fix_probe=True,
        max_position_update_distance=0.1,
        **RECONSTRUCT,
    )
    after = np.abs(ptycho._positions_px - true_positions).mean()
    assert after < 0.85 * before, (before, after)
    # py4DSTEM's plot of the position updates reads the datacube's scan shape (Rshape)
    import matplotlib.pyplot as plt

    ptycho.show_updated_positions(plot_arrow_freq=2)
    assert plt.get_fignums()


@pytest.mark.parametrize(
    "method, parameters",
    [
        ("DM_AP", {}),
        ("RAAR", {"reconstruction_parameter": 0.8}),
        (
            "generalized-projections",
            {
                "reconstruction_parameter_a": -1.0,
                "reconstruction_parameter_b": 1.0,
                "reconstruction_parameter_c": 2.0,
            },
        ),
    ],
)
def test_projection_set_methods(simulated, geometry, method, parameters):
    datacube, _ = simulated
    compressed = pc.compress(datacube, pc.zernike_basis(geometry, 21, 1), progress_bar=False)
    ptycho = CompressedMultislicePtychography(datacube=compressed, **COMMON)
    ptycho.preprocess(**PREPROCESS)
    options = {"seed_random": 1, "progress_bar": False, **parameters}
    ptycho.reconstruct(num_iter=4, reconstruction_method=method, **options)
    assert np.all(np.isfinite(ptycho.error_iterations))
    assert ptycho.error_iterations[-1] < ptycho.error_iterations[0]


def test_intensity_mode_reconstructs(simulated, geometry):
    datacube, truth = simulated
    basis = pc.diffraction_pattern_basis(
        datacube, geometry, num_bf=12, num_df=1, seed=0, mode="intensity"
    )
    compressed = pc.compress(datacube, basis, mode="intensity", progress_bar=False)
    ptycho = _run(CompressedMultislicePtychography(datacube=compressed, **COMMON), 8)
    assert ptycho.error_iterations[-1] < ptycho.error_iterations[0]
    assert _correlation(ptycho, truth) > 0.7


def test_save_and_read_round_trip(simulated, geometry, tmp_path):
    datacube, _ = simulated
    compressed = pc.compress(datacube, pc.zernike_basis(geometry, 10, 1), progress_bar=False)
    ptycho = _run(
        CompressedMultislicePtychography(datacube=compressed, **COMMON), 2, edge_weight=0.5
    )
    path = tmp_path / "reconstruction.h5"
    py4DSTEM.save(str(path), ptycho, mode="o")
    loaded = py4DSTEM.read(str(path))
    assert isinstance(loaded, CompressedMultislicePtychography)
    np.testing.assert_allclose(loaded.object, ptycho.object)
    np.testing.assert_allclose(loaded.probe, ptycho.probe)
    assert loaded.error_iterations == pytest.approx(ptycho.error_iterations)
    assert loaded._compression_mode == "amplitude"
    assert loaded.data_step_options.weights.edge == 0.5
    np.testing.assert_array_equal(loaded._basis.masks, compressed.basis.masks)


def test_reconstruction_reads_in_a_fresh_process(simulated, geometry, tmp_path):
    import subprocess
    import sys

    datacube, _ = simulated
    compressed = pc.compress(datacube, pc.zernike_basis(geometry, 10, 1), progress_bar=False)
    ptycho = _run(CompressedMultislicePtychography(datacube=compressed, **COMMON), 1)
    path = tmp_path / "reconstruction.h5"
    py4DSTEM.save(str(path), ptycho, mode="o")
    np.save(tmp_path / "object.npy", ptycho.object)
    code = (
        "import numpy as np, py4DSTEM, py4dstem_compressed as pc\n"
        f"p = py4DSTEM.read({str(path)!r})\n"
        "assert type(p) is pc.CompressedMultislicePtychography, type(p)\n"
        f"np.testing.assert_allclose(p.object, np.load({str(tmp_path / 'object.npy')!r}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_visualize_and_displays(simulated, geometry):
    datacube, _ = simulated
    compressed = pc.compress(datacube, pc.zernike_basis(geometry, 6, 1), progress_bar=False)
    ptycho = _run(CompressedMultislicePtychography(datacube=compressed, **COMMON), 1)
    assert ptycho.visualize() is ptycho
    assert ptycho.show_basis() is not None
    assert ptycho.show_coefficients() is not None


def test_datacube_input_is_compressed_in_preprocess(simulated, geometry):
    datacube, _ = simulated
    basis = pc.zernike_basis(geometry, 10, 1)
    ptycho = CompressedMultislicePtychography(
        datacube=datacube, basis=basis, compression_mode="amplitude", **COMMON
    ).preprocess(**PREPROCESS)
    assert isinstance(ptycho._datacube, pc.CompressedDataCube)
    assert ptycho._compressed_rows.shape == (64, 15)


def test_bad_inputs_raise_clear_errors(simulated, geometry):
    datacube, _ = simulated
    other = pc.zernike_basis(pc.DetectorGeometry((40, 40), (20, 20), 5.0), 6, 1)
    with pytest.raises(ValueError, match="basis was built for a"):
        CompressedMultislicePtychography(datacube=datacube, basis=other, **COMMON)
    with pytest.raises(ValueError, match="needs basis="):
        CompressedMultislicePtychography(datacube=datacube, **COMMON)
    compressed = pc.compress(datacube, pc.zernike_basis(geometry, 6, 1), progress_bar=False)
    # compressing a plain array: a real CompressedDataCube with py4DSTEM's default
    # calibration in pixels
    uncalibrated = pc.compress(
        np.asarray(datacube.data), pc.zernike_basis(geometry, 6, 1), progress_bar=False
    )
    assert uncalibrated.calibration.get_R_pixel_units() == "pixels"
    ptycho = CompressedMultislicePtychography(datacube=uncalibrated, **COMMON)
    with pytest.raises(ValueError, match="has no calibration"):
        ptycho.preprocess(**PREPROCESS)
    ptycho = CompressedMultislicePtychography(datacube=compressed, **COMMON)
    ptycho.preprocess(**PREPROCESS)
    with pytest.raises(ValueError, match="unknown weight 'egde'"):
        ptycho.reconstruct(num_iter=1, weights={"edge": 1.0, "egde": 1.0})
    with pytest.raises(ValueError, match="edge_weigth"):
        ptycho.reconstruct(num_iter=1, edge_weigth=1.0)
    with pytest.raises(ValueError, match="compression_mode"):
        CompressedMultislicePtychography(
            datacube=compressed, compression_mode="intensity", **COMMON
        )


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "gpu", marks=[pytest.mark.gpu, pytest.mark.skipif(cp is None, reason="no GPU")]
        ),
    ],
)
def test_devices(simulated, geometry, device):
    datacube, _ = simulated
    compressed = pc.compress(datacube, pc.zernike_basis(geometry, 10, 1), progress_bar=False)
    ptycho = CompressedMultislicePtychography(datacube=compressed, device=device, **COMMON)
    _run(ptycho, 2)
    assert np.all(np.isfinite(ptycho.error_iterations))


def test_dark_field_energy_matching_is_the_same_rule_for_every_dataset(simulated, geometry):
    """Noise-free fractions of the beam and sparse counts: the DF energy is matched alike."""
    datacube, _ = simulated
    basis = pc.zernike_basis(geometry, 6, 1)
    clean = _run(
        CompressedMultislicePtychography(
            datacube=pc.compress(datacube, basis, progress_bar=False), **COMMON
        ),
        1,
    )
    assert clean.data_step_options.match_energy == (False, True)
    rng = np.random.default_rng(0)
    data = np.asarray(datacube.data, dtype=np.float64)
    counts = rng.poisson(data * 300.0 / data.sum(axis=(2, 3)).mean()).astype(np.float32)
    sparse = _run(
        CompressedMultislicePtychography(
            datacube=pc.compress(_calibrated(counts), basis, progress_bar=False), **COMMON
        ),
        1,
    )
    assert sparse.data_step_options.match_energy == (False, True)
    again = dict(reset=True)
    assert _run(clean, 1, match_region_energy=True, **again).data_step_options.match_energy == (
        True,
        True,
    )
    assert _run(clean, 1, match_region_energy=False, **again).data_step_options.match_energy == (
        False,
        False,
    )
    with pytest.warns(FutureWarning, match="auto"):
        auto = _run(clean, 1, match_region_energy="auto", **again)
    assert auto.data_step_options.match_energy == (False, True)
    for bad in ("sometimes", 1, None):
        with pytest.raises(ValueError, match="match_region_energy"):
            _run(clean, 1, match_region_energy=bad, **again)


def test_dark_field_shape_matching_is_opt_in_and_acts_where_energy_is_not_matched(
    simulated, geometry
):
    """``match_region_shape``: off by default; reshapes an unmatched-energy DF; checked input."""
    datacube, _ = simulated
    compressed = pc.compress(datacube, pc.zernike_basis(geometry, 6, 1), progress_bar=False)

    def run(**kwargs):
        ptycho = CompressedMultislicePtychography(datacube=compressed, **COMMON)
        return _run(ptycho, 2, **kwargs)

    coefficient = dict(match_region_energy=False)  # shape matching acts only there
    default = run(**coefficient)
    shaped = run(match_region_shape=True, **coefficient)
    unshaped = run(match_region_shape=False, **coefficient)
    assert any(shaped.data_step_options.match_shape)
    assert not any(default.data_step_options.match_shape)
    np.testing.assert_array_equal(default.object, unshaped.object)
    assert not np.allclose(shaped.object, unshaped.object)
    # with the DF energy matched (the default) the shape step has nothing to do
    energy = run(match_region_shape=True)
    np.testing.assert_array_equal(energy.object, run().object)
    with pytest.raises(ValueError, match="match_region_shape"):
        run(match_region_shape="auto")
