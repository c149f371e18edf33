"""The worker side of the LiberTEM binding: a UDF that runs the plugin's compression kernel.

This module lives outside the ``py4dstem_compressed`` package on purpose: importing the
package imports py4DSTEM (seconds, and not needed to compress), and LiberTEM's workers
(Dask processes, possibly on acquisition machines) import the module of every class they
unpickle. Here they import only NumPy and LiberTEM.

The kernel (:class:`py4dstem_compressed.compression.kernels.CompressionKernel`, built by
:func:`py4dstem_compressed.libertem.compress_with_libertem` in the calling process)
travels inside :class:`PortableKernel` *by value*: its classes and functions are pickled
with their code, so that unpickling it needs NumPy (and numba, for the fused pass) but not
the module that defined it, hence not the package nor py4DSTEM. The arrays and the
arithmetic are exactly those of the in-process kernel.
"""

from __future__ import annotations

import copy
import hashlib
import io
import itertools
import marshal
import pickle
import sys

import numpy as np
from libertem.udf.base import UDF

__all__ = ["RESULT_KEYS", "CompressionUDF", "PortableKernel"]

#: Per-pattern results of the kernel, stored as LiberTEM ``nav`` buffers
RESULT_KEYS = (
    "coefficients",
    "perpendicular_norms",
    "edge_intensity",
    "total_intensity",
    "center_of_mass",
)
#: Values per pattern of each result (``()``: one value)
RESULT_EXTRA_SHAPES = {
    "coefficients": None,  # (K,)
    "perpendicular_norms": (2,),
    "edge_intensity": (),
    "total_intensity": (),
    "center_of_mass": (2,),
}


def _errstate(kwargs: dict) -> np.errstate:
    """Rebuild an ``np.errstate`` (its "unspecified" sentinel does not survive pickling)."""
    return np.errstate(**kwargs)


def _errstate_kwargs(state: np.errstate) -> dict:
    """The error settings of an ``np.errstate`` (NumPy 1: ``kwargs``; NumPy 2: ``_all`` ...)."""
    if isinstance(getattr(state, "kwargs", None), dict):
        return dict(state.kwargs)
    names = ("all", "divide", "over", "under", "invalid")
    values = {name: getattr(state, f"_{name}", None) for name in names}
    return {name: value for name, value in values.items() if value is not None}


#: numba dispatchers rebuilt in this process, by :func:`_jit_key` (compiled once per process)
_JIT_CACHE: dict = {}


def _jit_key(py_func) -> tuple:
    """Identity of a jitted function's code, to compile it once per process."""
    code = marshal.dumps(py_func.__code__)
    return py_func.__qualname__, hashlib.sha1(code, usedforsecurity=False).hexdigest()


def _rebuild_jit(py_func, options: dict, key: tuple):
    """A numba dispatcher of ``py_func`` (pickled by value), compiled on first use.

    ``py_func.__module__`` is cleared: numba would otherwise import the defining module
    to look up the function's globals (``numba.core.funcdesc``); without a module it uses
    ``py_func.__globals__``, which cloudpickle rebuilt with the function.
    """
    if key not in _JIT_CACHE:
        import numba

        py_func.__module__ = None
        _JIT_CACHE[key] = numba.jit(**options)(py_func)
    return _JIT_CACHE[key]


def _is_numba_dispatcher(value) -> bool:
    module = type(value).__module__ or ""
    return (
        module.startswith("numba.")
        and hasattr(value, "py_func")
        and hasattr(value, "targetoptions")
    )


def dumps_by_value(obj, modules) -> bytes:
    """Pickle ``obj`` with the classes and functions of ``modules`` by value.

    Parameters
    ----------
    obj : object
        What to pickle.
    modules : iterable of module
        Modules whose objects are pickled with their code (``cloudpickle`` by value),
        so that unpickling does not import them.

    Returns
    -------
    bytes
        A pickle that :func:`pickle.loads` reads where cloudpickle is installed.
    """
    import cloudpickle

    class _Pickler(cloudpickle.Pickler):
        def reducer_override(self, value):
            if isinstance(value, np.errstate):
                return _errstate, (_errstate_kwargs(value),)
            if _is_numba_dispatcher(value):  # numba's own pickling imports the module
                options = dict(value.targetoptions)
                return _rebuild_jit, (value.py_func, options, _jit_key(value.py_func))
            return super().reducer_override(value)

    modules = [m for m in modules if m.__name__ not in cloudpickle.list_registry_pickle_by_value()]
    for module in modules:
        cloudpickle.register_pickle_by_value(module)
    try:
        buffer = io.BytesIO()
        _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    finally:
        for module in modules:
            cloudpickle.unregister_pickle_by_value(module)
    return buffer.getvalue()


class PortableKernel:
    """Compression kernels, one per integer descan shift, that pickle without their package.

    Parameters
    ----------
    kernels : dict
        ``{(sx, sy): kernel}``: a ``CompressionKernel`` per integer descan shift [px]
        (``{(0, 0): kernel}`` without descan). Their ``basis`` attribute is dropped (the
        kernel does not use it once built; it would pull in the package).
    shifts_px : numpy.ndarray, optional
        ``(N, 2)`` int16 shift of every pattern in row-major scan order; None: all
        ``(0, 0)``.
    num_masks : int
        ``K``, the number of coefficients per pattern.
    module_names : tuple of str
        Further modules whose functions the kernels call (pickled by value too, so that a
        worker imports none of them).

    Notes
    -----
    The kernels are pickled once, here, by value (:func:`dumps_by_value`); a LiberTEM
    worker that unpickles them does not import the modules that define them.
    """

    def __init__(
        self,
        kernels: dict,
        shifts_px: np.ndarray | None,
        num_masks: int,
        module_names: tuple[str, ...] = (),
    ) -> None:
        self.kernels = {}
        for key, kernel in kernels.items():
            if getattr(kernel, "basis", None) is not None:
                kernel = _without_basis(kernel)
            self.kernels[(int(key[0]), int(key[1]))] = kernel
        self.shifts_px = None if shifts_px is None else np.asarray(shifts_px, np.int16)
        self.num_masks = int(num_masks)
        # pickled now, in the caller's thread (the by-value registry is process-wide), once
        modules = {type(k).__module__ for k in self.kernels.values()} | set(module_names)
        self._blob = dumps_by_value(self.kernels, [sys.modules[m] for m in modules])

    def __getstate__(self) -> dict:
        return {"blob": self._blob, "shifts_px": self.shifts_px, "num_masks": self.num_masks}

    def __setstate__(self, state: dict) -> None:
        self.kernels = pickle.loads(state["blob"])
        self.shifts_px = state["shifts_px"]
        self.num_masks = state["num_masks"]
        self._blob = state["blob"]

    def __call__(self, frames: np.ndarray, start: int) -> dict:
        """Compress ``(B, Qx, Qy)`` frames that are patterns ``start..start+B-1``.

        Returns the kernel's dict (see ``CompressionKernel.__call__``); frames are
        compressed in runs of equal descan shift, each by the kernel of its shift.
        """
        if self.shifts_px is None:
            return self.kernels[(0, 0)](frames)
        shifts = self.shifts_px[start : start + len(frames)]
        if len(shifts) != len(frames):
            raise ValueError(
                f"frames {start}..{start + len(frames) - 1} lie beyond the "
                f"{len(self.shifts_px)} descan shifts"
            )
        change = np.flatnonzero(np.any(shifts[1:] != shifts[:-1], axis=1)) + 1
        bounds = [0, *change.tolist(), len(frames)]
        parts = [
            self.kernels[(int(shifts[a, 0]), int(shifts[a, 1]))](frames[a:b])
            for a, b in itertools.pairwise(bounds)
        ]
        out = {key: np.concatenate([p[key] for p in parts]) for key in RESULT_KEYS}
        out["num_negative"] = sum(p["num_negative"] for p in parts)
        return out


def _without_basis(kernel):
    """A shallow copy of ``kernel`` with ``basis = None``."""
    clone = copy.copy(kernel)
    clone.basis = None
    return clone


class CompressionUDF(UDF):
    """LiberTEM UDF: the plugin's per-pattern record of every frame.

    Each partition (whole frames, ``(N, Qx, Qy)`` in the dataset's own dtype) goes through
    the compression kernel in one call, so LiberTEM's per-call overhead is paid once per
    partition, not per frame.

    Parameters
    ----------
    kernel : PortableKernel
        The prepared kernel(s).

    Notes
    -----
    Result buffers: ``coefficients`` ``(Rx, Ry, K)``, ``perpendicular_norms``
    ``(Rx, Ry, 2)``, ``edge_intensity`` and ``total_intensity`` ``(Rx, Ry)`` [counts],
    ``center_of_mass`` ``(Rx, Ry, 2)`` [px] (float32), and ``num_negative`` ``(1,)``
    int64, the negative pixels clipped to 0 (amplitude mode).
    """

    def __init__(self, kernel: PortableKernel) -> None:
        super().__init__(kernel=kernel)

    def get_preferred_input_dtype(self):
        """The dataset's own dtype: the kernel converts to float32 as ``compress`` does."""
        return self.USE_NATIVE_DTYPE

    def get_result_buffers(self) -> dict:
        """One ``nav`` buffer per result, and the count of clipped pixels."""
        buffers = {}
        for key in RESULT_KEYS:
            extra = RESULT_EXTRA_SHAPES[key]
            extra = (self.params.kernel.num_masks,) if extra is None else extra
            buffers[key] = self.buffer(kind="nav", extra_shape=extra, dtype=np.float32)
        buffers["num_negative"] = self.buffer(kind="single", dtype=np.int64)
        return buffers

    def process_partition(self, partition: np.ndarray) -> None:
        """Compress the partition's ``(N, Qx, Qy)`` frames."""
        start = int(self.meta.slice.origin[0])  # flat scan index of the first frame
        out = self.params.kernel(np.asarray(partition), start)
        for key in RESULT_KEYS:
            getattr(self.results, key)[:] = out[key]
        self.results.num_negative[:] += out["num_negative"]

    def merge(self, dest, src) -> None:
        """Place a partition's results; add its clipped-pixel count."""
        for key in RESULT_KEYS:
            getattr(dest, key)[:] = getattr(src, key)
        dest.num_negative[:] += src.num_negative
