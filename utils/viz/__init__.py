"""Views and figures: label-mask views (HTML / ANSI), next-token bars, decoding trees, histograms.

Each submodule holds one kind of picture; the public functions are available here too. They are
imported on first use, so ``from utils.viz import mask_ansi`` (a terminal view) does not import
matplotlib.

>>> from utils.viz import mask_ansi
>>> callable(mask_ansi)
True
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "fonts": ["cjk_font_path", "missing_glyphs", "use_cjk_font"],
    "data_plots": ["plot_length_histogram", "plot_loss_curve", "plot_packing_efficiency",
                   "plot_row_mask", "plot_token_mask"],
    "tokens": ["visible_token_text"],
    "masks": ["TokenView", "mask_ansi", "mask_html", "mask_table", "show_mask", "token_views"],
    "decoding": ["plot_beam_tree", "plot_decoding_steps", "plot_next_token_bars", "plot_token_losses"],
    "plots": ["AttentionPanel", "causal_attention", "plot_attention_patterns", "seq2seq_attention"],
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'utils.viz' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"utils.viz.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
