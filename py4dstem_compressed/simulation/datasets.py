"""Simulated 4D-STEM datasets with their ground truth, cached on disk.

:func:`simulate` runs abTEM (the ``sim`` extra) on a defective SrTiO3 [001] crystal
(``kind="crystal"``, thick enough for multislice ptychography) or a MoS2 monolayer with
vacancies (``kind="2d"``) and returns a :class:`SimulatedDataset`: a calibrated py4DSTEM
``DataCube`` ready for ``MultislicePtychography``, the projected potential summed over the
specimen and per reconstruction slice, and every parameter needed to reconstruct. Results are
stored as HDF5 files in ``$PY4DSTEM_COMPRESSED_CACHE`` (default ``~/.cache/py4dstem-compressed``)
keyed by a hash of all parameters and the abTEM version (:mod:`.cache`), so a second call only
reads the file.

The work is split by job: the specimen in :mod:`.structures`, what the detector records
(descan drift, binning, source blur, shot noise) in :mod:`.detector`, the files in
:mod:`.cache`; this module runs abTEM and assembles the result.

Frames and units: the datacube's axes are ``(R_x, R_y, Q_x, Q_y)``; ``R_x`` is abTEM's ``x``,
the first axis of the potentials, so ``projected_potential[i, j]`` lies at ``(x, y) =
(i, j) * potential_sampling`` [A] and probe position ``(i, j)`` at ``scan_start + (i, j) *
scan_step`` [A]. Diffraction patterns are centred (the usual detector frame), calibrated in
mrad, and hold the fraction of the beam (or counts, with a finite dose) per pixel.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from py4dstem_compressed.core.calibration import calibrate
from py4dstem_compressed.simulation.cache import (
    CACHE_ENV_VARIABLE,
    SIM_EXTRA_HINT,
    abtem_version,
    cache_directory,
    cache_key,
    cache_path,
    read_cache,
    write_cache,
)
from py4dstem_compressed.simulation.detector import linear_descan, record
from py4dstem_compressed.simulation.presets import PRESETS, SimulationPreset, get_preset
from py4dstem_compressed.simulation.simulated_dataset import SimulatedDataset
from py4dstem_compressed.simulation.structures import (
    MOS2_LATTICE_CONSTANT,
    MOS2_THICKNESS,
    SRTIO3_LATTICE_CONSTANT,
    build_structure,
)

__all__ = [
    "CACHE_ENV_VARIABLE",
    "MOS2_LATTICE_CONSTANT",
    "MOS2_THICKNESS",
    "PRESETS",
    "SRTIO3_LATTICE_CONSTANT",
    "SimulatedDataset",
    "SimulationPreset",
    "cache_directory",
    "get_preset",
    "linear_descan",
    "simulate",
]

#: The simulation grid holds the detector with this factor of room: abTEM's anti-aliasing
#: aperture keeps 2/3 of the grid's frequencies, so 1.5x puts it outside the detector.
ANTIALIAS_GRID_FACTOR = 1.5
#: Pixels of margin added to the detector before that factor (the crop is centred on n // 2).
DETECTOR_MARGIN_PX = 2
#: The detector must reach this factor beyond the bright-field disk, so it records dark field.
MIN_DETECTOR_REACH = 1.2


def _import_abtem():
    """The ``abtem`` module; an ImportError naming the ``sim`` extra if it is missing."""
    try:
        import abtem
    except ImportError as error:
        raise ImportError(f"simulating datasets needs abTEM and ASE: {SIM_EXTRA_HINT}") from error
    return abtem


def _next_fft_size(n: int) -> int:
    """Smallest even 2^a 3^b 5^c >= n."""
    n = max(int(n), 2)
    while True:
        if n % 2 == 0:
            m = n
            for p in (2, 3, 5):
                while m % p == 0:
                    m //= p
            if m == 1:
                return n
        n += 1


# ----------------------------------------------------------------------------- simulation


@dataclass(frozen=True)
class _Grid:
    """Sampling of one simulation (see :func:`_simulation_grid`)."""

    extent: float  # cell side along x [A]
    cell_depth: float  # cell thickness [A]
    wavelength: float  # [A]
    gpts: int  # simulation grid side [px]
    num_slices: int  # multislice slices
    detector_max_angle: float  # [mrad]


def _simulation_grid(preset: SimulationPreset, atoms) -> _Grid:
    """The simulation grid: fine enough for the potential and the detector, checked to reach
    beyond the bright-field disk.

    The wavelength is abTEM's ``energy2wavelength`` (ASE's CODATA 2014 constants), as in
    abTEM's own angular sampling; ``core.optics.electron_wavelength_angstrom`` (CODATA 2018)
    differs by 5e-9 relative, which would change the stored parameters.
    """
    from abtem.core.energy import energy2wavelength

    extent = float(atoms.cell[0, 0])
    cell_depth = float(atoms.cell[2, 2])
    wavelength = float(energy2wavelength(preset.energy))
    n_det = preset.detector_gpts * preset.detector_binning
    gpts = _next_fft_size(
        max(
            math.ceil(ANTIALIAS_GRID_FACTOR * (n_det + DETECTOR_MARGIN_PX)),
            math.ceil(extent / preset.max_potential_sampling),
        )
    )
    detector_max_angle = 0.5 * preset.detector_gpts * preset.detector_binning
    detector_max_angle *= wavelength / extent * 1e3
    if detector_max_angle <= MIN_DETECTOR_REACH * preset.semiangle_cutoff:
        raise ValueError(
            f"the detector reaches {detector_max_angle:.1f} mrad, not beyond the bright-field "
            f"disk ({preset.semiangle_cutoff} mrad): increase detector_gpts or field_of_view"
        )
    num_slices = max(1, round(cell_depth / preset.simulation_slice_thickness))
    return _Grid(extent, cell_depth, wavelength, gpts, num_slices, detector_max_angle)


def _run_multislice(abtem, atoms, preset, grid: _Grid, scan_start, seed, progress_bar):
    """abTEM's scan of the probe over the specimen (frozen phonons if the preset asks).

    Returns the far-field intensities ``(R_x n, R_y n, gpts, gpts)`` (float32, fraction of the
    beam, zero frequency at ``gpts // 2``; ``n = preset.source_oversampling``, the recorded
    positions are every n-th from the first) and their angular sampling [mrad].
    """
    potential, probe, scan = _scan_setup(abtem, atoms, preset, grid, scan_start, seed)
    measurement = probe.scan(
        potential, scan=scan, detectors=abtem.PixelatedDetector(max_angle=None)
    )
    measurement = measurement.compute(progress_bar=progress_bar)
    patterns = np.asarray(measurement.array, dtype=np.float32)
    return patterns, float(measurement.angular_sampling[0])


def _scan_setup(abtem, atoms, preset, grid: _Grid, scan_start, seed):
    """abTEM's potential, probe and grid scan of a preset (what :func:`_run_multislice` runs).

    The scan is ``preset.source_oversampling`` times finer than the recorded one; the
    specimen has frozen phonons if the preset asks (``seed``).
    """
    specimen = atoms
    if preset.num_frozen_phonons > 0:
        specimen = abtem.FrozenPhonons(
            atoms, num_configs=preset.num_frozen_phonons, sigmas=preset.phonon_sigma, seed=seed
        )
    potential = abtem.Potential(
        specimen,
        gpts=(grid.gpts, grid.gpts),
        slice_thickness=grid.cell_depth / grid.num_slices,
        projection="infinite",
        parametrization="lobato",
    )
    probe = abtem.Probe(
        energy=preset.energy, semiangle_cutoff=preset.semiangle_cutoff, defocus=preset.defocus
    )
    end = tuple(s + e for s, e in zip(scan_start, preset.scan_extent))
    # a finite source needs positions finer than the recorded scan (see source_oversampling)
    gpts = tuple(g * preset.source_oversampling for g in preset.scan_gpts)
    scan = abtem.GridScan(start=scan_start, end=end, gpts=gpts, endpoint=False)
    return potential, probe, scan


def _ground_truth(abtem, atoms, preset, grid: _Grid) -> tuple[np.ndarray, float]:
    """Projected potential of the static structure in ``preset.num_slices`` equal slices.

    Returns ``(num_slices, n, n)`` [V A] from the entrance surface and its pixel size [A].
    """
    truth_gpts = _next_fft_size(round(grid.extent / preset.truth_sampling))
    slice_thickness = grid.cell_depth / preset.num_slices
    truth = abtem.Potential(
        atoms,
        gpts=(truth_gpts, truth_gpts),
        slice_thickness=(slice_thickness,) * preset.num_slices,
        projection="infinite",
        parametrization="lobato",
    )
    slice_potentials = np.asarray(truth.build().compute(progress_bar=False).array, dtype=float)
    return slice_potentials, grid.extent / truth_gpts


def _parameters(preset, kind, atoms, grid, recorded: dict, structure: dict) -> dict[str, Any]:
    """Everything needed to reconstruct and to reproduce (see :class:`SimulatedDataset`)."""
    q_pixel_size = recorded["q_pixel_size"]
    return {
        "preset": preset.name,
        "kind": kind,
        "energy": preset.energy,
        "wavelength": grid.wavelength,
        "semiangle_cutoff": preset.semiangle_cutoff,
        "defocus": preset.defocus,
        "scan_gpts": list(preset.scan_gpts),
        "scan_step": preset.scan_step,
        "scan_start": list(structure["scan_start"]),
        "detector_gpts": preset.detector_gpts,
        "detector_binning": preset.detector_binning,
        "angular_sampling": q_pixel_size,
        "reciprocal_sampling": q_pixel_size * 1e-3 / grid.wavelength,
        "detector_max_angle": grid.detector_max_angle,
        "cell_extent": [grid.extent, float(atoms.cell[1, 1])],
        "thickness": grid.cell_depth,
        "num_slices": preset.num_slices,
        "slice_thickness": grid.cell_depth / preset.num_slices,
        "simulation_gpts": grid.gpts,
        "simulation_sampling": grid.extent / grid.gpts,
        "simulation_slice_thickness": grid.cell_depth / grid.num_slices,
        "truth_sampling": structure["truth_sampling"],
        "num_frozen_phonons": preset.num_frozen_phonons,
        "phonon_sigma": preset.phonon_sigma,
        "source_size": preset.source_size,
        "dose_per_area": recorded["dose_per_area"],
        "electrons_per_pattern": recorded["electrons_per_pattern"],
        "seed": recorded["seed"],
        "structure_seed": preset.structure_seed,
        "defects": structure["defects"],
        "structure": structure["info"],
        "abtem_version": abtem_version(),
        "preset_fields": preset.to_dict(),
    }


def _simulate_uncached(
    preset: SimulationPreset,
    kind: str,
    dose_per_area: float | None,
    seed: int,
    progress_bar: bool,
) -> SimulatedDataset:
    """Run abTEM and assemble a :class:`SimulatedDataset` (no cache)."""
    abtem = _import_abtem()
    import py4DSTEM

    atoms, defects, info, scan_start = build_structure(preset, kind)
    grid = _simulation_grid(preset, atoms)
    patterns, angular_sampling = _run_multislice(
        abtem, atoms, preset, grid, scan_start, seed, progress_bar
    )
    patterns, electrons_per_pattern = record(patterns, preset, dose_per_area, seed)
    q_pixel_size = angular_sampling * preset.detector_binning
    datacube = py4DSTEM.DataCube(data=np.ascontiguousarray(patterns, dtype=np.float32))
    calibrate(datacube, preset.scan_step, q_pixel_size)

    slice_potentials, truth_sampling = _ground_truth(abtem, atoms, preset, grid)
    recorded = {
        "q_pixel_size": q_pixel_size,
        "dose_per_area": dose_per_area,
        "electrons_per_pattern": electrons_per_pattern,
        "seed": seed,
    }
    structure = {
        "scan_start": scan_start,
        "truth_sampling": truth_sampling,
        "defects": defects,
        "info": info,
    }
    return SimulatedDataset(
        datacube=datacube,
        projected_potential=slice_potentials.sum(axis=0),
        slice_potentials=slice_potentials,
        potential_sampling=(truth_sampling, truth_sampling),
        scan_sampling=(preset.scan_step, preset.scan_step),
        scan_start=tuple(scan_start),
        scan_extent=preset.scan_extent,
        parameters=_parameters(preset, kind, atoms, grid, recorded, structure),
        atoms=atoms,
    )


# ----------------------------------------------------------------------------- public


def simulate(
    preset: str | SimulationPreset = "tiny",
    *,
    kind: Literal["crystal", "2d"] = "crystal",
    dose_per_area: float | None = None,
    seed: int = 0,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    progress_bar: bool = True,
    **overrides: Any,
) -> SimulatedDataset:
    """Simulate (or read from the cache) a 4D-STEM scan with its ground truth.

    Parameters
    ----------
    preset : str or SimulationPreset
        ``"micro"`` (tests), ``"tiny"`` (seconds), ``"small"`` (benchmarks), ``"paper"``
        (60 kV, 30 mrad) or a :class:`SimulationPreset`.
    kind : {"crystal", "2d"}
        ``"crystal"``: SrTiO3 [001] slab with cation vacancies and Ba substitutions;
        ``"2d"``: MoS2 monolayer with S vacancies and W substitutions.
    dose_per_area : float, optional
        Electron dose [e/A^2]; each pattern then holds Poisson counts with mean total
        ``dose_per_area * scan_step**2`` (times the fraction of the beam on the detector).
        None: infinite dose, patterns hold the fraction of the beam per pixel.
    seed : int
        Seed of the shot noise and of the frozen phonons.
    cache : bool
        Read the result from, and store it in, the cache directory. An unreadable cache file
        is simulated again (with a RuntimeWarning) and rewritten.
    cache_dir : str or path-like, optional
        Cache directory; default ``$PY4DSTEM_COMPRESSED_CACHE`` or
        ``~/.cache/py4dstem-compressed``.
    progress_bar : bool
        Show abTEM's progress bar while simulating.
    **overrides
        Preset fields to replace, e.g. ``scan_gpts=(8, 8), detector_gpts=32``.

    Returns
    -------
    SimulatedDataset
        Calibrated datacube, ground-truth potentials and parameters.

    Raises
    ------
    ImportError
        If abTEM is not installed (``pip install "py4dstem-compressed[sim]"``).
    ValueError
        For an unknown ``kind`` or preset, invalid preset fields, a non-positive dose, a
        scan larger than the cell or a detector not reaching beyond the bright-field disk.
    """
    if kind not in ("crystal", "2d"):
        raise ValueError(f"kind must be 'crystal' or '2d', got {kind!r}")
    spec = get_preset(preset, **overrides)
    if dose_per_area is not None:
        dose_per_area = float(dose_per_area)
    key = cache_key(spec, kind, dose_per_area, int(seed))
    path = cache_path(cache_directory(cache_dir), spec, kind, key)
    if cache and path.exists():
        try:
            return read_cache(path, key)
        except Exception as error:  # any unreadable file is re-simulated
            warnings.warn(
                f"could not read cached simulation {path} ({type(error).__name__}: {error}); "
                "simulating again",
                RuntimeWarning,
                stacklevel=2,
            )
    dataset = _simulate_uncached(spec, kind, dose_per_area, int(seed), progress_bar)
    if cache:
        write_cache(path, dataset, key)
        dataset.cache_path = path
    return dataset
