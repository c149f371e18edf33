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


def test_compress_round_trip_and_errors(datacube, tmp_path, capsys):
    import numpy as np

    source = tmp_path / "scan.npy"
    np.save(source, datacube.data)
    out = tmp_path / "scan.h5"
    args = ["compress", str(source), "-o", str(out), "--basis", "zernike", "--num-bf", "10"]
    assert main([*args, "--quiet"]) == 0
    assert "10 BF + 1 DF" in capsys.readouterr().out
    back = pc.read_compressed(out)
    geometry = back.basis.geometry
    expected = pc.compress(datacube, pc.zernike_basis(geometry, 10), progress_bar=False)
    assert np.allclose(back.coefficients, expected.coefficients, rtol=1e-5, atol=1e-3)
    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "64 of 64 complete" in info and "bytes on disk" in info and "_coefficients" in info
    assert "filter blosc/zstd" in info  # the lossless filter is named, not "unknown"
    assert main([*args, "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    dp = ["--basis", "dp", "--num-bf", "6", "--mode", "intensity", "--seed", "3", "--overwrite"]
    assert main([*args[:4], *dp, "--quiet"]) == 0
    assert pc.read_compressed(out).basis.kind == "diffraction_pattern"
    capsys.readouterr()
    assert (
        main(
            [
                "compress",
                str(tmp_path / "nope.npy"),
                "-o",
                str(tmp_path / "x.h5"),
                "--basis",
                "pca",
                "--num-bf",
                "5",
            ]
        )
        == 2
    )
    assert "no file" in capsys.readouterr().err
    (tmp_path / "scan.tif").write_bytes(b"II*\x00")
    assert (
        main(
            [
                "compress",
                str(tmp_path / "scan.tif"),
                "-o",
                str(tmp_path / "x.h5"),
                "--basis",
                "binning",
                "--num-bf",
                "3",
            ]
        )
        == 2
    )
    assert "unknown input format" in capsys.readouterr().err
