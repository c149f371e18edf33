"""Project diffraction patterns onto a basis (Eq. 8) in batches.

The kernel :func:`compress_frames` is array-in, array-out and works with NumPy
or CuPy (``xp``). :func:`compress` drives it over a whole scan with a progress
bar, validating the input on the way.
"""

from __future__ import annotations

import warnings

import numpy as np
from tqdm.auto import tqdm

from py4dstem_compressed.basis import Basis
from py4dstem_compressed.sources import as_4d, frame_batch
from py4dstem_compressed.storage import MODES, CompressedDataCube

__all__ = ["FrameKernel", "compress", "compress_frames"]

DEFAULT_BATCH_FRAMES = 1024


class FrameKernel:
    """The per-frame linear maps of a basis, prepared once for a batch kernel.

    Parameters
    ----------
    basis : Basis
        Masks to project on.
    xp : module
        ``numpy`` or ``cupy``.

    Attributes
    ----------
    masks_t : array
        ``(P, K)`` float32 transposed flat masks.
    region_sums_t : array
        ``(P, 6)`` float32 columns: BF indicator, DF indicator, EDGE indicator,
        ones, qx, qy (pixel coordinates), so one matmul gives every region sum
        and the centre-of-mass numerators.
    """

    def __init__(self, basis: Basis, xp=np) -> None:
        geometry = basis.geometry
        qx, qy = np.meshgrid(
            np.arange(geometry.shape[0], dtype=np.float32),
            np.arange(geometry.shape[1], dtype=np.float32),
            indexing="ij",
        )
        columns = np.stack(
            [
                geometry.bf.ravel(),
                geometry.df.ravel(),
                geometry.edge.ravel(),
                np.ones(geometry.num_pixels, bool),
                qx.ravel(),
                qy.ravel(),
            ],
            axis=1,
        ).astype(np.float32)
        self.xp = xp
        self.basis = basis
        self.num_bf = basis.num_bf
        self.masks_t = xp.asarray(np.ascontiguousarray(basis.masks_flat.T))
        self.region_sums_t = xp.asarray(columns)


def compress_frames(frames, kernel: FrameKernel, mode: str = "amplitude") -> dict:
    """Compress a batch of frames.

    Parameters
    ----------
    frames : array
        ``(B, Qx, Qy)`` intensities [counts], NumPy or CuPy (as ``kernel.xp``).
        Must be finite; in amplitude mode negative values are clipped to 0.
    kernel : FrameKernel
        Prepared basis.
    mode : {"amplitude", "intensity"}
        Project ``sqrt(I)`` or ``I``.

    Returns
    -------
    dict
        ``coefficients (B, K)``, ``perpendicular_norms (B, 2)``,
        ``edge_intensity (B,)``, ``total_intensity (B,)``,
        ``center_of_mass (B, 2)``, all float32 arrays of ``kernel.xp``.
    """
    # NaN/inf frames propagate to their totals, which the caller checks
    with np.errstate(invalid="ignore", over="ignore"):
        xp = kernel.xp
        num = frames.shape[0]
        intensity = xp.asarray(frames).reshape(num, -1).astype(xp.float32, copy=False)
        if mode == "amplitude":
            intensity = xp.maximum(intensity, 0)
            vector = xp.sqrt(intensity)
        else:
            vector = intensity
        coefficients = vector @ kernel.masks_t
        sums = intensity @ kernel.region_sums_t
        if mode == "amplitude":
            region_norms_sq = sums[:, :2]  # ||sqrt(I)_R||^2 = sum_R I
        else:
            region_norms_sq = (vector * vector) @ kernel.region_sums_t[:, :2]
        c_sq = coefficients.astype(xp.float64) ** 2
        captured = xp.stack([c_sq[:, : kernel.num_bf].sum(1), c_sq[:, kernel.num_bf :].sum(1)], 1)
        perpendicular = xp.sqrt(xp.maximum(region_norms_sq - captured, 0)).astype(xp.float32)
        total = sums[:, 3]
        safe_total = xp.where(total != 0, total, 1)
        com = sums[:, 4:6] / safe_total[:, None]
        return {
            "coefficients": coefficients,
            "perpendicular_norms": perpendicular,
            "edge_intensity": sums[:, 2],
            "total_intensity": total,
            "center_of_mass": com.astype(xp.float32),
        }


def _first_bad_position(frames: np.ndarray, start: int, scan_ry: int) -> tuple[int, int]:
    bad = ~np.isfinite(frames.reshape(frames.shape[0], -1)).all(axis=1)
    index = start + int(np.argmax(bad))
    return index // scan_ry, index % scan_ry


def compress(
    datacube,
    basis: Basis,
    mode: str = "amplitude",
    max_batch_size: int = DEFAULT_BATCH_FRAMES,
    check_center: bool = True,
    progress_bar: bool = True,
    name: str = "compressed_datacube",
) -> CompressedDataCube:
    """Compress a 4D-STEM dataset onto ``basis``.

    Parameters
    ----------
    datacube : py4DSTEM.DataCube or numpy.ndarray
        ``(Rx, Ry, Qx, Qy)`` intensities [counts].
    basis : Basis
        Orthonormal masks for this detector.
    mode : {"amplitude", "intensity"}
        ``"amplitude"`` projects ``sqrt(I)`` (Eq. 8; best for reconstruction);
        ``"intensity"`` projects ``I`` (what detector software computes on the fly).
    max_batch_size : int
        Frames per batch (memory ~ ``3 * max_batch_size * Qx * Qy * 4`` bytes).
    check_center : bool
        Compare the data's mean centre of mass (first batch) with the basis's
        BF centre and raise if they differ by more than a quarter of the BF radius.
    progress_bar : bool
        Show a tqdm progress bar.
    name : str
        Name of the returned EMD node.

    Returns
    -------
    CompressedDataCube

    Raises
    ------
    ValueError
        For data with NaN/inf (naming the first bad scan position), a basis
        for another detector shape or centre, or an unknown mode.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not isinstance(basis, Basis):
        raise TypeError(f"basis must be a py4dstem_compressed.Basis, got {type(basis).__name__}")
    data, calibration = as_4d(datacube)
    basis.check_detector(data.shape[2:])
    if basis.mode is not None and basis.mode != mode:
        warnings.warn(
            f"the basis was built from {basis.mode}s but mode={mode!r}; build it with "
            f"mode={mode!r} for the best fit",
            stacklevel=2,
        )
    rx, ry = data.shape[:2]
    num_frames = rx * ry
    kernel = FrameKernel(basis)
    out = {
        "coefficients": np.empty((num_frames, basis.num_masks), np.float32),
        "perpendicular_norms": np.empty((num_frames, 2), np.float32),
        "edge_intensity": np.empty(num_frames, np.float32),
        "total_intensity": np.empty(num_frames, np.float32),
        "center_of_mass": np.empty((num_frames, 2), np.float32),
    }
    batch = max(1, int(max_batch_size))
    num_negative = 0
    with tqdm(total=num_frames, desc="Compressing", unit="frame", disable=not progress_bar) as bar:
        for start in range(0, num_frames, batch):
            stop = min(start + batch, num_frames)
            frames = frame_batch(data, start, stop)
            result = compress_frames(frames, kernel, mode)
            if not np.all(np.isfinite(result["total_intensity"])):
                position = _first_bad_position(np.asarray(frames), start, ry)
                raise ValueError(
                    f"the pattern at scan position {position} contains NaN or inf; replace or "
                    "mask those values before compressing"
                )
            if mode == "amplitude" and float(np.min(frames)) < 0:
                num_negative += int(np.count_nonzero(np.asarray(frames) < 0))
            if check_center and start == 0:
                _check_center(result, basis)
            for key, value in result.items():
                out[key][start:stop] = value
            bar.update(stop - start)
    if num_negative:
        warnings.warn(
            f"{num_negative} negative intensities (e.g. from background subtraction) were "
            "clipped to 0 before taking square roots",
            stacklevel=2,
        )
    arrays = {k: v.reshape(rx, ry, *v.shape[1:]) for k, v in out.items()}
    return CompressedDataCube(**arrays, basis=basis, mode=mode, calibration=calibration, name=name)


def _check_center(result: dict, basis: Basis) -> None:
    total = result["total_intensity"]
    if not np.any(total > 0):
        return
    com = np.average(result["center_of_mass"], axis=0, weights=np.maximum(total, 0))
    geometry = basis.geometry
    offset = float(np.hypot(*(com - np.asarray(geometry.center))))
    if offset > max(2.0, 0.25 * geometry.bf_radius):
        raise ValueError(
            f"the data's bright-field centre is near ({com[0]:.1f}, {com[1]:.1f}) px but the "
            f"basis was built for a disk centred at ({geometry.center[0]:.1f}, "
            f"{geometry.center[1]:.1f}) px (both on a {geometry.shape} px detector); build the "
            "basis from this data's geometry (DetectorGeometry.from_datacube), or pass "
            "check_center=False if the offset is intended"
        )
