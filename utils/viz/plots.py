"""Attention patterns of the two model types (chapter 1): who may attend to whom.

- :func:`causal_attention`       self-attention weights of a decoder-only model on a text
- :func:`seq2seq_attention`      an encoder-decoder's three kinds: encoder self-attention (full),
  decoder self-attention (causal) and cross-attention (decoder → encoder)
- :func:`plot_attention_patterns` the panels side by side; positions a query may not see are hatched

The weights come from the models themselves (``output_attentions=True`` with the eager attention
implementation, averaged over the heads of one layer), so the masks shown are the ones the models really apply.

>>> panels = [causal_attention(model, tok, "今天天气真好")]          # doctest: +SKIP
>>> fig = plot_attention_patterns(panels)                             # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure



@dataclass
class AttentionPanel:
    """One attention matrix: ``weights[q, k]`` is how much query position ``q`` attends to key ``k``."""

    title: str
    weights: np.ndarray
    query_labels: list[str]
    key_labels: list[str]
    allowed: np.ndarray       # where attention is possible by the model's design (causal: q >= k)


def _labels(tokenizer, ids: Sequence[int]) -> list[str]:
    from utils.generate import token_labels   # lazy: utils.generate imports utils.viz

    return token_labels(tokenizer, [int(i) for i in ids])


def _configs(model) -> list:
    """The model's config and every sub-module's own config (e.g. a T5's encoder and decoder stacks
    each hold a copy), once each."""
    seen: dict[int, object] = {}
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "_attn_implementation"):
            seen.setdefault(id(config), config)
    return list(seen.values())


def _set_attention(configs, implementations) -> None:
    for config, implementation in zip(configs, implementations):
        if config._attn_implementation != implementation:
            config._attn_implementation = implementation


@contextmanager
def _eager_attention(model):
    """Attention weights are only returned by the plain ("eager") implementation: switch to it
    for the duration, then restore the model's own (e.g. ``sdpa``). Every sub-module with its own
    config is switched: in transformers 5.15 ``set_attn_implementation`` leaves the copies held by a
    T5's encoder and decoder stacks on ``sdpa``, so each copy is also set directly."""
    configs = _configs(model)
    before = [config._attn_implementation for config in configs]
    with warnings.catch_warnings():   # transformers' own deprecation notices, not the user's concern
        warnings.simplefilter("ignore", FutureWarning)
        if model.config._attn_implementation != "eager":
            model.set_attn_implementation("eager")
        _set_attention(configs, ["eager"] * len(configs))
        try:
            yield model
        finally:
            if model.config._attn_implementation != before[0]:
                model.set_attn_implementation(before[0])
            _set_attention(configs, before)


def _head_mean(attn: torch.Tensor) -> np.ndarray:
    return attn[0].float().mean(dim=0).numpy()


@torch.no_grad()
def causal_attention(model, tokenizer, text: str, layer: int = 0,
                     title: str = "仅解码器：因果自注意力") -> AttentionPanel:
    """Self-attention weights (mean over heads of ``layer``) of a decoder-only model on ``text``."""
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    with _eager_attention(model):
        out = model(input_ids=ids, output_attentions=True)
    if not out.attentions:
        raise ValueError("the model returned no attentions: load it with attn_implementation='eager'")
    labels = _labels(tokenizer, ids[0])
    n = len(labels)
    return AttentionPanel(title, _head_mean(out.attentions[layer]), labels, labels,
                          np.tril(np.ones((n, n), dtype=bool)))


@torch.no_grad()
def seq2seq_attention(model, tokenizer, source: str | Sequence[int], target: str,
                      layer: int = 0) -> list[AttentionPanel]:
    """An encoder-decoder's three attention kinds for ``source`` → ``target`` (teacher-forced: the
    decoder reads the start token followed by the target). ``source`` is a text or the encoder's ids
    (pass ids when the model's inputs are encoded in a special way, e.g. with a final EOS)."""
    if isinstance(source, str):
        src = tokenizer(source, return_tensors="pt")["input_ids"]
    else:
        src = torch.as_tensor(list(source), dtype=torch.long).reshape(1, -1)
    tgt = tokenizer(target, add_special_tokens=False, return_tensors="pt")["input_ids"]
    start = model.config.decoder_start_token_id
    dec = torch.cat([torch.tensor([[start]]), tgt], dim=1)
    with _eager_attention(model):
        out = model(input_ids=src, decoder_input_ids=dec, output_attentions=True)
    if not out.encoder_attentions:
        raise ValueError("the model returned no attentions: load it with attn_implementation='eager'")
    src_labels = _labels(tokenizer, src[0])
    dec_labels = ["〈开始〉"] + _labels(tokenizer, tgt[0])
    ns, nd = len(src_labels), len(dec_labels)
    return [AttentionPanel("编码器：双向自注意力", _head_mean(out.encoder_attentions[layer]),
                           src_labels, src_labels, np.ones((ns, ns), dtype=bool)),
            AttentionPanel("解码器：因果自注意力", _head_mean(out.decoder_attentions[layer]),
                           dec_labels, dec_labels, np.tril(np.ones((nd, nd), dtype=bool))),
            AttentionPanel("解码器 → 编码器：交叉注意力", _head_mean(out.cross_attentions[layer]),
                           dec_labels, src_labels, np.ones((nd, ns), dtype=bool))]


def plot_attention_patterns(panels: Sequence[AttentionPanel], *, title: str | None = None,
                            ncols: int | None = None) -> Figure:
    """Draw attention panels side by side: darker = more attention; hatched = not allowed (masked).

    Rows are queries (the position that is being computed), columns are keys (what it may look at).
    """
    ncols = ncols or len(panels)
    nrows = -(-len(panels) // ncols)
    cell = 0.3
    # every panel drawn with the same cell size: columns as wide as their widest matrix, rows as tall
    widths = [max(p.weights.shape[1] for p in panels[c::ncols]) for c in range(ncols)]
    heights = [max(p.weights.shape[0] for p in panels[r * ncols:(r + 1) * ncols]) for r in range(nrows)]
    fig = plt.figure(figsize=(sum(widths) * cell + 1.9 * ncols, sum(heights) * cell + 1.7 * nrows))
    grid = fig.add_gridspec(nrows, ncols, width_ratios=widths, height_ratios=heights)
    axes = np.array([fig.add_subplot(grid[i // ncols, i % ncols]) for i in range(nrows * ncols)])
    for ax, panel in zip(axes.flat, panels):
        w = np.ma.masked_where(~panel.allowed, panel.weights)
        nq, nk = panel.weights.shape
        ax.add_patch(plt.Rectangle((-0.5, -0.5), nk, nq, fc="#f2f2f2", ec="none", hatch="///",
                                   lw=0, zorder=0))
        ax.imshow(w, cmap="Blues", vmin=0, vmax=max(float(panel.weights.max()), 1e-6), zorder=1,
                  aspect="equal")
        long_labels = nk > 12 or max(len(t) for t in panel.key_labels) > 3
        ax.set_xticks(range(nk), panel.key_labels, fontsize=8, rotation=90 if long_labels else 0)
        ax.set_yticks(range(nq), panel.query_labels, fontsize=8)
        ax.set_xlabel("被关注的位置（key）", fontsize=9)
        ax.set_ylabel("正在计算的位置（query）", fontsize=9)
        ax.set_title(panel.title, fontsize=10)
        ax.tick_params(length=0)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
