"""Views and figures: label-mask views (HTML / ANSI), next-token bars, decoding trees, histograms.

Each submodule holds one kind of picture; the public functions are re-exported here.
"""

from utils.viz.data_plots import (plot_eos_correct, plot_length_histogram, plot_loss_curve,
                                  plot_packing_efficiency, plot_row_mask, plot_token_mask,
                                  visible_token_text)
from utils.viz.masks import TokenView, mask_ansi, mask_html, mask_table, show_mask, token_views
from utils.viz.fonts import cjk_font_path, missing_glyphs, use_cjk_font

__all__ = ["cjk_font_path", "missing_glyphs", "use_cjk_font"]
__all__ += ["plot_eos_correct", "plot_length_histogram", "plot_loss_curve", "plot_packing_efficiency",
            "plot_row_mask", "plot_token_mask", "visible_token_text"]
__all__ += ["TokenView", "mask_ansi", "mask_html", "mask_table", "show_mask", "token_views"]
from utils.viz.decoding import (plot_beam_tree, plot_decoding_steps, plot_next_token_bars,
                                plot_token_losses)
from utils.viz.plots import AttentionPanel, causal_attention, plot_attention_patterns, seq2seq_attention

__all__ += ["plot_beam_tree", "plot_decoding_steps", "plot_next_token_bars", "plot_token_losses"]
__all__ += ["AttentionPanel", "causal_attention", "plot_attention_patterns", "seq2seq_attention"]
