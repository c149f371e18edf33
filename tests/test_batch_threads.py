"""Batch work split over cores gives what one thread gives, in the batch's order."""

from __future__ import annotations

import numpy as np
import pytest

import py4dstem_compressed.core.batch_threads as batch_threads
from py4dstem_compressed.core.batch_threads import MIN_ROWS_PER_THREAD, map_over_batch
from py4dstem_compressed.reconstruction.operator import CompressedOperator
from py4dstem_compressed.reconstruction.projection import fourier_difference, fourier_projection


def _rowwise(values, scale, shared):
    """Row-wise work that also uses a shared (unsliced) argument and passes None through."""
    assert shared is None
    return values * scale[:, None], (values**2).sum(axis=1), np.full(len(values), len(values))


@pytest.mark.parametrize("threads", [2, 3, 5])
def test_parts_are_joined_in_the_batch_order(threads):
    rng = np.random.default_rng(0)
    batch = threads * MIN_ROWS_PER_THREAD + 3
    values, scale = rng.normal(size=(batch, 7)), rng.normal(size=batch)
    whole = _rowwise(values, scale, None)
    split = map_over_batch(_rowwise, values, scale, None, threads=threads)
    np.testing.assert_array_equal(split[0], whole[0])
    np.testing.assert_array_equal(split[1], whole[1])
    # the parts really were smaller than the batch (each row reports its part's length)
    assert split[2].max() < batch


def test_a_small_batch_stays_in_one_thread():
    values, scale = np.ones((MIN_ROWS_PER_THREAD + 1, 3)), np.ones(MIN_ROWS_PER_THREAD + 1)
    *_, lengths = map_over_batch(_rowwise, values, scale, None, threads=4)
    assert np.all(lengths == len(values))


@pytest.mark.parametrize("step", [fourier_difference, fourier_projection])
@pytest.mark.parametrize("modes", [None, 2])
def test_the_threaded_data_step_equals_the_single_thread_one(monkeypatch, step, modes):
    """Both data steps on a batch of 40 signed-region patterns (one probe or two modes),
    each thread writing its rows of the output: threads change nothing."""
    rng = np.random.default_rng(1)
    shape = (16, 16)
    qx, qy = np.indices(shape)
    r = np.hypot(qx - 8, qy - 8)
    bf, df = r <= 3, (r > 3) & (r <= 7)
    masks = []
    for region, num in ((bf, 5), (df, 6)):
        random = rng.normal(size=(region.sum(), num))
        basis = np.linalg.qr(random)[0].T
        for row in basis:
            mask = np.zeros(shape)
            mask[region] = row
            masks.append(mask)
    op = CompressedOperator.from_detector(np.array(masks), bf, df, (8, 8))
    fields = (40, *shape) if modes is None else (40, modes, *shape)
    fourier = (rng.normal(size=fields) + 1j * rng.normal(size=fields)).astype(np.complex64)
    fourier[3, ..., :2, :] = 0  # pixels without intensity: their own branch of each step
    coefficients = rng.normal(size=(40, len(masks))).astype(np.float32)
    norms = rng.random((40, 2)).astype(np.float32)
    threaded, error = step(fourier, coefficients, op, norms, None, 50.0)
    monkeypatch.setattr(batch_threads, "available_cores", lambda: 1)
    single, error_single = step(fourier, coefficients, op, norms, None, 50.0)
    scale = np.abs(single).max()
    np.testing.assert_allclose(threaded, single, rtol=0, atol=1e-5 * scale)
    np.testing.assert_allclose(error, error_single, rtol=1e-5)
