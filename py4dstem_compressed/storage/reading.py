"""Reading a ``CompressedDataCube`` back from a file, with errors that say what the file holds."""

from __future__ import annotations

import os
from pathlib import Path

from py4dstem_compressed.core.emd import IMPORT_HINT
from py4dstem_compressed.storage.compressed_datacube import CompressedDataCube

__all__ = ["FileLockedError", "NoCompressedDataError", "open_hdf5", "read_compressed"]


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
