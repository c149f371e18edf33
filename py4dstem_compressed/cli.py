"""Command line: ``py4dstem-compressed demo | info``.

``demo`` simulates a small dataset (abTEM, cached) or generates one with the
built-in NumPy forward model, compresses it with each basis family and prints
a table of K, compression ratios and mean basis angles.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

__all__ = ["basis_survey", "default_variants", "main"]


def default_variants(geometry) -> list[tuple[str, dict]]:
    """The basis variants the demo compares: ``(label, spec)`` pairs.

    The binning width is chosen so the BF disk holds about 45 bins, as the
    paper's 7 px bins did on its detector.
    """
    bin_px = max(1, round(geometry.bf_radius * np.sqrt(np.pi / 45)))
    return [
        ("zernike 36+1", {"family": "zernike", "num_bf": 36, "num_df": 1}),
        (
            "zernike 45+22 (m=0 DF)",
            {"family": "zernike", "num_bf": 45, "num_df": 22, "df_rotationally_symmetric": True},
        ),
        (f"binning {bin_px} px+1", {"family": "binning", "bf_bin": bin_px}),
        ("diffraction-pattern 15+1", {"family": "diffraction_pattern", "num_bf": 15}),
        ("diffraction-pattern 8+1", {"family": "diffraction_pattern", "num_bf": 8}),
        ("PCA 15+1", {"family": "pca", "num_bf": 15}),
    ]


def build_basis(spec: dict, datacube, geometry, mode: str = "amplitude", seed: int = 0):
    """Build a basis from a variant spec (see :func:`default_variants`)."""
    import py4dstem_compressed as pc

    spec = dict(spec)
    family = spec.pop("family")
    if family == "zernike":
        return pc.zernike_basis(geometry, **spec)
    if family == "binning":
        return pc.binning_basis(geometry, **spec)
    if family == "diffraction_pattern":
        return pc.diffraction_pattern_basis(datacube, geometry, seed=seed, mode=mode, **spec)
    if family == "pca":
        return pc.pca_basis(datacube, geometry, seed=seed, mode=mode, **spec)
    raise ValueError(f"unknown basis family {family!r}")


def basis_survey(datacube, geometry=None, mode: str = "amplitude", progress_bar: bool = False):
    """Compress ``datacube`` with each default variant; one row of figures per variant."""
    import py4dstem_compressed as pc

    geometry = geometry or pc.DetectorGeometry.from_datacube(datacube)
    rows = []
    for label, spec in default_variants(geometry):
        try:
            basis = build_basis(spec, datacube, geometry, mode)
        except ValueError as err:
            rows.append({"variant": label, "error": str(err)})
            continue
        compressed = pc.compress(datacube, basis, mode=mode, progress_bar=progress_bar)
        angles = pc.basis_angles(compressed)
        rows.append(
            {
                "variant": label,
                "num_bf": basis.num_bf,
                "num_df": basis.num_df,
                "compression_ratio": compressed.compression_ratio,
                "stored_compression_ratio": compressed.stored_compression_ratio,
                "mean_bf_angle_deg": float(np.degrees(angles.mean_bf)),
                "mean_df_angle_deg": float(np.degrees(angles.mean_df)),
            }
        )
    return rows


def format_table(rows: list[dict]) -> str:
    """Render survey rows as a fixed-width text table."""
    header = (
        f"{'variant':<26}{'K_bf':>5}{'K_df':>5}{'ratio':>9}{'stored':>9}{'BF deg':>9}{'DF deg':>9}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['variant']:<26}  skipped: {r['error']}")
            continue
        lines.append(
            f"{r['variant']:<26}{r['num_bf']:>5}{r['num_df']:>5}{r['compression_ratio']:>9.1f}"
            f"{r['stored_compression_ratio']:>9.1f}{r['mean_bf_angle_deg']:>9.2f}"
            f"{r['mean_df_angle_deg']:>9.2f}"
        )
    return "\n".join(lines)


def _load_demo_data(args):
    if args.source == "synthetic":
        from py4dstem_compressed.synthetic import synthetic_datacube

        scan = synthetic_datacube(scan_shape=(16, 16), detector_size=64, sampling=0.2)
        return scan.datacube, "built-in NumPy forward model (16x16 positions, 64x64 px)"
    from py4dstem_compressed import datasets

    dataset = datasets.simulate(preset=args.preset, kind=args.kind, progress_bar=True)
    return dataset.datacube, f"abTEM '{args.preset}' preset, {args.kind}"


def _demo(args) -> int:
    import py4dstem_compressed as pc

    datacube, what = _load_demo_data(args)
    print(f"Data: {what}; shape {tuple(datacube.data.shape)}")
    geometry = pc.DetectorGeometry.from_datacube(datacube)
    print(
        f"Bright-field disk: centre ({geometry.center[0]:.2f}, {geometry.center[1]:.2f}) px, "
        f"radius {geometry.bf_radius:.2f} px"
    )
    rows = basis_survey(datacube, geometry, mode=args.mode)
    print(format_table(rows))
    if args.output:
        import json

        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        (out / "basis_survey.json").write_text(json.dumps(rows, indent=2))
        import matplotlib

        matplotlib.use("Agg")
        curves = pc.angle_curves(datacube, geometry, mode=args.mode, progress_bar=True)
        fig, _ = curves.show()
        fig.savefig(out / "angle_curves.png", dpi=120)
        print(f"Wrote {out / 'basis_survey.json'} and {out / 'angle_curves.png'}")
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
    demo = sub.add_parser("demo", help="compress a small simulated dataset with every basis")
    demo.add_argument("--preset", default="tiny", help="abTEM dataset preset (default: tiny)")
    demo.add_argument("--kind", default="crystal", choices=["crystal", "2d"])
    demo.add_argument("--source", default="abtem", choices=["abtem", "synthetic"])
    demo.add_argument("--mode", default="amplitude", choices=["amplitude", "intensity"])
    demo.add_argument("--output", default=None, help="folder for JSON and figures")
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
