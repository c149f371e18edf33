"""Figures: masks, basis angles, angle curves and coefficient maps.

Every function returns ``(fig, axes)`` and draws with matplotlib, in the look
of ``py4DSTEM.show`` (images with ``origin="upper"``, no ticks, titled panels).
"""

from __future__ import annotations

import numpy as np

__all__ = ["show_angle_curves", "show_angle_maps", "show_basis", "show_coefficient_maps"]

FAMILY_LABELS = {
    "binning": "binning",
    "zernike": "Zernike",
    "zernike_m0": "Zernike (m = 0)",
    "diffraction_pattern": "diffraction patterns",
    "pca": "PCA",
}


def _grid(num: int, ncols: int, panel_size: float = 1.6):
    import matplotlib.pyplot as plt

    ncols = max(1, min(ncols, num))
    nrows = int(np.ceil(num / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(panel_size * ncols, panel_size * nrows), squeeze=False
    )
    for ax in axes.ravel()[num:]:
        ax.axis("off")
    return fig, axes


def show_basis(basis, max_masks: int = 48, ncols: int = 8, cmap: str = "RdBu_r", crop=True):
    """Plot the masks of a basis (BF first, then DF), each on a symmetric colour scale.

    Parameters
    ----------
    basis : Basis
        The masks.
    max_masks : int
        Show at most this many.
    ncols : int
        Panels per row.
    cmap : str
        Diverging colormap.
    crop : bool
        Crop BF masks to the BF disk so their structure is visible.

    Returns
    -------
    fig, axes
    """
    num = min(basis.num_masks, max_masks)
    fig, axes = _grid(num, ncols)
    g = basis.geometry
    r = int(np.ceil(g.bf_radius)) + 1
    cx, cy = (round(c) for c in g.center)
    for n, ax in enumerate(axes.ravel()[:num]):
        mask = basis.masks[n]
        is_bf = n < basis.num_bf
        if crop and is_bf:
            mask = mask[max(cx - r, 0) : cx + r + 1, max(cy - r, 0) : cy + r + 1]
        vmax = float(np.abs(mask).max()) or 1.0
        ax.imshow(mask, cmap=cmap, vmin=-vmax, vmax=vmax, origin="upper")
        ax.set_title(f"{'BF' if is_bf else 'DF'} {n if is_bf else n - basis.num_bf}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(basis.describe(), fontsize=9)
    fig.tight_layout()
    return fig, axes


def show_angle_maps(angles, cmap: str = "magma", figsize=(8, 3.6)):
    """Plot BF and DF basis-angle maps over the scan [deg]."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=figsize)
    for ax, (label, values) in zip(axes, (("BF", angles.bf), ("DF", angles.df))):
        im = ax.imshow(np.degrees(values), cmap=cmap, origin="upper")
        mean = np.degrees(np.nanmean(values)) if np.isfinite(values).any() else np.nan
        ax.set_title(f"{label} angle, mean {mean:.2f}°")
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, label="angle [deg]", shrink=0.85)
    fig.tight_layout()
    return fig, axes


def show_angle_curves(curves, figsize=(9, 3.6)):
    """Mean basis angle against the number of masks per family (paper, Appendix A)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=figsize)
    for ax, region, data in zip(axes, ("BF", "DF"), (curves.bf, curves.df)):
        for family, (ks, means) in data.items():
            ax.plot(ks, np.degrees(means), "o-", ms=3, label=FAMILY_LABELS.get(family, family))
        ax.set_xlabel(f"number of {region} masks")
        ax.set_ylabel(f"mean {region} angle [deg]")
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
        if data:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return fig, axes


def show_coefficient_maps(compressed, indices=None, ncols: int = 6, cmap: str = "viridis"):
    """Maps over the scan of chosen coefficients (default: the first 12) and the norms.

    Parameters
    ----------
    compressed : CompressedDataCube
        Compressed data.
    indices : sequence of int, optional
        Mask indices to show.
    ncols : int
        Panels per row.
    cmap : str
        Colormap.

    Returns
    -------
    fig, axes
    """
    k = compressed.num_masks
    indices = list(range(min(k, 12))) if indices is None else list(indices)
    panels = [
        (f"c{n} ({'BF' if n < compressed.basis.num_bf else 'DF'})", compressed.coefficients[..., n])
        for n in indices
    ]
    panels += [
        ("perpendicular BF", compressed.perpendicular_norms[..., 0]),
        ("perpendicular DF", compressed.perpendicular_norms[..., 1]),
        ("total intensity", compressed.total_intensity),
    ]
    fig, axes = _grid(len(panels), ncols, panel_size=2.0)
    for ax, (title, image) in zip(axes.ravel(), panels):
        ax.imshow(image, cmap=cmap, origin="upper")
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig, axes
