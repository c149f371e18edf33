"""Tests of the benchmark harness (benchmarks/harness.py, outside the package)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import harness  # noqa: E402

PEAK_SCRIPT = f"""
import sys
sys.path.insert(0, {str(BENCHMARKS)!r})
import numpy as np
from harness import own_peak_memory_mb
before = own_peak_memory_mb()
block = np.ones(256 * 2**20 // 8)  # 256 MiB, touched
print(before, own_peak_memory_mb())
"""


def test_own_peak_memory_is_this_process_high_water_mark_in_mb():
    # a fresh process: its peak is its own (not the test runner's) and grows by the block
    out = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT], capture_output=True, text=True, check=True
    )
    before, after = map(float, out.stdout.split())
    assert 0 < before
    assert 240 <= after - before <= 300


def test_peak_memory_sees_an_allocation():
    with harness.PeakMemory(interval=0.005) as memory:
        block = np.ones(50_000_000)  # 400 MB
        block[::1000] += 1
        del block
    assert memory.peak_bytes > 300 * 2**20


CASE_SCRIPT = f"""
import argparse, json, sys
sys.path.insert(0, {str(BENCHMARKS)!r})
from harness import emit
parser = argparse.ArgumentParser()
parser.add_argument("--run")
parser.add_argument("--case")
args = parser.parse_args()
case = json.loads(args.case)
print("chatter before the result")
if case.get("fail"):
    raise RuntimeError("the case failed on purpose")
emit({{"run": args.run, "doubled": 2 * case["x"]}})
"""


def test_run_case_returns_the_json_line_of_a_fresh_process(tmp_path):
    script = tmp_path / "case.py"
    script.write_text(CASE_SCRIPT)
    result = harness.run_case(str(script), {"x": 21}, args=("--run", "plain"))
    assert result == {"run": "plain", "doubled": 42}
    failed = harness.run_case(str(script), {"x": 1, "fail": True})
    assert failed == {"failed": "RuntimeError: the case failed on purpose"}
    assert json.dumps(failed)  # failures stay JSON rows


def test_stopwatch_laps_and_best_rate():
    watch = harness.Stopwatch()
    first, second = watch.lap(), watch.lap()
    assert 0 <= first and 0 <= second
    calls = []
    rate = harness.best_rate(lambda: calls.append(1), num_items=10, repeats=3)
    assert len(calls) == 4 and rate > 0  # one warm-up call, then the repeats


def test_split_basis_names_build_zernike_bf_and_data_derived_df(datacube, geometry):
    """``zK+pcaN`` / ``zK+dpN`` in the reconstruction benchmark: a split suggest_basis builds."""
    import reconstruction_quality as benchmark  # beside harness, on the path set above

    family, kwargs, mode = benchmark._entry("z6+dp4")
    assert (family, mode) == ("split", "amplitude")
    assert kwargs == {"num_bf": 6, "df_family": "diffraction_pattern", "num_df": 4}
    with pytest.raises(SystemExit, match="zK\\+pcaN"):
        benchmark._entry("z6+pcaX")
    for name, df_family in (("z6+dp4", "diffraction_pattern"), ("z3+pca2", "pca")):
        basis = benchmark._basis(name, datacube, geometry)
        expected = benchmark._entry(name)[1]
        assert (basis.num_bf, basis.num_df) == (expected["num_bf"], expected["num_df"])
        assert basis.parameters["bf_family"] == "zernike"
        assert basis.parameters["df_family"] == df_family
        flat = basis.masks.reshape(basis.num_masks, -1)
        gram = flat @ flat.T
        # orthonormal to the masks' own precision (float32: a few eps of the unit norm)
        assert np.abs(gram - np.eye(basis.num_masks)).max() < 64 * np.finfo(flat.dtype).eps
