"""Choose a basis from the data: the BF/DF mask counts and the DF family within a value budget.

:func:`suggest_basis` builds data-derived masks on one half of a sample of patterns, measures
on the other half, for a range of mask counts per region, the mean basis angle and what the
masks miss of the signal that varies across the scan
(:func:`~py4dstem_compressed.analysis.angle_curves.angle_curves` with ``held_out=`` and
``variation=True``), estimates how much of it is shot noise the masks capture, and spends
the budget where masks capture the most signal. The record of the choice is stored in
``basis.parameters["suggestion"]`` and printed by ``basis.describe()``.
"""

from __future__ import annotations

import numpy as np

from py4dstem_compressed.analysis.angle_curves import AngleCurves, angle_curves
from py4dstem_compressed.analysis.uncaptured_signal import (
    curve_points,
    held_out_noise_variance,
    noise_scale,
    signal_curves,
)
from py4dstem_compressed.bases.basis import SUGGESTION_KEY, Basis
from py4dstem_compressed.bases.descan import descan_shifts
from py4dstem_compressed.bases.geometry import DetectorGeometry
from py4dstem_compressed.core.sources import data_array

__all__ = ["suggest_basis"]

#: BF masks: Zernike polynomials (analytic: they carry no noise of the sample)
BF_FAMILY = "zernike"
#: DF families considered (data-derived: the DF of a specimen is where its reflections are),
#: in the order ties are broken
DF_FAMILIES = ("diffraction_pattern", "pca")
#: Mask counts measured per region (capped by the budget)
COUNTS = (1, 2, 3, 4, 6, 8, 10, 12, 15, 21, 28, 36, 45, 55, 66)
#: Fewest values a suggestion can use: 1 BF + 1 DF mask + the 2 perpendicular norms
MIN_VALUES = 4
#: Fewest patterns: half build the masks, half measure them
MIN_PATTERNS = 16
#: Patterns read from a scan (a pre-scan sample is used whole up to this size)
NUM_SAMPLES = 256
#: BF starts with the Zernike polynomials of radial order <= this: piston, the two tilts (the
#: disk's centre of mass, the phase gradient DPC images) and the three second moments
#: (defocus, astigmatism: its curvature), the low-order signal of the object's long
#: wavelengths that carries little of the pattern's energy
BF_START_ORDER = 2
#: No more masks once one captures less than this fraction of the scan-varying signal
MIN_GAIN_PER_MASK = 0.01
#: ... or less than this many times the shot noise it stores (power SNR of its coefficient)
MIN_MASK_SNR = 4.0
#: DF masks whose captured signal (beyond the noise they capture) is this many standard
#: errors of the captured variation above 0 hold signal, not the sample's chance: the DF
#: then gets what is left of the budget where it captures signal
SIGNIFICANCE_Z = 2.0
#: A family must leave this much less uncaptured signal (fraction of the scan-varying signal
#: the DF's uniform mask misses) to beat one listed before it
TIE_MARGIN = 0.02


def _sample(datacube, num_samples: int, seed) -> tuple[np.ndarray, np.ndarray | None]:
    """``(N, Qx, Qy)`` float64 patterns and their scan positions (None for a 3D sample)."""
    if isinstance(datacube, np.ndarray) and datacube.ndim == 3:
        frames, positions = np.asarray(datacube, np.float64), None
        if len(frames) > num_samples:
            keep = np.sort(np.random.default_rng(seed).choice(len(frames), num_samples, False))
            frames = frames[keep]
    else:
        data = data_array(datacube)
        rx, ry = data.shape[:2]
        count = min(num_samples, rx * ry)
        flat = np.sort(np.random.default_rng(seed).choice(rx * ry, size=count, replace=False))
        frames = np.stack([np.asarray(data[i // ry, i % ry], np.float64) for i in flat])
        positions = np.stack([flat // ry, flat % ry], 1)
    if len(frames) < MIN_PATTERNS:
        raise ValueError(
            f"suggest_basis needs at least {MIN_PATTERNS} patterns (half build the masks, half "
            f"measure them), got {len(frames)}; record a larger sample"
        )
    if not np.all(np.isfinite(frames)):
        raise ValueError(
            "the sampled patterns contain NaN or inf; mask or replace those pixels first"
        )
    return frames, positions


def _in_disk_frame(frames, positions, datacube, geometry) -> tuple[np.ndarray, int]:
    """Patterns of a scan moved back by their whole-pixel descan, and the largest shift [px].

    Compression follows a drifting disk by moving the masks with it (``compress(descan=
    "auto")``), so masks are built, and the angles measured, in the frame of the disk, as
    the data-derived bases do (``descan="auto"``): a DF mask built from patterns that
    drifted would be smeared by the drift. A pre-scan sample (no scan positions) is taken
    as it is.
    """
    if positions is None:
        return frames, 0
    shifts = descan_shifts("auto", data_array(datacube), geometry)[tuple(positions.T)]
    if not shifts.any():
        return frames, 0
    moved = np.stack(
        [np.roll(f, (-int(s[0]), -int(s[1])), axis=(0, 1)) for f, s in zip(frames, shifts)]
    )
    return moved, int(np.abs(shifts).max())


def _bf_start(counts) -> int:
    """The fewest BF masks: Zernike radial orders up to :data:`BF_START_ORDER`, or what fits."""
    complete = (BF_START_ORDER + 1) * (BF_START_ORDER + 2) // 2
    fitting = [k for k in counts if k <= complete]
    return max(fitting) if fitting else min(counts)


def _allocate(
    bf: dict, df: dict, masks: int, noise_per_mask: dict, df_se: dict
) -> tuple[int, int] | None:
    """BF and DF counts (keys of the curves) for at most ``masks`` masks, or None.

    ``bf`` and ``df`` map counts to the uncaptured scan-varying signal, in the same units
    for both regions (the coefficient loss sums both). BF starts with the Zernike orders up
    to :data:`BF_START_ORDER` (:func:`_bf_start`) and DF with its uniform mask; then masks
    go, a step of a curve at a time, to the region whose step captures the most signal per
    mask, while a mask captures at least ``MIN_GAIN_PER_MASK`` of the signal both regions'
    first masks miss and ``MIN_MASK_SNR`` times the noise it stores (``noise_per_mask``).
    What is left of the budget then goes, the step capturing the most signal per mask
    first, to every step that fits, in BF and, if it got a significant mask or its masks
    capture signal beyond the sampling error (``df_se``: count -> standard error of the
    captured variation; :data:`SIGNIFICANCE_Z` of them at some count that fits), in DF.
    The masks of a curve are nested, so a step never captures less of the variation; where
    its estimated signal gain is below 0 it has captured noise, which the data step shrinks,
    within the sampling error of the noise subtraction.
    """
    kd = min(df)
    kb = _bf_start([k for k in bf if k + kd <= masks] or [min(bf)])
    if kb + kd > masks:
        return None
    total = bf[min(bf)] + df[kd]
    floor = {r: max(MIN_GAIN_PER_MASK * total, MIN_MASK_SNR * n) for r, n in noise_per_mask.items()}

    def steps(curves, kb, kd, significant=True):
        found = [
            ((curve[now] - curve[k]) / (k - now), region, k)
            for region, curve, now in curves
            for k in curve
            if k > now and kb + kd + k - now <= masks
        ]
        if not significant:
            return found
        return [step for step in found if step[0] >= floor[step[1]] and step[0] > 0]

    while found := steps((("bf", bf, kb), ("df", df, kd)), kb, kd):
        _, region, k = max(found)
        kb, kd = (k, kd) if region == "bf" else (kb, k)
    # the rest of the budget: every step that fits. A coefficient too noisy on one pattern is
    # averaged over the overlapping positions of the scan, and the data step takes any number
    # of masks and shrinks noisy coefficients, so stored values are not left unused (a region
    # whose first mask was not significant and whose masks hold no signal beyond the sampling
    # error, a DF of shot noise, gets none)
    first = min(df)
    signal = any(
        df[first] - df[k] > SIGNIFICANCE_Z * df_se.get(k, np.inf)
        for k in df
        if first < k <= masks - kb
    )
    regions = (("bf", bf), ("df", df)) if kd > first or signal else (("bf", bf),)
    while found := steps(
        tuple((r, c, kb if r == "bf" else kd) for r, c in regions), kb, kd, significant=False
    ):
        _, region, k = max(found)
        kb, kd = (k, kd) if region == "bf" else (kb, k)
    return kb, kd


def _label(df_family: str, num_df: int) -> str:
    """Name of a suggestion: ``"zernike"`` with one (uniform) DF mask, else BF+DF families."""
    return BF_FAMILY if num_df == 1 else f"{BF_FAMILY}+{df_family}"


def _choose(curves: AngleCurves, scale: dict, geometry, masks: int) -> tuple[str, int, int, dict]:
    """The DF family and counts leaving the least uncaptured signal (BF + DF), as a fraction
    of what both regions' first masks miss.

    A family listed later must leave less by :data:`TIE_MARGIN` of what the DF's uniform
    mask misses: the families differ in their DF masks only, and a thin specimen's DF holds
    a small part of the signal both regions miss.
    """
    scores, picks, margins = {}, {}, {}
    for family in DF_FAMILIES:
        if family not in curves.variation["df"]:
            continue
        bf, df, noise_per_mask = signal_curves(curves, BF_FAMILY, family, scale, geometry)
        df_se = curve_points(curves.variation["captured_se"], family, "df")
        counts = _allocate(bf, df, masks, noise_per_mask, df_se) if bf and df else None
        if counts is None:
            continue
        total = bf[min(bf)] + df[min(df)]
        picks[family] = counts
        scores[family] = (bf[counts[0]] + df[counts[1]]) / total if total > 0 else 0.0
        margins[family] = TIE_MARGIN * df[min(df)] / total if total > 0 else 0.0
    if not scores:
        raise ValueError(
            f"no basis fits {masks} masks on this detector; raise max_values_per_pattern"
        )
    chosen = next(iter(scores))
    for family, score in scores.items():
        if score < scores[chosen] - margins[family]:
            chosen = family
    return chosen, *picks[chosen], scores


def _build(df_family, geometry, sample, num_bf, num_df, seed, mode) -> Basis:
    """Zernike BF masks with ``num_df`` DF masks of ``df_family`` (one: the uniform mask)."""
    from py4dstem_compressed.bases.assembly import assemble_basis
    from py4dstem_compressed.bases.registry import build_basis

    zernike = build_basis(BF_FAMILY, geometry, num_bf=num_bf, num_df=1)
    if num_df == 1:
        return zernike
    dark = build_basis(
        df_family, geometry, sample, num_bf=1, num_df=num_df, seed=seed, mode=mode, descan=None
    )
    parameters = {
        "bf_family": BF_FAMILY,
        "df_family": df_family,
        "num_bf": num_bf,
        "num_df": num_df,
        **{f"df_{k}": v for k, v in dark.parameters.items() if k not in ("num_bf", "num_df")},
    }
    return assemble_basis(
        geometry,
        zernike.bf_masks,
        dark.df_masks,
        "custom",
        parameters,
        dark.positions,
        dark.mode,
    )


def _record(curves: AngleCurves, noise: dict, scores: dict, **fields) -> dict:
    """The JSON-serialisable record of a suggestion (angles in degrees, the uncaptured
    scan-varying signal as a fraction of the patterns' mean energy)."""

    def as_lists(by_region, value):
        """``region -> family -> [[count, value(v)], ...]`` of curves ``(counts, values)``."""
        return {
            region: {
                family: [[int(k), value(v)] for k, v in zip(*curve)]
                for family, curve in by_region[region].items()
            }
            for region in ("bf", "df")
        }

    as_deg = as_lists({"bf": curves.bf, "df": curves.df}, lambda a: round(float(np.degrees(a)), 3))
    missed = as_lists(curves.variation, lambda v: round(float(v), 7))
    totals = {
        region: {key: round(float(v), 7) for key, v in values.items()}
        for region, values in curves.variation["totals"].items()
    }
    captured_noise = as_lists(curves.variation["captured_noise"], float)
    floor = {r: round(float(np.degrees(np.arcsin(np.sqrt(f)))), 3) for r, f in noise.items()}
    return {
        **fields,
        "noise_fraction": {r: float(f) for r, f in noise.items()},
        "noise_floor_deg": floor,
        "uncaptured_signal": {f: round(float(s), 5) for f, s in scores.items()},
        "angle_curves_deg": as_deg,
        "uncaptured_variation": missed,
        "variation_totals": totals,
        "captured_noise": captured_noise,
        "rule": (
            f"BF starts with the Zernike orders <= {BF_START_ORDER}, DF with its uniform mask; "
            "then masks go, a step at a time, to the region where they capture the most of "
            "the held-out patterns' scan-varying signal (the variation about the mean "
            "pattern, less the held-out patterns' shot noise the masks do not capture, "
            "measured per mask set; both regions in the same units) while a mask captures "
            ">= 1% of it and >= 4x the noise it stores, then the rest of the budget to every "
            "step that fits, most signal per mask first (in the DF if a DF mask was "
            f"significant or its masks capture signal {SIGNIFICANCE_Z:g} standard errors above "
            "0); BF masks are "
            "Zernike polynomials, DF masks the data-derived family leaving the least "
            "uncaptured signal"
        ),
    }


def suggest_basis(
    datacube,
    geometry: DetectorGeometry | None = None,
    max_values_per_pattern: int = 40,
    seed: int | None = None,
    *,
    mode: str = "amplitude",
    num_samples: int = NUM_SAMPLES,
    progress_bar: bool = True,
) -> Basis:
    """Choose the BF/DF mask counts and the DF masks' family from the data, within a budget.

    The rule: spend masks where they reduce the uncaptured *signal* most, not the noise.

    0. The patterns of a scan are moved back by their whole-pixel descan (the plane
       :func:`~py4dstem_compressed.bases.descan.fit_descan` fits over the scan), into the
       frame of the disk where descan-aware compression applies the masks, as the
       data-derived bases do; a pre-scan sample is taken as it is.
    1. A sample of up to ``num_samples`` patterns is split in two random halves: data-derived
       masks (diffraction patterns, PCA) are built from one, and measured on the other (held
       out), for mask counts from 1 up to the budget: the mean basis angle of each region,
       and what the masks miss of the *scan-varying signal*, each pattern minus the held-out
       patterns' mean (:func:`~py4dstem_compressed.analysis.metrics.uncaptured_variation`).
       The mean pattern (the probe's disk, the specimen's average diffraction) is what the
       reconstruction's model predicts from every position at once; what changes from
       position to position is the object's information. Both regions are measured in the
       same units (the patterns' mean energy), those of the coefficient loss that sums them:
       a thin specimen's dark field holds a few percent of the energy but as much of the
       varying signal as its bright field. Without holding out, data-derived masks would fit
       the sample's own noise.
    2. The shot noise of each held-out pixel is estimated, unit-free: the intensity of one
       count from the sample's pixel-to-pixel noise (the data step's estimate,
       :func:`~py4dstem_compressed.compression.shot_noise.intensity_per_count`), each
       pixel's variance from the held-out patterns' mean intensity. Of a region's noise
       energy ``N``, a mask set captures ``C = sum_k sum_p w_kp^2 sigma_p^2`` (measured per
       set: masks that follow the bright pixels of a sparse dark field capture much more of
       its noise than ``k / pixels``); ``N - C`` is the noise in what the masks miss, the
       rest is uncaptured signal. ``N`` is scaled down where it would exceed what a curve
       leaves uncaptured (noise of held-out patterns is independent of the masks;
       structure finer than the estimate's local fit, noise-free data, would otherwise pass
       for noise). The noise floor of the angle is ``arcsin(sqrt(N / E_R))``.
    3. BF starts with the Zernike polynomials of radial order <= 2 (piston, the tilts that
       carry the disk's centre of mass, the second moments that carry its curvature: the
       object's long wavelengths, a large part of the image in little of the energy), DF
       with its uniform mask. The remaining masks go, a step of
       a curve at a time, to the region where they capture the most signal per mask, while
       a mask captures at least 1% of the signal both regions' first masks miss and at least
       4 times the shot noise it stores (``N / pixels`` per mask: the power SNR of its
       coefficient >= 4). What is left of the budget then goes the same way (most signal
       per mask first) to every step that fits, in the DF only if a DF mask was significant
       or the DF masks capture signal 2 standard errors (of the held-out mean) above 0: a
       coefficient too noisy on one pattern is averaged over the scan's overlapping
       positions by the reconstruction, whose data step takes any number of masks per
       region, while a DF of shot noise keeps its one uniform mask. Budget is left unused
       only where no step of a curve fits in it.
    4. BF masks are Zernike polynomials; the DF masks come from the data-derived family
       (diffraction patterns, then PCA, which must beat it by 0.02 of the signal the DF's
       uniform mask misses) that leaves the least uncaptured signal (BF + DF). With
       one DF mask the basis is a Zernike basis. Why
       not the smallest angles everywhere: data-derived BF masks fit held-out patterns
       better than Zernike polynomials but carry the sample's noise and one-off detail, and
       reconstructed worse on every benchmark set and dose; in the dark field, which holds
       the specimen's reflections, data-derived masks are the ones that carry the
       information, while more Zernike DF masks lowered the quality (README, "Thin
       specimens").

    Every stored value counts: ``num_bf + num_df + 2`` (perpendicular norms)
    ``<= max_values_per_pattern``.

    Parameters
    ----------
    datacube : py4DSTEM.DataCube or array-like
        A scan ``(Rx, Ry, Qx, Qy)`` (``num_samples`` random patterns are read) or a sample of
        patterns recorded before the acquisition, ``(N, Qx, Qy)`` or ``(Rx, Ry, Qx, Qy)``;
        intensities in any unit (counts, scaled counts, normalised).
    geometry : DetectorGeometry, optional
        Detector regions; default ``DetectorGeometry.from_datacube`` of the sample.
    max_values_per_pattern : int
        Budget of stored values per pattern (masks + 2 norms), at least 4.
    seed : int, optional
        Seed of the sample, its split and the data-derived masks.
    mode : {"amplitude", "intensity"}
        The compression mode the basis is for.
    num_samples : int
        Most patterns read.
    progress_bar : bool
        Show the progress of the angle curves.

    Returns
    -------
    Basis
        Built on the whole sample; ``parameters["suggestion"]`` records the curves [deg],
        the noise estimate, the budget and the choice (``describe()`` prints them).

    Raises
    ------
    ValueError
        For a budget under 4 values, fewer than 16 patterns, NaN or inf in the patterns.
    """
    if int(max_values_per_pattern) != max_values_per_pattern or max_values_per_pattern < 4:
        raise ValueError(
            f"max_values_per_pattern must be an integer >= {MIN_VALUES} (1 BF + 1 DF mask + 2 "
            f"perpendicular norms), got {max_values_per_pattern}"
        )
    frames, positions = _sample(datacube, num_samples, seed)
    geometry = geometry or DetectorGeometry.from_datacube(frames[:, None], seed=seed)
    frames, descan_px = _in_disk_frame(frames, positions, datacube, geometry)
    sample = frames[:, None]  # (N, 1, Qx, Qy): a scan of one column
    masks = int(max_values_per_pattern) - 2
    order = np.random.default_rng(seed).permutation(len(frames))
    train, test = sample[np.sort(order[::2])], sample[np.sort(order[1::2])]
    counts = [k for k in COUNTS if k < masks] or [1]
    common = dict(
        num_samples=len(train),
        mode=mode,
        seed=seed,
        progress_bar=progress_bar,
        held_out=test,
        variation=True,
        noise_variance=held_out_noise_variance(frames, test, geometry, mode),
    )
    common["descan"] = None  # the sample is in the frame of the disk already
    # Zernike curves of both regions (the DF's uniform first mask included), then the
    # data-derived DF curves; data-derived BF masks are not considered
    curves = angle_curves(train, geometry, counts, (BF_FAMILY,), **common)
    dark = angle_curves(train, geometry, counts, DF_FAMILIES, **common, regions=("df",))
    curves.df.update(dark.df)
    curves.variation["df"].update(dark.variation["df"])
    for key in ("captured_noise", "captured_se"):
        curves.variation[key]["df"].update(dark.variation[key]["df"])
    scale = noise_scale(curves)
    totals = curves.variation["totals"]
    noise = {r: scale[r] * totals[r]["noise"] / totals[r]["energy"] for r in ("bf", "df")}
    df_family, num_bf, num_df, scores = _choose(curves, scale, geometry, masks)
    basis = _build(df_family, geometry, sample, num_bf, num_df, seed, mode)
    record = _record(
        curves,
        noise,
        {f"{BF_FAMILY}+{f}": score for f, score in scores.items()},
        budget=int(max_values_per_pattern),
        values=num_bf + num_df + 2,
        family=_label(df_family, num_df),
        bf_family=BF_FAMILY,
        df_family=df_family if num_df > 1 else BF_FAMILY,
        num_bf=num_bf,
        num_df=num_df,
        patterns={"masks_from": len(train), "held_out": len(test)},
        seed=seed,
        mode=mode,
        descan_px_max=descan_px,
        noise_scale={r: float(f) for r, f in scale.items()},
        pixels={r: int(getattr(geometry, r).sum()) for r in ("bf", "df")},
    )
    used = basis.positions
    if positions is not None and used is not None:
        used = positions[used[:, 0]]  # sample index -> scan position
    parameters = {**basis.parameters, SUGGESTION_KEY: record}
    return Basis(basis.masks, num_bf, num_df, geometry, basis.kind, parameters, used, basis.mode)
