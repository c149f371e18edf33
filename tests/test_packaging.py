"""The distribution ships every subpackage (a non-editable install holds what pyproject lists)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_lists_every_subpackage():
    # tomllib needs Python >= 3.11; the list is simple enough to read with a pattern
    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(r"^packages = \[(.*?)\]", text, re.S | re.M)
    listed = set(re.findall(r'"([^"]+)"', block.group(1)))
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "py4dstem_compressed").rglob("__init__.py")
    }
    assert found == listed, f"pyproject packages: missing {found - listed}, stale {listed - found}"
