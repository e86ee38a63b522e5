"""What every chapter notebook shares: the repository URL, the set-up cell, Colab links.

Every notebook's first code cell is :data:`SETUP_CELL` (``python scripts/run_notebooks.py`` resets it
before executing a notebook); the Colab links in the README and in each notebook's title cell are
:func:`colab_url` of :data:`REPO_URL`. ``tests/test_notebooks_static.py`` checks that they still agree.
"""

from __future__ import annotations

import os
import random
import warnings

REPO_URL = "https://github.com/llm-data-handbook/llm-data-handbook"
BRANCH = "main"

SETUP_CELL = f'''# Setup, the same in every chapter: in Colab, install the course's toolkit; locally (make lab), nothing.
import sys
if "google.colab" in sys.modules:
    %pip install -q "llm-data-handbook[serve] @ git+{REPO_URL}@{BRANCH}"
from utils.course import setup_notebook
setup_notebook()'''


def colab_url(notebook: str) -> str:
    """Colab link of a notebook in the repository, e.g. ``colab_url("02_next_token.ipynb")``."""
    repo_path = REPO_URL.removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{repo_path}/blob/{BRANCH}/notebooks/{notebook}"


def colab_badge(notebook: str) -> str:
    """Markdown badge linking to :func:`colab_url`."""
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"({colab_url(notebook)})")


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and PyTorch and fix PyTorch to 2 threads (what the outputs were made with)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(2)


def setup_notebook(seed: int = 0) -> None:
    """Make a notebook's outputs reproducible and readable.

    Seeds everything and uses 2 threads, silences library progress bars and version-dependent
    warnings, and sets a matplotlib font that can draw Chinese.
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    seed_everything(seed)

    import datasets
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()

    import pandas as pd

    pd.set_option("display.max_colwidth", 80)
    pd.set_option("display.width", 120)

    from utils.viz.fonts import use_cjk_font

    use_cjk_font()


COURSE_PACKAGES = ("torch", "transformers", "tokenizers", "datasets", "peft", "accelerate",
                   "pandas", "numpy", "matplotlib", "jupyterlab", "nbval")


def pinned_versions(constraints_file=None) -> dict[str, str]:
    """Exact pins from the repository's ``constraints.txt`` (empty when the file is absent, e.g. in Colab)."""
    from pathlib import Path

    path = Path(constraints_file) if constraints_file else Path(__file__).resolve().parents[1] / "constraints.txt"
    if not path.exists():
        return {}
    pins = {}
    for line in path.read_text().splitlines():
        name, sep, ver = line.split("#")[0].strip().partition("==")
        if sep:
            pins[name.strip().lower().replace("_", "-")] = ver.strip()
    return pins


def check_environment(packages=COURSE_PACKAGES, constraints_file=None):
    """A table of the course's packages: pinned version, installed version, and whether they match.

    >>> check_environment()[["package", "pinned", "installed", "ok"]].head(1)  # doctest: +SKIP
      package pinned installed    ok
    0   torch 2.13.0    2.13.0  True
    """
    from importlib.metadata import PackageNotFoundError, version

    import pandas as pd

    pins = pinned_versions(constraints_file)
    rows = []
    for name in packages:
        try:
            installed = version(name).split("+")[0]
        except PackageNotFoundError:
            installed = None
        pinned = pins.get(name)
        rows.append({"package": name, "pinned": pinned, "installed": installed,
                     "ok": installed is not None and (pinned is None or installed == pinned)})
    return pd.DataFrame(rows)
