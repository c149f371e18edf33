"""Files written by the package before its re-layout into subpackages still read back.

emdfile finds a class by its bare name among imported modules that set ``_emd_hook``, so a
class may move between modules without breaking files; these files, written by 0.1.0 with the
flat layout (``tests/data/make_layout_fixture.py``), pin that.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

DATA = Path(__file__).parent / "data"


def test_files_written_before_the_layout_change_read_in_a_fresh_process():
    script = f"""
import json, numpy as np, py4DSTEM
import py4dstem_compressed as pc
compressed = pc.read_compressed({str(DATA / "compressed_before_layout.h5")!r})
basis = py4DSTEM.read({str(DATA / "basis_before_layout.h5")!r})
assert type(basis) is pc.Basis, type(basis)
print(json.dumps({{
    "basis_kind": basis.kind,
    "num_masks": int(basis.num_masks),
    "coefficients_sum": float(np.sum(compressed.coefficients)),
    "perpendicular_norms_sum": float(np.sum(compressed.perpendicular_norms)),
    "masks_sum_of_squares": float(np.sum(np.asarray(basis.masks, dtype=np.float64) ** 2)),
    "same_basis": bool(np.array_equal(compressed.basis.masks, basis.masks)),
}}))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=DATA
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    expected = json.loads((DATA / "before_layout.json").read_text())
    assert got["basis_kind"] == expected["basis_kind"]
    assert got["num_masks"] == expected["num_masks"]
    assert got["same_basis"]
    for key in ("coefficients_sum", "perpendicular_norms_sum", "masks_sum_of_squares"):
        # float32 values summed in float64: the sum is exact to ~1e-7 of its own size
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-6, err_msg=key)
