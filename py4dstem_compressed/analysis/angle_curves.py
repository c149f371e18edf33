"""A study of the families (the paper's Appendix A): mean basis angles as bases grow."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from py4dstem_compressed.analysis.metrics import basis_angles, uncaptured_variation
from py4dstem_compressed.bases.geometry import DetectorGeometry
from py4dstem_compressed.core.sources import data_array, sampled_frames

__all__ = ["AngleCurves", "angle_curves"]


@dataclass
class AngleCurves:
    """Mean basis angle against the number of masks, per basis family [rad].

    Attributes
    ----------
    bf : dict
        ``family -> (num_bf_masks array, mean BF angle array)``.
    df : dict
        ``family -> (num_df_masks array, mean DF angle array)``.
    """

    bf: dict = field(default_factory=dict)
    df: dict = field(default_factory=dict)
    #: with ``variation=True``: ``region -> family -> (counts, uncaptured variation)`` and
    #: ``region -> {"variation", "energy"[, "noise"]}`` under ``"totals"``, the standard
    #: error of the captured variation under ``"captured_se" -> region -> family -> (counts,
    #: se)``; with a ``noise_variance`` also ``"captured_noise" -> region -> family ->
    #: (counts, noise the masks capture)``
    #: (:func:`~py4dstem_compressed.analysis.metrics.uncaptured_variation`)
    variation: dict = field(default_factory=dict)

    def show(self, **kwargs):
        """Plot the curves (the paper's Appendix A figure)."""
        from py4dstem_compressed.analysis.plotting import show_angle_curves

        return show_angle_curves(self, **kwargs)


def _sample_frames(data, num_samples: int, seed: int | None) -> np.ndarray:
    return np.stack(list(sampled_frames(data_array(data), num_samples, seed)))[:, None]


def _bin_sizes_for_counts(geometry: DetectorGeometry, region: str, max_count: int) -> list[int]:
    from py4dstem_compressed.bases.registry import build_basis

    sizes, last = [], 0
    limit = int(np.ceil(2 * geometry.bf_radius)) + 1 if region == "bf" else max(geometry.shape)
    for size in range(limit, 0, -1):
        basis = (
            build_basis("binning", geometry, bf_bin=size)
            if region == "bf"
            else build_basis("binning", geometry, bf_bin=1, df_bin=size)
        )
        count = basis.num_bf if region == "bf" else basis.num_df
        if count > max_count:
            break
        if count > last:  # several widths can give the same number of bins
            sizes.append(size)
            last = count
    return sizes


def _jobs(geometry, datacube, families, counts, sampled: dict, smoothed: dict, regions) -> list:
    """``(region, family, basis)`` or ``(region, family, builder, count)`` for each point."""
    from py4dstem_compressed.bases.registry import build_basis

    def grown(name, vary, **fixed):
        """Build a basis of the registry's family ``name`` with ``k`` masks in ``vary``."""
        return lambda k: build_basis(name, geometry, datacube, **fixed, **{vary: k})

    builders = {
        ("bf", "zernike"): grown("zernike", "num_bf", num_df=1),
        ("bf", "diffraction_pattern"): grown("diffraction_pattern", "num_bf", num_df=1, **smoothed),
        ("bf", "pca"): grown("pca", "num_bf", num_df=1, **sampled),
        ("df", "zernike"): grown("zernike", "num_df", num_bf=1),
        ("df", "zernike_m0"): grown("zernike", "num_df", num_bf=1, df_rotationally_symmetric=True),
        ("df", "diffraction_pattern"): grown("diffraction_pattern", "num_df", num_bf=1, **smoothed),
        ("df", "pca"): grown("pca", "num_df", num_bf=1, **sampled),
    }
    jobs = []
    for family in families:
        if family == "binning":
            jobs += [
                ("bf", "binning", build_basis("binning", geometry, bf_bin=s))
                for s in _bin_sizes_for_counts(geometry, "bf", counts[-1])
                if "bf" in regions
            ]
            jobs += [
                ("df", "binning", build_basis("binning", geometry, bf_bin=1, df_bin=s))
                for s in _bin_sizes_for_counts(geometry, "df", counts[-1])
                if "df" in regions
            ]
            continue
        curves = [family, "zernike_m0"] if family == "zernike" else [family]
        for region in regions:
            for name in curves:
                if (region, name) in builders:
                    jobs += [(region, name, builders[region, name], k) for k in counts]
    return jobs


def angle_curves(
    datacube,
    geometry: DetectorGeometry,
    num_masks=(1, 2, 3, 5, 8, 10, 15, 21, 28, 36, 45),
    families=("binning", "zernike", "diffraction_pattern", "pca"),
    num_samples: int = 256,
    mode: str = "amplitude",
    seed: int | None = 0,
    progress_bar: bool = True,
    held_out=None,
    descan="auto",
    regions=("bf", "df"),
    variation: bool = False,
    noise_variance=None,
) -> AngleCurves:
    """Mean BF and DF angles of a random sample of patterns for growing bases.

    BF curves vary the number of BF masks of each family (binning: every bin
    width giving at most ``max(num_masks)`` bins); DF curves vary the number
    of DF masks (Zernike doughnuts, their ``m = 0`` subset, DF bins, DF
    diffraction patterns and DF principal components) with a single BF mask.
    Counts that a detector or sample cannot support (too few pixels or
    independent patterns) are skipped.

    Parameters
    ----------
    datacube : py4DSTEM.DataCube or array-like
        ``(Rx, Ry, Qx, Qy)`` data [counts]; data-derived masks are built from it.
    geometry : DetectorGeometry
        Detector regions.
    num_masks : sequence of int
        Mask counts of each curve.
    families : sequence of str
        Registry names of the families to study.
    num_samples : int
        Random patterns of ``datacube`` the angles are measured on.
    mode : {"amplitude", "intensity"}
        Angles (and data-derived masks) of ``sqrt(I)`` or ``I``.
    seed : int, optional
        Seed of the sample and of the data-derived masks' sampling.
    progress_bar : bool
        Show a tqdm bar.
    held_out : array-like, optional
        ``(Rx, Ry, Qx, Qy)`` patterns to measure the angles on instead of a sample of
        ``datacube``: patterns the data-derived masks were not built from, so that their
        angles are not flattered by fitting the sample's own noise.
    descan : "auto", array-like or None
        Passed to the data-derived generators (None for a sample that is not a scan).
    regions : sequence of {"bf", "df"}
        The regions whose curves are measured (default both).
    variation : bool
        Also measure what the masks miss of the signal that varies across the sampled
        patterns (:func:`~py4dstem_compressed.analysis.metrics.uncaptured_variation`), into
        ``curves.variation``.
    noise_variance : numpy.ndarray, optional
        With ``variation``: ``(Qx, Qy)`` shot-noise variance of each pixel's value in the
        mode; how much of it each basis captures goes into
        ``curves.variation["captured_noise"]``.

    Returns
    -------
    AngleCurves
        Angles [rad].
    """
    from tqdm.auto import tqdm

    from py4dstem_compressed.bases.data_derived import default_smoothing_px

    if held_out is None:
        sample = _sample_frames(datacube, num_samples, seed)
    else:
        sample = np.asarray(data_array(held_out))
    counts = sorted(int(k) for k in num_masks)
    # one smoothing along the whole curve (the default's value): counts the smoothed patterns
    # cannot support are left out instead of being built with less smoothing
    sampled = {"seed": seed, "mode": mode, "descan": descan}
    smoothed = {**sampled, "smoothing_px": default_smoothing_px(geometry)}
    unknown = set(regions) - {"bf", "df"}
    if unknown:
        raise ValueError(f"regions must be 'bf' and/or 'df', got {sorted(unknown)}")
    jobs = _jobs(geometry, datacube, families, counts, sampled, smoothed, tuple(regions))
    results: dict = {"bf": {}, "df": {}}
    missed: dict = {"bf": {}, "df": {}}
    frames = sample.reshape(-1, *sample.shape[-2:])
    for job in tqdm(jobs, desc="Angle curves", disable=not progress_bar):
        region, family = job[0], job[1]
        try:
            basis = job[2] if len(job) == 3 else job[2](job[3])
        except ValueError:
            continue  # this detector or sample cannot support that many masks
        angles = basis_angles(sample, basis, mode=mode)
        k = basis.num_bf if region == "bf" else basis.num_df
        mean = angles.mean_bf if region == "bf" else angles.mean_df
        results[region].setdefault(family, []).append((k, mean))
        if variation:
            measured = uncaptured_variation(frames, basis, mode, noise_variance)[region]
            missed[region].setdefault(family, []).append((k, measured["uncaptured"]))
            missed.setdefault("totals", {})[region] = {
                key: measured[key] for key in ("variation", "energy", "noise") if key in measured
            }
            for key in ("captured_noise", "captured_se"):
                if key in measured:
                    curve = missed.setdefault(key, {"bf": {}, "df": {}})[region]
                    curve.setdefault(family, []).append((k, measured[key]))
    curves = AngleCurves()
    for region in ("bf", "df"):
        for family, pairs in results[region].items():
            pairs.sort()
            ks, means = zip(*pairs)
            getattr(curves, region)[family] = (np.array(ks), np.array(means))
    if variation:
        curves.variation = _as_curves(missed)
        curves.variation["totals"] = missed.get("totals", {})
        for key in ("captured_noise", "captured_se"):
            if key in missed:
                curves.variation[key] = _as_curves(missed[key])
    return curves


def _as_curves(pairs_by_region: dict) -> dict:
    """``region -> family -> (counts, values)`` arrays from lists of ``(count, value)``."""
    return {
        region: {
            family: tuple(np.array(column) for column in zip(*sorted(pairs)))
            for family, pairs in pairs_by_region[region].items()
        }
        for region in ("bf", "df")
    }
