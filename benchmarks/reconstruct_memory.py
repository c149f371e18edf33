"""Peak memory and time of plain vs compressed multislice ptychography on a large scan.

Writes a synthetic scan (NumPy forward model) of ``--scan`` x ``--scan`` positions and
``--detector`` x ``--detector`` px to a ``.npy`` file (row by row, never in memory), then in
separate processes:

* plain: py4DSTEM ``MultislicePtychography`` on the scan (a DataCube over the memory-mapped
  file), ``preprocess`` plus ``--iterations`` iterations;
* compressed: ``pc.compress`` straight from the file (bounded memory) into an EMD file, then
  ``CompressedMultislicePtychography`` from that file alone, ``preprocess`` plus the same
  iterations.

Each process reports its own peak resident memory (``VmHWM``) and timings. Both
reconstructions use the same mini-batches (``--batch``, 64 positions by default, as
py4DSTEM's tutorials). For scans too large to iterate over here, ``--max-batches N`` stops
the first iteration after N batches: the work arrays of a batch are the same for every
batch, so the peak memory of the full iteration is the same (the seconds are then per
batch). Usage::

    python benchmarks/reconstruct_memory.py --scan 64 --detector 256          # ~1 GiB scan
    python benchmarks/reconstruct_memory.py --scan 256 --detector 256 --skip-plain \
        --max-batches 32                                                       # 16 GiB
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from harness import Stopwatch, emit, own_peak_memory_mb, run_case

from py4dstem_compressed.analysis.evaluation import KNOWN_ROTATION_PREPROCESS_KWARGS
from py4dstem_compressed.core.calibration import calibrate

COMMON = dict(
    energy=80e3,
    semiangle_cutoff=25.0,
    defocus=50.0,
    num_slices=4,
    slice_thicknesses=5.0,
    device="cpu",
    verbose=False,
)


def write_scan(path: Path, scan: int, detector: int) -> dict:
    """Simulate the scan straight into a memory-mapped ``.npy`` file, one row at a time."""
    from py4dstem_compressed.simulation.synthetic import synthetic_datacube

    out = np.lib.format.open_memmap(
        path, mode="w+", dtype=np.float32, shape=(scan, scan, detector, detector)
    )
    sim = synthetic_datacube(
        scan_shape=(scan, scan), detector_size=detector, sampling=0.1, scan_step=0.4, out=out
    )
    out.flush()
    cal = sim.datacube.calibration
    calibration = {"R_pixel_size": cal.get_R_pixel_size(), "Q_pixel_size": cal.get_Q_pixel_size()}
    Path(path).with_suffix(".json").write_text(json.dumps(calibration))
    return calibration


def run_plain(case: dict) -> dict:
    import py4DSTEM
    from py4DSTEM.process.phase import MultislicePtychography

    data = np.load(case["raw"], mmap_mode="r")
    datacube = py4DSTEM.DataCube(data=data)
    calibrate(datacube, case["R_pixel_size"], case["Q_pixel_size"])
    watch = Stopwatch()
    ptycho = MultislicePtychography(datacube=datacube, **COMMON).preprocess(
        **KNOWN_ROTATION_PREPROCESS_KWARGS
    )
    preprocess_s = watch.lap()
    ptycho.reconstruct(
        num_iter=case["iterations"], max_batch_size=case["batch"], progress_bar=False
    )
    return _report(preprocess_s, watch.lap(), case["iterations"])


class _StopAfterBatches(Exception):
    """Raised to end the first iteration after ``--max-batches`` batches."""


def _limit_batches(ptycho, max_batches: int | None) -> list:
    """Count the data steps of ``ptycho``; stop after ``max_batches`` of them."""
    calls = []
    if not max_batches:
        return calls
    step = ptycho._gradient_descent_fourier_projection

    def counted(*args, **kwargs):
        if len(calls) >= max_batches:
            raise _StopAfterBatches
        calls.append(1)
        return step(*args, **kwargs)

    ptycho._gradient_descent_fourier_projection = counted
    return calls


def run_compressed(case: dict) -> dict:
    import py4dstem_compressed as pc

    watch = Stopwatch()
    compressed = pc.read_compressed(case["compressed"])
    ptycho = pc.CompressedMultislicePtychography(datacube=compressed, **COMMON)
    ptycho.preprocess(**KNOWN_ROTATION_PREPROCESS_KWARGS)
    preprocess_s = watch.lap()
    calls = _limit_batches(ptycho, case.get("max_batches"))
    try:
        ptycho.reconstruct(
            num_iter=case["iterations"], max_batch_size=case["batch"], progress_bar=False
        )
    except _StopAfterBatches:
        return {
            "preprocess_s": preprocess_s,
            "batches": len(calls),
            "batch_s": watch.lap() / max(len(calls), 1),
            "peak_memory_mb": own_peak_memory_mb(),
        }
    return _report(preprocess_s, watch.lap(), case["iterations"])


def run_compress(case: dict) -> dict:
    import py4dstem_compressed as pc

    frames = np.load(case["raw"], mmap_mode="r")
    watch = Stopwatch()
    geometry = pc.DetectorGeometry.from_datacube(frames)
    basis = pc.diffraction_pattern_basis(frames, geometry, num_bf=15, num_df=1, seed=0)
    compressed = pc.compress(case["raw"], basis, progress_bar=False)
    calibrate(compressed, case["R_pixel_size"], case["Q_pixel_size"])
    compressed.save(case["compressed"], overwrite=True)
    seconds = watch.lap()
    return {
        "compress_s": seconds,
        "peak_memory_mb": own_peak_memory_mb(),
        "file_mb": Path(case["compressed"]).stat().st_size / 2**20,
    }


def _report(preprocess_s: float, reconstruct_s: float, iterations: int) -> dict:
    """Timings [s] and this process's peak memory [MiB] of a full reconstruction."""
    return {
        "preprocess_s": preprocess_s,
        "iteration_s": reconstruct_s / max(iterations, 1),
        "peak_memory_mb": own_peak_memory_mb(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scan", type=int, default=64)
    parser.add_argument("--detector", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64, help="max_batch_size (both runs)")
    parser.add_argument(
        "--max-batches",
        type=int,
        default=None,
        help="compressed run: stop the first iteration after this many batches",
    )
    parser.add_argument("--skip-plain", action="store_true")
    parser.add_argument("--workdir", default=None)
    parser.add_argument(
        "--scan-file",
        default=None,
        help="reuse this .npy scan (its calibration in a .json file beside it)",
    )
    parser.add_argument("--output", default="benchmarks/results/reconstruct_memory.json")
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        case = json.loads(args.case)
        runner = {"plain": run_plain, "compressed": run_compressed, "compress": run_compress}
        emit(runner[args.run](case))
        return 0
    with tempfile.TemporaryDirectory(dir=args.workdir) as work:
        if args.scan_file:  # reuse a scan written before (calibration in the .json beside it)
            raw = Path(args.scan_file)
            calibration = json.loads(raw.with_suffix(".json").read_text())
        else:
            raw = Path(work) / "scan.npy"
            watch = Stopwatch()
            calibration = write_scan(raw, args.scan, args.detector)
            seconds = watch.lap()
            print(f"wrote {raw.stat().st_size / 2**30:.2f} GiB in {seconds:.0f} s")
        case = {
            "raw": str(raw),
            "compressed": str(Path(work) / "scan_compressed.h5"),
            "iterations": args.iterations,
            "batch": args.batch,
            "max_batches": args.max_batches,
            **calibration,
        }
        results = {
            "scan": args.scan,
            "detector": args.detector,
            "raw_gib": raw.stat().st_size / 2**30,
            "batch": args.batch,
            "max_batches": args.max_batches,
        }
        results["compress"] = run_case(__file__, case, ("--run", "compress"))
        print("compress", results["compress"], flush=True)
        results["compressed"] = run_case(__file__, case, ("--run", "compressed"))
        print("compressed", results["compressed"], flush=True)
        if not args.skip_plain:
            results["plain"] = run_case(__file__, case, ("--run", "plain"))
            print("plain", results["plain"], flush=True)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
