"""docs/FORMAT.md describes the files the package writes, and its h5py-only reader reads them.

The reader block of FORMAT.md runs in a fresh interpreter (h5py, numpy and hdf5plugin only)
against files written by the current package -- a plain and a float16/zstd compressed file,
a descan-aware one (format version 2) with a data-derived basis and dead pixels, a finalized
live-writer file, a partial live file with a write cut short, the pinned file of 0.1.0 and a
basis file -- and must return exactly what ``read_compressed`` returns. Every group, dataset,
attribute and JSON field in those files, and every name the reader looks up, must be named
on the page outside the reader, so the page cannot fall behind the format.
"""

from __future__ import annotations

import json
import pickle
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

import py4dstem_compressed as pc

ROOT = Path(__file__).resolve().parents[1]
FORMAT_DOC = ROOT / "docs" / "FORMAT.md"
PINNED = ROOT / "tests" / "data" / "compressed_before_layout.h5"
READER_HEADING = "Reading a file with h5py only"
PER_PATTERN = (
    "coefficients",
    "perpendicular_norms",
    "edge_intensity",
    "total_intensity",
    "center_of_mass",
)
COMPRESSED_FILES = ("plain", "half", "descan", "live", "partial", "pinned")


def reader_code() -> str:
    """The first ``python`` block of FORMAT.md's reader section."""
    text = FORMAT_DOC.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(READER_HEADING)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"docs/FORMAT.md has no '## {READER_HEADING}' section"
    block = re.search(r"```python\n(.*?)```", match.group(1), re.S)
    assert block, f"the '{READER_HEADING}' section has no ```python block"
    return block.group(1)


def mentioned_names() -> set[str]:
    """Identifiers in FORMAT.md's code spans and code blocks, except the reader block."""
    text = FORMAT_DOC.read_text(encoding="utf-8").replace(reader_code(), "")
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
    spans = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    return set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", " ".join(blocks + spans)))


# Runs in a fresh interpreter: records every key the reader looks up in h5py.
RUNNER = """
import pickle, sys
import h5py

used = set()

def spy(original):
    def wrapper(self, name, *args):
        if isinstance(name, str):
            used.update(part for part in name.split("/") if part)
        return original(self, name, *args)
    return wrapper

for cls in (h5py.Group, h5py.AttributeManager):
    for method in ("__getitem__", "__contains__", "get"):
        setattr(cls, method, spy(getattr(cls, method)))

jobs, out_path, code = pickle.load(open(sys.argv[1], "rb"))
namespace = {"__name__": "format_reader"}
exec(compile(code, "FORMAT.md reader", "exec"), namespace)
results = {}
for label, function, path in jobs:
    try:
        results[label] = namespace[function](path)
    except Exception as err:  # reported to the test
        results[label] = err
forbidden = [m for m in ("py4dstem_compressed", "py4DSTEM", "emdfile") if m in sys.modules]
pickle.dump({"results": results, "used": used, "forbidden": forbidden,
             "newest": namespace["NEWEST_FORMAT_VERSION"]}, open(out_path, "wb"))
"""


def run_reader(jobs: list[tuple[str, str, str]], tmp: Path) -> dict:
    """Run the doc's reader on ``(label, function name, path)`` jobs in a fresh interpreter."""
    job_file, out_file = tmp / "jobs.pkl", tmp / "out.pkl"
    job_file.write_bytes(pickle.dumps((jobs, str(out_file), reader_code())))
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(RUNNER), str(job_file)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return pickle.loads(out_file.read_bytes())


def _cube(file: h5py.File) -> h5py.Group:
    """The one CompressedDataCube group of an open file."""
    found = []
    file.visititems(
        lambda name, obj: (
            found.append(obj)
            if str(obj.attrs.get("python_class", "")).startswith("CompressedDataCube")
            else None
        )
    )
    assert len(found) == 1, found
    return found[0]


@pytest.fixture(scope="module")
def files(scan, datacube, geometry, tmp_path_factory) -> dict[str, Path]:
    """Files written by the current package (and the pinned file of 0.1.0)."""
    tmp = tmp_path_factory.mktemp("format")
    paths = {name: tmp / f"{name}.h5" for name in (*COMPRESSED_FILES, "basis")}
    zernike = pc.zernike_basis(geometry, 6, 2)
    plain = pc.compress(datacube, zernike, progress_bar=False, descan=None)
    pc.save(paths["plain"], plain)
    plain.save(paths["half"], compression="zstd", float16=True)

    dead = np.zeros((32, 32), bool)
    dead[0, 0] = dead[5, 20] = True  # a dead pixel in the corner (EDGE) and one in the DF
    masked = pc.DetectorGeometry((32, 32), scan.center, scan.bf_radius, 14.0, dead)
    learned = pc.diffraction_pattern_basis(datacube, masked, 6, 2, seed=0, mode="intensity")
    shifts = np.zeros((8, 8, 2))
    shifts[4:, :, 0], shifts[:, 4:, 1] = 1.0, -2.0
    moved = pc.compress(datacube, learned, "intensity", progress_bar=False, descan=shifts)
    assert moved.descan_shift_px.any()
    pc.save(paths["descan"], moved)
    pc.save(paths["basis"], learned)

    frames = np.asarray(datacube.data).reshape(64, 32, 32)
    calibration = datacube.calibration
    with pc.open_compressed_writer(paths["live"], zernike, (8, 8), calibration=calibration) as w:
        w.write(frames[:30])
        w.write(frames[30:])
    with pc.open_compressed_writer(paths["partial"], zernike, (8, 8)) as w:
        w.write(frames[10:30], start=10)
    with h5py.File(paths["partial"], "r+") as f:  # a write cut short: data, no valid flag
        group = _cube(f)
        assert group["_valid/data"][4, 0] == 0
        group["_coefficients/data"][4, 0] = 1.0
        group["_total_intensity/data"][4, 0] = 5.0
    shutil.copy(PINNED, paths["pinned"])
    return paths


@pytest.fixture(scope="module")
def read(files, tmp_path_factory) -> dict:
    """What the doc's reader returns for every file, and the names it looked up."""
    jobs = [(name, "read_compressed_file", str(files[name])) for name in COMPRESSED_FILES]
    jobs.append(("basis", "read_basis_file", str(files["basis"])))
    out = run_reader(jobs, tmp_path_factory.mktemp("reader"))
    errors = {k: repr(v) for k, v in out["results"].items() if isinstance(v, Exception)}
    assert not errors, errors
    return out


def assert_same_basis(got: dict, basis: pc.Basis) -> None:
    assert got["masks"].dtype == np.float32 and np.array_equal(got["masks"], basis.masks)
    if basis.positions is None:
        assert got["positions"] is None
    else:
        assert np.array_equal(got["positions"], basis.positions)
    assert (got["num_bf"], got["num_df"]) == (basis.num_bf, basis.num_df)
    assert (got["kind"], got["parameters"], got["mode"]) == (
        basis.kind,
        basis.parameters,
        basis.mode,
    )
    g, geometry = got["geometry"], basis.geometry
    assert tuple(g["shape"]) == geometry.shape and tuple(g["center"]) == geometry.center
    assert (g["bf_radius"], g["df_radius"]) == (geometry.bf_radius, geometry.df_radius)
    if geometry.mask is None:
        assert g["mask"] is None
    else:
        assert np.array_equal(g["mask"], geometry.mask)


@pytest.mark.parametrize("name", COMPRESSED_FILES)
def test_reader_returns_what_read_compressed_returns(name, files, read):
    got = read["results"][name]
    data = pc.read_compressed(files[name])
    assert (got["mode"], tuple(got["scan_shape"])) == (data.mode, data.scan_shape)
    assert got["num_complete"] == data.num_complete
    for key in PER_PATTERN:
        expected = getattr(data, key)
        assert got[key].dtype == expected.dtype == np.float32, key
        assert np.array_equal(got[key], expected, equal_nan=True), key
    assert np.array_equal(got["valid"], data.valid)
    shifts = got["descan_shift_px"]
    assert shifts.dtype == np.int16 and np.array_equal(shifts, data.descan_shift_px)
    calibration = data.calibration
    expected = {k: calibration[k] for k in calibration.keys if not k.startswith("_")}
    assert got["calibration"] == expected
    assert_same_basis(got["basis"], data.basis)


def test_reader_masks_a_write_cut_short_and_reads_descan(read):
    partial = read["results"]["partial"]
    assert partial["num_complete"] == 20  # the stamp's num_complete is stale (0)
    assert np.isnan(partial["coefficients"][4, 0]).all()  # bytes written, flag not set
    assert np.isnan(partial["total_intensity"][4, 0])
    assert read["results"]["descan"]["descan_shift_px"].any()
    assert read["results"]["half"]["calibration"]["Q_pixel_units"] == "mrad"


def test_reader_reads_a_basis_file(files, read):
    import py4DSTEM

    assert_same_basis(read["results"]["basis"], py4DSTEM.read(str(files["basis"])))


def test_reader_imports_neither_the_package_nor_py4dstem(read):
    assert read["forbidden"] == []


def _names_in(path: Path) -> set[str]:
    """Every group, dataset and attribute name, identifier-like attribute value and JSON key."""
    names = set()

    def visit(name, obj):
        names.update(name.split("/"))
        names.update(obj.attrs.keys())
        for key in ("emd_group_type", "python_class", "type"):
            if key in obj.attrs:
                names.add(str(obj.attrs[key]).split(" ")[0])
        if name.endswith("py4dstem_compressed_format"):
            fields = json.loads(obj["fields"].asstr()[()])
            names.update(fields)
            names.update(fields.get("geometry", {}))
            names.add(obj["kind"].asstr()[()])

    with h5py.File(path) as f:
        names.update(f.attrs.keys())
        f.visititems(visit)
    return names


def test_every_name_in_the_files_is_documented(files, read):
    documented = mentioned_names()
    in_files = set().union(*(_names_in(path) for path in files.values()))
    missing = sorted(in_files - documented)
    assert not missing, f"in the files but named nowhere in docs/FORMAT.md: {missing}"
    unexplained = sorted(read["used"] - documented)
    assert not unexplained, f"the reader uses names FORMAT.md does not explain: {unexplained}"


def test_format_versions_are_documented_and_enforced(files, read, tmp_path):
    assert read["newest"] == pc.FORMAT_VERSION, "update FORMAT.md for the new format version"
    assert f"now **{pc.FORMAT_VERSION}**" in FORMAT_DOC.read_text(encoding="utf-8")
    stamp = "metadatabundle/py4dstem_compressed_format/format_version"
    for name, version in (("plain", 1), ("descan", pc.FORMAT_VERSION), ("live", 1)):
        with h5py.File(files[name]) as f:
            cube = _cube(f)
            assert cube[stamp][()] == version and cube["basis"][stamp][()] == 1, name
    newer = tmp_path / "newer.h5"
    shutil.copy(files["plain"], newer)
    with h5py.File(newer, "r+") as f:
        cube = _cube(f)
        del cube[stamp]
        cube[stamp] = pc.FORMAT_VERSION + 1
    out = run_reader([("newer", "read_compressed_file", str(newer))], tmp_path)
    error = out["results"]["newer"]
    assert isinstance(error, ValueError) and "upgrade" in str(error), error


def _regions(geometry: dict, shift) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BF, DF and EDGE maps of the documented region rule, geometry moved by ``shift``."""
    qx, qy = np.meshgrid(*(np.arange(n) for n in geometry["shape"]), indexing="ij")
    cx, cy = geometry["center"]
    r = np.hypot(qx - cx - shift[0], qy - cy - shift[1])
    unmeasured = np.zeros(r.shape, bool)
    if geometry["mask"] is not None:
        unmeasured = geometry["mask"] | np.roll(geometry["mask"], tuple(shift), axis=(0, 1))
    bf = (r <= geometry["bf_radius"]) & ~unmeasured
    df = (r > geometry["bf_radius"]) & ~unmeasured
    if geometry["df_radius"] is not None:
        df &= r <= geometry["df_radius"]
    return bf, df, ~(bf | df)


@pytest.mark.parametrize("name", ["plain", "descan"])
def test_values_follow_the_documented_definitions(name, datacube, read):
    """Recompute every stored value from the raw patterns with the page's formulas."""
    got = read["results"][name]
    basis = got["basis"]
    masks = basis["masks"].astype(np.float64)
    dead = basis["geometry"]["mask"]
    intensity = np.asarray(datacube.data, dtype=np.float64)
    v = np.sqrt(np.maximum(intensity, 0)) if got["mode"] == "amplitude" else intensity
    qx, qy = np.arange(32), np.arange(32)
    for rx, ry in np.ndindex(8, 8):
        s = got["descan_shift_px"][rx, ry]
        moved = np.roll(masks, tuple(s), axis=(1, 2))  # m_k(q - s), cyclic
        if dead is not None:
            moved[:, dead] = 0.0
        c = np.tensordot(moved, v[rx, ry], axes=2)
        residual = v[rx, ry] - np.tensordot(c, moved, axes=1)
        bf, df, edge = _regions(basis["geometry"], s)
        image = intensity[rx, ry]
        total = image.sum()
        expected = {
            "coefficients": c,
            "perpendicular_norms": [np.linalg.norm(residual[bf]), np.linalg.norm(residual[df])],
            "edge_intensity": image[edge].sum(),
            "total_intensity": total,
            "center_of_mass": [qx @ image.sum(1) / total, qy @ image.sum(0) / total],
        }
        for key, value in expected.items():
            scale = np.abs(value).max()
            assert np.allclose(got[key][rx, ry], value, rtol=0, atol=2e-6 * scale), (key, rx, ry)
    if got["mode"] == "amplitude":  # the energy identity of the page
        energy = (
            np.sum(got["coefficients"].astype(np.float64) ** 2, axis=-1)
            + np.sum(got["perpendicular_norms"].astype(np.float64) ** 2, axis=-1)
            + got["edge_intensity"]
        )
        assert np.allclose(energy, got["total_intensity"], rtol=1e-5)
