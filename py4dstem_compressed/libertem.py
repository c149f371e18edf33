"""Compress with LiberTEM: the plugin's compression where the frames are.

:func:`compress_with_libertem` runs :class:`py4dstem_compressed_udf.CompressionUDF` on
any LiberTEM context (inline, concurrent/threads, Dask; files LiberTEM reads, or live
acquisition) and returns the same :class:`~py4dstem_compressed.CompressedDataCube` as
:func:`~py4dstem_compressed.compress` on the same frames: coefficients, both
perpendicular norms, EDGE and total intensity, centre of mass, the descan shifts.

The kernel is built here, in the calling process, exactly as ``compress`` builds it;
LiberTEM's workers receive it by value (see :mod:`py4dstem_compressed_udf`) and never
import py4DSTEM nor this package.

LiberTEM is an optional dependency: ``pip install "py4dstem-compressed[libertem]"``.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping

import numpy as np

import py4dstem_compressed as pc
from py4dstem_compressed.bases.descan import descan_shifts
from py4dstem_compressed.compression.descan_kernel import DescanKernel
from py4dstem_compressed.compression.input_checks import check_center as warn_off_center
from py4dstem_compressed.compression.kernels import CompressionKernel
from py4dstem_compressed.core.backend import MODES

__all__ = ["compress_with_libertem"]

#: py4DSTEM calibration fields a ``calibration`` mapping may set
CALIBRATION_KEYS = ("R_pixel_size", "R_pixel_units", "Q_pixel_size", "Q_pixel_units")
CALIBRATION_HELP = (
    "pass calibration= (a py4DSTEM Calibration such as datacube.calibration, or a dict "
    "like {'R_pixel_size': 0.8, 'R_pixel_units': 'A', 'Q_pixel_size': 0.5, "
    "'Q_pixel_units': 'mrad'}; py4DSTEM.data.Calibration() for uncalibrated pixels)"
)


def _import_udf():
    try:
        import py4dstem_compressed_udf
    except ImportError as error:  # LiberTEM missing (or the module not installed)
        raise ImportError(
            f"compress_with_libertem needs LiberTEM ({error}); install it with "
            '`pip install "py4dstem-compressed[libertem]"`'
        ) from error
    return py4dstem_compressed_udf


def compress_with_libertem(
    ctx,
    dataset,
    basis,
    mode: str = "amplitude",
    *,
    calibration=None,
    descan: np.ndarray | None = None,
    check_center: bool = True,
    use_numba: bool = True,
    progress: bool = False,
    name: str = "compressed_datacube",
    intensity_per_count: float | None = None,
):
    """Compress a LiberTEM dataset onto ``basis`` with a LiberTEM UDF.

    Parameters
    ----------
    ctx : libertem.api.Context
        Any executor: inline, concurrent (threads) or Dask (workers import NumPy, numba
        and LiberTEM only).
    dataset : libertem.io.dataset.base.DataSet
        ``(Rx, Ry, Qx, Qy)`` intensities [counts] of any real dtype (load with
        ``nav_shape=(Rx, Ry)`` if the reader does not know the scan).
    basis : Basis
        Orthonormal masks for this detector.
    mode : {"amplitude", "intensity"}
        Project ``sqrt(I)`` or ``I`` (as :func:`~py4dstem_compressed.compress`).
    calibration : py4DSTEM Calibration or mapping
        Real- and reciprocal-space pixel sizes and units. Required: LiberTEM 0.16's
        datasets carry no pixel sizes. A mapping may set ``R_pixel_size``,
        ``R_pixel_units``, ``Q_pixel_size``, ``Q_pixel_units``.
    descan : array-like or None
        ``(Rx, Ry, 2)`` descan [px] relative to the basis's BF centre: pattern ``j`` is
        compressed with the masks moved by its rounded descan (as ``compress(descan=...)``).
        None (default): fixed masks. ``"auto"`` is not available here (it samples the
        data before compressing); fit the descan on a pre-scan or on sampled patterns
        (``py4dstem_compressed.bases.descan.fit_descan``) and pass the array.
    check_center : bool
        Raise if the intensity-weighted mean centre of mass of the scan is more than a
        quarter of the BF radius (at least 2 px) from the basis's BF centre.
    use_numba : bool
        Use the fused numba pass when numba is installed (on the workers too).
    progress : bool
        Show LiberTEM's progress bar.
    name : str
        Name of the returned EMD node.
    intensity_per_count : float, optional
        Intensity of one detected electron in the data's unit (1 for counts). None
        (default): measured, as ``compress`` does, on the same sampled patterns (read with
        LiberTEM's ``PickUDF``).

    Returns
    -------
    CompressedDataCube
        Equal to ``compress(data, basis, mode, descan=descan)`` on the same frames.

    Raises
    ------
    ValueError
        For an unknown mode, a scan that is not 2D, a basis for another detector, a
        missing calibration, NaN/inf data (naming the first bad scan position), a scan
        without signal, or (``check_center``) a disk far from the basis's centre.
    TypeError
        For complex data or a ``basis`` that is not a Basis.
    NotImplementedError
        For ``descan="auto"``.
    ImportError
        If LiberTEM is not installed.
    """
    scan_shape = _check_inputs(dataset, basis, mode)
    calibration = _calibration(calibration)
    shifts_px = _shifts(descan, scan_shape, basis)
    udf_module = _import_udf()
    kernel = _portable_kernel(udf_module, basis, mode, shifts_px, use_numba)
    results = ctx.run_udf(
        dataset=dataset, udf=udf_module.CompressionUDF(kernel=kernel), progress=progress
    )
    arrays = {key: np.asarray(results[key].data) for key in udf_module.RESULT_KEYS}
    _check_results(arrays, scan_shape)
    if check_center:
        flat = {"total_intensity": arrays["total_intensity"].ravel()}
        flat["center_of_mass"] = arrays["center_of_mass"].reshape(-1, 2)
        warn_off_center(flat, basis, shifts_px.reshape(-1, 2))
    if intensity_per_count is None:
        intensity_per_count = _measured_intensity_per_count(ctx, dataset, basis, shifts_px)
    num_negative = int(results["num_negative"].data[0])
    if num_negative:
        warnings.warn(
            f"{num_negative} negative intensities (e.g. from background subtraction) were "
            "clipped to 0 before taking square roots",
            stacklevel=2,
        )
    return pc.CompressedDataCube(
        **arrays,
        basis=basis,
        mode=mode,
        calibration=calibration,
        name=name,
        descan_shift_px=shifts_px,
        intensity_per_count=intensity_per_count,
    )


def _measured_intensity_per_count(ctx, dataset, basis, shifts_px: np.ndarray) -> float:
    """:func:`~py4dstem_compressed.compression.shot_noise.intensity_per_count` on the patterns
    ``compress`` samples, picked with LiberTEM."""
    from libertem.udf.raw import PickUDF

    from py4dstem_compressed.compression.shot_noise import NOISE_SAMPLES, intensity_per_count
    from py4dstem_compressed.core.sources import sampled_positions

    scan_shape = shifts_px.shape[:2]
    roi = np.zeros(scan_shape[0] * scan_shape[1], bool)
    roi[sampled_positions(scan_shape, NOISE_SAMPLES, 0)] = True
    picked = ctx.run_udf(dataset=dataset, udf=PickUDF(), roi=roi.reshape(scan_shape))
    frames = np.asarray(picked["intensity"].raw_data, np.float64)
    return intensity_per_count(frames, basis.geometry, float(np.abs(shifts_px).max(initial=0)))


def _check_inputs(dataset, basis, mode: str) -> tuple[int, int]:
    """Validate the arguments; return the scan shape ``(Rx, Ry)``."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not isinstance(basis, pc.Basis):
        raise TypeError(f"basis must be a py4dstem_compressed.Basis, got {type(basis).__name__}")
    nav, sig = tuple(dataset.shape.nav), tuple(dataset.shape.sig)
    if len(nav) != 2:
        raise ValueError(
            f"the dataset's scan has shape {nav} but compression needs a 2D scan (Rx, Ry); "
            "load it with nav_shape=(Rx, Ry)"
        )
    basis.check_detector(sig, what="the dataset")
    if np.dtype(dataset.dtype).kind not in "biuf":
        raise TypeError(
            f"the dataset's values are {np.dtype(dataset.dtype)} but compression takes real "
            "intensities [counts]; load the intensities (e.g. |psi|**2 for exit waves)"
        )
    return int(nav[0]), int(nav[1])


def _calibration(calibration):
    """A py4DSTEM Calibration from ``calibration`` (required: datasets carry none)."""
    from py4DSTEM.data import Calibration

    if calibration is None:
        raise ValueError(f"LiberTEM datasets carry no pixel sizes: {CALIBRATION_HELP}")
    if isinstance(calibration, Calibration):
        return calibration
    if not isinstance(calibration, Mapping):
        raise TypeError(
            f"calibration must be a py4DSTEM Calibration or a mapping, got "
            f"{type(calibration).__name__}; {CALIBRATION_HELP}"
        )
    unknown = set(calibration) - set(CALIBRATION_KEYS)
    if unknown:
        raise ValueError(
            f"unknown calibration keys {sorted(unknown)}; use {list(CALIBRATION_KEYS)}"
        )
    out = Calibration()
    for key, value in calibration.items():
        getattr(out, f"set_{key}")(value)
    return out


def _shifts(descan, scan_shape: tuple[int, int], basis) -> np.ndarray:
    """``(Rx, Ry, 2)`` int16 mask shifts [px] (zeros without descan)."""
    if isinstance(descan, str):
        raise NotImplementedError(
            f"descan={descan!r} is not available with LiberTEM (it samples the data before "
            "compressing): pass the (Rx, Ry, 2) descan [px] as an array (e.g. "
            "py4dstem_compressed.bases.descan.fit_descan on a pre-scan), or use "
            "pc.compress(..., descan='auto') on a file"
        )
    scan = np.broadcast_to(np.zeros((), np.uint8), scan_shape)  # only its shape is read
    return descan_shifts(descan, scan, basis.geometry)


#: Modules whose functions a CompressionKernel calls: they travel by value with it
KERNEL_MODULES = (
    "py4dstem_compressed.compression.kernels",
    "py4dstem_compressed.compression.frame_statistics",
    "py4dstem_compressed.core.backend",
)


def _portable_kernel(udf_module, basis, mode: str, shifts_px: np.ndarray, use_numba: bool):
    """The kernels ``compress`` would use, one per distinct shift, ready to travel."""
    make_kernel = functools.partial(CompressionKernel, mode=mode, use_numba=use_numba)
    flat = shifts_px.reshape(-1, 2)
    if not flat.any():
        return udf_module.PortableKernel(
            {(0, 0): make_kernel(basis)}, None, basis.num_masks, KERNEL_MODULES
        )
    descan_kernel = DescanKernel(basis, flat, make_kernel)
    kernels = {tuple(int(v) for v in s): None for s in np.unique(flat, axis=0)}
    kernels = {shift: descan_kernel.kernel_for(shift) for shift in kernels}
    return udf_module.PortableKernel(kernels, flat, basis.num_masks, KERNEL_MODULES)


def _check_results(arrays: dict, scan_shape: tuple[int, int]) -> None:
    """Refuse NaN/inf patterns (naming the first) and a scan without signal."""
    total = arrays["total_intensity"]
    finite = np.isfinite(total)
    if not finite.all():
        position = np.unravel_index(int(np.argmin(finite.ravel())), scan_shape)
        raise ValueError(
            f"the pattern at scan position {tuple(int(p) for p in position)} contains NaN "
            "or inf; replace or mask those values before compressing"
        )
    if not np.any(total > 0):
        raise ValueError(
            f"all {total.size} patterns of the dataset (scan {scan_shape}) have zero or "
            f"negative total intensity (largest: {float(total.max()):g} counts); pass the "
            "recorded intensities"
        )
