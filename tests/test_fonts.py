"""Figures never fall back to tofu boxes: the CJK font is installed, and it can draw every Chinese
character that a notebook or a figure script writes."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import matplotlib
import pytest
from matplotlib import font_manager

from utils.viz.fonts import missing_glyphs, use_cjk_font

ROOT = Path(__file__).resolve().parents[1]
CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")


def test_cjk_font_is_found_without_fallback():
    name = use_cjk_font()
    path = font_manager.findfont(font_manager.FontProperties(family=name), fallback_to_default=False)
    assert Path(path).exists()
    assert matplotlib.rcParams["font.sans-serif"][0] == name


def test_font_draws_every_chinese_character_used_in_notebooks_and_figures():
    sources = list((ROOT / "notebooks").glob("*.ipynb")) + list((ROOT / "scripts" / "figures").glob("*.py"))
    sources += list((ROOT / "utils" / "viz").glob("*.py"))
    text = "".join(CJK.findall("".join(p.read_text(encoding="utf-8") for p in sources)))
    assert text, "expected Chinese text in notebooks/figures"
    assert missing_glyphs(text) == set()


def test_drawing_chinese_raises_no_missing_glyph_warning(tmp_path):
    import matplotlib.pyplot as plt

    use_cjk_font()
    fig, ax = plt.subplots()
    ax.set_title("下一个词元的概率")
    ax.bar(["好", "不", " road"], [0.5, 0.3, 0.2])
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="Glyph .* missing")
        fig.savefig(tmp_path / "t.png")
    plt.close(fig)


def test_missing_glyphs_reports_what_the_font_lacks():
    # U+E000 is a private-use code point: no font we ship defines it.
    assert missing_glyphs("好\ue000") == {"\ue000"}
