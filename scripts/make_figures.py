"""Re-make every figure under img/ (deterministic; Chinese labels drawn with the CJK font).

    python scripts/make_figures.py            # all chapters
    python scripts/make_figures.py ch02       # only modules whose name starts with ch02

Each chapter's figures are made by ``scripts/figures/chNN_*.py``, which defines
``make(img_dir: Path) -> list[Path]``.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMG = ROOT / "img"
sys.path.insert(0, str(ROOT))


def run_script(script: Path, img_dir: Path) -> list[Path]:
    """Run one figure script's ``make(img_dir)`` with the CJK font, seeded, a missing glyph an error."""
    import matplotlib

    matplotlib.use("Agg")
    from utils.course import seed_everything
    from utils.viz.fonts import use_cjk_font

    use_cjk_font()
    seed_everything(0)
    spec = importlib.util.spec_from_file_location(script.stem, script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="Glyph .* missing")  # no tofu boxes
        return module.make(img_dir)


def main(prefixes: list[str]) -> int:
    IMG.mkdir(exist_ok=True)
    for script in sorted((ROOT / "scripts" / "figures").glob("ch*.py")):
        if prefixes and not any(script.stem.startswith(p) for p in prefixes):
            continue
        for path in run_script(script, IMG):
            print(path.relative_to(ROOT))
    return 0

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
