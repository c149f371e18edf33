"""Command line: ``py4dstem-compressed demo | compress | info``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

__all__ = ["main"]

BASES = ("zernike", "binning", "dp", "pca")


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


def _build_basis(args, data):
    import py4dstem_compressed as pc

    geometry = pc.DetectorGeometry.from_datacube(data, df_radius=args.df_radius, seed=args.seed)
    num_df = 1 if args.num_df is None else args.num_df
    if args.basis == "zernike":
        return pc.zernike_basis(geometry, args.num_bf, num_df)
    if args.basis == "binning":
        return pc.binning_basis(geometry, bf_bin=args.num_bf, df_bin=args.num_df)
    if args.basis == "dp":
        return pc.diffraction_pattern_basis(
            data, geometry, args.num_bf, num_df, seed=args.seed, mode=args.mode
        )
    return pc.pca_basis(data, geometry, args.num_bf, num_df, seed=args.seed, mode=args.mode)


def _compress(args) -> int:
    import py4dstem_compressed as pc
    from py4dstem_compressed.compress import chunk_frames
    from py4dstem_compressed.sources import open_source

    output = Path(args.output)
    if output.exists() and not args.overwrite:
        raise FileExistsError(f"{output} exists; pass --overwrite to replace it")
    if args.num_bf < 1:
        raise ValueError(f"--num-bf must be a positive integer, got {args.num_bf}")
    if args.num_df is not None and args.num_df < 0:
        raise ValueError(f"--num-df must be >= 0, got {args.num_df}")
    memory_limit = None if args.memory_mib is None else int(args.memory_mib * 2**20)
    source = open_source(args.input, args.datapath)
    try:
        batch = chunk_frames(source, None, memory_limit)  # fails early if it cannot fit
        basis = _build_basis(args, source.data)
    finally:
        source.close()
    compressed = pc.compress(
        args.input,
        basis,
        mode=args.mode,
        max_batch_size=batch,
        datapath=args.datapath,
        progress_bar=not args.quiet,
        client=False,
    )
    compressed.save(output, overwrite=args.overwrite, float16=args.float16)
    print(f"{output}: {compressed.describe()}")
    print(f"bytes on disk: {output.stat().st_size:,}")
    return 0


def _info(args) -> int:
    import h5py

    import py4dstem_compressed as pc

    path = Path(args.file)
    compressed = pc.read_compressed(path)
    rx, ry = compressed.scan_shape
    print(f"{path}: {compressed.describe()}")
    print(f"basis: {compressed.basis.describe()}")
    print(f"patterns: {compressed.num_complete} of {rx * ry} complete")
    print(
        f"compression ratio: {compressed.compression_ratio:.1f} (paper, Eq. 17), "
        f"{compressed.stored_compression_ratio:.1f} (all stored values)"
    )
    size = path.stat().st_size
    raw = rx * ry * int(np.prod(compressed.detector_shape)) * 4
    print(f"bytes on disk: {size:,} (float32 raw data: {raw:,}; {raw / size:.0f}x smaller)")
    with h5py.File(path, "r") as f:
        rows = []

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and name.endswith("/data") and obj.ndim >= 2:
                rows.append((name.split("/")[-2], obj))

        f.visititems(visit)
        for name, dset in rows:
            filt = _filter_names(dset)
            print(
                f"  {name}: {dset.shape} {dset.dtype}, {dset.id.get_storage_size():,} bytes, "
                f"chunks {dset.chunks}, filter {filt}"
            )
    if compressed.num_complete:
        angles = pc.basis_angles(compressed)
        print(
            f"mean basis angles: BF {np.degrees(np.nanmean(angles.bf)):.2f} deg, "
            f"DF {np.degrees(np.nanmean(angles.df)):.2f} deg"
        )
    return 0


#: HDF5 filter ids registered by hdf5plugin that the storage options use
_FILTER_NAMES = {32001: "blosc", 32015: "zstd", 32004: "lz4", 307: "bzip2"}


def _filter_names(dataset) -> str:
    """Filters of an HDF5 dataset by name (``"blosc"``, ``"gzip"``, ...), or ``"none"``."""
    plist = dataset.id.get_create_plist()
    names = []
    for i in range(plist.get_nfilters()):
        code, _flags, values, name = plist.get_filter(i)
        label = _FILTER_NAMES.get(code) or name.decode(errors="replace").split()[0] or str(code)
        if code == 32001 and len(values) > 6:  # blosc: values[6] is the compressor code
            label += "/" + {0: "blosclz", 1: "lz4", 2: "lz4hc", 4: "zlib", 5: "zstd"}.get(
                int(values[6]), str(values[6])
            )
        names.append(label)
    return "+".join(names) or "none"


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

    comp = sub.add_parser(
        "compress", help="compress a 4D-STEM file (.npy, py4DSTEM .h5/.emd, .zarr)"
    )
    comp.add_argument("input", help="4D data file")
    comp.add_argument("-o", "--output", required=True, help="compressed EMD file (.h5)")
    comp.add_argument("--basis", required=True, choices=BASES)
    comp.add_argument(
        "--num-bf", type=int, required=True, help="BF masks (binning: BF bin width [px])"
    )
    comp.add_argument(
        "--num-df", type=int, default=None, help="DF masks (binning: DF bin width; default 1 mask)"
    )
    comp.add_argument("--mode", default="amplitude", choices=["amplitude", "intensity"])
    comp.add_argument("--seed", type=int, default=0, help="sampling seed (dp, pca, geometry)")
    comp.add_argument("--df-radius", type=float, default=None, help="outer DF radius [px]")
    comp.add_argument("--datapath", default=None, help="dataset inside an HDF5/zarr file")
    comp.add_argument("--memory-mib", type=float, default=None, help="frame memory per chunk")
    comp.add_argument("--float16", action="store_true", help="store coefficients as float16")
    comp.add_argument("--overwrite", action="store_true", help="replace an existing output")
    comp.add_argument("--quiet", action="store_true", help="no progress bar")
    comp.set_defaults(func=_compress)

    info = sub.add_parser("info", help="describe a compressed EMD file")
    info.add_argument("file")
    info.set_defaults(func=_info)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError, ImportError, MemoryError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
