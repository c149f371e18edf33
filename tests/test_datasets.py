"""Tests of the abTEM-simulated datasets, their presets and their cache."""

import dataclasses
import importlib.metadata
import sys

import numpy as np
import pytest

from py4dstem_compressed.simulation import datasets
from py4dstem_compressed.simulation.presets import PRESETS, SimulationPreset, get_preset


@pytest.fixture(scope="module")
def micro_cache(tmp_path_factory):
    pytest.importorskip("abtem")
    return tmp_path_factory.mktemp("simulation_cache")


@pytest.fixture(scope="module")
def micro(micro_cache):
    return datasets.simulate("micro", cache_dir=micro_cache, progress_bar=False)


# ----------------------------------------------------------------------------- presets


def test_named_presets_are_valid_and_scaled():
    assert set(PRESETS) == {"micro", "tiny", "small", "paper"}
    tiny, small, paper = PRESETS["tiny"], PRESETS["small"], PRESETS["paper"]
    assert 12 <= min(tiny.scan_gpts) and max(tiny.scan_gpts) <= 16
    assert 48 <= tiny.detector_gpts <= 64
    assert min(small.scan_gpts) >= 24 and small.detector_gpts >= 128 and small.num_slices >= 4
    assert tiny.num_slices >= 4
    assert paper.energy == 60e3 and paper.semiangle_cutoff == 30
    assert paper.detector_gpts > small.detector_gpts
    for preset in PRESETS.values():
        assert preset.name in PRESETS
        assert max(preset.scan_extent) <= preset.field_of_view
        # the detector reaches beyond the bright-field disk: L ~ field of view (up to one cell)
        wavelength = 12.2643 / np.sqrt(preset.energy * (1 + 0.978476e-6 * preset.energy))
        cell = np.ceil(preset.field_of_view / 3.905) * 3.905
        max_angle = 0.5 * preset.detector_gpts * wavelength / cell * 1e3  # [mrad]
        assert max_angle > 2 * preset.semiangle_cutoff


def test_get_preset_overrides_and_validation():
    preset = get_preset("tiny", scan_gpts=[8, 8], detector_gpts=32)
    assert preset.scan_gpts == (8, 8) and preset.detector_gpts == 32
    assert PRESETS["tiny"].detector_gpts == 48  # unchanged
    assert get_preset(preset) is preset
    with pytest.raises(dataclasses.FrozenInstanceError):
        preset.energy = 1.0
    with pytest.raises(TypeError, match="unknown preset field"):
        get_preset("tiny", detector_size=32)
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("huge")
    with pytest.raises(ValueError, match="does not fit"):
        get_preset("tiny", scan_gpts=(64, 64))
    with pytest.raises(ValueError, match="energy"):
        get_preset("tiny", energy=-1)
    assert isinstance(
        SimulationPreset(**{**preset.to_dict(), "scan_gpts": (4, 4)}), SimulationPreset
    )


# ----------------------------------------------------------------------------- simulation


def test_micro_dataset_shapes_and_calibration(micro):
    dc = micro.datacube
    assert dc.data.shape == (8, 8, 32, 32)
    assert dc.data.dtype == np.float32
    cal = dc.calibration
    assert cal.get_R_pixel_size() == pytest.approx(0.5)
    assert cal.get_R_pixel_units() == "A"
    assert cal.get_Q_pixel_units() == "mrad"
    p = micro.parameters
    cell = 2 * datasets.SRTIO3_LATTICE_CONSTANT
    assert cal.get_Q_pixel_size() == pytest.approx(p["wavelength"] / cell * 1e3, rel=1e-6)
    assert p["detector_max_angle"] > p["semiangle_cutoff"]
    assert p["num_slices"] == 2 and p["slice_thickness"] == pytest.approx(cell / 2)
    assert micro.slice_potentials.shape[0] == 2
    assert micro.projected_potential.shape == micro.slice_potentials.shape[1:]
    np.testing.assert_allclose(micro.slice_potentials.sum(0), micro.projected_potential)
    assert micro.scan_extent == (4.0, 4.0)
    np.testing.assert_allclose(micro.scan_start, (cell - 4.0) / 2)
    n = round(4.0 / micro.potential_sampling[0])  # 4 A at ~0.1 A
    assert micro.scanned_potential().shape == (n, n)
    assert micro.scanned_potential(slices=True).shape == (2, n, n)
    assert (
        micro.scanned_potential(margin=1.0).shape
        == (n + 2 * round(1.0 / micro.potential_sampling[0]),) * 2
    )
    kwargs = micro.reconstruction_kwargs()
    assert kwargs["energy"] == 80e3 and kwargs["num_slices"] == 2
    # infinite dose: each pattern holds (almost) the whole beam, centred, with dark field
    sums = dc.data.sum(axis=(2, 3))
    assert np.all((sums > 0.9) & (sums <= 1.0 + 1e-5))
    mean = dc.data.mean(axis=(0, 1))
    q = np.arange(32) - 16
    com = [np.sum(mean.sum(1) * q) / mean.sum(), np.sum(mean.sum(0) * q) / mean.sum()]
    np.testing.assert_allclose(com, 0, atol=1.0)
    bf_radius_px = p["semiangle_cutoff"] / cal.get_Q_pixel_size()
    radius = np.hypot(q[:, None], q[None, :])
    assert mean[radius > bf_radius_px + 2].sum() > 1e-3  # dark-field signal recorded


def test_ground_truth_is_positive_at_atom_sites(micro):
    truth = micro.projected_potential
    s = micro.potential_sampling[0]
    columns = np.unique(np.round(micro.atoms.positions[:, :2] / s).astype(int), axis=0)
    columns %= truth.shape[0]
    at_atoms = truth[columns[:, 0], columns[:, 1]]
    assert np.all(at_atoms > 0)
    # the empty channel at (a/4, a/4) between the columns lies far below any column
    corner = round(0.25 * 3.905 / s)
    empty = truth[corner, corner]
    assert at_atoms.min() > 3 * empty
    assert micro.parameters["defects"]


def test_cache_second_call_does_not_simulate(micro, micro_cache, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("simulated although cached")

    monkeypatch.setattr(datasets, "_simulate_uncached", fail)
    again = datasets.simulate("micro", cache_dir=micro_cache, progress_bar=False)
    assert again.cache_path == micro.cache_path and again.cache_path.exists()
    np.testing.assert_array_equal(again.datacube.data, micro.datacube.data)
    np.testing.assert_array_equal(again.projected_potential, micro.projected_potential)
    assert again.parameters == micro.parameters
    assert (
        again.datacube.calibration.get_Q_pixel_size()
        == micro.datacube.calibration.get_Q_pixel_size()
    )
    np.testing.assert_allclose(again.atoms.positions, micro.atoms.positions)
    assert again.scan_start == micro.scan_start
    # the environment variable selects the directory
    monkeypatch.setenv(datasets.CACHE_ENV_VARIABLE, str(micro_cache))
    assert datasets.cache_directory() == micro_cache
    assert datasets.simulate("micro", progress_bar=False).cache_path == micro.cache_path


def test_corrupt_cache_file_is_simulated_again(micro, tmp_path):
    kwargs = dict(cache_dir=tmp_path, progress_bar=False)
    first = datasets.simulate("micro", **kwargs)
    first.cache_path.write_bytes(b"not an HDF5 file")
    with pytest.warns(RuntimeWarning, match="simulating again"):
        second = datasets.simulate("micro", **kwargs)
    np.testing.assert_allclose(second.datacube.data, micro.datacube.data, rtol=1e-5, atol=1e-9)
    assert list(tmp_path.iterdir()) == [first.cache_path]  # rewritten, no temporary left


def test_poisson_noise_has_the_requested_dose(micro, micro_cache):
    dose = 2000.0  # e/A^2 -> 500 electrons per pattern at 0.5 A steps
    noisy = datasets.simulate(
        "micro", dose_per_area=dose, seed=3, cache_dir=micro_cache, progress_bar=False
    )
    counts = noisy.datacube.data
    assert noisy.parameters["electrons_per_pattern"] == pytest.approx(500.0)
    np.testing.assert_array_equal(counts, np.round(counts))
    clean = micro.datacube.data
    expected = 500.0 * clean.sum()
    # total over 64 patterns is Poisson: mean = expected, std = sqrt(expected)
    assert abs(counts.sum() - expected) < 5 * np.sqrt(expected)
    assert abs(counts.sum(axis=(2, 3)).mean() - 500 * clean.sum(axis=(2, 3)).mean()) < 15
    # noisy patterns follow the clean ones
    assert np.corrcoef(counts.mean((0, 1)).ravel(), clean.mean((0, 1)).ravel())[0, 1] > 0.95


def test_datacube_preprocesses_in_py4dstem(micro):
    import py4DSTEM

    ptycho = py4DSTEM.process.phase.MultislicePtychography(
        datacube=micro.datacube, device="cpu", verbose=False, **micro.reconstruction_kwargs()
    )
    from py4dstem_compressed.analysis.evaluation import KNOWN_ROTATION_PREPROCESS_KWARGS

    ptycho.preprocess(**KNOWN_ROTATION_PREPROCESS_KWARGS)
    expected = micro.parameters["wavelength"] / (
        32 * micro.datacube.calibration.get_Q_pixel_size() * 1e-3
    )
    np.testing.assert_allclose(ptycho.sampling, expected, rtol=1e-6)


def test_2d_kind_builds_mos2_monolayer(tmp_path):
    pytest.importorskip("abtem")
    ds = datasets.simulate(
        "micro",
        kind="2d",
        cache=False,
        progress_bar=False,
        field_of_view=5.0,
        scan_gpts=(4, 4),
        num_slices=1,
    )
    assert ds.parameters["structure"]["material"] == "MoS2"
    assert abs(ds.parameters["structure"]["strain"]) <= 0.015
    symbols = set(ds.atoms.get_chemical_symbols())
    assert symbols == {"Mo", "S", "W"}
    assert ds.slice_potentials.shape[0] == 1
    assert ds.datacube.data.shape == (4, 4, 32, 32)


def test_bad_arguments():
    with pytest.raises(ValueError, match="kind"):
        datasets.simulate("tiny", kind="amorphous", cache=False)


def test_missing_abtem_error_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "abtem", None)  # makes "import abtem" fail
    with pytest.raises(ImportError, match=r'pip install "py4dstem-compressed\[sim\]"'):
        datasets._import_abtem()

    def not_found(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_found)
    with pytest.raises(ImportError, match=r"py4dstem-compressed\[sim\]"):
        datasets.simulate("micro", cache=False)


# ----------------------------------------------------------------------------- cache key


def test_cache_key_is_unchanged_so_cached_simulations_are_reused():
    # keys computed before the simulation package was split by job: a changed payload would
    # silently re-simulate every cached file
    from py4dstem_compressed.simulation.cache import cache_key, cache_path

    if importlib.metadata.version("abtem") != "1.0.9":
        pytest.skip("the pinned keys were computed with abTEM 1.0.9")
    micro = get_preset("micro")
    key = cache_key(micro, "crystal", None, 0)
    assert key == "0666f0e7bc1594a582841431fc0e0e5fe7c0e2003a5d33834f57dd38a825f3a4"
    small = get_preset("small", descan_px=2.0)
    assert (
        cache_key(small, "2d", 2e4, 0)
        == "a1ba7163e61d687a55c4dcba97561313cb775c6ba9056c7928e7cb826628c05b"
    )
    assert cache_path(datasets.cache_directory("/c"), micro, "crystal", key).as_posix() == (
        "/c/micro-crystal-0666f0e7bc1594a58284.h5"
    )


# ----------------------------------------------------------------------------- detector


def test_crop_and_bin_matches_a_naive_loop():
    from py4dstem_compressed.simulation.detector import crop_and_bin

    rng = np.random.default_rng(0)
    patterns = rng.random((2, 3, 20, 20))
    out = crop_and_bin(patterns, detector_gpts=4, binning=3)
    first = 10 - 6  # centred on n // 2: 12 px from 4 to 16
    expected = np.zeros((2, 3, 4, 4))
    for i in range(4):
        for j in range(4):
            block = patterns[
                ..., first + 3 * i : first + 3 * i + 3, first + 3 * j : first + 3 * j + 3
            ]
            expected[..., i, j] = block.sum(axis=(-2, -1))
    np.testing.assert_allclose(out, expected)
    np.testing.assert_array_equal(crop_and_bin(patterns, 6, 1), patterns[..., 7:13, 7:13])


def test_descan_drifts_move_patterns_by_whole_pixels_exactly():
    from py4dstem_compressed.simulation.detector import linear_descan, shift_patterns

    rng = np.random.default_rng(1)
    patterns = np.zeros((1, 3, 12, 12), np.float32)
    patterns[..., 3:7, 4:8] = rng.random((1, 3, 4, 4))
    # the last of 3 patterns moves 2 px along each axis (total 2 sqrt(2) px on the diagonal)
    drifted = linear_descan(patterns, 2 * np.sqrt(2.0))
    np.testing.assert_allclose(drifted[0, 0], patterns[0, 0], atol=1e-6)
    np.testing.assert_allclose(drifted[0, 1, 4:8, 5:9], patterns[0, 1, 3:7, 4:8], atol=1e-5)
    np.testing.assert_allclose(drifted[0, 2, 5:9, 6:10], patterns[0, 2, 3:7, 4:8], atol=1e-5)
    shifted = shift_patterns(patterns, 1.0)
    np.testing.assert_allclose(shifted[..., 4:8, 5:9], patterns[..., 3:7, 4:8], atol=1e-6)
    assert shifted.sum() == pytest.approx(patterns.sum(), rel=1e-5)


def test_shot_noise_rejects_a_non_positive_dose():
    from py4dstem_compressed.simulation.detector import shot_noise

    with pytest.raises(ValueError, match="dose_per_area must be positive"):
        shot_noise(np.ones((1, 1, 2, 2)), 0.0, 0.5, seed=0)
    counts, electrons = shot_noise(np.full((2, 2, 4, 4), 1 / 16), 400.0, 0.5, seed=0)
    assert electrons == 100.0 and counts.dtype == np.float32


# ----------------------------------------------------------------------------- partial coherence
def test_finite_source_is_the_blur_of_a_finer_coherent_scan(micro, micro_cache):
    from py4dstem_compressed.simulation.detector import blur_over_scan

    source = 0.3  # [A], the benchmark's effective source
    partial = datasets.simulate(
        "micro", cache_dir=micro_cache, progress_bar=False, source_size=source
    )
    preset = datasets.get_preset("micro").replace(source_size=source)
    n = preset.source_oversampling
    assert n == 4  # 0.5 A steps, fine steps at most sigma / 2 = 0.15 A
    # the same positions, coherent, n times finer; same start and extent
    fine = datasets.simulate(
        "micro",
        cache_dir=micro_cache,
        progress_bar=False,
        scan_gpts=(8 * n, 8 * n),
        scan_step=0.5 / n,
    )
    assert fine.scan_start == partial.scan_start
    expected = blur_over_scan(fine.datacube.data, source, 0.5 / n)[::n, ::n]
    got = partial.datacube.data
    assert got.shape == micro.datacube.data.shape
    # abTEM is reproducible to ~1e-6 of the largest value from run to run
    np.testing.assert_allclose(got, expected, atol=1e-5 * expected.max())
    np.testing.assert_allclose(fine.datacube.data[::n, ::n], micro.datacube.data, atol=1e-5)

    def com_spread(data):
        q = np.arange(data.shape[-1])
        total = data.sum(axis=(-2, -1))
        com = (data.sum(axis=-1) * q).sum(-1) / total
        return com.std()

    # the source averages the probe over nearby positions: the DPC signal is smoother
    assert com_spread(got) < 0.95 * com_spread(micro.datacube.data)
