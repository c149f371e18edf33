import json
import subprocess
import sys
import tempfile

import py4dstem_compressed as pc
from py4dstem_compressed_cli import main


def test_demo_on_builtin_data(tmp_path, capsys):
    assert main(["demo", "--source", "synthetic", "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "zernike 36+1" in out and "diffraction-pattern 15+1" in out
    rows = json.loads((tmp_path / "metrics.json").read_text())["basis_survey"]
    assert {r["variant"] for r in rows} >= {"zernike 36+1", "PCA 15+1"}
    suggested = next(r for r in rows if r["variant"] == "suggested (<= 40 values)")
    assert suggested["num_bf"] + suggested["num_df"] + 2 <= 40
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
    assert back.intensity_per_count == expected.intensity_per_count  # measured the same way
    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "64 of 64 complete" in info and "bytes on disk" in info and "_coefficients" in info
    assert "filter blosc/zstd" in info  # the lossless filter is named, not "unknown"
    assert main([*args, "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    dp = ["--basis", "dp", "--num-bf", "6", "--mode", "intensity", "--seed", "3", "--overwrite"]
    assert main([*args[:4], *dp, "--intensity-per-count", "2.5", "--quiet"]) == 0
    assert pc.read_compressed(out).basis.kind == "diffraction_pattern"
    assert pc.read_compressed(out).intensity_per_count == 2.5
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
                "--bin-px",
                "3",
            ]
        )
        == 2
    )
    assert "unknown input format" in capsys.readouterr().err


def _compress_args(datacube, tmp_path):
    import numpy as np

    source = tmp_path / "scan.npy"
    np.save(source, datacube.data)
    return ["compress", str(source), "--quiet"]


def test_compress_refuses_bad_options_before_compressing(datacube, tmp_path, capsys):
    args = _compress_args(datacube, tmp_path)
    zernike = ["--basis", "zernike", "--num-bf", "10"]
    bad = [
        (["-o", str(tmp_path), *zernike], "is a directory"),
        (["-o", str(tmp_path / "no" / "x.h5"), *zernike], "no folder"),
        (["-o", str(tmp_path / "x.h5"), *zernike, "--memory-mib", "0"], "--memory-mib"),
        (["-o", str(tmp_path / "x.h5"), *zernike, "--memory-mib", "-5"], "--memory-mib"),
        (["-o", str(tmp_path / "x.h5"), "--basis", "binning", "--num-bf", "3"], "--bin-px"),
        (["-o", str(tmp_path / "x.h5"), *zernike, "--bin-px", "3"], "binning only"),
    ]
    for extra, message in bad:
        assert main([*args, *extra]) == 2, extra
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and "Traceback" not in err
        assert not (tmp_path / "x.h5").exists()
    assert main([*args, "-o", str(tmp_path / "b.h5"), "--basis", "binning", "--bin-px", "4"]) == 0
    assert pc.read_compressed(tmp_path / "b.h5").basis.parameters["bf_bin"] == 4


def test_library_errors_exit_2_without_traceback(tmp_path, capsys):
    not_hdf5 = tmp_path / "junk.h5"
    not_hdf5.write_bytes(b"not an hdf5 file")
    assert main(["info", str(not_hdf5)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1


def test_help_shows_defaults_choices_and_version(capsys):
    import pytest

    for argv in (["--help"], ["compress", "--help"], ["demo", "--help"], ["info", "--help"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 0
        text = capsys.readouterr().out
        assert "``" not in text and ":func:" not in text
        if argv == ["compress", "--help"]:
            assert "(default: amplitude)" in text and "--bin-px" in text
            assert "mask family" in text and "bin width [px]" in text
        if argv == ["demo", "--help"]:
            assert "(default: crystal)" in text and "(default: abtem)" in text
        if argv == ["info", "--help"]:
            assert "compressed EMD file" in text
    with pytest.raises(SystemExit):
        main(["--version"])
    assert pc.__version__ in capsys.readouterr().out


def test_masks_stored_compressed_and_info_reports_data_and_basis_bytes(
    datacube, geometry, tmp_path, capsys
):
    import h5py
    import numpy as np

    path = tmp_path / "scan.h5"
    compressed = pc.compress(datacube, pc.zernike_basis(geometry, 10), progress_bar=False)
    compressed.save(path)
    with h5py.File(path, "r") as f:
        masks = []
        f.visititems(lambda n, o: masks.append(o) if n.endswith("_masks/data") else None)
        assert len(masks) == 1 and masks[0].id.get_create_plist().get_nfilters() >= 1
        assert masks[0].id.get_storage_size() < masks[0].size * 4 / 2
    assert np.array_equal(pc.read_compressed(path).basis.masks, compressed.basis.masks)
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "per-pattern values" in out and "basis (masks)" in out
    assert "the compression ratio counts per-pattern values only" in out


def test_files_with_unfiltered_masks_still_read(datacube, geometry, tmp_path):
    """Files written before the masks were filtered (plain datasets) read the same."""
    import h5py
    import numpy as np

    path = tmp_path / "scan.h5"
    compressed = pc.compress(datacube, pc.zernike_basis(geometry, 10), progress_bar=False)
    compressed.save(path)
    with h5py.File(path, "r+") as f:
        names = []
        f.visititems(lambda n, o: names.append(n) if n.endswith("_masks/data") else None)
        data, attrs = f[names[0]][...], dict(f[names[0]].attrs)
        del f[names[0]]
        f.create_dataset(names[0], data=data)  # the old, unfiltered layout
        f[names[0]].attrs.update(attrs)
        assert f[names[0]].id.get_create_plist().get_nfilters() == 0
    assert np.array_equal(pc.read_compressed(path).basis.masks, compressed.basis.masks)


def test_help_and_version_do_not_import_py4dstem():
    """``--help`` took 5 s because the package (and so py4DSTEM) was imported first."""
    code = (
        "import sys, py4dstem_compressed_cli as cli\n"
        "for argv in (['--help'], ['--version'], ['compress', '--help']):\n"
        "    try:\n"
        "        cli.main(argv)\n"
        "    except SystemExit as exit:\n"
        "        assert exit.code == 0, exit.code\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('py4DSTEM', 'py4dstem_compressed'))\n"
        "assert not loaded, loaded\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tempfile.gettempdir()
    )
    assert out.returncode == 0, out.stderr
    assert "py4dstem-compressed 0." in out.stdout
