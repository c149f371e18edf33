"""``CompressedDataCube``: per-pattern coefficients plus what reconstruction needs, as EMD.

Per scan position it stores the coefficients on the basis masks (Eq. 8), the
two perpendicular norms (Eq. 11), the intensity in the unmeasured EDGE region,
the total intensity and the centre of mass. It carries its basis, the source
calibration (py4DSTEM ``Calibration`` in the tree root, as for a ``DataCube``),
the compression mode and the package version that wrote it.
"""

from __future__ import annotations

import os
from os.path import basename
from pathlib import Path

import numpy as np
from emdfile import Custom
from py4DSTEM.data import Calibration, Data

from py4dstem_compressed.bases.basis import Basis, compression_ratio
from py4dstem_compressed.core.backend import check_mode, to_numpy
from py4dstem_compressed.core.emd import (
    read_format_metadata,
    save,
    write_custom_node,
)
from py4dstem_compressed.core.filtered_arrays import FilteredArray, StorageOptions
from py4dstem_compressed.version import FIRST_FORMAT_VERSION, FORMAT_VERSION, __version__

__all__ = ["CompressedDataCube"]


#: Per-pattern arrays: attribute name -> what it holds, with its unit (see docs/FORMAT.md)
FIELDS = {
    "coefficients": "coefficients <v, M_n> of v = sqrt(I) (amplitude) or I (intensity)",
    "perpendicular_norms": "[BF, DF] norms of the parts of v orthogonal to each region's masks",
    "edge_intensity": "sum of I over the unmeasured EDGE region [counts]",
    "total_intensity": "sum of I over the whole detector [counts]",
    "center_of_mass": "intensity-weighted centre of mass (qx, qy) [detector px]",
}


def _checked_intensity_per_count(value) -> float:
    """``intensity_per_count`` as a finite float >= 0, or a ValueError naming the fix."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not np.isfinite(number) or number < 0:
        raise ValueError(
            f"intensity_per_count must be a finite number >= 0 (the intensity of one detected "
            f"electron in the data's unit; 0 for noise-free data), got {value!r}"
        )
    return number


class CompressedDataCube(Custom, Data):
    """A 4D-STEM scan compressed onto a :class:`~py4dstem_compressed.Basis`.

    Build one with :func:`py4dstem_compressed.compress`; save it with
    :meth:`save` (atomic) or ``py4DSTEM.save``; read it with
    ``py4DSTEM.read`` after ``import py4dstem_compressed``.

    Parameters
    ----------
    coefficients : numpy.ndarray
        ``(Rx, Ry, K)`` float32 coefficients ``c_n = <v, M_n>`` with
        ``v = sqrt(I)`` [sqrt(counts)] in amplitude mode or ``v = I``
        [counts] in intensity mode.
    perpendicular_norms : numpy.ndarray
        ``(Rx, Ry, 2)`` float32 ``[p_BF, p_DF]``, ``p_R = ||v_R - P_R v_R||``
        (Eq. 11), same unit as the coefficients.
    edge_intensity : numpy.ndarray
        ``(Rx, Ry)`` float32 sum of ``I`` over the EDGE region [counts].
    total_intensity : numpy.ndarray
        ``(Rx, Ry)`` float32 sum of ``I`` over the detector [counts].
    center_of_mass : numpy.ndarray
        ``(Rx, Ry, 2)`` float32 intensity-weighted centre ``(qx, qy)`` [px].
    basis : Basis
        The masks the data were projected on.
    mode : {"amplitude", "intensity"}
        What was projected.
    calibration : py4DSTEM.data.Calibration, optional
        Calibration of the source DataCube (copied).
    name : str
        EMD node name.
    source_version : str, optional
        Package version that wrote the data (set on read).
    valid : numpy.ndarray of bool, optional
        ``(Rx, Ry)``: which patterns were compressed (all by default). A file
        from an interrupted live acquisition has missing patterns; their
        per-pattern values are NaN.
    descan_shift_px : numpy.ndarray, optional
        ``(Rx, Ry, 2)`` integer shifts ``(qx, qy)`` [px] by which the masks were moved
        for each pattern (descan-aware compression, see :func:`~py4dstem_compressed.compress`);
        zeros (the default): masks fixed in the detector frame.
    intensity_per_count : float
        Intensity one detected electron adds, in the data's unit (1 for counts), measured
        from the raw frames' shot noise by :func:`~py4dstem_compressed.compress`; the data
        step models the amplitude coefficients of sparse counts with it. 0 (the default):
        noise-free or not measured.
    """

    def __init__(
        self,
        coefficients: np.ndarray,
        perpendicular_norms: np.ndarray,
        edge_intensity: np.ndarray,
        total_intensity: np.ndarray,
        center_of_mass: np.ndarray,
        basis: Basis,
        mode: str = "amplitude",
        calibration: Calibration | None = None,
        name: str = "compressed_datacube",
        source_version: str | None = None,
        valid: np.ndarray | None = None,
        descan_shift_px: np.ndarray | None = None,
        intensity_per_count: float = 0.0,
    ) -> None:
        Custom.__init__(self, name=name)
        if calibration is not None:
            calibration = calibration.copy(name="calibration")
        Data.__init__(self, calibration=calibration)
        if not isinstance(basis, Basis):
            raise TypeError(f"basis must be a py4dstem_compressed.Basis, got {type(basis)}")
        check_mode(mode)
        coefficients = np.asarray(to_numpy(coefficients), dtype=np.float32)
        if coefficients.ndim != 3 or coefficients.shape[2] != basis.num_masks:
            raise ValueError(
                f"coefficients must be (Rx, Ry, K={basis.num_masks}), got {coefficients.shape}"
            )
        scan = coefficients.shape[:2]
        arrays = {
            "coefficients": (coefficients, (*scan, basis.num_masks)),
            "perpendicular_norms": (perpendicular_norms, (*scan, 2)),
            "edge_intensity": (edge_intensity, scan),
            "total_intensity": (total_intensity, scan),
            "center_of_mass": (center_of_mass, (*scan, 2)),
        }
        if valid is not None:
            valid = np.asarray(valid, dtype=bool)
            if valid.shape != tuple(scan):
                raise ValueError(f"valid must have shape {tuple(scan)}, got {valid.shape}")
        for key, (value, shape) in arrays.items():
            value = np.asarray(to_numpy(value), dtype=np.float32)
            if value.shape != tuple(shape):
                raise ValueError(f"{key} must have shape {tuple(shape)}, got {value.shape}")
            if valid is not None and not valid.all():
                value = value.copy()
                value[~valid] = np.nan  # missing patterns are never garbage
            array = FilteredArray(data=value, name=key)
            array.lossy = key in ("coefficients", "perpendicular_norms")
            setattr(self, f"_{key}", array)
        self._valid = FilteredArray(
            data=np.ones(scan, np.uint8) if valid is None else valid.astype(np.uint8), name="valid"
        )
        shifts = np.zeros((*scan, 2), np.int16)
        if descan_shift_px is not None:
            given = np.asarray(to_numpy(descan_shift_px))
            if given.shape != shifts.shape or not np.all(np.isfinite(given)):
                raise ValueError(
                    f"descan_shift_px must be finite with shape {shifts.shape}, got {given.shape}"
                )
            if np.any(given != np.rint(given)):
                raise ValueError("descan_shift_px must hold whole pixels (the masks' shifts)")
            shifts = given.astype(np.int16)
        self._descan_shift_px = FilteredArray(data=shifts, name="descan_shift_px")
        self.intensity_per_count = _checked_intensity_per_count(intensity_per_count)
        self.basis = basis
        self.mode = mode
        self.package_version = source_version or __version__

    @classmethod
    def from_virtual_images(
        cls,
        images,
        basis: Basis,
        mode: str = "intensity",
        perpendicular_norms=None,
        total_intensity=None,
        calibration: Calibration | None = None,
        center_of_mass=None,
        edge_intensity=None,
        intensity_per_count: float = 0.0,
    ) -> CompressedDataCube:
        """Build from ``(Rx, Ry, K)`` virtual-detector images computed with ``basis``'s masks.

        For acquisition software that applies exported masks itself (see
        :meth:`Basis.export_masks`). What it did not measure is left out (perpendicular
        norms: NaN, and the reconstruction runs without them) or estimated from the
        coefficients by projecting the patterns onto the masks' span (totals, centres of
        mass; see :func:`~py4dstem_compressed.storage.virtual_images.projected_moments`).

        Parameters
        ----------
        images : array-like
            ``(Rx, Ry, K)``: image ``k`` is ``sum_q m_k(q) v_R(q)`` with the basis's mask ``k``
            (detector frame), ``v = I`` (intensity mode, what a virtual detector measures)
            or ``sqrt(I)`` (amplitude mode). Integer masks: multiply by their scales first.
        basis : Basis
            The masks the images were computed with.
        mode : {"intensity", "amplitude"}
        perpendicular_norms : array-like, optional
            ``(Rx, Ry, 2)`` ``[p_BF, p_DF]`` (Eq. 11); None: not measured.
        total_intensity : array-like, optional
            ``(Rx, Ry)`` ``sum_q I`` [counts]; None: estimated from the projection.
        calibration : py4DSTEM.data.Calibration, optional
            Scan step [A] and detector pixel [mrad]; without it ``preprocess`` needs
            ``force_scan_sampling`` and ``force_angular_sampling``.
        center_of_mass : array-like, optional
            ``(Rx, Ry, 2)`` [px]; None: estimated from the projection.
        edge_intensity : array-like, optional
            ``(Rx, Ry)`` intensity in the EDGE region [counts]; None: zero (virtual
            detectors covering the BF and DF regions see no EDGE pixel).
        intensity_per_count : float
            Intensity of one detected electron in the images' unit (1 for a counting
            detector's counts); 0 (default): unknown, the data step treats the data as
            noise-free.

        Returns
        -------
        CompressedDataCube

        Raises
        ------
        ValueError
            For images of the wrong shape or with NaN/inf, or arrays of the wrong shape.
        """
        from py4dstem_compressed.storage.virtual_images import check_images, projected_moments

        if not isinstance(basis, Basis):
            raise TypeError(
                f"basis must be a py4dstem_compressed.Basis, got {type(basis).__name__}"
            )
        mode = check_mode(mode)
        coefficients = check_images(images, basis)
        scan = coefficients.shape[:2]
        norms = None if perpendicular_norms is None else np.asarray(to_numpy(perpendicular_norms))
        total, center = projected_moments(coefficients, basis, mode, norms)
        return cls(
            coefficients,
            np.full((*scan, 2), np.nan, np.float32) if norms is None else norms,
            np.zeros(scan, np.float32) if edge_intensity is None else edge_intensity,
            total if total_intensity is None else total_intensity,
            center if center_of_mass is None else center_of_mass,
            basis,
            mode=mode,
            calibration=calibration,
            intensity_per_count=intensity_per_count,
        )

    # ----------------------------------------------------------------- arrays
    @property
    def coefficients(self) -> np.ndarray:
        """``(Rx, Ry, K)`` float32 coefficients."""
        return self._coefficients.data

    @property
    def perpendicular_norms(self) -> np.ndarray:
        """``(Rx, Ry, 2)`` float32 ``[p_BF, p_DF]`` (Eq. 11)."""
        return self._perpendicular_norms.data

    @property
    def edge_intensity(self) -> np.ndarray:
        """``(Rx, Ry)`` float32 intensity in the EDGE region [counts]."""
        return self._edge_intensity.data

    @property
    def total_intensity(self) -> np.ndarray:
        """``(Rx, Ry)`` float32 total intensity [counts]."""
        return self._total_intensity.data

    @property
    def center_of_mass(self) -> np.ndarray:
        """``(Rx, Ry, 2)`` float32 centre of mass ``(qx, qy)`` [px]."""
        return self._center_of_mass.data

    @property
    def valid(self) -> np.ndarray:
        """``(Rx, Ry)`` bool: patterns that were compressed (False: missing, values NaN)."""
        return self._valid.data.astype(bool)

    @property
    def descan_shift_px(self) -> np.ndarray:
        """``(Rx, Ry, 2)`` int16 shifts [px] of the masks for each pattern (descan-aware)."""
        return self._descan_shift_px.data

    @property
    def num_complete(self) -> int:
        """Number of compressed (not missing) patterns."""
        return int(np.count_nonzero(self._valid.data))

    @property
    def is_complete(self) -> bool:
        """Whether every pattern of the scan was compressed."""
        return self.num_complete == int(np.prod(self.scan_shape))

    # ------------------------------------------------------------------ shape
    @property
    def scan_shape(self) -> tuple[int, int]:
        """Scan shape ``(Rx, Ry)``."""
        return tuple(self.coefficients.shape[:2])

    @property
    def detector_shape(self) -> tuple[int, int]:
        """Detector shape ``(Qx, Qy)`` [px] of the source data."""
        return self.basis.shape

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """Shape ``(Rx, Ry, Qx, Qy)`` of the uncompressed data."""
        return (*self.scan_shape, *self.detector_shape)

    @property
    def Rshape(self) -> tuple[int, int]:
        """Scan shape ``(Rx, Ry)``, under the name py4DSTEM's ``DataCube`` gives it."""
        return self.scan_shape

    @property
    def Qshape(self) -> tuple[int, int]:
        """Detector shape ``(Qx, Qy)``, under the name py4DSTEM's ``DataCube`` gives it."""
        return self.detector_shape

    @property
    def num_masks(self) -> int:
        """Number of coefficients per pattern ``K``."""
        return self.basis.num_masks

    @property
    def values_per_pattern(self) -> int:
        """Every value stored per pattern: K + 2 perpendicular + edge + total + 2 CoM."""
        return self.num_masks + 2 + 1 + 1 + 2

    @property
    def compression_ratio(self) -> float:
        """The paper's ratio ``Qx Qy / (K_bf + K_df + 2)`` (Eq. 17)."""
        return compression_ratio(self.basis)

    @property
    def stored_compression_ratio(self) -> float:
        """Honest ratio: detector pixels over *all* values stored per pattern."""
        return float(np.prod(self.detector_shape)) / self.values_per_pattern

    def decompress(self, rx: int, ry: int) -> np.ndarray:
        """Best approximation ``sum_n c_n M_n`` of the pattern at ``(rx, ry)``.

        Returns the projected amplitude (amplitude mode) or intensity, ``(Qx, Qy)``.
        """
        return np.tensordot(self.coefficients[rx, ry], self.basis.masks, axes=1)

    def describe(self) -> str:
        """A short human-readable summary."""
        rx, ry = self.scan_shape
        missing = "" if self.is_complete else f" ({self.num_complete} complete, rest missing)"
        noise = ""
        totals = self.total_intensity[np.isfinite(self.total_intensity)]
        if self.intensity_per_count > 0 and totals.size:
            counts = float(totals.mean()) / self.intensity_per_count
            noise = f"; shot noise of ~{counts:.3g} counts per pattern"
        return (
            f"{rx}x{ry} patterns{missing} of {self.detector_shape[0]}x{self.detector_shape[1]} px, "
            f"{self.mode} mode, {self.basis.describe()}; compression ratio "
            f"{self.compression_ratio:.0f} (paper, Eq. 17), {self.stored_compression_ratio:.0f} "
            f"(all {self.values_per_pattern} stored values per pattern){noise}"
        )

    def __repr__(self) -> str:
        return f"CompressedDataCube({self.describe()})"

    # -------------------------------------------------------------------- I/O
    def save(
        self,
        filepath: str | os.PathLike,
        overwrite: bool = False,
        compression: str = "blosc-zstd",
        float16: bool = False,
    ) -> Path:
        """Write to an EMD file atomically (temp file + rename); see :func:`emd.save`.

        Parameters
        ----------
        filepath : str or path-like
            Target ``.h5`` / ``.emd`` path.
        overwrite : bool
            Replace an existing file.
        compression : {"blosc-zstd", "zstd", "none"}
            Lossless filter of the chunked per-pattern datasets.
        float16 : bool
            Store coefficients and perpendicular norms as float16 (relative
            error <= 4.9e-4 per value).
        """
        self.storage = StorageOptions(compression=compression, float16=float16)
        try:
            return save(filepath, self, overwrite=overwrite)
        finally:
            del self.storage

    def _set_storage(self, options: StorageOptions) -> None:
        for key in (*FIELDS, "valid", "descan_shift_px"):
            getattr(self, f"_{key}").storage = options

    def to_h5(self, group):
        """Write under an h5py group (emdfile hook)."""
        self._set_storage(getattr(self, "storage", StorageOptions()))
        fields = {
            "mode": self.mode,
            "scan_shape": list(self.scan_shape),
            "num_complete": self.num_complete,
            "intensity_per_count": self.intensity_per_count,
        }
        # files whose masks did not move stay readable by the versions before descan
        version = FORMAT_VERSION if self.descan_shift_px.any() else FIRST_FORMAT_VERSION
        return write_custom_node(self, group, fields, format_version=version)

    @classmethod
    def _get_constructor_args(cls, group) -> dict:
        import hdf5plugin  # noqa: F401  (registers the filters of chunked datasets)

        fields = read_format_metadata(group, "CompressedDataCube")
        nodes = Custom._get_emd_attr_data(None, group)
        missing = [k for k in [*(f"_{f}" for f in FIELDS), "basis"] if k not in nodes]
        if missing:
            raise ValueError(
                f"the stored CompressedDataCube {group.name!r} in {group.file.filename!r} lacks "
                f"{missing}: the file is truncated or damaged"
            )
        args = {f: nodes[f"_{f}"].data for f in FIELDS}
        args.update(
            basis=nodes["basis"],
            mode=fields["mode"],
            name=basename(group.name),
            source_version=fields["_package_version"],
            valid=nodes["_valid"].data.astype(bool) if "_valid" in nodes else None,
            descan_shift_px=(
                nodes["_descan_shift_px"].data if "_descan_shift_px" in nodes else None
            ),
            # files before 0.2 carry no noise estimate: their data step stays the noise-free one
            intensity_per_count=fields.get("intensity_per_count", 0.0),
        )
        return args

    def _populate_instance(self, group) -> None:
        return None
