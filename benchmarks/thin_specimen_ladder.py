"""Where a thin specimen's information is lost: an oracle ladder over the dark-field masks.

Runs on the abTEM ``small`` MoS2 monolayer (128x128 px detector), noise-free or at a dose,
each case in its own process, scored after 30 and 90 iterations (one run continued):

* ``plain``: py4DSTEM's ``MultislicePtychography`` on every pixel;
* oracles, each giving the reconstruction back one piece of the uncompressed data:
  ``df_pixels`` (Zernike 36 BF masks, every dark-field pixel measured: the data step
  replaces the dark-field amplitudes by the measured ones, as py4DSTEM does) and
  ``bf_pixels`` (every bright-field pixel as a mask, one uniform dark-field mask);
  ``df_in_span`` (Zernike 36 BF masks and N diffraction-pattern DF masks; the data step's
  dark-field amplitudes are the measured ones projected onto the span of the DF masks,
  clipped at 0 and rescaled to the measured DF energy: a decoding of the stored values
  alone, ``c`` and ``c^2 + p^2``, that bypasses the data step: if it reconstructs no
  better than the data step, what the masks miss is missing from the file);
* the ladder: ``zernike`` (36 BF masks, azimuthal Zernike DF masks), ``diffraction_pattern``
  and ``pca`` (15 BF masks) with N = 1, 2, 4, 8, 16, 32 dark-field masks;
* ``--families zernike_bf_dp_df``: Zernike 36 BF masks with N diffraction-pattern DF masks;
* ``--suggested 40 20``: the bases :func:`py4dstem_compressed.suggest_basis` picks within
  those budgets of stored values per pattern.

Results go to ``benchmarks/results/thin_specimen_ladder_<preset>_<dose>.json`` and a
Markdown table is printed.

Usage::

    python benchmarks/thin_specimen_ladder.py                       # noise-free ladder
    python benchmarks/thin_specimen_ladder.py --dose 2e4 --iterations 30
    python benchmarks/thin_specimen_ladder.py --families zernike --num-df 1 16 --no-oracles
    python benchmarks/thin_specimen_ladder.py --dose 2e4 --source-size 0.3 --iterations 30 \
        --families zernike --num-df 1      # oracles on partially coherent data
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


def _oracle_class():
    """The compressed class with every dark-field pixel measured (the ``df_pixels`` oracle)."""
    from py4dstem_compressed.reconstruction.ptychography import CompressedMultislicePtychography

    class DarkFieldPixels(CompressedMultislicePtychography):
        """BF from the coefficients; DF amplitudes replaced by the measured ones."""

        def attach_patterns(self, patterns: np.ndarray) -> None:
            """Measured ``(Rx, Ry, Qx, Qy)`` intensities, in the reconstruction's frame."""
            shift = tuple(-o for o in self._descan_origin_px)
            flat = np.roll(patterns, shift, axis=(-2, -1)).reshape(-1, patterns[0, 0].size)
            self._df_amplitudes = np.sqrt(np.maximum(flat, 0) / self._intensity_unit)
            index = np.arange(len(flat), dtype=np.float32)[:, None]
            rows = np.concatenate([np.asarray(self._compressed_rows), index], axis=1)
            self._compressed_rows = rows.astype(np.float32)  # extra column: the position

        def _fourier_data_step(self, rows, waves, options=None, step=fourier_projection):
            modified, fourier_waves, ramp, error = super()._fourier_data_step(rows, waves, options)
            measured = self._df_amplitudes[rows[:, -1].astype(int)]
            measured = measured.reshape(fourier_waves.shape).astype(np.float32)
            amplitude = np.abs(fourier_waves)
            phasor = np.where(amplitude > 0, fourier_waves / np.maximum(amplitude, 1e-30), 1)
            dark = np.asarray(self._operator.region_maps[1]).reshape(fourier_waves.shape[-2:])
            modified = np.where(dark > 0, measured * phasor, modified)
            if step is fourier_difference:
                return modified - fourier_waves, fourier_waves, ramp, error
            return modified, fourier_waves, ramp, error

    return DarkFieldPixels


def _span_oracle_class():
    """The ``df_in_span`` oracle: DF amplitudes decoded from the stored DF values alone."""

    class DarkFieldInSpan(_oracle_class()):
        """DF amplitudes: the measured ones projected onto the DF masks' span, clipped at 0,
        rescaled to the measured DF energy (what ``c`` and ``p`` store)."""

        def attach_patterns(self, patterns: np.ndarray, basis) -> None:
            """Measured ``(Rx, Ry, Qx, Qy)`` intensities and the basis they were compressed by."""
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
    if name == "bf_pixels":
        return pc.binning_basis(geometry, bf_bin=1)
    if name == "df_pixels":
        return pc.zernike_basis(geometry, 36, 1)
    if name in ("zernike_bf_dp_df", "df_in_span"):  # Zernike 36 BF + diffraction-pattern DF
        bf = pc.zernike_basis(geometry, 36, 1).bf_masks
        df = pc.diffraction_pattern_basis(datacube, geometry, 1, case["num_df"], seed=0).df_masks
        masks = np.concatenate([bf, df])
        return pc.Basis(masks, len(bf), len(df), geometry, kind="custom")
    if name == "suggested":
        return pc.suggest_basis(
            datacube, geometry, max_values_per_pattern=case["budget"], seed=0, progress_bar=False
        )
    family, num_df = name, case["num_df"]
    kwargs = {"num_bf": BF_MASKS[family], "num_df": num_df}
    if family != "zernike":
        kwargs["seed"] = 0
    return build_basis(family, geometry, datacube, **kwargs)


def run(case: dict) -> dict:
    """One case in this process: reconstruct, score at every requested iteration count."""
    import matplotlib

    matplotlib.use("Agg")
    from py4DSTEM.process.phase import MultislicePtychography

    import py4dstem_compressed as pc
    from py4dstem_compressed.analysis.evaluation import (
        KNOWN_ROTATION_PREPROCESS_KWARGS,
        score_reconstruction,
    )
    from py4dstem_compressed.simulation.datasets import simulate

    source = {"source_size": case["source_size"]} if case.get("source_size") else {}
    data = simulate(
        preset=case["preset"],
        kind=case["kind"],
        dose_per_area=case["dose"],
        progress_bar=False,
        **source,
    )
    kwargs = {**data.reconstruction_kwargs(), "object_type": "potential", "verbose": False}
    geometry = pc.DetectorGeometry.from_datacube(data.datacube)
    basis = _basis(case, data.datacube, geometry)
    if basis is None:
        ptycho = MultislicePtychography(datacube=data.datacube, **kwargs)
    else:
        compressed = pc.compress(data.datacube, basis, progress_bar=False)
        if case.get("drop_norms"):  # oracle: what the perpendicular norms contribute
            compressed = without_perpendicular_norms(compressed)
        cls = {"df_pixels": _oracle_class(), "df_in_span": _span_oracle_class()}.get(
            case["basis"], pc.CompressedMultislicePtychography
        )
        ptycho = cls(datacube=compressed, **kwargs)
    ptycho.preprocess(**KNOWN_ROTATION_PREPROCESS_KWARGS)
    measured = np.asarray(data.datacube.data, dtype=np.float64)
    if case["basis"] == "df_pixels":
        ptycho.attach_patterns(measured)
    elif case["basis"] == "df_in_span":
        ptycho.attach_patterns(measured, basis)
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
    if row["basis"] in ("plain", "bf_pixels", "df_pixels"):
        return {
            "plain": "uncompressed (plain py4DSTEM)",
            "bf_pixels": "oracle: BF pixels + 1 DF value",
            "df_pixels": "oracle: Zernike 36 BF + DF pixels",
        }[row["basis"]]
    if row["basis"] == "zernike_bf_dp_df":
        return f"Zernike 36 BF + diffraction-pattern {row['num_df']} DF"
    if row["basis"] == "df_in_span":
        return f"oracle: Zernike 36 BF + DF pixels in the span of {row['num_df']} DP DF masks"
    if row["basis"] == "suggested":
        kind, num_bf, num_df = row["chosen"]
        return f"suggested (<= {row['budget']} values): {kind} {num_bf}+{num_df}"
    return f"{row['basis']} {BF_MASKS[row['basis']]}+{row['num_df']}"


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
    base["iterations"] = sorted(args.iterations)
    cases = [{**base, "basis": "plain"}]
    if not args.no_oracles:
        cases += [{**base, "basis": "df_pixels"}, {**base, "basis": "bf_pixels"}]
    cases += [
        {**base, "basis": family, "num_df": n} for family in args.families for n in args.num_df
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
    name = f"thin_specimen_ladder_{args.preset}_{dose}{source}.json"
    output = Path(args.output or RESULTS / name)
    rows = json.loads(output.read_text()) if output.exists() else []
    for case in cases:
        names = ("basis", "num_df", "budget", "iterations", "dose", "kind", "source_size")
        names += ("drop_norms", "reconstruct")
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
