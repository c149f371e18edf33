"""Figures of the analyses: basis angles, angle curves, reconstructions, FSC, quality.

Every function returns ``(fig, axes)`` and draws with matplotlib, in the look
of ``py4DSTEM.show`` (images with ``origin="upper"``, no ticks, titled panels).
"""

from __future__ import annotations

import numpy as np

from py4dstem_compressed.bases.registry import BASIS_FAMILIES
from py4dstem_compressed.core.figures import image_panel, panel_grid

__all__ = [
    "show_angle_curves",
    "show_angle_maps",
    "show_fsc_curves",
    "show_quality_vs_ratio",
    "show_reconstruction_comparison",
]

#: Legend names of the curves: the families' labels, plus the m = 0 subset of Zernike DF masks
FAMILY_LABELS = {name: family.label for name, family in BASIS_FAMILIES.items()} | {
    "zernike_m0": "Zernike (m = 0)"
}


def show_angle_maps(angles, cmap: str = "magma", figsize=(8, 3.6)):
    """Plot BF and DF basis-angle maps over the scan [deg]."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=figsize)
    for ax, (label, values) in zip(axes, (("BF", angles.bf), ("DF", angles.df))):
        mean = np.degrees(np.nanmean(values)) if np.isfinite(values).any() else np.nan
        title = f"{label} angle, mean {mean:.2f}°"
        im = image_panel(ax, np.degrees(values), title, fontsize=None, cmap=cmap)
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


def show_reconstruction_comparison(
    panels: dict,
    truth: np.ndarray,
    ncols: int = 4,
    cmap="magma",
    sampling: float | None = None,
    markers=None,
    panel_size: float = 2.6,
    fontsize: float = 9,
    percentiles: tuple[float, float] = (0.5, 99.5),
):
    """Aligned summed phases [rad] side by side with the ground-truth potential [V A].

    All reconstructions share one colour scale (``percentiles`` over every reconstruction)
    with one colorbar in rad; the ground truth, a different quantity, has its
    own colorbar in V Å. The figure says so in its title.

    Parameters
    ----------
    panels : dict
        ``label -> (image, subtitle)``: aligned reconstructions [rad] (same grid as ``truth``).
    truth : numpy.ndarray
        Aligned ground-truth projected potential [V A].
    ncols : int
        Panels per row.
    cmap : str
        Colormap.
    sampling : float, optional
        Pixel size [A]; draws a 2 Å scale bar on the ground truth.
    markers : array-like, optional
        ``(n, 2)`` positions ``(row, column)`` [px] to circle on every panel (e.g. vacancies).
    panel_size : float
        Side of one panel [inch].
    fontsize : float
        Font size of titles and labels [pt].
    percentiles : (float, float)
        Percentiles [%] of the pixel values that set the colour limits; ``(0, 100)`` shows
        the atom columns' peaks unclipped (to compare column intensities, e.g. vacancies).

    Returns
    -------
    fig, axes
    """
    items = [("ground truth", truth, "projected potential")]
    items += [(label, image, subtitle) for label, (image, subtitle) in panels.items()]
    fig, axes = panel_grid(len(items), ncols, panel_size=panel_size, layout="constrained")
    used = list(axes.ravel()[: len(items)])
    lo, hi = _shared_limits([image for _, image, _ in items[1:]] or [truth], percentiles)
    for ax, (label, image, subtitle) in zip(used, items):
        limits = _shared_limits([image], percentiles) if ax is used[0] else (lo, hi)
        im = image_panel(
            ax, image, f"{label}\n{subtitle}", fontsize, cmap=cmap, vmin=limits[0], vmax=limits[1]
        )
        if ax is used[0]:
            bar = fig.colorbar(im, ax=ax, shrink=0.8)
            bar.set_label("projected potential [V Å]", fontsize=fontsize)
        else:
            recon_image = im
        _circle(ax, markers)
    if sampling:
        _scale_bar(used[0], sampling, 2.0, fontsize)
    if len(used) > 1:
        bar = fig.colorbar(recon_image, ax=used[1:], shrink=0.8)
        bar.set_label("summed object phase [rad]", fontsize=fontsize)
        note = "reconstructions share one colour scale [rad]; ground truth has its own [V Å]"
    else:
        note = "ground truth [V Å]"
    if markers is not None and len(markers):
        note += "; circles: vacancies"
    fig.suptitle(note, fontsize=fontsize)
    return fig, axes


def _shared_limits(images, percentiles=(0.5, 99.5)) -> tuple[float, float]:
    """The two ``percentiles`` [%] of all finite pixels of ``images``."""
    values = np.concatenate([np.ravel(np.asarray(image, dtype=float)) for image in images])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(values, list(percentiles))
    return float(lo), float(hi if hi > lo else lo + 1.0)


def _circle(ax, markers, radius_px: float | None = None) -> None:
    """Circle each ``(row, column)`` in ``markers`` that lies on the image of ``ax``."""
    if markers is None:
        return
    from matplotlib.patches import Circle

    rows, cols = ax.get_images()[0].get_array().shape[:2]
    radius = radius_px or 0.06 * min(rows, cols)
    for r, c in np.asarray(markers, dtype=float).reshape(-1, 2):
        if -0.5 <= r <= rows - 0.5 and -0.5 <= c <= cols - 0.5:
            ax.add_patch(Circle((c, r), radius, fill=False, color="cyan", lw=1.2, ls="--"))


def _scale_bar(ax, sampling: float, length_angstrom: float, fontsize: float) -> None:
    """White bar of ``length_angstrom`` [A] in the lower left corner of an image panel."""
    rows, cols = ax.get_images()[0].get_array().shape[:2]
    length = length_angstrom / sampling
    x0, y0 = 0.05 * cols, rows - 0.08 * rows
    ax.plot([x0, x0 + length], [y0, y0], color="white", lw=3, solid_capstyle="butt")
    ax.text(
        x0 + length / 2,
        y0 - 0.03 * rows,
        f"{length_angstrom:g} Å",
        color="white",
        ha="center",
        va="bottom",
        fontsize=fontsize,
    )


def show_fsc_curves(curves: dict, figsize=(5.5, 3.8)):
    """FSC (Eq. 19) against spatial frequency [1/A] for several reconstructions.

    ``curves`` maps a label to a :class:`~py4dstem_compressed.analysis.resolution.FSCResult`. The
    vertical limits hold every curve (at least -0.05 to 1.05).
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    lowest, highest = 0.0, 1.0
    for label, fsc in curves.items():
        values = np.asarray(fsc.fsc, dtype=float)
        ax.plot(fsc.frequencies_inverse_angstrom, values, label=label, lw=1.2)
        if np.isfinite(values).any():
            lowest = min(lowest, float(np.nanmin(values)))
            highest = max(highest, float(np.nanmax(values)))
    ax.axhline(0.0, color="0.5", lw=0.8)
    ax.set_xlabel("spatial frequency [1/Å]")
    ax.set_ylabel("FSC with ground truth")
    ax.set_ylim(lowest - 0.05, highest + 0.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig, ax


def show_quality_vs_ratio(rows: list[dict], figsize=(7.5, 3.8), fontsize: float = 9):
    """Reconstruction quality relative to the uncompressed run against compression ratio.

    ``rows`` need ``variant``, ``compression_ratio``, ``relative_ncc`` and
    ``relative_ncc_band``. Each variant has one colour; the marker says which quality measure
    (filled circle: NCC of the images, open square: NCC of the band-passed images). Both
    legends sit beside the axes, inside the figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    variants = []
    for n, row in enumerate(rows):
        color = f"C{n % 10}"
        x = row["compression_ratio"]
        ax.plot([x, x], [row["relative_ncc"], row["relative_ncc_band"]], color=color, lw=0.8)
        ax.plot(x, row["relative_ncc"], "o", color=color, ms=6)
        ax.plot(x, row["relative_ncc_band"], "s", mfc="none", mec=color, ms=6, mew=1.3)
        variants.append(Line2D([], [], color=color, marker="o", ls="", label=row["variant"]))
    measures = [
        Line2D([], [], color="0.3", marker="o", ls="", label="NCC of the images"),
        Line2D([], [], color="0.3", marker="s", mfc="none", ls="", label="band-passed 0.35-1.2 Å"),
    ]
    ax.axhline(1.0, color="0.5", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("compression ratio (Eq. 17)", fontsize=fontsize)
    ax.set_ylabel("NCC with truth / uncompressed NCC", fontsize=fontsize)
    ax.tick_params(labelsize=fontsize)
    ax.grid(alpha=0.3)
    first = fig.legend(
        handles=variants,
        title="basis",
        loc="outside right upper",
        fontsize=fontsize,
        title_fontsize=fontsize,
    )
    fig.legend(
        handles=measures,
        title="quality measure",
        loc="outside right lower",
        fontsize=fontsize,
        title_fontsize=fontsize,
    )
    fig.add_artist(first)
    return fig, ax
