"""Seconds per iteration of compressed vs. plain multislice ptychography, interleaved.

One process per condition builds plain py4DSTEM ``MultislicePtychography`` and
``CompressedMultislicePtychography`` on each basis (the same scan, the same keywords),
runs one warm-up iteration of each, then times ``--repeats`` rounds in which every
reconstruction continues for ``--iterations`` iterations in turn. The median seconds per
iteration of each run and the median over rounds of its ratio to the plain run of the same
round are reported. Interleaving the runs in one process and taking the ratio within a
round make it robust to a machine whose speed drifts (other jobs, a shared host: the same
plain iteration took 5.8-8.8 s within minutes here), which separate processes measured
minutes apart are not: run it on an idle machine all the same.

Usage::

    python benchmarks/iteration_time.py                         # small 2D material, both doses
    python benchmarks/iteration_time.py --kinds 2d crystal --doses 2e4 --bases zernike36 \\
        dp15 suggested40 --output benchmarks/results/iteration_time_small.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from harness import emit, run_case
from reconstruction_quality import _basis, _dataset, _entry


def run_one(case: dict) -> dict:
    """Time plain and compressed runs of one condition in this process."""
    import py4DSTEM

    import py4dstem_compressed as pc
    from py4dstem_compressed.analysis.evaluation import KNOWN_ROTATION_PREPROCESS_KWARGS

    args = argparse.Namespace(preset=case["preset"])
    data = _dataset(args, case["kind"], case["dose"], case.get("descan", 0.0))
    kwargs = {**data.reconstruction_kwargs(), "object_type": "potential", "verbose": False}
    geometry = pc.DetectorGeometry.from_datacube(data.datacube)
    plain = py4DSTEM.process.phase.MultislicePtychography(datacube=data.datacube, **kwargs)
    runs = {"plain": plain}
    values = {"plain": None}
    for name in case["bases"]:
        basis = _basis(name, data.datacube, geometry)
        compressed = pc.compress(data.datacube, basis, mode=_entry(name)[2], progress_bar=False)
        runs[name] = pc.CompressedMultislicePtychography(datacube=compressed, **kwargs)
        values[name] = int(compressed.values_per_pattern)
    for ptycho in runs.values():
        ptycho.preprocess(**KNOWN_ROTATION_PREPROCESS_KWARGS)
        ptycho.reconstruct(num_iter=1, max_batch_size=64, seed_random=0, progress_bar=False)
    seconds = {name: [] for name in runs}
    for _ in range(case["repeats"]):
        for name, ptycho in runs.items():
            start = time.perf_counter()
            ptycho.reconstruct(
                num_iter=case["iterations"],
                max_batch_size=64,
                seed_random=0,
                progress_bar=False,
                reset=False,
            )
            seconds[name].append((time.perf_counter() - start) / case["iterations"])
    return {**case, "rows": summarise(seconds, values)}


def summarise(seconds: dict, values: dict) -> list[dict]:
    """Per run: median seconds per iteration and the median over rounds of its ratio to plain.

    The ratio is taken within each round (the runs of a round follow each other within
    seconds), so a machine whose speed changes between rounds does not move it; the ratio of
    the medians is kept beside it.
    """
    plain = np.asarray(seconds["plain"])
    rows = []
    for name, times in seconds.items():
        times = np.asarray(times)
        rows.append(
            {
                "run": name,
                "values_per_pattern": values[name],
                "seconds_per_iteration": float(np.median(times)),
                "relative_to_plain": float(np.median(times / plain)),
                "ratio_of_medians": float(np.median(times) / np.median(plain)),
                "seconds": times.tolist(),
            }
        )
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--kinds", nargs="+", default=["2d"], choices=["2d", "crystal"])
    parser.add_argument("--doses", nargs="+", default=["inf", "2e4"])
    parser.add_argument("--descan", type=float, default=0.0, help="linear descan drift [px]")
    parser.add_argument(
        "--bases",
        nargs="+",
        default=["zernike36", "dp15", "suggested40"],
        help="names of reconstruction_quality.BASES, or zK+pcaN / zK+dpN",
    )
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=2, help="iterations per timed round")
    parser.add_argument("--output", default=None, help="JSON file for the results")
    args = parser.parse_args(argv)
    for name in args.bases:  # an unknown name stops here, before any simulation
        _entry(name)
    results = []
    for kind in args.kinds:
        for dose in args.doses:
            case = {
                "preset": args.preset,
                "kind": kind,
                "dose": None if dose == "inf" else float(dose),
                "descan": args.descan,
                "bases": args.bases,
                "repeats": args.repeats,
                "iterations": args.iterations,
            }
            result = run_case(__file__, case)
            results.append(result)
            if "failed" in result:
                print(f"{kind} dose {dose}: failed: {result['failed']}", flush=True)
                continue
            for row in result["rows"]:
                print(
                    f"{kind:8s} dose {dose:>5s} {row['run']:12s} "
                    f"{row['values_per_pattern'] or 'all':>4} values  "
                    f"{row['seconds_per_iteration']:6.2f} s/it  "
                    f"{row['relative_to_plain']:.3f}x plain",
                    flush=True,
                )
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--case":
        emit(run_one(json.loads(sys.argv[2])))
    else:
        sys.exit(main())
