"""benchmarks/lead_figure.py: the README's first picture, drawn from stored benchmark results."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    if str(ROOT / "benchmarks") not in sys.path:  # the scripts import the harness beside them
        sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def lead_figure():
    return _load("lead_figure")


@pytest.fixture
def stored(tmp_path):
    """Rows and an image file in the layout ``reconstruction_quality.py --save-images`` writes."""
    rng = np.random.default_rng(0)
    truth = rng.random((30, 32)).astype(np.float16)
    base = {"preset": "small", "kind": "crystal", "dose": None, "descan": 0.0, "iterations": 30}
    rows, images = [], {}
    for n, (basis, ratio, ncc) in enumerate(
        [("uncompressed", None, 0.957), ("zernike36", 420.1, 0.960), ("dp15", 910.2, 0.955)]
    ):
        key = f"crystal_inf_0_{basis}"
        row = {**base, "basis": basis, "ncc": ncc, "fsc_bragg_mean": 0.99, "images_key": key}
        if ratio:
            row.update(compression_ratio=ratio, ncc_relative=ncc / 0.957)
        rows.append(row)
        images[f"{key}/reconstruction"] = (truth * 0.01 + n).astype(np.float16)
        images[f"{key}/truth"] = truth
        images[f"{key}/sampling"] = np.array([0.1, 0.1])
        images[f"{key}/vacancies_px"] = np.array([[10.0, 12.0], [100.0, 3.0]])
    rows.append({**base, "dose": 2e4, "basis": "uncompressed", "ncc": 0.9})  # other condition
    results, npz = tmp_path / "rows.json", tmp_path / "images.npz"
    results.write_text(json.dumps(rows))
    np.savez_compressed(npz, **images)
    return results, npz


def test_lead_figure_titles_carry_ratio_and_scores_and_circle_the_vacancies(
    lead_figure, stored, tmp_path, capsys
):
    results, npz = stored
    output = tmp_path / "lead.png"
    argv = ["--results", str(results), "--images", str(npz), "-o", str(output)]
    assert lead_figure.main(argv) == 0
    assert output.stat().st_size > 10_000
    rows = lead_figure.select_rows(
        json.loads(results.read_text()), "crystal", None, ["uncompressed", "zernike36", "dp15"]
    )
    with np.load(npz) as images:
        fig, axes = lead_figure.draw(rows, images)
    titles = [ax.get_title() for ax in axes.ravel()]
    assert titles[0].startswith("ground truth")
    assert "ratio 420" in titles[2] and "NCC 0.960" in titles[2]
    assert "ratio 910" in titles[3] and "NCC 0.955" in titles[3]
    assert "NCC 0.957" in titles[1]
    for ax in axes.ravel():  # the vacancy on the images is circled, the one off them is not
        assert [p.center for p in ax.patches] == [(12.0, 10.0)]
    labels = [ax.get_ylabel() for ax in fig.axes if ax not in axes.ravel()]
    assert any("rad" in label for label in labels)
    assert "24x24 positions" in fig._suptitle.get_text()
    printed = capsys.readouterr().out
    assert "![" in printed and "NCC 0.957" in printed and "ratio 420" in printed


def test_lead_figure_says_which_run_is_missing(lead_figure, stored):
    results, npz = stored
    with pytest.raises(ValueError, match=r"no stored images for basis \['pca15'\].*--save-images"):
        lead_figure.main(
            ["--results", str(results), "--images", str(npz), "--bases", "uncompressed", "pca15"]
        )


def test_reconstruction_benchmark_stores_registered_images(tmp_path, monkeypatch):
    pytest.importorskip("abtem")
    monkeypatch.setenv("PY4DSTEM_COMPRESSED_CACHE", str(tmp_path / "cache"))
    benchmark = _load("reconstruction_quality")
    results, npz = tmp_path / "rows.json", tmp_path / "images.npz"
    argv = ["--preset", "micro", "--iterations", "1", "--kinds", "crystal", "--doses", "inf"]
    argv += ["--bases", "binning7", "--output", str(results), "--save-images", str(npz)]
    assert benchmark.main(argv) == 0
    rows = json.loads(results.read_text())
    assert [r["images_key"] for r in rows] == [
        "crystal_inf_0_uncompressed",
        "crystal_inf_0_binning7",
    ]
    with np.load(npz) as images:
        for row in rows:
            key = row["images_key"]
            recon, truth = images[f"{key}/reconstruction"], images[f"{key}/truth"]
            assert recon.dtype == truth.dtype == np.float16
            assert recon.shape == truth.shape and recon.ndim == 2
            # the stored pair is the one that was scored: its correlation is the row's NCC
            a = recon.astype(float) - recon.mean()
            b = truth.astype(float) - truth.mean()
            ncc = (a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum())
            assert ncc == pytest.approx(row["ncc"], abs=2e-3)
            assert images[f"{key}/vacancies_px"].shape == (1, 2)  # micro: one vacancy
            assert np.all(images[f"{key}/sampling"] > 0)
