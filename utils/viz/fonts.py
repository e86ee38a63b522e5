"""A matplotlib font that draws Chinese (no tofu boxes), the same locally and in Colab."""

from __future__ import annotations

import importlib.resources
from functools import lru_cache
from pathlib import Path

CJK_FONT_FILE = "NotoSansCJKsc-Regular.otf"


def cjk_font_path() -> Path:
    """Path of the Noto Sans CJK SC font shipped by the ``mplfonts`` package."""
    path = Path(str(importlib.resources.files("mplfonts") / "fonts" / CJK_FONT_FILE))
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: reinstall the 'mplfonts' package (make setup)")
    return path


@lru_cache(maxsize=1)
def use_cjk_font() -> str:
    """Register the CJK font with matplotlib and make it the default; returns its family name.

    >>> use_cjk_font()
    'Noto Sans CJK SC'
    """
    import matplotlib
    from matplotlib import font_manager

    path = cjk_font_path()
    font_manager.fontManager.addfont(str(path))
    name = font_manager.FontProperties(fname=str(path)).get_name()
    matplotlib.rcParams["font.family"] = "sans-serif"
    matplotlib.rcParams["font.sans-serif"] = [name, "DejaVu Sans"]
    matplotlib.rcParams["axes.unicode_minus"] = False
    return name


def missing_glyphs(text: str) -> set[str]:
    """Characters of ``text`` (other than whitespace) that the CJK font cannot draw."""
    from matplotlib.ft2font import FT2Font

    charmap = FT2Font(str(cjk_font_path())).get_charmap()
    return {ch for ch in set(text) if not ch.isspace() and ord(ch) not in charmap}
