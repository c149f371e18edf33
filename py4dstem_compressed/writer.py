"""Live acquisition: compress frames as they arrive and append them, crash-safe, to an EMD file.

The file is created complete (atomically, temp file + rename) with every
per-pattern dataset pre-allocated, unfiltered and contiguous, NaN-filled, and a
per-pattern ``valid`` flag of 0. A :meth:`CompressedWriter.write` then only
overwrites bytes inside those datasets -- HDF5's metadata never changes while
acquiring -- in this order: data, flush + fsync, ``valid`` flags, flush + fsync.
So a process killed at any moment leaves a file that opens, in which every
flagged pattern is correct and every other one is reported missing (NaN).
Re-opening the same path with the same basis resumes. When the scan is
complete, :meth:`CompressedWriter.close` rewrites the file with chunked,
compressed datasets (atomically again).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from py4dstem_compressed.basis import Basis
from py4dstem_compressed.emd import save
from py4dstem_compressed.kernels import CompressionKernel
from py4dstem_compressed.storage import (
    FIELDS,
    MODES,
    CompressedDataCube,
    StorageOptions,
    read_compressed,
)

__all__ = ["CompressedWriter", "open_compressed_writer"]


def open_compressed_writer(
    path: str | os.PathLike,
    basis: Basis,
    scan_shape: tuple[int, int],
    mode: str = "amplitude",
    *,
    calibration=None,
    overwrite: bool = False,
    durable: bool = True,
    finalize: bool = True,
    compression: str = "blosc-zstd",
    check_center: bool = True,
    name: str = "compressed_datacube",
) -> CompressedWriter:
    """Open (or resume) an EMD file that frames are compressed into as they arrive.

    Parameters
    ----------
    path : str or path-like
        Target ``.h5`` / ``.emd`` file. If it exists and was started by a writer
        with the same basis, mode and scan shape, writing resumes.
    basis : Basis
        Masks to project on.
    scan_shape : (int, int)
        Scan shape ``(Rx, Ry)``; frames are indexed in row-major order.
    mode : {"amplitude", "intensity"}
        Project ``sqrt(I)`` or ``I``.
    calibration : py4DSTEM.data.Calibration, optional
        Stored with the data.
    overwrite : bool
        Start afresh even if ``path`` exists.
    durable : bool
        fsync after each write (survives power loss, not only a killed process).
    finalize : bool
        On closing a complete scan, rewrite the file with chunked, compressed datasets.
    compression : {"blosc-zstd", "zstd", "none"}
        Filter used when finalizing.
    check_center : bool
        Check the first frames' centre of mass against the basis (see ``compress``).
    name : str
        EMD node name.

    Returns
    -------
    CompressedWriter
        A context manager; call :meth:`CompressedWriter.write`.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not isinstance(basis, Basis):
        raise TypeError(f"basis must be a py4dstem_compressed.Basis, got {type(basis).__name__}")
    scan_shape = tuple(int(s) for s in scan_shape)
    if len(scan_shape) != 2 or min(scan_shape) < 1:
        raise ValueError(f"scan_shape must be two positive integers, got {scan_shape}")
    path = Path(path)
    if path.exists() and not overwrite:
        _check_resumable(path, basis, scan_shape, mode)
    else:
        _create(path, basis, scan_shape, mode, calibration, name)
    return CompressedWriter(
        path, basis, scan_shape, mode, durable, finalize, compression, check_center
    )


def _create(path: Path, basis, scan_shape, mode, calibration, name) -> None:
    k = basis.num_masks
    nan = np.full(scan_shape, np.nan, np.float32)
    placeholder = CompressedDataCube(
        coefficients=np.full((*scan_shape, k), np.nan, np.float32),
        perpendicular_norms=np.full((*scan_shape, 2), np.nan, np.float32),
        edge_intensity=nan,
        total_intensity=nan,
        center_of_mass=np.full((*scan_shape, 2), np.nan, np.float32),
        basis=basis,
        mode=mode,
        calibration=calibration,
        name=name,
        valid=np.zeros(scan_shape, bool),
    )
    placeholder.storage = StorageOptions(layout="contiguous")
    save(path, placeholder, overwrite=True)


def _check_resumable(path: Path, basis, scan_shape, mode) -> None:
    try:
        existing = read_compressed(path)
    except (ValueError, ImportError) as err:
        raise ValueError(
            f"{path} exists but cannot be resumed ({err}); pass overwrite=True to start afresh"
        ) from err
    problems = []
    if existing.scan_shape != scan_shape:
        problems.append(f"scan shape {existing.scan_shape} != {scan_shape}")
    if existing.mode != mode:
        problems.append(f"mode {existing.mode!r} != {mode!r}")
    if existing.basis.masks.shape != basis.masks.shape or not np.array_equal(
        existing.basis.masks, basis.masks
    ):
        problems.append("a different basis")
    if problems:
        raise ValueError(
            f"{path} was started with {'; '.join(problems)}; pass overwrite=True to start afresh"
        )
    if existing.is_complete:
        raise FileExistsError(f"{path} already holds a complete scan; pass overwrite=True")


class CompressedWriter:
    """Writes compressed frames into a pre-allocated EMD file (see the module docstring).

    Create it with :func:`open_compressed_writer`.
    """

    def __init__(self, path, basis, scan_shape, mode, durable, finalize, compression, check_center):
        import h5py

        self.path = Path(path)
        self.basis = basis
        self.scan_shape = scan_shape
        self.num_frames = scan_shape[0] * scan_shape[1]
        self.mode = mode
        self.durable = durable
        self.finalize = finalize
        self.compression = compression
        self.check_center = check_center
        self.kernel = CompressionKernel(basis, mode)
        self.file = h5py.File(self.path, "r+")
        group = _find_group(self.file)
        self.datasets = {key: group[f"_{key}/data"] for key in FIELDS}
        self.valid_dataset = group["_valid/data"]
        if any(d.chunks is not None for d in (*self.datasets.values(), self.valid_dataset)):
            self.file.close()
            raise ValueError(f"{self.path} was finalized (chunked datasets); it cannot be resumed")
        self._valid = self.valid_dataset[()].astype(bool).ravel()
        self.next_index = int(np.argmin(self._valid)) if not self._valid.all() else self.num_frames
        self.num_negative = 0

    # ------------------------------------------------------------- progress
    @property
    def num_complete(self) -> int:
        """Number of frames written so far (durably)."""
        return int(np.count_nonzero(self._valid))

    @property
    def missing(self) -> np.ndarray:
        """Flat indices of the frames not written yet."""
        return np.flatnonzero(~self._valid)

    # ----------------------------------------------------------------- write
    def write(self, frames: np.ndarray, start: int | None = None) -> int:
        """Compress ``frames`` and store them at flat scan indices ``start, start+1, ...``.

        Parameters
        ----------
        frames : numpy.ndarray
            ``(B, Qx, Qy)`` (or one ``(Qx, Qy)``) intensities [counts].
        start : int, optional
            Flat (row-major) scan index of the first frame; default: the first
            frame not written yet.

        Returns
        -------
        int
            The flat index after the last frame written.

        Raises
        ------
        ValueError
            For frames out of the scan, of the wrong detector shape, or with
            NaN/inf (nothing of that batch is written).
        """
        if self.file is None:
            raise ValueError("the writer is closed")
        frames = np.asarray(frames)
        if frames.ndim == 2:
            frames = frames[None]
        self.basis.check_detector(frames.shape[1:], what="the frames")
        start = self.next_index if start is None else int(start)
        stop = start + len(frames)
        if start < 0 or stop > self.num_frames:
            raise ValueError(
                f"frames {start}..{stop - 1} lie outside the {self.scan_shape} scan "
                f"({self.num_frames} frames)"
            )
        result = self.kernel(frames)
        finite = np.isfinite(result["total_intensity"])
        if not finite.all():
            position = divmod(start + int(np.argmin(finite)), self.scan_shape[1])
            raise ValueError(f"the pattern at scan position {position} contains NaN or inf")
        if self.check_center and self.num_complete == 0:
            from py4dstem_compressed.compress import _check_center

            _check_center(result, self.basis)
        if result["num_negative"]:
            self.num_negative += result["num_negative"]
            warnings.warn(
                f"{result['num_negative']} negative intensities were clipped to 0", stacklevel=2
            )
        for key, dataset in self.datasets.items():
            self._put(dataset, start, result[key])
        self._sync()
        self._put(self.valid_dataset, start, np.ones(len(frames), np.uint8))
        self._sync()
        self._valid[start:stop] = True
        self.next_index = stop if stop < self.num_frames else self.num_frames
        return stop

    def _put(self, dataset, start: int, values: np.ndarray) -> None:
        ry = self.scan_shape[1]
        index, offset = start, 0
        while offset < len(values):
            row, col = divmod(index, ry)
            count = min(len(values) - offset, ry - col)
            dataset[row, col : col + count] = values[offset : offset + count]
            index += count
            offset += count

    def _sync(self) -> None:
        self.file.flush()
        if self.durable:
            os.fsync(self.file.id.get_vfd_handle())

    # ----------------------------------------------------------------- close
    def close(self) -> None:
        """Close the file; rewrite it compressed if the scan is complete and ``finalize``."""
        if self.file is None:
            return
        self._sync()
        self.file.close()
        self.file = None
        if self.finalize and self._valid.all():
            data = read_compressed(self.path)
            data.save(self.path, overwrite=True, compression=self.compression)

    def __enter__(self) -> CompressedWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is not None:  # keep the file resumable, as written so far
            self.finalize = False
        self.close()

    def __repr__(self) -> str:
        return f"CompressedWriter({str(self.path)!r}, {self.num_complete}/{self.num_frames} frames)"


def _find_group(file):
    found = []
    file.visititems(
        lambda name, obj: (
            found.append(name)
            if str(obj.attrs.get("python_class", "")).startswith("CompressedDataCube")
            else None
        )
    )
    if len(found) != 1:
        raise ValueError(f"{file.filename} holds {len(found)} CompressedDataCube groups")
    return file[found[0]]
