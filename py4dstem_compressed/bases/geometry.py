"""Detector geometry: where the bright field, dark field and unmeasured pixels are.

All quantities are in detector pixels, in the detector frame (the frame of
``datacube.data[rx, ry]``: first axis ``qx``, second axis ``qy``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

__all__ = ["DetectorGeometry", "find_bright_field_disk"]


@dataclass(frozen=True, eq=False)
class DetectorGeometry:
    """Regions of a pixelated detector used to build and apply compression masks.

    Parameters
    ----------
    shape : tuple of int
        Detector shape ``(Qx, Qy)`` [px].
    center : tuple of float
        Centre of the bright-field disk ``(qx, qy)`` [px], sub-pixel, in array
        index coordinates (pixel ``(i, j)`` has its centre at ``(i, j)``).
    bf_radius : float
        Bright-field (BF) disk radius [px]. BF = pixels with ``|q - center| <= bf_radius``.
    df_radius : float or None
        Outer radius of the dark-field (DF) annulus [px]. ``None`` means the DF
        region reaches the detector's edge (every pixel outside the BF disk).
    mask : numpy.ndarray of bool, optional
        ``(Qx, Qy)`` map of pixels that are *not measured* (dead pixels, HAADF
        shadow, ...). They belong to neither BF nor DF but to the EDGE region.

    Attributes
    ----------
    bf, df, edge : numpy.ndarray of bool
        ``(Qx, Qy)`` region maps. They partition the detector.
    """

    shape: tuple[int, int]
    center: tuple[float, float]
    bf_radius: float
    df_radius: float | None = None
    mask: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in np.atleast_1d(self.shape))
        if len(shape) != 2 or min(shape) < 2:
            raise ValueError(f"detector shape must be two integers >= 2, got {self.shape!r}")
        center = tuple(float(c) for c in np.atleast_1d(self.center))
        if len(center) != 2 or not np.all(np.isfinite(center)):
            raise ValueError(
                f"center must be two finite numbers (qx, qy) [px], got {self.center!r}"
            )
        bf_radius = float(self.bf_radius)
        if not np.isfinite(bf_radius) or bf_radius <= 0:
            raise ValueError(
                f"bf_radius must be a positive number of pixels, got {self.bf_radius!r}"
            )
        df_radius = None if self.df_radius is None else float(self.df_radius)
        if df_radius is not None and df_radius <= bf_radius:
            raise ValueError(
                f"df_radius ({df_radius} px) must exceed bf_radius ({bf_radius} px), "
                "or be None for a dark field reaching the detector's edge"
            )
        mask = None
        if self.mask is not None:
            mask = np.asarray(self.mask, dtype=bool)
            if mask.shape != shape:
                raise ValueError(
                    f"mask has shape {mask.shape} but the detector is {shape}; pass a boolean "
                    "map of unmeasured pixels with the detector's shape"
                )
            mask = mask.copy()
            mask.flags.writeable = False
            if not mask.any():
                mask = None
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "center", center)
        object.__setattr__(self, "bf_radius", bf_radius)
        object.__setattr__(self, "df_radius", df_radius)
        object.__setattr__(self, "mask", mask)
        bf, df = self._regions()
        if not bf.any():
            raise ValueError(
                f"the bright-field disk (center {center}, radius {bf_radius} px) contains no "
                f"measured pixel of the {shape} detector"
            )
        object.__setattr__(self, "_bf", bf)
        object.__setattr__(self, "_df", df)

    # ------------------------------------------------------------------ regions
    def radius_map(self) -> np.ndarray:
        """Distance of every pixel centre from ``center`` [px], shape ``(Qx, Qy)``."""
        qx = np.arange(self.shape[0], dtype=np.float64)[:, None] - self.center[0]
        qy = np.arange(self.shape[1], dtype=np.float64)[None, :] - self.center[1]
        return np.hypot(qx, qy)

    def _regions(self) -> tuple[np.ndarray, np.ndarray]:
        r = self.radius_map()
        measured = np.ones(self.shape, bool) if self.mask is None else ~self.mask
        bf = (r <= self.bf_radius) & measured
        df = (r > self.bf_radius) & measured
        if self.df_radius is not None:
            df &= r <= self.df_radius
        for region in (bf, df):
            region.flags.writeable = False
        return bf, df

    @property
    def bf(self) -> np.ndarray:
        """Bright-field pixels, ``(Qx, Qy)`` bool."""
        return self._bf

    @property
    def df(self) -> np.ndarray:
        """Dark-field pixels, ``(Qx, Qy)`` bool."""
        return self._df

    @property
    def edge(self) -> np.ndarray:
        """Unmeasured pixels (outside BF and DF, or masked), ``(Qx, Qy)`` bool."""
        return ~(self._bf | self._df)

    @property
    def outer_radius(self) -> float:
        """Radius [px] of the disk holding the DF region (``df_radius`` or the farthest pixel)."""
        if self.df_radius is not None:
            return self.df_radius
        return float(self.radius_map().max()) + 0.5

    @property
    def num_pixels(self) -> int:
        """Number of detector pixels ``Qx * Qy``."""
        return int(self.shape[0] * self.shape[1])

    # -------------------------------------------------------------- comparison
    def matches(self, other: DetectorGeometry, center_tolerance_px: float = 1e-3) -> bool:
        """Whether ``other`` describes the same detector regions."""
        return (
            self.shape == other.shape
            and np.allclose(self.center, other.center, atol=center_tolerance_px)
            and np.isclose(self.bf_radius, other.bf_radius)
            and (self.df_radius is None) == (other.df_radius is None)
            and (self.df_radius is None or np.isclose(self.df_radius, other.df_radius))
            and np.array_equal(self.bf, other.bf)
            and np.array_equal(self.df, other.df)
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DetectorGeometry) and self.matches(other)

    __hash__ = None  # mutable-array field: not hashable

    # -------------------------------------------------------------- serialise
    def to_json(self) -> str:
        """Scalars as a JSON string (the mask is stored separately as an array)."""
        return json.dumps(
            {
                "shape": list(self.shape),
                "center": list(self.center),
                "bf_radius": self.bf_radius,
                "df_radius": self.df_radius,
            }
        )

    @classmethod
    def from_json(cls, text: str, mask: np.ndarray | None = None) -> DetectorGeometry:
        """Inverse of :meth:`to_json`."""
        d = json.loads(text)
        return cls(tuple(d["shape"]), tuple(d["center"]), d["bf_radius"], d["df_radius"], mask)

    # ------------------------------------------------------------ construction
    @classmethod
    def from_datacube(
        cls,
        datacube,
        vacuum_probe: np.ndarray | None = None,
        df_radius: float | None = None,
        mask: np.ndarray | None = None,
        num_samples: int = 1024,
        seed: int | None = 0,
    ) -> DetectorGeometry:
        """Measure the bright-field disk of a dataset.

        Parameters
        ----------
        datacube : py4DSTEM.DataCube or numpy.ndarray
            4D data ``(Rx, Ry, Qx, Qy)`` [counts]. Only a random sample of
            ``num_samples`` patterns is read.
        vacuum_probe : numpy.ndarray, optional
            ``(Qx, Qy)`` pattern recorded without a sample; used instead of the
            mean pattern when given (most accurate).
        df_radius : float, optional
            Outer DF radius [px]; ``None`` = to the detector's edge.
        mask : numpy.ndarray of bool, optional
            Unmeasured pixels.
        num_samples : int
            Number of random patterns averaged for the mean pattern.
        seed : int, optional
            Seed of the pattern sampling.

        Returns
        -------
        DetectorGeometry
        """
        if vacuum_probe is not None:
            pattern = np.asarray(vacuum_probe, dtype=np.float64)
        else:
            pattern = mean_pattern(datacube, num_samples=num_samples, seed=seed)
        if mask is not None:
            pattern = np.where(np.asarray(mask, bool), 0.0, pattern)
        center, radius = find_bright_field_disk(pattern)
        return cls(pattern.shape, center, radius, df_radius, mask)


def mean_pattern(datacube, num_samples: int = 1024, seed: int | None = 0) -> np.ndarray:
    """Mean diffraction pattern of (a random sample of) a 4D dataset [counts]."""
    from py4dstem_compressed.core.sources import data_array, sampled_frames

    data = data_array(datacube)
    acc = np.zeros(data.shape[2:], np.float64)
    count = 0
    for pattern in sampled_frames(data, num_samples, seed):
        acc += pattern
        count += 1
    return acc / count


def find_bright_field_disk(
    pattern: np.ndarray, thresholds: tuple[float, ...] = (0.35, 0.4, 0.45, 0.5, 0.55)
) -> tuple[tuple[float, float], float]:
    """Sub-pixel centre and radius of the bright-field disk in a mean pattern.

    The BF plateau level is the median of the pixels above half the maximum
    (robust to hot pixels and Bragg-disk structure). For each threshold
    fraction of that level the largest connected region is kept (dark-field
    signal and isolated spots are rejected), its area gives an equivalent
    radius and its intensity-weighted centroid the centre; the results are
    averaged over the thresholds, which cancels the edge blur to first order.

    Parameters
    ----------
    pattern : numpy.ndarray
        ``(Qx, Qy)`` mean pattern or vacuum probe [counts].
    thresholds : tuple of float
        Fractions of the plateau level used to segment the disk.

    Returns
    -------
    center : tuple of float
        ``(qx, qy)`` [px].
    radius : float
        BF radius [px].
    """
    pattern = np.asarray(pattern, dtype=np.float64)
    if pattern.ndim != 2:
        raise ValueError(f"pattern must be 2D (Qx, Qy), got shape {pattern.shape}")
    if not np.all(np.isfinite(pattern)):
        raise ValueError("pattern contains NaN or inf; clean the data before measuring the disk")
    pattern = ndimage.median_filter(pattern, size=3, mode="nearest")
    peak = pattern.max()
    if peak <= 0:
        raise ValueError("pattern has no positive intensity: cannot find the bright-field disk")
    level = np.median(pattern[pattern >= 0.5 * peak])
    radii, centers = [], []
    for t in thresholds:
        binary = pattern >= t * level
        labels, num = ndimage.label(binary)
        if num == 0:
            continue
        sizes = ndimage.sum_labels(binary, labels, index=np.arange(1, num + 1))
        region = labels == (int(np.argmax(sizes)) + 1)
        region = ndimage.binary_fill_holes(region)
        # an opening with a disk a third of the radius removes attached Bragg spots
        # and bridges but leaves the (convex) bright-field disk unchanged
        r0 = np.sqrt(region.sum() / np.pi)
        k = max(1, int(r0 / 3))
        footprint = np.hypot(*np.mgrid[-k : k + 1, -k : k + 1]) <= k
        opened = ndimage.binary_opening(region, structure=footprint)
        if opened.any():
            labels, num = ndimage.label(opened)
            sizes = ndimage.sum_labels(opened, labels, index=np.arange(1, num + 1))
            region = labels == (int(np.argmax(sizes)) + 1)
        radii.append(np.sqrt(region.sum() / np.pi))
        weights = np.clip(pattern, 0, None) * region
        centers.append(ndimage.center_of_mass(weights))
    if not radii:
        raise ValueError("could not segment a bright-field disk in the pattern")
    center = tuple(float(c) for c in np.mean(centers, axis=0))
    return center, float(np.mean(radii))
