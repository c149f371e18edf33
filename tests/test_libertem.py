"""The LiberTEM binding: a real LiberTEM pipeline on a file equals ``pc.compress``.

The scan is written as a ``.npy`` file that LiberTEM's own reader loads; the UDF runs
with LiberTEM's inline, concurrent (threads) and Dask (2 worker processes) executors.
Results are compared per pattern with a tolerance set by the size of what is projected
(float32 matrix products of different batch sizes round differently).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip(
    "libertem",
    reason="LiberTEM is an optional extra: pip install 'py4dstem-compressed[libertem]'",
)

import py4dstem_compressed as pc
from py4dstem_compressed.libertem import compress_with_libertem
from py4dstem_compressed.simulation.synthetic import synthetic_datacube

EPS32 = float(np.finfo(np.float32).eps)
#: float32 rounding of a product of ~Q^2 terms with a unit-norm mask, in units of the
#: projected pattern's norm (Cauchy-Schwarz); observed: ~4 between batch sizes
PROJECTION_ULPS = 32
SCAN_SHAPE = (8, 8)
DETECTOR = 32
PLUGIN_AND_PY4DSTEM = ("py4DSTEM", "py4dstem_compressed")


@pytest.fixture(scope="module")
def scan_file(tmp_path_factory):
    """A tiny scan on disk as ``.npy``, its basis and calibration."""
    scan = synthetic_datacube(scan_shape=SCAN_SHAPE, detector_size=DETECTOR)
    geometry = pc.DetectorGeometry((DETECTOR, DETECTOR), scan.center, scan.bf_radius)
    basis = pc.zernike_basis(geometry, num_bf=10, num_df=1)
    path = tmp_path_factory.mktemp("libertem") / "scan.npy"
    data = np.asarray(scan.datacube.data, dtype=np.float32)
    np.save(path, data)
    return {"data": data, "basis": basis, "path": str(path), "scan": scan}


@pytest.fixture(scope="module")
def inline_ctx():
    from libertem.api import Context
    from libertem.executor.inline import InlineJobExecutor

    ctx = Context(executor=InlineJobExecutor(debug=True))  # debug: tasks must pickle
    yield ctx
    ctx.close()


def assert_same_record(result, reference, data, mode):
    """Every stored per-pattern quantity agrees to float32 rounding of its own size."""
    values = np.sqrt(np.maximum(data, 0)) if mode == "amplitude" else data
    norm = np.sqrt(np.square(values.astype(np.float64)).sum(axis=(-2, -1)))  # ||v_j||
    projected = PROJECTION_ULPS * EPS32 * norm
    summed = 4 * EPS32 * np.abs(data.astype(np.float64)).sum(axis=(-2, -1))  # sums of I
    tolerances = {
        "coefficients": projected[..., None],
        "perpendicular_norms": projected[..., None],
        "edge_intensity": summed,
        "total_intensity": summed,
        "center_of_mass": 4 * EPS32 * DETECTOR,  # [px]
    }
    for key, tolerance in tolerances.items():
        got, want = getattr(result, key), getattr(reference, key)
        assert got.shape == want.shape and got.dtype == want.dtype, key
        excess = np.abs(got.astype(np.float64) - want) - tolerance
        assert np.all(excess <= 0), f"{key}: off by up to {excess.max():.3g} beyond tolerance"
    np.testing.assert_array_equal(result.descan_shift_px, reference.descan_shift_px)
    # the shot noise is measured on the same sampled patterns (picked with LiberTEM)
    assert result.intensity_per_count == pytest.approx(reference.intensity_per_count, rel=1e-9)
    assert result.mode == reference.mode == mode
    assert result.basis is reference.basis


@pytest.mark.parametrize("mode", ["amplitude", "intensity"])
def test_inline_equals_compress(scan_file, inline_ctx, mode):
    dataset = inline_ctx.load("npy", path=scan_file["path"])
    calibration = scan_file["scan"].datacube.calibration
    result = compress_with_libertem(
        inline_ctx, dataset, scan_file["basis"], mode=mode, calibration=calibration
    )
    reference = pc.compress(
        scan_file["data"], scan_file["basis"], mode=mode, descan=None, progress_bar=False
    )
    assert_same_record(result, reference, scan_file["data"], mode)
    assert isinstance(result, pc.CompressedDataCube)
    assert result.calibration.get_R_pixel_size() == calibration.get_R_pixel_size()
    assert result.calibration.get_Q_pixel_units() == calibration.get_Q_pixel_units()
    # and the coefficients are the projections (Eq. 8), in float64 from the file's frames
    values = np.sqrt(scan_file["data"]) if mode == "amplitude" else scan_file["data"]
    naive = np.einsum("xyij,kij->xyk", values.astype(np.float64), scan_file["basis"].masks)
    norm = np.linalg.norm(values.astype(np.float64), axis=(-2, -1))[..., None]
    assert np.all(np.abs(result.coefficients - naive) <= PROJECTION_ULPS * EPS32 * norm)


def test_descan_array_equals_compress(scan_file, inline_ctx):
    """Per-pattern masks moved by a given descan: several kernels travel to the tasks."""
    descan = np.zeros((*SCAN_SHAPE, 2))
    descan[SCAN_SHAPE[0] // 2 :, :, 0] = 1.2  # lower half: masks moved by 1 px in qx
    descan[:, SCAN_SHAPE[1] // 2 :, 1] = -0.8  # right half: by -1 px in qy
    dataset = inline_ctx.load("npy", path=scan_file["path"])
    result = compress_with_libertem(
        inline_ctx, dataset, scan_file["basis"], calibration={"R_pixel_size": 0.8}, descan=descan
    )
    reference = pc.compress(
        scan_file["data"], scan_file["basis"], descan=descan, progress_bar=False
    )
    assert len(np.unique(reference.descan_shift_px.reshape(-1, 2), axis=0)) == 4
    assert_same_record(result, reference, scan_file["data"], "amplitude")
    assert result.calibration.get_R_pixel_size() == 0.8


def test_concurrent_executor(scan_file):
    from libertem.api import Context

    with Context.make_with("threads", cpus=2) as ctx:
        dataset = ctx.load("npy", path=scan_file["path"])
        calibration = scan_file["scan"].datacube.calibration
        result = compress_with_libertem(ctx, dataset, scan_file["basis"], calibration=calibration)
    reference = pc.compress(scan_file["data"], scan_file["basis"], descan=None, progress_bar=False)
    assert_same_record(result, reference, scan_file["data"], "amplitude")


@pytest.mark.slow  # ~20 s on 2 cores: two worker processes start and compile the numba pass
def test_dask_two_workers_without_py4dstem(scan_file):
    """Two worker processes compute the record; none of them imports py4DSTEM or the package."""
    from distributed import Scheduler
    from libertem.api import Context
    from libertem.executor.dask import DaskJobExecutor, cluster_spec

    spec = cluster_spec(cpus=2, cudas=0, has_cupy=False, num_service=0)
    scheduler = {"cls": Scheduler, "options": {"dashboard_address": ":0"}}
    executor = DaskJobExecutor.make_local(spec=spec, cluster_kwargs={"scheduler": scheduler})
    with Context(executor=executor) as ctx:
        dataset = ctx.load("npy", path=scan_file["path"])
        partitions = list(dataset.get_partitions())
        calibration = scan_file["scan"].datacube.calibration
        result = compress_with_libertem(ctx, dataset, scan_file["basis"], calibration=calibration)
        # lambdas travel by value (a function of this module would import it on the workers)
        on_workers = executor.run_each_worker(
            lambda: sorted(m for m in sys.modules if m.split(".")[0] in PLUGIN_AND_PY4DSTEM)
        )
        ran_udf = executor.run_each_worker(lambda: "py4dstem_compressed_udf" in sys.modules)
    reference = pc.compress(scan_file["data"], scan_file["basis"], descan=None, progress_bar=False)
    assert_same_record(result, reference, scan_file["data"], "amplitude")
    assert len(on_workers) == 2 and len(partitions) >= 2
    assert all(modules == [] for modules in on_workers.values()), on_workers
    assert any(ran_udf.values())


def test_errors_name_the_fix(scan_file, inline_ctx):
    dataset = inline_ctx.load("npy", path=scan_file["path"])
    basis = scan_file["basis"]
    with pytest.raises(ValueError, match="calibration="):
        compress_with_libertem(inline_ctx, dataset, basis)
    with pytest.raises(NotImplementedError, match=r"descan='auto'.*\(Rx, Ry, 2\)"):
        compress_with_libertem(inline_ctx, dataset, basis, calibration={}, descan="auto")
    with pytest.raises(ValueError, match="unknown calibration keys"):
        compress_with_libertem(inline_ctx, dataset, basis, calibration={"pixel": 1})
    with pytest.raises(ValueError, match="mode must be one of"):
        compress_with_libertem(inline_ctx, dataset, basis, mode="phase", calibration={})


def test_worker_side_keeps_the_record_of_compress():
    """The worker module cannot import the package, so it lists the record's keys itself."""
    import py4dstem_compressed_udf
    from py4dstem_compressed.compression.compress import RESULT_KEYS

    assert py4dstem_compressed_udf.RESULT_KEYS == RESULT_KEYS
