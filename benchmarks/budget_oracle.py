"""Does a budget of stored values hold a noisy thin specimen? Oracle masks (one run per call).

Each call reconstructs one abTEM scan (30 iterations, the package's defaults) from masks
chosen per region and prints one JSON line with the scores. The oracles build masks from
the *noise-free* scan of the same specimen, information a measurement does not have: the
best masks of a family for the specimen's own signal. If those reach a target at a budget,
the budget holds the information and the masks built from the data are what loses; if they
do not, neither do masks of that family built from the data.

Case fields: ``kind`` ("2d" or "crystal"), ``dose`` [e/A^2] or null, ``bf`` and ``df`` (how
each region's masks are made), ``num_bf``, ``num_df``, optional ``preset`` ("small"),
``iterations`` (30). Region choices:

* ``bf``: ``"zernike"`` (Zernike polynomials), ``"pca"`` (principal components of the
  recorded scan's BF, 320 sampled patterns, the package's ``pca_basis``), ``"pca_clean"``
  (the same from every pattern of the noise-free scan: the oracle), ``"pixels"`` (every BF
  pixel a mask: the BF uncompressed);
* ``df``: ``"uniform"`` (one DF value), ``"dp"`` / ``"pca"`` (diffraction-pattern / PCA DF
  masks of the recorded scan, denoised as the package builds them), ``"dp_clean"`` /
  ``"pca_clean"`` (the same of the noise-free scan: the oracles), ``"pca_smoothed"`` (the
  uniform mask and principal components of the recorded DF intensities smoothed by
  ``sigma`` [px], centred: the construction 0.7's ``pca_basis`` chooses its smoothing for).

Usage::

    python benchmarks/budget_oracle.py '{"kind": "2d", "dose": 2e4, "bf": "pca_clean",
        "num_bf": 15, "df": "dp", "num_df": 3}'
    python benchmarks/budget_oracle.py --all    # results/budget_oracle_small_2d_20000.json

``--all`` runs the cases of :data:`CASES` (one process each) and writes them to ``--output``
(rows measured already are kept).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from harness import Stopwatch, emit, run_case

RESULTS = Path(__file__).resolve().parent / "results"

#: the 20-value rows of noisy MoS2 (18 masks + the two perpendicular norms) and their
#: references: the suggested split with each region's masks made by an oracle in turn
CASES = [
    {"bf": "zernike", "num_bf": 15, "df": "dp", "num_df": 3},
    {"bf": "pca_clean", "num_bf": 15, "df": "dp", "num_df": 3},
    {"bf": "zernike", "num_bf": 15, "df": "dp_clean", "num_df": 3},
    {"bf": "pca_clean", "num_bf": 15, "df": "dp_clean", "num_df": 3},
    {"bf": "pca_clean", "num_bf": 17, "df": "uniform", "num_df": 1},
    {"bf": "pca", "num_bf": 15, "df": "dp", "num_df": 3},
    {"bf": "pca_clean", "num_bf": 10, "df": "dp_clean", "num_df": 8},
    {"bf": "pixels", "num_bf": None, "df": "dp", "num_df": 3},
    {"bf": "zernike", "num_bf": 36, "df": "uniform", "num_df": 1},
]


def _bf_masks(case, geometry, recorded, clean):
    import py4dstem_compressed as pc

    how, num = case["bf"], case["num_bf"]
    if how == "zernike":
        return pc.zernike_basis(geometry, num, 1).bf_masks
    if how == "pca":
        return pc.pca_basis(recorded, geometry, num, 1, seed=0).bf_masks
    if how == "pca_clean":
        samples = int(np.prod(clean.data.shape[:2]))
        return pc.pca_basis(clean, geometry, num, 1, num_samples=samples, seed=0).bf_masks
    if how == "pixels":
        return pc.binning_basis(geometry, bf_bin=1).bf_masks
    raise SystemExit(f"unknown bf {how!r}")


def _df_masks(case, geometry, recorded, clean):
    import py4dstem_compressed as pc

    how, num = case["df"], case["num_df"]
    if how == "uniform":
        return pc.zernike_basis(geometry, 1, 1).df_masks
    if how == "dp":
        return pc.diffraction_pattern_basis(recorded, geometry, 1, num, seed=0).df_masks
    if how == "pca":
        return pc.pca_basis(recorded, geometry, 1, num, seed=0).df_masks
    if how == "dp_clean":
        return pc.diffraction_pattern_basis(clean, geometry, 1, num, seed=0).df_masks
    if how == "pca_clean":
        samples = int(np.prod(clean.data.shape[:2]))
        return pc.pca_basis(clean, geometry, 1, num, num_samples=samples, seed=0).df_masks
    if how == "pca_smoothed":
        return smoothed_pca_df_masks(recorded, geometry, num, case["sigma"])
    raise SystemExit(f"unknown df {how!r}")


def smoothed_pca_df_masks(datacube, geometry, num_df, sigma_px, num_samples=320, seed=0):
    """The uniform DF mask and ``num_df - 1`` principal components of the sampled patterns'
    DF amplitudes, centred, each pattern's DF intensities smoothed within the DF by a
    Gaussian of ``sigma_px`` first (normalised convolution, as the package smooths)."""
    from py4dstem_compressed.bases.sampling import smooth_in_region

    data = np.asarray(datacube.data)
    df = np.asarray(geometry.df)
    flat = data.reshape(-1, *data.shape[2:])
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(flat), min(num_samples, len(flat)), replace=False)
    patterns = (flat[i].astype(np.float64) for i in chosen)
    parts = np.stack([smooth_in_region(p, df, sigma_px)[df] for p in patterns])
    amplitudes = np.sqrt(np.maximum(parts, 0))
    _, _, components = np.linalg.svd(amplitudes - amplitudes.mean(0), full_matrices=False)
    vectors = np.concatenate([np.ones((1, df.sum())), components[: num_df - 1]])
    orthonormal, _ = np.linalg.qr(vectors.T)
    masks = np.zeros((num_df, *df.shape))
    masks[:, df] = orthonormal.T * np.sign(orthonormal[0, 0])
    return masks


def run(case: dict) -> dict:
    """Run one case in this process; return the case with its scores."""
    import matplotlib

    matplotlib.use("Agg")
    import py4dstem_compressed as pc
    from py4dstem_compressed.analysis.evaluation import (
        KNOWN_ROTATION_PREPROCESS_KWARGS,
        score_reconstruction,
    )
    from py4dstem_compressed.simulation.datasets import simulate

    preset = case.get("preset", "small")
    data = simulate(
        preset=preset, kind=case["kind"], dose_per_area=case["dose"], progress_bar=False
    )
    clean = simulate(preset=preset, kind=case["kind"], dose_per_area=None, progress_bar=False)
    geometry = pc.DetectorGeometry.from_datacube(data.datacube)
    watch = Stopwatch()
    bf = _bf_masks(case, geometry, data.datacube, clean.datacube)
    df = _df_masks(case, geometry, data.datacube, clean.datacube)
    basis = pc.Basis(np.concatenate([bf, df]), len(bf), len(df), geometry, kind="custom")
    compressed = pc.compress(data.datacube, basis, progress_bar=False)
    kwargs = {**data.reconstruction_kwargs(), "object_type": "potential", "verbose": False}
    ptycho = pc.CompressedMultislicePtychography(datacube=compressed, **kwargs)
    ptycho.preprocess(**KNOWN_ROTATION_PREPROCESS_KWARGS)
    ptycho.reconstruct(
        num_iter=case.get("iterations", 30), max_batch_size=64, seed_random=0, progress_bar=False
    )
    scores = score_reconstruction(ptycho, data)
    return {
        **case,
        "values_per_pattern": basis.num_masks + 2,  # coefficients + perpendicular norms
        "ncc": float(scores["ncc"]),
        "ncc_band": float(scores["ncc_band"]),
        "seconds": watch.lap(),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", nargs="?", help="one case as JSON")
    parser.add_argument("--case", dest="case_flag", help=argparse.SUPPRESS)
    parser.add_argument("--all", action="store_true", help="run CASES")
    parser.add_argument("--kind", default="2d")
    parser.add_argument("--dose", type=float, default=2e4)
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    single = args.case or args.case_flag
    if single:
        emit(run(json.loads(single)))
        return 0
    if not args.all:
        parser.print_help()
        return 2
    dose = "inf" if args.dose is None else f"{args.dose:g}"
    output = Path(args.output or RESULTS / f"budget_oracle_small_{args.kind}_{dose}.json")
    rows = json.loads(output.read_text()) if output.exists() else []
    for case in CASES:
        case = {"kind": args.kind, "dose": args.dose, **case}
        if any(all(r.get(k) == v for k, v in case.items()) for r in rows):
            continue
        result = run_case(__file__, case)
        rows.append(result)
        output.write_text(json.dumps(rows, indent=1))
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
