"""Array backend and measurement modes: one home for what every stage asks of an array.

NumPy on the CPU, CuPy on a GPU: the backend is inferred from the arrays themselves (as
abTEM's ``core/backend.py`` does), so pure functions take ``xp`` from their inputs and never
from a global switch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["MODES", "check_mode", "get_array_module", "measured_from_amplitude", "to_numpy"]

#: What a mask is applied to: the amplitude ``sqrt(I)`` (the paper's choice) or the intensity.
MODES = ("amplitude", "intensity")


def check_mode(mode: Any, name: str = "mode") -> str:
    """Return ``mode`` if it is one of :data:`MODES`, else raise a ``ValueError`` naming it."""
    if mode not in MODES:
        raise ValueError(f"{name} must be one of {MODES}, got {mode!r}")
    return mode


def get_array_module(array: Any):
    """Return ``cupy`` for a CuPy array, else ``numpy``."""
    if type(array).__module__.startswith("cupy"):
        import cupy

        return cupy
    return np


def to_numpy(array: Any) -> np.ndarray:
    """Convert a NumPy, CuPy or dask array to a NumPy array."""
    if hasattr(array, "get"):  # cupy
        array = array.get()
    if hasattr(array, "compute"):  # dask
        array = array.compute()
    return np.asarray(array)


def measured_from_amplitude(amplitude: Any, mode: str) -> Any:
    """The quantity a mask is applied to, from a far-field amplitude ``|Psi|`` (any shape).

    ``amplitude`` itself in amplitude mode, ``amplitude ** 2`` (the intensity) in intensity
    mode; the array backend of ``amplitude`` is kept.
    """
    return amplitude if check_mode(mode) == "amplitude" else amplitude**2
