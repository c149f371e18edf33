"""numba's compiled-kernel cache stays out of the installed package.

An installed package that gets compiled-kernel files in its ``__pycache__`` keeps
that folder after ``pip uninstall`` / ``pip install -e``; the leftover folder is
then an empty namespace package that shadows the editable install in every
process not started from the repository root.
"""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import py4dstem_compressed as pc
from py4dstem_compressed.core.numba_cache import (
    enable_user_cache as _enable_user_cache,
)
from py4dstem_compressed.core.numba_cache import (
    numba_cache_directory as _numba_cache_directory,
)

PACKAGE = Path(pc.__file__).resolve().parent

pytest.importorskip("numba", reason="the fused kernel needs numba")

COMPRESS = textwrap.dedent(
    """
    import numpy as np
    import py4dstem_compressed as pc
    from py4dstem_compressed.simulation.synthetic import synthetic_datacube

    scan = synthetic_datacube(scan_shape=(2, 2), detector_size=16)
    geometry = pc.DetectorGeometry((16, 16), scan.center, scan.bf_radius)
    compressed = pc.compress(scan.datacube, pc.zernike_basis(geometry, 3), progress_bar=False)
    assert np.isfinite(compressed.coefficients).all()
    """
)


def _environment(site: Path, cache: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CACHE")}
    env["PYTHONPATH"] = str(site)
    env["XDG_CACHE_HOME"] = str(cache)
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A copy of the package as if installed in ``site``, after one compression run."""
    root = tmp_path_factory.mktemp("install")
    site = root / "site-packages"
    shutil.copytree(
        PACKAGE, site / "py4dstem_compressed", ignore=shutil.ignore_patterns("__pycache__")
    )
    cache = root / "cache"
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    run = subprocess.run(
        [sys.executable, "-c", COMPRESS],
        cwd=elsewhere,
        env=_environment(site, cache),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    return site, cache, elsewhere


def test_compiled_kernels_are_cached_outside_the_package(installed):
    site, cache, _ = installed
    in_package = sorted(
        p.relative_to(site)
        for p in (site / "py4dstem_compressed").rglob("*")
        if p.suffix in {".nbi", ".nbc"}
    )
    assert in_package == []
    cached = [p for p in (cache / "py4dstem-compressed" / "numba").rglob("*") if p.suffix == ".nbi"]
    assert cached, "the compiled kernel was not cached in $XDG_CACHE_HOME/py4dstem-compressed/numba"


def test_reinstall_as_editable_imports_from_any_directory(installed, tmp_path):
    """`pip install .` + a run, then `pip install -e .`: the package imports from elsewhere."""
    site, _, elsewhere = installed
    # pip uninstall removes the files it installed (sources and their byte code) and every
    # folder that is then empty; whatever a run wrote into the package stays behind
    package = site / "py4dstem_compressed"
    for path in sorted(package.rglob("*"), reverse=True):
        if path.is_file() and path.suffix in {".py", ".pyc"}:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    if package.is_dir() and not any(package.iterdir()):
        package.rmdir()
    # an editable install: a finder appended to sys.meta_path that maps the name to the sources
    script = textwrap.dedent(
        f"""
        import importlib.util, sys

        class EditableFinder:
            @classmethod
            def find_spec(cls, name, path=None, target=None):
                if name == "py4dstem_compressed":
                    return importlib.util.spec_from_file_location(
                        name, {str(PACKAGE / "__init__.py")!r},
                        submodule_search_locations=[{str(PACKAGE)!r}],
                    )
                return None

        # right after the path finder (this interpreter may hold another editable install)
        from importlib.machinery import PathFinder
        sys.meta_path.insert(sys.meta_path.index(PathFinder) + 1, EditableFinder)
        sys.path.insert(0, {str(site)!r})
        import py4dstem_compressed as pc
        pc.DetectorGeometry
        print(pc.__file__)
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script],
        cwd=elsewhere,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert Path(run.stdout.strip()).resolve() == PACKAGE / "__init__.py"


def test_cache_directory_respects_numba_and_xdg_settings(monkeypatch, tmp_path):
    import numba

    monkeypatch.setattr(numba.config, "CACHE_DIR", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _numba_cache_directory() == tmp_path / "xdg" / "py4dstem-compressed" / "numba"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert _numba_cache_directory() == Path.home() / ".cache" / "py4dstem-compressed" / "numba"
    monkeypatch.setattr(numba.config, "CACHE_DIR", str(tmp_path / "numba"))
    assert _numba_cache_directory() == tmp_path / "numba"


def _identity(x):
    return x


def test_unwritable_cache_directory_compiles_without_cache(monkeypatch, tmp_path):
    import numba

    monkeypatch.setattr(numba.config, "CACHE_DIR", "")
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    assert not _enable_user_cache(numba.njit(_identity))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _enable_user_cache(numba.njit(_identity))
    assert (tmp_path / "xdg" / "py4dstem-compressed" / "numba").is_dir()
