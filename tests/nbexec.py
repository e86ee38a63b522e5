"""Run a chapter notebook's code cells in-process and hand back its namespace (for chapter tests).

The chapter tests use this to check what a notebook computes by hand against the library, and to
re-run its hidden exercise solutions (cells tagged ``solution``), which assert their own results.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]


def notebook_namespace(name: str, *, skip_tags: tuple[str, ...] = ()) -> dict:
    """Execute every code cell of ``notebooks/<name>`` (cwd = notebooks/) and return the globals.

    IPython syntax (``%pip`` in the set-up cell) is translated first; figures are closed, ``display``
    is a no-op. Cells carrying one of ``skip_tags`` are skipped.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from IPython.core.inputtransformer2 import TransformerManager

    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    transform = TransformerManager().transform_cell
    ns: dict = {"__name__": "__main__", "display": lambda *args, **kwargs: None}
    cwd = os.getcwd()
    os.chdir(ROOT / "notebooks")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*non-interactive.*")
            for i, cell in enumerate(nb.cells):
                if cell.cell_type != "code" or set(cell.metadata.get("tags", [])) & set(skip_tags):
                    continue
                exec(compile(transform(cell.source), f"{name}[cell {i}]", "exec"), ns)
                plt.close("all")
    finally:
        os.chdir(cwd)
    return ns


def run_figure_script(name: str, img_dir: Path) -> list[Path]:
    """Run ``scripts/figures/<name>.py`` exactly as ``scripts/make_figures.py`` does (CJK font, seeded,
    a missing-glyph warning an error); returns the written paths."""
    scripts = Path(__file__).resolve().parents[1] / "scripts"
    return load_script("make_figures.py").run_script(scripts / "figures" / f"{name}.py", img_dir)


def load_script(relative: str):
    """Import ``scripts/<relative>`` (not a package) as a module."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
