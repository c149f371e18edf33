"""Throughput of the LiberTEM compression UDF against ``pc.compress`` and ``ApplyMasksUDF``.

On ``--scan`` x ``--scan`` frames of ``--detector`` x ``--detector`` float32 written to a
``.npy`` file (default 64x64 frames of 128x128 = 256 MiB; the file is in the page cache
after it is written, so these are warm-file rates), with a Zernike 36+1 basis, amplitude
mode, best of ``--repeats`` runs after one warm-up:

- ``compress_with_libertem`` with LiberTEM's inline executor (one thread), loading the file
  with LiberTEM's ``npy`` reader;
- LiberTEM's ``ApplyMasksUDF`` with the same 37 masks as one stack, same executor and file
  (coefficients only: no square root, norms, totals or centre of mass);
- ``pc.compress`` from the same file, on one thread and on every core.

Also checks that the UDF's record equals ``pc.compress``'s (largest difference relative to
the pattern norm) and, with ``--dask``, that a local Dask cluster of 2 workers gives the inline
run's record. Needs the ``libertem`` extra. Usage::

    python benchmarks/libertem_udf.py --scan 64 --detector 256 --dask
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from compress_throughput import make_frames  # the throughput benchmark's frames
from harness import best_rate

import py4dstem_compressed as pc
from py4dstem_compressed.libertem import compress_with_libertem


def _dask_run(path, basis, calibration):
    """The UDF on a local LiberTEM Dask cluster of 2 single-threaded workers."""
    from distributed import Scheduler
    from libertem.api import Context
    from libertem.executor.dask import DaskJobExecutor, cluster_spec

    spec = cluster_spec(cpus=2, cudas=0, has_cupy=False, num_service=0)
    scheduler = {"cls": Scheduler, "options": {"dashboard_address": ":0"}}
    executor = DaskJobExecutor.make_local(spec=spec, cluster_kwargs={"scheduler": scheduler})
    with Context(executor=executor) as ctx:
        dataset = ctx.load("npy", path=str(path))
        return compress_with_libertem(ctx, dataset, basis, calibration=calibration)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scan", type=int, default=64)
    parser.add_argument("--detector", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--dask",
        action="store_true",
        help="also run the UDF on a local Dask cluster of 2 workers; compare with the inline run",
    )
    args = parser.parse_args(argv)

    from libertem.api import Context
    from libertem.udf.masks import ApplyMasksUDF

    frames, geometry = make_frames(args.scan, args.detector)
    basis = pc.zernike_basis(geometry, num_bf=36, num_df=1)
    num = args.scan**2
    rates = {}
    with tempfile.TemporaryDirectory() as tmp, Context.make_with("inline") as ctx:
        path = Path(tmp) / "scan.npy"
        np.save(path, frames)
        dataset = ctx.load("npy", path=str(path))
        calibration = {"R_pixel_size": 1.0}

        def udf_run():
            return compress_with_libertem(ctx, dataset, basis, calibration=calibration)

        rates["udf_inline"] = best_rate(udf_run, num, args.repeats)
        result = udf_run()
        masks = basis.masks
        apply = ApplyMasksUDF(
            mask_factories=lambda: masks, mask_count=len(masks), mask_dtype=np.float32
        )
        rates["apply_masks_inline"] = best_rate(
            lambda: ctx.run_udf(dataset=dataset, udf=apply), num, args.repeats
        )
        for threads in (1, None):
            rates[f"compress_file_threads_{threads or 'all'}"] = best_rate(
                lambda t=threads: pc.compress(
                    path, basis, descan=None, progress_bar=False, num_threads=t
                ),
                num,
                args.repeats,
            )
        reference = pc.compress(path, basis, descan=None, progress_bar=False)
        on_dask = _dask_run(path, basis, calibration) if args.dask else None
    norm = np.sqrt(frames.astype(np.float64).sum(axis=(-2, -1)))[..., None]  # ||sqrt(I)||
    relative = {
        key: float(np.max(np.abs(getattr(result, key) - getattr(reference, key)) / norm))
        for key in ("coefficients", "perpendicular_norms")
    }
    if on_dask is not None:  # the Dask run against the inline one, same frames
        relative["dask_vs_inline"] = {
            key: float(np.max(np.abs(getattr(on_dask, key) - getattr(result, key)) / norm))
            for key in ("coefficients", "perpendicular_norms")
        }
    print(
        json.dumps(
            {
                "frames": num,
                "detector": args.detector,
                "fps": rates,
                "max_difference_over_norm": relative,
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
