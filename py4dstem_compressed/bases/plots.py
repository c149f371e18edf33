"""Figures of a basis: its masks."""

from __future__ import annotations

import numpy as np

from py4dstem_compressed.core.figures import image_panel, panel_grid

__all__ = ["show_basis"]


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
    fig, axes = panel_grid(num, ncols)
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
        image_panel(ax, mask, title, cmap=cmap, vmin=-vmax, vmax=vmax)
    fig.suptitle(basis.describe(), fontsize=9)
    fig.tight_layout()
    return fig, axes
