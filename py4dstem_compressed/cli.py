"""Command line: ``py4dstem-compressed demo | info``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

__all__ = ["main"]


def _demo(args) -> int:
    from py4dstem_compressed.demo import run_demo

    run_demo(
        preset=args.preset,
        kind=args.kind,
        source=args.source,
        mode=args.mode,
        output=args.output,
        num_iter=args.num_iter,
        reconstruct=not args.no_reconstruct,
    )
    return 0


def _info(args) -> int:
    import py4dstem_compressed as pc

    path = Path(args.file)
    compressed = pc.read_compressed(path)
    print(f"{path}: {compressed.describe()}")
    print(f"bytes on disk: {path.stat().st_size:,}")
    angles = pc.basis_angles(compressed)
    print(
        f"mean basis angles: BF {np.degrees(angles.mean_bf):.2f} deg, "
        f"DF {np.degrees(angles.mean_df):.2f} deg"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``py4dstem-compressed`` command."""
    parser = argparse.ArgumentParser(prog="py4dstem-compressed", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="simulate, compress with every basis, reconstruct and compare"
    )
    demo.add_argument(
        "--preset", default="tiny", help="abTEM preset: micro, tiny (default), small, paper"
    )
    demo.add_argument("--kind", default="crystal", choices=["crystal", "2d"])
    demo.add_argument("--source", default="abtem", choices=["abtem", "synthetic"])
    demo.add_argument("--mode", default="amplitude", choices=["amplitude", "intensity"])
    demo.add_argument("--output", default="demo_output", help="folder for JSON and figures")
    demo.add_argument("--num-iter", type=int, default=30, help="reconstruction iterations")
    demo.add_argument(
        "--no-reconstruct", action="store_true", help="only the basis survey (seconds)"
    )
    demo.set_defaults(func=_demo)
    info = sub.add_parser("info", help="describe a compressed EMD file")
    info.add_argument("file")
    info.set_defaults(func=_info)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
