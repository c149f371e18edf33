"""How much a basis compresses and how well it fits: Eqs. 17 and 18.

FSC and registration to a ground truth live in :mod:`py4dstem_compressed.analysis.resolution`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from py4dstem_compressed.bases.basis import Basis
from py4dstem_compressed.bases.geometry import DetectorGeometry, _data_array
from py4dstem_compressed.core.sources import frame_batch, sampled_frames
from py4dstem_compressed.storage.compressed_datacube import CompressedDataCube

__all__ = [
    "AngleCurves",
    "BasisAngles",
    "angle_curves",
    "basis_angles",
    "compression_ratio",
    "stored_compression_ratio",
]


def compression_ratio(basis: Basis) -> float:
    """The paper's compression ratio ``C = Qx Qy / (K_bf + K_df + 2)`` (Eq. 17).

    The 2 counts the two perpendicular norms. See
    :func:`stored_compression_ratio` for the ratio of all values a
    :class:`CompressedDataCube` stores.
    """
    return float(basis.geometry.num_pixels) / (basis.num_masks + 2)


def stored_compression_ratio(compressed: CompressedDataCube) -> float:
    """Detector pixels over every value stored per pattern (coefficients, norms, totals, CoM)."""
    return compressed.stored_compression_ratio


@dataclass(frozen=True)
class BasisAngles:
    """Per-pattern basis angles (Eq. 18).

    The arrays ``bf`` and ``df`` hold radians (what numpy's trigonometry takes); everything
    that is printed or plotted - ``repr``, :meth:`describe`, :meth:`summary`, :meth:`show` -
    is in degrees, as are the ``*_deg`` accessors.

    Attributes
    ----------
    bf, df : numpy.ndarray
        ``(Rx, Ry)`` angle [rad] between each pattern's BF (DF) part and the span of
        the BF (DF) masks: 0 = in the span, pi/2 = orthogonal. NaN where the
        region of the pattern is empty.
    """

    bf: np.ndarray = field(repr=False)
    df: np.ndarray = field(repr=False)

    @property
    def mean_bf(self) -> float:
        """Mean BF angle [rad] (see :attr:`mean_bf_deg`)."""
        return float(np.nanmean(self.bf)) if np.isfinite(self.bf).any() else float("nan")

    @property
    def mean_df(self) -> float:
        """Mean DF angle [rad] (see :attr:`mean_df_deg`)."""
        return float(np.nanmean(self.df)) if np.isfinite(self.df).any() else float("nan")

    @property
    def bf_deg(self) -> np.ndarray:
        """``(Rx, Ry)`` BF angles [deg]."""
        return np.degrees(self.bf)

    @property
    def df_deg(self) -> np.ndarray:
        """``(Rx, Ry)`` DF angles [deg]."""
        return np.degrees(self.df)

    @property
    def mean_bf_deg(self) -> float:
        """Mean BF angle [deg]."""
        return float(np.degrees(self.mean_bf))

    @property
    def mean_df_deg(self) -> float:
        """Mean DF angle [deg]."""
        return float(np.degrees(self.mean_df))

    def summary(self) -> dict:
        """Mean, median and max of each region's angle, in [deg] and in [rad].

        Returns
        -------
        dict
            ``{region}_{stat}_deg`` and ``{region}_{stat}_rad`` for region ``bf``/``df`` and
            stat ``mean``/``median``/``max`` (NaN where the region is empty everywhere).
        """
        out = {}
        for region, values in (("bf", self.bf), ("df", self.df)):
            finite = values[np.isfinite(values)]
            stats = (
                (finite.mean(), np.median(finite), finite.max()) if finite.size else (np.nan,) * 3
            )
            for name, value in zip(("mean", "median", "max"), stats):
                out[f"{region}_{name}_deg"] = float(np.degrees(value))
                out[f"{region}_{name}_rad"] = float(value)
        return out

    def describe(self) -> str:
        """One line: scan shape and each region's mean, median and max angle [deg]."""
        s = self.summary()
        parts = [
            f"{region.upper()} mean {s[f'{region}_mean_deg']:.2f}°, "
            f"median {s[f'{region}_median_deg']:.2f}°, max {s[f'{region}_max_deg']:.2f}°"
            for region in ("bf", "df")
        ]
        shape = "x".join(str(n) for n in np.shape(self.bf))
        return f"basis angles over {shape} patterns (deg): " + "; ".join(parts)

    def __repr__(self) -> str:
        return f"BasisAngles({self.describe()}; arrays .bf/.df in rad, .bf_deg/.df_deg in deg)"

    def show(self, **kwargs):
        """Plot the BF and DF angle maps [deg]."""
        from py4dstem_compressed.analysis.plotting import show_angle_maps

        return show_angle_maps(self, **kwargs)


def _angles(captured_sq: np.ndarray, perpendicular_sq: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        theta = np.arctan2(np.sqrt(np.maximum(perpendicular_sq, 0)), np.sqrt(captured_sq))
    empty = (captured_sq + np.maximum(perpendicular_sq, 0)) <= 0
    return np.where(empty, np.nan, theta)


def basis_angles(
    data, basis: Basis | None = None, mode: str | None = None, max_batch_size: int = 1024
) -> BasisAngles:
    """Angle between each pattern and the span of the basis, per region (Eq. 18).

    ``theta_R = arccos(||P_R v_R|| / ||v_R||)``, computed in float64 as
    ``arctan2(||v_R - P_R v_R||, ||P_R v_R||)`` for stability near 0.

    Parameters
    ----------
    data : py4DSTEM.DataCube, numpy.ndarray or CompressedDataCube
        Raw ``(Rx, Ry, Qx, Qy)`` data [counts], or compressed data (then the
        stored coefficients and perpendicular norms are used, no raw data needed).
    basis : Basis, optional
        Required for raw data; defaults to the compressed data's basis.
    mode : {"amplitude", "intensity"}, optional
        For raw data: angle of ``sqrt(I)`` or ``I``; default ``basis.mode`` or amplitude.
    max_batch_size : int
        Frames per batch for raw data.

    Returns
    -------
    BasisAngles
    """
    if isinstance(data, CompressedDataCube):
        basis = data.basis if basis is None else basis
        c_sq = data.coefficients.astype(np.float64) ** 2
        p_sq = data.perpendicular_norms.astype(np.float64) ** 2
        bf = _angles(c_sq[..., : basis.num_bf].sum(-1), p_sq[..., 0])
        df = _angles(c_sq[..., basis.num_bf :].sum(-1), p_sq[..., 1])
        return BasisAngles(bf, df)
    if basis is None:
        raise ValueError("basis_angles needs a basis for raw data")
    mode = mode or basis.mode or "amplitude"
    array = _data_array(data)
    basis.check_detector(array.shape[2:])
    rx, ry = array.shape[:2]
    masks = basis.masks_flat.astype(np.float64)
    regions = np.stack([basis.geometry.bf.ravel(), basis.geometry.df.ravel()], 1).astype(float)
    # Project with the Gram matrix of the stored (float32) masks, so that a pattern in
    # their span has angle 0 to float64 precision rather than sqrt(float32 eps).
    splits = (slice(0, basis.num_bf), slice(basis.num_bf, basis.num_masks))
    whiten = [_inverse_cholesky(masks[s]) for s in splits]
    out = np.empty((rx * ry, 2))
    for start in range(0, rx * ry, max_batch_size):
        stop = min(start + max_batch_size, rx * ry)
        frames = frame_batch(array, start, stop)
        v = frames.reshape(stop - start, -1).astype(np.float64)
        if mode == "amplitude":
            v = np.sqrt(np.clip(v, 0, None))
        c = v @ masks.T
        captured = np.stack([((c[:, s] @ w.T) ** 2).sum(1) for s, w in zip(splits, whiten)], 1)
        norms_sq = (v * v) @ regions
        out[start:stop] = _angles(captured, norms_sq - captured)
    out = out.reshape(rx, ry, 2)
    return BasisAngles(out[..., 0], out[..., 1])


def _inverse_cholesky(masks: np.ndarray) -> np.ndarray:
    """``L^-1`` with ``L L^T = M M^T``: ``||L^-1 M v||`` is the norm of ``v``'s projection."""
    if masks.shape[0] == 0:
        return np.zeros((0, 0))
    return np.linalg.inv(np.linalg.cholesky(masks @ masks.T))


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

    def show(self, **kwargs):
        """Plot the curves (the paper's Appendix A figure)."""
        from py4dstem_compressed.analysis.plotting import show_angle_curves

        return show_angle_curves(self, **kwargs)


def _sample_frames(data, num_samples: int, seed: int | None) -> np.ndarray:
    return np.stack(list(sampled_frames(_data_array(data), num_samples, seed)))[:, None]


def _bin_sizes_for_counts(geometry: DetectorGeometry, region: str, max_count: int) -> list[int]:
    from py4dstem_compressed.bases.families import binning_basis

    sizes, last = [], 0
    limit = int(np.ceil(2 * geometry.bf_radius)) + 1 if region == "bf" else max(geometry.shape)
    for size in range(limit, 0, -1):
        basis = (
            binning_basis(geometry, size) if region == "bf" else binning_basis(geometry, 1, size)
        )
        count = basis.num_bf if region == "bf" else basis.num_df
        if count > max_count:
            break
        if count > last:  # several widths can give the same number of bins
            sizes.append(size)
            last = count
    return sizes


def angle_curves(
    datacube,
    geometry: DetectorGeometry,
    num_masks=(1, 2, 3, 5, 8, 10, 15, 21, 28, 36, 45),
    families=("binning", "zernike", "diffraction_pattern", "pca"),
    num_samples: int = 256,
    mode: str = "amplitude",
    seed: int | None = 0,
    progress_bar: bool = True,
) -> AngleCurves:
    """Mean BF and DF angles of a random sample of patterns for growing bases.

    BF curves vary the number of BF masks of each family (binning: every bin
    width giving at most ``max(num_masks)`` bins); DF curves vary the number
    of DF masks (Zernike doughnuts, their ``m = 0`` subset, DF bins and DF
    diffraction patterns) with a single BF mask. Counts that a detector
    cannot support (too few pixels) are skipped.

    Returns
    -------
    AngleCurves
    """
    from tqdm.auto import tqdm

    from py4dstem_compressed.bases.families import (
        binning_basis,
        default_smoothing_px,
        diffraction_pattern_basis,
        pca_basis,
        zernike_basis,
    )

    sample = _sample_frames(datacube, num_samples, seed)
    counts = sorted(int(k) for k in num_masks)
    # one smoothing along the whole curve (the default's value): counts the smoothed patterns
    # cannot support are left out instead of being built with less smoothing
    smoothing_px = default_smoothing_px(geometry)
    builders_bf = {
        "zernike": lambda k: zernike_basis(geometry, k, 1),
        "diffraction_pattern": lambda k: diffraction_pattern_basis(
            datacube, geometry, k, 1, seed=seed, mode=mode, smoothing_px=smoothing_px
        ),
        "pca": lambda k: pca_basis(datacube, geometry, k, 1, seed=seed, mode=mode),
    }
    builders_df = {
        "zernike": lambda k: zernike_basis(geometry, 1, k),
        "zernike_m0": lambda k: zernike_basis(geometry, 1, k, df_rotationally_symmetric=True),
        "diffraction_pattern": lambda k: diffraction_pattern_basis(
            datacube, geometry, 1, k, seed=seed, mode=mode, smoothing_px=smoothing_px
        ),
    }
    curves = AngleCurves()
    jobs = []
    for family in families:
        if family == "binning":
            jobs += [
                ("bf", "binning", binning_basis(geometry, s))
                for s in _bin_sizes_for_counts(geometry, "bf", counts[-1])
            ]
            jobs += [
                ("df", "binning", binning_basis(geometry, 1, s))
                for s in _bin_sizes_for_counts(geometry, "df", counts[-1])
            ]
            continue
        for k in counts:
            jobs.append(("bf", family, builders_bf[family], k))
        if family == "zernike":
            jobs += [("df", "zernike", builders_df["zernike"], k) for k in counts]
            jobs += [("df", "zernike_m0", builders_df["zernike_m0"], k) for k in counts]
        elif family == "diffraction_pattern":
            jobs += [("df", family, builders_df[family], k) for k in counts]
    results: dict = {"bf": {}, "df": {}}
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
    for region in ("bf", "df"):
        for family, pairs in results[region].items():
            pairs.sort()
            ks, means = zip(*pairs)
            getattr(curves, region)[family] = (np.array(ks), np.array(means))
    return curves
