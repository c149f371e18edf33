"""The main job: simulate a small dataset, compress it with every basis family, report.

``py4dstem-compressed demo`` calls :func:`run_demo`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["basis_survey", "build_basis", "default_variants", "format_table", "run_demo"]


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


def _load_demo_data(source: str, preset: str, kind: str):
    if source == "synthetic":
        from py4dstem_compressed.synthetic import synthetic_datacube

        scan = synthetic_datacube(scan_shape=(16, 16), detector_size=64, sampling=0.2)
        return scan.datacube, "built-in NumPy forward model (16x16 positions, 64x64 px)"
    from py4dstem_compressed import datasets

    dataset = datasets.simulate(preset=preset, kind=kind, progress_bar=True)
    return dataset.datacube, f"abTEM '{preset}' preset, {kind}"


def run_demo(
    preset: str = "tiny",
    kind: str = "crystal",
    source: str = "abtem",
    mode: str = "amplitude",
    output: str | None = None,
) -> list[dict]:
    """Run the demo and print its table; write JSON and figures to ``output`` if given."""
    import py4dstem_compressed as pc

    datacube, what = _load_demo_data(source, preset, kind)
    print(f"Data: {what}; shape {tuple(datacube.data.shape)}")
    geometry = pc.DetectorGeometry.from_datacube(datacube)
    print(
        f"Bright-field disk: centre ({geometry.center[0]:.2f}, {geometry.center[1]:.2f}) px, "
        f"radius {geometry.bf_radius:.2f} px"
    )
    rows = basis_survey(datacube, geometry, mode=mode)
    print(format_table(rows))
    if output:
        import json

        out = Path(output)
        out.mkdir(parents=True, exist_ok=True)
        (out / "basis_survey.json").write_text(json.dumps(rows, indent=2))
        import matplotlib

        matplotlib.use("Agg")
        curves = pc.angle_curves(datacube, geometry, mode=mode, progress_bar=True)
        fig, _ = curves.show()
        fig.savefig(out / "angle_curves.png", dpi=120)
        print(f"Wrote {out / 'basis_survey.json'} and {out / 'angle_curves.png'}")
    return rows
