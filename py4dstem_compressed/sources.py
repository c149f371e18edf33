"""Turn what users pass as data (DataCube, arrays) into a 4D array-like and its calibration."""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["as_4d", "frame", "frame_batch"]


def as_4d(source) -> tuple[object, object]:
    """Return ``(array, calibration)`` for a DataCube or a 4D array-like.

    Parameters
    ----------
    source : py4DSTEM.DataCube or array-like
        ``(Rx, Ry, Qx, Qy)`` data. Array-likes only need ``shape`` and indexing
        (NumPy, memmap, h5py dataset, dask, CuPy).

    Returns
    -------
    array : array-like
        The 4D data (not copied).
    calibration : py4DSTEM.data.Calibration or None
        The DataCube's calibration, if any.
    """
    calibration = None
    if isinstance(source, np.ndarray) or not hasattr(source, "data"):
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


def frame(data, rx: int, ry: int) -> np.ndarray:
    """One pattern as a NumPy array."""
    return np.asarray(data[rx, ry])


def frame_batch(data, start: int, stop: int) -> np.ndarray:
    """Patterns ``start..stop-1`` in flattened (row-major) scan order, ``(B, Qx, Qy)``."""
    ry = data.shape[1]
    if isinstance(data, np.ndarray):
        return data.reshape(-1, *data.shape[2:])[start:stop]
    return np.stack([np.asarray(data[i // ry, i % ry]) for i in range(start, stop)])
