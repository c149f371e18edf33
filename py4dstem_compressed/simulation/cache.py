"""Cache files of the simulations: where they live, their key, writing and reading them.

A simulation is stored as an HDF5 file in ``$PY4DSTEM_COMPRESSED_CACHE`` (default
``~/.cache/py4dstem-compressed``), named ``{preset}-{kind}-{key[:20]}.h5``, where the key is a
SHA-256 of every parameter and the abTEM version (:func:`cache_key`). Files written by earlier
versions stay valid as long as the key's payload is unchanged: change it (and bump
``CACHE_FORMAT_VERSION``) only when the simulation or the file layout changes.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from py4dstem_compressed.simulation.presets import SimulationPreset
from py4dstem_compressed.simulation.simulated_dataset import SimulatedDataset

__all__ = [
    "CACHE_ENV_VARIABLE",
    "CACHE_FORMAT_VERSION",
    "SIM_EXTRA_HINT",
    "abtem_version",
    "cache_directory",
    "cache_key",
    "cache_path",
    "read_cache",
    "write_cache",
]

CACHE_ENV_VARIABLE = "PY4DSTEM_COMPRESSED_CACHE"
CACHE_FORMAT_VERSION = 3  # bump whenever the simulation or the file layout changes
SIM_EXTRA_HINT = 'pip install "py4dstem-compressed[sim]"'


def abtem_version() -> str:
    """Installed abTEM version (part of the cache key); an ImportError if it is missing."""
    try:
        return importlib.metadata.version("abtem")
    except importlib.metadata.PackageNotFoundError:
        raise ImportError(f"simulating datasets needs abTEM and ASE: {SIM_EXTRA_HINT}") from None


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


def cache_key(preset: SimulationPreset, kind: str, dose: float | None, seed: int) -> str:
    """SHA-256 (hex) of everything that determines a simulation.

    The payload is the format version, the abTEM version, ``kind``, ``dose`` [e/A^2] (None:
    infinite), ``seed`` and the preset's fields without its name (and without ``descan_px``
    when it is 0, so files cached before that field existed stay valid). Changing any of this
    changes every key and re-simulates every cached file.
    """
    fields = preset.to_dict()
    fields.pop("name")
    if not fields.get("descan_px"):  # files cached before the field existed stay valid
        fields.pop("descan_px", None)
    if fields.get("source_size"):  # a finite source is simulated on a finer scan since 0.2
        fields["source_oversampling"] = preset.source_oversampling
    payload = {
        "format": CACHE_FORMAT_VERSION,
        "abtem": abtem_version(),
        "kind": kind,
        "dose_per_area": dose,
        "seed": seed,
        "preset": fields,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def cache_path(directory: Path, preset: SimulationPreset, kind: str, key: str) -> Path:
    """The file of one simulation: ``{directory}/{preset.name}-{kind}-{key[:20]}.h5``."""
    return directory / f"{preset.name}-{kind}-{key[:20]}.h5"


def write_cache(path: Path, dataset: SimulatedDataset, key: str) -> None:
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
            g.attrs["format_version"] = CACHE_FORMAT_VERSION
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


def read_cache(path: Path, key: str) -> SimulatedDataset:
    """Read a dataset written by :func:`write_cache`.

    Raises
    ------
    ValueError
        If the file's key is not ``key`` or it holds no DataCube (any other read error of
        h5py or py4DSTEM propagates too: the caller simulates again).
    """
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
