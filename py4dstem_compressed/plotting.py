"""Figures: masks, basis angles, angle curves and coefficient maps.

Every function returns ``(fig, axes)`` and draws with matplotlib, in the look
of ``py4DSTEM.show`` (images with ``origin="upper"``, no ticks, titled panels).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "show_angle_curves",
    "show_angle_maps",
    "show_basis",
    "show_coefficient_maps",
    "show_fsc_curves",
    "show_quality_vs_ratio",
    "show_reconstruction_comparison",
]

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


def _image_panel(ax, image, title: str, fontsize: float | None = 8, **imshow_kwargs):
    """Draw one titled image without ticks (py4DSTEM.show style); returns the image."""
    im = ax.imshow(image, origin="upper", **imshow_kwargs)
    ax.set_title(title, fontsize=fontsize)
    ax.set_xticks([])
    ax.set_yticks([])
    return im


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
        title = f"{'BF' if is_bf else 'DF'} {n if is_bf else n - basis.num_bf}"
        _image_panel(ax, mask, title, cmap=cmap, vmin=-vmax, vmax=vmax)
    fig.suptitle(basis.describe(), fontsize=9)
    fig.tight_layout()
    return fig, axes


def show_angle_maps(angles, cmap: str = "magma", figsize=(8, 3.6)):
    """Plot BF and DF basis-angle maps over the scan [deg]."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=figsize)
    for ax, (label, values) in zip(axes, (("BF", angles.bf), ("DF", angles.df))):
        mean = np.degrees(np.nanmean(values)) if np.isfinite(values).any() else np.nan
        title = f"{label} angle, mean {mean:.2f}°"
        im = _image_panel(ax, np.degrees(values), title, fontsize=None, cmap=cmap)
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
        _image_panel(ax, image, title, cmap=cmap)
    fig.tight_layout()
    return fig, axes


def show_reconstruction_comparison(panels: dict, truth: np.ndarray, ncols: int = 4, cmap="magma"):
    """Aligned summed phases [rad] side by side with the ground-truth potential.

    Parameters
    ----------
    panels : dict
        ``label -> (image, subtitle)``: aligned reconstructions (same grid as ``truth``).
    truth : numpy.ndarray
        Aligned ground-truth projected potential.
    ncols : int
        Panels per row.
    cmap : str
        Colormap.

    Returns
    -------
    fig, axes
    """
    items = [("ground truth", truth, "projected potential")]
    items += [(label, image, subtitle) for label, (image, subtitle) in panels.items()]
    fig, axes = _grid(len(items), ncols, panel_size=2.6)
    for ax, (label, image, subtitle) in zip(axes.ravel(), items):
        lo, hi = np.percentile(image, [0.5, 99.5])
        _image_panel(ax, image, f"{label}\n{subtitle}", cmap=cmap, vmin=lo, vmax=hi)
    fig.tight_layout()
    return fig, axes


def show_fsc_curves(curves: dict, figsize=(5.5, 3.8)):
    """FSC (Eq. 19) against spatial frequency [1/A] for several reconstructions.

    ``curves`` maps a label to a :class:`~py4dstem_compressed.resolution.FSCResult`.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize)
    for label, fsc in curves.items():
        ax.plot(fsc.frequencies_inverse_angstrom, fsc.fsc, label=label, lw=1.2)
    ax.set_xlabel("spatial frequency [1/Å]")
    ax.set_ylabel("FSC with ground truth")
    ax.set_ylim(-0.2, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig, ax


def show_quality_vs_ratio(rows: list[dict], figsize=(5.5, 3.8)):
    """Reconstruction quality relative to the uncompressed run against compression ratio.

    ``rows`` need ``compression_ratio``, ``relative_ncc`` and ``relative_ncc_band``.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize)
    for row in rows:
        x = row["compression_ratio"]
        ax.scatter(x, row["relative_ncc"], marker="o", color="C0")
        ax.scatter(x, row["relative_ncc_band"], marker="s", color="C1")
        ax.annotate(
            row["variant"],
            (x, row["relative_ncc"]),
            fontsize=6,
            xytext=(3, 3),
            textcoords="offset points",
        )
    ax.scatter([], [], marker="o", color="C0", label="images")
    ax.scatter([], [], marker="s", color="C1", label="band-passed 0.35-1.2 Å")
    ax.axhline(1.0, color="0.5", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("compression ratio (Eq. 17)")
    ax.set_ylabel("NCC with truth / uncompressed NCC")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig, ax
