"""``Basis``: a set of orthonormal compression masks, stored as an EMD object.

Masks live in the detector frame (the frame of ``datacube.data[rx, ry]``), BF
masks first, then DF masks. The generators that build them are in
:mod:`~py4dstem_compressed.bases.fixed_masks` and
:mod:`~py4dstem_compressed.bases.data_derived`.
"""

from __future__ import annotations

import json
from os.path import basename

import numpy as np
from emdfile import Array, Custom

from py4dstem_compressed.bases.geometry import DetectorGeometry
from py4dstem_compressed.core.backend import to_numpy
from py4dstem_compressed.core.emd import (
    read_format_metadata,
    write_custom_node,
)

__all__ = ["SUGGESTION_KEY", "Basis", "compression_ratio", "describe_suggestion"]

ORTHONORMALITY_TOLERANCE = 1e-5
KINDS = ("binning", "zernike", "diffraction_pattern", "pca", "custom")
#: Key of ``Basis.parameters`` holding the record of a suggested basis (``suggest_basis``)
SUGGESTION_KEY = "suggestion"


class Basis(Custom):
    """Orthonormal masks that compress diffraction patterns (Eq. 8).

    Parameters
    ----------
    masks : numpy.ndarray
        ``(K, Qx, Qy)`` masks in the detector frame, ``num_bf`` bright-field
        masks first, then ``num_df`` dark-field masks. Stored as float32.
    num_bf, num_df : int
        Number of BF and DF masks (``num_bf + num_df == K``).
    geometry : DetectorGeometry
        The detector regions the masks were built for.
    kind : str
        Generator name: ``"binning"``, ``"zernike"``, ``"diffraction_pattern"``,
        ``"pca"`` or ``"custom"``.
    parameters : dict, optional
        The generator's arguments (JSON-serialisable), so the basis can be
        regenerated and described.
    positions : numpy.ndarray, optional
        ``(N, 2)`` scan positions ``(rx, ry)`` sampled by data-derived bases.
    mode : {"amplitude", "intensity"}, optional
        For data-derived bases: whether the masks were built from amplitudes
        ``sqrt(I)`` or intensities ``I``.
    name : str
        EMD node name.
    validate : bool
        Check orthonormality (max ``|M M^T - I| < 1e-5`` in float64) and that
        each mask lives in its own region.
    """

    def __init__(
        self,
        masks: np.ndarray,
        num_bf: int,
        num_df: int,
        geometry: DetectorGeometry,
        kind: str = "custom",
        parameters: dict | None = None,
        positions: np.ndarray | None = None,
        mode: str | None = None,
        name: str = "basis",
        validate: bool = True,
    ) -> None:
        Custom.__init__(self, name=name)
        masks = np.ascontiguousarray(to_numpy(masks), dtype=np.float32)
        if masks.ndim != 3:
            raise ValueError(f"masks must be (K, Qx, Qy), got shape {masks.shape}")
        if not isinstance(geometry, DetectorGeometry):
            raise TypeError(f"geometry must be a DetectorGeometry, got {type(geometry).__name__}")
        if masks.shape[1:] != geometry.shape:
            raise ValueError(
                f"masks are {masks.shape[1:]} px but the geometry's detector is {geometry.shape}"
            )
        if int(num_bf) + int(num_df) != masks.shape[0] or num_bf < 0 or num_df < 0:
            raise ValueError(
                f"num_bf ({num_bf}) + num_df ({num_df}) must equal the number of masks "
                f"({masks.shape[0]})"
            )
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if mode not in (None, "amplitude", "intensity"):
            raise ValueError(f"mode must be None, 'amplitude' or 'intensity', got {mode!r}")
        self.geometry = geometry
        self.num_bf = int(num_bf)
        self.num_df = int(num_df)
        self.kind = kind
        self.parameters = dict(parameters or {})
        self.mode = mode
        self._masks = Array(data=masks, name="masks")
        self._positions = None
        if positions is not None:
            pos = np.asarray(positions, dtype=np.int64).reshape(-1, 2)
            self._positions = Array(data=pos, name="positions")
        self._detector_mask = None
        if geometry.mask is not None:
            self._detector_mask = Array(data=geometry.mask.astype(np.uint8), name="detector_mask")
        if validate:
            self.validate()

    # ----------------------------------------------------------------- access
    @property
    def masks(self) -> np.ndarray:
        """``(K, Qx, Qy)`` float32 masks, detector frame."""
        return self._masks.data

    @property
    def masks_flat(self) -> np.ndarray:
        """``(K, Qx * Qy)`` float32 view of the masks (rows are flattened masks)."""
        return self.masks.reshape(self.num_masks, -1)

    @property
    def num_masks(self) -> int:
        """Total number of masks ``K``."""
        return self.num_bf + self.num_df

    @property
    def bf_masks(self) -> np.ndarray:
        """``(num_bf, Qx, Qy)`` bright-field masks."""
        return self.masks[: self.num_bf]

    @property
    def df_masks(self) -> np.ndarray:
        """``(num_df, Qx, Qy)`` dark-field masks."""
        return self.masks[self.num_bf :]

    @property
    def region_index(self) -> np.ndarray:
        """``(K,)`` int8: 0 for a BF mask, 1 for a DF mask."""
        return np.repeat(np.array([0, 1], np.int8), [self.num_bf, self.num_df])

    @property
    def positions(self) -> np.ndarray | None:
        """``(N, 2)`` scan positions ``(rx, ry)`` sampled by a data-derived basis, else None."""
        return None if self._positions is None else self._positions.data

    @property
    def shape(self) -> tuple[int, int]:
        """Detector shape ``(Qx, Qy)`` [px]."""
        return self.geometry.shape

    def describe(self) -> str:
        """What the basis is: one line, then why it was chosen for a suggested basis.

        A basis from :func:`~py4dstem_compressed.suggest_basis` adds the record of its
        choice: the budget, the noise estimate, the held-out angle curves [deg] of both
        regions and the split chosen.
        """
        params = ", ".join(f"{k}={v}" for k, v in self.parameters.items() if k != SUGGESTION_KEY)
        line = (
            f"{self.kind} basis: {self.num_bf} BF + {self.num_df} DF masks on a "
            f"{self.shape[0]}x{self.shape[1]} px detector ({params})"
        )
        record = self.parameters.get(SUGGESTION_KEY)
        return line if record is None else "\n".join([line, *describe_suggestion(record)])

    def __repr__(self) -> str:
        return f"Basis({self.describe().splitlines()[0]})"

    # ------------------------------------------------------------- validation
    def orthonormality_error(self) -> float:
        """``max |M M^T - I|`` computed in float64."""
        m = self.masks_flat.astype(np.float64)
        gram = m @ m.T
        return float(np.abs(gram - np.eye(self.num_masks)).max()) if self.num_masks else 0.0

    def validate(self) -> None:
        """Raise ``ValueError`` unless the masks are orthonormal and live in their regions."""
        masks = self.masks
        if not np.all(np.isfinite(masks)):
            raise ValueError("masks contain NaN or inf")
        outside_bf = np.abs(self.bf_masks[:, ~self.geometry.bf]).max(initial=0.0)
        outside_df = np.abs(self.df_masks[:, ~self.geometry.df]).max(initial=0.0)
        if outside_bf > 0 or outside_df > 0:
            raise ValueError(
                "every BF mask must vanish outside the bright-field disk and every DF mask "
                "outside the dark-field region of the basis geometry"
            )
        err = self.orthonormality_error()
        if err > ORTHONORMALITY_TOLERANCE:
            raise ValueError(
                f"masks are not orthonormal: max |M M^T - I| = {err:.2e} > "
                f"{ORTHONORMALITY_TOLERANCE:g}"
            )

    def check_detector(self, detector_shape: tuple[int, ...], what: str = "the data") -> None:
        """Raise a ``ValueError`` naming both shapes if ``detector_shape`` differs."""
        if tuple(detector_shape) != self.shape:
            raise ValueError(
                f"the basis was built for a {self.shape} px detector but {what} has "
                f"{tuple(detector_shape)} px patterns; build the basis from this detector's "
                "geometry (DetectorGeometry.from_datacube)"
            )

    # ---------------------------------------------------------------- display
    def export_masks(self, path, integer_bits: int | None = None) -> dict:
        """Write the masks for acquisition software, with a JSON sidecar (``path + ".json"``).

        ``.npy`` holds the ``(K, Qx, Qy)`` float32 masks exactly as :attr:`masks`; ``.tif``
        and ``.h5`` are also accepted; ``integer_bits`` (8, 16, 32) writes integer masks with
        per-mask scale factors. See :func:`~py4dstem_compressed.bases.mask_export.export_masks`.
        """
        from py4dstem_compressed.bases.mask_export import export_masks

        return export_masks(self, path, integer_bits)

    def show(self, max_masks: int = 48, ncols: int = 8, cmap: str = "RdBu_r", **kwargs):
        """Plot the masks as a grid of images (BF first, then DF).

        Parameters
        ----------
        max_masks : int
            Show at most this many masks.
        ncols : int
            Images per row.
        cmap : str
            Diverging colormap (masks are signed).

        Returns
        -------
        fig, axes
        """
        from py4dstem_compressed.bases.plots import show_basis

        return show_basis(self, max_masks=max_masks, ncols=ncols, cmap=cmap, **kwargs)

    # -------------------------------------------------------------------- EMD
    def to_h5(self, group):
        """Write the basis under an h5py group (emdfile hook)."""
        fields = {
            "num_bf": self.num_bf,
            "num_df": self.num_df,
            "kind": self.kind,
            "parameters": self.parameters,
            "mode": self.mode,
            "geometry": json.loads(self.geometry.to_json()),
        }
        from py4dstem_compressed.core.filtered_arrays import FilteredArray

        # the masks go through the coefficients' lossless filter (blosc/zstd): stored
        # unfiltered they would be most of a small file; any reader decodes both layouts
        arrays = {"_masks": self._masks, "_detector_mask": self._detector_mask}
        try:
            for key, array in arrays.items():
                if array is not None:
                    setattr(self, key, FilteredArray(data=array.data, name=array.name))
            return write_custom_node(self, group, fields)
        finally:
            for key, array in arrays.items():
                setattr(self, key, array)

    @classmethod
    def _get_constructor_args(cls, group) -> dict:
        import hdf5plugin  # noqa: F401  (registers the filters of the masks)

        fields = read_format_metadata(group, "Basis")
        nodes = Custom._get_emd_attr_data(None, group)
        if "_masks" not in nodes:
            raise ValueError(f"stored basis {group.name!r} has no masks (truncated file?)")
        mask = nodes["_detector_mask"].data.astype(bool) if "_detector_mask" in nodes else None
        geometry = DetectorGeometry.from_json(json.dumps(fields["geometry"]), mask)
        positions = nodes["_positions"].data if "_positions" in nodes else None
        return {
            "masks": nodes["_masks"].data,
            "num_bf": fields["num_bf"],
            "num_df": fields["num_df"],
            "geometry": geometry,
            "kind": fields["kind"],
            "parameters": fields["parameters"],
            "positions": positions,
            "mode": fields["mode"],
            "name": basename(group.name),
            "validate": True,
        }

    def _populate_instance(self, group) -> None:
        return None


def compression_ratio(basis: Basis) -> float:
    """The paper's compression ratio ``C = Qx Qy / (K_bf + K_df + 2)`` (Eq. 17).

    The 2 counts the two perpendicular norms. See
    :func:`~py4dstem_compressed.stored_compression_ratio` for the ratio of all values a
    :class:`CompressedDataCube` stores.
    """
    return float(basis.geometry.num_pixels) / (basis.num_masks + 2)


def describe_suggestion(record: dict) -> list[str]:
    """Lines saying why :func:`~py4dstem_compressed.suggest_basis` chose a basis.

    Parameters
    ----------
    record : dict
        ``basis.parameters["suggestion"]`` (angles in degrees).

    Returns
    -------
    list of str
    """
    noise, floor = record["noise_fraction"], record["noise_floor_deg"]
    patterns = record["patterns"]
    lines = [
        f"suggested for at most {record['budget']} values per pattern ({record['mode']} mode): "
        f"{record['num_bf']} BF + {record['num_df']} DF masks + 2 perpendicular norms = "
        f"{record['values']} values, family {record['family']}",
        f"  masks built from {patterns['masks_from']} patterns, angles measured on "
        f"{patterns['held_out']} held-out ones",
        f"  shot noise: {100 * noise['bf']:.1f}% of the BF energy, {100 * noise['df']:.1f}% of "
        f"the DF energy (angle floors BF {floor['bf']:.1f} deg, DF {floor['df']:.1f} deg)",
    ]
    smoothed = record.get("smoothing_noise_fraction")
    if smoothed is not None:
        lines.append(
            f"  (smoothing estimate BF {100 * smoothed['bf']:.1f}%, DF {100 * smoothed['df']:.1f}%,"
            " at most what the held-out angles leave room for)"
        )
    descan = record.get("descan_px_max")
    if descan:
        lines.append(
            f"  patterns moved back by their whole-pixel descan (up to {descan} px) into the "
            "frame of the disk, where compression applies the masks"
        )
    lines.append("  mean held-out angle [deg] against the number of masks (count:angle):")
    for region in ("bf", "df"):
        chosen = record.get(f"{region}_family", record["family"])  # one family before 0.2
        for family, points in record["angle_curves_deg"][region].items():
            mark = "*" if family == chosen else " "
            values = " ".join(f"{k}:{a:.1f}" for k, a in points)
            lines.append(f"   {mark}{region.upper()} {family:<20}{values}")
    missed = record.get("uncaptured_variation")  # 0.5 and later
    if missed is not None:
        totals = record["variation_totals"]
        lines.append(
            "  scan-varying signal (pattern minus the mean pattern), % of the mean pattern's "
            "energy: "
            + ", ".join(f"{r.upper()} {100 * totals[r]['variation']:.3f}" for r in ("bf", "df"))
        )
        lines.append("  what the masks miss of it, held out, % (count:miss):")
        for region in ("bf", "df"):
            chosen = record.get(f"{region}_family", record["family"])
            for family, points in missed[region].items():
                mark = "*" if family == chosen else " "
                values = " ".join(f"{k}:{100 * v:.3f}" for k, v in points)
                lines.append(f"   {mark}{region.upper()} {family:<20}{values}")
        lines += _captured_noise_lines(record)
        unit = "% of the scan-varying signal both regions' first masks miss"
    else:
        unit = "% of each region's structure"
    scores = ", ".join(f"{f} {100 * s:.2f}%" for f, s in record["uncaptured_signal"].items())
    lines.append(f"  uncaptured signal (BF + DF, {unit}): {scores}")
    lines.append(f"  rule: {record['rule']}")
    return lines


def _captured_noise_lines(record: dict) -> list[str]:
    """What the chosen masks capture of each region's held-out shot noise (0.8 and later)."""
    captured = record.get("captured_noise")
    if captured is None:
        return []
    parts = []
    for region in ("bf", "df"):
        total = record["variation_totals"][region].get("noise", 0.0)
        family = record.get(f"{region}_family", record["family"])
        count = record[f"num_{region}"]
        points = dict(captured[region].get(family, []))
        if total > 0 and count in points:
            pixels = record.get("pixels", {}).get(region)
            white = f" (white noise: {100 * count / pixels:.2f}%)" if pixels else ""
            parts.append(f"{region.upper()} {100 * points[count] / total:.2f}%{white}")
    if not parts:
        return []
    return [
        "  share of the held-out shot noise the chosen masks capture (subtracted from what "
        "they capture): " + ", ".join(parts)
    ]
