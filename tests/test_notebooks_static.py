"""Every notebook is valid, was executed top to bottom, starts with the shared set-up cell, follows
the chapter form (title, Colab badge, manual page link, 小结, 练习) and is linked from the README and
from its manual page."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from utils.course import SETUP_CELL, colab_url

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS][:1] == ["00_setup.ipynb"]


@pytest.fixture(params=NOTEBOOKS, ids=lambda p: p.name)
def notebook(request):
    path = request.param
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    return path, nb


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]


def test_first_code_cell_is_the_shared_setup_cell(notebook):
    path, nb = notebook
    assert code_cells(nb)[0].source == SETUP_CELL, (
        f"{path.name}: first code cell differs from utils.course.SETUP_CELL (run scripts/run_notebooks.py)")


def test_executed_in_order_with_outputs(notebook):
    path, nb = notebook
    counts = [c.execution_count for c in code_cells(nb)]
    assert None not in counts, f"{path.name}: some code cells were never run"
    assert counts == list(range(1, len(counts) + 1)), f"{path.name}: not run top to bottom in a fresh kernel"
    assert any(c.outputs for c in code_cells(nb)), f"{path.name}: no outputs stored"
    for i, cell in enumerate(code_cells(nb)):
        for out in cell.outputs:
            assert out.output_type != "error", f"{path.name}: code cell {i} stored an error"


def test_metadata_is_what_jupyterlab_writes(notebook):
    """Opening a notebook must not mark it modified: JupyterLab replaces ``kernelspec`` and
    ``language_info`` with the running kernel's, so stored values must equal those (checked once in a
    headless browser: a ``display_name`` of "Python 3" instead of "Python 3 (ipykernel)" made every
    notebook dirty on open)."""
    from ipykernel.ipkernel import IPythonKernel
    from nbexec import load_script

    path, nb = notebook
    assert nb.metadata["kernelspec"] == load_script("run_notebooks.py").kernelspec_metadata(), path.name
    info = dict(nb.metadata["language_info"])
    assert info.pop("version").count(".") == 2, path.name
    kernel = dict(IPythonKernel.language_info)
    kernel.pop("version")
    assert info == kernel, path.name
    assert set(nb.metadata) <= {"kernelspec", "language_info"}, f"{path.name}: extra metadata {sorted(nb.metadata)}"


def test_chapter_form(notebook):
    path, nb = notebook
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), f"{path.name}: needs a title cell"
    assert colab_url(path.name) in first.source, f"{path.name}: title cell lacks its Colab link"
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for heading in ("小结", "练习"):
        assert re.search(rf"^#+ .*{heading}", markdown, re.M), f"{path.name}: no '{heading}' section"
    page = re.search(r"\(\.\./hf_basic/([0-9]{2}_[\w-]+\.md)\)", first.source)
    assert page, f"{path.name}: title cell must link its manual page ../hf_basic/NN_*.md"
    page_path = ROOT / "hf_basic" / page[1]
    assert page_path.exists(), f"{path.name}: links {page_path.name}, which does not exist"
    assert f"../notebooks/{path.name}" in page_path.read_text(), f"{page_path.name} must link back to {path.name}"


def test_no_machine_paths_in_outputs(notebook):
    path, nb = notebook
    text = nbformat.writes(nb)
    for marker in ("/work/", "/root/", "/home/", "/tmp/"):
        assert marker not in text, f"{path.name}: output or source mentions a local path ({marker})"


def test_readme_links_every_notebook_to_colab():
    readme = (ROOT / "README.md").read_text()
    for path in NOTEBOOKS:
        assert colab_url(path.name) in readme, f"README lacks the Colab link of {path.name}"
        assert f"notebooks/{path.name}" in readme


def test_manual_index_lists_every_page():
    index = (ROOT / "hf_basic" / "README.md").read_text()
    for page in sorted((ROOT / "hf_basic").glob("[0-9][0-9]_*.md")):
        assert f"({page.name})" in index, f"hf_basic/README.md does not link {page.name}"
