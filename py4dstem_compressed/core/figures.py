"""Figure layout shared by every stage's plots, in the look of ``py4DSTEM.show``."""

from __future__ import annotations

import numpy as np

__all__ = ["image_panel", "panel_grid"]


def panel_grid(num: int, ncols: int, panel_size: float = 1.6, layout: str | None = None):
    """A figure of ``num`` square panels [inch] in ``ncols`` columns; spare panels hidden."""
    import matplotlib.pyplot as plt

    ncols = max(1, min(ncols, num))
    nrows = int(np.ceil(num / ncols))
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(panel_size * ncols, panel_size * nrows),
        squeeze=False,
        layout=layout,
    )
    for ax in axes.ravel()[num:]:
        ax.axis("off")
    return fig, axes


def image_panel(ax, image, title: str, fontsize: float | None = 8, **imshow_kwargs):
    """Draw one titled image without ticks (py4DSTEM.show style); returns the image."""
    im = ax.imshow(image, origin="upper", **imshow_kwargs)
    ax.set_title(title, fontsize=fontsize)
    ax.set_xticks([])
    ax.set_yticks([])
    return im
