"""Write the files of ``tests/data`` that pin reading across the package's re-layout.

Run once with the package as it stood before the move to subpackages (version 0.1.0, commit
176d26d); the files are kept and must read back with every later layout::

    python tests/data/make_layout_fixture.py tests/data
"""

import json
import sys
from pathlib import Path

import numpy as np

import py4dstem_compressed as pc
from py4dstem_compressed.simulation.synthetic import synthetic_datacube


def main(out: Path) -> None:
    scan = synthetic_datacube(scan_shape=(8, 8), detector_size=32)
    geometry = pc.DetectorGeometry((32, 32), scan.center, scan.bf_radius)
    basis = pc.zernike_basis(geometry, num_bf=10, num_df=1)
    compressed = pc.compress(scan.datacube, basis, progress_bar=False)
    pc.save(out / "compressed_before_layout.h5", compressed, overwrite=True)
    pc.save(out / "basis_before_layout.h5", basis, overwrite=True)
    expected = {
        "written_by": pc.__version__,
        "basis_kind": basis.kind,
        "num_masks": int(basis.num_masks),
        "coefficients_sum": float(np.sum(compressed.coefficients)),
        "perpendicular_norms_sum": float(np.sum(compressed.perpendicular_norms)),
        "masks_sum_of_squares": float(np.sum(np.asarray(basis.masks, dtype=np.float64) ** 2)),
    }
    (out / "before_layout.json").write_text(json.dumps(expected, indent=2) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
