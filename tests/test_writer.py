import os
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest

import py4dstem_compressed as pc
from py4dstem_compressed.compression.writer import FramesAlreadyWrittenError, open_compressed_writer


@pytest.fixture(scope="module")
def basis(geometry):
    return pc.zernike_basis(geometry, 10, 1)


@pytest.fixture(scope="module")
def reference(datacube, basis):
    return pc.compress(datacube, basis, progress_bar=False)


def assert_same_frames(got, expected, where):
    """Equal up to float32 matrix-product rounding (batch sizes differ)."""
    scale = np.linalg.norm(expected.coefficients[where], axis=-1).max()
    for key in ("coefficients", "perpendicular_norms", "total_intensity", "center_of_mass"):
        a, b = getattr(got, key)[where], getattr(expected, key)[where]
        # perpendicular norms: float32 cancellation, ~1e-3 of the pattern norm (see test_compress)
        atol = (2e-3 if key == "perpendicular_norms" else 1e-6) * scale
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=atol, err_msg=key)


def test_writer_matches_compress_and_finalizes(datacube, basis, reference, tmp_path):
    path = tmp_path / "live.h5"
    frames = datacube.data.reshape(64, 32, 32)
    with open_compressed_writer(
        path, basis, (8, 8), calibration=datacube.calibration, intensity_per_count=2.5
    ) as writer:
        writer.write(frames[:5])  # partial rows
        writer.write(frames[5:40], start=5)
        assert writer.num_complete == 40
        writer.write(frames[40:])
    data = pc.read_compressed(path)
    assert data.is_complete and data.num_complete == 64
    assert data.intensity_per_count == 2.5  # given (the writer cannot measure it), kept
    assert_same_frames(data, reference, np.ones((8, 8), bool))
    assert data.calibration.get_R_pixel_size() == datacube.calibration.get_R_pixel_size()
    with h5py.File(path) as f:  # finalized: chunked and compressed
        names = []
        f.visititems(lambda n, o: names.append(n) if n.endswith("_coefficients/data") else None)
        assert f[names[0]].chunks is not None and f[names[0]].compression is not None


def test_partial_file_reports_missing_and_resumes(datacube, basis, reference, tmp_path):
    import py4DSTEM

    path = tmp_path / "live.h5"
    frames = datacube.data.reshape(64, 32, 32)
    writer = open_compressed_writer(path, basis, (8, 8))
    writer.write(frames[10:20], start=10)
    writer.file.close()  # as if the process died (no close())
    data = py4DSTEM.read(str(path))
    assert isinstance(data, pc.CompressedDataCube)
    assert data.num_complete == 10 and not data.is_complete
    valid = data.valid
    assert valid.ravel()[10:20].all() and valid.sum() == 10
    assert np.isnan(data.coefficients[~valid]).all()
    assert_same_frames(data, reference, valid)
    with pytest.raises(ValueError, match="different basis"):
        open_compressed_writer(path, pc.zernike_basis(basis.geometry, 6, 1), (8, 8))
    with open_compressed_writer(path, basis, (8, 8)) as writer:
        assert writer.next_index == 0 and writer.num_complete == 10
        for index in writer.missing:
            writer.write(frames[index], start=int(index))
    data = pc.read_compressed(path)
    assert data.is_complete
    assert_same_frames(data, reference, np.ones((8, 8), bool))


def test_writer_rejects_bad_frames(datacube, basis, tmp_path):
    frames = datacube.data.reshape(64, 32, 32).copy()
    frames[3, 1, 1] = np.nan
    with open_compressed_writer(tmp_path / "w.h5", basis, (8, 8)) as writer:
        with pytest.raises(ValueError, match=r"\(0, 3\)"):
            writer.write(frames[:8])
        with pytest.raises(ValueError, match="outside"):
            writer.write(frames[:8], start=60)
        with pytest.raises(ValueError, match="detector"):
            writer.write(np.ones((2, 16, 16)), start=0)
        assert writer.num_complete == 0


KILLED_WRITER = """
import sys, time, numpy as np, py4dstem_compressed as pc
from py4dstem_compressed.simulation.synthetic import synthetic_datacube
from py4dstem_compressed.compression.writer import FramesAlreadyWrittenError, open_compressed_writer
scan = synthetic_datacube(scan_shape=(8, 8), detector_size=32)
geometry = pc.DetectorGeometry((32, 32), scan.center, scan.bf_radius)
basis = pc.zernike_basis(geometry, 10, 1)
frames = scan.datacube.data.reshape(64, 32, 32)
writer = open_compressed_writer(sys.argv[1], basis, (8, 8))
print("open", writer.next_index, flush=True)
for start in range(writer.next_index, 64, 3):
    writer.write(frames[start:start + 3], start=start)
    print("done", min(start + 3, 64), flush=True)
    time.sleep(0.01)
time.sleep(60)
"""


def test_sigkill_leaves_exactly_the_completed_frames(reference, tmp_path):
    path = tmp_path / "killed.h5"
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(KILLED_WRITER))
    rng = np.random.default_rng(0)
    for attempt in range(4):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True
        )
        first = proc.stdout.readline()
        assert first.startswith("open"), first
        acknowledged = int(first.split()[1])  # frames of earlier attempts
        time.sleep(rng.uniform(0.0, 0.15))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        for line in proc.stdout.read().splitlines():
            acknowledged = max(acknowledged, int(line.split()[1]))
        proc.stdout.close()
        data = pc.read_compressed(path)
        valid = data.valid.ravel()
        # completed writes are durable; nothing beyond the last write started is flagged
        assert valid[:acknowledged].all(), (attempt, acknowledged)
        assert valid.sum() >= acknowledged and valid.sum() <= acknowledged + 3
        assert valid.sum() == data.num_complete
        if data.num_complete:
            assert_same_frames(data, reference, data.valid)
        assert np.isnan(data.coefficients[~data.valid]).all()
        if data.is_complete:
            break


def test_write_over_complete_frames_needs_replace(datacube, basis, tmp_path):
    frames = datacube.data.reshape(64, 32, 32)
    other = frames[::-1]  # a different pattern at every position
    path = tmp_path / "w.h5"
    with open_compressed_writer(path, basis, (8, 8), finalize=False) as writer:
        writer.write(frames[:6], start=0)
        with pytest.raises(FramesAlreadyWrittenError, match=r"3 of frames 3\.\.8 .*replace=True"):
            writer.write(other[3:9], start=3)
        assert writer.num_complete == 6
        before = pc.read_compressed(path)  # the refused write changed nothing
        assert np.array_equal(before.valid.ravel(), np.arange(64) < 6)
        assert writer.write(other[3:9], start=3, replace=True) == 9
    data = pc.read_compressed(path)
    assert np.array_equal(data.valid.ravel(), np.arange(64) < 9)
    reference_other = pc.compress(other.reshape(8, 8, 32, 32), basis, progress_bar=False)
    replaced = (np.arange(64) >= 3) & (np.arange(64) < 9)
    assert_same_frames(data, reference_other, replaced.reshape(8, 8))
    kept = (np.arange(64) < 3).reshape(8, 8)
    for key in ("coefficients", "perpendicular_norms", "total_intensity", "center_of_mass"):
        assert np.array_equal(getattr(data, key)[kept], getattr(before, key)[kept]), key


def test_write_start_must_be_an_integer_in_range(datacube, basis, tmp_path):
    frames = datacube.data.reshape(64, 32, 32)
    with open_compressed_writer(tmp_path / "w.h5", basis, (8, 8)) as writer:
        with pytest.raises(TypeError, match=r"start must be an integer .*got 2\.7"):
            writer.write(frames[:2], start=2.7)
        with pytest.raises(TypeError, match="start must be an integer"):
            writer.write(frames[:2], start=True)
        with pytest.raises(ValueError, match=r"start must be in 0\.\.62"):
            writer.write(frames[:2], start=-1)
        assert writer.num_complete == 0
        assert writer.write(frames[:2], start=np.int64(2)) == 4  # numpy integers are fine
        assert np.flatnonzero(~writer._valid[:4]).tolist() == [0, 1]


def test_empty_batch_is_a_no_op(datacube, basis, tmp_path):
    frames = datacube.data.reshape(64, 32, 32)
    with open_compressed_writer(tmp_path / "w.h5", basis, (8, 8)) as writer:
        writer.write(frames[:3])
        assert writer.write(frames[:0]) == 3  # the next frame to write, unchanged
        assert writer.write(np.empty((0, 32, 32)), start=10) == 10
        assert writer.write([]) == 3
        assert writer.num_complete == 3 and writer.next_index == 3
