"""The reconstruction must not depend on the unit of the intensities, nor on descan.

Users' data come in counts, in gain-scaled counts (integrating detectors) or normalised;
the same scan in any of these units must give the same reconstruction with default
settings. Tiny NumPy forward model of ``test_ptychography`` (8x8 positions, 32x32 px).
"""

from __future__ import annotations

import numpy as np
import pytest
from test_ptychography import (
    ANGULAR_SAMPLING,
    CENTER,
    COMMON,
    DETECTOR,
    SEMIANGLE,
    _calibrated,
    _run,
    _simulate,
)

import py4dstem_compressed as pc
from py4dstem_compressed.reconstruction.ptychography import CompressedMultislicePtychography

ELECTRONS_PER_PATTERN = 5e3


@pytest.fixture(scope="module")
def geometry():
    return pc.DetectorGeometry((DETECTOR, DETECTOR), CENTER, SEMIANGLE / ANGULAR_SAMPLING + 0.5)


@pytest.fixture(scope="module")
def counts():
    """Poisson counts (sparse in the dark field) and the truth."""
    datacube, truth = _simulate()
    data = np.asarray(datacube.data, dtype=np.float64)
    data = data / data.sum(axis=(-2, -1), keepdims=True) * ELECTRONS_PER_PATTERN
    noisy = np.random.default_rng(7).poisson(data).astype(np.float32)
    return noisy, truth


def _reconstruct(data, geometry):
    basis = pc.zernike_basis(geometry, 21, 1)
    compressed = pc.compress(_calibrated(data), basis, progress_bar=False)
    return _run(CompressedMultislicePtychography(datacube=compressed, **COMMON), 6)


UNITS = {
    "gain 3.1": lambda data: data * np.float32(3.1),
    "normalised": lambda data: data / data.sum(),
    # py4DSTEM's updates hold absolute epsilons that values this small reach
    "1e-6 of the total": lambda data: data / data.sum() * np.float32(1e-6),
}


@pytest.mark.parametrize("unit", list(UNITS))
def test_reconstruction_does_not_depend_on_the_intensity_unit(counts, geometry, unit):
    data, _ = counts
    scaled = UNITS[unit](data).astype(np.float32)
    reference = _reconstruct(data, geometry)
    other = _reconstruct(scaled, geometry)
    assert other.data_step_options.match_energy == reference.data_step_options.match_energy
    a, b = np.asarray(reference.object), np.asarray(other.object)
    # float32 rounding of differently scaled values through 6 iterations
    np.testing.assert_allclose(b, a, atol=1e-3 * np.abs(a).max())


def test_descan_does_not_change_how_the_dark_field_is_matched(geometry):
    drifting, _ = _simulate(descan_px=(2.0, -1.5))
    data = np.asarray(drifting.data, dtype=np.float64)
    data = data / data.sum(axis=(-2, -1), keepdims=True) * ELECTRONS_PER_PATTERN
    noisy = np.random.default_rng(7).poisson(data).astype(np.float32)
    still, _ = _simulate()
    still = np.asarray(still.data, dtype=np.float64)
    still = still / still.sum(axis=(-2, -1), keepdims=True) * ELECTRONS_PER_PATTERN
    quiet = np.random.default_rng(7).poisson(still).astype(np.float32)
    for gain in (1.0, 3.1):
        moving = _reconstruct(noisy * np.float32(gain), geometry)
        steady = _reconstruct(quiet * np.float32(gain), geometry)
        assert moving.data_step_options.match_energy == steady.data_step_options.match_energy
