"""Figures of a compressed dataset: its coefficient maps."""

from __future__ import annotations

from py4dstem_compressed.core.figures import image_panel, panel_grid

__all__ = ["show_coefficient_maps"]


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
    fig, axes = panel_grid(len(panels), ncols, panel_size=2.0)
    for ax, (title, image) in zip(axes.ravel(), panels):
        image_panel(ax, image, title, cmap=cmap)
    fig.tight_layout()
    return fig, axes
