"""Batch-wise NumPy work split over the CPU's cores (threads; NumPy releases the GIL).

py4DSTEM's own updates run on one core with NumPy; the compressed data step is element-wise
work and small matrix products on each pattern of a batch, independent between patterns, so
on the CPU its batch is cut into parts that run at the same time, each with a
single-threaded BLAS (a multi-threaded BLAS in every part oversubscribes the cores: the
parts then ran slower together than the whole batch alone). CuPy arrays and small batches
run in the calling thread.
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from py4dstem_compressed.core.backend import get_array_module

__all__ = ["MAX_THREADS", "MIN_ROWS_PER_THREAD", "available_cores", "map_over_batch"]

#: A part of fewer patterns than this is not worth a thread of its own.
MIN_ROWS_PER_THREAD = 8
#: At most this many threads (the data step's parts are memory-bound beyond a few cores).
MAX_THREADS = 8


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the system reports it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@functools.cache
def _blas_controller():
    """threadpoolctl's view of the loaded BLAS libraries (inspected once, on first use)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@functools.cache
def _pool(threads: int) -> ThreadPoolExecutor:
    """One pool per thread count, made on first use (nothing starts at import)."""
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="py4dstem_compressed")


def map_over_batch(
    function: Callable[..., tuple], *arrays: Any, threads: int | None = None
) -> tuple:
    """``function(*arrays)`` computed on parts of the batch at once, joined along axis 0.

    Parameters
    ----------
    function : callable
        Takes ``arrays`` (or row slices of them) and returns a tuple of arrays whose first
        axis is the batch; patterns must not depend on each other.
    *arrays : array or None
        Arguments; those whose first axis has the batch's length (that of ``arrays[0]``)
        are sliced, others (None, shared arrays) are passed as they are.
    threads : int, optional
        Number of parts; default: the available cores, at most :data:`MAX_THREADS`, and no
        part smaller than :data:`MIN_ROWS_PER_THREAD` patterns.

    Returns
    -------
    tuple
        The outputs of ``function`` for the whole batch, in the batch's order.
    """
    first = arrays[0]
    batch = int(first.shape[0])
    count = min(MAX_THREADS, available_cores()) if threads is None else int(threads)
    count = min(count, batch // MIN_ROWS_PER_THREAD)
    if get_array_module(first) is not np or count < 2:
        return function(*arrays)
    bounds = np.linspace(0, batch, count + 1).round().astype(int)

    def part(start: int, stop: int) -> tuple:
        return function(*(_rows(a, batch, start, stop) for a in arrays))

    with _blas_controller().limit(limits=1, user_api="blas"):
        futures = [_pool(count).submit(part, a, b) for a, b in itertools.pairwise(bounds)]
        results = [future.result() for future in futures]
    return tuple(np.concatenate(outputs, axis=0) for outputs in zip(*results))


def _rows(array: Any, batch: int, start: int, stop: int) -> Any:
    """``array[start:stop]`` for a batch-first array, else ``array`` itself."""
    if array is None or getattr(array, "ndim", 0) == 0 or array.shape[0] != batch:
        return array
    return array[start:stop]
