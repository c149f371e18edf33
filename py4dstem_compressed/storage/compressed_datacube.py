"""``CompressedDataCube``: per-pattern coefficients plus what reconstruction needs, as EMD.

Per scan position it stores the coefficients on the basis masks (Eq. 8), the
two perpendicular norms (Eq. 11), the intensity in the unmeasured EDGE region,
the total intensity and the centre of mass. It carries its basis, the source
calibration (py4DSTEM ``Calibration`` in the tree root, as for a ``DataCube``),
the compression mode and the package version that wrote it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from os.path import basename
from pathlib import Path

import numpy as np
from emdfile import Array, Custom, Node
from py4DSTEM.data import Calibration, Data

from py4dstem_compressed.bases.basis import Basis
from py4dstem_compressed.core.emd import (
    IMPORT_HINT,
    read_format_metadata,
    save,
    to_numpy,
    write_custom_node,
)
from py4dstem_compressed.version import FIRST_FORMAT_VERSION, FORMAT_VERSION, __version__

__all__ = [
    "COMPRESSIONS",
    "MODES",
    "CompressedDataCube",
    "FileLockedError",
    "NoCompressedDataError",
    "StorageOptions",
    "open_hdf5",
    "read_compressed",
]

MODES = ("amplitude", "intensity")
COMPRESSIONS = ("blosc-zstd", "zstd", "none")
#: Target bytes per HDF5 chunk of a per-pattern dataset
CHUNK_BYTES = 1 << 20
FLOAT16_MAX = 65504.0

#: Per-pattern arrays: attribute name -> (trailing shape as a function of K, description)
FIELDS = {
    "coefficients": "coefficients <v, M_n> of v = sqrt(I) (amplitude) or I (intensity)",
    "perpendicular_norms": "[BF, DF] norms of the parts of v orthogonal to each region's masks",
    "edge_intensity": "sum of I over the unmeasured EDGE region [counts]",
    "total_intensity": "sum of I over the whole detector [counts]",
    "center_of_mass": "intensity-weighted centre of mass (qx, qy) [detector px]",
}


@dataclass(frozen=True)
class StorageOptions:
    """How per-pattern datasets are laid out in the HDF5 file.

    Parameters
    ----------
    compression : {"blosc-zstd", "zstd", "none"}
        Lossless HDF5 filter from hdf5plugin: Blosc with byte shuffle and zstd
        (default; best for floats), plain zstd, or none.
    float16 : bool
        Store ``coefficients`` and ``perpendicular_norms`` as float16 (half the
        bytes; relative error <= 2**-11 ~ 4.9e-4 per value, measured in the tests).
        Values must be below 65504 in magnitude.
    layout : {"chunked", "contiguous"}
        ``"contiguous"``: pre-allocated, unfiltered datasets that the live
        writer overwrites in place (no HDF5 metadata changes while writing).
    """

    compression: str = "blosc-zstd"
    float16: bool = False
    layout: str = "chunked"

    def __post_init__(self) -> None:
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}, got {self.compression!r}")
        if self.layout not in ("chunked", "contiguous"):
            raise ValueError(f"layout must be 'chunked' or 'contiguous', got {self.layout!r}")

    def filter(self) -> dict:
        """h5py ``create_dataset`` keywords of the filter."""
        import hdf5plugin

        if self.layout == "contiguous" or self.compression == "none":
            return {}
        if self.compression == "zstd":
            return dict(hdf5plugin.Zstd(clevel=3))
        return dict(hdf5plugin.Blosc(cname="zstd", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE))


class _PatternArray(Array):
    """An Array written as a chunked, filtered dataset (read back as a plain ``Array``)."""

    storage = StorageOptions()
    lossy = False

    def to_h5(self, group):
        grp = Node.to_h5(self, group)
        grp.attrs["python_class"] = "Array"
        data = self.data
        options = self.storage
        if options.float16 and self.lossy:
            if np.nanmax(np.abs(data), initial=0) >= FLOAT16_MAX:
                raise ValueError(
                    f"{self.name} has values beyond float16's range ({FLOAT16_MAX}); save with "
                    "float16=False"
                )
            data = data.astype(np.float16)
        kwargs = options.filter()
        if options.layout == "chunked" and data.size:
            per_row = max(1, int(np.prod(data.shape[1:])) * data.dtype.itemsize)
            chunks = (min(data.shape[0], max(1, CHUNK_BYTES // per_row)), *data.shape[1:])
            kwargs["chunks"] = chunks
        dset = grp.create_dataset("data", data=data, **kwargs)
        dset.attrs.create("units", self.units)
        for n in range(self.rank):
            dim = grp.create_dataset(f"dim{n}", data=np.asarray(self.dims[n])[:2])
            dim.attrs.create("name", str(self.dim_names[n]))
            dim.attrs.create("units", str(self.dim_units[n]))
        return grp


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
    ) -> None:
        Custom.__init__(self, name=name)
        if calibration is not None:
            calibration = calibration.copy(name="calibration")
        Data.__init__(self, calibration=calibration)
        if not isinstance(basis, Basis):
            raise TypeError(f"basis must be a py4dstem_compressed.Basis, got {type(basis)}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
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
            array = _PatternArray(data=value, name=key)
            array.lossy = key in ("coefficients", "perpendicular_norms")
            setattr(self, f"_{key}", array)
        self._valid = _PatternArray(
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
        self._descan_shift_px = _PatternArray(data=shifts, name="descan_shift_px")
        self.basis = basis
        self.mode = mode
        self.package_version = source_version or __version__

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
        from py4dstem_compressed.analysis.metrics import compression_ratio

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
        return (
            f"{rx}x{ry} patterns{missing} of {self.detector_shape[0]}x{self.detector_shape[1]} px, "
            f"{self.mode} mode, {self.basis.describe()}; compression ratio "
            f"{self.compression_ratio:.0f} (paper, Eq. 17), {self.stored_compression_ratio:.0f} "
            f"(all {self.values_per_pattern} stored values per pattern)"
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
        )
        return args

    def _populate_instance(self, group) -> None:
        return None


class NoCompressedDataError(ValueError):
    """A readable EMD file that holds no (or not the requested) ``CompressedDataCube``."""


class FileLockedError(ValueError):
    """An HDF5 file that another process holds open (HDF5 file locking refused access)."""


def open_hdf5(path: str | os.PathLike, mode: str = "r"):
    """Open an HDF5 file with :mod:`h5py`, turning its errors into clear ones.

    Parameters
    ----------
    path : str or path-like
        An existing file.
    mode : {"r", "r+"}
        h5py file mode.

    Returns
    -------
    h5py.File

    Raises
    ------
    FileLockedError
        If another process holds the file open (HDF5 file locking).
    ValueError
        If the file is truncated or is not an HDF5 file; the message names the
        path and what to do.
    """
    import h5py

    path = Path(path)
    try:
        return h5py.File(path, mode)
    except OSError as err:
        raise _unreadable(path, err) from err


def _unreadable(path: Path, err: OSError) -> ValueError:
    text = str(err)
    if isinstance(err, BlockingIOError) or "unable to lock file" in text:
        return FileLockedError(
            f"{path} is locked: another process holds it open (e.g. a live writer still "
            "acquiring, or an open h5py.File). Close it in that process, or wait until it "
            "finishes, and try again"
        )
    if "truncated file" in text:
        return ValueError(
            f"{path} is truncated ({path.stat().st_size:,} bytes on disk, fewer than its HDF5 "
            "header records): it was cut short by an interrupted copy, download or save. Copy "
            "or write it again"
        )
    if "signature not found" in text:
        return ValueError(
            f"{path} is not a readable HDF5/EMD file: it has no HDF5 signature. Pass a file "
            "written by CompressedDataCube.save, open_compressed_writer or "
            "`py4dstem-compressed compress`"
        )
    return ValueError(f"{path} is not a readable HDF5/EMD file ({text})")


def _class_name(group) -> str:
    """The class stored in an EMD group's ``python_class`` (without the import hint)."""
    return str(group.attrs.get("python_class", "?")).split(" (")[0]


def _contents(file) -> tuple[list[str], list[str]]:
    """HDF5 paths of the stored CompressedDataCubes, and ``"name (Class)"`` of every top node."""
    import h5py

    found, top = [], []
    file.visititems(
        lambda name, obj: (
            found.append(name)
            if isinstance(obj, h5py.Group) and _class_name(obj) == "CompressedDataCube"
            else None
        )
    )
    for root in file.values():
        if not isinstance(root, h5py.Group) or root.attrs.get("emd_group_type") != "root":
            continue
        for name, node in root.items():
            if isinstance(node, h5py.Group) and "python_class" in node.attrs:
                top.append(f"{root.name.lstrip('/')}/{name} ({_class_name(node)})")
    return found, top


def _no_compressed_data(path: Path, top: list[str], datapath: str | None) -> NoCompressedDataError:
    holds = (
        f"its top-level EMD objects are {', '.join(top)}"
        if top
        else "it holds no EMD objects (a plain HDF5 file, or an empty EMD file)"
    )
    where = f"at datapath={datapath!r}" if datapath else "anywhere in it"
    return NoCompressedDataError(
        f"{path} holds no CompressedDataCube {where}: {holds}. Expected a compressed scan "
        "written by CompressedDataCube.save, open_compressed_writer or `py4dstem-compressed "
        "compress`; to compress a 4D-STEM file run `py4dstem-compressed compress FILE -o "
        "OUT.h5 --basis ... --num-bf ...` and read OUT.h5"
    )


def read_compressed(filepath: str | os.PathLike, datapath: str | None = None) -> CompressedDataCube:
    """Read a :class:`CompressedDataCube` from an EMD file, with clear errors.

    Parameters
    ----------
    filepath : str or path-like
        File written by :meth:`CompressedDataCube.save` or ``py4DSTEM.save``.
    datapath : str, optional
        HDF5 path of the node when the file holds several.

    Returns
    -------
    CompressedDataCube

    Raises
    ------
    FileNotFoundError
        If there is no file at ``filepath``.
    NoCompressedDataError
        If the file holds no ``CompressedDataCube`` (the message lists what it holds).
    FileLockedError
        If another process holds the file open.
    ValueError
        If the file is truncated, not HDF5, holds several compressed scans and
        no ``datapath`` was given, or cannot be decoded.
    """
    import py4DSTEM

    path = Path(filepath)
    if not path.exists():
        raise FileNotFoundError(f"no file at {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a folder; pass a compressed EMD file (.h5)")
    with open_hdf5(path) as file:
        found, top = _contents(file)
    wanted = found if datapath is None else [f for f in found if _under(f, datapath)]
    if not wanted:
        raise _no_compressed_data(path, top, datapath)
    if len(wanted) > 1:
        raise ValueError(
            f"{path} holds {len(wanted)} CompressedDataCube objects ({', '.join(wanted)}); "
            "pass datapath= to choose one"
        )
    try:
        data = py4DSTEM.read(str(path), datapath=datapath)
    except Exception as err:
        if IMPORT_HINT in str(err):
            raise
        raise ValueError(f"could not read a CompressedDataCube from {path}: {err}") from err
    if isinstance(data, CompressedDataCube):
        return data
    nodes = [n for n in _walk(data) if isinstance(n, CompressedDataCube)]
    if len(nodes) == 1:
        return nodes[0]
    raise ValueError(
        f"{path} holds {len(nodes)} CompressedDataCube objects under its top node "
        f"({type(data).__name__}); pass datapath= to choose one"
    )


def _under(name: str, datapath: str) -> bool:
    """Whether the HDF5 path ``name`` is ``datapath`` or lies inside it."""
    name, datapath = name.strip("/"), datapath.strip("/")
    return name == datapath or name.startswith(datapath + "/")


def _walk(node):
    """``node`` and every node in its emdfile tree, depth first."""
    yield node
    branch = getattr(node, "_branch", None)
    if branch is None:
        return
    for _, child in branch.items():
        yield from _walk(child)
