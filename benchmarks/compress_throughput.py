"""Compression throughput against the memory-bandwidth roofline, LiberTEM and the disk.

Measures, on ``--scan`` x ``--scan`` frames of ``--detector`` x ``--detector`` float32
(default 64x64 frames of 256x256 = 1 GiB) with a Zernike 36+1 basis:

- roofline: a plain NumPy sum over the same in-memory frames (one thread);
- ``compress`` in memory, intensity and amplitude modes, on every core (the default) and on
  one thread;
- LiberTEM's ``ApplyMasksUDF`` (the 37 masks as one stack, inline executor: one thread), run
  from a separate environment with ``--libertem-python`` (LiberTEM needs NumPy 2);
- reading the frames from a ``.npy`` file, and ``compress`` from that file
  (the file is in the page cache after it is written: this is the read rate of
  a warm file, an upper bound for a cold disk).

Each figure is the best of ``--repeats`` runs. Usage::

    python benchmarks/compress_throughput.py --libertem-python /work/venv-libertem/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
from harness import best_rate, run_json_process

import py4dstem_compressed as pc
from py4dstem_compressed.core.sources import open_source

LIBERTEM_SCRIPT = """
import json, sys, time, numpy as np
from libertem.api import Context
from libertem.udf.masks import ApplyMasksUDF
data = np.load(sys.argv[1], mmap_mode="r")
data = np.ascontiguousarray(data)
masks = np.load(sys.argv[2])
repeats = int(sys.argv[3])
ctx = Context.make_with("inline")
ds = ctx.load("memory", data=data, sig_dims=2)
udf = ApplyMasksUDF(mask_factories=lambda: masks, mask_count=len(masks), mask_dtype=np.float32)
ctx.run_udf(dataset=ds, udf=udf)
best = 0.0
for _ in range(repeats):
    t0 = time.perf_counter()
    ctx.run_udf(dataset=ds, udf=udf)
    best = max(best, data.shape[0] * data.shape[1] / (time.perf_counter() - t0))
print(json.dumps({"libertem_fps": best}))
"""


def make_frames(scan: int, detector: int, seed: int = 0) -> tuple[np.ndarray, pc.DetectorGeometry]:
    """Synthetic frames: a bright-field disk with per-frame random pixel noise [counts]."""
    rng = np.random.default_rng(seed)
    q = np.arange(detector) - (detector - 1) / 2
    radius = detector / 6.4
    disk = (np.hypot(*np.meshgrid(q, q, indexing="ij")) <= radius).astype(np.float32)
    pattern = 100 * disk + 1
    frames = np.empty((scan, scan, detector, detector), np.float32)
    for i in range(scan):
        frames[i] = pattern * rng.random((scan, detector, detector), dtype=np.float32)
    geometry = pc.DetectorGeometry((detector, detector), ((detector - 1) / 2,) * 2, radius)
    return frames, geometry


def read_file(path: Path, batch: int) -> None:
    source = open_source(path)
    for start in range(0, source.num_frames, batch):
        source.read(start, min(start + batch, source.num_frames))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scan", type=int, default=64)
    parser.add_argument("--detector", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--libertem-python", default=None, help="python with LiberTEM installed")
    parser.add_argument("--workdir", default=None, help="folder for the temporary .npy file")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)

    frames, geometry = make_frames(args.scan, args.detector)
    basis = pc.zernike_basis(geometry, 36, 1)
    n = args.scan**2
    options = {"progress_bar": False, "client": False, "check_center": False}
    results = {"frames": n, "detector": args.detector, "basis": "zernike 36+1"}
    results["roofline_sum_fps"] = best_rate(lambda: frames.sum(), n, args.repeats)
    results["threads"] = os.cpu_count()
    for mode in ("intensity", "amplitude"):
        results[f"{mode}_fps"] = best_rate(
            lambda mode=mode: pc.compress(frames, basis, mode=mode, **options), n, args.repeats
        )
        results[f"{mode}_one_thread_fps"] = best_rate(
            lambda mode=mode: pc.compress(frames, basis, mode=mode, num_threads=1, **options),
            n,
            args.repeats,
        )
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        path = Path(tmp) / "frames.npy"
        np.save(path, frames)
        masks_path = Path(tmp) / "masks.npy"
        np.save(masks_path, basis.masks)
        source = open_source(path)
        from py4dstem_compressed.compression.compress import chunk_frames

        batch = chunk_frames(source, None, None)
        results["read_file_fps"] = best_rate(lambda: read_file(path, batch), n, args.repeats)
        results["file_intensity_fps"] = best_rate(
            lambda: pc.compress(path, basis, mode="intensity", **options), n, args.repeats
        )
        results["libertem_fps"] = None
        if args.libertem_python:
            del frames  # LiberTEM's process holds its own copy
            libertem, stderr = run_json_process(
                [
                    args.libertem_python,
                    "-c",
                    textwrap.dedent(LIBERTEM_SCRIPT),
                    str(path),
                    str(masks_path),
                    str(args.repeats),
                ]
            )
            if libertem is not None:
                results["libertem_fps"] = libertem["libertem_fps"]
            else:
                print(f"LiberTEM run failed:\n{stderr[-2000:]}", file=sys.stderr)
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def print_table(r: dict) -> None:
    roof, lt = r["roofline_sum_fps"], r["libertem_fps"]
    rows = [
        ("NumPy sum (roofline)", roof, "", ""),
        (
            f"compress, intensity, {r['threads']} threads",
            r["intensity_fps"],
            ">= 0.5x roofline, >= 3x LiberTEM",
        ),
        ("compress, intensity, 1 thread", r["intensity_one_thread_fps"], ""),
        (
            f"compress, amplitude, {r['threads']} threads",
            r["amplitude_fps"],
            ">= 0.3x roofline, >= 1.5x LiberTEM",
        ),
        ("compress, amplitude, 1 thread", r["amplitude_one_thread_fps"], ""),
        ("LiberTEM ApplyMasksUDF (one stack, inline)", lt, "", ""),
        ("read .npy file (warm)", r["read_file_fps"], ""),
        ("compress from .npy file", r["file_intensity_fps"], ">= 0.9x reading the file"),
    ]
    print(f"{r['frames']} frames of {r['detector']}x{r['detector']} float32, {r['basis']}")
    print(f"| {'what':36} | frames/s | x roofline | x LiberTEM | target |")
    print(f"|{'-' * 38}|---------:|-----------:|-----------:|--------|")
    for name, fps, target, *_ in rows:
        if fps is None:
            print(f"| {name:36} | not measured | | | {target} |")
            continue
        vs_lt = f"{fps / lt:.2f}" if lt else "n/a"
        print(f"| {name:36} | {fps:8.0f} | {fps / roof:10.2f} | {vs_lt:>10} | {target} |")
    print(f"compress from file / read file: {r['file_intensity_fps'] / r['read_file_fps']:.2f}")


if __name__ == "__main__":
    sys.exit(main())
