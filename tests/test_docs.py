"""The README's Quick start runs as written; README and notebooks install from one repository."""

import ast
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
NOTEBOOKS = sorted((ROOT / "tutorials").glob("*.ipynb"))
GIT_URL = re.compile(r"git\+(https://[^\s\"'`)]+)")
COLAB_BADGE = re.compile(
    r"colab\.research\.google\.com/github/([^/\s]+)/([^/\s]+)/blob/[^/\s]+/(\S+?)\)"
)


def _section(text: str, heading: str) -> str:
    """Return the text of a level-2 README section, without its heading.

    Parameters
    ----------
    text : str
        The whole README.
    heading : str
        The section's title, e.g. ``"Quick start"``.

    Returns
    -------
    str
        Everything between ``## heading`` and the next level-2 heading.
    """
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"README.md has no '## {heading}' section"
    return match.group(1)


def quick_start_code() -> str:
    """Return the first ``python`` code block of the README's Quick start section.

    Returns
    -------
    str
        The block's source code.
    """
    section = _section(README.read_text(encoding="utf-8"), "Quick start")
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the Quick start section has no ```python block"
    return match.group(1)


def _code_cells(path: Path) -> list[str]:
    notebook = json.loads(path.read_text(encoding="utf-8"))
    return ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code"]


def _install_cells(path: Path) -> list[str]:
    return [source for source in _code_cells(path) if re.search(r"pip install", source)]


@pytest.fixture(scope="module")
def quick_start(tmp_path_factory):
    """Namespace left by executing the Quick start block in an empty directory.

    The simulation cache lives in a temporary directory too, so the block simulates its scan
    exactly as on a user's first run.
    """
    workdir = tmp_path_factory.mktemp("quick_start")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workdir)
        patch.setenv("PY4DSTEM_COMPRESSED_CACHE", str(workdir / "cache"))
        namespace = {"__name__": "quick_start"}
        with warnings.catch_warnings():
            # py4DSTEM's phase classes report their progress as UserWarnings (verbose=True, the
            # default the snippet keeps); warnings of this package still fail the test
            warnings.filterwarnings("ignore", category=UserWarning, module=r"py4DSTEM\.process")
            exec(compile(quick_start_code(), "README.md (Quick start)", "exec"), namespace)
    namespace["workdir"] = workdir
    return namespace


def test_quick_start_runs_as_written(quick_start):
    import py4dstem_compressed as pc

    assert (quick_start["workdir"] / "scan_compressed.h5").is_file()
    assert isinstance(quick_start["compressed"], pc.CompressedDataCube)
    ptycho = quick_start["ptycho"]
    assert isinstance(ptycho, pc.CompressedMultislicePtychography)
    assert np.all(np.isfinite(np.asarray(ptycho.object)))


def test_quick_start_reconstructs_with_the_parameters_of_its_data(quick_start):
    """The microscope values written in the snippet are those its data were simulated with."""
    calls = [
        node
        for node in ast.walk(ast.parse(quick_start_code()))
        if isinstance(node, ast.Call)
        and getattr(node.func, "attr", getattr(node.func, "id", None))
        == "CompressedMultislicePtychography"
    ]
    assert len(calls) == 1
    written = {
        kw.arg: ast.literal_eval(kw.value) for kw in calls[0].keywords if kw.arg != "datacube"
    }
    expected = quick_start["dataset"].reconstruction_kwargs()
    for name, value in expected.items():
        assert name in written, f"the Quick start does not set {name} (its data need {value})"
        assert written[name] == pytest.approx(value, rel=1e-3), name


def _readme_repository_url() -> str:
    urls = set(GIT_URL.findall(README.read_text(encoding="utf-8")))
    assert len(urls) == 1, f"README.md must name one repository to install from, found {urls}"
    return urls.pop()


def test_readme_quick_start_says_how_to_install_from_the_repository():
    url = _readme_repository_url()
    assert f"git+{url}" in _section(README.read_text(encoding="utf-8"), "Quick start")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_installs_from_the_readme_repository_on_colab_only(path):
    url = _readme_repository_url()
    cells = _install_cells(path)
    assert len(cells) == 1, f"{path.name}: expected one install cell, found {len(cells)}"
    install = cells[0]
    found = GIT_URL.findall(install)
    assert found == [url], f"{path.name} installs from {found}, the README from {url}"
    assert '"google.colab" in sys.modules' in install, f"{path.name}: install only on Colab"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_colab_badge_opens_this_notebook_from_the_readme_repository(path):
    owner_repo = _readme_repository_url().removeprefix("https://github.com/").removesuffix(".git")
    notebook = json.loads(path.read_text(encoding="utf-8"))
    badges = COLAB_BADGE.findall("".join(notebook["cells"][0]["source"]))
    assert len(badges) == 1, f"{path.name}: expected one Colab badge in the first cell"
    owner, repo, file = badges[0]
    assert f"{owner}/{repo}" == owner_repo
    assert file == f"tutorials/{path.name}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_stored_without_outputs(path):
    notebook = json.loads(path.read_text(encoding="utf-8"))
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert cell.get("outputs", []) == [], f"{path.name} is stored with outputs"
            assert cell.get("execution_count") is None, f"{path.name} stores execution counts"
