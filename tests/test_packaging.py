"""The distribution ships every subpackage (a non-editable install holds what pyproject lists)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_lists_every_subpackage():
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "py4dstem_compressed").rglob("__init__.py")
    }
    assert found == listed, (
        f"pyproject.toml packages differ: missing {found - listed}, stale {listed - found}"
    )
