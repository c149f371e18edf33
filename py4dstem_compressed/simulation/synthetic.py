"""Small synthetic 4D-STEM data from a NumPy forward model (no abTEM needed).

A convergent probe (disk aperture with defocus) scans a single-slice phase
object made of Gaussian "atoms" on a square lattice with a vacancy; each
pattern is ``|F[probe * object]|^2``. Made for tests and quick looks: for
physical simulations use :mod:`py4dstem_compressed.simulation.datasets` (abTEM).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from py4dstem_compressed.core.calibration import calibrate
from py4dstem_compressed.core.optics import electron_wavelength_angstrom

__all__ = ["SyntheticScan", "synthetic_datacube"]

#: Counts of a whole noiseless pattern (the probe is normalised to 1): count-like magnitudes
#: without shot noise.
NOISELESS_COUNTS_PER_PATTERN = 1e4
#: Width (standard deviation) of a Gaussian "atom" in lattice constants: well separated atoms.
ATOM_WIDTH_PER_LATTICE_CONSTANT = 1 / 8


@dataclass
class SyntheticScan:
    """A synthetic scan and its ground truth.

    Attributes
    ----------
    datacube : py4DSTEM.DataCube
        ``(Rx, Ry, Qx, Qy)`` intensities [counts], calibrated (A, mrad).
    object_phase : numpy.ndarray
        Ground-truth phase of the object [rad] on ``sampling``.
    sampling : float
        Real-space pixel size of the object and probe [A].
    bf_radius : float
        True bright-field disk radius [px].
    center : tuple of float
        True BF centre ``(qx, qy)`` [px].
    parameters : dict
        Energy [eV], semiangle [mrad], defocus [A], scan step [A].
    """

    datacube: object
    object_phase: np.ndarray
    sampling: float
    bf_radius: float
    center: tuple[float, float]
    parameters: dict


def synthetic_datacube(
    scan_shape: tuple[int, int] = (8, 8),
    detector_size: int = 32,
    sampling: float = 0.4,
    scan_step: float = 0.8,
    energy: float = 80e3,
    semiangle_cutoff: float = 25.0,
    defocus: float = 50.0,
    lattice_constant: float = 3.0,
    phase_amplitude: float = 0.6,
    electrons_per_pattern: float | None = None,
    seed: int = 0,
    out: np.ndarray | None = None,
) -> SyntheticScan:
    """Simulate a small scan with a single-slice forward model.

    Parameters
    ----------
    scan_shape : tuple of int
        Scan positions ``(Rx, Ry)``.
    detector_size : int
        Detector (and probe window) size [px]; pattern pixel size is
        ``1 / (detector_size * sampling)`` [1/A].
    sampling : float
        Real-space pixel size [A].
    scan_step : float
        Scan step [A].
    energy : float
        Beam energy [eV].
    semiangle_cutoff : float
        Probe convergence semi-angle [mrad].
    defocus : float
        Probe defocus [A].
    lattice_constant : float
        Atom spacing [A].
    phase_amplitude : float
        Peak phase of one atom [rad].
    electrons_per_pattern : float, optional
        Poisson noise at this dose; ``None`` = noiseless.
    seed : int
        Seed of the noise and of the vacancy site.
    out : numpy.ndarray, optional
        ``(Rx, Ry, n, n)`` float32 array (e.g. a memory map of a ``.npy`` file) to write the
        patterns into, one scan row at a time, instead of allocating them.

    Returns
    -------
    SyntheticScan
    """
    import py4DSTEM

    rng = np.random.default_rng(seed)
    wavelength = electron_wavelength_angstrom(energy)
    n = detector_size
    k = np.fft.fftfreq(n, sampling)
    kx, ky = np.meshgrid(k, k, indexing="ij")
    alpha = np.hypot(kx, ky) * wavelength  # [rad]
    aperture = alpha <= semiangle_cutoff * 1e-3
    chi = np.pi / wavelength * defocus * alpha**2
    probe = np.fft.ifft2(aperture * np.exp(-1j * chi))
    probe /= np.sqrt((np.abs(probe) ** 2).sum())

    step_px = scan_step / sampling
    shape = (
        int(np.ceil((scan_shape[0] - 1) * step_px)) + n + 1,
        int(np.ceil((scan_shape[1] - 1) * step_px)) + n + 1,
    )
    x = np.arange(shape[0]) * sampling
    y = np.arange(shape[1]) * sampling
    phase = np.zeros(shape)
    sites = [
        (ax, ay)
        for ax in np.arange(lattice_constant / 2, x[-1], lattice_constant)
        for ay in np.arange(lattice_constant / 2, y[-1], lattice_constant)
    ]
    vacancy = rng.integers(len(sites))
    sigma = lattice_constant * ATOM_WIDTH_PER_LATTICE_CONSTANT
    for i, (ax, ay) in enumerate(sites):
        if i == vacancy:
            continue
        phase += phase_amplitude * np.exp(
            -((x[:, None] - ax) ** 2 + (y[None, :] - ay) ** 2) / (2 * sigma**2)
        )
    transmission = np.exp(1j * phase)

    data = np.empty((*scan_shape, n, n), np.float32) if out is None else out
    if data.shape != (*scan_shape, n, n):
        raise ValueError(f"out must have shape {(*scan_shape, n, n)}, got {data.shape}")
    row = np.empty((scan_shape[1], n, n), np.float32)
    for i in range(scan_shape[0]):
        for j in range(scan_shape[1]):
            ox, oy = round(i * step_px), round(j * step_px)
            exit_wave = probe * transmission[ox : ox + n, oy : oy + n]
            row[j] = np.fft.fftshift(np.abs(np.fft.fft2(exit_wave)) ** 2)
        if electrons_per_pattern is not None:
            data[i] = rng.poisson(row * electrons_per_pattern)
        else:
            data[i] = row * NOISELESS_COUNTS_PER_PATTERN

    datacube = py4DSTEM.DataCube(data=data)
    mrad_per_px = 1e3 * wavelength / (n * sampling)
    calibrate(datacube, scan_step, mrad_per_px)
    bf_radius = semiangle_cutoff / mrad_per_px
    return SyntheticScan(
        datacube=datacube,
        object_phase=phase,
        sampling=sampling,
        bf_radius=float(bf_radius),
        center=(n // 2, n // 2),
        parameters={
            "energy": energy,
            "semiangle_cutoff": semiangle_cutoff,
            "defocus": defocus,
            "scan_step": scan_step,
            "sampling": sampling,
        },
    )
