"""Oracle runs for the shot-noise model of the dark-field step: which part of it costs quality.

One process compresses one simulated scan with one basis, then reconstructs it 30 iterations
once per variant, each variant changing only what the data step is told about the shot noise
or one part of the step; it prints one JSON line per variant (scores, loss every 5
iterations) and writes them all to ``--output``. The README's section "Shot noise in the
dark-field step" (0.6) lists what it showed.

Variants:

* ``measured``: the intensity of one count as :func:`~py4dstem_compressed.compress` measures it;
* ``whole_regions``: as 0.5 measured it (each region's whole residual ratio, the smaller);
* ``whole_regions_x10``: ten times as many counts per pattern as ``whole_regions``;
* ``no_model``: the noise-free step (no counts given);
* ``whole_regions_no_shrinkage``: ``whole_regions`` without the per-coefficient shrinkage;
* ``whole_regions_full_projection``: ``whole_regions`` with the projection onto the stored
  values at full weight (no blend with the multiplicative step).

Usage::

    python benchmarks/noise_model_oracle.py --kind crystal --basis z10+pca8 \\
        --output benchmarks/results/noise_model_oracle_small_crystal.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from reconstruction_quality import _basis, _dataset

VARIANTS = (
    "measured",
    "whole_regions",
    "whole_regions_x10",
    "no_model",
    "whole_regions_no_shrinkage",
    "whole_regions_full_projection",
)


def whole_region_intensity_per_count(datacube, geometry, max_shift_px: float) -> float:
    """0.5's estimate: each region's whole residual energy per unit intensity, the smaller."""
    from scipy.ndimage import binary_erosion, convolve

    from py4dstem_compressed.compression.shot_noise import (
        INTERIOR_MARGIN_PX,
        NOISE_SAMPLES,
        local_fit_kernel,
        white_noise_residual,
    )
    from py4dstem_compressed.core.sources import sampled_frames

    frames = [f.astype(np.float64) for f in sampled_frames(datacube.data, NOISE_SAMPLES, 0)]
    frames = np.clip(np.stack(frames), 0.0, None)
    kernel = local_fit_kernel()
    residual = frames - convolve(frames, kernel[None], mode="nearest")
    margin = INTERIOR_MARGIN_PX + int(np.ceil(abs(max_shift_px)))
    ratios = []
    for region in (geometry.bf, geometry.df):
        inner = binary_erosion(np.asarray(region, bool), iterations=margin)
        energy = (residual[:, inner] ** 2).sum() / white_noise_residual(kernel)
        ratios.append(float(energy / frames[:, inner].sum()))
    return min(ratios)


def run(args) -> list[dict]:
    """Every variant of ``args.variants`` on one compressed scan."""
    import py4dstem_compressed as pc
    from py4dstem_compressed.analysis.evaluation import (
        KNOWN_ROTATION_PREPROCESS_KWARGS,
        score_reconstruction,
    )
    from py4dstem_compressed.reconstruction import region_matching

    data = _dataset(args, args.kind, args.dose, args.descan)
    kwargs = {**data.reconstruction_kwargs(), "object_type": "potential", "verbose": False}
    geometry = pc.DetectorGeometry.from_datacube(data.datacube)
    basis = _basis(args.basis, data.datacube, geometry)
    compressed = pc.compress(data.datacube, basis, mode="amplitude", progress_bar=False)
    whole = whole_region_intensity_per_count(data.datacube, geometry, args.descan)
    shrunk, trust = region_matching._shrunk, region_matching.evenly_spread_signal_fraction
    rows = []
    for variant in args.variants:
        ptycho = pc.CompressedMultislicePtychography(datacube=compressed, **kwargs)
        ptycho.preprocess(**KNOWN_ROTATION_PREPROCESS_KWARGS)
        unit = ptycho._intensity_unit  # counts per canonical unit = unit / intensity per count
        if variant.startswith("whole_regions"):
            ptycho._counts_per_intensity = unit / whole
        if variant == "whole_regions_x10":
            ptycho._counts_per_intensity *= 10.0
        if variant == "no_model":
            ptycho._counts_per_intensity = None
        if variant == "whole_regions_no_shrinkage":
            region_matching._shrunk = lambda residual, variance: residual
        if variant == "whole_regions_full_projection":
            region_matching.evenly_spread_signal_fraction = lambda e, p, c, d: np.ones(e.shape, d)
        start = time.perf_counter()
        try:
            ptycho.reconstruct(
                num_iter=args.iterations, max_batch_size=64, seed_random=0, progress_bar=False
            )
        finally:
            region_matching._shrunk = shrunk
            region_matching.evenly_spread_signal_fraction = trust
        scores = score_reconstruction(ptycho, data)
        errors = [float(e) for e in ptycho.error_iterations]
        counts = ptycho._counts_per_intensity
        row = {
            "kind": args.kind,
            "dose": args.dose,
            "descan": args.descan,
            "basis": args.basis,
            "variant": variant,
            "counts_per_pattern": None if counts is None else float(counts),
            "ncc": float(scores["ncc"]),
            "ncc_band": float(scores["ncc_band"]),
            "loss_every_5": errors[::5] + errors[-1:],
            "seconds": time.perf_counter() - start,
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--kind", default="crystal", choices=["2d", "crystal"])
    parser.add_argument("--dose", type=float, default=None, help="e/A^2; default noise-free")
    parser.add_argument("--descan", type=float, default=0.0, help="drift [px]")
    parser.add_argument("--basis", default="z10+pca8")
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--output", default="noise_model_oracle.json")
    args = parser.parse_args()
    rows = run(args)
    Path(args.output).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
