"""Rate-distortion study: reconstruction quality against the number of masks per basis family.

Sweeps the number of BF masks of each family (and 1 against several DF masks) on the
multislice dataset, noiseless and with Poisson noise at two doses, reconstructs each
compressed variant and the uncompressed data for the same number of iterations, and writes
a table (Markdown and JSON) and a figure.

    python benchmarks/rate_distortion.py --preset tiny --output benchmarks/results/rate_distortion

Runs ~6-10 min with ``--preset tiny`` on 2 cores; ``--preset small`` is the benchmark
scale (hours).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from harness import PeakMemory, Stopwatch
from tqdm.auto import tqdm

import py4dstem_compressed as pc
from py4dstem_compressed.analysis.evaluation import run_ptychography
from py4dstem_compressed.demo import build_basis
from py4dstem_compressed.simulation import datasets

BF_COUNTS = (2, 4, 8, 15, 25, 36, 45)


def sweep(geometry) -> list[tuple[str, int, dict]]:
    """``(family, K_bf, spec)`` for every variant of the study."""
    jobs = []
    for family in ("zernike", "diffraction_pattern", "pca"):
        jobs += [(family, k, {"family": family, "num_bf": k}) for k in BF_COUNTS]
    seen = set()
    for width in range(int(np.ceil(2 * geometry.bf_radius)), 0, -1):
        k = pc.binning_basis(geometry, width).num_bf
        if k <= max(BF_COUNTS) and k not in seen:
            seen.add(k)
            jobs.append(("binning", k, {"family": "binning", "bf_bin": width}))
    # one against several DF masks at the paper's BF counts
    jobs.append(
        (
            "zernike, 22 DF (m=0)",
            36,
            {"family": "zernike", "num_bf": 36, "num_df": 22, "df_rotationally_symmetric": True},
        )
    )
    jobs.append(
        (
            "diffraction_pattern, 6 DF",
            15,
            {"family": "diffraction_pattern", "num_bf": 15, "num_df": 6},
        )
    )
    return jobs


def run(preset: str, kind: str, doses: list[float | None], num_iter: int, mode: str) -> list:
    rows = []
    for dose in doses:
        data = datasets.simulate(preset=preset, kind=kind, dose_per_area=dose, progress_bar=False)
        geometry = pc.DetectorGeometry.from_datacube(data.datacube)
        plain = run_ptychography(data.datacube, data, num_iter, memory_probe=PeakMemory)
        reference = plain.scores
        label = "noiseless" if dose is None else f"{dose:g} e/A^2"
        rows.append(
            {
                "dose": label,
                "family": "uncompressed",
                "num_bf": None,
                "num_df": None,
                "compression_ratio": 1.0,
                **plain.summary(),
                "relative_ncc": 1.0,
                "relative_ncc_band": 1.0,
            }
        )
        for family, k, spec in tqdm(sweep(geometry), desc=label):
            row = {"dose": label, "family": family, "num_bf": k}
            try:
                basis = build_basis(spec, data.datacube, geometry, mode)
            except ValueError as err:
                rows.append({**row, "error": str(err)})
                continue
            compressed = pc.compress(data.datacube, basis, mode=mode, progress_bar=False)
            result = run_ptychography(compressed, data, num_iter, memory_probe=PeakMemory)
            scores = result.summary()
            rows.append(
                {
                    **row,
                    "num_df": basis.num_df,
                    "compression_ratio": compressed.compression_ratio,
                    "mean_bf_angle_deg": float(np.degrees(pc.basis_angles(compressed).mean_bf)),
                    **scores,
                    "relative_ncc": scores["ncc"] / reference["ncc"],
                    "relative_ncc_band": scores["ncc_band"] / reference["ncc_band"],
                }
            )
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| dose | family | K_bf | K_df | ratio | BF angle [deg] | NCC | rel. NCC | band NCC |"
        " rel. band | FSC@Bragg | s/iter |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(
                f"| {r['dose']} | {r['family']} | {r['num_bf']} | | | | skipped: "
                f"{r['error'][:60]} | | | | | |"
            )
            continue
        angle = r.get("mean_bf_angle_deg")
        lines.append(
            f"| {r['dose']} | {r['family']} | {r['num_bf'] or ''} | {r['num_df'] or ''} | "
            f"{r['compression_ratio']:.0f} | {'' if angle is None else f'{angle:.2f}'} | "
            f"{r['ncc']:.3f} | {r['relative_ncc']:.3f} | {r['ncc_band']:.3f} | "
            f"{r['relative_ncc_band']:.3f} | {r['fsc_bragg_mean']:.3f} | "
            f"{r['seconds_per_iteration']:.2f} |"
        )
    return "\n".join(lines)


def figure(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    doses = list(dict.fromkeys(r["dose"] for r in rows))
    fig, axes = plt.subplots(2, len(doses), figsize=(4.2 * len(doses), 6.5), squeeze=False)
    for col, dose in enumerate(doses):
        subset = [r for r in rows if r["dose"] == dose and "error" not in r]
        for family in ("zernike", "binning", "diffraction_pattern", "pca"):
            pts = sorted(
                (r["num_bf"], r["relative_ncc"], r["relative_ncc_band"])
                for r in subset
                if r["family"] == family
            )
            if pts:
                k, ncc, band = zip(*pts)
                axes[0, col].plot(k, ncc, "o-", ms=3, label=family)
                axes[1, col].plot(k, band, "o-", ms=3, label=family)
        for row, what in enumerate(("images", "band-passed 0.35-1.2 Å")):
            ax = axes[row, col]
            ax.axhline(1.0, color="0.5", lw=0.8)
            ax.set_xlabel("number of BF masks (1 DF mask)")
            ax.set_ylabel(f"NCC / uncompressed ({what})")
            ax.set_title(dose, fontsize=9)
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--kind", default="crystal", choices=["crystal", "2d"])
    parser.add_argument(
        "--doses", default="none,2e4,5e3", help="comma-separated doses [e/A^2]; 'none' = noiseless"
    )
    parser.add_argument("--num-iter", type=int, default=30)
    parser.add_argument("--mode", default="amplitude", choices=["amplitude", "intensity"])
    parser.add_argument("--output", default="benchmarks/results/rate_distortion")
    args = parser.parse_args()
    doses = [None if d.strip().lower() == "none" else float(d) for d in args.doses.split(",")]
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    watch = Stopwatch()
    rows = run(args.preset, args.kind, doses, args.num_iter, args.mode)
    table = markdown(rows)
    (out / "rate_distortion.md").write_text(table + "\n")
    (out / "rate_distortion.json").write_text(json.dumps(rows, indent=2))
    figure(rows, out / "rate_distortion.png")
    print(table)
    print(f"\n{watch.lap():.0f} s; wrote {out}/rate_distortion.{{md,json,png}}")


if __name__ == "__main__":
    main()
