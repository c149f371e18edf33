"""Files that cannot be used as they are: clear errors from the API and the CLI."""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

import py4dstem_compressed as pc
from py4dstem_compressed.compression.writer import CompressedWriter, open_compressed_writer
from py4dstem_compressed.storage.reading import FileLockedError, NoCompressedDataError
from py4dstem_compressed_cli import main


@pytest.fixture(scope="module")
def basis(geometry):
    return pc.zernike_basis(geometry, 10, 1)


@pytest.fixture(scope="module")
def plain_datacube(datacube, tmp_path_factory):
    import py4DSTEM

    path = tmp_path_factory.mktemp("plain") / "plain_datacube.h5"
    py4DSTEM.save(str(path), datacube)
    return path


def test_cli_info_on_a_plain_datacube_exits_2_with_the_message(plain_datacube, capsys):
    assert main(["info", str(plain_datacube)]) == 2
    err = capsys.readouterr().err
    assert "holds no CompressedDataCube" in err and "(DataCube)" in err
    result = subprocess.run(
        [sys.executable, "-m", "py4dstem_compressed", "info", str(plain_datacube)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 2, result.stderr
    assert f"{plain_datacube} holds no CompressedDataCube" in result.stderr
    assert "datacube_root/datacube (DataCube)" in result.stderr
    assert "Traceback" not in result.stderr


def hold_open(path, mode: str = "r+"):
    """Fork a process that keeps ``path`` open with h5py; return its pid once it holds it."""
    import h5py

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (child)
        try:
            handle = h5py.File(path, mode)
            os.write(write, b"1")
            signal.pause()
            handle.close()
        finally:
            os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.close(read)
    return pid


def release(pid) -> None:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def test_file_held_open_by_another_process(datacube, basis, tmp_path):
    path = tmp_path / "live.h5"
    with open_compressed_writer(path, basis, (8, 8)) as writer:
        writer.write(datacube.data.reshape(64, 32, 32)[:8])
    pid = hold_open(path)
    try:
        expected = rf"{path} is locked: another process holds it open"
        with pytest.raises(FileLockedError, match=expected):
            pc.read_compressed(path)
        with pytest.raises(FileLockedError, match=expected):
            open_compressed_writer(path, basis, (8, 8))  # resume
        with pytest.raises(FileLockedError, match=expected):
            open_compressed_writer(path, basis, (8, 8), overwrite=True)
    finally:
        release(pid)
    pid = hold_open(path, "r")  # a reader blocks the writer too
    try:
        with pytest.raises(FileLockedError, match=expected):
            CompressedWriter(path, basis, (8, 8), "amplitude", True, True, "none", True)
    finally:
        release(pid)
    assert pc.read_compressed(path).num_complete == 8  # untouched


def test_reopening_removes_stale_temporary_files(datacube, basis, tmp_path):
    path = tmp_path / "live.h5"
    with open_compressed_writer(path, basis, (8, 8)) as writer:
        writer.write(datacube.data.reshape(64, 32, 32)[:8])
    stale = [tmp_path / ".live.h5.k2v9x1.tmp", tmp_path / ".live.h5.finalize.tmp"]
    stale[0].write_bytes(b"half an HDF5 file")  # from a killed save
    pc.save(stale[1], pc.read_compressed(path))  # a complete one from a killed finalize
    busy = tmp_path / ".live.h5.busy.tmp"
    pc.save(busy, pc.read_compressed(path))
    other = tmp_path / ".other.h5.k2v9x1.tmp"
    other.write_bytes(b"someone else's")
    pid = hold_open(busy)  # being written right now: kept
    try:
        with open_compressed_writer(path, basis, (8, 8)) as writer:
            assert writer.num_complete == 8
    finally:
        release(pid)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([".live.h5.busy.tmp", ".other.h5.k2v9x1.tmp", "live.h5"])
    assert np.isnan(pc.read_compressed(path).coefficients.reshape(64, -1)[8:]).all()


def test_folder_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="is a folder"):
        pc.read_compressed(tmp_path)
    with pytest.raises(FileNotFoundError, match="no file at"):
        pc.read_compressed(tmp_path / "nothing.h5")
    assert issubclass(NoCompressedDataError, ValueError)
