"""EMD (emdfile) plumbing shared by the package's file-backed classes.

emdfile finds the class of a stored node by the bare name written in the
node's ``python_class`` attribute, looked up among the modules that set
``_emd_hook = True``. We write a name that carries the fix for the commonest
mistake -- reading without importing the plugin -- so that emdfile's own
"Unknown classname ..." error tells the user what to do, and register the
same name as an alias in the package namespace so that reading works once
the plugin is imported.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
from emdfile import Metadata

from py4dstem_compressed.core.files import atomic_path
from py4dstem_compressed.version import FIRST_FORMAT_VERSION, FORMAT_VERSION, __version__

__all__ = [
    "IMPORT_HINT",
    "emd_class_name",
    "read_format_metadata",
    "save",
    "stamp_class_name",
    "write_custom_node",
    "write_format_metadata",
]

IMPORT_HINT = "(written by py4dstem-compressed: run `import py4dstem_compressed` before reading)"
FORMAT_METADATA_NAME = "py4dstem_compressed_format"


def emd_class_name(cls: type) -> str:
    """The ``python_class`` string written to file for ``cls``."""
    return f"{cls.__name__} {IMPORT_HINT}"


def stamp_class_name(group: h5py.Group, cls: type) -> None:
    """Overwrite the ``python_class`` attribute of a freshly written group."""
    group.attrs["python_class"] = emd_class_name(cls)


def write_format_metadata(
    node, kind: str, fields: dict, format_version: int = FIRST_FORMAT_VERSION
) -> None:
    """Attach version stamps and ``fields`` (JSON-serialisable) as node metadata."""
    node.metadata = Metadata(
        name=FORMAT_METADATA_NAME,
        data={
            "format_version": int(format_version),
            "package_version": __version__,
            "kind": kind,
            "fields": json.dumps(fields),
        },
    )


def write_custom_node(
    node, group: h5py.Group, fields: dict, format_version: int = FIRST_FORMAT_VERSION
) -> h5py.Group:
    """Write an emdfile ``Custom`` node with its format stamp and import-hint class name.

    Parameters
    ----------
    node : emdfile.Custom
        The object to write; its class name is the stamp's ``kind``.
    group : h5py.Group
        Parent group.
    fields : dict
        JSON-serialisable scalars stored with the stamp.
    format_version : int
        The layout version to stamp: the lowest one that describes what is written (by
        default the first), so that older readers read every file they can.

    Returns
    -------
    h5py.Group
        The node's group.
    """
    from emdfile import Custom

    cls = type(node)
    write_format_metadata(node, cls.__name__, fields, format_version)
    grp = Custom.to_h5(node, group)
    stamp_class_name(grp, cls)
    return grp


def read_format_metadata(group: h5py.Group, kind: str) -> dict:
    """Read and check what :func:`write_format_metadata` stored under ``group``.

    Raises
    ------
    ValueError
        If the stamp is missing, describes another kind of object, or was
        written by a newer format version than this package reads.
    """
    path = f"metadatabundle/{FORMAT_METADATA_NAME}"
    if path not in group:
        raise ValueError(
            f"the EMD group {group.name!r} in {group.file.filename!r} has no "
            f"py4dstem-compressed format stamp; it was not written by this package"
        )
    md = Metadata.from_h5(group[path])
    version = int(md["format_version"])
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{group.file.filename!r} was written by py4dstem-compressed "
            f"{md['package_version']} (format version {version}); this is version "
            f"{__version__}, which reads format versions <= {FORMAT_VERSION}. Upgrade with "
            '`pip install -U "py4dstem-compressed"`.'
        )
    if md["kind"] != kind:
        raise ValueError(f"expected a stored {kind}, found a {md['kind']} in {group.name!r}")
    fields = json.loads(md["fields"])
    fields["_package_version"] = md["package_version"]
    return fields


def save(filepath: str | os.PathLike, data, overwrite: bool = False) -> Path:
    """Write an EMD object atomically with :func:`py4DSTEM.save`.

    The file is written to a temporary file in the target's folder and renamed
    onto the target only once complete, so an interrupted save never leaves a
    half-written file at ``filepath``.

    Parameters
    ----------
    filepath : str or path-like
        Target ``.h5`` / ``.emd`` path.
    data : emdfile Node
        E.g. a :class:`~py4dstem_compressed.CompressedDataCube` or
        :class:`~py4dstem_compressed.Basis`.
    overwrite : bool
        Replace an existing file; otherwise an existing target raises.

    Returns
    -------
    pathlib.Path
        The written path.
    """
    import py4DSTEM

    target = Path(filepath)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
    with atomic_path(target) as temporary:
        py4DSTEM.save(str(temporary), data, mode="w")
    return target
