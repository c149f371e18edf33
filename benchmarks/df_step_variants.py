"""A/B of candidate data steps for a dark field of several signed masks (one run per call).

Each call reconstructs one abTEM scan compressed with Zernike BF masks and ``num_df``
diffraction-pattern DF masks, with the data step's signed-region step
(:func:`py4dstem_compressed.reconstruction.region_matching.match_signed_region`) replaced by
a candidate, and prints one JSON line with the scores. Variants (``variant``):

* ``current``: today's step (multiplicative, one Newton step, energy-matched);
* ``decode``: the DF decoded from the stored values alone: ``max(M^T c, 0)`` rescaled to the
  stored energy ``||c||^2 + p^2`` (the model's DF is discarded);
* ``proj``: the projection onto ``{M a = c, ||a||^2 = ||c||^2 + p^2}``: in-span part ``M^T c``,
  the model's out-of-span shape scaled to carry ``p``, then clipped and energy-matched;
* ``projk``: ``proj`` with the coefficients' common scale fitted to the model;
* ``multadd``: today's step, then the in-span part corrected additively to the coefficients
  (up to their common scale), clipped and energy-matched.

Usage::

    python benchmarks/df_step_variants.py '{"preset": "tiny", "kind": "2d", "dose": null,
        "variant": "multadd", "num_df": 16}'

Optional fields: ``num_bf`` (Zernike BF masks, 36), ``iterations`` (30), ``descan`` [px].
"""

from __future__ import annotations

import json
import sys

import numpy as np
from harness import emit

TINY = 1e-30


def _energy_matched(a, energy, region_map):
    """``a`` clipped at 0 on the region and rescaled to ``energy`` per pattern."""
    a = np.maximum(a, 0) * region_map
    got = (a**2).sum(1)
    return a * np.sqrt(energy / np.maximum(got, TINY))[:, None]


def decode(values, target, energy, region_map, masks, weight):
    """The DF decoded from the stored values alone."""
    return _energy_matched(target @ masks, energy, region_map) + values * (1 - region_map)


def proj(values, target, energy, region_map, masks, weight, fit_scale=False):
    """Projection onto the set of the measured coefficients and energy."""
    v = values * region_map
    inside = v @ masks.T
    cc = (target**2).sum(1)
    kappa = np.ones_like(cc)
    if fit_scale:
        kappa = (inside * target).sum(1) / np.maximum(cc, TINY)
        kappa = np.clip(kappa, 0, np.sqrt(energy / np.maximum(cc, TINY)))
    perp = v - inside @ masks
    rest = np.sqrt(np.maximum(energy - kappa**2 * cc, 0))
    norm = np.sqrt((perp**2).sum(1))
    a = (kappa[:, None] * target) @ masks + perp * (rest / np.maximum(norm, TINY))[:, None]
    return _energy_matched(a, energy, region_map) + values * (1 - region_map)


def run(case: dict) -> dict:
    """Run one case in this process; return the case with its scores."""
    import matplotlib

    matplotlib.use("Agg")
    import py4dstem_compressed as pc
    import py4dstem_compressed.reconstruction.projection as projection
    from py4dstem_compressed.analysis.evaluation import (
        KNOWN_ROTATION_PREPROCESS_KWARGS,
        score_reconstruction,
    )
    from py4dstem_compressed.simulation.datasets import simulate

    current = projection.match_signed_region

    def multadd(values, target, energy, region_map, masks, weight):
        m = current(values, target, energy, region_map, masks, weight) * region_map
        inside = m @ masks.T
        kappa = np.maximum((inside * target).sum(1) / np.maximum((target**2).sum(1), TINY), 0)
        a = m + (kappa[:, None] * target - inside) @ masks
        return _energy_matched(a, energy, region_map) + values * (1 - region_map)

    projection.match_signed_region = {
        "current": current,
        "decode": decode,
        "proj": proj,
        "projk": lambda *a: proj(*a, fit_scale=True),
        "multadd": multadd,
    }[case["variant"]]
    data = simulate(
        preset=case["preset"],
        kind=case["kind"],
        dose_per_area=case["dose"],
        descan_px=case.get("descan", 0.0),
        progress_bar=False,
    )
    kwargs = {**data.reconstruction_kwargs(), "object_type": "potential", "verbose": False}
    geometry = pc.DetectorGeometry.from_datacube(data.datacube)
    bf = pc.zernike_basis(geometry, case.get("num_bf", 36), 1).bf_masks
    df = pc.diffraction_pattern_basis(data.datacube, geometry, 1, case["num_df"], seed=0)
    masks = np.concatenate([bf, df.df_masks])
    basis = pc.Basis(masks, len(bf), case["num_df"], geometry, kind="custom")
    compressed = pc.compress(data.datacube, basis, progress_bar=False)
    ptycho = pc.CompressedMultislicePtychography(datacube=compressed, **kwargs)
    ptycho.preprocess(**KNOWN_ROTATION_PREPROCESS_KWARGS)
    ptycho.reconstruct(
        num_iter=case.get("iterations", 30), max_batch_size=64, seed_random=0, progress_bar=False
    )
    scores = score_reconstruction(ptycho, data)
    return {**case, "ncc": float(scores["ncc"]), "ncc_band": float(scores["ncc_band"])}


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0 if sys.argv[1:] in (["-h"], ["--help"]) else 2)
    emit(run(json.loads(sys.argv[1])))
