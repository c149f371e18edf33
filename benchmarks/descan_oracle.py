"""Oracle runs for descan drift and the intensities' unit (one reconstruction per call).

Each call simulates (or reads from the cache) one abTEM scan with a linear descan drift
drawn *before* the shot noise, optionally changes the data the way an experiment would
(a gain, a normalisation, a bilinear re-sampling), compresses it in this process and
reconstructs 30 iterations; it prints one JSON line with the case and the scores. The
README's table "Descan drift and the intensities' unit" lists the cases it was run for.

Usage::

    python benchmarks/descan_oracle.py '{"kind": "2d", "dose": 2e4, "descan": 2.0, "basis": "z36"}'

Case fields: ``kind`` ("2d" or "crystal"), ``dose`` [e/A^2] or null, ``descan`` [px],
``basis`` ("plain", "z36", "dp15", or any basis name of ``reconstruction_quality.py``, built
as it builds it: e.g. "suggested40", "suggested20", "zK+pcaN" / "zK+dpN"), optional
``preset`` (default "small"),
``iterations`` (30), ``scale`` (multiply the intensities), ``normalise`` (divide by the
total), ``blur_shift`` [px] (bilinear shift of the recorded patterns), ``fixed_masks``
(``compress(descan=None)``), ``no_ramp`` (the model ignores the sub-pixel descan), ``kw``
(extra ``reconstruct`` keywords, e.g. ``{"match_region_energy": false}``), ``unshift``
(move every recorded pattern back by its simulated descan, bilinear, as plain py4DSTEM's
preprocessing does, before the masks are applied; use with ``fixed_masks`` and
``no_ramp``), ``bf_rim_px`` (the BF region extended by this many pixels beyond the
measured disk radius, so that the DF starts outside the disk's rim) and ``noise_seed``
(draw the shot noise again from the noise-free drifting patterns with this seed: another
realisation of the same experiment).
"""

from __future__ import annotations

import json
import sys

import numpy as np
from harness import Stopwatch, emit
from reconstruction_quality import _basis as benchmark_basis

#: case basis -> (family of ``bases.registry``, keyword arguments); descan-aware families get
#: the case's ``descan`` too
BASES = {
    "z36": ("zernike", {"num_bf": 36, "num_df": 1}),
    "dp15": ("diffraction_pattern", {"num_bf": 15, "num_df": 1, "seed": 0}),
}


def _recorded(data, case: dict) -> np.ndarray:
    """The patterns as the case's experiment records them."""
    from py4dstem_compressed.simulation.detector import linear_descan, shift_patterns

    patterns = np.asarray(data.datacube.data, dtype=np.float32)
    if case.get("unshift"):
        patterns = linear_descan(patterns, -case["descan"])
    if case.get("blur_shift"):
        patterns = shift_patterns(patterns, case["blur_shift"])
    patterns = patterns * np.float32(case.get("scale", 1.0))
    if case.get("normalise"):
        patterns = patterns / patterns.sum()
    return patterns.astype(np.float32)


def run(case: dict) -> dict:
    """Run one case in this process; return the case with its scores."""
    import matplotlib

    matplotlib.use("Agg")
    from py4dstem_compressed.simulation.datasets import simulate

    redraw = case.get("noise_seed") is not None and case["dose"] is not None
    data = simulate(
        preset=case.get("preset", "small"),
        kind=case["kind"],
        dose_per_area=None if redraw else case["dose"],
        descan_px=case["descan"],
        progress_bar=False,
    )
    if redraw:  # the same noise-free patterns, another Poisson draw
        from py4dstem_compressed.simulation.detector import shot_noise

        counts, _ = shot_noise(
            np.asarray(data.datacube.data), case["dose"], data.scan_sampling[0], case["noise_seed"]
        )
        data.datacube.data = counts
    data.datacube.data = _recorded(data, case)
    return reconstruct_and_score(case, data)


def reconstruct_and_score(case: dict, data) -> dict:
    """Reconstruct ``data`` (a ``SimulatedDataset``) as ``case`` asks; the case with scores."""
    from py4DSTEM.process.phase import MultislicePtychography

    import py4dstem_compressed as pc
    from py4dstem_compressed.analysis.evaluation import (
        KNOWN_ROTATION_PREPROCESS_KWARGS,
        score_reconstruction,
    )
    from py4dstem_compressed.bases.registry import build_basis

    kwargs = {**data.reconstruction_kwargs(), "object_type": "potential", "verbose": False}
    reconstruct = dict(
        num_iter=case.get("iterations", 30), max_batch_size=64, seed_random=0, progress_bar=False
    )
    datacube = data.datacube
    watch = Stopwatch()
    if case["basis"] == "plain":
        ptycho = MultislicePtychography(datacube=datacube, **kwargs)
        ptycho.preprocess(**KNOWN_ROTATION_PREPROCESS_KWARGS)
        ptycho.reconstruct(**reconstruct)
    else:
        geometry = pc.DetectorGeometry.from_datacube(datacube)
        if case.get("bf_rim_px"):
            geometry = pc.DetectorGeometry(
                geometry.shape,
                geometry.center,
                geometry.bf_radius + case["bf_rim_px"],
                geometry.df_radius,
                geometry.mask,
            )
        descan = None if case.get("fixed_masks") else "auto"
        if case["basis"] not in BASES:  # a basis of the benchmark, built as it builds it
            basis = benchmark_basis(case["basis"], datacube, geometry)
        else:
            family, basis_kwargs = BASES[case["basis"]]
            if family == "diffraction_pattern":
                basis_kwargs = {**basis_kwargs, "descan": descan}
            basis = build_basis(family, geometry, datacube, **basis_kwargs)
        compressed = pc.compress(datacube, basis, progress_bar=False, descan=descan)
        ptycho = pc.CompressedMultislicePtychography(datacube=compressed, **kwargs)
        ptycho.preprocess(**KNOWN_ROTATION_PREPROCESS_KWARGS)
        if case.get("no_ramp"):
            ptycho._has_descan = False
        ptycho.reconstruct(**reconstruct, **case.get("kw", {}))
    scores = score_reconstruction(ptycho, data)
    return {
        **case,
        "ncc": scores["ncc"],
        "ncc_band": scores["ncc_band"],
        "seconds": watch.lap(),
    }


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0 if sys.argv[1:] in (["-h"], ["--help"]) else 2)
    emit(run(json.loads(sys.argv[1])))
