"""Project diffraction patterns onto a basis (Eq. 8) in batches.

The kernel (:class:`~py4dstem_compressed.compression.kernels.CompressionKernel`) is
array-in, array-out. :func:`compress` drives it over
a whole scan in chunks of bounded size -- in this process (reading the next
chunk while computing one) or on a ``dask.distributed`` cluster -- with a
progress bar, validating the input on the way.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from tqdm.auto import tqdm

from py4dstem_compressed.bases.basis import Basis
from py4dstem_compressed.bases.descan import descan_shifts
from py4dstem_compressed.compression.descan_kernel import DescanKernel
from py4dstem_compressed.compression.input_checks import (
    check_bf_radius,
    check_center,
    check_signal,
)
from py4dstem_compressed.compression.kernels import CompressionKernel
from py4dstem_compressed.compression.shot_noise import sampled_intensity_per_count
from py4dstem_compressed.core.backend import check_mode
from py4dstem_compressed.core.sources import FrameSource, open_source
from py4dstem_compressed.storage.compressed_datacube import CompressedDataCube

__all__ = ["DEFAULT_MEMORY_LIMIT", "chunk_frames", "compress"]

#: Default memory budget of one chunk [bytes] (its float32 frames plus temporaries)
DEFAULT_MEMORY_LIMIT = 256 * 2**20
#: Bytes per frame pixel a chunk needs: float32 frames, the read buffer + temporaries
BYTES_PER_PIXEL = 3 * 4
RESULT_KEYS = (
    "coefficients",
    "perpendicular_norms",
    "edge_intensity",
    "total_intensity",
    "center_of_mass",
)


def chunk_frames(source: FrameSource, max_batch_size: int | None, memory_limit: int | None) -> int:
    """Frames per chunk: ``max_batch_size`` or what fits in ``memory_limit`` bytes.

    Raises
    ------
    MemoryError
        If a single chunk would not fit in the memory available now.
    """
    pixels = int(np.prod(source.shape[2:]))
    per_frame = pixels * BYTES_PER_PIXEL
    if max_batch_size is None:
        limit = DEFAULT_MEMORY_LIMIT if memory_limit is None else int(memory_limit)
        batch = max(1, limit // per_frame)
    else:
        batch = max(1, int(max_batch_size))
    batch = min(batch, source.num_frames)
    available = _available_memory()
    if available is not None and batch * per_frame > available:
        raise MemoryError(
            f"a chunk of {batch} frames of {source.shape[2]}x{source.shape[3]} px needs "
            f"~{batch * per_frame / 2**20:.0f} MiB but only {available / 2**20:.0f} MiB are "
            "available; choose a smaller chunk (max_batch_size / memory_limit)"
        )
    return batch


def _available_memory() -> int | None:
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def _active_client(client):
    if client is False:
        return None
    if client is not None:
        return client
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        return default_client()
    except ValueError:
        return None


def compress(
    datacube,
    basis: Basis,
    mode: str = "amplitude",
    max_batch_size: int | None = None,
    check_center: bool = True,
    progress_bar: bool = True,
    name: str = "compressed_datacube",
    *,
    memory_limit: int | None = None,
    datapath: str | None = None,
    client=None,
    use_numba: bool = True,
    num_threads: int | None = None,
    descan: str | np.ndarray | None = "auto",
    intensity_per_count: float | None = None,
) -> CompressedDataCube:
    """Compress a 4D-STEM dataset onto ``basis``, chunk by chunk.

    Peak memory is bounded by the chunk size, not by the scan size: only the
    per-pattern results (``K + 6`` values per pattern) are held for the whole scan.

    Parameters
    ----------
    datacube : DataCube, array-like or path
        ``(Rx, Ry, Qx, Qy)`` intensities [counts]: a py4DSTEM DataCube, a NumPy
        array or memmap, a dask array, an h5py / zarr dataset, or a path to a
        ``.npy``, py4DSTEM/EMD ``.h5`` / ``.emd`` or ``.zarr`` file (read lazily).
    basis : Basis
        Orthonormal masks for this detector.
    mode : {"amplitude", "intensity"}
        ``"amplitude"`` projects ``sqrt(I)`` (Eq. 8; best for reconstruction);
        ``"intensity"`` projects ``I`` (what detector software computes on the fly).
    max_batch_size : int, optional
        Frames per chunk; by default as many as fit in ``memory_limit``.
    check_center : bool
        Compare the data's bright-field disk with the basis's: raise if the mean
        centre of mass (first chunk with signal) is more than a quarter of the BF radius
        from the basis's BF centre, and warn if the BF radius measured on
        ``input_checks.RADIUS_SAMPLES`` patterns differs from the basis's by more than
        ``max(RADIUS_TOLERANCE_PX, RADIUS_TOLERANCE_FRACTION * bf_radius)``.
    progress_bar : bool
        Show a tqdm progress bar.
    name : str
        Name of the returned EMD node.
    memory_limit : int, optional
        Bytes of frame data per chunk (default 256 MiB), used when ``max_batch_size``
        is not given.
    datapath : str, optional
        Dataset inside an HDF5 / zarr file holding several 4D arrays.
    client : distributed.Client, False or None
        Run the chunks on this client's workers; ``None`` uses the active client
        if there is one; ``False`` always runs in this process.
    use_numba : bool
        Use the fused numba kernel when numba is installed.
    num_threads : int, optional
        Threads compressing chunks in this process (default: every core,
        ``os.cpu_count()``); up to ``num_threads + 1`` chunks are in flight. The results
        do not depend on it. Not used with a client.
    descan : "auto", array-like or None
        Descan-aware compression: pattern ``j`` is compressed with the masks moved by its
        descan rounded to whole pixels, so they follow a drifting disk; the shifts are
        stored (``descan_shift_px``) and the reconstruction moves its predictions by the
        sub-pixel remainder only. ``"auto"`` (default) fits a plane over the scan to the
        centres of mass of :data:`~py4dstem_compressed.bases.descan.DESCAN_SAMPLES` sampled
        patterns and follows its variation about the scan's mean (a drift of less than
        half a pixel either way changes nothing); an ``(Rx, Ry, 2)`` array
        gives the descan [px] relative to the basis's BF centre (e.g. from a pre-scan);
        ``None`` keeps the masks fixed in the detector frame.
    intensity_per_count : float, optional
        Intensity one detected electron adds, in the data's unit (1 for a counting
        detector's counts). None (default): measured from the shot noise of
        :data:`~py4dstem_compressed.compression.shot_noise.NOISE_SAMPLES` sampled patterns
        (:func:`~py4dstem_compressed.compression.shot_noise.intensity_per_count`; a
        noise-free simulation gives a value far below one pattern's intensity). Stored with
        the data: the reconstruction's dark-field step models the amplitude coefficients of
        sparse counts with it. 0: treat the data as noise-free.

    Returns
    -------
    CompressedDataCube

    Raises
    ------
    ValueError
        For data with NaN/inf (naming the first bad scan position), a basis
        for another detector shape or centre, an unknown mode or file format, an
        empty scan, or a scan whose patterns all have zero total intensity.
    TypeError
        For complex data (pass intensities) or a ``basis`` that is not a Basis.
    FileNotFoundError
        For a path that does not exist.
    MemoryError
        If one chunk does not fit in the available memory.
    """
    check_mode(mode)
    if not isinstance(basis, Basis):
        raise TypeError(f"basis must be a py4dstem_compressed.Basis, got {type(basis).__name__}")
    source = open_source(datacube, datapath)
    try:
        basis.check_detector(source.shape[2:])
        if basis.mode is not None and basis.mode != mode:
            warnings.warn(
                f"the basis was built from {basis.mode}s but mode={mode!r}; build it with "
                f"mode={mode!r} for the best fit",
                stacklevel=2,
            )
        if check_center:
            check_bf_radius(source, basis)
        batch = chunk_frames(source, max_batch_size, memory_limit)
        shifts_px = descan_shifts(descan, source.data, basis.geometry)
        gain = intensity_per_count
        if gain is None:
            largest_shift = float(np.abs(shifts_px).max(initial=0))
            gain = sampled_intensity_per_count(source.data, basis.geometry, largest_shift)
        kernel = CompressionKernel(basis, mode, use_numba=use_numba)
        if shifts_px.any():
            make_kernel = functools.partial(CompressionKernel, mode=mode, use_numba=use_numba)
            kernel = DescanKernel(basis, shifts_px.reshape(-1, 2), make_kernel)
        client = _active_client(client)
        with tqdm(
            total=source.num_frames, desc="Compressing", unit="frame", disable=not progress_bar
        ) as bar:
            if client is not None:
                runner = (source, kernel, batch, bar, check_center, client)
                out, num_negative = run_distributed(*runner)
            else:
                threads = _thread_count(num_threads)
                out, num_negative = run_local(source, kernel, batch, bar, check_center, threads)
    finally:
        source.close()
    if num_negative:
        warnings.warn(
            f"{num_negative} negative intensities (e.g. from background subtraction) were "
            "clipped to 0 before taking square roots",
            stacklevel=2,
        )
    check_signal(out["total_intensity"], source)
    rx, ry = source.scan_shape
    arrays = {k: v.reshape(rx, ry, *v.shape[1:]) for k, v in out.items()}
    return CompressedDataCube(
        **arrays,
        basis=basis,
        mode=mode,
        calibration=source.calibration,
        name=name,
        descan_shift_px=shifts_px,
        intensity_per_count=gain,
    )


def chunk_ranges(num_frames: int, batch: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``0..num_frames-1`` in chunks of ``batch``."""
    return [(s, min(s + batch, num_frames)) for s in range(0, num_frames, batch)]


class _Collector:
    """Gathers chunk results into whole-scan arrays, checking them on the way."""

    def __init__(self, source: FrameSource, kernel: CompressionKernel, check_center: bool):
        n = source.num_frames
        k = kernel.num_masks
        self.scan_ry = source.scan_shape[1]
        self.basis = kernel.basis
        descan_aware = isinstance(kernel, DescanKernel)  # as in _apply
        self.shifts_px = kernel.shifts_px if descan_aware else np.zeros((n, 2), np.int16)
        self.check_center = check_center  # until checked on the first chunk with signal
        self.num_negative = 0
        self.out = {
            "coefficients": np.empty((n, k), np.float32),
            "perpendicular_norms": np.empty((n, 2), np.float32),
            "edge_intensity": np.empty(n, np.float32),
            "total_intensity": np.empty(n, np.float32),
            "center_of_mass": np.empty((n, 2), np.float32),
        }

    def add(self, start: int, result: dict) -> None:
        total = result["total_intensity"]
        finite = np.isfinite(total)
        if not finite.all():
            index = start + int(np.argmin(finite))
            position = divmod(index, self.scan_ry)
            raise ValueError(
                f"the pattern at scan position {position} contains NaN or inf; replace or "
                "mask those values before compressing"
            )
        if self.check_center and np.any(total > 0):
            check_center(result, self.basis, self.shifts_px[start : start + len(total)])
            self.check_center = False
        self.num_negative += result["num_negative"]
        stop = start + len(total)
        for key in RESULT_KEYS:
            self.out[key][start:stop] = result[key]


def _thread_count(num_threads: int | None) -> int:
    if num_threads is None:
        return max(1, os.cpu_count() or 1)
    if int(num_threads) < 1:
        raise ValueError(f"num_threads must be at least 1, got {num_threads}")
    return int(num_threads)


def _read_and_compress(source: FrameSource, kernel, start: int, stop: int) -> dict:
    return _apply(kernel, source.read(start, stop), start)


def _apply(kernel, frames: np.ndarray, start: int) -> dict:
    """Compress frames ``start..``; a descan-aware kernel needs to know which they are."""
    if isinstance(kernel, DescanKernel):
        return kernel(frames, start)
    return kernel(frames)


def run_local(
    source: FrameSource, kernel, batch: int, bar, check_center: bool, num_threads: int = 1
):
    """Compress in this process: ``num_threads`` threads each read and compress whole chunks.

    One more chunk than threads is in flight, so reading overlaps computing even with one
    thread (the numba pass and the BLAS products release the GIL). Each chunk is computed
    exactly as on one thread or on a dask worker, so the results do not depend on it.
    """
    collector = _Collector(source, kernel, check_center)
    pending = deque()
    with ThreadPoolExecutor(max_workers=num_threads + 1) as pool:
        for start, stop in chunk_ranges(source.num_frames, batch):
            pending.append(
                (start, stop, pool.submit(_read_and_compress, source, kernel, start, stop))
            )
            while len(pending) > num_threads:
                _collect(collector, bar, *pending.popleft())
        while pending:
            _collect(collector, bar, *pending.popleft())
    return collector.out, collector.num_negative


def _collect(collector, bar, start: int, stop: int, future) -> None:
    collector.add(start, future.result())
    bar.update(stop - start)


def _compress_range(kernel, start: int, stop: int, reader=None, frames=None) -> dict:
    """Worker task: read (from a file) or take frames, and compress them."""
    if frames is None:
        frames = reader.read(start, stop)
    if hasattr(frames, "compute"):
        frames = frames.compute()
    return _apply(kernel, np.asarray(frames).reshape(stop - start, *frames.shape[-2:]), start)


def run_distributed(source: FrameSource, kernel, batch: int, bar, check_center: bool, client):
    """Compress on a ``dask.distributed`` client's workers, a bounded number of chunks in flight.

    File sources are read by the workers themselves; arrays are sent chunk by chunk;
    dask arrays are computed on the cluster.
    """
    collector = _Collector(source, kernel, check_center)
    ranges = deque(chunk_ranges(source.num_frames, batch))
    kernel_future = client.scatter(kernel, broadcast=True, hash=False)
    workers = max(1, len(client.scheduler_info().get("workers", {})))

    def submit(start: int, stop: int):
        if source.reader is not None:
            return client.submit(
                _compress_range, kernel_future, start, stop, reader=source.reader, pure=False
            )
        if source.is_dask:
            import dask

            frames = _dask_frames(source.data, start, stop)
            task = dask.delayed(_compress_range)(kernel_future, start, stop, frames=frames)
            return client.compute(task)
        frames = source.read(start, stop)
        return client.submit(_compress_range, kernel_future, start, stop, frames=frames, pure=False)

    in_flight = deque()  # oldest first: results are taken in scan order
    try:
        while ranges or in_flight:
            while ranges and len(in_flight) < 2 * workers:
                start, stop = ranges.popleft()
                in_flight.append((start, stop, submit(start, stop)))
            start, stop, future = in_flight.popleft()
            collector.add(start, future.result())
            bar.update(stop - start)
    finally:
        for *_, future in in_flight:
            future.cancel()
    return collector.out, collector.num_negative


def _dask_frames(data, start: int, stop: int):
    """A lazy ``(B, Qx, Qy)`` dask array of frames ``start..stop-1``."""
    import dask.array as da

    ry = data.shape[1]
    pieces = []
    index = start
    while index < stop:
        row, col = divmod(index, ry)
        end = min(stop, (row + 1) * ry)
        pieces.append(data[row, col : col + end - index])
        index = end
    return da.concatenate(pieces) if len(pieces) > 1 else pieces[0]
