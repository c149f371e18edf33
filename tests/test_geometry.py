import numpy as np
import pytest

import py4dstem_compressed as pc
from py4dstem_compressed.bases.geometry import find_bright_field_disk


def disk_pattern(shape, center, radius, df_level=0.02, spots=True, blur=0.5, seed=0):
    """A soft-edged BF disk plus dark-field background and Bragg spots."""
    from scipy import ndimage

    qx, qy = np.meshgrid(*(np.arange(s, dtype=float) for s in shape), indexing="ij")
    r = np.hypot(qx - center[0], qy - center[1])
    fine = np.clip(radius + 0.5 - r, 0, 1)  # area-weighted edge
    pattern = fine + df_level * np.exp(-r / (2 * radius))
    if spots:
        rng = np.random.default_rng(seed)
        for _ in range(12):
            angle = rng.uniform(0, 2 * np.pi)
            d = rng.uniform(1.8, 3.0) * radius
            sx, sy = center[0] + d * np.cos(angle), center[1] + d * np.sin(angle)
            pattern += 0.15 * np.exp(-((qx - sx) ** 2 + (qy - sy) ** 2) / 4)
    return ndimage.gaussian_filter(pattern, blur)


def test_regions_partition_and_sizes():
    g = pc.DetectorGeometry((64, 48), (30.3, 22.7), 10.0, df_radius=20.0)
    assert g.bf.dtype == bool and g.bf.shape == (64, 48)
    total = g.bf.astype(int) + g.df + g.edge
    assert np.all(total == 1)
    assert abs(g.bf.sum() - np.pi * 100) / (np.pi * 100) < 0.03
    assert abs((g.bf.sum() + g.df.sum()) - np.pi * 400) / (np.pi * 400) < 0.03
    r = g.radius_map()
    assert r[g.bf].max() <= 10 and r[g.df].min() > 10 and r[g.df].max() <= 20


def test_df_to_detector_edge_and_mask():
    mask = np.zeros((32, 32), bool)
    mask[0, :] = True
    mask[16, 16] = True  # a dead pixel in the BF disk
    g = pc.DetectorGeometry((32, 32), (16, 16), 6, mask=mask)
    assert not g.bf[16, 16] and g.edge[16, 16]
    assert np.array_equal(g.edge, mask)  # df_radius=None: every other pixel is measured
    assert g.outer_radius > np.hypot(16, 16)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"shape": (32,), "center": (1, 1), "bf_radius": 3}, "detector shape"),
        ({"shape": (32, 32), "center": (np.nan, 1), "bf_radius": 3}, "center"),
        ({"shape": (32, 32), "center": (16, 16), "bf_radius": -1}, "bf_radius"),
        ({"shape": (32, 32), "center": (16, 16), "bf_radius": 5, "df_radius": 4}, "df_radius"),
        ({"shape": (32, 32), "center": (16, 16), "bf_radius": 5, "mask": np.zeros((4, 4))}, "mask"),
        ({"shape": (32, 32), "center": (100, 100), "bf_radius": 5}, "no measured pixel"),
    ],
)
def test_invalid_geometry(kwargs, match):
    with pytest.raises(ValueError, match=match):
        pc.DetectorGeometry(**kwargs)


@pytest.mark.parametrize("radius", [5.3, 9.7, 17.2])
@pytest.mark.parametrize("center", [(31.6, 32.4), (28.2, 36.9)])
def test_find_disk_subpixel_with_dark_field(radius, center):
    pattern = disk_pattern((64, 64), center, radius)
    (cx, cy), r = find_bright_field_disk(pattern)
    assert abs(r - radius) / radius < 0.02
    assert np.hypot(cx - center[0], cy - center[1]) < 0.15


def test_from_datacube_on_abtem_simulations(tmp_path):
    pytest.importorskip("abtem")
    from py4dstem_compressed.simulation import datasets

    for kind in ("crystal", "2d"):
        data = datasets.simulate(
            "tiny", kind=kind, scan_gpts=(6, 6), cache_dir=tmp_path, progress_bar=False
        )
        cal = data.datacube.calibration
        true_radius = data.parameters["semiangle_cutoff"] / cal.get_Q_pixel_size()
        g = pc.DetectorGeometry.from_datacube(data.datacube)
        assert abs(g.bf_radius - true_radius) / true_radius < 0.02
        assert np.allclose(g.center, np.array(g.shape) / 2, atol=0.5)


def test_from_datacube_on_simulated_scan(scan):
    g = pc.DetectorGeometry.from_datacube(scan.datacube)
    assert abs(g.bf_radius - scan.bf_radius) / scan.bf_radius < 0.02
    assert np.allclose(g.center, scan.center, atol=0.2)


def test_from_datacube_vacuum_probe_and_json_round_trip():
    probe = disk_pattern((48, 48), (23.5, 24.25), 8.0, df_level=0, spots=False)
    g = pc.DetectorGeometry.from_datacube(np.zeros((2, 2, 48, 48)), vacuum_probe=probe)
    assert abs(g.bf_radius - 8.0) < 0.16
    g2 = pc.DetectorGeometry.from_json(g.to_json())
    assert g2 == g


def test_from_datacube_rejects_bad_input():
    with pytest.raises(ValueError, match="4D"):
        pc.DetectorGeometry.from_datacube(np.zeros((4, 4, 4)))
    with pytest.raises(ValueError, match="NaN"):
        find_bright_field_disk(np.full((8, 8), np.nan))
