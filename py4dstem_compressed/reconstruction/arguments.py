"""Checks of the constructor, ``preprocess`` and ``reconstruct`` arguments, before any work."""

from __future__ import annotations

import inspect

import numpy as np
from py4DSTEM import DataCube
from py4DSTEM.process.phase import MultislicePtychography

from py4dstem_compressed.core.backend import check_mode
from py4dstem_compressed.core.checks import check_integer, check_real

__all__ = [
    "RECONSTRUCT_RANGES",
    "check_constructor_arguments",
    "check_preprocess_arguments",
    "check_reconstruct_arguments",
    "resolve_basis",
]

#: Numeric ``reconstruct`` keywords of py4DSTEM checked before any work:
#: name -> (low, high, low_open, high_open, unit, optional).
RECONSTRUCT_RANGES = {
    "step_size": (0.0, np.inf, True, True, "", False),
    "positions_step_size": (0.0, np.inf, True, True, "", False),
    "max_position_update_distance": (0.0, np.inf, True, True, "Å", True),
    "max_position_total_distance": (0.0, np.inf, True, True, "Å", True),
    "shrinkage_rad": (0.0, np.inf, False, True, "rad", False),
    "gaussian_filter_sigma": (0.0, np.inf, True, True, "Å", True),
    "normalization_min": (0.0, 1.0, False, False, "", False),
}


def check_constructor_arguments(energy, num_slices, slice_thicknesses, kwargs, multislice=True):
    """Reject nonsense physical constructor arguments before any work.

    Parameters
    ----------
    energy : float
        [eV].
    num_slices : int or None
        Number of slices (ignored unless ``multislice``).
    slice_thicknesses : float or sequence of float or None
        [Å] (ignored unless ``multislice``).
    kwargs : dict
        The other constructor keywords (``semiangle_cutoff`` [mrad], ``rolloff`` ...).
    multislice : bool
        Whether the class has slices.

    Returns
    -------
    energy : float
        [eV].
    num_slices : int or None
    slice_thicknesses : float or numpy.ndarray or None
        [Å], as given (scalar or one per slice interface).
    """
    energy = check_real("energy", energy, unit="eV")
    if not multislice:
        _check_optics(kwargs)
        return energy, None, None
    num_slices = check_integer("num_slices", num_slices, 1)
    thicknesses = np.atleast_1d(np.asarray(slice_thicknesses, dtype=object))
    if thicknesses.ndim != 1:
        raise ValueError(
            "slice_thicknesses must be a number or a sequence of numbers [Å], got an array "
            f"of shape {thicknesses.shape}"
        )
    checked = [check_real("slice_thicknesses", t, unit="Å") for t in thicknesses]
    if np.ndim(slice_thicknesses) == 0:
        slice_thicknesses = checked[0]
    else:
        slice_thicknesses = np.asarray(checked, dtype=np.float64)
    _check_optics(kwargs)
    return energy, num_slices, slice_thicknesses


def _check_optics(kwargs) -> None:
    """Check ``semiangle_cutoff`` [mrad], ``semiangle_cutoff_pixels`` [px], ``rolloff``."""
    check_real(
        "semiangle_cutoff",
        kwargs.get("semiangle_cutoff"),
        high_open=False,
        unit="mrad",
        optional=True,
    )
    check_real(
        "semiangle_cutoff_pixels", kwargs.get("semiangle_cutoff_pixels"), unit="px", optional=True
    )
    check_real("rolloff", kwargs.get("rolloff", 2.0), low_open=False, unit="mrad")


def check_reconstruct_arguments(kwargs, py4dstem_class: type = MultislicePtychography) -> None:
    """Reject nonsense numeric py4DSTEM ``reconstruct`` keywords before any work.

    ``py4dstem_class`` is the py4DSTEM class whose ``reconstruct`` defaults apply.
    """
    check_integer("max_batch_size", kwargs.get("max_batch_size"), 1, optional=True)
    defaults = inspect.signature(py4dstem_class.reconstruct).parameters
    for name, (low, high, low_open, high_open, unit, optional) in RECONSTRUCT_RANGES.items():
        check_real(
            name,
            kwargs.get(name, defaults[name].default),
            low,
            high,
            low_open=low_open,
            high_open=high_open,
            unit=unit,
            optional=optional,
        )


def check_preprocess_arguments(
    rotation, scan_sampling, angular_sampling, reciprocal_sampling, max_batch_size
) -> None:
    """Reject nonsense numeric ``preprocess`` arguments before any work."""
    check_real("force_com_rotation", rotation, -np.inf, np.inf, unit="deg", optional=True)
    check_real("force_scan_sampling", scan_sampling, unit="Å", optional=True)
    check_real("force_angular_sampling", angular_sampling, unit="mrad", optional=True)
    check_real("force_reciprocal_sampling", reciprocal_sampling, unit="1/Å", optional=True)
    check_integer("max_batch_size", max_batch_size, 1, optional=True)


def resolve_basis(datacube, basis, compression_mode):
    """Check the data / basis / mode combination given to the constructor."""
    if compression_mode is not None:
        check_mode(compression_mode, "compression_mode")
    if datacube is not None and hasattr(datacube, "coefficients"):
        if basis is not None and basis is not datacube.basis:
            if not np.array_equal(np.asarray(basis.masks), np.asarray(datacube.basis.masks)):
                raise ValueError(
                    "a CompressedDataCube carries its own basis; omit basis= or pass the "
                    "same one (the given basis differs)"
                )
        if compression_mode is not None and compression_mode != datacube.mode:
            raise ValueError(
                f"the data were compressed in {datacube.mode!r} mode but compression_mode="
                f"{compression_mode!r}; omit compression_mode"
            )
        return datacube.basis, datacube.mode
    if datacube is not None:
        if not isinstance(datacube, DataCube):
            raise TypeError(
                "datacube must be a py4dstem_compressed.CompressedDataCube or a py4DSTEM "
                f"DataCube, got {type(datacube).__name__}"
            )
        if basis is None:
            raise ValueError(
                "a DataCube needs basis= (e.g. py4dstem_compressed.zernike_basis(geometry, "
                "num_bf=36, num_df=1)) to be compressed, or pass a CompressedDataCube"
            )
        basis.check_detector(datacube.data.shape[-2:], what="the DataCube")
    return basis, compression_mode or "amplitude"
