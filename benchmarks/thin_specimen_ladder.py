"""Where a thin specimen's information is lost: an oracle ladder over the dark-field masks.

Runs on the abTEM ``small`` MoS2 monolayer (128x128 px detector), noise-free or at a dose,
each case in its own process, scored after 30 and 90 iterations (one run continued):

* ``plain``: py4DSTEM's ``MultislicePtychography`` on every pixel;
* oracles, each giving the reconstruction back one piece of the uncompressed data:
  ``df_pixels`` (Zernike 36 BF masks, every dark-field pixel measured: the data step
  replaces the dark-field amplitudes by the measured ones, as py4DSTEM does) and
  ``bf_pixels`` (every bright-field pixel as a mask, one uniform dark-field mask);
  ``all_pixels`` (every bright-field pixel as a mask and every dark-field pixel measured:
  nothing compressed, the package's data step and descan model on the whole pattern);
  ``df_in_span`` (Zernike 36 BF masks and N diffraction-pattern DF masks; the data step's
  dark-field amplitudes are the measured ones projected onto the span of the DF masks,
  clipped at 0 and rescaled to the measured DF energy: a decoding of the stored values
  alone, ``c`` and ``c^2 + p^2``, that bypasses the data step: if it reconstructs no
  better than the data step, what the masks miss is missing from the file);
* the ladder: ``zernike`` (36 BF masks, azimuthal Zernike DF masks), ``diffraction_pattern``
  and ``pca`` (15 BF masks) with N = 1, 2, 4, 8, 16, 32 dark-field masks;
* ``--families zernike_bf_dp_df``: Zernike 36 BF masks with N diffraction-pattern DF masks;
* ``--suggested 40 20``: the bases :func:`py4dstem_compressed.suggest_basis` picks within
  those budgets of stored values per pattern;
* ``--num-bf K``: K instead of 36 Zernike BF masks in ``df_pixels``, ``zernike``,
  ``zernike_bf_dp_df`` and ``df_in_span`` (e.g. 15 BF + 23 DF masks: 40 stored values);
* ``--descan PX``: a linear descan drift of PX detector pixels across the scan, simulated
  before the shot noise (descan-aware compression, as by default);
* ``--blur-shift PX``: every recorded pattern moved by PX px along both axes, bilinearly
  (after the shot noise): the re-sampling plain py4DSTEM gives drifting patterns, here
  given to any scan and to every run;
* ``--oracles NAME ...``: which oracles run (default both; ``--no-oracles``: none);
* ``--num-probes M``: mixed state with M probe modes (py4DSTEM's
  ``MixedstateMultislicePtychography`` and its compressed twin; the oracles then act on the
  modes' incoherent sum, every mode scaled by the same factor per pixel).

Results go to ``benchmarks/results/thin_specimen_ladder_<preset>_<dose>.json`` and a
Markdown table is printed.

Usage::

    python benchmarks/thin_specimen_ladder.py                       # noise-free ladder
    python benchmarks/thin_specimen_ladder.py --dose 2e4 --iterations 30
    python benchmarks/thin_specimen_ladder.py --families zernike --num-df 1 16 --no-oracles
    python benchmarks/thin_specimen_ladder.py --dose 2e4 --source-size 0.3 --iterations 30 \
        --families zernike --num-df 1      # oracles on partially coherent data
    python benchmarks/thin_specimen_ladder.py --dose 2e4 --descan 2 --iterations 30 \
        --families zernike --num-df 1      # oracles on drifting data
    python benchmarks/thin_specimen_ladder.py --iterations 30 --num-bf 15 --num-df 23 \
        --families df_in_span zernike_bf_dp_df --oracles df_pixels   # within 40 values
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from harness import Stopwatch, emit, run_case, without_perpendicular_norms

from py4dstem_compressed.reconstruction.projection import fourier_difference, fourier_projection

#: family -> number of bright-field masks of the ladder
BF_MASKS = {"zernike": 36, "diffraction_pattern": 15, "pca": 15, "zernike_bf_dp_df": 36}
RESULTS = Path(__file__).parent / "results"
#: families whose BF masks are Zernike polynomials of ``--num-bf`` orders
ZERNIKE_BF = ("zernike", "zernike_bf_dp_df", "df_in_span")
#: the oracles that give back every pixel of one region
ORACLES = ("df_pixels", "bf_pixels", "all_pixels")


def _in_disk_frame(patterns: np.ndarray, shifts_px) -> np.ndarray:
    """Each pattern rolled back by the whole-pixel shift its masks were moved by."""
    from py4dstem_compressed.bases.sampling import read_pattern

    if shifts_px is None or not np.any(shifts_px):
        return patterns
    moved = np.empty_like(patterns)
    for index in np.ndindex(patterns.shape[:2]):
        moved[index] = read_pattern(patterns, index, "intensity", shifts_px)
    return moved


def _compressed_class(mixed: bool):
    """The compressed multislice class: single mode, or mixed state for ``mixed``."""
    from py4dstem_compressed.reconstruction import ptychography

    if mixed:
        return ptychography.CompressedMixedstateMultislicePtychography
    return ptychography.CompressedMultislicePtychography


def _oracle_class(mixed: bool = False):
    """The compressed class with every dark-field pixel measured (the ``df_pixels`` oracle)."""

    class DarkFieldPixels(_compressed_class(mixed)):
        """BF from the coefficients; DF amplitudes replaced by the measured ones."""

        def attach_patterns(self, patterns: np.ndarray, shifts_px=None) -> None:
            """Measured ``(Rx, Ry, Qx, Qy)`` intensities, in the reconstruction's frame.

            ``shifts_px``: the ``(Rx, Ry, 2)`` whole-pixel shifts of the masks of
            descan-aware data (``CompressedDataCube.descan_shift_px``), undone per pattern.
            """
            patterns = _in_disk_frame(patterns, shifts_px)
            shift = tuple(-o for o in self._descan_origin_px)
            flat = np.roll(patterns, shift, axis=(-2, -1)).reshape(-1, patterns[0, 0].size)
            self._df_amplitudes = np.sqrt(np.maximum(flat, 0) / self._intensity_unit)
            index = np.arange(len(flat), dtype=np.float32)[:, None]
            rows = np.concatenate([np.asarray(self._compressed_rows), index], axis=1)
            self._compressed_rows = rows.astype(np.float32)  # extra column: the position

        def _fourier_data_step(self, rows, waves, options=None, step=fourier_projection):
            modified, fourier_waves, ramp, error = super()._fourier_data_step(rows, waves, options)
            measured = self._df_amplitudes[rows[:, -1].astype(int)]
            measured = measured.reshape((len(rows), *fourier_waves.shape[-2:]))
            measured = measured.astype(np.float32)
            dark = np.asarray(self._operator.region_maps[1]).reshape(fourier_waves.shape[-2:])
            if fourier_waves.ndim == 4:  # modes: every mode by the same factor, the data
                # describing their incoherent sum (as the compressed data step does)
                amplitude = np.sqrt((np.abs(fourier_waves) ** 2).sum(1))
                factor = np.where(amplitude > 0, measured / np.maximum(amplitude, 1e-30), 0)
                modified = np.where(dark > 0, factor[:, None] * fourier_waves, modified)
            else:
                amplitude = np.abs(fourier_waves)
                phasor = np.where(amplitude > 0, fourier_waves / np.maximum(amplitude, 1e-30), 1)
                modified = np.where(dark > 0, measured * phasor, modified)
            if step is fourier_difference:
                return modified - fourier_waves, fourier_waves, ramp, error
            return modified, fourier_waves, ramp, error

    return DarkFieldPixels


def _span_oracle_class(mixed: bool = False):
    """The ``df_in_span`` oracle: DF amplitudes decoded from the stored DF values alone."""

    class DarkFieldInSpan(_oracle_class(mixed)):
        """DF amplitudes: the measured ones projected onto the DF masks' span, clipped at 0,
        rescaled to the measured DF energy (what ``c`` and ``p`` store)."""

        def attach_patterns(self, patterns: np.ndarray, basis, shifts_px=None) -> None:
            """Measured ``(Rx, Ry, Qx, Qy)`` intensities and the basis they were compressed by."""
            patterns = _in_disk_frame(patterns, shifts_px)
            amplitude = np.sqrt(np.maximum(patterns, 0)).reshape(-1, patterns[0, 0].size)
            masks = basis.df_masks.reshape(basis.num_df, -1).astype(np.float64)
            projected = np.maximum((amplitude @ masks.T) @ masks, 0)
            region = basis.geometry.df.ravel()
            energy = (amplitude[:, region] ** 2).sum(1)
            kept = (projected[:, region] ** 2).sum(1)
            scale = np.sqrt(energy / np.maximum(kept, 1e-30))
            decoded = amplitude.copy()
            decoded[:, region] = projected[:, region] * scale[:, None]
            super().attach_patterns((decoded**2).reshape(patterns.shape))

    return DarkFieldInSpan


def _basis(case: dict, datacube, geometry):
    """The case's basis (``None`` for the plain run)."""
    import py4dstem_compressed as pc
    from py4dstem_compressed.bases.registry import build_basis

    name = case["basis"]
    if name == "plain":
        return None
    if name in ("bf_pixels", "all_pixels"):
        return pc.binning_basis(geometry, bf_bin=1)
    num_bf = case.get("num_bf") or 36
    if name == "df_pixels":
        return pc.zernike_basis(geometry, num_bf, 1)
    if name in ("zernike_bf_dp_df", "df_in_span"):  # Zernike BF + diffraction-pattern DF
        bf = pc.zernike_basis(geometry, num_bf, 1).bf_masks
        df = pc.diffraction_pattern_basis(datacube, geometry, 1, case["num_df"], seed=0).df_masks
        masks = np.concatenate([bf, df])
        return pc.Basis(masks, len(bf), len(df), geometry, kind="custom")
    if name == "suggested":
        return pc.suggest_basis(
            datacube, geometry, max_values_per_pattern=case["budget"], seed=0, progress_bar=False
        )
    family, num_df = name, case["num_df"]
    kwargs = {"num_bf": num_bf if family in ZERNIKE_BF else BF_MASKS[family], "num_df": num_df}
    if family != "zernike":
        kwargs["seed"] = 0
    return build_basis(family, geometry, datacube, **kwargs)


def run(case: dict) -> dict:
    """One case in this process: reconstruct, score at every requested iteration count."""
    import matplotlib

    matplotlib.use("Agg")
    from py4DSTEM.process.phase import MixedstateMultislicePtychography, MultislicePtychography

    import py4dstem_compressed as pc
    from py4dstem_compressed.analysis.evaluation import (
        KNOWN_ROTATION_PREPROCESS_KWARGS,
        score_reconstruction,
    )
    from py4dstem_compressed.simulation.datasets import simulate

    options = {"source_size": case["source_size"]} if case.get("source_size") else {}
    if case.get("descan"):
        options["descan_px"] = case["descan"]
    data = simulate(
        preset=case["preset"],
        kind=case["kind"],
        dose_per_area=case["dose"],
        progress_bar=False,
        **options,
    )
    if case.get("blur_shift"):  # every recorded pattern moved bilinearly (plain's re-sampling)
        from py4dstem_compressed.simulation.detector import shift_patterns

        patterns = np.asarray(data.datacube.data, dtype=np.float32)
        data.datacube.data = shift_patterns(patterns, case["blur_shift"]).astype(np.float32)
    kwargs = {**data.reconstruction_kwargs(), "object_type": "potential", "verbose": False}
    mixed = bool(case.get("num_probes"))
    if mixed:
        kwargs["num_probes"] = case["num_probes"]
    geometry = pc.DetectorGeometry.from_datacube(data.datacube)
    basis = _basis(case, data.datacube, geometry)
    if basis is None:
        plain = MixedstateMultislicePtychography if mixed else MultislicePtychography
        ptycho = plain(datacube=data.datacube, **kwargs)
    else:
        compressed = pc.compress(data.datacube, basis, progress_bar=False)
        if case.get("drop_norms"):  # oracle: what the perpendicular norms contribute
            compressed = without_perpendicular_norms(compressed)
        oracles = {
            "df_pixels": _oracle_class,
            "all_pixels": _oracle_class,
            "df_in_span": _span_oracle_class,
        }
        cls = oracles.get(case["basis"], _compressed_class)(mixed)
        ptycho = cls(datacube=compressed, **kwargs)
    ptycho.preprocess(**KNOWN_ROTATION_PREPROCESS_KWARGS)
    measured = np.asarray(data.datacube.data, dtype=np.float64)
    if case["basis"] in ("df_pixels", "all_pixels"):
        ptycho.attach_patterns(measured, compressed.descan_shift_px)
    elif case["basis"] == "df_in_span":
        ptycho.attach_patterns(measured, basis, compressed.descan_shift_px)
    scores, done, watch = {}, 0, Stopwatch()
    for total in case["iterations"]:
        ptycho.reconstruct(
            num_iter=total - done,
            max_batch_size=64,
            seed_random=0,
            progress_bar=False,
            reset=None if done == 0 else False,
            **({} if basis is None else case.get("reconstruct", {})),
        )
        done = total
        score = score_reconstruction(ptycho, data)
        scores[str(total)] = [float(score["ncc"]), float(score["ncc_band"])]
    values = None if basis is None else basis.num_masks + 2
    return {
        **case,
        "chosen": None if basis is None else [basis.kind, basis.num_bf, basis.num_df],
        "scores": scores,
        "values_per_pattern": values,
        "seconds": watch.lap(),
    }


def _label(row: dict) -> str:
    options = []
    if row.get("drop_norms"):
        options.append("no perpendicular norms")
    for key, value in (row.get("reconstruct") or {}).items():
        options.append(f"{key}={value}")
    suffix = f" ({', '.join(options)})" if options else ""
    return _basis_label(row) + suffix


def _basis_label(row: dict) -> str:
    num_bf = row.get("num_bf") or 36
    if row["basis"] in ("plain", "bf_pixels", "df_pixels", "all_pixels"):
        return {
            "plain": "uncompressed (plain py4DSTEM)",
            "bf_pixels": "oracle: BF pixels + 1 DF value",
            "all_pixels": "oracle: BF pixels + DF pixels (nothing compressed)",
            "df_pixels": f"oracle: Zernike {num_bf} BF + DF pixels",
        }[row["basis"]]
    if row["basis"] == "zernike_bf_dp_df":
        return f"Zernike {num_bf} BF + diffraction-pattern {row['num_df']} DF"
    if row["basis"] == "df_in_span":
        return f"oracle: Zernike {num_bf} BF + DF pixels in the span of {row['num_df']} DP DF masks"
    if row["basis"] == "suggested":
        kind, num_bf, num_df = row["chosen"]
        return f"suggested (<= {row['budget']} values): {kind} {num_bf}+{num_df}"
    num_bf = num_bf if row["basis"] in ZERNIKE_BF else BF_MASKS[row["basis"]]
    return f"{row['basis']} {num_bf}+{row['num_df']}"


def table(rows: list[dict]) -> str:
    """Markdown table: NCC / band-passed NCC (absolute and relative to plain) per count."""
    plain = next((r for r in rows if r["basis"] == "plain"), None)
    counts = sorted({int(k) for r in rows for k in r["scores"]})
    head = "| run | values | " + " | ".join(f"{n} it: NCC / band (rel.)" for n in counts)
    lines = [head + " |", "|---|---:|" + "---|" * len(counts)]
    for row in rows:
        cells = []
        for n in counts:
            ncc, band = row["scores"].get(str(n), [np.nan, np.nan])
            rel = ""
            if plain is not None and str(n) in plain["scores"]:
                p_ncc, p_band = plain["scores"][str(n)]
                rel = f" ({ncc / p_ncc:.3f} / {band / p_band:.3f})"
            cells.append(f"{ncc:.3f} / {band:.3f}{rel}")
        values = row["values_per_pattern"] or "all"
        lines.append(f"| {_label(row)} | {values} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--kind", default="2d")
    parser.add_argument("--dose", type=float, default=None, help="e/A^2; default noise-free")
    parser.add_argument(
        "--source-size", type=float, default=None, help="effective source sigma [A]; coherent"
    )
    parser.add_argument("--iterations", type=int, nargs="+", default=[30, 90])
    parser.add_argument("--families", nargs="+", default=list(BF_MASKS))
    parser.add_argument("--num-df", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--no-oracles", action="store_true")
    parser.add_argument("--oracles", nargs="+", default=list(ORACLES), choices=ORACLES)
    parser.add_argument(
        "--num-bf", type=int, default=36, help="Zernike BF masks of the Zernike-BF oracles"
    )
    parser.add_argument("--descan", type=float, default=0.0, help="linear descan drift [px]")
    parser.add_argument(
        "--blur-shift",
        type=float,
        default=0.0,
        help="move every recorded pattern by this many px, bilinearly (an oracle: the "
        "re-sampling plain py4DSTEM applies to drifting patterns, on any scan)",
    )
    parser.add_argument(
        "--num-probes", type=int, default=None, help="mixed state with this many probe modes"
    )
    parser.add_argument(
        "--drop-norms", action="store_true", help="compressed runs without perpendicular norms"
    )
    parser.add_argument(
        "--reconstruct-kwargs",
        type=json.loads,
        default=None,
        help="JSON keywords of the compressed runs' reconstruct() (an oracle), e.g. "
        "'{\"match_region_energy\": false}'",
    )
    parser.add_argument(
        "--suggested", type=int, nargs="*", default=[], help="budgets of suggest_basis rows"
    )
    parser.add_argument("--output", help="results JSON (default: benchmarks/results/...)")
    args = parser.parse_args(argv)
    if args.case:
        emit(run(json.loads(args.case)))
        return 0
    base = {"preset": args.preset, "kind": args.kind, "dose": args.dose}
    if args.source_size:
        base["source_size"] = args.source_size
    if args.descan:
        base["descan"] = args.descan
    if args.num_probes:
        base["num_probes"] = args.num_probes
    if args.blur_shift:
        base["blur_shift"] = args.blur_shift
    base["iterations"] = sorted(args.iterations)
    zernike_bf = {} if args.num_bf == 36 else {"num_bf": args.num_bf}
    cases = [{**base, "basis": "plain"}]
    if not args.no_oracles:
        cases += [
            {**base, "basis": name, **(zernike_bf if name == "df_pixels" else {})}
            for name in args.oracles
        ]
    cases += [
        {**base, "basis": family, "num_df": n, **(zernike_bf if family in ZERNIKE_BF else {})}
        for family in args.families
        for n in args.num_df
    ]
    cases += [{**base, "basis": "suggested", "budget": b} for b in args.suggested]
    compressed_options = {}
    if args.drop_norms:
        compressed_options["drop_norms"] = True
    if args.reconstruct_kwargs:
        compressed_options["reconstruct"] = args.reconstruct_kwargs
    cases = [c if c["basis"] == "plain" else {**c, **compressed_options} for c in cases]
    dose = "inf" if args.dose is None else f"{args.dose:g}"
    source = f"_source{args.source_size:g}" if args.source_size else ""
    source += f"_descan{args.descan:g}" if args.descan else ""
    source += f"_modes{args.num_probes}" if args.num_probes else ""
    source += f"_blur{args.blur_shift:g}" if args.blur_shift else ""
    name = f"thin_specimen_ladder_{args.preset}_{dose}{source}.json"
    output = Path(args.output or RESULTS / name)
    rows = json.loads(output.read_text()) if output.exists() else []
    for case in cases:
        names = ("basis", "num_df", "budget", "iterations", "dose", "kind", "source_size")
        names += ("drop_norms", "reconstruct", "num_bf", "descan", "num_probes", "blur_shift")
        key = {k: case.get(k) for k in names}
        if any({k: r.get(k) for k in key} == key for r in rows):
            continue  # measured already: delete the file (or the row) to measure again
        result = run_case(__file__, case)
        if "failed" in result:
            print(f"failed: {case}: {result['failed']}", flush=True)
            continue
        rows.append(result)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(rows, indent=1))
        print(json.dumps(rows[-1]), flush=True)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
