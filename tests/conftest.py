"""Shared fixtures: small synthetic scans made with the NumPy forward model."""

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")


@pytest.fixture(scope="session")
def scan():
    """8x8 positions, 32x32 px, noiseless (BF radius ~7.7 px)."""
    from py4dstem_compressed.simulation.synthetic import synthetic_datacube

    return synthetic_datacube(scan_shape=(8, 8), detector_size=32)


@pytest.fixture(scope="session")
def datacube(scan):
    return scan.datacube


@pytest.fixture(scope="session")
def geometry(scan):
    import py4dstem_compressed as pc

    return pc.DetectorGeometry((32, 32), scan.center, scan.bf_radius)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")
