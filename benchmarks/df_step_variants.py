"""A/B of candidate data steps for a dark field of several signed masks (one run per call).

Each call reconstructs one abTEM scan compressed with Zernike BF masks and ``num_df``
diffraction-pattern DF masks, with the data step's signed-region step
(:func:`py4dstem_compressed.reconstruction.region_matching.match_signed_region`) replaced by
a candidate, and prints one JSON line with the scores. Variants (``variant``):

* ``current``: the package's step (multiplicative, one Newton step on the coefficients of the
  expected amplitude under shot noise, shrunk by their noise, energy-matched);
* ``no_noise_model``: the same with the coefficients taken as those of the amplitude (0.1);
* ``steps3``: three Newton steps, no noise model;
* ``kappa_one`` / ``kappa_fit`` / ``kappa_unbiased``: the target's common scale 1, fitted to
  ``||c||^2``, or fitted with the coefficients' noise removed from ``||c||^2`` (the package);
* ``wiener1`` / ``wiener3``: one / three Newton steps with ``kappa_fit`` (rows in
  ``results/df_step_variants_tiny.json`` noted "interim" predate the ``kappa^2`` factor of the
  shrinkage, ``max(0, 1 - sigma^2 / r^2)``);
* ``batch1`` / ``batch3``: the same with ``sigma^2`` and ``r^2`` averaged over the batch (an
  empirical Wiener factor per mask);
* ``shape_psi`` (one DF mask): the DF reshaped (power law) so that with its measured energy
  its expected coefficient ``M psi(u)`` is the measured one, then energy-matched;
* ``decode``: the DF decoded from the stored values alone: ``max(M^T c, 0)`` rescaled to the
  stored energy ``||c||^2 + p^2`` (the model's DF is discarded);
* ``proj``: the projection onto ``{M a = c, ||a||^2 = ||c||^2 + p^2}``: in-span part ``M^T c``,
  the model's out-of-span shape scaled to carry ``p``, then clipped and energy-matched;
* ``projk``: ``proj`` with the coefficients' common scale fitted to the model;
* ``multadd``: the package's step, then the in-span part corrected additively to the coefficients
  (up to their common scale), clipped and energy-matched;
* ``wadd`` / ``wadd_batch``: ``multadd`` done on the expected amplitude ``psi`` under shot
  noise, the correction shrunk by its noise per coefficient (``max(0, 1 - kappa^2 sigma^2 /
  r^2)``) or with ``sigma^2`` and ``r^2`` averaged over the batch, then mapped back through
  ``psi^-1`` (noise-free: ``multadd``);
* ``wadd_one``: ``wadd`` with the coefficients' common scale 1;
* ``add_only``: ``wadd``'s correction alone, from the energy-matched prediction;
* ``legacy``: the package's step re-implemented here (``signed_step()``), the base of
  ``multadd``, ``wadd`` and ``wmul``;
* ``wmul``: the same target reached per pixel multiplicatively (``u (psi_target /
  psi(u))^(1 / slope)``, limited to a factor e^2): zeros stay zeros.

Variants of 0.4's search for a step that decodes noise-free data (built on the step of 0.3,
which ``current`` was when they were measured; on today's package ``current`` is the step
they led to, ``region_matching.match_signed_region``):

* ``proj_after``: ``current``, then ``proj`` of its result;
* ``blend``: ``current`` and ``proj`` mixed by the model's signal fraction ``||psi(u)||^2 /
  ||u||^2``;
* ``proj_psi``: ``proj`` on the expected amplitude (coefficients shrunk by their noise, the
  out-of-span part carrying ``p^2`` less the model's noise energy), mapped back per pixel;
* ``blend_uniform``: ``current``, then ``proj`` of it mixed in with ``w = r(lam)^2``, the
  signal fraction of the region's energy were its ``lam`` counts per pixel spread evenly;
* ``blend_uniform2``: the same with the even spread's noise energy removed from the
  out-of-span part's (:func:`make_blend` with ``power=0``);
* ``blend_cos`` / ``blend_cos8``: ``blend_uniform2`` with the weight also times ``cos^2`` /
  ``cos^8`` of the angle between the model's and the measured coefficients;
* ``relax25`` / ``relax50`` / ``relax75``: ``blend_uniform2`` with the weight times 0.25,
  0.5, 0.75.

Usage::

    python benchmarks/df_step_variants.py '{"preset": "tiny", "kind": "2d", "dose": null,
        "variant": "multadd", "num_df": 16}'

Optional fields: ``num_bf`` (Zernike BF masks, 36), ``iterations`` (30), ``descan`` [px],
``mask_noise`` (``"fresh"``: the DF masks built from an independent shot-noise draw of the
same scan, an oracle), ``masks`` (``"0.2"``: 0.2's DF masks, denoised on noise components
beyond the sample's signal rank; see ``df_mask_leverage.py``).
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


def amplitude_of_expected(expected, counts_per_intensity):
    """The amplitude ``v >= 0`` whose expected measured amplitude ``psi(v)`` is ``expected``.

    The inverse of :func:`~py4dstem_compressed.reconstruction.shot_noise_model.
    expected_amplitude` (``psi`` is strictly increasing): with ``y = expected sqrt(n)`` and
    ``phi(lam) = E[sqrt(N)] = y``, ``v = sqrt(lam / n)``; below the table ``phi(lam) = lam``,
    above it ``sqrt(lam)``. Noise-free data (None): ``v = expected``.
    """
    from py4dstem_compressed.core.poisson import sqrt_poisson_table

    if counts_per_intensity is None or not np.isfinite(counts_per_intensity):
        return expected
    log_lam_grid, ratio = sqrt_poisson_table()
    log_phi = np.log(ratio) + 0.5 * log_lam_grid
    root = np.sqrt(counts_per_intensity)
    y = np.maximum(expected, 0).astype(np.float64) * root
    log_y = np.log(np.maximum(y, 1e-300))
    log_lam = np.interp(log_y, log_phi, log_lam_grid)
    log_lam = np.where(log_y < log_phi[0], log_y, log_lam)
    log_lam = np.where(log_y > log_phi[-1], 2.0 * log_y, log_lam)
    return np.where(y > 0, np.exp(0.5 * log_lam) / root, 0.0).astype(expected.dtype)


def _reached_multiplicatively(u, expected, slope, wanted):
    """``u (wanted / psi(u))^(1 / slope)`` per pixel, a factor of at most e^2 either way;
    pixels whose expected amplitude is 0 stay as they are."""
    from py4dstem_compressed.reconstruction.region_matching import LOG_STEP_LIMIT

    positive = expected > TINY
    log_ratio = np.log(np.maximum(wanted, TINY) / np.where(positive, expected, 1.0)) / slope
    log_ratio = np.where(positive, np.clip(log_ratio, -LOG_STEP_LIMIT, LOG_STEP_LIMIT), 0)
    return u * np.exp(log_ratio)


def decode(values, target, energy, region_map, masks, weight, counts_per_intensity=None):
    """The DF decoded from the stored values alone."""
    return _energy_matched(target @ masks, energy, region_map) + values * (1 - region_map)


def proj(
    values,
    target,
    energy,
    region_map,
    masks,
    weight,
    counts_per_intensity=None,
    fit_scale=False,
    noise_energy=None,
):
    """Projection onto the set of the measured coefficients and energy (``noise_energy``:
    ``(B,)`` expected shot-noise energy outside the masks, removed from ``p^2``)."""
    v = values * region_map
    inside = v @ masks.T
    cc = (target**2).sum(1)
    kappa = np.ones_like(cc)
    if fit_scale:
        kappa = (inside * target).sum(1) / np.maximum(cc, TINY)
        kappa = np.clip(kappa, 0, np.sqrt(energy / np.maximum(cc, TINY)))
    perp = v - inside @ masks
    rest2 = energy - kappa**2 * cc
    if noise_energy is not None:
        rest2 = rest2 - noise_energy
    rest = np.sqrt(np.maximum(rest2, 0))
    norm = np.sqrt((perp**2).sum(1))
    a = (kappa[:, None] * target) @ masks + perp * (rest / np.maximum(norm, TINY))[:, None]
    return _energy_matched(a, energy, region_map) + values * (1 - region_map)


def make_blend(current, power=2, relaxation=1.0):
    """``current`` (the package's signed-region step), then ``proj`` of its result with the
    weight ``relaxation * w * cos^power``: ``w = r(lam)^2`` the signal fraction of the
    region's energy were its counts spread evenly (1 noise-free), ``cos`` the angle between
    the model's expected coefficients ``M psi(v)`` and the measured ones; the even spread's
    noise energy ``(1 - w) E (1 - K / P)`` is removed from the perpendicular energy the
    projection gives the out-of-span part."""
    from py4dstem_compressed.reconstruction.shot_noise_model import (
        expected_amplitude,
        sqrt_poisson_ratio,
    )

    def blend(values, target, energy, region_map, masks, weight, counts_per_intensity=None):
        args = (values, target, energy, region_map, masks, weight)
        m = current(*args, counts_per_intensity=counts_per_intensity)
        pixels = region_map.sum()
        if counts_per_intensity is None or not np.isfinite(counts_per_intensity):
            w = np.ones(len(values))
        else:
            lam = np.asarray(energy, np.float64) * counts_per_intensity / pixels
            w = sqrt_poisson_ratio(lam) ** 2
        psi, _ = expected_amplitude(np.maximum(values, 0) * region_map, counts_per_intensity)
        inside = psi @ masks.T
        cos = (inside * target).sum(1) / np.sqrt(
            np.maximum((inside**2).sum(1) * (target**2).sum(1), TINY)
        )
        trust = relaxation * w * np.maximum(cos, 0) ** power
        noise = (1 - w) * energy * (1 - masks.shape[0] / pixels)
        p = proj(m, *args[1:], noise_energy=noise)
        a = (1 - trust[:, None]) * m + trust[:, None] * p
        return _energy_matched(a, energy, region_map) + values * (1 - region_map)

    return blend


def signed_step(steps=1, kappa_rule="unbiased", shrink="coefficient", model=True):
    """The package's signed-region step with its choices open.

    ``steps`` Newton steps; ``kappa_rule``: ``"unbiased"`` (the package: the noise's share
    removed from ``||c||^2``), ``"fit"`` (``<M psi, c> / ||c||^2``) or ``"one"`` (no common
    scale where a noise model is used); ``shrink``: ``"coefficient"`` (the package:
    ``max(0, 1 - kappa^2 sigma_n^2 / r_n^2)`` per coefficient) or ``"batch"`` (the same with
    ``sigma_n^2`` and ``r_n^2`` averaged over the batch: an empirical Wiener factor);
    ``model=False`` drops the shot-noise model (coefficients of the amplitude itself).
    """
    from py4dstem_compressed.reconstruction.region_matching import (
        LOG_STEP_LIMIT,
        relaxed_energy_scale,
    )
    from py4dstem_compressed.reconstruction.shot_noise_model import expected_amplitude

    def step(values, coefficients, energy, support, masks, weight=1.0, counts_per_intensity=None):
        counts = counts_per_intensity if model else None
        inside = support > 0
        region = np.where(inside, np.maximum(values, 0.0), 0.0)
        squares = masks * masks
        power = (coefficients * coefficients).sum(axis=1, keepdims=True)
        for _ in range(steps):
            expected, slope = expected_amplitude(region, counts)
            noise = None
            if counts is not None:
                noise = np.maximum(region**2 - expected**2, 0.0) @ squares.T
            current = expected @ masks.T
            if kappa_rule == "one" and noise is not None:
                kappa = np.ones_like(power)
            else:
                signal = power
                if kappa_rule == "unbiased" and noise is not None:
                    signal = power - noise.sum(axis=1, keepdims=True)
                signal = np.maximum(np.where(signal > 0, signal, power), TINY)
                kappa = np.maximum((current * coefficients).sum(1, keepdims=True) / signal, 0)
            residual = kappa * coefficients - current
            if noise is not None:
                spread, size = kappa**2 * noise, residual**2
                if shrink == "batch":
                    spread, size = spread.mean(0), size.mean(0)
                residual = residual * np.clip(1.0 - spread / np.maximum(size, TINY), 0.0, 1.0)
            curvature = (expected * slope) @ squares.T
            ok = curvature > TINY
            st = np.where(ok, residual / np.where(ok, curvature, 1.0), 0)
            region = region * np.exp(np.clip(st, -LOG_STEP_LIMIT, LOG_STEP_LIMIT) @ masks)
        cur = (region * region).sum(axis=1)
        scale = relaxed_energy_scale(energy, cur, (cur > TINY) & (energy > 0), weight)
        region = region * scale[:, None].astype(region.dtype)
        return np.where(inside, region, values).astype(values.dtype)

    return step


def shape_with_noise_model(holder):
    """Power-law reshaping of a region of scalable masks (one DF mask) so that, once the
    region carries its measured energy, its *expected* coefficients ``M psi(u)`` are the
    measured ones: one Newton step per call on the exponent (finite-difference slope)."""
    from py4dstem_compressed.reconstruction.region_matching import SHAPE_STEP_LIMIT
    from py4dstem_compressed.reconstruction.shot_noise_model import expected_amplitude

    def reshape(values, coefficients, perpendicular_norms, operator, regions):
        counts = holder.get("counts")
        support = np.asarray(operator.scalable_support) * (regions.sum(1) > 0)[:, None]
        masks = np.asarray(operator.masks)[np.asarray(operator.scalable_index)]
        out = values.copy()
        for n in np.flatnonzero(support.sum(1) > 0):
            inside = support[n] > 0
            v = np.maximum(values[:, inside].astype(np.float64), 0)
            m = masks[n, inside]
            region = int(np.argmax(regions[n]))
            energy = (coefficients**2 * regions[:, region]).sum(1) + perpendicular_norms[
                :, region
            ] ** 2
            c = coefficients[:, n]
            logs = np.log(np.maximum(v, TINY))
            mean = np.log(np.maximum(v.sum(1, keepdims=True) / v.shape[1], TINY))

            def predicted(delta, v=v, logs=logs, mean=mean, energy=energy, m=m):
                w = v * np.exp(delta[:, None] * (logs - mean))
                w = w * np.sqrt(energy / np.maximum((w**2).sum(1), TINY))[:, None]
                psi, _ = expected_amplitude(w, counts)
                return psi @ m

            zero = np.zeros(len(v))
            f0 = predicted(zero)
            eps = 1e-3
            slope = (predicted(zero + eps) - f0) / eps
            ok = (c > 0) & (f0 > 0) & (np.abs(slope) > 1e-12 * np.abs(f0)) & (energy > 0)
            delta = np.where(ok, (c - f0) / np.where(ok, slope, 1.0), 0.0)
            delta = np.clip(delta, -SHAPE_STEP_LIMIT, SHAPE_STEP_LIMIT)
            w = v * np.exp(delta[:, None] * (logs - mean))
            out[:, inside] = np.where(v > 0, w, 0).astype(values.dtype)
        return out

    return reshape


def fresh_noise(case: dict, data):
    """Oracle: the same scan with an independent shot-noise draw (the masks are then built
    from noise that the compressed patterns do not share)."""
    import py4DSTEM

    from py4dstem_compressed.core.calibration import calibrate
    from py4dstem_compressed.simulation.datasets import simulate

    clean = simulate(
        preset=case["preset"],
        kind=case["kind"],
        dose_per_area=None,
        descan_px=case.get("descan", 0.0),
        progress_bar=False,
    )
    electrons = data.parameters["electrons_per_pattern"]
    counts = np.random.default_rng(12345).poisson(clean.datacube.data * electrons)
    cube = py4DSTEM.DataCube(data=counts.astype(np.float32))
    calibrate(cube, data.parameters["scan_step"], data.parameters["angular_sampling"])
    return cube


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
    holder = {}
    if case["variant"] == "shape_psi":
        from py4dstem_compressed.reconstruction.region_matching import switched_regions

        projection.shape_switch = lambda operator, norms, *a: (
            switched_regions(operator, np.array([False, True])) if norms is not None else None
        )
        projection.match_participation = shape_with_noise_model(holder)

    legacy = signed_step()  # 0.2's step: the multiplicative Newton step alone

    def multadd(values, target, energy, region_map, masks, weight, counts_per_intensity=None):
        m = legacy(values, target, energy, region_map, masks, weight, counts_per_intensity)
        m = m * region_map
        inside = m @ masks.T
        kappa = np.maximum((inside * target).sum(1) / np.maximum((target**2).sum(1), TINY), 0)
        a = m + (kappa[:, None] * target - inside) @ masks
        return _energy_matched(a, energy, region_map) + values * (1 - region_map)

    def shrunk_residual(step_args, counts, batch=False, kappa_one=False, first=None):
        """``first`` (default 0.2's step) of ``step_args`` (``values, target, energy,
        region_map, masks, weight``), then its in-span residual on the expected amplitude,
        shrunk by the coefficients' shot noise (per coefficient, or averaged over the
        batch)."""
        from py4dstem_compressed.reconstruction.region_matching import (
            _coefficient_noise,
            _common_scale,
        )
        from py4dstem_compressed.reconstruction.shot_noise_model import expected_amplitude

        _, target, _, region_map, masks, _ = step_args
        m = (first or legacy)(*step_args, counts)
        region = np.maximum(m, 0) * region_map
        expected, slope = expected_amplitude(region, counts)
        noise = _coefficient_noise(region, expected, masks * masks, counts)
        inside = expected @ masks.T
        kappa = 1.0 if kappa_one else _common_scale(inside, target, noise)
        residual = kappa * target - inside
        if noise is not None:
            spread, size = kappa**2 * noise, residual**2
            if batch:
                spread, size = spread.mean(0), size.mean(0)
            residual = residual * np.clip(1.0 - spread / np.maximum(size, TINY), 0.0, 1.0)
        return region, expected, slope, residual

    def wadd(*step_args, counts_per_intensity=None, **choices):
        """``shrunk_residual`` added to the expected amplitude, mapped back through psi^-1."""
        values, _, energy, region_map, masks, _ = step_args
        _, expected, _, residual = shrunk_residual(step_args, counts_per_intensity, **choices)
        corrected = np.maximum(expected + residual @ masks, 0) * region_map
        a = amplitude_of_expected(corrected.astype(values.dtype), counts_per_intensity)
        return _energy_matched(a, energy, region_map) + values * (1 - region_map)

    def energy_only(values, target, energy, region_map, masks, weight, counts=None):
        return _energy_matched(values * region_map, energy, region_map) + values * (1 - region_map)

    def wmul(values, target, energy, region_map, masks, weight, counts_per_intensity=None):
        step_args = (values, target, energy, region_map, masks, weight)
        region, expected, slope, residual = shrunk_residual(step_args, counts_per_intensity)
        a = _reached_multiplicatively(region, expected, slope, expected + residual @ masks)
        return _energy_matched(a, energy, region_map) + values * (1 - region_map)

    def blend(values, target, energy, region_map, masks, weight, counts_per_intensity=None):
        """``proj`` and the package's step weighted by the region's signal fraction
        ``||psi(u)||^2 / ||u||^2`` under the shot-noise model (noise-free: ``proj``)."""
        from py4dstem_compressed.reconstruction.shot_noise_model import expected_amplitude

        args = (values, target, energy, region_map, masks, weight)
        m = current(*args, counts_per_intensity=counts_per_intensity)
        p = proj(*args)
        u = np.maximum(values, 0) * region_map
        psi, _ = expected_amplitude(u, counts_per_intensity)
        w = ((psi**2).sum(1) / np.maximum((u**2).sum(1), TINY))[:, None]
        a = (1 - w) * m + w * p
        return _energy_matched(a, energy, region_map) + values * (1 - region_map)

    def proj_psi(values, target, energy, region_map, masks, weight, counts_per_intensity=None):
        """``proj`` on the expected amplitude ``psi(u)``: in-span part moved to the
        coefficients by their residual shrunk by its shot noise, out-of-span part scaled to
        carry the measured perpendicular energy less its expected noise; back to amplitudes
        per pixel multiplicatively (``u (psi_t / psi)^(1 / slope)``, a factor of at most
        e^2), then energy-matched. Noise-free: ``proj`` (where the prediction is not 0)."""
        from py4dstem_compressed.reconstruction.shot_noise_model import expected_amplitude

        u = np.maximum(values, 0) * region_map
        psi, slope = expected_amplitude(u, counts_per_intensity)
        var = np.maximum(u * u - psi * psi, 0)
        sig2 = var @ (masks * masks).T
        m = psi @ masks.T
        r = target - m
        r = r * np.clip(1 - sig2 / np.maximum(r * r, TINY), 0, 1)
        q = psi - m @ masks
        p2 = energy - (target**2).sum(1)
        n_out = var.sum(1) - sig2.sum(1)
        qs = np.sqrt(np.maximum(p2 - n_out, 0)) / np.maximum(np.sqrt((q * q).sum(1)), TINY)
        psi_t = np.maximum((m + r) @ masks + q * qs[:, None], 0)
        a = _reached_multiplicatively(u, psi, slope, psi_t)
        return _energy_matched(a, energy, region_map) + values * (1 - region_map)

    def blend_uniform(values, target, energy, region_map, masks, weight, counts_per_intensity=None):
        """The package's step, then ``proj`` of it weighted by ``w = r(lam)^2``: the signal
        fraction ``E[sqrt N]^2 / lam`` of the region's energy were its ``lam`` counts per pixel
        (measured energy x counts per intensity / pixels) spread evenly, a lower bound for any
        spread; noise-free data: 1."""
        from py4dstem_compressed.reconstruction.shot_noise_model import sqrt_poisson_ratio

        args = (values, target, energy, region_map, masks, weight)
        m = current(*args, counts_per_intensity=counts_per_intensity)
        p = proj(m, *args[1:])
        if counts_per_intensity is None or not np.isfinite(counts_per_intensity):
            w = np.ones((len(values), 1))
        else:
            lam = np.asarray(energy, np.float64) * counts_per_intensity / region_map.sum()
            w = (sqrt_poisson_ratio(lam) ** 2)[:, None]
        a = (1 - w) * m + w * p
        return _energy_matched(a, energy, region_map) + values * (1 - region_map)

    projection.match_signed_region = {
        "blend_cos": make_blend(current, 2),
        "blend_cos8": make_blend(current, 8),
        "relax25": make_blend(current, 0, 0.25),
        "relax50": make_blend(current, 0, 0.5),
        "relax75": make_blend(current, 0, 0.75),
        "blend_uniform2": make_blend(current, 0),
        "blend_uniform": blend_uniform,
        "proj_psi": proj_psi,
        "blend": blend,
        "wmul": wmul,
        "wadd": wadd,
        "wadd_batch": lambda *a, **k: wadd(*a, batch=True, **k),
        "wadd_one": lambda *a, **k: wadd(*a, kappa_one=True, **k),
        "add_only": lambda *a, **k: wadd(*a, first=energy_only, **k),
        "current": current,
        "legacy": legacy,
        "no_noise_model": signed_step(model=False),
        "steps3": signed_step(3, kappa_rule="fit", model=False),
        "wiener1": signed_step(1, kappa_rule="fit"),
        "wiener3": signed_step(3, kappa_rule="fit"),
        "batch1": signed_step(1, kappa_rule="fit", shrink="batch"),
        "batch3": signed_step(3, kappa_rule="fit", shrink="batch"),
        "kappa_one": signed_step(kappa_rule="one"),
        "kappa_fit": signed_step(kappa_rule="fit"),
        "kappa_unbiased": signed_step(),
        "decode": decode,
        "proj": proj,
        "projk": lambda *a, **k: proj(*a, fit_scale=True, **k),
        "multadd": multadd,
        "proj_after": lambda *a, **k: proj(legacy(*a, **k), *a[1:], **k),
        "shape_psi": current,
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
    mask_data = data.datacube
    if case.get("mask_noise") == "fresh" and case["dose"] is not None:
        mask_data = fresh_noise(case, data)
    if case.get("masks") == "0.2":  # 0.2's DF masks: denoised on noise components too
        from df_mask_leverage import masks_of_0_2

        df_masks = masks_of_0_2(np.asarray(mask_data.data), geometry, case["num_df"])
    else:
        df_masks = pc.diffraction_pattern_basis(
            mask_data, geometry, 1, case["num_df"], seed=0
        ).df_masks
    masks = np.concatenate([bf, df_masks])
    basis = pc.Basis(masks, len(bf), case["num_df"], geometry, kind="custom")
    compressed = pc.compress(data.datacube, basis, progress_bar=False)
    ptycho = pc.CompressedMultislicePtychography(datacube=compressed, **kwargs)
    ptycho.preprocess(**KNOWN_ROTATION_PREPROCESS_KWARGS)
    holder["counts"] = ptycho._counts_per_intensity
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
