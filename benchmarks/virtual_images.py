"""Benchmark: what reconstructing from virtual-detector images costs (no perpendicular norms).

Acquisition software that applies exported masks returns ``(Rx, Ry, K)`` images in intensity
mode and often no perpendicular norms, totals or centres of mass. For each specimen and dose
this reconstructs (each case in a fresh process, ``harness.run_case``):

- ``plain``: py4DSTEM on the uncompressed data;
- ``compressed``: ``pc.compress(mode="intensity")``, everything stored;
- ``no_norms``: the same data with the perpendicular norms removed (isolates their effect);
- ``virtual``: ``CompressedDataCube.from_virtual_images`` of the images alone (norms left out,
  totals and centres of mass estimated from the projection).

    python benchmarks/virtual_images.py --preset tiny --iterations 30

Results: ``benchmarks/results/virtual_images_<preset>.json`` and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness import emit, run_case, without_perpendicular_norms

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = ("plain", "compressed", "no_norms", "virtual")


def _data(case: dict):
    from py4dstem_compressed.simulation.datasets import simulate

    return simulate(
        preset=case["preset"], kind=case["kind"], dose_per_area=case["dose"], progress_bar=False
    )


def _compressed(variant: str, data, basis):
    """The compressed dataset of one variant (intensity mode)."""
    import numpy as np

    import py4dstem_compressed as pc

    # virtual images see the masks fixed on the detector: compare like with like (no descan)
    full = pc.compress(data.datacube, basis, mode="intensity", descan=None, progress_bar=False)
    if variant == "compressed":
        return full
    if variant == "no_norms":
        return without_perpendicular_norms(full)
    images = np.tensordot(
        np.asarray(data.datacube.data, np.float64), basis.masks.astype(np.float64), ([2, 3], [1, 2])
    )
    return pc.CompressedDataCube.from_virtual_images(
        images, basis, calibration=data.datacube.calibration
    )


def run_one(case: dict) -> dict:
    """One reconstruction of one variant, in this process."""
    import matplotlib

    matplotlib.use("Agg")
    import py4dstem_compressed as pc
    from py4dstem_compressed.analysis.evaluation import run_ptychography

    data = _data(case)
    if case["variant"] == "plain":
        source = data.datacube
    else:
        geometry = pc.DetectorGeometry.from_datacube(data.datacube)
        basis = pc.zernike_basis(geometry, num_bf=36, num_df=1)
        source = _compressed(case["variant"], data, basis)
    result = run_ptychography(
        source,
        data,
        case["iterations"],
        constructor_kwargs={"object_type": "potential"},
        reconstruct_kwargs={"max_batch_size": 64, "seed_random": 0},
    )
    return {
        "ncc": float(result.scores["ncc"]),
        "ncc_band": float(result.scores["ncc_band"]),
        "iteration_s": result.seconds_per_iteration,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--kinds", nargs="+", default=["crystal", "2d"])
    parser.add_argument("--doses", nargs="+", default=["none", "2e4"])
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        emit(run_one(json.loads(args.case)))
        return 0
    rows = []
    for kind in args.kinds:
        for dose_text in args.doses:
            dose = None if dose_text.lower() == "none" else float(dose_text)
            for variant in VARIANTS:
                case = {
                    "preset": args.preset,
                    "kind": kind,
                    "dose": dose,
                    "iterations": args.iterations,
                    "variant": variant,
                }
                row = {**case, **run_case(__file__, case)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"virtual_images_{args.preset}.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(f"\n{'kind':8} {'dose':>8} {'variant':11} {'NCC':>6} {'band':>6}  rel. to compressed")
    for r in rows:
        ref = next(
            x
            for x in rows
            if (x["kind"], x["dose"], x["variant"]) == (r["kind"], r["dose"], "compressed")
        )
        if "ncc" not in r or "ncc" not in ref:
            print(f"{r['kind']:8} {r['dose']!s:>8} {r['variant']:11} failed")
            continue
        print(
            f"{r['kind']:8} {r['dose']!s:>8} {r['variant']:11} {r['ncc']:6.3f} "
            f"{r['ncc_band']:6.3f}  {r['ncc'] / ref['ncc']:5.3f} "
            f"{r['ncc_band'] / ref['ncc_band']:5.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
