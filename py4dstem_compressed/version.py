"""Package version and the version of the on-disk format it writes."""

__version__ = "0.1.0"

#: Version of the EMD layout of ``Basis`` and ``CompressedDataCube`` written by this package.
#: Bump when the layout changes incompatibly; readers refuse files with a larger number.
FORMAT_VERSION = 1
