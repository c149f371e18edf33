import json

import py4dstem_compressed as pc
from py4dstem_compressed.cli import main


def test_demo_on_builtin_data(tmp_path, capsys):
    assert main(["demo", "--source", "synthetic", "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "zernike 36+1" in out and "diffraction-pattern 15+1" in out
    rows = json.loads((tmp_path / "metrics.json").read_text())["basis_survey"]
    assert {r["variant"] for r in rows} >= {"zernike 36+1", "PCA 15+1"}
    for row in rows:
        assert row["compression_ratio"] == 64 * 64 / (row["num_bf"] + row["num_df"] + 2)
        assert 0 <= row["mean_bf_angle_deg"] < 90
    assert (tmp_path / "angle_curves.png").stat().st_size > 0


def test_info_and_errors(datacube, geometry, tmp_path, capsys):
    path = tmp_path / "scan.h5"
    pc.compress(datacube, pc.zernike_basis(geometry, 10), progress_bar=False).save(path)
    assert main(["info", str(path)]) == 0
    assert "zernike basis: 10 BF + 1 DF" in capsys.readouterr().out
    assert main(["info", str(tmp_path / "missing.h5")]) == 2
    assert "no file" in capsys.readouterr().err
