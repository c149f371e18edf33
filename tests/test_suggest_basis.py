"""suggest_basis: the BF/DF split and the DF family chosen from held-out angles within a budget."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import py4dstem_compressed as pc
from py4dstem_compressed.simulation.synthetic import synthetic_datacube


def _choice(basis):
    record = basis.parameters["suggestion"]
    return record["family"], basis.num_bf, basis.num_df


@pytest.fixture(scope="module")
def noisy():
    """8x8 scan, 32x32 px, with Poisson noise: counts."""
    return synthetic_datacube(scan_shape=(8, 8), detector_size=32, electrons_per_pattern=1e4)


def _dark_field_scan(structured: bool, seed: int = 0) -> np.ndarray:
    """``(64, 32, 32)`` counts: a BF disk with a moving tilt, and a DF either holding bright
    spots at angles that change from pattern to pattern (strong azimuthal structure) or
    nearly empty (a faint radial fall-off a few counts strong)."""
    rng = np.random.default_rng(seed)
    q = np.indices((32, 32)) - 15.5
    r, phi = np.hypot(*q), np.arctan2(*q)
    frames = []
    for i in range(64):
        bf = (r < 8) * 400 * (1 + 0.3 * np.cos(phi - i) * r / 8)
        if structured:
            angles = rng.uniform(0, 2 * np.pi, 3)
            df = sum(
                300 * np.exp(-((q[0] - 11 * np.cos(a)) ** 2 + (q[1] - 11 * np.sin(a)) ** 2) / 4)
                for a in angles
            )
        else:
            df = 0.02 * np.exp(-(r - 8) / 4)
        frames.append(rng.poisson(bf + df * (r >= 8)).astype(np.float64))
    return np.stack(frames)


@pytest.mark.parametrize("budget", [12, 20, 40])
def test_respects_the_budget_of_values(noisy, budget):
    basis = pc.suggest_basis(noisy.datacube, max_values_per_pattern=budget, seed=0)
    record = basis.parameters["suggestion"]
    assert basis.num_bf + basis.num_df + 2 <= budget
    assert record["values"] == basis.num_masks + 2
    assert basis.num_bf >= 1 and basis.num_df >= 1
    assert basis.orthonormality_error() < 1e-5
    # BF starts with the Zernike orders <= 2 (piston, tilts, second moments) where they fit
    assert basis.num_bf >= 6


def test_more_dark_field_masks_when_the_dark_field_angle_stays_large():
    structured = pc.suggest_basis(_dark_field_scan(True), max_values_per_pattern=40, seed=0)
    empty = pc.suggest_basis(_dark_field_scan(False), max_values_per_pattern=40, seed=0)
    floor_s = structured.parameters["suggestion"]["noise_floor_deg"]["df"]
    floor_e = empty.parameters["suggestion"]["noise_floor_deg"]["df"]
    assert floor_e > 60 > floor_s  # the empty DF is mostly shot noise
    assert structured.num_df >= 4
    assert empty.num_df < structured.num_df
    assert empty.num_df <= 2


def test_zernike_bright_field_with_data_derived_dark_field():
    """BF masks are Zernike polynomials, DF masks the DF parts of the sampled patterns (or
    their principal components): they hold the bright spots, where Zernike rings do not."""
    frames = _dark_field_scan(True)
    basis = pc.suggest_basis(frames, max_values_per_pattern=40, seed=0)
    record = basis.parameters["suggestion"]
    assert record["bf_family"] == "zernike"
    assert record["df_family"] in ("diffraction_pattern", "pca")
    assert record["family"] == f"zernike+{record['df_family']}"
    zernike = pc.zernike_basis(basis.geometry, basis.num_bf, 1)
    np.testing.assert_allclose(basis.bf_masks, zernike.bf_masks, atol=1e-12)
    spots = frames[:, basis.geometry.df].sum(0)  # where the DF counts are, summed
    bright = spots > np.percentile(spots, 90)

    def on_spots(masks):
        """Mean fraction of a DF mask's energy on the brightest 10% of the DF pixels."""
        return float((masks[:, basis.geometry.df] ** 2)[:, bright].sum(1).mean())

    rings = pc.zernike_basis(basis.geometry, 1, basis.num_df).df_masks
    assert on_spots(basis.df_masks) > 2 * on_spots(rings)
    assert basis.orthonormality_error() < 1e-5


def test_same_choice_for_counts_scaled_counts_and_normalised_data(noisy):
    counts = np.asarray(noisy.datacube.data, np.float64)
    variants = {
        "counts": counts,
        "counts x 3.1": counts * 3.1,
        "total 1": counts / counts.sum(),
        "each pattern total 1": counts / counts.sum(axis=(2, 3), keepdims=True),
    }
    choices = {
        name: _choice(pc.suggest_basis(data, max_values_per_pattern=20, seed=1))
        for name, data in variants.items()
    }
    assert len(set(choices.values())) == 1, choices


def test_noise_fraction_follows_the_dose():
    """Poisson noise of sqrt(I): each pixel's variance Var[sqrt N] (about 1/4), over its mean
    count: the noise fraction of flat patterns; scaling the counts changes nothing."""
    from py4dstem_compressed.core.poisson import sqrt_poisson_variance

    rng = np.random.default_rng(0)
    geometry = pc.DetectorGeometry((32, 32), (15.5, 15.5), 8.0)
    for level in (20.0, 500.0):
        frames = rng.poisson(np.full((64, 32, 32), level)).astype(float)
        for scale in (1.0, 0.37):
            basis = pc.suggest_basis(
                frames * scale, geometry, max_values_per_pattern=12, seed=0, progress_bar=False
            )
            noise = basis.parameters["suggestion"]["noise_fraction"]
            expected = float(sqrt_poisson_variance(np.array(level))) / level
            assert noise["bf"] == pytest.approx(expected, rel=0.1)
            assert noise["df"] == pytest.approx(expected, rel=0.1)


def _scaled_noise(record, region):
    """The suggestion's noise energy and the factor it was scaled by."""
    scale = record["noise_scale"][region]
    return scale * record["variation_totals"][region]["noise"], scale


def test_noise_stays_within_what_every_held_out_curve_leaves_uncaptured(datacube):
    """Noise of held-out patterns is independent of the masks: of the noise energy N, masks
    capturing C of it leave N - C in what they miss, at every point of every curve; on
    noise-free data structure finer than the noise estimate's fit must not pass for noise."""
    basis = pc.suggest_basis(datacube, max_values_per_pattern=40, seed=0)
    record = basis.parameters["suggestion"]
    for region in ("bf", "df"):
        noise, scale = _scaled_noise(record, region)
        assert 0 <= scale <= 1
        for family, curve in record["uncaptured_variation"][region].items():
            captured = dict(record["captured_noise"][region][family])
            for k, missed in curve:
                assert noise - scale * captured[k] <= missed + 1e-7  # the record holds 7 decimals


def test_masks_on_bright_dark_field_pixels_capture_more_of_its_noise():
    """A sparse dark field's noise sits where its counts are, and so do data-derived DF
    masks: up to as many masks as reflections capture several times the k / pixels of the
    noise that white noise would give, and what they capture is subtracted before masks are
    compared."""
    rng = np.random.default_rng(0)
    q = np.indices((32, 32)) - 15.5
    r = np.hypot(*q)
    spots = [  # fixed reflections, a few counts at their peak, strengths varying over the scan
        np.exp(-((q[0] - 11 * np.cos(a)) ** 2 + (q[1] - 11 * np.sin(a)) ** 2) / 2)
        for a in np.arange(6) * np.pi / 3
    ]
    frames = np.stack(
        [
            rng.poisson(
                (r < 8) * 400.0 + (r >= 8) * sum(w * s for w, s in zip(rng.uniform(0, 4, 6), spots))
            )
            for _ in range(128)
        ]
    ).astype(np.float64)
    basis = pc.suggest_basis(frames, max_values_per_pattern=40, seed=0)
    record = basis.parameters["suggestion"]
    assert record["df_family"] in ("diffraction_pattern", "pca") and basis.num_df > 1
    total = record["variation_totals"]["df"]["noise"]
    pixels = int(basis.geometry.df.sum())
    for family in ("diffraction_pattern", "pca"):
        for k, captured in record["captured_noise"]["df"][family]:
            if 1 < k <= 6:  # as many masks as reflections
                assert captured > 3 * total * k / pixels


def test_describe_says_why(noisy):
    basis = pc.suggest_basis(noisy.datacube, max_values_per_pattern=20, seed=0)
    text = basis.describe()
    record = basis.parameters["suggestion"]
    assert "at most 20 values per pattern" in text
    assert f"{basis.num_bf} BF + {basis.num_df} DF masks + 2 perpendicular norms" in text
    assert f"family {record['family']}" in text
    assert "shot noise" in text and "deg" in text
    assert "share of the held-out shot noise the chosen masks capture" in text
    for region in ("bf", "df"):  # the chosen family's curves
        assert f"*{region.upper()} {record[f'{region}_family']}" in text
    k, angle = record["angle_curves_deg"]["df"][record["df_family"]][0]
    assert f"{k}:{angle:.1f}" in text
    assert "scan-varying signal" in text  # what the choice read, per region and count
    k, missed = record["uncaptured_variation"]["bf"]["zernike"][-1]
    assert f"{k}:{100 * missed:.3f}" in text
    plain = pc.zernike_basis(basis.geometry, 6, 1)
    assert "\n" not in plain.describe()
    assert "\n" not in repr(basis)


def test_three_dimensional_sample_and_errors(noisy):
    frames = np.asarray(noisy.datacube.data).reshape(64, 32, 32)
    basis = pc.suggest_basis(frames, max_values_per_pattern=12, seed=0, progress_bar=False)
    assert basis.num_masks + 2 <= 12
    with pytest.raises(ValueError, match=">= 4"):
        pc.suggest_basis(frames, max_values_per_pattern=3)
    with pytest.raises(ValueError, match="at least 16 patterns"):
        pc.suggest_basis(frames[:10])
    bad = frames.copy()
    bad[3, 4, 5] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        pc.suggest_basis(bad)


def test_record_survives_save_and_read_in_a_fresh_process(noisy, tmp_path):
    basis = pc.suggest_basis(noisy.datacube, max_values_per_pattern=20, seed=0)
    path = tmp_path / "basis.h5"
    pc.save(path, basis)
    code = f"""
        import py4DSTEM, py4dstem_compressed as pc
        basis = py4DSTEM.read({str(path)!r})
        print(basis.describe())
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == basis.describe()


def test_command_line_suggest(noisy, tmp_path):
    data = tmp_path / "scan.npy"
    np.save(data, np.asarray(noisy.datacube.data))
    out = tmp_path / "basis.h5"
    result = subprocess.run(
        [sys.executable, "-m", "py4dstem_compressed_cli", "suggest", str(data), "--max-values",
         "16", "--seed", "0", "--output", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "at most 16 values per pattern" in result.stdout
    compressed = tmp_path / "scan_compressed.h5"
    result = subprocess.run(
        [sys.executable, "-m", "py4dstem_compressed_cli", "compress", str(data), "-o",
         str(compressed), "--basis", str(out), "--quiet"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert pc.read_compressed(compressed).basis.parameters["suggestion"]["budget"] == 16


def _drifting_scan(drift_px_per_row: int) -> np.ndarray:
    """``(9, 8, 32, 32)`` noise-free patterns: a BF disk and six DF spots whose strengths
    change over the scan; the whole pattern moves by ``drift_px_per_row`` whole pixels
    per scan row (a linear descan, centred on the middle row)."""
    rng = np.random.default_rng(1)
    q = np.indices((32, 32)) - 15.5
    r = np.hypot(*q)
    angles = np.arange(6) * np.pi / 3
    spots = [
        np.exp(-((q[0] - 10 * np.cos(a)) ** 2 + (q[1] - 10 * np.sin(a)) ** 2) / 2) for a in angles
    ]
    scan = np.empty((9, 8, 32, 32))
    for ix in range(9):
        for iy in range(8):
            pattern = 400.0 * (r < 6) + sum(w * s for w, s in zip(rng.uniform(5, 50, 6), spots))
            scan[ix, iy] = np.roll(pattern, (ix - 4) * drift_px_per_row, axis=0)
    return scan


def test_masks_of_a_drifting_scan_are_built_in_the_frame_of_the_disk():
    """Compression moves the masks with a drifting disk (``compress(descan="auto")``), so the
    suggestion builds them (and measures its angles) on patterns moved back by their descan:
    the same basis as from the same scan without drift. A pre-scan sample of the drifting
    patterns (no scan positions) is taken as it is, and its DF masks are smeared."""
    steady = _drifting_scan(0)
    geometry = pc.DetectorGeometry.from_datacube(steady)
    drifting = _drifting_scan(1)
    kwargs = dict(geometry=geometry, max_values_per_pattern=12, seed=0, progress_bar=False)
    from_steady = pc.suggest_basis(steady, **kwargs)
    from_drifting = pc.suggest_basis(drifting, **kwargs)
    record = from_drifting.parameters["suggestion"]
    assert record["descan_px_max"] == 4
    assert from_steady.parameters["suggestion"]["descan_px_max"] == 0
    assert "frame of the disk" in from_drifting.describe()
    assert (from_drifting.num_bf, from_drifting.num_df) == (from_steady.num_bf, from_steady.num_df)
    np.testing.assert_allclose(from_drifting.masks, from_steady.masks, atol=1e-12)
    # as a sample without positions the drift stays in the patterns: larger DF angles
    sample = pc.suggest_basis(drifting.reshape(-1, 32, 32), **kwargs).parameters["suggestion"]
    family = record["df_family"]
    aligned = dict(record["angle_curves_deg"]["df"][family])
    smeared = dict(sample["angle_curves_deg"]["df"][family])
    assert all(smeared[k] > aligned[k] + 1.0 for k in aligned if k > 1)


def _thin_specimen_scan(seed: int = 0) -> np.ndarray:
    """``(64, 32, 32)`` noise-free amplitudes squared: a bright BF disk that barely changes
    over the scan (a weak phase object) and a dark field of spots a hundred times weaker in
    energy whose strengths change strongly from pattern to pattern."""
    rng = np.random.default_rng(seed)
    q = np.indices((32, 32)) - 15.5
    r = np.hypot(*q)
    spots = [
        np.exp(-((q[0] - 11 * np.cos(a)) ** 2 + (q[1] - 11 * np.sin(a)) ** 2) / 2)
        for a in rng.uniform(0, 2 * np.pi, 12)
    ]
    frames = []
    for _ in range(64):
        bf = (r < 8) * (1 + 0.002 * rng.normal(size=(32, 32)))
        df = sum(w * s for w, s in zip(rng.uniform(0, 0.05, 12), spots)) * (r >= 8)
        frames.append((bf + df) ** 2)
    return np.stack(frames)


def test_the_dark_field_gets_the_masks_where_the_scan_varying_signal_is():
    """Per mask, the DF's spots change more from pattern to pattern than the BF's faint
    texture, though the BF holds ~99% of the energy: the budget goes to the DF (both
    regions are measured in the same units), the BF keeps its low orders."""
    basis = pc.suggest_basis(_thin_specimen_scan(), max_values_per_pattern=24, seed=0)
    record = basis.parameters["suggestion"]
    totals = record["variation_totals"]
    assert totals["bf"]["energy"] > 20 * totals["df"]["energy"]
    assert basis.num_df > basis.num_bf >= 6
