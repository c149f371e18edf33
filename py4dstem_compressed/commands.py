"""Commands of the ``py4dstem-compressed`` command line: ``demo``, ``compress``, ``info``,
``suggest``.

Argument parsing lives in the top-level module :mod:`py4dstem_compressed_cli` (so that
``--help`` does not import py4DSTEM); it calls the command of this module named on the
command line with the parsed arguments.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["compress", "demo", "info", "suggest"]


def demo(args) -> int:
    """``py4dstem-compressed demo``: simulate, compress, reconstruct and compare; returns 0."""
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


def _is_basis_file(name: str) -> bool:
    return name.lower().endswith((".h5", ".hdf5", ".emd"))


def _read_basis(path: str, data):
    """A basis saved by ``suggest --output`` (or ``pc.save``), checked against the data."""
    import py4DSTEM

    import py4dstem_compressed as pc

    basis = py4DSTEM.read(path)
    if not isinstance(basis, pc.Basis):
        raise ValueError(
            f"--basis {path} holds a {type(basis).__name__}, not a basis; write one with "
            "`py4dstem-compressed suggest DATA --output basis.h5`"
        )
    basis.check_detector(data.shape[2:], what="the data")
    return basis


def _build_basis(args, data):
    import py4dstem_compressed as pc
    from py4dstem_compressed.bases.registry import basis_family, build_basis

    if _is_basis_file(args.basis):
        return _read_basis(args.basis, data)

    geometry = pc.DetectorGeometry.from_datacube(data, df_radius=args.df_radius, seed=args.seed)
    num_df = 1 if args.num_df is None else args.num_df
    family = basis_family(args.basis)
    if family.name == "binning":
        return build_basis("binning", geometry, bf_bin=args.bin_px, df_bin=args.df_bin_px)
    if not family.needs_data:
        return build_basis(family.name, geometry, num_bf=args.num_bf, num_df=num_df)
    return build_basis(
        family.name,
        geometry,
        data,
        num_bf=args.num_bf,
        num_df=num_df,
        seed=args.seed,
        mode=args.mode,
    )


def compress(args) -> int:
    """``py4dstem-compressed compress``: compress a 4D-STEM file onto a new basis; returns 0."""
    import py4dstem_compressed as pc
    from py4dstem_compressed.compression.compress import chunk_frames
    from py4dstem_compressed.core.sources import open_source

    output = Path(args.output)
    _check_compress_arguments(args, output)
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
        intensity_per_count=args.intensity_per_count,
    )
    compressed.save(output, overwrite=args.overwrite, float16=args.float16)
    print(f"{output}: {compressed.describe()}")
    print(f"bytes on disk: {output.stat().st_size:,}")
    return 0


def _check_compress_arguments(args, output: Path) -> None:
    """Refuse bad ``compress`` options before any work (ValueError / OSError)."""
    if output.is_dir():
        raise IsADirectoryError(
            f"-o/--output {str(output)!r} is a directory; give a file name, e.g. "
            f"{str(output / 'scan_compressed.h5')!r}"
        )
    if not output.parent.is_dir():
        raise FileNotFoundError(
            f"-o/--output: no folder {str(output.parent)!r} to write {output.name!r} into; "
            "create it first"
        )
    if output.exists() and not args.overwrite:
        raise FileExistsError(f"{output} exists; pass --overwrite to replace it")
    if _is_basis_file(args.basis):
        if not Path(args.basis).is_file():
            raise FileNotFoundError(f"--basis: no basis file {args.basis!r}")
        given = [args.num_bf, args.num_df, args.bin_px, args.df_bin_px]
        if any(v is not None for v in given):
            raise ValueError(
                "--num-bf/--num-df/--bin-px/--df-bin-px build a new basis; a basis file "
                "already has its masks: leave them out"
            )
    elif args.basis == "binning":
        if args.num_bf is not None or args.num_df is not None:
            raise ValueError(
                "--num-bf/--num-df count masks; binning takes bin widths: use --bin-px "
                "(and --df-bin-px) instead"
            )
        if args.bin_px is None or args.bin_px < 1:
            raise ValueError(f"--basis binning needs --bin-px >= 1 [px], got {args.bin_px}")
        if args.df_bin_px is not None and args.df_bin_px < 1:
            raise ValueError(f"--df-bin-px must be >= 1 [px], got {args.df_bin_px}")
    else:
        if args.bin_px is not None or args.df_bin_px is not None:
            raise ValueError(
                f"--bin-px/--df-bin-px apply to --basis binning only (got --basis {args.basis})"
            )
        if args.num_bf is None or args.num_bf < 1:
            raise ValueError(f"--num-bf must be a positive integer, got {args.num_bf}")
        if args.num_df is not None and args.num_df < 0:
            raise ValueError(f"--num-df must be >= 0, got {args.num_df}")
    if args.memory_mib is not None and not args.memory_mib > 0:
        raise ValueError(f"--memory-mib must be > 0 [MiB], got {args.memory_mib}")


def suggest(args) -> int:
    """``py4dstem-compressed suggest``: print (and save) the basis chosen from the data."""
    import py4dstem_compressed as pc
    from py4dstem_compressed.core.sources import open_source

    output = None if args.output is None else Path(args.output)
    if output is not None and output.exists() and not args.overwrite:
        raise FileExistsError(f"{output} exists; pass --overwrite to replace it")
    options = dict(
        max_values_per_pattern=args.max_values,
        seed=args.seed,
        mode=args.mode,
        progress_bar=not args.quiet,
    )
    path = Path(args.input)
    sample = np.load(path, mmap_mode="r") if path.suffix == ".npy" and path.is_file() else None
    if sample is not None and sample.ndim == 3:  # a (N, Qx, Qy) pre-scan sample
        basis = pc.suggest_basis(np.asarray(sample), **options)
    else:
        source = open_source(args.input, args.datapath)
        try:
            basis = pc.suggest_basis(source.data, **options)
        finally:
            source.close()
    print(basis.describe())
    if output is not None:
        pc.save(output, basis, overwrite=args.overwrite)
        print(f"saved to {output}: `py4dstem-compressed compress DATA --basis {output}` uses it")
    return 0


def info(args) -> int:
    """``py4dstem-compressed info``: print what a compressed file holds; returns 0."""
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
    with h5py.File(path, "r") as f:
        rows = []
        stored = {"basis": 0, "data": 0}

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                if "/basis/" in f"/{name}":
                    stored["basis"] += obj.id.get_storage_size()
                elif name.endswith("/data"):
                    stored["data"] += obj.id.get_storage_size()
                if name.endswith("/data") and obj.ndim >= 2:
                    rows.append((name.split("/")[-2], obj))

        f.visititems(visit)
        print(f"bytes on disk: {size:,} (float32 raw data: {raw:,}; {raw / size:.0f}x smaller)")
        print(
            f"  per-pattern values {stored['data']:,} bytes "
            f"({raw / max(stored['data'], 1):.0f}x smaller than the raw data), basis (masks) "
            f"{stored['basis']:,} bytes, HDF5 structure and metadata "
            f"{size - stored['data'] - stored['basis']:,} bytes"
        )
        print(
            "  the compression ratio counts per-pattern values only; the file also holds the "
            "basis (one mask per coefficient, detector-sized) and the HDF5 overhead, a fixed "
            "cost that a larger scan spreads over more patterns"
        )
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
