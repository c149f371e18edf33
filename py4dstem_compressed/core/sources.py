"""Turn what users pass as data into a 4D frame source read in chunks.

Sources: a py4DSTEM ``DataCube``, a NumPy array or memmap, a dask array, an
h5py / zarr dataset, or a path to a ``.npy`` file (memory-mapped), a py4DSTEM /
EMD ``.h5`` / ``.emd`` / ``.hdf5`` file (read lazily with h5py) or a ``.zarr``
store. :class:`FrameSource` reads frames ``start..stop-1`` in flattened
(row-major) scan order; :meth:`FrameSource.reader` gives a picklable recipe that
dask workers use to read their own chunks from a file.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "FILE_SUFFIXES",
    "FrameSource",
    "as_4d",
    "check_frames",
    "frame_batch",
    "open_source",
    "sampled_frames",
    "sampled_positions",
]

FILE_SUFFIXES = (".npy", ".h5", ".hdf5", ".emd", ".zarr")


def as_4d(source) -> tuple[object, object]:
    """Return ``(array, calibration)`` for a DataCube or a 4D array-like.

    Parameters
    ----------
    source : py4DSTEM.DataCube or array-like
        ``(Rx, Ry, Qx, Qy)`` data. Array-likes only need ``shape`` and indexing
        (NumPy, memmap, h5py dataset, zarr, dask, CuPy).

    Returns
    -------
    array : array-like
        The 4D data (not copied).
    calibration : py4DSTEM.data.Calibration or None
        The DataCube's calibration, if any.
    """
    calibration = None
    if isinstance(source, np.ndarray) or not hasattr(source, "data") or _is_array_like(source):
        data = source
    else:  # a py4DSTEM DataCube (or another emdfile Array)
        data = source.data
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            calibration = getattr(source, "calibration", None)
    shape = getattr(data, "shape", None)
    if shape is None or len(shape) != 4:
        raise ValueError(
            "expected 4D data (Rx, Ry, Qx, Qy): a py4DSTEM DataCube or a 4D array; got "
            f"{type(source).__name__} with shape {shape}"
        )
    return data, calibration


def data_array(source):
    """The 4D array (NumPy, dask, h5py, memory-mapped) behind a DataCube or an array-like."""
    return as_4d(source)[0]


def _is_array_like(obj) -> bool:
    module = type(obj).__module__
    return module.startswith(("dask", "h5py", "zarr", "cupy"))


def sampled_frames(data, num_samples: int, seed: int | None) -> Iterator[np.ndarray]:
    """Patterns at up to ``num_samples`` random (seeded) scan positions, in scan order.

    Reads one pattern at a time, so sampling a file or dask array stays cheap.
    """
    ry = data.shape[1]
    for i in sampled_positions(data.shape[:2], num_samples, seed):
        yield np.asarray(data[i // ry, i % ry])


def sampled_positions(scan_shape, num_samples: int, seed: int | None) -> np.ndarray:
    """Sorted flat (row-major) indices of up to ``num_samples`` random (seeded) positions."""
    rx, ry = (int(s) for s in scan_shape)
    count = min(num_samples, rx * ry)
    return np.sort(np.random.default_rng(seed).choice(rx * ry, size=count, replace=False))


def frame_batch(data, start: int, stop: int) -> np.ndarray:
    """Patterns ``start..stop-1`` in flattened (row-major) scan order, ``(B, Qx, Qy)``.

    Reads whole scan rows as single slices, so HDF5, zarr and dask sources see
    few large reads.
    """
    ry = data.shape[1]
    if isinstance(data, np.ndarray):
        return data.reshape(-1, *data.shape[2:])[start:stop]
    pieces = []
    index = start
    while index < stop:
        row, col = divmod(index, ry)
        num_rows = (stop - index) // ry if col == 0 else 0
        if num_rows:  # whole scan rows in one read
            block = _materialise(data[row : row + num_rows])
            pieces.append(block.reshape(-1, *block.shape[2:]))
            index += num_rows * ry
        else:
            end = min(stop, (row + 1) * ry)
            pieces.append(_materialise(data[row, col : col + end - index]))
            index = end
    return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)


class NpyFile:
    """A ``.npy`` file read with plain file reads (no memory map, so no resident pages).

    Supports the indexing :func:`frame_batch` uses: ``[r0:r1]`` (whole scan rows)
    and ``[r, c0:c1]`` (part of a row).

    Parameters
    ----------
    path : str or path-like
        A C-ordered ``.npy`` file.
    """

    def __init__(self, path) -> None:
        self.path = str(path)
        try:
            with open(self.path, "rb") as f:
                version = np.lib.format.read_magic(f)
                shape, fortran, dtype = np.lib.format._read_array_header(f, version)
                self.offset = f.tell()
        except ValueError as err:
            raise ValueError(f"{path} is not a readable .npy file ({err})") from err
        if fortran or dtype.hasobject:
            raise ValueError(f"{path}: only C-ordered numeric .npy files can be streamed")
        self.shape, self.dtype = tuple(shape), dtype
        self.ndim = len(shape)
        self.file = None

    def _read(self, first: int, count: int, shape: tuple[int, ...]) -> np.ndarray:
        frame = int(np.prod(self.shape[2:])) * self.dtype.itemsize
        out = np.empty(shape, self.dtype)
        with open(self.path, "rb") as f:
            f.seek(self.offset + first * frame)
            if f.readinto(memoryview(out).cast("B")) != count * frame:
                raise ValueError(f"{self.path} is truncated: fewer frames than its header says")
        return out

    def __getitem__(self, key) -> np.ndarray:
        ry = self.shape[1]
        if isinstance(key, slice):
            r0, r1, _ = key.indices(self.shape[0])
            return self._read(r0 * ry, (r1 - r0) * ry, (r1 - r0, *self.shape[1:]))
        row, cols = key
        if not isinstance(cols, slice):  # one frame
            col = int(cols)
            return self._read(int(row) * ry + col, 1, self.shape[2:])
        c0, c1, _ = cols.indices(ry)
        return self._read(row * ry + c0, c1 - c0, (c1 - c0, *self.shape[2:]))

    def __array__(self, dtype=None):
        data = self[0 : self.shape[0]]
        return data if dtype is None else data.astype(dtype)


def _materialise(block) -> np.ndarray:
    if hasattr(block, "compute"):  # dask
        block = block.compute()
    return np.asarray(block)


@dataclass(frozen=True)
class FileReader:
    """Picklable recipe to open a file source on a dask worker.

    Parameters
    ----------
    path : str
        File path.
    kind : {"npy", "hdf5", "zarr"}
        Format.
    datapath : str or None
        HDF5 dataset path or zarr array path.
    """

    path: str
    kind: str
    datapath: str | None = None

    def open(self):
        """Return the array-like (memmap, h5py dataset, zarr array)."""
        if self.kind == "npy":
            return NpyFile(self.path)
        if self.kind == "hdf5":
            import h5py

            return h5py.File(self.path, "r")[self.datapath]
        import zarr

        store = zarr.open(self.path, mode="r")
        return store if self.datapath is None else store[self.datapath]

    def read(self, start: int, stop: int) -> np.ndarray:
        """Frames ``start..stop-1`` (opens and closes the file)."""
        data = self.open()
        try:
            return np.array(frame_batch(data, start, stop))
        finally:
            file = getattr(data, "file", None)
            if file is not None:
                file.close()


def check_frames(data, name: str = "data") -> None:
    """Refuse 4D data that cannot be compressed: an empty scan or detector, complex values.

    Parameters
    ----------
    data : array-like
        ``(Rx, Ry, Qx, Qy)`` array-like with ``shape`` and ``dtype``.
    name : str
        What to call the data in messages.

    Raises
    ------
    ValueError
        If a scan or detector dimension is 0.
    TypeError
        If the values are complex (casting would silently drop the imaginary part).
    """
    shape = tuple(int(s) for s in data.shape)
    if min(shape[:2]) < 1:
        raise ValueError(
            f"{name} has scan shape {shape[:2]}: there is no pattern to compress; "
            "pass data with at least one scan position (Rx, Ry >= 1)"
        )
    if min(shape[2:]) < 1:
        raise ValueError(
            f"{name} has detector shape {shape[2:]}: pass patterns with at least one pixel "
            "(Qx, Qy >= 1)"
        )
    dtype = np.dtype(getattr(data, "dtype", np.float64))
    if dtype.kind == "c":
        raise TypeError(
            f"{name} is complex ({dtype}) but compress takes real intensities [counts]; "
            "pass the intensities, e.g. np.abs(data) ** 2 for complex exit waves, or "
            "data.real if the imaginary part is zero"
        )
    if dtype.kind not in "fiub":
        raise TypeError(
            f"{name} has dtype {dtype}; pass real numeric intensities (float or integer)"
        )


class FrameSource:
    """A 4D dataset read in chunks of frames.

    Parameters
    ----------
    data : array-like
        ``(Rx, Ry, Qx, Qy)`` array-like.
    calibration : py4DSTEM.data.Calibration or None
        Calibration to carry to the compressed data.
    reader : FileReader or None
        How workers re-open the data (file sources only).
    name : str
        What to call the source in messages.
    """

    def __init__(self, data, calibration=None, reader: FileReader | None = None, name="data"):
        check_frames(data, name)
        self.data = data
        self.calibration = calibration
        self.reader = reader
        self.name = name

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(Rx, Ry, Qx, Qy)``."""
        return tuple(int(s) for s in self.data.shape)

    @property
    def scan_shape(self) -> tuple[int, int]:
        """``(Rx, Ry)``."""
        return self.shape[:2]

    @property
    def num_frames(self) -> int:
        """``Rx * Ry``."""
        return self.shape[0] * self.shape[1]

    @property
    def frame_bytes(self) -> int:
        """Bytes of one frame as stored."""
        return int(np.prod(self.shape[2:])) * np.dtype(self.data.dtype).itemsize

    @property
    def is_dask(self) -> bool:
        """Whether the data is a dask array."""
        return hasattr(self.data, "dask")

    def read(self, start: int, stop: int) -> np.ndarray:
        """Frames ``start..stop-1`` as a NumPy array ``(B, Qx, Qy)``."""
        return np.asarray(frame_batch(self.data, start, stop))

    def close(self) -> None:
        """Close an HDF5 file opened by :func:`open_source`."""
        file = getattr(self.data, "file", None)
        if self.reader is not None and file is not None:
            file.close()


def open_source(source, datapath: str | None = None) -> FrameSource:
    """Open anything :func:`~py4dstem_compressed.compress` accepts as a :class:`FrameSource`.

    Parameters
    ----------
    source : DataCube, array-like or path
        See the module docstring.
    datapath : str, optional
        Dataset inside an HDF5 file or zarr group when it holds several 4D arrays.

    Raises
    ------
    FileNotFoundError
        For a path that does not exist.
    ValueError
        For an unknown file format, a file without a (unique) 4D dataset, or non-4D data.
    """
    if isinstance(source, (str, os.PathLike)):
        return _open_path(Path(source), datapath)
    data, calibration = as_4d(source)
    return FrameSource(data, calibration, name=type(source).__name__)


def _open_path(path: Path, datapath: str | None) -> FrameSource:
    if not path.exists():
        raise FileNotFoundError(f"no file at {path}")
    suffix = path.suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise ValueError(
            f"unknown input format {suffix or '(no suffix)'!r} for {path}; expected one of "
            f"{', '.join(FILE_SUFFIXES)} (or pass an array / DataCube)"
        )
    if suffix == ".npy":
        data = NpyFile(path)
        reader = FileReader(str(path), "npy")
        calibration = None
    elif suffix == ".zarr":
        import zarr

        store = zarr.open(str(path), mode="r")
        if datapath is None and hasattr(store, "arrays"):
            found = [name for name, arr in store.arrays() if arr.ndim == 4]
            datapath = _unique(found, path)
        data = store if datapath is None else store[datapath]
        reader = FileReader(str(path), "zarr", datapath)
        calibration = None
    else:
        data, datapath, calibration = _open_hdf5(path, datapath)
        reader = FileReader(str(path), "hdf5", datapath)
    try:
        data, _ = as_4d(data)
    except ValueError:
        if reader.kind == "hdf5":
            data.file.close()
        raise
    return FrameSource(data, calibration, reader, name=str(path))


def _unique(found: list[str], path: Path) -> str:
    if len(found) != 1:
        raise ValueError(
            f"{path} holds {len(found)} 4D datasets ({', '.join(found[:5]) or 'none'}); "
            "pass datapath= to choose one"
        )
    return found[0]


def _open_hdf5(path: Path, datapath: str | None):
    import h5py
    import hdf5plugin  # noqa: F401  (registers compression filters for reading)

    try:
        file = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"{path} is not a readable HDF5/EMD file ({err})") from err
    if datapath is None:
        found = []
        file.visititems(
            lambda name, obj: (
                found.append(name) if isinstance(obj, h5py.Dataset) and obj.ndim == 4 else None
            )
        )
        try:
            datapath = _unique(found, path)
        except ValueError:
            file.close()
            raise
    elif datapath not in file:
        file.close()
        raise ValueError(f"{path} has no dataset {datapath!r}")
    return file[datapath], datapath, _emd_calibration(file, datapath)


def _emd_calibration(file, datapath: str):
    """The py4DSTEM calibration of the EMD tree holding ``datapath``, or None."""
    root = datapath.strip("/").split("/")[0]
    path = f"{root}/metadatabundle/calibration"
    if path not in file:
        return None
    try:
        from emdfile import Metadata
        from py4DSTEM.data import Calibration

        metadata = Metadata.from_h5(file[path])
        calibration = Calibration()
        calibration._params.update(metadata._params)
        return calibration
    except Exception:  # a damaged calibration should not stop a compression
        return None
