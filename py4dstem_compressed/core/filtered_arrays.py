"""How per-pattern arrays are laid out in HDF5: chunked and filtered (blosc/zstd), or contiguous.

A :class:`FilteredArray` writes like an emdfile ``Array`` and reads back as one, so files stay
readable by any EMD reader that has the HDF5 filter plugins (``hdf5plugin``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from emdfile import Array, Node

__all__ = ["COMPRESSIONS", "FilteredArray", "StorageOptions"]


COMPRESSIONS = ("blosc-zstd", "zstd", "none")


#: Target bytes per HDF5 chunk of a per-pattern dataset
CHUNK_BYTES = 1 << 20


FLOAT16_MAX = 65504.0


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


class FilteredArray(Array):
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
