"""The ``py4dstem-compressed`` command line: parsing and dispatch.

This module lives outside the ``py4dstem_compressed`` package on purpose: importing the
package imports py4DSTEM (seconds), which ``--help``, ``--version`` and a mistyped option
should not wait for. The commands themselves (:mod:`py4dstem_compressed.commands`) are imported
only once the arguments are valid.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

__all__ = ["main"]

DESCRIPTION = (
    "Compress 4D-STEM data onto a few orthonormal masks and run py4DSTEM multislice "
    "ptychography on the coefficients. Commands: demo (simulate, compress, reconstruct, "
    "compare), compress (a 4D data file to a compressed EMD file), info (describe one), "
    "suggest (choose the basis family and mask counts from the data within a value budget)."
)

BASES = ("zernike", "binning", "dp", "pca")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: ...)`` for options that have a default value."""

    def _get_help_string(self, action):
        if action.default is None or action.required or action.default is False:
            return action.help
        return super()._get_help_string(action)


def _parser() -> argparse.ArgumentParser:
    """The argument parser (imports nothing heavy: ``--help`` stays fast)."""
    __version__ = _package_version()

    fmt = _HelpFormatter
    parser = argparse.ArgumentParser(
        prog="py4dstem-compressed", description=DESCRIPTION, formatter_class=fmt
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="simulate, compress with every basis, reconstruct and compare",
        formatter_class=fmt,
    )
    demo.add_argument("--preset", default="tiny", help="abTEM preset: micro, tiny, small or paper")
    demo.add_argument(
        "--kind",
        default="crystal",
        choices=["crystal", "2d"],
        help="specimen: SrTiO3 crystal with point defects, or a 2D material",
    )
    demo.add_argument(
        "--source",
        default="abtem",
        choices=["abtem", "synthetic"],
        help="abtem: multislice simulation (needs the [sim] extra); synthetic: built-in "
        "NumPy forward model (seconds)",
    )
    demo.add_argument("--mode", **MODE_OPTION)
    demo.add_argument("--output", default="demo_output", help="folder for JSON and figures")
    demo.add_argument("--num-iter", type=int, default=30, help="reconstruction iterations")
    demo.add_argument(
        "--no-reconstruct", action="store_true", help="only the basis survey (seconds)"
    )
    demo.set_defaults(command="demo")

    comp = sub.add_parser(
        "compress",
        help="compress a 4D-STEM file (.npy, py4DSTEM .h5/.emd, .zarr)",
        formatter_class=fmt,
    )
    comp.add_argument("input", help="4D data file (.npy, py4DSTEM .h5/.emd, .zarr)")
    comp.add_argument(
        "-o", "--output", required=True, help="compressed EMD file to write (.h5), not a folder"
    )
    comp.add_argument(
        "--basis",
        required=True,
        type=_basis_argument,
        help="mask family: zernike (Zernike polynomials), binning (square bins), dp "
        "(orthonormalised diffraction patterns of the scan), pca (principal components); "
        "or a basis file (.h5) written by `suggest --output`",
    )
    comp.add_argument(
        "--num-bf", type=int, default=None, help="bright-field masks (zernike, dp, pca)"
    )
    comp.add_argument(
        "--num-df",
        type=int,
        default=None,
        help="dark-field masks (zernike, dp, pca); default: 1 (the mean dark field)",
    )
    comp.add_argument(
        "--bin-px", type=int, default=None, help="binning: bright-field bin width [px]"
    )
    comp.add_argument(
        "--df-bin-px",
        type=int,
        default=None,
        help="binning: dark-field bin width [px]; default: 1 mask (the mean dark field)",
    )
    comp.add_argument("--mode", **MODE_OPTION)
    comp.add_argument("--seed", type=int, default=0, help="sampling seed (dp, pca, geometry)")
    comp.add_argument(
        "--df-radius", type=float, default=None, help="outer DF radius [px]; default: from the data"
    )
    comp.add_argument("--datapath", default=None, help="dataset inside an HDF5/zarr file")
    comp.add_argument(
        "--memory-mib",
        type=float,
        default=None,
        help="memory for one chunk of frames [MiB], > 0; default: from the free memory",
    )
    comp.add_argument("--float16", action="store_true", help="store coefficients as float16")
    comp.add_argument(
        "--intensity-per-count",
        type=float,
        default=None,
        help="intensity of one detected electron in the file's unit (1 for counts); "
        "default: measured from the patterns' shot noise",
    )
    comp.add_argument("--overwrite", action="store_true", help="replace an existing output")
    comp.add_argument("--quiet", action="store_true", help="no progress bar")
    comp.set_defaults(command="compress")

    sug = sub.add_parser(
        "suggest",
        help="choose the BF/DF mask counts (Zernike BF, data-derived DF masks) from (a sample of) "
        "the data",
        formatter_class=fmt,
    )
    sug.add_argument(
        "input", help="4D scan or (N, Qx, Qy) sample of patterns (.npy, py4DSTEM .h5/.emd, .zarr)"
    )
    sug.add_argument(
        "--max-values",
        type=int,
        default=40,
        help="budget of stored values per pattern: masks + 2 perpendicular norms, >= 4",
    )
    sug.add_argument("--seed", type=int, default=0, help="seed of the sample and its split")
    sug.add_argument("--mode", **MODE_OPTION)
    sug.add_argument("--datapath", default=None, help="dataset inside an HDF5/zarr file")
    sug.add_argument(
        "-o", "--output", default=None, help="save the basis (.h5) for `compress --basis FILE`"
    )
    sug.add_argument("--overwrite", action="store_true", help="replace an existing output")
    sug.add_argument("--quiet", action="store_true", help="no progress bar")
    sug.set_defaults(command="suggest")

    info = sub.add_parser("info", help="describe a compressed EMD file", formatter_class=fmt)
    info.add_argument("file", help="compressed EMD file (.h5) written by this package")
    info.set_defaults(command="info")
    return parser


#: ``--mode`` of ``demo`` and ``compress``
MODE_OPTION = dict(
    default="amplitude",
    choices=["amplitude", "intensity"],
    help="compress sqrt(intensity) (amplitude, what ptychography fits) or the intensity",
)


#: Suffixes of a basis file ``compress --basis`` takes instead of a family name
BASIS_FILE_SUFFIXES = (".h5", ".hdf5", ".emd")


def _basis_argument(value: str) -> str:
    """``--basis``: a family name or the path of a saved basis."""
    if value in BASES or value.lower().endswith(BASIS_FILE_SUFFIXES):
        return value
    raise argparse.ArgumentTypeError(
        f"{value!r} is neither a family ({', '.join(BASES)}) nor a basis file (.h5)"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``py4dstem-compressed`` command.

    Returns
    -------
    int
        0 on success, 2 for bad input (one-line ``error: ...`` on stderr, no traceback).
    """
    args = _parser().parse_args(argv)
    from py4dstem_compressed import commands

    try:
        return getattr(commands, args.command)(args)
    except (ValueError, OSError, ImportError, MemoryError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _package_version() -> str:
    """The package's version, read from its ``version.py`` without importing the package."""
    spec = importlib.util.find_spec("py4dstem_compressed")
    location = Path(spec.origin).parent / "version.py" if spec and spec.origin else None
    if location is None or not location.exists():
        return "unknown"
    namespace: dict = {}
    exec(compile(location.read_text(), str(location), "exec"), namespace)
    return str(namespace["__version__"])


if __name__ == "__main__":
    sys.exit(main())
