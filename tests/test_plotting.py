"""The demo's figures: colour scales, units, limits and legends a reader can rely on."""

import numpy as np
import pytest
from matplotlib.text import Text

from py4dstem_compressed.analysis import plotting
from py4dstem_compressed.analysis.resolution import FSCResult


def _visible_texts(fig):
    return [
        t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip() and t.figure is fig
    ]


def _assert_texts_inside(fig):
    """Everything drawn, texts included, lies inside the figure (a pixel of rounding allowed)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    drawn = fig.get_tightbbox(renderer)  # [inch]
    size = fig.get_size_inches()
    tolerance = 1 / fig.dpi
    assert drawn.x0 >= -tolerance and drawn.y0 >= -tolerance, drawn
    assert drawn.x1 <= size[0] + tolerance and drawn.y1 <= size[1] + tolerance, (drawn, size)


@pytest.fixture
def phase_panels(rng):
    truth = rng.normal(size=(20, 24)) * 30 + 100  # [V A]
    panels = {
        "uncompressed": (0.01 * truth + rng.normal(size=truth.shape) * 0.05, "NCC 0.95"),
        "Zernike 36+1": (0.02 * truth + rng.normal(size=truth.shape) * 0.05, "NCC 0.94"),
    }
    return panels, truth


def test_phase_maps_have_colorbars_in_rad_and_say_the_scale_is_shared(phase_panels):
    panels, truth = phase_panels
    fig, axes = plotting.show_reconstruction_comparison(panels, truth)
    labels = [ax.get_ylabel() for ax in fig.axes if ax not in axes.ravel()]
    assert any("rad" in label for label in labels), labels
    assert any("V Å" in label for label in labels), labels
    # every reconstruction is drawn on one colour scale that holds both
    images = [ax.get_images()[0] for ax in axes.ravel()[1:3]]
    assert images[0].get_clim() == images[1].get_clim()
    both = np.concatenate([image.ravel() for image, _ in panels.values()])
    lo, hi = images[0].get_clim()
    assert lo <= np.percentile(both, 1) and hi >= np.percentile(both, 99)
    assert "share one colour scale" in fig._suptitle.get_text()
    _assert_texts_inside(fig)


def test_phase_maps_circle_markers_on_every_panel_and_draw_a_scale_bar(phase_panels):
    panels, truth = phase_panels
    inside, outside = (5.0, 6.0), (50.0, 6.0)
    fig, axes = plotting.show_reconstruction_comparison(
        panels, truth, markers=[inside, outside], sampling=0.1
    )
    for ax in axes.ravel()[:3]:
        centres = [patch.center for patch in ax.patches]
        assert centres == [(inside[1], inside[0])]  # (x, y) = (column, row); outside skipped
    assert "vacancies" in fig._suptitle.get_text()
    assert "2 Å" in [t.get_text() for t in axes.ravel()[0].texts]
    _assert_texts_inside(fig)


def test_phase_maps_full_range_leaves_column_peaks_unclipped(phase_panels):
    panels, truth = phase_panels
    _, axes = plotting.show_reconstruction_comparison(panels, truth, percentiles=(0, 100))
    both = np.concatenate([image.ravel() for image, _ in panels.values()])
    assert axes.ravel()[1].get_images()[0].get_clim() == pytest.approx((both.min(), both.max()))
    assert axes.ravel()[0].get_images()[0].get_clim() == pytest.approx((truth.min(), truth.max()))


def _fsc(values):
    values = np.asarray(values, dtype=float)
    return FSCResult(np.linspace(0.1, 2.0, values.size), values, np.ones(values.size, int))


def test_fsc_axis_holds_every_curve():
    curves = {"a": _fsc([0.9, 0.5, -0.64, 0.2]), "b": _fsc([1.0, np.nan, 0.1, -0.1])}
    fig, ax = plotting.show_fsc_curves(curves)
    lo, hi = ax.get_ylim()
    assert lo <= -0.64 and hi >= 1.0
    _assert_texts_inside(fig)


def test_quality_vs_ratio_legends_both_series_with_readable_text_inside_the_figure():
    rows = [
        {
            "variant": name,
            "compression_ratio": ratio,
            "relative_ncc": 0.9 + 0.01 * n,
            "relative_ncc_band": 0.8 + 0.02 * n,
        }
        for n, (name, ratio) in enumerate(
            [
                ("zernike 36+1", 26.3),
                ("zernike 45+22 (m=0 DF)", 13.7),
                ("binning 3 px+1", 20.0),
                ("diffraction-pattern 15+1", 60.0),
                ("diffraction-pattern 8+1", 102.0),
                ("PCA 15+1", 60.0),
            ]
        )
    ]
    fig, ax = plotting.show_quality_vs_ratio(rows)
    legends = fig.legends + ([ax.get_legend()] if ax.get_legend() else [])
    legend_texts = [t.get_text() for legend in legends for t in legend.get_texts()]
    assert any("band-passed" in t for t in legend_texts)
    assert any("images" in t for t in legend_texts)
    for row in rows:  # every variant is named, for both of its markers (one colour)
        assert row["variant"] in legend_texts
    texts = _visible_texts(fig)
    assert min(t.get_fontsize() for t in texts) >= 8
    _assert_texts_inside(fig)
    # nothing is written over the data area except the axes' own labels
    assert not ax.texts
