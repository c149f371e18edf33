"""Reconstruction quality of compressed vs. uncompressed multislice ptychography.

For each condition (dataset x dose x descan) the script runs py4DSTEM's plain
``MultislicePtychography`` and ``CompressedMultislicePtychography`` on several bases for the
same number of iterations and reports, per run:

* compression ratio (Eq. 17) and the honest ratio of all stored values,
* quality: peak normalised cross-correlation of the summed reconstructed potential with the
  ground-truth projected potential at the best alignment, on the images and on band-passed
  images (0.35-1.2 Å), and both relative to the plain run,
* seconds per iteration, preprocess seconds and peak resident memory [MB] up to the end of
  the reconstruction (the compressed runs load the ground truth only afterwards).

Every reconstruction runs in its own process (so peak memory is per run); the compressed
runs read the compressed data from an EMD file written by another process and nothing else.

Usage::

    python benchmarks/reconstruction_quality.py                  # full benchmark (long)
    python benchmarks/reconstruction_quality.py --preset tiny --iterations 8 \\
        --kinds crystal --doses inf --bases zernike36 dp15       # quick look
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
from harness import Stopwatch, emit, own_peak_memory_mb, run_case

#: basis name -> (family of ``bases.registry``, keyword arguments, compression mode)
BASES = {
    "zernike36": ("zernike", {"num_bf": 36, "num_df": 1}, "amplitude"),
    "zernike15": ("zernike", {"num_bf": 15, "num_df": 1}, "amplitude"),
    "binning7": ("binning", {"bf_bin": 7}, "amplitude"),
    "dp15": ("diffraction_pattern", {"num_bf": 15, "num_df": 1, "seed": 0}, "amplitude"),
    "dp8": ("diffraction_pattern", {"num_bf": 8, "num_df": 1, "seed": 0}, "amplitude"),
    "pca15": ("pca", {"num_bf": 15, "num_df": 1, "num_samples": 320, "seed": 0}, "amplitude"),
    "dp15+16": ("diffraction_pattern", {"num_bf": 15, "num_df": 16, "seed": 0}, "amplitude"),
    "suggested40": ("suggested", {"max_values_per_pattern": 40, "seed": 0}, "amplitude"),
    "suggested20": ("suggested", {"max_values_per_pattern": 20, "seed": 0}, "amplitude"),
    "dp15-intensity": (
        "diffraction_pattern",
        {"num_bf": 15, "num_df": 1, "seed": 0, "mode": "intensity"},
        "intensity",
    ),
}


def _dataset(args, kind: str, dose: float | None, descan_px: float):
    """The simulated scan; a descan drift moves the patterns before shot noise is drawn."""
    from py4dstem_compressed.simulation.datasets import simulate

    return simulate(
        preset=args.preset,
        kind=kind,
        dose_per_area=dose,
        descan_px=descan_px,
        progress_bar=False,
    )


#: ``zK+pcaN`` / ``zK+dpN``: K Zernike BF masks and N DF masks of a data-derived family, built
#: as :func:`~py4dstem_compressed.suggest_basis` builds its choice (a split it did not choose)
SPLIT_NAME = re.compile(r"^z(\d+)\+(pca|dp)(\d+)$")
SPLIT_FAMILIES = {"pca": "pca", "dp": "diffraction_pattern"}


def _entry(name: str) -> tuple[str, dict, str]:
    """``(family, keyword arguments, compression mode)`` of the basis called ``name``."""
    split = SPLIT_NAME.match(name)
    if split:
        num_bf, family, num_df = split.groups()
        kwargs = {"num_bf": int(num_bf), "df_family": SPLIT_FAMILIES[family], "num_df": int(num_df)}
        return "split", kwargs, "amplitude"
    if name not in BASES:
        raise SystemExit(f"unknown basis {name!r}: one of {sorted(BASES)} or zK+pcaN / zK+dpN")
    return BASES[name]


def _split_basis(datacube, geometry, num_bf: int, df_family: str, num_df: int):
    """Zernike BF + data-derived DF masks from the sample ``suggest_basis`` would draw."""
    from py4dstem_compressed.analysis import basis_suggestion as suggestion

    frames, positions = suggestion._sample(datacube, suggestion.NUM_SAMPLES, 0)
    frames, _ = suggestion._in_disk_frame(frames, positions, datacube, geometry)
    return suggestion._build(df_family, geometry, frames[:, None], num_bf, num_df, 0, "amplitude")


def _basis(name, datacube, geometry):
    """The basis called ``name`` (see :func:`_entry`), built through the family registry."""
    from py4dstem_compressed.bases.registry import build_basis

    family, kwargs, _ = _entry(name)
    if family == "split":
        return _split_basis(datacube, geometry, **kwargs)
    if family == "suggested":  # chosen by suggest_basis from the scan itself
        from py4dstem_compressed import suggest_basis

        return suggest_basis(datacube, geometry, progress_bar=False, **kwargs)
    return build_basis(family, geometry, datacube, **kwargs)


def _quality(ptycho, data, images: str | None = None) -> dict:
    """Peak NCC of the summed potential with the truth, plain and band-passed, and FSC.

    With ``images`` (a path), the registered pair is also written there (see
    :func:`_save_images`).
    """
    from py4dstem_compressed.analysis.evaluation import score_reconstruction

    scores = score_reconstruction(ptycho, data)
    if images:
        _save_images(images, scores, data)
    return {k: scores[k] for k in ("ncc", "ncc_band", "fsc_bragg_mean", "fsc_mean")}


def _save_images(path: str, scores: dict, data) -> None:
    """Write one run's registered phase map and ground truth to ``path`` (``.npz``).

    Stored: ``reconstruction`` (summed object phase [rad]) and ``truth`` (projected
    potential [V A], resampled and aligned onto the same pixels), both float32;
    ``sampling`` [A]; ``vacancies_px``: the vacancy positions in these images' pixel frame
    ``(row, column)`` [px] (the periodic cell wrapped; may lie outside the images).
    """
    sampling = np.asarray(scores["sampling_angstrom"], dtype=float)
    roi = np.asarray(scores["roi_px"], dtype=float)
    shift = np.asarray(scores["shift_px"], dtype=float)
    period = np.asarray(data.parameters["cell_extent"], dtype=float) / sampling
    vacancies = [
        np.asarray(d["position"][:2], dtype=float)
        for d in data.parameters["defects"]
        if d["type"] == "vacancy"
    ]
    shape = np.asarray(scores["aligned_reconstruction"].shape, dtype=float)
    positions = []
    for xy in vacancies:
        # truth pixel p sits at reconstruction pixel p + shift; wrap into the compared region
        pixel = xy / sampling + shift - roi[[0, 2]]
        pixel = (pixel + period / 2 - shape / 2) % period - period / 2 + shape / 2
        positions.append(pixel)
    np.savez(
        path,
        reconstruction=np.asarray(scores["aligned_reconstruction"], dtype=np.float32),
        truth=np.asarray(scores["aligned_truth"], dtype=np.float32),
        sampling=sampling,
        vacancies_px=np.asarray(positions, dtype=float).reshape(-1, 2),
    )


def run_one(case: dict) -> dict:
    """One reconstruction, in this process. ``case["file"]`` set: compressed from that file."""
    import matplotlib

    matplotlib.use("Agg")
    from py4DSTEM.process.phase import MultislicePtychography

    import py4dstem_compressed as pc
    from py4dstem_compressed.analysis.evaluation import KNOWN_ROTATION_PREPROCESS_KWARGS
    from py4dstem_compressed.reconstruction.ptychography import CompressedMultislicePtychography
    from py4dstem_compressed.simulation.datasets import simulate

    def dataset():
        return simulate(
            preset=case["preset"],
            kind=case["kind"],
            dose_per_area=case["dose"],
            descan_px=case["descan"],
            progress_bar=False,
        )

    # compressed runs read nothing but their file until the reconstruction is done (the
    # ground truth is loaded afterwards for scoring), so their peak memory is their own
    data = None if case.get("microscope") else dataset()
    microscope = case.get("microscope") or data.reconstruction_kwargs()
    kwargs = {**microscope, "object_type": "potential", "verbose": False}
    preprocess = dict(KNOWN_ROTATION_PREPROCESS_KWARGS)
    if case.get("fit_rotation"):  # fit the scan rotation instead of forcing the known 0
        del preprocess["force_com_rotation"], preprocess["force_com_transpose"]
    reconstruct = dict(
        num_iter=case["iterations"],
        max_batch_size=case["batch"],
        seed_random=0,
        progress_bar=False,
    )
    watch = Stopwatch()
    if case.get("file"):
        compressed = pc.read_compressed(case["file"])
        ptycho = CompressedMultislicePtychography(datacube=compressed, **kwargs)
    else:
        ptycho = MultislicePtychography(datacube=data.datacube, **kwargs)
    ptycho.preprocess(**preprocess)
    preprocess_s = watch.lap()
    if case.get("file"):
        reconstruct.update(case.get("compressed_kwargs") or {})
    watch.lap()
    ptycho.reconstruct(**reconstruct)
    iteration_s = watch.lap() / case["iterations"]
    peak_memory_mb = own_peak_memory_mb()
    result = _quality(ptycho, data if data is not None else dataset(), case.get("images"))
    result.update(
        preprocess_s=preprocess_s,
        iteration_s=iteration_s,
        peak_memory_mb=peak_memory_mb,
        final_error=float(ptycho.error_iterations[-1]),
    )
    return result


def _compress_to_file(args, name, data, directory) -> tuple[str, dict]:
    import py4dstem_compressed as pc

    geometry = pc.DetectorGeometry.from_datacube(data.datacube)
    basis = _basis(name, data.datacube, geometry)
    mode = _entry(name)[2]
    descan = None if args.fixed_masks else "auto"
    compressed = pc.compress(data.datacube, basis, mode=mode, progress_bar=False, descan=descan)
    path = Path(directory) / f"{name}.h5"
    compressed.save(path, overwrite=True)
    ratios = {
        "compression_ratio": pc.compression_ratio(basis),
        # the same number of stored values per pattern on a 256x256 px detector
        "compression_ratio_256": 256 * 256 / (basis.num_masks + 2),
        "stored_compression_ratio": pc.stored_compression_ratio(compressed),
        "chosen": [basis.kind, basis.num_bf, basis.num_df],
    }
    return str(path), ratios


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64, help="max_batch_size")
    parser.add_argument("--kinds", nargs="+", default=["crystal", "2d"])
    parser.add_argument("--doses", nargs="+", default=["inf", "2e4"], help="e/A^2; inf=noiseless")
    parser.add_argument(
        "--descan",
        type=float,
        nargs="+",
        default=[0.0],
        help="linear descan drift over the scan [px], simulated before shot noise",
    )
    parser.add_argument(
        "--bases",
        nargs="+",
        default=[b for b in BASES if b != "dp15-intensity"],
        help="names of BASES, or zK+pcaN / zK+dpN (K Zernike BF + N data-derived DF masks)",
    )
    parser.add_argument("--output", default="reconstruction_quality.json")
    parser.add_argument(
        "--compressed-kwargs",
        type=json.loads,
        default={},
        help="extra reconstruct() keywords for the compressed runs, as JSON",
    )
    parser.add_argument("--skip-plain", action="store_true", help="only the compressed runs")
    parser.add_argument(
        "--fixed-masks",
        action="store_true",
        help="compress with masks fixed in the detector frame (compress(descan=None))",
    )
    parser.add_argument(
        "--no-intensity",
        action="store_true",
        help="do not add the intensity-mode diffraction-pattern run to noisy conditions",
    )
    parser.add_argument(
        "--save-images",
        metavar="NPZ",
        help="also store every run's registered phase map [rad] and the aligned ground truth "
        "[V A] (float16, compressed) in this .npz file; keys are listed in the JSON rows",
    )
    parser.add_argument(
        "--fit-rotation",
        action="store_true",
        help="fit the scan rotation from the centres of mass instead of using the known 0",
    )
    args = parser.parse_args(argv)
    if args.case:
        emit(run_one(json.loads(args.case)))
        return 0

    rows = []
    images: dict[str, np.ndarray] = {}
    image_dir = tempfile.TemporaryDirectory() if args.save_images else None
    for kind in args.kinds:
        for dose_text in args.doses:
            dose = None if dose_text == "inf" else float(dose_text)
            for descan in args.descan:
                base = dict(
                    preset=args.preset,
                    kind=kind,
                    dose=dose,
                    descan=descan,
                    iterations=args.iterations,
                    batch=args.batch,
                    fit_rotation=args.fit_rotation,
                )
                _run_condition(args, base, image_dir, images, rows)
    Path(args.output).write_text(json.dumps(rows, indent=1))
    if image_dir is not None:
        np.savez_compressed(args.save_images, **images)
        image_dir.cleanup()
    _print_table(rows)
    return 0


def _run_condition(args, base: dict, image_dir, images: dict, rows: list) -> None:
    """The plain run and every compressed run of one condition, each in its own process.

    Appends one row per run to ``rows`` (printed as a JSON line when it is done) and moves
    the runs' stored images into ``images``.
    """
    data = _dataset(args, base["kind"], base["dose"], base["descan"])
    plain = {}
    if not args.skip_plain:
        key = _image_key(base, "uncompressed")
        plain = run_case(__file__, {**base, "images": _image_file(image_dir, key)})
        rows.append({**base, "basis": "uncompressed", **plain})
        _collect_images(images, image_dir, key, rows[-1])
        print(json.dumps(rows[-1]), flush=True)
    bases = list(args.bases)
    if base["dose"] is not None and "dp15-intensity" not in bases and not args.no_intensity:
        bases.append("dp15-intensity")
    with tempfile.TemporaryDirectory() as directory:
        for name in bases:
            path, ratios = _compress_to_file(args, name, data, directory)
            case = {
                **base,
                "file": path,
                "compressed_kwargs": args.compressed_kwargs,
                "microscope": data.reconstruction_kwargs(),
                "images": _image_file(image_dir, _image_key(base, name)),
            }
            result = run_case(__file__, case)
            for key in ("ncc", "ncc_band", "iteration_s", "peak_memory_mb"):
                if key in result and key in plain:
                    result[f"{key}_relative"] = result[key] / plain[key]
            rows.append({**base, "basis": name, **ratios, **result})
            _collect_images(images, image_dir, _image_key(base, name), rows[-1])
            print(json.dumps(rows[-1]), flush=True)


def _image_key(base: dict, basis: str) -> str:
    """Prefix of one run's arrays in the ``--save-images`` file, e.g. ``crystal_inf_0_dp15``."""
    dose = "inf" if base["dose"] is None else f"{base['dose']:g}"
    return f"{base['kind']}_{dose}_{base['descan']:g}_{basis}"


def _image_file(image_dir, key: str) -> str | None:
    return None if image_dir is None else str(Path(image_dir.name) / f"{key}.npz")


def _collect_images(images: dict, image_dir, key: str, row: dict) -> None:
    """Move one run's stored images into ``images`` (float16) and name them in ``row``.

    Keys: ``{key}/reconstruction`` [rad], ``{key}/truth`` [V A] (float16),
    ``{key}/sampling`` [A] and ``{key}/vacancies_px`` [px] (float64).
    """
    path = _image_file(image_dir, key)
    if path is None or "failed" in row or not Path(path).exists():
        return
    with np.load(path) as stored:
        for name in stored.files:
            array = stored[name]
            if name in ("reconstruction", "truth"):
                array = array.astype(np.float16)
            images[f"{key}/{name}"] = array
    row["images_key"] = key


def _print_table(rows) -> None:
    header = (
        f"{'kind':8} {'dose':>7} {'descan':>6} {'basis':15} {'ratio':>7} {'ncc':>6} "
        f"{'rel':>5} {'band':>6} {'rel':>5} {'s/it':>6} {'rel':>5} {'prep s':>7} {'MB':>6}"
    )
    print(header)
    for r in rows:
        if "failed" in r:
            print(f"{r['kind']:8} {r['basis']:15} FAILED {r['failed']}")
            continue
        print(
            f"{r['kind']:8} {r['dose'] or float('inf'):7.0e} {r['descan']:6.1f} {r['basis']:15} "
            f"{r.get('compression_ratio', 1):7.0f} {r['ncc']:6.3f} "
            f"{r.get('ncc_relative', 1):5.3f} {r['ncc_band']:6.3f} "
            f"{r.get('ncc_band_relative', 1):5.3f} {r['iteration_s']:6.2f} "
            f"{r.get('iteration_s_relative', 1):5.2f} {r['preprocess_s']:7.1f} "
            f"{r['peak_memory_mb']:6.0f}"
        )


if __name__ == "__main__":
    sys.exit(main())
