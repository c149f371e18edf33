import json

import numpy as np
import pytest

from py4dstem_compressed.analysis.evaluation import bragg_frequencies
from py4dstem_compressed_cli import main


def test_demo_micro_writes_metrics_and_figures(tmp_path, monkeypatch, capsys):
    pytest.importorskip("abtem")
    monkeypatch.setenv("PY4DSTEM_COMPRESSED_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "demo"
    assert main(["demo", "--preset", "micro", "--num-iter", "2", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "uncompressed" in printed and "diffraction-pattern 15+1" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    rows = {r["variant"]: r for r in metrics["reconstructions"]["rows"]}
    assert rows["uncompressed"]["relative_ncc"] == 1.0
    done = [r for r in rows.values() if "error" not in r and r["variant"] != "uncompressed"]
    assert len(done) >= 3  # the micro detector is too small for 36 Zernike masks
    for row in done:
        assert row["compression_ratio"] > 1
        assert -1 <= row["ncc"] <= 1 and row["seconds_per_iteration"] > 0
        assert (out / "compressed").is_dir()
    for name in ("phase_maps", "fsc_curves", "quality_vs_compression", "angle_curves"):
        assert (out / f"{name}.png").stat().st_size > 1000
    assert "bf_deg" in metrics["angle_curves"]
    _assert_provenance(metrics["provenance"], preset="micro", num_iter=2)


def _assert_provenance(provenance, preset, num_iter):
    import importlib.metadata
    import platform

    import py4dstem_compressed as pc

    assert provenance["preset"] == preset and provenance["num_iter"] == num_iter
    assert provenance["kind"] == "crystal" and provenance["mode"] == "amplitude"
    assert provenance["preset_fields"]["scan_gpts"] == [8, 8]
    assert provenance["dose_per_area"] is None  # the demo's data are noise-free
    seeds = provenance["seeds"]
    for key in ("basis", "angle_curves", "reconstruction", "simulation_noise", "structure"):
        assert isinstance(seeds[key], int), key
    versions = provenance["versions"]
    assert versions == {
        "python": platform.python_version(),
        "py4dstem_compressed": pc.__version__,
        "py4DSTEM": importlib.metadata.version("py4DSTEM"),
        "numpy": np.__version__,
        "abtem": importlib.metadata.version("abtem"),
    }


def test_bragg_frequencies_of_a_lattice():
    sampling = 0.1
    x = np.arange(200) * sampling
    image = np.cos(2 * np.pi * x[:, None] / 4.0) + 0.5 * np.cos(2 * np.pi * x[None, :] / 2.5)
    freqs = bragg_frequencies(image, sampling, max_frequency=1.0)
    assert np.allclose(freqs, [0.25, 0.4], atol=2e-3)
