"""The py4DSTEM fence: every py4DSTEM internal the reconstruction uses is listed and exists."""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import pathlib

import numpy as np
import py4DSTEM.process.phase as phase
import pytest

import py4dstem_compressed as pc
from py4dstem_compressed.reconstruction import py4dstem_internals as fence

RECONSTRUCTION = pathlib.Path(pc.__file__).parent / "reconstruction"
PY4DSTEM_CLASSES = tuple(getattr(phase, name) for name in fence.PY4DSTEM_CLASSES)
#: each compressed class and the py4DSTEM class it subclasses
TWINS = tuple((getattr(pc, f"Compressed{cls.__name__}"), cls) for cls in PY4DSTEM_CLASSES)


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


@functools.cache
def _py4dstem_names() -> frozenset[str]:
    """Private names py4DSTEM's four ptychography classes and their bases define or set."""
    names: set[str] = set()
    for cls in {base for twin in PY4DSTEM_CLASSES for base in twin.__mro__}:
        if cls is object:
            continue
        names |= {n for n in vars(cls) if _private(n)}
        tree = ast.parse(inspect.getsource(cls))
        names |= {
            node.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("self", "cls")
            and _private(node.attr)
        }
    return frozenset(names)


def _names_used_by_reconstruction() -> dict[str, set[str]]:
    """``self._x`` / ``cls._x`` / ``super()._x`` names and method names of our classes."""
    used: dict[str, set[str]] = {}
    for path in sorted(RECONSTRUCTION.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            name = None
            if isinstance(node, ast.Attribute) and _private(node.attr):
                value = node.value
                on_self = isinstance(value, ast.Name) and value.id in ("self", "cls")
                on_super = (
                    isinstance(value, ast.Call)
                    and isinstance(value.func, ast.Name)
                    and value.func.id == "super"
                )
                name = node.attr if on_self or on_super else None
            elif isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef):
                        used.setdefault(item.name, set()).add(path.name)
            if name is not None:
                used.setdefault(name, set()).add(path.name)
    return used


def test_every_listed_name_exists_in_the_installed_py4dstem():
    defined = _py4dstem_names()
    methods = (
        set(fence.OVERRIDDEN_METHODS)
        | set(fence.DISABLED_PIXEL_METHODS)
        | set(fence.PRIVATE_METHODS_CALLED)
    )
    missing = sorted(
        name
        for name in methods
        if not any(hasattr(cls, name) for cls in PY4DSTEM_CLASSES) and name not in defined
    )
    attributes = set(fence.PRIVATE_ATTRIBUTES_WRITTEN) | set(fence.PRIVATE_ATTRIBUTES_READ)
    missing += sorted(attributes - defined)
    for module, cls, name, _reason in fence.OTHER_PRIVATE_NAMES:
        owner = importlib.import_module(module)
        if cls is not None:
            owner = getattr(owner, cls)
            source = ast.parse(inspect.getsource(owner))
            found = hasattr(owner, name) or any(
                isinstance(node, ast.Attribute) and node.attr == name for node in ast.walk(source)
            )
        else:
            found = hasattr(owner, name)
        if not found:
            missing.append(f"{module}.{cls or ''}.{name}")
    assert not missing, (
        f"py4DSTEM internals listed in py4dstem_internals (read from py4DSTEM "
        f"{fence.PY4DSTEM_VERSION}) are gone from the installed py4DSTEM: {missing}"
    )


def test_the_reconstruction_uses_no_unlisted_py4dstem_internal():
    used = _names_used_by_reconstruction()
    unlisted = {
        name: sorted(files)
        for name, files in used.items()
        if name in _py4dstem_names() and name not in fence.all_private_names()
    }
    assert not unlisted, f"list these py4DSTEM internals in py4dstem_internals: {unlisted}"
    # and the list holds nothing the code no longer uses
    stale = sorted(fence.all_private_names() - set(used) - {"__init__"})
    assert not stale, f"py4dstem_internals lists names the code does not use: {stale}"


def test_the_fence_scan_sees_a_new_internal():
    """The scan itself works: it finds a py4DSTEM name the class is known to use."""
    used = _names_used_by_reconstruction()
    assert "_overlap_projection" in used and "_overlap_projection" in _py4dstem_names()


@pytest.mark.parametrize("ours, theirs", TWINS, ids=lambda cls: cls.__name__)
def test_overridden_hooks_keep_py4dstem_signatures(ours, theirs):
    """py4DSTEM calls the hooks positionally: our parameters must be a prefix of its own."""
    assert issubclass(ours, theirs)
    for name in fence.OVERRIDDEN_METHODS:
        if not name.startswith("_") or name.startswith("__"):
            continue
        mine = [
            p.name
            for p in inspect.signature(getattr(ours, name)).parameters.values()
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        ]
        their = list(inspect.signature(getattr(theirs, name)).parameters)
        assert mine == their[: len(mine)], (name, mine, their)


@pytest.mark.parametrize("ours, theirs", TWINS, ids=lambda cls: cls.__name__)
def test_every_py4dstem_constructor_keyword_is_accepted(ours, theirs):
    """The twins take all of py4DSTEM's constructor keywords (and keep their order)."""
    mine = list(inspect.signature(ours.__init__).parameters)
    their = [n for n in inspect.signature(theirs.__init__).parameters if n != "kwargs"]
    missing = [n for n in their if n not in mine]
    assert not missing or "kwargs" in mine, missing
    positional = [n for n in their if n in mine]
    assert mine[: mine.index("datacube") + 1] == positional[: positional.index("datacube") + 1]


def test_measurement_rows_have_their_own_name_and_pixel_methods_raise():
    geometry = pc.DetectorGeometry((16, 16), (8, 8), 4.5)
    rng = np.random.default_rng(0)
    data = rng.random((4, 4, 16, 16)).astype(np.float32)
    compressed = pc.compress(
        data, pc.zernike_basis(geometry, 6, 1), progress_bar=False, check_center=False
    )
    ptycho = pc.CompressedMultislicePtychography(
        datacube=compressed,
        energy=80e3,
        num_slices=2,
        slice_thicknesses=4.0,
        semiangle_cutoff=16.0,
        verbose=False,
    )
    ptycho.preprocess(
        force_scan_sampling=0.6,
        force_angular_sampling=4.0,
        force_com_rotation=0.0,
        force_com_transpose=False,
        plot_center_of_mass=False,
        plot_rotation=False,
        plot_probe_overlaps=False,
    )
    rows = getattr(ptycho, fence.ROWS_ATTRIBUTE)
    assert rows.shape == (16, 7 + 4)
    assert not hasattr(ptycho, "_amplitudes")
    ptycho.reconstruct(num_iter=1, progress_bar=False)
    assert not hasattr(ptycho, "_amplitudes")  # bound only while py4DSTEM's loop runs
    for name in fence.DISABLED_PIXEL_METHODS:
        with pytest.raises(NotImplementedError, match="per-pixel"):
            getattr(ptycho, name)()
