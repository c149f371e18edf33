"""Simulated 4D-STEM datasets with their ground truth, cached on disk.

:func:`simulate` runs abTEM (the ``sim`` extra) on a defective SrTiO3 [001] crystal
(``kind="crystal"``, thick enough for multislice ptychography) or a MoS2 monolayer with
vacancies (``kind="2d"``) and returns a :class:`SimulatedDataset`: a calibrated py4DSTEM
``DataCube`` ready for ``MultislicePtychography``, the projected potential summed over the
specimen and per reconstruction slice, and every parameter needed to reconstruct. Results are
stored as HDF5 files in ``$PY4DSTEM_COMPRESSED_CACHE`` (default ``~/.cache/py4dstem-compressed``)
keyed by a hash of all parameters and the abTEM version, so a second call only reads the file.

Frames and units: the datacube's axes are ``(R_x, R_y, Q_x, Q_y)``; ``R_x`` is abTEM's ``x``,
the first axis of the potentials, so ``projected_potential[i, j]`` lies at ``(x, y) =
(i, j) * potential_sampling`` [A] and probe position ``(i, j)`` at ``scan_start + (i, j) *
scan_step`` [A]. Diffraction patterns are centred (the usual detector frame), calibrated in
mrad, and hold the fraction of the beam (or counts, with a finite dose) per pixel.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from py4dstem_compressed.simulation.presets import PRESETS, SimulationPreset, get_preset

if TYPE_CHECKING:
    import ase
    from py4DSTEM import DataCube

__all__ = [
    "PRESETS",
    "SimulatedDataset",
    "SimulationPreset",
    "cache_directory",
    "get_preset",
    "simulate",
]

CACHE_ENV_VARIABLE = "PY4DSTEM_COMPRESSED_CACHE"
_CACHE_FORMAT_VERSION = 3  # bump whenever the simulation or the file layout changes
_SIM_EXTRA_HINT = 'pip install "py4dstem-compressed[sim]"'

SRTIO3_LATTICE_CONSTANT = 3.905  # [A]
MOS2_LATTICE_CONSTANT = 3.18  # [A]
MOS2_THICKNESS = 3.19  # S-S distance [A]


# ----------------------------------------------------------------------------- result


@dataclass
class SimulatedDataset:
    """A simulated 4D-STEM scan with its ground truth.

    Attributes
    ----------
    datacube : py4DSTEM.DataCube
        Diffraction patterns ``(R_x, R_y, Q_x, Q_y)``; ``R_pixel_size`` [A] with units "A",
        ``Q_pixel_size`` [mrad] with units "mrad"; centred patterns.
    projected_potential : numpy.ndarray
        Projected potential of the static (mean) structure over the whole periodic cell,
        summed over the specimen thickness, shape ``(x, y)`` [V A].
    slice_potentials : numpy.ndarray
        The same split into ``parameters["num_slices"]`` equal slices from the entrance
        surface, shape ``(num_slices, x, y)`` [V A].
    potential_sampling : tuple of float
        Pixel size of the two potentials [A].
    scan_sampling : tuple of float
        Distance between probe positions along ``R_x`` and ``R_y`` [A].
    scan_start : tuple of float
        Position of the first probe position in the potential's frame [A].
    scan_extent : tuple of float
        ``scan_gpts * scan_sampling`` [A]: the scanned area starts at ``scan_start``.
    parameters : dict
        Everything needed to reconstruct and to reproduce (energy [eV], semiangle_cutoff
        [mrad], defocus [A], scan_step [A], thickness [A], num_slices, slice_thickness [A],
        dose_per_area [e/A^2], electrons_per_pattern, seed, angular_sampling [mrad],
        wavelength [A], defects, ...).
    atoms : ase.Atoms or None
        The static structure (before frozen phonons).
    cache_path : pathlib.Path or None
        The file this dataset was stored in or read from.
    """

    datacube: DataCube
    projected_potential: np.ndarray
    slice_potentials: np.ndarray
    potential_sampling: tuple[float, float]
    scan_sampling: tuple[float, float]
    scan_start: tuple[float, float]
    scan_extent: tuple[float, float]
    parameters: dict[str, Any]
    atoms: ase.Atoms | None = None
    cache_path: Path | None = field(default=None, repr=False)

    def reconstruction_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for py4DSTEM's ``MultislicePtychography`` (and ours).

        Returns
        -------
        dict
            ``energy`` [eV], ``semiangle_cutoff`` [mrad], ``defocus`` [A], ``num_slices`` and
            ``slice_thicknesses`` [A].
        """
        p = self.parameters
        return {
            "energy": p["energy"],
            "semiangle_cutoff": p["semiangle_cutoff"],
            "defocus": p["defocus"],
            "num_slices": p["num_slices"],
            "slice_thicknesses": p["slice_thickness"],
        }

    def scanned_potential(self, margin: float = 0.0, slices: bool = False) -> np.ndarray:
        """Ground truth cropped to the scanned area (the cell is periodic, so this wraps).

        Parameters
        ----------
        margin : float
            Extra border around the scanned area [A].
        slices : bool
            Crop ``slice_potentials`` instead of ``projected_potential``.

        Returns
        -------
        numpy.ndarray
            ``(x, y)`` or ``(num_slices, x, y)`` potential [V A] whose pixel ``(0, 0)`` lies at
            ``scan_start - margin``.
        """
        array = self.slice_potentials if slices else self.projected_potential[None]
        index = []
        for axis in range(2):
            s = self.potential_sampling[axis]
            first = round((self.scan_start[axis] - margin) / s)
            count = round((self.scan_extent[axis] + 2 * margin) / s)
            index.append(np.arange(first, first + count) % array.shape[axis + 1])
        out = array[:, index[0][:, None], index[1][None, :]]
        return out if slices else out[0]


# ----------------------------------------------------------------------------- helpers


def _import_abtem():
    try:
        import abtem
    except ImportError as error:
        raise ImportError(f"simulating datasets needs abTEM and ASE: {_SIM_EXTRA_HINT}") from error
    return abtem


def _abtem_version() -> str:
    try:
        return importlib.metadata.version("abtem")
    except importlib.metadata.PackageNotFoundError:
        raise ImportError(f"simulating datasets needs abTEM and ASE: {_SIM_EXTRA_HINT}") from None


def cache_directory(cache_dir: str | os.PathLike | None = None) -> Path:
    """Directory of cached simulations.

    Parameters
    ----------
    cache_dir : str or path-like, optional
        Explicit directory; default ``$PY4DSTEM_COMPRESSED_CACHE`` or
        ``~/.cache/py4dstem-compressed``.

    Returns
    -------
    pathlib.Path
        The (not necessarily existing) directory.
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV_VARIABLE)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "py4dstem-compressed"


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


def _cache_key(preset: SimulationPreset, kind: str, dose: float | None, seed: int) -> str:
    fields = preset.to_dict()
    fields.pop("name")
    if not fields.get("descan_px"):  # files cached before the field existed stay valid
        fields.pop("descan_px", None)
    payload = {
        "format": _CACHE_FORMAT_VERSION,
        "abtem": _abtem_version(),
        "kind": kind,
        "dose_per_area": dose,
        "seed": seed,
        "preset": fields,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


# ----------------------------------------------------------------------------- structures


def linear_descan(patterns: np.ndarray, total_px: float) -> np.ndarray:
    """Shift the patterns of a scan by a descan drift growing linearly along the scan.

    Pattern ``j`` of the ``N`` row-major scan positions moves by ``total_px * j / (N - 1)``
    pixels along the detector diagonal (``/ sqrt(2)`` along each axis). The shift is a
    linear interpolation: it keeps intensities non-negative and adds no ringing around the
    bright-field disk (a Fourier shift would spread the disk edge into the dark field).

    Parameters
    ----------
    patterns : numpy.ndarray
        ``(R_x, R_y, Q_x, Q_y)`` noise-free intensities.
    total_px : float
        Drift of the last pattern [px].

    Returns
    -------
    numpy.ndarray
        Shifted patterns, same shape, float32.
    """
    from scipy.ndimage import shift

    rx, ry, qx, qy = patterns.shape
    flat = np.asarray(patterns, dtype=np.float32).reshape(rx * ry, qx, qy)
    out = np.empty_like(flat)
    steps = max(flat.shape[0] - 1, 1)
    for j, pattern in enumerate(flat):
        along_axis = total_px * j / steps / math.sqrt(2.0)
        out[j] = shift(pattern, (along_axis, along_axis), order=1, mode="constant", cval=0.0)
    return out.reshape(patterns.shape)


def _pick_in_scan(atoms, candidates, preset, scan_start, count, rng, exclude=()):
    """Random indices among ``candidates``, in distinct atomic columns inside the scan.

    Columns already holding an index of ``exclude`` are avoided too; if the scanned area has
    too few candidates, atoms outside it (or sharing a column) fill up the count.
    """
    margin = min(1.0, 0.2 * min(preset.scan_extent))
    xy = atoms.positions[:, :2]
    lo = np.asarray(scan_start) + margin
    hi = np.asarray(scan_start) + np.asarray(preset.scan_extent) - margin
    inside = np.all((xy >= lo) & (xy <= hi), axis=1)
    exclude = list(exclude)
    pool = [int(i) for i in candidates if i not in exclude]
    order = [pool[i] for i in rng.permutation(len(pool))]
    order.sort(key=lambda i: not inside[i])  # stable: inside the scan first, random within
    chosen: list[int] = []
    for distinct in (True, False):
        for i in order:
            if len(chosen) == count:
                return chosen
            taken = [xy[j] for j in chosen + exclude]
            if i in chosen or (distinct and any(np.linalg.norm(xy[i] - t) < 0.5 for t in taken)):
                continue
            chosen.append(i)
    return chosen


def _apply_defects(atoms, vacancy_symbols, substitution, preset, scan_start):
    rng = np.random.default_rng(preset.structure_seed)
    symbols = np.array(atoms.get_chemical_symbols())
    vac_candidates = np.nonzero(np.isin(symbols, vacancy_symbols))[0]
    vacancies = _pick_in_scan(atoms, vac_candidates, preset, scan_start, preset.num_vacancies, rng)
    sub_candidates = np.nonzero(symbols == substitution[0])[0]
    subs = _pick_in_scan(
        atoms, sub_candidates, preset, scan_start, preset.num_substitutions, rng, vacancies
    )
    defects = [
        {"type": "vacancy", "symbol": str(symbols[i]), "position": atoms.positions[i].tolist()}
        for i in vacancies
    ] + [
        {
            "type": "substitution",
            "symbol": substitution[1],
            "replaces": substitution[0],
            "position": atoms.positions[i].tolist(),
        }
        for i in subs
    ]
    for i in subs:
        atoms[i].symbol = substitution[1]
    del atoms[vacancies]
    return atoms, defects


def _build_structure(preset: SimulationPreset, kind: str):
    """Periodic specimen with point defects; returns (atoms, defects, info)."""
    import ase

    if kind == "crystal":
        a = SRTIO3_LATTICE_CONSTANT
        unit = ase.Atoms(
            "SrTiOOO",
            scaled_positions=[
                (0, 0, 0.25),
                (0.5, 0.5, 0.75),
                (0.5, 0.5, 0.25),
                (0.5, 0, 0.75),
                (0, 0.5, 0.75),
            ],
            cell=[a, a, a],
            pbc=True,
        )
        n = max(1, math.ceil(preset.field_of_view / a - 1e-6))
        nz = max(1, round(preset.thickness / a))
        atoms = unit.repeat((n, n, nz))
        info = {"material": "SrTiO3", "zone_axis": "[001]", "unit_cells": [n, n, nz], "strain": 0}
        vacancy_symbols, substitution = ("Sr", "Ti"), ("Sr", "Ba")
    elif kind == "2d":
        from ase.build import mx2

        a = MOS2_LATTICE_CONSTANT
        hexagonal = mx2("MoS2", kind="2H", a=a, thickness=MOS2_THICKNESS, vacuum=preset.vacuum)
        from abtem import orthogonalize_cell

        unit = orthogonalize_cell(hexagonal)  # rectangular a x a sqrt(3) cell
        b = unit.cell[1, 1]
        # a square supercell: n a ~ m b, strained by <= 1.5 % along y to be exactly square
        n = max(1, math.ceil(preset.field_of_view / a - 1e-6))
        while True:
            m = max(1, round(n * a / b))
            strain = n * a / (m * b) - 1
            if abs(strain) <= 0.015:
                break
            n += 1
        atoms = unit.repeat((n, m, 1))
        cell = atoms.cell.array.copy()
        cell[1, 1] = n * a
        atoms.set_cell(cell, scale_atoms=True)
        info = {"material": "MoS2", "zone_axis": "[001]", "unit_cells": [n, m, 1]}
        info["strain"] = float(strain)
        vacancy_symbols, substitution = ("S",), ("Mo", "W")
    else:
        raise ValueError(f"kind must be 'crystal' or '2d', got {kind!r}")
    extent = atoms.cell.lengths()[:2]
    scan_start = tuple(float((e - s) / 2) for e, s in zip(extent, preset.scan_extent))
    if min(scan_start) < 0:
        raise ValueError(f"the scan {preset.scan_extent} A does not fit in the cell {extent} A")
    atoms, defects = _apply_defects(atoms, vacancy_symbols, substitution, preset, scan_start)
    info["formula"] = atoms.get_chemical_formula()
    return atoms, defects, info, scan_start


# ----------------------------------------------------------------------------- simulation


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
    from abtem.core.energy import energy2wavelength

    atoms, defects, info, scan_start = _build_structure(preset, kind)
    extent = float(atoms.cell[0, 0])
    cell_depth = float(atoms.cell[2, 2])
    wavelength = float(energy2wavelength(preset.energy))
    n_det = preset.detector_gpts * preset.detector_binning
    gpts = _next_fft_size(
        max(math.ceil(1.5 * (n_det + 2)), math.ceil(extent / preset.max_potential_sampling))
    )
    detector_max_angle = 0.5 * preset.detector_gpts * preset.detector_binning
    detector_max_angle *= wavelength / extent * 1e3
    if detector_max_angle <= 1.2 * preset.semiangle_cutoff:
        raise ValueError(
            f"the detector reaches {detector_max_angle:.1f} mrad, not beyond the bright-field "
            f"disk ({preset.semiangle_cutoff} mrad): increase detector_gpts or field_of_view"
        )
    num_sim_slices = max(1, round(cell_depth / preset.simulation_slice_thickness))

    specimen = atoms
    if preset.num_frozen_phonons > 0:
        specimen = abtem.FrozenPhonons(
            atoms, num_configs=preset.num_frozen_phonons, sigmas=preset.phonon_sigma, seed=seed
        )
    potential = abtem.Potential(
        specimen,
        gpts=(gpts, gpts),
        slice_thickness=cell_depth / num_sim_slices,
        projection="infinite",
        parametrization="lobato",
    )
    probe = abtem.Probe(
        energy=preset.energy, semiangle_cutoff=preset.semiangle_cutoff, defocus=preset.defocus
    )
    end = tuple(s + e for s, e in zip(scan_start, preset.scan_extent))
    scan = abtem.GridScan(start=scan_start, end=end, gpts=preset.scan_gpts, endpoint=False)
    measurement = probe.scan(
        potential, scan=scan, detectors=abtem.PixelatedDetector(max_angle=None)
    )
    measurement = measurement.compute(progress_bar=progress_bar)
    patterns = np.asarray(measurement.array, dtype=np.float32)
    angular_sampling = float(measurement.angular_sampling[0])  # [mrad]
    if preset.descan_px:
        patterns = linear_descan(patterns, preset.descan_px * preset.detector_binning)

    # centred crop of detector_gpts * binning pixels, then bin
    first = gpts // 2 - n_det // 2
    patterns = patterns[..., first : first + n_det, first : first + n_det]
    b = preset.detector_binning
    if b > 1:
        shape = (*patterns.shape[:2], preset.detector_gpts, b, preset.detector_gpts, b)
        patterns = patterns.reshape(shape).sum(axis=(3, 5))
    q_pixel_size = angular_sampling * b

    if preset.source_size > 0:
        from scipy.ndimage import gaussian_filter

        sigma_px = preset.source_size / preset.scan_step
        patterns = gaussian_filter(patterns, sigma=(sigma_px, sigma_px, 0, 0), mode="nearest")

    electrons_per_pattern = None
    if dose_per_area is not None:
        if dose_per_area <= 0:
            raise ValueError(f"dose_per_area must be positive or None, got {dose_per_area}")
        electrons_per_pattern = float(dose_per_area * preset.scan_step**2)
        rng = np.random.default_rng(seed)
        patterns = rng.poisson(patterns * electrons_per_pattern).astype(np.float32)

    datacube = py4DSTEM.DataCube(data=np.ascontiguousarray(patterns, dtype=np.float32))
    _calibrate(datacube, preset.scan_step, q_pixel_size)

    # ground truth: static structure, reconstruction slices from the entrance surface
    truth_gpts = _next_fft_size(round(extent / preset.truth_sampling))
    slice_thickness = cell_depth / preset.num_slices
    truth = abtem.Potential(
        atoms,
        gpts=(truth_gpts, truth_gpts),
        slice_thickness=(slice_thickness,) * preset.num_slices,
        projection="infinite",
        parametrization="lobato",
    )
    slice_potentials = np.asarray(truth.build().compute(progress_bar=False).array, dtype=float)
    truth_sampling = extent / truth_gpts

    parameters = {
        "preset": preset.name,
        "kind": kind,
        "energy": preset.energy,
        "wavelength": wavelength,
        "semiangle_cutoff": preset.semiangle_cutoff,
        "defocus": preset.defocus,
        "scan_gpts": list(preset.scan_gpts),
        "scan_step": preset.scan_step,
        "scan_start": list(scan_start),
        "detector_gpts": preset.detector_gpts,
        "detector_binning": b,
        "angular_sampling": q_pixel_size,
        "reciprocal_sampling": q_pixel_size * 1e-3 / wavelength,
        "detector_max_angle": detector_max_angle,
        "cell_extent": [extent, float(atoms.cell[1, 1])],
        "thickness": cell_depth,
        "num_slices": preset.num_slices,
        "slice_thickness": slice_thickness,
        "simulation_gpts": gpts,
        "simulation_sampling": extent / gpts,
        "simulation_slice_thickness": cell_depth / num_sim_slices,
        "truth_sampling": truth_sampling,
        "num_frozen_phonons": preset.num_frozen_phonons,
        "phonon_sigma": preset.phonon_sigma,
        "source_size": preset.source_size,
        "dose_per_area": dose_per_area,
        "electrons_per_pattern": electrons_per_pattern,
        "seed": seed,
        "structure_seed": preset.structure_seed,
        "defects": defects,
        "structure": info,
        "abtem_version": _abtem_version(),
        "preset_fields": preset.to_dict(),
    }
    return SimulatedDataset(
        datacube=datacube,
        projected_potential=slice_potentials.sum(axis=0),
        slice_potentials=slice_potentials,
        potential_sampling=(truth_sampling, truth_sampling),
        scan_sampling=(preset.scan_step, preset.scan_step),
        scan_start=tuple(scan_start),
        scan_extent=preset.scan_extent,
        parameters=parameters,
        atoms=atoms,
    )


def _calibrate(datacube, r_pixel_size: float, q_pixel_size: float) -> None:
    datacube.calibration.set_R_pixel_size(r_pixel_size)
    datacube.calibration.set_R_pixel_units("A")
    datacube.calibration.set_Q_pixel_size(q_pixel_size)
    datacube.calibration.set_Q_pixel_units("mrad")


# ----------------------------------------------------------------------------- cache files


def _write_cache(path: Path, dataset: SimulatedDataset, key: str) -> None:
    """Write ``dataset`` to ``path`` atomically (temporary file, then ``os.replace``).

    The file is an EMD 1.0 file: ``py4DSTEM.read`` returns the calibrated DataCube; the
    ground truth and parameters sit beside the EMD tree in a plain ``simulation`` group.
    """
    import h5py
    import py4DSTEM

    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(handle)
    os.remove(tmp)  # py4DSTEM.save writes a new file
    try:
        py4DSTEM.save(tmp, dataset.datacube, mode="w")
        with h5py.File(tmp, "a") as f:
            g = f.create_group("simulation")
            g.attrs["format"] = "py4dstem_compressed.SimulatedDataset"
            g.attrs["format_version"] = _CACHE_FORMAT_VERSION
            g.attrs["cache_key"] = key
            g.attrs["parameters"] = json.dumps(dataset.parameters)
            for name in ("potential_sampling", "scan_sampling", "scan_start", "scan_extent"):
                g.attrs[name] = np.asarray(getattr(dataset, name), dtype=float)
            g.create_dataset("projected_potential", data=dataset.projected_potential)
            g.create_dataset("slice_potentials", data=dataset.slice_potentials)
            if dataset.atoms is not None:
                a = g.create_group("atoms")
                a.create_dataset("numbers", data=dataset.atoms.numbers)
                a.create_dataset("positions", data=dataset.atoms.positions)
                a.create_dataset("cell", data=dataset.atoms.cell.array)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _read_cache(path: Path, key: str) -> SimulatedDataset:
    """Read a dataset written by :func:`_write_cache`; raise on any inconsistency."""
    import h5py
    import py4DSTEM

    with h5py.File(path, "r") as f:
        g = f["simulation"]
        if g.attrs["cache_key"] != key:
            raise ValueError("cache key mismatch")
        parameters = json.loads(g.attrs["parameters"])
        atoms = None
        if "atoms" in g:
            import ase

            a = g["atoms"]
            atoms = ase.Atoms(
                numbers=a["numbers"][()], positions=a["positions"][()], cell=a["cell"][()]
            )
            atoms.pbc = True
        truth = {k: g[k][()] for k in ("projected_potential", "slice_potentials")}
        geometry = {
            k: tuple(float(v) for v in g.attrs[k])
            for k in ("potential_sampling", "scan_sampling", "scan_start", "scan_extent")
        }
    datacube = py4DSTEM.read(str(path))
    if not isinstance(datacube, py4DSTEM.DataCube):
        raise ValueError(f"expected a DataCube in {path}, found {type(datacube).__name__}")
    return SimulatedDataset(
        datacube=datacube,
        **truth,
        **geometry,
        parameters=parameters,
        atoms=atoms,
        cache_path=path,
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
        Read the result from, and store it in, the cache directory.
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
    """
    if kind not in ("crystal", "2d"):
        raise ValueError(f"kind must be 'crystal' or '2d', got {kind!r}")
    spec = get_preset(preset, **overrides)
    if dose_per_area is not None:
        dose_per_area = float(dose_per_area)
    key = _cache_key(spec, kind, dose_per_area, int(seed))
    path = cache_directory(cache_dir) / f"{spec.name}-{kind}-{key[:20]}.h5"
    if cache and path.exists():
        try:
            return _read_cache(path, key)
        except Exception as error:  # any unreadable file is re-simulated
            warnings.warn(
                f"could not read cached simulation {path} ({type(error).__name__}: {error}); "
                "simulating again",
                RuntimeWarning,
                stacklevel=2,
            )
    dataset = _simulate_uncached(spec, kind, dose_per_area, int(seed), progress_bar)
    if cache:
        _write_cache(path, dataset, key)
        dataset.cache_path = path
    return dataset
