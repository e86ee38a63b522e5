"""Execute notebooks top to bottom in a fresh kernel and store their outputs (what nbval checks).

    python scripts/run_notebooks.py                 # every notebook under notebooks/
    python scripts/run_notebooks.py notebooks/02_next_token.ipynb

Each notebook must finish in under 60 s on 2 CPU cores; the time is printed, and a slower one fails.
The first code cell is reset to the shared set-up cell (utils.course.SETUP_CELL) before running.

Notebook metadata is stored as JupyterLab will see it, so that opening a notebook does not mark it
modified: JupyterLab overwrites ``kernelspec`` and ``language_info`` with what the running kernel
reports, and any difference (``"Python 3"`` vs the kernel's ``"Python 3 (ipykernel)"``) makes the
notebook dirty at once. So the kernelspec written is the installed ``python3`` kernel's own, and
``language_info`` is the one the kernel reported while executing. (With a Python version other than
the course's, 3.11, JupyterLab still updates ``language_info.version``: that one cannot be avoided.)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from utils.course import SETUP_CELL  # noqa: E402

TIME_LIMIT_S = 60.0


def sync_setup_cell(nb) -> None:
    first = next(c for c in nb.cells if c.cell_type == "code")
    first.source = SETUP_CELL


def kernelspec_metadata(name: str = "python3") -> dict:
    """The ``kernelspec`` notebook metadata JupyterLab writes for the installed kernel ``name``."""
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec(name)
    return {"display_name": spec.display_name, "language": spec.language, "name": name}


def run(path: Path, timeout: int = 600) -> float:
    nb = nbformat.read(path, as_version=4)
    sync_setup_cell(nb)
    nb.metadata["kernelspec"] = kernelspec_metadata()
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    elapsed = time.perf_counter() - start
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, path)
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path)
    args = parser.parse_args()
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    slow = []
    for path in paths:
        elapsed = run(path)
        print(f"{path.name}: {elapsed:.1f} s")
        if elapsed > TIME_LIMIT_S:
            slow.append(path.name)
    if slow:
        print(f"slower than {TIME_LIMIT_S:.0f} s: {', '.join(slow)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
