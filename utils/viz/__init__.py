"""Views and figures: label-mask views (HTML / ANSI), next-token bars, decoding trees, histograms.

Each submodule holds one kind of picture; the public functions are re-exported here.
"""

from utils.viz.fonts import cjk_font_path, missing_glyphs, use_cjk_font

__all__ = ["cjk_font_path", "missing_glyphs", "use_cjk_font"]
