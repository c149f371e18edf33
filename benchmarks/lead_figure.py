"""The README's first picture: benchmark-scale phase maps, truth vs. uncompressed vs. compressed.

Draws ``docs/benchmark_phase_maps.png`` from the stored results of
``benchmarks/reconstruction_quality.py --save-images`` (no reconstruction is run here): the
ground-truth projected potential [V A], the plain py4DSTEM reconstruction and each compressed
one (summed object phase [rad], one shared colour scale), with compression ratio and scores in
the titles and the vacancies circled. Also prints the README markdown (image and caption).

Usage::

    python benchmarks/reconstruction_quality.py --kinds crystal --doses inf \\
        --bases zernike36 dp15 \\
        --output benchmarks/results/reconstruction_quality_small_images.json \\
        --save-images benchmarks/results/reconstruction_quality_small_images.npz
    python benchmarks/lead_figure.py
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "reconstruction_quality_small_images.json"
IMAGES = HERE / "results" / "reconstruction_quality_small_images.npz"
OUTPUT = HERE.parent / "docs" / "benchmark_phase_maps.png"

#: benchmark basis name -> label in the figure
LABELS = {
    "uncompressed": "uncompressed",
    "zernike36": "Zernike 36+1",
    "binning7": "binning 7 px",
    "dp15": "diffraction-pattern 15+1",
    "dp8": "diffraction-pattern 8+1",
    "pca15": "PCA 15+1",
    "dp15-intensity": "diffraction-pattern 15+1 (intensity)",
}


def select_rows(rows: list[dict], kind: str, dose: float | None, bases: list[str]) -> list[dict]:
    """The rows of one condition with stored images, in the order of ``bases``.

    Raises
    ------
    ValueError
        If a requested basis has no successful run with images for that condition.
    """
    found = {}
    for row in rows:
        if row.get("kind") == kind and row.get("dose") == dose and "images_key" in row:
            found[row["basis"]] = row
    missing = [b for b in bases if b not in found]
    if missing:
        raise ValueError(
            f"no stored images for basis {missing} at kind={kind!r}, dose={dose}; found "
            f"{sorted(found)}: run benchmarks/reconstruction_quality.py with --save-images "
            "for that condition first"
        )
    return [found[b] for b in bases]


def panel_title(row: dict) -> tuple[str, str]:
    """``(label, subtitle)``: name and ratio; NCC (relative to plain) and FSC at Bragg peaks."""
    label = LABELS.get(row["basis"], row["basis"])
    if row["basis"] != "uncompressed":
        label += f", ratio {row['compression_ratio']:.0f}"
    subtitle = f"NCC {row['ncc']:.3f}"
    if "ncc_relative" in row:
        subtitle += f" ({row['ncc_relative']:.3f} of plain)"
    subtitle += f"\nFSC at Bragg peaks {row['fsc_bragg_mean']:.3f}"
    return label, subtitle


def describe_condition(row: dict) -> str:
    """One line naming the dataset: preset, specimen, scan, detector, dose and iterations."""
    from py4dstem_compressed.simulation.presets import get_preset

    preset = get_preset(row["preset"])
    specimen = {
        "crystal": f"SrTiO3 [001] {preset.thickness / 10:.1f} nm",
        "2d": "MoS2 monolayer",
    }.get(row["kind"], row["kind"])
    dose = "noise-free" if row["dose"] is None else f"{row['dose']:g} e/Å²"
    scan = "x".join(str(n) for n in preset.scan_gpts)
    detector = f"{preset.detector_gpts}x{preset.detector_gpts}"
    return (
        f"abTEM '{row['preset']}': {specimen}, {scan} positions, {detector} px, {dose}, "
        f"{row['iterations']} iterations"
    )


def draw(rows: list[dict], images, fontsize: float = 10):
    """The figure for the selected ``rows`` (first one: the plain run) and stored ``images``."""
    import matplotlib

    matplotlib.use("Agg")
    from py4dstem_compressed.analysis.plotting import show_reconstruction_comparison

    reference = rows[0]["images_key"]
    truth = images[f"{reference}/truth"].astype(np.float32)
    sampling = float(images[f"{reference}/sampling"][0])
    panels = {}
    for row in rows:
        key = row["images_key"]
        image = images[f"{key}/reconstruction"].astype(np.float32)
        if image.shape != truth.shape:
            raise ValueError(
                f"the stored images of {row['basis']!r} have shape {image.shape}, the ground "
                f"truth {truth.shape}: they come from different benchmark runs"
            )
        label, subtitle = panel_title(row)
        panels[label] = (image, subtitle)
    fig, axes = show_reconstruction_comparison(
        panels,
        truth,
        ncols=2,
        sampling=sampling,
        markers=images[f"{reference}/vacancies_px"],
        panel_size=3.6,
        fontsize=fontsize,
        percentiles=(0, 100),  # unclipped column peaks: a vacancy is a dimmer column
    )
    note = fig._suptitle.get_text()
    fig.suptitle(f"{describe_condition(rows[0])}\n{note}", fontsize=fontsize)
    return fig, axes


def vacancy_note(row: dict) -> str:
    """What a circled column is, e.g. "cation vacancies (one of the column's 5 atoms gone)"."""
    from py4dstem_compressed.simulation.datasets import SRTIO3_LATTICE_CONSTANT
    from py4dstem_compressed.simulation.presets import get_preset

    if row["kind"] != "crystal":
        return "S vacancies (one of the column's 2 S atoms gone)"
    cells = max(1, round(get_preset(row["preset"]).thickness / SRTIO3_LATTICE_CONSTANT))
    return f"cation vacancies (one of the column's {cells} atoms gone)"


def readme_markdown(rows: list[dict], image_path: str) -> str:
    """Image line and a caption for the README."""
    plain = rows[0]
    parts = [
        f"{LABELS.get(r['basis'], r['basis'])} (ratio {r['compression_ratio']:.0f}): "
        f"NCC {r['ncc']:.3f}"
        for r in rows[1:]
    ]
    alt = "Benchmark-scale phase maps: ground truth, uncompressed and compressed"
    return (
        f"![{alt}]({image_path})\n\n"
        f"*{describe_condition(plain)}. Uncompressed py4DSTEM: NCC {plain['ncc']:.3f} with "
        "the ground truth; "
        + "; ".join(parts)
        + f". Dashed circles: {vacancy_note(plain)}. Drawn by `benchmarks/lead_figure.py` "
        "from stored benchmark results.*"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(RESULTS), help="benchmark JSON rows")
    parser.add_argument("--images", default=str(IMAGES), help="the --save-images .npz")
    parser.add_argument("-o", "--output", default=str(OUTPUT), help="PNG to write")
    parser.add_argument("--kind", default="crystal", choices=("crystal", "2d"))
    parser.add_argument("--dose", default="inf", help="e/A^2; inf = noise-free")
    parser.add_argument("--bases", nargs="+", default=["uncompressed", "zernike36", "dp15"])
    parser.add_argument("--dpi", type=int, default=110)
    args = parser.parse_args(argv)
    if args.bases[0] != "uncompressed":
        parser.error("--bases must start with 'uncompressed' (the reference panel)")
    dose = None if args.dose == "inf" else float(args.dose)
    rows = select_rows(json.loads(Path(args.results).read_text()), args.kind, dose, args.bases)
    with np.load(args.images) as images:
        fig, _ = draw(rows, images)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=args.dpi)
    print(f"Wrote {output}")
    try:
        shown = output.resolve().relative_to(HERE.parent)
    except ValueError:
        shown = output
    print(readme_markdown(rows, str(shown)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
