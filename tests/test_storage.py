import json
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

import py4dstem_compressed as pc
from py4dstem_compressed.storage.reading import NoCompressedDataError


@pytest.fixture(scope="module")
def compressed(datacube, geometry):
    basis = pc.diffraction_pattern_basis(datacube, geometry, 6, 2, seed=0)
    return pc.compress(datacube, basis, progress_bar=False)


def run_fresh(code: str) -> subprocess.CompletedProcess:
    """Run code in a fresh interpreter (nothing imported beforehand)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300
    )


def test_round_trip_in_fresh_process(compressed, tmp_path):
    path = tmp_path / "scan.h5"
    compressed.save(path)
    arrays = tmp_path / "expected.npz"
    np.savez(
        arrays,
        coefficients=compressed.coefficients,
        perpendicular=compressed.perpendicular_norms,
        edge=compressed.edge_intensity,
        total=compressed.total_intensity,
        com=compressed.center_of_mass,
        masks=compressed.basis.masks,
        positions=compressed.basis.positions,
    )
    result = run_fresh(
        f"""
        import json, numpy as np, py4DSTEM, py4dstem_compressed as pc
        data = py4DSTEM.read({str(path)!r})
        e = np.load({str(arrays)!r})
        assert type(data) is pc.CompressedDataCube, type(data)
        for got, key in [(data.coefficients, "coefficients"),
                         (data.perpendicular_norms, "perpendicular"),
                         (data.edge_intensity, "edge"), (data.total_intensity, "total"),
                         (data.center_of_mass, "com"), (data.basis.masks, "masks"),
                         (data.basis.positions, "positions")]:
            assert np.array_equal(got, e[key]), key
        b = data.basis
        print(json.dumps({{"mode": data.mode, "kind": b.kind, "num_bf": b.num_bf,
            "num_df": b.num_df,
            "params": b.parameters, "basis_mode": b.mode, "R": data.calibration.get_R_pixel_size(),
            "Q": data.calibration.get_Q_pixel_size(), "Qu": data.calibration.get_Q_pixel_units(),
            "center": list(b.geometry.center), "r": b.geometry.bf_radius,
            "version": data.package_version, "name": data.name}}))
        """
    )
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout.strip().splitlines()[-1])
    cal = compressed.calibration
    assert got["mode"] == "amplitude" and got["kind"] == "diffraction_pattern"
    assert (got["num_bf"], got["num_df"]) == (6, 2)
    assert got["params"] == compressed.basis.parameters and got["basis_mode"] == "amplitude"
    assert got["R"] == cal.get_R_pixel_size() and got["Q"] == cal.get_Q_pixel_size()
    assert got["Qu"] == "mrad"
    assert got["center"] == list(compressed.basis.geometry.center)
    assert got["r"] == compressed.basis.geometry.bf_radius
    assert got["version"] == pc.__version__ and got["name"] == compressed.name


def test_basis_round_trip_with_mask(geometry, tmp_path):
    import py4DSTEM

    mask = np.zeros((32, 32), bool)
    mask[3, 4] = True
    mask[16, 17] = True
    g = pc.DetectorGeometry(geometry.shape, geometry.center, geometry.bf_radius, 14.0, mask)
    basis = pc.zernike_basis(g, 10, 4, df_rotationally_symmetric=True)
    pc.save(tmp_path / "basis.h5", basis)
    back = py4DSTEM.read(str(tmp_path / "basis.h5"))
    assert isinstance(back, pc.Basis)
    assert np.array_equal(back.masks, basis.masks)
    assert back.geometry == g and np.array_equal(back.geometry.mask, mask)
    assert back.parameters == basis.parameters and back.positions is None


def test_py4dstem_save_also_works(compressed, tmp_path):
    import py4DSTEM

    path = tmp_path / "plain.h5"
    py4DSTEM.save(str(path), compressed)
    back = pc.read_compressed(path)
    assert np.array_equal(back.coefficients, compressed.coefficients)


def test_reading_without_the_plugin_says_what_to_do(compressed, tmp_path):
    path = tmp_path / "scan.h5"
    compressed.save(path)
    result = run_fresh(
        f"""
        import py4DSTEM
        py4DSTEM.read({str(path)!r})
        """
    )
    assert result.returncode != 0
    assert "import py4dstem_compressed" in result.stderr


def test_newer_format_version_is_refused(compressed, tmp_path):
    path = tmp_path / "scan.h5"
    compressed.save(path)
    with h5py.File(path, "r+") as f:
        stamps = []
        f.visititems(
            lambda n, o: stamps.append(n) if n.endswith("py4dstem_compressed_format") else None
        )
        for name in stamps:
            group = f[name]
            key = "format_version"
            value = group[key][()] if key in group else group.attrs[key]
            assert 1 <= value <= pc.FORMAT_VERSION  # the lowest version that fits
            if key in group:
                del group[key]
                group[key] = pc.FORMAT_VERSION + 1
            else:
                group.attrs[key] = pc.FORMAT_VERSION + 1
    with pytest.raises(ValueError, match="newer|Upgrade"):
        pc.read_compressed(path)


SAVE_LARGE = """
import sys
import numpy as np
import py4dstem_compressed as pc

geometry = pc.DetectorGeometry((32, 32), (16.0, 16.0), 7.7)
basis = pc.zernike_basis(geometry, 40, 1)
rng = np.random.default_rng(0)
scan = (512, 512)
large = pc.CompressedDataCube(
    coefficients=rng.random((*scan, basis.num_masks), np.float32),  # 43 MB, incompressible
    perpendicular_norms=rng.random((*scan, 2), np.float32),
    edge_intensity=np.zeros(scan, np.float32),
    total_intensity=np.ones(scan, np.float32),
    center_of_mass=np.full((*scan, 2), 16.0, np.float32),
    basis=basis,
    mode="amplitude",
)
print("saving", flush=True)
large.save(sys.argv[1], overwrite=True)
print("saved", flush=True)
"""


def _listing(folder) -> set:
    """Names, sizes and modification times of the files in ``folder``."""
    found = set()
    for p in folder.iterdir():
        try:
            stat = p.stat()
        except FileNotFoundError:  # removed while listing
            continue
        found.add((p.name, stat.st_size, stat.st_mtime_ns))
    return found


@pytest.mark.slow
def test_save_killed_midway_leaves_the_old_file(compressed, tmp_path):
    """SIGKILL a real process while it saves over a file: the old file stays whole."""
    import os
    import signal
    import time

    path = tmp_path / "scan.h5"
    compressed.save(path)
    before = path.read_bytes()
    initial = _listing(tmp_path)
    child = subprocess.Popen(
        [sys.executable, "-c", SAVE_LARGE, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "saving"
        deadline = time.monotonic() + 120
        while _listing(tmp_path) == initial:  # wait until the save touches the folder
            assert child.poll() is None, "the save ended before it could be interrupted"
            assert time.monotonic() < deadline
            time.sleep(0.001)
        time.sleep(0.05)  # part of the data written
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    assert path.read_bytes() == before  # not replaced by a partial file
    back = pc.read_compressed(path)
    assert np.array_equal(back.coefficients, compressed.coefficients)
    # only the hidden temporary the killed process could not remove is left beside it
    others = [p.name for p in tmp_path.iterdir() if p.name != "scan.h5"]
    assert all(name.startswith(".scan.h5.") and name.endswith(".tmp") for name in others)


def test_existing_target_needs_overwrite(compressed, tmp_path):
    path = tmp_path / "scan.h5"
    compressed.save(path)
    with pytest.raises(FileExistsError, match="overwrite"):
        compressed.save(path)
    compressed.save(path, overwrite=True)


def test_truncated_or_foreign_files_give_clear_errors(compressed, tmp_path):
    path = tmp_path / "scan.h5"
    compressed.save(path)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match=r"truncated.h5 is truncated .*Copy or write it again"):
        pc.read_compressed(truncated)
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    with pytest.raises(ValueError, match="not a readable HDF5"):
        pc.read_compressed(text)
    with pytest.raises(FileNotFoundError):
        pc.read_compressed(tmp_path / "missing.h5")
    damaged = tmp_path / "damaged.h5"
    damaged.write_bytes(data)
    with h5py.File(damaged, "r+") as f:
        names = []
        f.visititems(lambda n, o: names.append(n) if n.endswith("_coefficients") else None)
        del f[names[0]]
    with pytest.raises(ValueError, match="truncated or damaged"):
        pc.read_compressed(damaged)


def test_wrong_shapes_rejected(compressed):
    with pytest.raises(ValueError, match="perpendicular_norms"):
        pc.CompressedDataCube(
            compressed.coefficients,
            compressed.perpendicular_norms[..., :1],
            compressed.edge_intensity,
            compressed.total_intensity,
            compressed.center_of_mass,
            compressed.basis,
        )


@pytest.fixture(scope="module")
def no_compressed_data(datacube, geometry, tmp_path_factory):
    """A valid EMD file holding a plain DataCube, and one holding only a Basis."""
    import py4DSTEM

    folder = tmp_path_factory.mktemp("foreign")
    plain = folder / "plain_datacube.h5"
    py4DSTEM.save(str(plain), datacube)
    basis = folder / "basis_only.h5"
    pc.save(basis, pc.zernike_basis(geometry, 6, 1))
    return {"DataCube": plain, "Basis": basis}


@pytest.mark.parametrize("kind", ["DataCube", "Basis"])
def test_file_without_compressed_data_says_what_it_holds(no_compressed_data, geometry, kind):
    path = no_compressed_data[kind]
    with pytest.raises(NoCompressedDataError) as err:
        pc.read_compressed(path)
    message = str(err.value)
    assert str(path) in message and "holds no CompressedDataCube" in message
    assert f"({kind})" in message  # what the file holds, with its class
    assert "py4dstem-compressed compress" in message  # what was expected / what to do
    basis = pc.zernike_basis(geometry, 6, 1)
    with pytest.raises(NoCompressedDataError, match=rf"\({kind}\).*overwrite=True"):
        pc.open_compressed_writer(path, basis, (2, 2))


def test_datapath_without_compressed_data_is_named(compressed, tmp_path):
    path = tmp_path / "scan.h5"
    compressed.save(path)
    with pytest.raises(NoCompressedDataError, match="datapath='nowhere'"):
        pc.read_compressed(path, datapath="nowhere")
    back = pc.read_compressed(path, datapath=f"py4DSTEM_root/{compressed.name}")
    assert np.array_equal(back.coefficients, compressed.coefficients)
