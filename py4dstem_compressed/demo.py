"""The main job: simulate a dataset, compress it with every basis family, reconstruct, report.

``py4dstem-compressed demo`` calls :func:`run_demo`: a basis survey (K, compression ratios,
basis angles), then uncompressed and compressed reconstructions scored against the ground
truth, written to ``metrics.json`` and PNG figures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

__all__ = [
    "SEED",
    "basis_survey",
    "build_basis",
    "default_variants",
    "format_table",
    "provenance",
    "reconstruction_table",
    "run_demo",
]

#: Seed of every random choice the demo makes besides the simulation's own: the synthetic
#: data, the patterns sampled for diffraction-pattern/PCA bases and for the angle curves.
SEED = 0
#: Budget of stored values per pattern (masks + 2 norms) of the demo's suggested basis
SUGGESTED_VALUES = 40


def default_variants(geometry) -> list[tuple[str, dict]]:
    """The basis variants the demo compares: ``(label, spec)`` pairs.

    The binning width is chosen so the BF disk holds about 45 bins, as the
    paper's 7 px bins did on its detector. The last variant is the basis
    :func:`~py4dstem_compressed.suggest_basis` chooses from the data for at most
    ``SUGGESTED_VALUES`` values per pattern (Zernike 36+1 stores 39).
    """
    bin_px = max(1, round(geometry.bf_radius * np.sqrt(np.pi / 45)))
    return [
        ("zernike 36+1", {"family": "zernike", "num_bf": 36, "num_df": 1}),
        (
            "zernike 45+22 (m=0 DF)",
            {"family": "zernike", "num_bf": 45, "num_df": 22, "df_rotationally_symmetric": True},
        ),
        (f"binning {bin_px} px+1", {"family": "binning", "bf_bin": bin_px}),
        ("diffraction-pattern 15+1", {"family": "diffraction_pattern", "num_bf": 15}),
        ("diffraction-pattern 8+1", {"family": "diffraction_pattern", "num_bf": 8}),
        ("PCA 15+1", {"family": "pca", "num_bf": 15}),
        (
            f"suggested (<= {SUGGESTED_VALUES} values)",
            {"family": "suggested", "max_values_per_pattern": SUGGESTED_VALUES},
        ),
    ]


def build_basis(spec: dict, datacube, geometry, mode: str = "amplitude", seed: int = SEED):
    """Build a basis from a variant spec (see :func:`default_variants`)."""
    from py4dstem_compressed.analysis.basis_suggestion import suggest_basis
    from py4dstem_compressed.bases.registry import basis_family, build_basis

    spec = dict(spec)
    name = spec.pop("family")
    if name == "suggested":
        return suggest_basis(datacube, geometry, seed=seed, mode=mode, progress_bar=False, **spec)
    family = basis_family(name)
    if family.needs_data:
        spec.update(seed=seed, mode=mode)
    return build_basis(family.name, geometry, datacube, **spec)


def basis_survey(datacube, geometry=None, mode: str = "amplitude", progress_bar: bool = False):
    """Compress ``datacube`` with each default variant; one row of figures per variant."""
    import py4dstem_compressed as pc

    geometry = geometry or pc.DetectorGeometry.from_datacube(datacube)
    rows = []
    for label, spec in default_variants(geometry):
        try:
            basis = build_basis(spec, datacube, geometry, mode)
        except ValueError as err:
            rows.append({"variant": label, "error": str(err)})
            continue
        compressed = pc.compress(datacube, basis, mode=mode, progress_bar=progress_bar)
        angles = pc.basis_angles(compressed)
        rows.append(
            {
                "variant": label,
                "num_bf": basis.num_bf,
                "num_df": basis.num_df,
                "compression_ratio": compressed.compression_ratio,
                "stored_compression_ratio": compressed.stored_compression_ratio,
                "mean_bf_angle_deg": float(np.degrees(angles.mean_bf)),
                "mean_df_angle_deg": float(np.degrees(angles.mean_df)),
            }
        )
    return rows


def format_table(rows: list[dict]) -> str:
    """Render survey rows as a fixed-width text table."""
    header = (
        f"{'variant':<26}{'K_bf':>5}{'K_df':>5}{'ratio':>9}{'stored':>9}{'BF deg':>9}{'DF deg':>9}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['variant']:<26}  skipped: {r['error']}")
            continue
        lines.append(
            f"{r['variant']:<26}{r['num_bf']:>5}{r['num_df']:>5}{r['compression_ratio']:>9.1f}"
            f"{r['stored_compression_ratio']:>9.1f}{r['mean_bf_angle_deg']:>9.2f}"
            f"{r['mean_df_angle_deg']:>9.2f}"
        )
    return "\n".join(lines)


def reconstruction_table(rows: list[dict]) -> str:
    """Render reconstruction rows as a fixed-width text table."""
    header = (
        f"{'variant':<26}{'ratio':>8}{'NCC':>7}{'rel':>7}{'band':>7}{'rel':>7}"
        f"{'FSC@Bragg':>10}{'s/iter':>8}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['variant']:<26}  failed: {r['error']}")
            continue
        lines.append(
            f"{r['variant']:<26}{r.get('compression_ratio', 1.0):>8.1f}{r['ncc']:>7.3f}"
            f"{r['relative_ncc']:>7.3f}{r['ncc_band']:>7.3f}{r['relative_ncc_band']:>7.3f}"
            f"{r['fsc_bragg_mean']:>10.3f}{r['seconds_per_iteration']:>8.2f}"
        )
    return "\n".join(lines)


def run_demo(
    preset: str = "tiny",
    kind: str = "crystal",
    source: str = "abtem",
    mode: str = "amplitude",
    output: str | None = "demo_output",
    num_iter: int = 30,
    reconstruct: bool = True,
    progress_bar: bool = True,
) -> dict:
    """The main job: simulate, compress with every basis family, reconstruct, compare.

    Parameters
    ----------
    preset : str
        abTEM dataset preset (``"micro"``, ``"tiny"``, ``"small"``, ``"paper"``).
    kind : {"crystal", "2d"}
        Thick crystal with point defects, or a 2D material with vacancies.
    source : {"abtem", "synthetic"}
        ``"synthetic"`` uses the NumPy forward model and only runs the basis survey.
    mode : {"amplitude", "intensity"}
        Compression mode.
    output : str, optional
        Folder for ``metrics.json``, the figures and the compressed files.
    num_iter : int
        Reconstruction iterations (uncompressed and compressed alike).
    reconstruct : bool
        Run the reconstructions (else only the basis survey).
    progress_bar : bool
        Show progress bars.

    Returns
    -------
    dict
        What ``metrics.json`` holds.
    """
    import py4dstem_compressed as pc

    out = Path(output) if output else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    if source == "synthetic":
        from py4dstem_compressed.simulation.synthetic import synthetic_datacube

        datacube = synthetic_datacube(
            scan_shape=(16, 16), detector_size=64, sampling=0.2, seed=SEED
        ).datacube
        dataset, what = None, "built-in NumPy forward model (16x16 positions, 64x64 px)"
    else:
        from py4dstem_compressed.simulation import datasets

        dataset = datasets.simulate(preset=preset, kind=kind, progress_bar=progress_bar)
        datacube, what = dataset.datacube, f"abTEM '{preset}' preset, {kind}"
    print(f"Data: {what}; shape {tuple(datacube.data.shape)}")
    geometry = pc.DetectorGeometry.from_datacube(datacube)
    print(
        f"Bright-field disk: centre ({geometry.center[0]:.2f}, {geometry.center[1]:.2f}) px, "
        f"radius {geometry.bf_radius:.2f} px"
    )
    survey = basis_survey(datacube, geometry, mode=mode)
    print(format_table(survey))
    metrics: dict = {
        "data": what,
        "shape": list(datacube.data.shape),
        "provenance": provenance(preset, kind, source, mode, num_iter, reconstruct, dataset),
        "basis_survey": survey,
    }
    if reconstruct and dataset is not None:
        metrics["reconstructions"] = _reconstructions(
            dataset, geometry, mode, num_iter, out, progress_bar
        )
        print(reconstruction_table(metrics["reconstructions"]["rows"]))
    if out:
        _write_outputs(out, metrics, datacube, geometry, mode, progress_bar)
    return metrics


def provenance(preset, kind, source, mode, num_iter, reconstruct, dataset=None) -> dict:
    """What reproduces a demo run: its settings, every seed and the package versions.

    Parameters
    ----------
    preset, kind, source, mode, num_iter, reconstruct
        The arguments of :func:`run_demo`.
    dataset : SimulatedDataset, optional
        The simulated data (``None`` for ``source="synthetic"``); supplies the simulation's
        noise and structure seeds, its dose and the preset's fields.

    Returns
    -------
    dict
        ``preset`` (name; ``None`` for the synthetic source), ``preset_fields``, ``kind``,
        ``source``, ``mode``, ``dose_per_area`` [e/A^2] (``None``: noise-free),
        ``num_iter`` (``None`` when nothing was reconstructed), ``seeds`` and ``versions``
        (python, py4dstem_compressed, py4DSTEM, numpy, abtem; ``None`` if not installed).
    """
    import platform

    import py4dstem_compressed as pc
    from py4dstem_compressed.analysis.evaluation import DEFAULT_RECONSTRUCT_KWARGS

    reconstructs = bool(reconstruct) and dataset is not None
    params = dataset.parameters if dataset is not None else {}
    seeds = {
        "basis": SEED,  # patterns sampled for the diffraction-pattern and PCA bases
        "angle_curves": SEED,
        "reconstruction": DEFAULT_RECONSTRUCT_KWARGS["seed_random"] if reconstructs else None,
    }
    if dataset is None:
        seeds["synthetic"] = SEED
    else:
        seeds["simulation_noise"] = params.get("seed")
        seeds["structure"] = params.get("structure_seed")
    return {
        "preset": preset if source != "synthetic" else None,
        "preset_fields": params.get("preset_fields"),
        "kind": kind if source != "synthetic" else None,
        "source": source,
        "mode": mode,
        "dose_per_area": params.get("dose_per_area"),
        "num_iter": num_iter if reconstructs else None,
        "seeds": seeds,
        "versions": {
            "python": platform.python_version(),
            "py4dstem_compressed": pc.__version__,
            "py4DSTEM": _installed_version("py4DSTEM"),
            "numpy": np.__version__,
            "abtem": _installed_version("abtem"),
        },
    }


def _installed_version(distribution: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _reconstructions(dataset, geometry, mode, num_iter, out, progress_bar) -> dict:
    import py4dstem_compressed as pc
    from py4dstem_compressed.analysis.evaluation import run_ptychography

    variants = default_variants(geometry)
    steps = tqdm(total=len(variants) + 1, desc="Reconstructions", disable=not progress_bar)
    plain = run_ptychography(dataset.datacube, dataset, num_iter)
    steps.update()
    reference = plain.scores
    results = {"uncompressed": plain}
    rows = [{"variant": "uncompressed", "compression_ratio": 1.0, **plain.summary()}]
    for label, spec in variants:
        steps.set_postfix_str(label)
        row = {"variant": label}
        try:
            basis = build_basis(spec, dataset.datacube, geometry, mode)
            compressed = pc.compress(dataset.datacube, basis, mode=mode, progress_bar=False)
            if out:  # reconstruct from the file alone, as a user would
                path = out / "compressed" / f"{_slug(label)}.h5"
                compressed.save(path, overwrite=True)
                compressed = pc.read_compressed(path)
            result = run_ptychography(compressed, dataset, num_iter)
        except Exception as err:  # one failing variant must not hide the others
            rows.append({**row, "error": f"{type(err).__name__}: {err}"})
            steps.update()
            continue
        results[label] = result
        row.update(
            num_bf=basis.num_bf,
            num_df=basis.num_df,
            compression_ratio=compressed.compression_ratio,
            stored_compression_ratio=compressed.stored_compression_ratio,
            **result.summary(),
        )
        rows.append(row)
        steps.update()
    steps.close()
    for row in rows:
        if "error" not in row:
            row["relative_ncc"] = row["ncc"] / reference["ncc"]
            row["relative_ncc_band"] = row["ncc_band"] / reference["ncc_band"]
    return {"num_iter": num_iter, "rows": rows, "_results": results}


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label).strip("_")


def _write_outputs(out: Path, metrics: dict, datacube, geometry, mode, progress_bar) -> None:
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import py4dstem_compressed as pc
    from py4dstem_compressed.analysis import plotting

    written = []
    recon = metrics.get("reconstructions")
    if recon:
        results = recon.pop("_results")
        truth = results["uncompressed"].scores["aligned_truth"]
        panels = {}
        for label, result in results.items():
            scores = result.scores
            image = scores["aligned_reconstruction"]
            if image.shape == truth.shape:
                panels[label] = (image, f"NCC {scores['ncc']:.3f}")
        sampling = results["uncompressed"].scores.get("sampling_angstrom", [None])[0]
        fig, _ = plotting.show_reconstruction_comparison(panels, truth, sampling=sampling)
        written.append(_save(fig, out / "phase_maps.png"))
        fig, _ = plotting.show_fsc_curves({k: r.scores["fsc"] for k, r in results.items()})
        written.append(_save(fig, out / "fsc_curves.png"))
        rows = [r for r in recon["rows"] if "error" not in r and r["variant"] != "uncompressed"]
        fig, _ = plotting.show_quality_vs_ratio(rows)
        written.append(_save(fig, out / "quality_vs_compression.png"))
    curves = pc.angle_curves(datacube, geometry, mode=mode, seed=SEED, progress_bar=progress_bar)
    fig, _ = curves.show()
    written.append(_save(fig, out / "angle_curves.png"))
    metrics["angle_curves"] = {
        region: {f: [ks.tolist(), np.degrees(m).tolist()] for f, (ks, m) in data.items()}
        for region, data in (("bf_deg", curves.bf), ("df_deg", curves.df))
    }
    path = out / "metrics.json"
    path.write_text(json.dumps(metrics, indent=2, default=_jsonable))
    written.append(path)
    plt.close("all")
    print("Wrote " + ", ".join(str(p) for p in written))


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=120)
    return path


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
