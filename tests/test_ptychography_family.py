"""The compressed twins of py4DSTEM's single-slice and mixed-state ptychography classes.

Tiny scans (8x8 positions, 32x32 px) simulated with py4DSTEM's own multislice forward model
(``tests/test_ptychography.py``); the partially coherent scan sums the intensities of the
same scan shifted by a few sub-Ångström source offsets (an incoherent source, ``_simulate``'s
``source_offsets``).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import py4DSTEM
import pytest
from py4DSTEM.process.phase import (
    MixedstateMultislicePtychography,
    MixedstatePtychography,
    SingleslicePtychography,
)
from test_ptychography import (
    ANGULAR_SAMPLING,
    CENTER,
    COMMON,
    DETECTOR,
    PREPROCESS,
    RECONSTRUCT,
    SEMIANGLE,
    _complete_basis,
    _run,
    _simulate,
)

import py4dstem_compressed as pc
from py4dstem_compressed.reconstruction.operator import CompressedOperator
from py4dstem_compressed.reconstruction.projection import fourier_projection

OPTICS = dict(
    energy=COMMON["energy"],
    semiangle_cutoff=SEMIANGLE,
    object_type="potential",
    verbose=False,
)
SLICES = dict(num_slices=COMMON["num_slices"], slice_thicknesses=COMMON["slice_thicknesses"])
NUM_PROBES = 2
#: name -> (compressed class, py4DSTEM class, class keywords)
CLASSES = {
    "singleslice": (pc.CompressedSingleslicePtychography, SingleslicePtychography, {}),
    "mixedstate": (
        pc.CompressedMixedstatePtychography,
        MixedstatePtychography,
        {"num_probes": NUM_PROBES},
    ),
    "mixedstate_multislice": (
        pc.CompressedMixedstateMultislicePtychography,
        MixedstateMultislicePtychography,
        {"num_probes": NUM_PROBES, **SLICES},
    ),
}
SHIFTS = {"force_com_shifts": (float(CENTER[0]), float(CENTER[1]))}
#: source offsets [object px] of the partially coherent scan (~0.3 Å apart)
SOURCE_OFFSETS = ((0.0, 0.0), (1.0, 0.0), (-1.0, 0.0), (0.0, 1.0), (0.0, -1.0))


@pytest.fixture(scope="module")
def simulated():
    return _simulate()


@pytest.fixture(scope="module")
def partially_coherent():
    return _simulate(source_offsets=SOURCE_OFFSETS)


@pytest.fixture(scope="module")
def geometry():
    return pc.DetectorGeometry((DETECTOR, DETECTOR), CENTER, SEMIANGLE / ANGULAR_SAMPLING + 0.5)


def _projected(ptycho) -> np.ndarray:
    """Projected potential of a reconstruction (summed over slices, if any) [rad]."""
    obj = np.asarray(ptycho.object)
    return obj.sum(0) if obj.ndim == 3 else obj


def _correlation(ptycho, truth) -> float:
    fov = ptycho._object_fov_mask
    return float(np.corrcoef(_projected(ptycho)[fov], truth.sum(0)[fov])[0, 1])


@pytest.mark.parametrize("kind", list(CLASSES))
def test_complete_basis_gives_the_same_iterates_as_py4dstem(simulated, geometry, kind):
    compressed_cls, plain_cls, keywords = CLASSES[kind]
    datacube, _ = simulated
    # the same initial probe (modes) for both: py4DSTEM draws the phase ramps of the extra
    # modes at random, and scales the probe by the mean intensity of the shifted patterns
    first = plain_cls(datacube=datacube, **keywords, **OPTICS).preprocess(**PREPROCESS, **SHIFTS)
    probe = np.asarray(first._probe).astype(np.complex64)
    plain = _run(
        plain_cls(datacube=datacube, initial_probe_guess=probe.copy(), **keywords, **OPTICS),
        3,
        SHIFTS,
    )
    compressed = _run(
        compressed_cls(
            datacube=datacube,
            basis=_complete_basis(geometry),
            initial_probe_guess=probe.copy(),
            **keywords,
            **OPTICS,
        ),
        3,
        SHIFTS,
    )
    assert isinstance(compressed, plain_cls)
    assert np.asarray(compressed.probe).shape == np.asarray(plain.probe).shape
    np.testing.assert_allclose(compressed.object, plain.object, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(compressed.probe, plain.probe, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(compressed.error_iterations, plain.error_iterations, rtol=1e-4)


@pytest.mark.parametrize("mode", ["amplitude", "intensity"])
def test_mixed_state_data_step_matches_the_incoherent_sum_with_one_factor_per_pixel(geometry, mode):
    """Complete basis: the sum over modes gets the measured amplitude; modes keep their ratios."""
    rng = np.random.default_rng(0)
    shape = (3, NUM_PROBES, DETECTOR, DETECTOR)
    far = (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)
    basis = _complete_basis(geometry)
    operator = CompressedOperator.from_detector(
        basis.masks, geometry.bf, geometry.df, (0, 0), mode=mode
    )
    measured = rng.random((3, DETECTOR * DETECTOR)).astype(np.float32) + 0.5
    measured *= operator.region_maps.sum(0)  # nothing measured on EDGE pixels
    coefficients = measured @ operator.masks.T
    modified, _ = fourier_projection(far, coefficients, operator)
    incoherent = np.sqrt((np.abs(modified) ** 2).sum(1)).reshape(3, -1)
    wanted = np.sqrt(measured) if mode == "intensity" else measured
    np.testing.assert_allclose(incoherent, wanted, rtol=1e-4, atol=1e-6)
    factor = modified / far  # one real, non-negative factor per pixel, the same for every mode
    np.testing.assert_allclose(factor[:, 1], factor[:, 0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(factor.imag, 0, atol=1e-4)


@pytest.mark.parametrize("kind", list(CLASSES))
def test_reconstructions_correlate_with_the_truth(simulated, partially_coherent, geometry, kind):
    compressed_cls, _, keywords = CLASSES[kind]
    # single mode on coherent data, probe modes on the partially coherent scan
    datacube, truth = simulated if kind == "singleslice" else partially_coherent
    compressed = pc.compress(datacube, pc.zernike_basis(geometry, 21, 1), progress_bar=False)
    ptycho = _run(compressed_cls(datacube=compressed, **keywords, **OPTICS), 8)
    errors = ptycho.error_iterations
    assert errors[-1] < 0.5 * errors[0]
    assert _correlation(ptycho, truth) > 0.8
    if "num_probes" in keywords:
        assert np.asarray(ptycho.probe).shape == (NUM_PROBES, DETECTOR, DETECTOR)
    assert ptycho.visualize() is ptycho


@pytest.mark.parametrize("kind", list(CLASSES))
def test_position_correction_from_coefficients_reduces_position_error(simulated, geometry, kind):
    compressed_cls, _, keywords = CLASSES[kind]
    datacube, truth = simulated
    guess = truth.copy() if "num_slices" in keywords else truth.sum(0)
    compressed = pc.compress(datacube, pc.zernike_basis(geometry, 21, 1), progress_bar=False)

    def build(**extra):
        return compressed_cls(
            datacube=compressed, initial_object_guess=guess.copy(), **keywords, **OPTICS, **extra
        ).preprocess(**PREPROCESS)

    reference = build()
    true_positions = np.asarray(reference._positions_px, dtype=np.float64)
    extra = {}
    if "num_probes" in keywords:
        # the probe is held fixed: py4DSTEM's initial modes are full-intensity copies of the
        # first one; keep the first (the simulation's probe) and make the others weak
        modes = np.asarray(reference._probe).copy()
        modes[1:] *= 0.05
        extra["initial_probe_guess"] = modes
    rng = np.random.default_rng(3)
    noisy_px = true_positions + rng.normal(scale=0.4, size=true_positions.shape)
    # known rotation 0, no transpose: scan positions [Å] are object pixels times the sampling
    sampling = np.asarray(reference.sampling)
    ptycho = build(initial_scan_positions=noisy_px * sampling, **extra)
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


def test_reconstructions_read_back_in_a_fresh_process(simulated, geometry, tmp_path):
    datacube, _ = simulated
    compressed = pc.compress(datacube, pc.zernike_basis(geometry, 10, 1), progress_bar=False)
    masks = tmp_path / "masks.npy"
    np.save(masks, compressed.basis.masks)
    checks = ["import numpy as np, py4DSTEM, py4dstem_compressed as pc"]
    for kind, (compressed_cls, _, keywords) in CLASSES.items():
        ptycho = _run(compressed_cls(datacube=compressed, **keywords, **OPTICS), 1, edge_weight=0.5)
        path = tmp_path / f"{kind}.h5"
        py4DSTEM.save(str(path), ptycho, mode="o")
        np.save(tmp_path / f"{kind}_o.npy", ptycho.object)
        np.save(tmp_path / f"{kind}_p.npy", ptycho.probe)
        checks += [
            f"p = py4DSTEM.read({str(path)!r})",
            f"assert type(p) is pc.{compressed_cls.__name__}, type(p)",
            f"np.testing.assert_allclose(p.object, np.load({str(tmp_path / kind)!r} + '_o.npy'))",
            f"np.testing.assert_allclose(p.probe, np.load({str(tmp_path / kind)!r} + '_p.npy'))",
            "assert p.data_step_options.weights.edge == 0.5",
            f"assert getattr(p, '_num_probes', None) == {keywords.get('num_probes')!r}",
            f"np.testing.assert_array_equal(p._basis.masks, np.load({str(masks)!r}))",
        ]
    code = "\n".join(checks)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_bad_arguments_raise_clear_errors(simulated, geometry):
    datacube, _ = simulated
    for cls in (pc.CompressedMixedstatePtychography, pc.CompressedMixedstateMultislicePtychography):
        keywords = SLICES if cls is pc.CompressedMixedstateMultislicePtychography else {}
        for bad in (0, -1, 1.5, "two"):
            with pytest.raises(ValueError, match="num_probes must be a whole number >= 1"):
                cls(
                    datacube=datacube,
                    basis=_complete_basis(geometry),
                    num_probes=bad,
                    **keywords,
                    **OPTICS,
                )
        with pytest.raises(ValueError, match="num_probes is needed"):
            cls(datacube=datacube, basis=_complete_basis(geometry), **keywords, **OPTICS)
    for cls, _, keywords in CLASSES.values():
        with pytest.raises(ValueError, match="needs basis="):
            cls(datacube=datacube, **keywords, **OPTICS)
        with pytest.raises(ValueError, match="energy"):
            cls(
                **{**OPTICS, "energy": -1.0},
                datacube=datacube,
                basis=_complete_basis(geometry),
                **keywords,
            )
    with pytest.raises(ValueError, match="num_slices not a recognized parameter"):
        pc.CompressedSingleslicePtychography(datacube=datacube, num_slices=2, **OPTICS)
    compressed = pc.compress(datacube, pc.zernike_basis(geometry, 6, 1), progress_bar=False)
    ptycho = pc.CompressedMixedstatePtychography(
        datacube=compressed, num_probes=NUM_PROBES, **OPTICS
    )
    with pytest.raises(ValueError, match="run preprocess"):
        ptycho.reconstruct(num_iter=1)
    ptycho.preprocess(**PREPROCESS)
    # a multislice keyword is not one of MixedstatePtychography.reconstruct's
    with pytest.raises(ValueError, match="tv_denoise_weights"):
        ptycho.reconstruct(num_iter=1, tv_denoise_weights=[0.1, 0.1])
    with pytest.raises(NotImplementedError, match="per-pixel"):
        ptycho.cross_correlate_amplitudes_to_probe_aperture()


def test_mixed_state_probe_overlap_figure_and_field_of_view(simulated, geometry):
    """preprocess' figure shows the modes' summed intensity; the field of view uses mode 0."""
    datacube, _ = simulated
    compressed = pc.compress(datacube, pc.zernike_basis(geometry, 6, 1), progress_bar=False)
    single = pc.CompressedSingleslicePtychography(datacube=compressed, **OPTICS).preprocess(
        **PREPROCESS
    )
    mixed = pc.CompressedMixedstatePtychography(
        datacube=compressed, num_probes=NUM_PROBES, **OPTICS
    ).preprocess(**{**PREPROCESS, "plot_probe_overlaps": True})
    np.testing.assert_array_equal(mixed._object_fov_mask, single._object_fov_mask)
    import matplotlib.pyplot as plt

    titles = [ax.get_title() for ax in plt.gcf().axes]
    assert f"Initial probe intensity (sum of {NUM_PROBES} modes)" in titles


def test_mixed_state_follows_the_descan_with_every_mode(geometry):
    """Descan ramps ``(B, Sx, Sy)`` act on the ``(B, M, Sx, Sy)`` exit waves of all modes."""
    datacube, truth = _simulate(descan_px=(2.0, -1.5))
    basis = pc.zernike_basis(geometry, 21, 1)
    compressed = pc.compress(datacube, basis, progress_bar=False, check_center=False, descan=None)
    ptycho = _run(
        pc.CompressedMixedstatePtychography(datacube=compressed, num_probes=NUM_PROBES, **OPTICS),
        20,
    )
    assert ptycho._has_descan
    assert _correlation(ptycho, truth) > 0.8


@pytest.mark.parametrize("kind", ["mixedstate", "mixedstate_multislice"])
def test_projection_set_method_on_probe_modes(simulated, geometry, kind):
    compressed_cls, _, keywords = CLASSES[kind]
    datacube, _ = simulated
    compressed = pc.compress(datacube, pc.zernike_basis(geometry, 21, 1), progress_bar=False)
    ptycho = compressed_cls(datacube=compressed, **keywords, **OPTICS).preprocess(**PREPROCESS)
    ptycho.reconstruct(num_iter=4, reconstruction_method="RAAR", seed_random=1, progress_bar=False)
    assert np.all(np.isfinite(ptycho.error_iterations))
    assert ptycho.error_iterations[-1] < ptycho.error_iterations[0]
