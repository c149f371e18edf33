"""How much a compressed dataset holds and how well a basis fits its patterns: Eqs. 17 and 18.

FSC and registration to a ground truth live in :mod:`py4dstem_compressed.analysis.resolution`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from py4dstem_compressed.bases.basis import Basis
from py4dstem_compressed.bases.denoise import captured_noise
from py4dstem_compressed.core.sources import data_array, frame_batch
from py4dstem_compressed.storage.compressed_datacube import CompressedDataCube

__all__ = [
    "BasisAngles",
    "basis_angles",
    "stored_compression_ratio",
    "uncaptured_variation",
]


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
    array = data_array(data)
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


def uncaptured_variation(
    frames: np.ndarray, basis: Basis, mode: str = "amplitude", noise_variance=None
) -> dict:
    """What a basis's masks miss of the signal that varies across the patterns, per region.

    Each pattern ``v`` (``sqrt(I)`` in amplitude mode) minus the patterns' mean ``vbar`` is
    the part that changes over the scan: the object's signal (the mean pattern, the probe's
    disk and the specimen's average diffraction, is what a reconstruction's model predicts
    from every position at once). Returned: the mean over patterns of ``||(u - P_R u)_R||^2``
    with ``u = v - vbar``, per region, and the region's mean energy ``||v_R||^2`` and
    variation ``||u_R||^2``, all in units of the patterns' mean total energy (unit-free: a
    pattern scaled by any factor gives the same numbers).

    Parameters
    ----------
    frames : numpy.ndarray
        ``(N, Qx, Qy)`` intensities (any unit), ``N >= 2``.
    basis : Basis
        The masks (projected with the Gram matrix of the stored masks, as
        :func:`basis_angles`).
    mode : {"amplitude", "intensity"}
        Variation of ``sqrt(I)`` or ``I``.
    noise_variance : numpy.ndarray, optional
        ``(Qx, Qy)`` shot-noise variance of each pixel's value in the mode, in the square of
        the mode's unit (``sqrt(intensity)`` or intensity: see
        :func:`~py4dstem_compressed.bases.denoise.pixel_noise_variance`). Then each region
        also gets ``"noise"``, the patterns' noise energy ``sum_p sigma_p^2``, and
        ``"captured_noise"``, how much of it the masks capture, ``sum_k sum_p w_kp^2
        sigma_p^2`` (``w`` the orthonormalised masks): noise independent of the masks, as
        that of patterns the masks were not built from, is captured by them only where the
        masks weigh its pixels, so masks that follow bright pixels capture more of it
        than ``k / pixels``.

    Returns
    -------
    dict
        ``{"bf": {"uncaptured", "variation", "energy", "captured_se"[, "noise",
        "captured_noise"]}, "df": {...}}`` floats; ``captured_se`` is the standard error of
        the mean captured variation (its standard deviation over the patterns over the square
        root of their number).
    """
    v = np.asarray(frames, dtype=np.float64).reshape(len(frames), -1)
    if mode == "amplitude":
        v = np.sqrt(np.clip(v, 0, None))
    unit = float((v * v).sum(axis=1).mean())
    v = v / np.sqrt(unit) if unit > 0 else v
    u = v - v.mean(axis=0)
    masks = basis.masks_flat.astype(np.float64)
    if noise_variance is not None:
        variance = np.asarray(noise_variance, dtype=np.float64).reshape(-1)
        if variance.shape != masks.shape[1:]:
            raise ValueError(
                f"noise_variance must be one value per detector pixel {basis.geometry.shape}, "
                f"got {np.shape(noise_variance)}"
            )
        variance = variance / unit if unit > 0 else variance
    out = {}
    for region, part in (
        ("bf", slice(0, basis.num_bf)),
        ("df", slice(basis.num_bf, basis.num_masks)),
    ):
        inside = getattr(basis.geometry, region).ravel()
        weights = _inverse_cholesky(masks[part]) @ masks[part]  # orthonormalised masks
        captured = ((u @ weights.T) ** 2).sum(axis=1)
        variation = (u[:, inside] ** 2).sum(axis=1)
        out[region] = {
            "uncaptured": float(np.maximum(variation - captured, 0.0).mean()),
            "variation": float(variation.mean()),
            "energy": float((v[:, inside] ** 2).sum(axis=1).mean()),
            "captured_se": float(captured.std() / np.sqrt(len(captured))),
        }
        if noise_variance is not None:
            out[region]["noise"] = float(variance[inside].sum())
            out[region]["captured_noise"] = captured_noise(weights, variance)
    return out


def _inverse_cholesky(masks: np.ndarray) -> np.ndarray:
    """``L^-1`` with ``L L^T = M M^T``: ``||L^-1 M v||`` is the norm of ``v``'s projection."""
    if masks.shape[0] == 0:
        return np.zeros((0, 0))
    return np.linalg.inv(np.linalg.cholesky(masks @ masks.T))
