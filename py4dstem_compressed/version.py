"""Package version and the version of the on-disk format it writes."""

__version__ = "0.1.0"

#: Version of the EMD layout of ``Basis`` and ``CompressedDataCube`` written by this package.
#: Bump when the layout changes incompatibly; readers refuse files with a larger number.
#: 2: per-pattern ``descan_shift_px`` of descan-aware compression (files without mask
#: shifts are still stamped 1).
FORMAT_VERSION = 2
#: The layout of 0.1: masks fixed in the detector frame.
FIRST_FORMAT_VERSION = 1
