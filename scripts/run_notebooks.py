"""Execute notebooks top to bottom in a fresh kernel and store their outputs (what nbval checks).

    python scripts/run_notebooks.py                 # every notebook under notebooks/
    python scripts/run_notebooks.py notebooks/02_next_token.ipynb

Each notebook must finish in under 60 s on 2 CPU cores; the time is printed, and a slower one fails.
The first code cell is reset to the shared set-up cell (utils.course.SETUP_CELL) before running.
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


def run(path: Path, timeout: int = 600) -> float:
    nb = nbformat.read(path, as_version=4)
    sync_setup_cell(nb)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
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
