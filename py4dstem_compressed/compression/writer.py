"""Live acquisition: compress frames as they arrive and append them, crash-safe, to an EMD file.

The file is created complete (atomically, temp file + rename) with every
per-pattern dataset pre-allocated, unfiltered and contiguous, NaN-filled, and a
per-pattern ``valid`` flag of 0. A :meth:`CompressedWriter.write` then only
overwrites bytes inside those datasets -- HDF5's metadata never changes while
acquiring -- in this order: (when replacing frames already written) clear their
``valid`` flags, flush + fsync; data, flush + fsync; ``valid`` flags, flush +
fsync. So a process killed at any moment leaves a file that opens, in which
every pattern is wholly old, wholly new, or flagged missing (and read as NaN).
Re-opening the same path with the same basis resumes. When the scan is
complete, :meth:`CompressedWriter.close` rewrites the file with chunked,
compressed datasets (atomically again: a temporary file renamed onto the
target); a finalize cut short is finished by re-opening the path, which also
removes stale temporary files.
"""

from __future__ import annotations

import numbers
import os
import warnings
from pathlib import Path

import numpy as np

from py4dstem_compressed.bases.basis import Basis
from py4dstem_compressed.compression.kernels import CompressionKernel
from py4dstem_compressed.core.backend import check_mode
from py4dstem_compressed.core.emd import save
from py4dstem_compressed.core.filtered_arrays import StorageOptions
from py4dstem_compressed.storage.compressed_datacube import (
    FIELDS,
    CompressedDataCube,
)
from py4dstem_compressed.storage.reading import (
    FileLockedError,
    NoCompressedDataError,
    open_hdf5,
    read_compressed,
)

__all__ = ["CompressedWriter", "FramesAlreadyWrittenError", "open_compressed_writer"]


class FramesAlreadyWrittenError(ValueError):
    """A write over frames that are already complete, without ``replace=True``."""


def _after_step(step: str) -> None:
    """Called after every change the writer makes to a file (a no-op).

    Crash tests replace it to kill the process right after step ``step``.
    """


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
    intensity_per_count: float = 0.0,
) -> CompressedWriter:
    """Open (or resume) an EMD file that frames are compressed into as they arrive.

    Parameters
    ----------
    path : str or path-like
        Target ``.h5`` / ``.emd`` file. If it exists and was started by a writer
        with the same basis, mode and scan shape, writing resumes (a complete
        file whose finalize was cut short is finalized on :meth:`~CompressedWriter.close`).
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
    intensity_per_count : float
        Intensity of one detected electron in the frames' unit (1 for a counting
        detector's counts), stored with the data for the reconstruction's shot-noise model.
        The writer sees frames one batch at a time and cannot measure it the way ``compress``
        does: measure it on a pre-scan
        (:func:`~py4dstem_compressed.compression.shot_noise.intensity_per_count`) or pass the
        detector's. 0 (default): treated as noise-free.

    Returns
    -------
    CompressedWriter
        A context manager; call :meth:`CompressedWriter.write`.

    Raises
    ------
    FileLockedError
        If another process holds ``path`` open.
    NoCompressedDataError
        If ``path`` is an EMD file that holds no compressed scan.
    FileExistsError
        If ``path`` holds a complete, finalized scan (pass ``overwrite=True``).
    """
    check_mode(mode)
    if not isinstance(basis, Basis):
        raise TypeError(f"basis must be a py4dstem_compressed.Basis, got {type(basis).__name__}")
    scan_shape = tuple(int(s) for s in scan_shape)
    if len(scan_shape) != 2 or min(scan_shape) < 1:
        raise ValueError(f"scan_shape must be two positive integers, got {scan_shape}")
    path = Path(path)
    _remove_stale_temporaries(path)
    if path.exists() and not overwrite:
        _check_resumable(path, basis, scan_shape, mode)
    else:
        if path.exists():
            _check_not_locked(path)
        _create(path, basis, scan_shape, mode, calibration, name, intensity_per_count)
    return CompressedWriter(
        path, basis, scan_shape, mode, durable, finalize, compression, check_center
    )


def _create(path: Path, basis, scan_shape, mode, calibration, name, intensity_per_count) -> None:
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
        intensity_per_count=intensity_per_count,
    )
    placeholder.storage = StorageOptions(layout="contiguous")
    save(path, placeholder, overwrite=True)
    _after_step("create: file in place")


def _check_not_locked(path: Path) -> None:
    """Raise :class:`FileLockedError` if another process holds ``path`` open."""
    try:
        open_hdf5(path).close()
    except FileLockedError:
        raise
    except ValueError:  # not an HDF5 file: nobody holds an HDF5 lock on it
        pass


def _temporary_path(path: Path) -> Path:
    """The temporary file a finalize writes before renaming it onto ``path``."""
    return path.parent / f".{path.name}.finalize.tmp"


def _remove_stale_temporaries(path: Path) -> None:
    """Delete temporary files left next to ``path`` by a killed save or finalize.

    Temporary files of :func:`emd.save` (``.NAME.XXXX.tmp``) and of a finalize
    (``.NAME.finalize.tmp``) that no process holds open are removed.
    """
    if not path.parent.is_dir():
        return
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            _check_not_locked(tmp)
        except FileLockedError:  # being written right now by another process
            continue
        tmp.unlink(missing_ok=True)


def _is_finalized(path: Path) -> bool:
    """Whether the per-pattern datasets of ``path`` are chunked (rewritten by a finalize)."""
    with open_hdf5(path) as file:
        group = _find_group(file)
        return any(group[f"_{key}/data"].chunks is not None for key in (*FIELDS, "valid"))


def _check_resumable(path: Path, basis, scan_shape, mode) -> None:
    try:
        existing = read_compressed(path)
    except FileLockedError:
        raise
    except NoCompressedDataError as err:
        raise NoCompressedDataError(
            f"{err}. It cannot be resumed; pass overwrite=True to replace it"
        ) from err
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
    if existing.is_complete and _is_finalized(path):
        raise FileExistsError(
            f"{path} already holds a complete, finalized scan; pass overwrite=True to start afresh"
        )


class CompressedWriter:
    """Writes compressed frames into a pre-allocated EMD file (see the module docstring).

    Create it with :func:`open_compressed_writer`.
    """

    def __init__(self, path, basis, scan_shape, mode, durable, finalize, compression, check_center):
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
        self.file = open_hdf5(self.path, "r+")
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
    def write(self, frames: np.ndarray, start: int | None = None, *, replace: bool = False) -> int:
        """Compress ``frames`` and store them at flat scan indices ``start, start+1, ...``.

        Parameters
        ----------
        frames : numpy.ndarray
            ``(B, Qx, Qy)`` (or one ``(Qx, Qy)``) intensities [counts]. An empty
            batch (``B = 0``) writes nothing.
        start : int, optional
            Flat (row-major) scan index of the first frame, an integer in
            ``0 .. Rx*Ry - B``; default: the first frame not written yet.
        replace : bool
            Allow overwriting frames that are already complete. The replace is
            crash-safe: their ``valid`` flags are cleared (durably) before the
            new data are written, so a killed process leaves each of them old,
            new or missing.

        Returns
        -------
        int
            The flat index after the last frame written (``start`` for an empty batch).

        Raises
        ------
        TypeError
            If ``start`` is not an integer.
        ValueError
            For frames out of the scan, of the wrong detector shape, or with
            NaN/inf (nothing of that batch is written).
        FramesAlreadyWrittenError
            If some of the frames are already complete and ``replace`` is False.
        """
        if self.file is None:
            raise ValueError("the writer is closed; reopen the file with open_compressed_writer")
        frames = _as_batch(frames)
        if len(frames):
            self.basis.check_detector(frames.shape[1:], what="the frames")
        start = self._check_start(start, len(frames))
        stop = start + len(frames)
        if len(frames) == 0:
            return start
        done = np.flatnonzero(self._valid[start:stop]) + start
        if done.size and not replace:
            raise FramesAlreadyWrittenError(
                f"{done.size} of frames {start}..{stop - 1} are already complete (first: flat "
                f"index {done[0]}, scan position {divmod(int(done[0]), self.scan_shape[1])}); "
                "pass replace=True to overwrite them, or write only writer.missing"
            )
        result = self._compress(frames, start)
        if done.size:  # replace: old frames become missing before any new byte lands
            self._put(self.valid_dataset, start, np.zeros(len(frames), np.uint8), "clear valid")
            self._sync("clear valid")
            self._valid[start:stop] = False
        for key, dataset in self.datasets.items():
            self._put(dataset, start, result[key], key)
        self._sync("data")
        self._put(self.valid_dataset, start, np.ones(len(frames), np.uint8), "valid")
        self._sync("valid")
        self._valid[start:stop] = True
        self.next_index = int(np.argmin(self._valid)) if not self._valid.all() else self.num_frames
        return stop

    def _check_start(self, start, count: int) -> int:
        """``start`` as an int after checking its type and that ``count`` frames fit."""
        if start is None:
            start = self.next_index
        if isinstance(start, bool) or not isinstance(start, numbers.Integral):
            raise TypeError(
                f"start must be an integer flat scan index (0..{self.num_frames - 1}), got "
                f"{start!r} of type {type(start).__name__}; pass int(start) if it is whole"
            )
        start = int(start)
        if start < 0 or start + count > self.num_frames:
            raise ValueError(
                f"frames {start}..{start + count - 1} lie outside the {self.scan_shape} scan "
                f"({self.num_frames} frames): start must be in 0..{self.num_frames - count}"
            )
        return start

    def _compress(self, frames: np.ndarray, start: int) -> dict:
        """Run the kernel and check its result (nothing is written yet)."""
        result = self.kernel(frames)
        finite = np.isfinite(result["total_intensity"])
        if not finite.all():
            position = divmod(start + int(np.argmin(finite)), self.scan_shape[1])
            raise ValueError(f"the pattern at scan position {position} contains NaN or inf")
        if self.check_center and self.num_complete == 0:
            from py4dstem_compressed.compression.input_checks import check_center

            check_center(result, self.basis)
        if result["num_negative"]:
            self.num_negative += result["num_negative"]
            warnings.warn(
                f"{result['num_negative']} negative intensities were clipped to 0", stacklevel=3
            )
        return result

    def _put(self, dataset, start: int, values: np.ndarray, what: str) -> None:
        ry = self.scan_shape[1]
        index, offset = start, 0
        while offset < len(values):
            row, col = divmod(index, ry)
            count = min(len(values) - offset, ry - col)
            dataset[row, col : col + count] = values[offset : offset + count]
            _after_step(f"write: {what} row {row}")
            index += count
            offset += count

    def _sync(self, what: str = "") -> None:
        self.file.flush()
        if self.durable:
            os.fsync(self.file.id.get_vfd_handle())
        _after_step(f"write: sync {what}")

    # ----------------------------------------------------------------- close
    def close(self) -> None:
        """Close the file; rewrite it compressed if the scan is complete and ``finalize``."""
        if self.file is None:
            return
        self._sync("close")
        self.file.close()
        self.file = None
        if self.finalize and self._valid.all():
            _finalize(self.path, self.compression)

    def __enter__(self) -> CompressedWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is not None:  # keep the file resumable, as written so far
            self.finalize = False
        self.close()

    def __repr__(self) -> str:
        return f"CompressedWriter({str(self.path)!r}, {self.num_complete}/{self.num_frames} frames)"


def _as_batch(frames) -> np.ndarray:
    """``frames`` as a ``(B, Qx, Qy)`` array (one ``(Qx, Qy)`` frame becomes ``B = 1``)."""
    frames = np.asarray(frames)
    if frames.ndim == 2:
        frames = frames[None]
    if frames.size == 0 and frames.ndim != 3:
        frames = frames.reshape(0, 0, 0)
    if frames.ndim != 3:
        raise ValueError(
            f"frames must be (B, Qx, Qy) or one (Qx, Qy) frame, got shape {frames.shape}"
        )
    return frames


def _finalize(path: Path, compression: str) -> None:
    """Rewrite a complete file with chunked, compressed datasets, atomically.

    A temporary file is written, fsynced and renamed onto ``path``; a process
    killed before the rename leaves ``path`` complete (and unfinalized) and a
    stale temporary file that :func:`open_compressed_writer` removes.
    """
    import py4DSTEM

    data = read_compressed(path)
    tmp = _temporary_path(path)
    tmp.unlink(missing_ok=True)
    data.storage = StorageOptions(compression=compression)
    try:
        py4DSTEM.save(str(tmp), data, mode="w")
        _after_step("finalize: temporary file written")
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        _after_step("finalize: temporary file synced")
        os.replace(tmp, path)
        _after_step("finalize: renamed")
    finally:
        tmp.unlink(missing_ok=True)
    if os.name == "posix":  # make the rename durable (folders cannot be opened on Windows)
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


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
