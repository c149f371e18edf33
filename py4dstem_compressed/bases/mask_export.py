"""Masks out of the package: a basis written for acquisition software that applies masks itself.

Detector software (and FPGA or GPU pipelines) can compute virtual-detector images
``c_k(R) = sum_q m_k(q) I_R(q)`` as frames arrive; it needs the masks in the detector frame
and a description of them. :func:`export_masks` writes the ``(K, Qx, Qy)`` stack as ``.npy``,
TIFF or HDF5, with a JSON sidecar naming the geometry, the order and the region of every mask.
Hardware that takes integer masks gets an integer-quantised stack with one scale factor per
mask (``m_k ~ scale_k * q_k``) and the error of the quantisation, as a basis angle.
The images come back in with :meth:`CompressedDataCube.from_virtual_images`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from py4dstem_compressed.bases.zernike import zernike_orders
from py4dstem_compressed.core.files import atomic_path

__all__ = ["SIDECAR_SUFFIX", "export_masks", "quantize_masks"]

#: The sidecar sits beside the stack: ``masks.npy`` -> ``masks.npy.json``
SIDECAR_SUFFIX = ".json"
#: Integer widths hardware mask memories commonly take [bits, sign included]
INTEGER_BITS = (8, 16, 32)
#: Stack formats by file suffix
FORMATS = {".npy": "npy", ".tif": "tiff", ".tiff": "tiff", ".h5": "hdf5", ".hdf5": "hdf5"}


def quantize_masks(masks: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Signed-integer masks and per-mask scale factors with ``masks ~ scale[:, None, None] * q``.

    Each mask is scaled so that its largest ``|value|`` maps to ``2**(bits - 1) - 1`` and
    rounded to the nearest integer (a mask of zeros gets scale 0).

    Parameters
    ----------
    masks : numpy.ndarray
        ``(K, Qx, Qy)`` real masks.
    bits : {8, 16, 32}
        Width of the signed integers.

    Returns
    -------
    integers : numpy.ndarray
        ``(K, Qx, Qy)`` ``int8``/``int16``/``int32``.
    scale : numpy.ndarray
        ``(K,)`` float64 factors.
    """
    if bits not in INTEGER_BITS:
        raise ValueError(f"integer_bits must be one of {INTEGER_BITS}, got {bits!r}")
    masks = np.asarray(masks, dtype=np.float64)
    top = 2 ** (bits - 1) - 1
    peak = np.abs(masks).reshape(len(masks), -1).max(axis=1, initial=0.0)
    scale = np.where(peak > 0, peak / top, 0.0)
    safe = np.where(scale > 0, scale, 1.0)
    integers = np.rint(masks / safe[:, None, None]).astype(f"int{bits}")
    return integers, scale


def _quantization_angles_deg(masks: np.ndarray, integers: np.ndarray, scale) -> np.ndarray:
    """Angle [deg] between each mask and its quantised version ``scale * q``."""
    exact = masks.reshape(len(masks), -1).astype(np.float64)
    approx = integers.reshape(len(masks), -1).astype(np.float64) * scale[:, None]
    norms = np.linalg.norm(exact, axis=1) * np.linalg.norm(approx, axis=1)
    cosine = np.where(norms > 0, np.sum(exact * approx, axis=1) / np.where(norms > 0, norms, 1), 1)
    return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))


def _mask_table(basis) -> list[dict]:
    """One entry per mask: its index, region and, for Zernike masks, the (n, m) order."""
    orders = [None] * basis.num_masks
    if basis.kind == "zernike":
        symmetric = bool(basis.parameters.get("df_rotationally_symmetric", False))
        df_orders = [(0, 0)] * basis.num_df  # the one uniform DF mask is Z_0^0
        if basis.num_df > 1:
            df_orders = zernike_orders(basis.num_df, symmetric)
        orders = zernike_orders(basis.num_bf) + df_orders
    table = []
    for k, region in enumerate(basis.region_index):
        entry = {"index": k, "region": "bright_field" if region == 0 else "dark_field"}
        if orders[k] is not None:
            entry["zernike_nm"] = [int(orders[k][0]), int(orders[k][1])]
        table.append(entry)
    return table


def _write_stack(stack: np.ndarray, path: Path, fmt: str) -> None:
    if fmt == "npy":
        with open(path, "wb") as handle:  # np.save on a path would append ".npy" to a temp name
            np.save(handle, stack)
    elif fmt == "tiff":
        import tifffile

        tifffile.imwrite(path, stack)
    else:
        import h5py

        with h5py.File(path, "w") as file:
            file.create_dataset("masks", data=stack)
            file["masks"].attrs["axes"] = "mask, qx, qy"


def export_masks(basis, path: str | os.PathLike, integer_bits: int | None = None) -> dict:
    """Write a basis's masks in the detector frame, with a JSON sidecar describing them.

    Parameters
    ----------
    basis : Basis
        The masks to export.
    path : str or os.PathLike
        Stack file; the format comes from the suffix: ``.npy`` (the ``(K, Qx, Qy)`` float32
        masks exactly as ``basis.masks``), ``.tif``/``.tiff`` (one page per mask) or
        ``.h5``/``.hdf5`` (dataset ``masks``). The sidecar is ``path + ".json"``.
    integer_bits : {8, 16, 32}, optional
        Write signed integers instead, ``masks ~ scale_k * q_k`` (see
        :func:`quantize_masks`); the sidecar holds the scale factors and the quantisation
        angle of every mask [deg]. An image measured with integer mask ``q_k`` is turned
        into the coefficient by ``c_k = scale_k * sum_q q_k(q) I(q)``.

    Returns
    -------
    dict
        The sidecar's content (also written to disk).

    Raises
    ------
    ValueError
        For an unknown suffix or integer width.
    """
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(
            f"cannot tell the format of {path.name!r} from its suffix: use one of {sorted(FORMATS)}"
        )
    masks = basis.masks
    sidecar = {
        "format": fmt,
        "frame": "masks[k, qx, qy] multiply datacube.data[rx, ry, qx, qy] (detector frame)",
        "applies_to": "intensity I (virtual detector images); amplitude-mode data need sqrt(I)",
        "shape": [int(s) for s in masks.shape],
        "num_bf": basis.num_bf,
        "num_df": basis.num_df,
        "kind": basis.kind,
        "geometry": json.loads(basis.geometry.to_json()),
        "masks": _mask_table(basis),
    }
    if integer_bits is None:
        stack = masks
        sidecar["dtype"] = "float32"
    else:
        stack, scale = quantize_masks(masks, integer_bits)
        angles = _quantization_angles_deg(masks, stack, scale)
        sidecar.update(
            dtype=str(stack.dtype),
            scale=[float(s) for s in scale],
            quantization_angle_deg=[float(a) for a in angles],
            max_quantization_angle_deg=float(angles.max(initial=0.0)),
        )
    with atomic_path(path) as temporary:
        _write_stack(stack, temporary, fmt)
    with atomic_path(Path(str(path) + SIDECAR_SUFFIX)) as temporary:
        temporary.write_text(json.dumps(sidecar, indent=2) + "\n")
    return sidecar
