import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

import py4dstem_compressed as pc
from py4dstem_compressed.compression.compress import chunk_frames
from py4dstem_compressed.core.sources import FrameSource, open_source

KEYS = (
    "coefficients",
    "perpendicular_norms",
    "edge_intensity",
    "total_intensity",
    "center_of_mass",
)


@pytest.fixture(scope="module")
def basis(geometry):
    return pc.zernike_basis(geometry, 10, 1)


@pytest.fixture(scope="module")
def reference(datacube, basis):
    return pc.compress(datacube.data, basis, max_batch_size=16, progress_bar=False)


def assert_identical(got, expected):
    for key in KEYS:
        assert np.array_equal(getattr(got, key), getattr(expected, key)), key


@pytest.fixture(scope="module")
def files(datacube, tmp_path_factory):
    import py4DSTEM
    import zarr

    folder = tmp_path_factory.mktemp("sources")
    np.save(folder / "scan.npy", datacube.data)
    py4DSTEM.save(str(folder / "scan.h5"), datacube)
    store = zarr.open_array(
        str(folder / "scan.zarr"),
        mode="w",
        shape=datacube.data.shape,
        chunks=(2, 8, 32, 32),
        dtype=datacube.data.dtype,
    )
    store[...] = datacube.data
    return folder


@pytest.mark.parametrize("name", ["scan.npy", "scan.h5", "scan.zarr"])
def test_files_equal_in_memory(files, name, basis, reference):
    got = pc.compress(files / name, basis, max_batch_size=16, progress_bar=False, client=False)
    assert_identical(got, reference)


def test_emd_file_carries_calibration(files, basis, datacube):
    got = pc.compress(str(files / "scan.h5"), basis, progress_bar=False, client=False)
    assert got.calibration.get_R_pixel_size() == datacube.calibration.get_R_pixel_size()


def test_dask_and_memmap_equal_in_memory(datacube, files, basis, reference):
    import dask.array as da

    lazy = da.from_array(datacube.data, chunks=(3, 5, 32, 32))
    assert_identical(pc.compress(lazy, basis, max_batch_size=16, progress_bar=False), reference)
    memmap = np.load(files / "scan.npy", mmap_mode="r")
    assert_identical(pc.compress(memmap, basis, max_batch_size=16, progress_bar=False), reference)


def test_chunk_size_does_not_matter(datacube, basis, reference):
    got = pc.compress(datacube.data, basis, max_batch_size=5, progress_bar=False)
    scale = np.abs(reference.coefficients).max()
    assert np.allclose(got.coefficients, reference.coefficients, rtol=1e-5, atol=1e-6 * scale)
    assert np.array_equal(got.total_intensity, reference.total_intensity)
    assert np.array_equal(got.center_of_mass, reference.center_of_mass)


@pytest.mark.slow
def test_distributed_cluster_equals_in_process(datacube, files, basis, reference):
    import dask.array as da
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        for source in (
            files / "scan.npy",
            files / "scan.h5",
            datacube.data,
            da.from_array(datacube.data, chunks=(2, 8, 32, 32)),
        ):
            got = pc.compress(source, basis, max_batch_size=16, progress_bar=False)  # active
            assert_identical(got, reference)
        bad = datacube.data.copy()
        bad[6, 2, 0, 0] = np.inf
        with pytest.raises(ValueError, match=r"\(6, 2\)"):
            pc.compress(bad, basis, max_batch_size=16, progress_bar=False, client=client)


def test_bad_paths_give_clear_errors(tmp_path, files, basis, datacube):
    with pytest.raises(FileNotFoundError, match="no file"):
        pc.compress(tmp_path / "missing.npy", basis)
    (tmp_path / "scan.tif").write_bytes(b"II*\x00")
    with pytest.raises(ValueError, match="unknown input format"):
        pc.compress(tmp_path / "scan.tif", basis)
    data = (files / "scan.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        pc.compress(tmp_path / "cut.npy", basis, progress_bar=False)
    (tmp_path / "junk.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match="not a readable HDF5"):
        pc.compress(tmp_path / "junk.h5", basis)
    with h5py.File(tmp_path / "two.h5", "w") as f:
        f["a"] = datacube.data
        f["b"] = datacube.data
    with pytest.raises(ValueError, match="datapath"):
        pc.compress(tmp_path / "two.h5", basis)
    got = pc.compress(tmp_path / "two.h5", basis, datapath="b", progress_bar=False)
    assert got.scan_shape == (8, 8)
    with pytest.raises(ValueError, match="4D"):
        open_source(np.zeros((4, 32, 32)))


def test_chunk_that_cannot_fit_is_refused():
    class Huge:
        shape = (10**5, 10**5, 256, 256)
        dtype = np.dtype(np.float32)

    with pytest.raises(MemoryError, match="smaller chunk"):
        chunk_frames(FrameSource(Huge()), max_batch_size=10**8, memory_limit=None)


PEAK = """
import sys, numpy as np, py4dstem_compressed as pc
with open("/proc/self/clear_refs", "w") as f:  # reset the peak (inherited across fork+exec)
    f.write("5")
geometry = pc.DetectorGeometry((64, 64), (31.5, 31.5), 12.0)
basis = pc.zernike_basis(geometry, 15, 1)
out = pc.compress(sys.argv[1], basis, memory_limit=2 * 2**20, progress_bar=False,
                  check_center=False, client=False)
assert out.num_complete == out.scan_shape[0] * out.scan_shape[1]
status = open("/proc/self/status").read().split("VmHWM:")[1].split()
print(int(status[0]) * 1024)
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_peak_memory_does_not_grow_with_the_file(tmp_path):
    peaks = []
    for rows in (32, 128):  # 32 MiB, then 128 MiB of float32 frames
        path = tmp_path / f"scan{rows}.npy"
        out = np.lib.format.open_memmap(path, "w+", np.float32, (rows, 64, 64, 64))
        for r in range(rows):
            out[r] = 1.0
        out.flush()
        del out
        result = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(PEAK), str(path)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        peaks.append(int(result.stdout.split()[-1]))
    growth = peaks[1] - peaks[0]
    assert growth < 24 * 2**20, (peaks, growth)  # the file grew by 96 MiB


def test_float16_storage_error_is_bounded(datacube, basis, tmp_path):
    compressed = pc.compress(datacube, basis, progress_bar=False)
    compressed.save(tmp_path / "f32.h5")
    compressed.save(tmp_path / "f16.h5", float16=True)
    back = pc.read_compressed(tmp_path / "f16.h5")
    for key in ("coefficients", "perpendicular_norms"):
        exact = getattr(compressed, key)
        error = np.abs(getattr(back, key) - exact)
        # float16 rounding: half an ulp (2**-11 relative), absolute 2**-25 for subnormals
        assert np.all(error <= 2.0**-11 * np.abs(exact) + 2.0**-25), key
    assert np.array_equal(back.total_intensity, compressed.total_intensity)
    with h5py.File(tmp_path / "f16.h5") as f:
        names = []
        f.visititems(lambda n, o: names.append(n) if n.endswith("_coefficients/data") else None)
        dset = f[names[0]]
        assert dset.dtype == np.float16 and dset.chunks is not None and dset._filters
