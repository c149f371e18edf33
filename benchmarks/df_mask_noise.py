"""Do data-derived DF masks built from a noisy scan capture the noise-free DF signal?

For the ``diffraction_pattern`` and ``pca`` families, with ``N`` DF masks, the masks are
built from a noisy scan (``dose_per_area``) with the construction of 0.1
(``denoise_df=False``) and with the denoised one (``denoise_df=True``, the default), and
from the noise-free scan itself with both (the ceiling; and noise-free data must not get
worse). The figure of merit is the mean DF basis angle [deg] of the noise-free patterns
(``pc.basis_angles``, in the mode of the masks) against each set of masks: lower is better.

The noise-free scan comes from the simulation cache; the noisy one from the cache too when
it is there, else it is the shot noise that ``simulate`` would add to the noise-free scan
(the same function and seed: presets without source blur or descan record exactly that).

Usage::

    python benchmarks/df_mask_noise.py                   # tiny, 2e4 e/A^2, seeds 0 1 2
    python benchmarks/df_mask_noise.py --preset small --seeds 0
    python benchmarks/df_mask_noise.py --mode intensity

Writes ``benchmarks/results/df_mask_noise_{preset}_{mode}.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import py4dstem_compressed as pc
from py4dstem_compressed.simulation.cache import cache_directory, cache_key, cache_path
from py4dstem_compressed.simulation.detector import shot_noise
from py4dstem_compressed.simulation.presets import get_preset

COUNTS = (2, 4, 8, 16, 32)
FAMILIES = ("diffraction_pattern", "pca")
NUM_BF = 8
RESULTS = Path(__file__).resolve().parent / "results"


def _cached(preset: str, dose: float | None):
    """The cached simulation, or None (this script never starts a simulation)."""
    spec = get_preset(preset)
    key = cache_key(spec, "2d", dose, 0)
    if not cache_path(cache_directory(None), spec, "2d", key).exists():
        return None
    return pc.datasets.simulate(preset=preset, kind="2d", dose_per_area=dose, progress_bar=False)


def load(preset: str, dose: float) -> tuple[np.ndarray, np.ndarray, str]:
    """Noisy and noise-free ``(Rx, Ry, Qx, Qy)`` float32 scans and where the noisy one came from."""
    clean = _cached(preset, None)
    if clean is None:
        raise SystemExit(f"no cached noise-free {preset!r} 2d simulation: simulate it first")
    clean_data = np.asarray(clean.datacube.data, dtype=np.float32)
    noisy = _cached(preset, dose)
    if noisy is not None:
        return np.asarray(noisy.datacube.data, dtype=np.float32), clean_data, "cache"
    spec = get_preset(preset)
    if spec.source_size > 0 or spec.descan_px:
        raise SystemExit(f"no cached noisy {preset!r} scan and its preset blurs or drifts")
    counts, _ = shot_noise(clean_data, dose, spec.scan_step, 0)
    return np.asarray(counts, dtype=np.float32), clean_data, "shot_noise(noise-free, seed 0)"


def mean_df_angle(truth: np.ndarray, basis) -> float:
    """Mean DF basis angle [deg] of the noise-free patterns against the basis."""
    return pc.basis_angles(truth, basis, mode=basis.mode).mean_df_deg


def run(preset: str, dose: float, seeds, mode: str) -> dict:
    noisy, clean, origin = load(preset, dose)
    geometry = pc.DetectorGeometry.from_datacube(noisy)
    rows = []
    for family in FAMILIES:
        build = getattr(pc, f"{family}_basis")
        for source, data in (("noisy", noisy), ("noise-free", clean)):
            for denoise in (False, True):
                angles, ranks, start = [], [], time.perf_counter()
                for num_df in COUNTS:
                    per_seed = []
                    for seed in seeds:
                        basis = build(
                            data, geometry, NUM_BF, num_df, seed=seed, mode=mode, denoise_df=denoise
                        )
                        per_seed.append(mean_df_angle(clean, basis))
                        ranks.append(basis.parameters.get("df_rank"))
                    angles.append(float(np.mean(per_seed)))
                rows.append(
                    {
                        "family": family,
                        "built_from": source,
                        "construction": "denoised" if denoise else "0.1",
                        "mean_df_angle_deg": dict(zip(map(str, COUNTS), angles)),
                        "df_ranks": sorted({r for r in ranks if r is not None}),
                        "seconds": time.perf_counter() - start,
                    }
                )
    return {
        "preset": preset,
        "kind": "2d",
        "dose_per_area": dose,
        "mode": mode,
        "seeds": list(seeds),
        "num_bf": NUM_BF,
        "noisy_scan": origin,
        "scan_shape": list(noisy.shape),
        "electrons_per_pattern": float(noisy.sum(axis=(2, 3)).mean()),
        "df_electrons_per_pattern": float(noisy[:, :, geometry.df].sum(-1).mean()),
        "rows": rows,
    }


def table(result: dict) -> str:
    head = "| family | built from | construction | " + " | ".join(f"N={n}" for n in COUNTS)
    lines = [head + " |", "|---" * (3 + len(COUNTS)) + "|"]
    for row in result["rows"]:
        cells = " | ".join(f"{row['mean_df_angle_deg'][str(n)]:.2f}" for n in COUNTS)
        lines.append(f"| {row['family']} | {row['built_from']} | {row['construction']} | {cells} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--dose", type=float, default=2e4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--mode", default="amplitude", choices=["amplitude", "intensity"])
    args = parser.parse_args(argv)
    result = run(args.preset, args.dose, args.seeds, args.mode)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"df_mask_noise_{args.preset}_{args.mode}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
