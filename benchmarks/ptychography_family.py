"""Benchmark: py4DSTEM's ptychography family on compressed data, with a partially coherent source.

For each specimen and dose, a scan simulated with an effective source (``--source-size``, sigma
[A]) is reconstructed by plain py4DSTEM and by the compressed twins (each basis from its own
file), single-mode and mixed-state (``--num-probes`` modes), multislice, and single-slice for
the 2D material. Each reconstruction runs in a fresh process (``harness.run_case``); scores are
the peak NCC of the summed potential with the ground truth, plain and band-passed.

    python benchmarks/ptychography_family.py --preset tiny --iterations 30
    python benchmarks/ptychography_family.py --preset small --kinds 2d crystal --doses 2e4 none

Results: ``benchmarks/results/ptychography_family_<preset>.json`` and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from harness import Stopwatch, emit, own_peak_memory_mb, run_case, without_perpendicular_norms

RESULTS = Path(__file__).resolve().parent / "results"
#: Bases of the comparison: the README's two defaults
BASES = {
    "zernike36": ("zernike", {"num_bf": 36, "num_df": 1}),
    "dp15": ("diffraction_pattern", {"num_bf": 15, "num_df": 1, "seed": 0}),
}
#: py4DSTEM class names and their compressed twins (``pc.<name>``)
CLASSES = {
    "multislice": ("MultislicePtychography", "CompressedMultislicePtychography"),
    "mixed_multislice": (
        "MixedstateMultislicePtychography",
        "CompressedMixedstateMultislicePtychography",
    ),
    "singleslice": ("SingleslicePtychography", "CompressedSingleslicePtychography"),
    "mixed_singleslice": ("MixedstatePtychography", "CompressedMixedstatePtychography"),
}


def _dataset(case: dict):
    from py4dstem_compressed.simulation.datasets import simulate

    return simulate(
        preset=case["preset"],
        kind=case["kind"],
        dose_per_area=case["dose"],
        source_size=case["source_size"],
        progress_bar=False,
    )


def _constructor_kwargs(case: dict, microscope: dict) -> dict:
    kwargs = {**microscope, "object_type": "potential", "verbose": False}
    if "singleslice" in case["model"]:
        kwargs.pop("num_slices", None)
        kwargs.pop("slice_thicknesses", None)
    if case["model"].startswith("mixed"):
        kwargs["num_probes"] = case["num_probes"]
    return kwargs


def run_one(case: dict) -> dict:
    """One reconstruction in this process; ``case["file"]`` set: compressed from that file."""
    import matplotlib

    matplotlib.use("Agg")
    import py4DSTEM.process.phase as phase

    import py4dstem_compressed as pc
    from py4dstem_compressed.analysis.evaluation import (
        KNOWN_ROTATION_PREPROCESS_KWARGS,
        score_reconstruction,
    )

    data = _dataset(case)
    plain_name, compressed_name = CLASSES[case["model"]]
    kwargs = _constructor_kwargs(case, data.reconstruction_kwargs())
    if case.get("file"):
        compressed = pc.read_compressed(case["file"])
        if case.get("drop_norms"):  # the oracle without the perpendicular norms
            compressed = without_perpendicular_norms(compressed)
        ptycho = getattr(pc, compressed_name)(datacube=compressed, **kwargs)
    else:
        ptycho = getattr(phase, plain_name)(datacube=data.datacube, **kwargs)
    watch = Stopwatch()
    ptycho.preprocess(**KNOWN_ROTATION_PREPROCESS_KWARGS)
    watch.lap()
    ptycho.reconstruct(
        num_iter=case["iterations"],
        max_batch_size=case["batch"],
        seed_random=0,
        progress_bar=False,
    )
    iteration_s = watch.lap() / case["iterations"]
    scores = score_reconstruction(ptycho, data)
    return {
        "ncc": float(scores["ncc"]),
        "ncc_band": float(scores["ncc_band"]),
        "iteration_s": iteration_s,
        "peak_memory_mb": own_peak_memory_mb(),
    }


def _compress_to_file(case: dict, basis_name: str, directory: str) -> str:
    import py4dstem_compressed as pc
    from py4dstem_compressed.bases.registry import build_basis

    data = _dataset(case)
    geometry = pc.DetectorGeometry.from_datacube(data.datacube)
    family, kwargs = BASES[basis_name]
    basis = build_basis(family, geometry, data.datacube, **kwargs)
    path = os.path.join(directory, f"{case['kind']}-{case['dose']}-{basis_name}.h5")
    pc.compress(data.datacube, basis, progress_bar=False).save(path)
    return path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--kinds", nargs="+", default=["2d", "crystal"])
    parser.add_argument("--doses", nargs="+", default=["2e4", "none"])
    parser.add_argument("--source-size", type=float, default=0.3, help="sigma [A]")
    parser.add_argument("--num-probes", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--bases", nargs="+", default=list(BASES), choices=list(BASES))
    parser.add_argument(
        "--no-norm-oracle",
        action="store_true",
        help="skip the mixed-state runs without perpendicular norms",
    )
    parser.add_argument(
        "--skip-plain", action="store_true", help="skip the uncompressed runs (measured before)"
    )
    parser.add_argument(
        "--output",
        default=None,
        help="JSON file for the rows (default results/ptychography_family_<preset>.json); "
        "rewritten after every run, so an interrupted benchmark keeps its finished rows",
    )
    parser.add_argument("--case", help=argparse.SUPPRESS)
    return parser


def _cases(args, kind: str, dose):
    models = ["multislice", "mixed_multislice"]
    if kind == "2d" and dose is not None:  # thin specimen: also the single-slice model
        models.append("singleslice")
    for model in models:
        if not args.skip_plain:
            yield model, None, False
        for basis in args.bases:
            yield model, basis, False
            if model == "mixed_multislice" and not args.no_norm_oracle:
                yield model, basis, True


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.case:
        emit(run_one(json.loads(args.case)))
        return 0
    rows = []
    RESULTS.mkdir(exist_ok=True)
    out = Path(args.output) if args.output else RESULTS / f"ptychography_family_{args.preset}.json"
    with tempfile.TemporaryDirectory() as directory:
        for kind in args.kinds:
            for dose_text in args.doses:
                dose = None if dose_text.lower() == "none" else float(dose_text)
                base = {
                    "preset": args.preset,
                    "kind": kind,
                    "dose": dose,
                    "source_size": args.source_size,
                    "num_probes": args.num_probes,
                    "iterations": args.iterations,
                    "batch": args.batch,
                }
                files = {b: _compress_to_file(base, b, directory) for b in args.bases}
                for model, basis, drop_norms in _cases(args, kind, dose):
                    case = {**base, "model": model, "drop_norms": drop_norms}
                    if basis:
                        case["file"] = files[basis]
                    result = run_case(__file__, case)
                    row = {
                        **base,
                        "model": model,
                        "basis": basis or "uncompressed",
                        "drop_norms": drop_norms,
                        **result,
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    partial = out.with_name(out.name + ".part")
                    partial.write_text(json.dumps(rows, indent=1) + "\n")
                    os.replace(partial, out)
    _print_table(rows)
    return 0


def _print_table(rows) -> None:
    """Scores relative to the plain run of the same model, specimen and dose."""
    plain = {(r["kind"], r["dose"], r["model"]): r for r in rows if r["basis"] == "uncompressed"}
    print(
        f"\n{'kind':8} {'dose':>8} {'model':18} {'basis':14} {'NCC':>6} {'rel':>5} "
        f"{'band':>6} {'rel':>5} {'s/it':>6} {'rel':>5}"
    )
    for r in rows:
        p = plain.get((r["kind"], r["dose"], r["model"]))
        if "ncc" not in r or p is None or "ncc" not in p:
            print(f"{r['kind']:8} {r['dose']!s:>8} {r['model']:18} {r['basis']:14} failed")
            continue
        name = r["basis"] + (" no-norms" if r["drop_norms"] else "")
        print(
            f"{r['kind']:8} {r['dose']!s:>8} {r['model']:18} {name:14} "
            f"{r['ncc']:6.3f} {r['ncc'] / p['ncc']:5.3f} {r['ncc_band']:6.3f} "
            f"{r['ncc_band'] / p['ncc_band']:5.3f} {r['iteration_s']:6.2f} "
            f"{r['iteration_s'] / p['iteration_s']:5.2f}"
        )


if __name__ == "__main__":
    sys.exit(main())
