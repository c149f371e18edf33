"""Do data-derived DF masks hold the noise of the patterns they measure? (one table per call)

A data-derived mask is built from sampled patterns; on a scan no larger than the sample
(the `tiny` and `small` presets: 256 and 576 positions, 320 sampled) almost every pattern's
shot noise takes part in the masks that then measure it. Its coefficients then scatter
about their noise-free expectation by more than the Poisson variance of an independent
pattern: the data step, which weighs each coefficient by that variance, follows the noise.

For each number of DF masks this prints, over every pattern and mask, the mean of
``(c - E c)^2 / Var c`` (``c = M sqrt(counts)``; expectation and variance from the noise-free
rates, :mod:`~py4dstem_compressed.reconstruction.shot_noise_model`) for the recorded counts
("own") and for an independent Poisson draw of the same rates ("fresh", 1 by construction),
and the share of the noise-free DF amplitude's variation over the scan that the masks
capture. Constructions: the package's diffraction-pattern and PCA masks, and 0.2's
diffraction-pattern masks (denoised on at least as many components as masks, i.e. on
noise components beyond the sample's signal rank).

    python benchmarks/df_mask_leverage.py --preset tiny --dose 2e4

Results: ``benchmarks/results/df_mask_leverage_<preset>_<kind>.json``.
"""

from __future__ import annotations

import argparse
import json
from itertools import islice
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def masks_of_0_2(data, geometry, num_df: int) -> np.ndarray:
    """0.2's diffraction-pattern DF masks: Gram-Schmidt of patterns denoised on
    ``max(signal rank, num_df)`` components (no smoothed patterns)."""
    from py4dstem_compressed.bases.data_derived import DF_DENOISE_SAMPLES
    from py4dstem_compressed.bases.denoise import fit_intensity_subspace
    from py4dstem_compressed.bases.sampling import (
        gram_schmidt_of_vectors,
        in_mode,
        position_stream,
        region_intensities,
    )

    scan = tuple(data.shape[:2])
    region = geometry.df
    sample = list(islice(position_stream(scan, 0, None), DF_DENOISE_SAMPLES))
    intensities = region_intensities(data, sample, region, None)
    subspace = fit_intensity_subspace(intensities)
    rank = max(subspace.signal_rank, num_df, 1)
    read = dict(zip(sample, intensities))

    def vector(position):
        i = read.get(position)
        if i is None:
            i = np.clip(np.asarray(data[position], dtype=np.float64), 0, None)[region]
        return in_mode(subspace.denoise(i, rank), "amplitude")

    masks, _ = gram_schmidt_of_vectors(
        region, num_df, position_stream(scan, 0, None), vector, "dark-field"
    )
    return masks


def noise_ratio(masks, counts, rate) -> float:
    """Mean ``(c - E c)^2 / Var c`` over patterns and masks."""
    from py4dstem_compressed.reconstruction.shot_noise_model import sqrt_poisson_ratio

    phi = sqrt_poisson_ratio(rate) * np.sqrt(rate)
    variance = np.maximum(rate - phi**2, 0) @ (masks**2).T
    return float(np.mean((np.sqrt(counts) @ masks.T - phi @ masks.T) ** 2 / variance))


def captured_variation(masks, rate) -> float:
    """Share of the noise-free DF amplitude's variation over the scan inside the span."""
    amplitude = np.sqrt(rate)
    variation = amplitude - amplitude.mean(axis=0)
    return float(((variation @ masks.T) ** 2).sum() / (variation**2).sum())


def run(preset: str, kind: str, dose: float, counts_of_df: list[int]) -> list[dict]:
    import py4dstem_compressed as pc
    from py4dstem_compressed.bases.denoise import fit_intensity_subspace
    from py4dstem_compressed.simulation.datasets import simulate

    noisy = simulate(preset=preset, kind=kind, dose_per_area=dose, progress_bar=False)
    clean = simulate(preset=preset, kind=kind, dose_per_area=None, progress_bar=False)
    geometry = pc.DetectorGeometry.from_datacube(noisy.datacube)
    data = np.asarray(noisy.datacube.data)
    positions = data.shape[0] * data.shape[1]
    df = geometry.df.ravel()
    rate = clean.datacube.data.reshape(positions, -1)[:, df].astype(np.float64)
    rate *= noisy.parameters["electrons_per_pattern"]
    counts = data.reshape(positions, -1)[:, df].astype(np.float64)
    fresh = np.random.default_rng(12345).poisson(rate).astype(np.float64)
    signal_rank = fit_intensity_subspace(counts[:320]).signal_rank
    rows = []
    for num_df in counts_of_df:
        built = {
            "diffraction-pattern": pc.diffraction_pattern_basis(
                data, geometry, 1, num_df, seed=0
            ).df_masks,
            "PCA": pc.pca_basis(data, geometry, 1, num_df, seed=0).df_masks,
            "diffraction-pattern of 0.2": masks_of_0_2(data, geometry, num_df),
        }
        for name, masks in built.items():
            m = masks.reshape(num_df, -1)[:, df].astype(np.float64)
            row = {
                "preset": preset,
                "kind": kind,
                "dose": dose,
                "signal_rank": signal_rank,
                "masks": name,
                "num_df": num_df,
                "own": noise_ratio(m, counts, rate),
                "fresh": noise_ratio(m, fresh, rate),
                "captured_variation": captured_variation(m, rate),
            }
            rows.append(row)
            print(
                f"{name:28s} N={num_df:2d}  own {row['own']:5.2f}  fresh {row['fresh']:4.2f}  "
                f"variation captured {row['captured_variation']:.3f}",
                flush=True,
            )
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--kind", default="2d")
    parser.add_argument("--dose", type=float, default=2e4, help="e/A^2")
    parser.add_argument("--num-df", type=int, nargs="+", default=[2, 4, 8, 16, 32])
    parser.add_argument("--output", help="results JSON (default: results/df_mask_leverage_...)")
    args = parser.parse_args(argv)
    rows = run(args.preset, args.kind, args.dose, args.num_df)
    out = Path(args.output or RESULTS / f"df_mask_leverage_{args.preset}_{args.kind}.json")
    partial = out.with_name(out.name + ".part")
    partial.write_text(json.dumps(rows, indent=1) + "\n")
    partial.replace(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
