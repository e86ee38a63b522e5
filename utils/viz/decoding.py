"""Figures about next-token prediction and decoding (chapter 2).

- :func:`plot_next_token_bars`  the top-k next tokens as horizontal bars (a
  :func:`utils.generate.next_token_distribution` table)
- :func:`plot_token_losses`     per-token cross-entropy (a :func:`utils.generate.token_losses` table)
- :func:`plot_decoding_steps`   the decoding loop as a staircase: context → chosen token, step by step
- :func:`plot_beam_tree`        the candidates of a :func:`utils.generate.beam_search`, as a tree

Each returns a :class:`matplotlib.figure.Figure` (drawing on ``ax`` when given), so the notebook and
``scripts/figures/ch02_next_token.py`` share the same code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from utils.viz.data_plots import _figure
from utils.viz.tokens import visible_token_text

if TYPE_CHECKING:
    from utils.generate import BeamSearchResult, Decoding

TOP_COLOR = "#e76f51"
OTHER_COLOR = "#8ab6d6"
CONTEXT_COLOR = "#e6e6e6"
NEW_COLOR = "#f4a261"
FINISHED_COLOR = "#2a9d8f"
DROPPED_COLOR = "#c8c8c8"


def plot_next_token_bars(table: pd.DataFrame, *, title: str | None = None, ax: Axes | None = None) -> Figure:
    """Horizontal bars of a next-token table (columns ``token``, ``prob``), most probable on top.

    >>> fig = plot_next_token_bars(pd.DataFrame({"token": ["好", "不"], "prob": [0.9, 0.05]}))
    """
    fig, ax = _figure(ax, (5.2, 0.32 * len(table) + 1.2))
    labels = [f"“{t}”" for t in table.token]
    probs = list(table.prob)
    y = list(range(len(table)))[::-1]
    colors = [TOP_COLOR] + [OTHER_COLOR] * (len(table) - 1)
    ax.barh(y, probs, color=colors)
    ax.set_yticks(y, labels)
    for yi, p in zip(y, probs):
        ax.text(p + 0.01, yi, f"{p:.3f}", va="center", fontsize=8)
    ax.set_xlim(0, min(1.0, max(probs) * 1.25 + 0.02))
    ax.set_xlabel("概率")
    if title:
        ax.set_title(title)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig


def plot_token_losses(table: pd.DataFrame, *, title: str | None = None, ax: Axes | None = None) -> Figure:
    """Bars of the per-token loss of a :func:`utils.generate.token_losses` table, mean as a line.

    >>> fig = plot_token_losses(pd.DataFrame({"token": ["我", "们"], "loss": [1.2, 0.3]}))
    """
    fig, ax = _figure(ax, (0.45 * len(table) + 2.2, 3.0))
    x = range(len(table))
    ax.bar(x, table.loss, color=OTHER_COLOR)
    mean = float(table.loss.mean())
    ax.axhline(mean, color=TOP_COLOR, ls="--", lw=1.2, label=f"平均 = {mean:.3f}")
    ax.set_xticks(list(x), [f"“{t}”" for t in table.token])
    ax.set_ylabel("交叉熵损失（-log p）")
    ax.set_xlabel("目标词元")
    ax.legend(frameon=False)
    if title:
        ax.set_title(title)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig


def _box(ax: Axes, x: float, y: float, text: str, color: str, width: float) -> None:
    ax.add_patch(FancyBboxPatch((x, y - 0.32), width, 0.64, boxstyle="round,pad=0.02,rounding_size=0.12",
                                fc=color, ec="#555555", lw=0.6))
    ax.text(x + width / 2, y, text, ha="center", va="center", fontsize=9)


def _text_width(text: str) -> float:
    return sum(0.34 if ord(ch) > 0x2E80 else 0.19 for ch in text) + 0.22


def plot_decoding_steps(prompt_tokens: Sequence[str], decoding: "Decoding", *, title: str | None = None,
                        max_steps: int = 8, ax: Axes | None = None) -> Figure:
    """The decoding loop drawn as a staircase: one row per step, the context the model sees (grey),
    an arrow, and the token it picked (orange) with its probability; that token joins the context of
    the next row.

    ``prompt_tokens`` are the prompt's token texts (e.g. ``[token_label(tok, i) for i in ids]``).

    >>> fig = plot_decoding_steps(["今", "天"], greedy_decode(model, tok, "今天"))   # doctest: +SKIP
    """
    steps = decoding.steps[:max_steps]
    rows = []
    context = [visible_token_text(t) for t in prompt_tokens]
    for s in steps:
        rows.append((list(context), s.token, s.prob))
        context.append(s.token)
    widest = max(sum(_text_width(t) + 0.08 for t in c) + _text_width(tok) for c, tok, _ in rows) + 1.5
    fig, ax = _figure(ax, (max(6.0, widest * 0.95), 0.55 * len(rows) + 0.9))
    for r, (ctx, tok, prob) in enumerate(rows):
        y = len(rows) - r
        ax.text(-0.15, y, f"第{r + 1}步", ha="right", va="center", fontsize=9, color="#555555")
        x = 0.0
        for i, t in enumerate(ctx):
            is_new = i >= len(prompt_tokens)
            w = _text_width(t)
            _box(ax, x, y, t, "#fde5cf" if is_new else CONTEXT_COLOR, w)
            x += w + 0.08
        ax.annotate("", xy=(x + 0.55, y), xytext=(x + 0.08, y),
                    arrowprops={"arrowstyle": "->", "color": "#333333", "lw": 1.0})
        w = _text_width(tok)
        _box(ax, x + 0.62, y, tok, NEW_COLOR, w)
        ax.text(x + 0.7 + w, y, f"p={prob:.2f}", va="center", fontsize=8, color="#333333")
    ax.set_xlim(-1.1, widest)
    ax.set_ylim(0.4, len(rows) + 0.6)
    ax.axis("off")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_beam_tree(result: "BeamSearchResult", *, prompt_label: str = "提示", title: str | None = None,
                   show_dropped: bool = True, fontsize: float = 12, highlight: Sequence[int] | None = None,
                   ax: Axes | None = None) -> Figure:
    """The beam-search tree: one column per step, one node per candidate considered.

    Orange nodes are kept (the running beams of the next step), green ones finished (ended with EOS
    or at the length limit and stored as hypotheses), grey ones dropped. Each node shows the token and
    the summed log-probability; edges join a candidate to the beam it extends. ``highlight`` (new ids,
    e.g. the greedy sequence) outlines the nodes of that path, where the tree contains them.

    Sized for a notebook page (about 9 inches wide for 3–4 steps of 2 beams): keep ``num_beams`` and
    ``max_new_tokens`` small for a readable tree.

    >>> fig = plot_beam_tree(beam_search(model, tok, "The chicken", num_beams=2))   # doctest: +SKIP
    """
    n_steps = len(result.steps)
    per_step = max(len(s) for s in result.steps)
    node_w = max(1.6, max(_text_width(f"{c.token} {c.score:.2f}") for s in result.steps for c in s) * fontsize / 9)
    col = node_w + 0.9                                # distance between columns
    row = 0.62 * fontsize / 9                         # distance between rows
    node_h = 0.72 * row
    prompt_w = max(1.2, _text_width(prompt_label) * fontsize / 9)
    width = prompt_w + col * n_steps + 0.3
    unit = min(0.62, 9.0 / width)                     # inches per data unit: at most ~9 inches wide
    fig, ax = _figure(ax, (width * unit + 0.4, (row * per_step + 0.6) * unit * 1.25 + 0.9))
    pos_prev = {0: (0.0, row * (per_step - 1) / 2)}   # slot -> (x, y) of the running beams' right edge
    ax.add_patch(FancyBboxPatch((-prompt_w, pos_prev[0][1] - node_h / 2), prompt_w, node_h,
                                boxstyle="round,pad=0.02,rounding_size=0.1", fc=CONTEXT_COLOR, ec="#555555"))
    ax.text(-prompt_w / 2, pos_prev[0][1], prompt_label, ha="center", va="center", fontsize=fontsize)
    path = list(highlight or [])
    on_path = {0: True}                               # slot -> whether that running beam is the highlighted path
    for t, cands in enumerate(result.steps):
        x = col * (t + 1)                             # centre of this column's nodes
        pos_next, on_next = {}, {}
        for rank, c in enumerate(cands):
            if c.status == "dropped" and not show_dropped:
                continue
            y = row * (per_step - 1 - rank)
            color = {"kept": NEW_COLOR, "finished": FINISHED_COLOR}.get(c.status, DROPPED_COLOR)
            px, py = pos_prev[c.parent]
            marked = bool(path) and on_path.get(c.parent, False) and t < len(path) and c.token_id == path[t]
            ax.plot([px, x - node_w / 2], [py, y], color="#888888" if c.status != "dropped" else "#d0d0d0",
                    lw=1.4 if c.status != "dropped" else 0.8, zorder=1)
            ax.add_patch(FancyBboxPatch((x - node_w / 2, y - node_h / 2), node_w, node_h,
                                        boxstyle="round,pad=0.02,rounding_size=0.1", fc=color,
                                        ec="#1d3557" if marked else "#555555", lw=2.4 if marked else 0.6,
                                        ls="--" if marked else "-", zorder=2,
                                        alpha=1.0 if c.status != "dropped" else 0.75))
            ax.text(x, y, f"{c.token} {c.score:.2f}", ha="center", va="center", fontsize=fontsize, zorder=3,
                    color="#222222" if c.status != "dropped" else "#555555")
            if c.status == "kept":
                pos_next[c.slot] = (x + node_w / 2, y)
                on_next[c.slot] = marked
        pos_prev, on_path = pos_next, on_next
    ax.set_xlim(-prompt_w - 0.15, col * n_steps + node_w / 2 + 0.15)
    ax.set_ylim(-row * 0.9, row * (per_step - 0.4))
    ax.axis("off")
    colors = (NEW_COLOR, FINISHED_COLOR, DROPPED_COLOR)
    names = ["保留（继续扩展）", "结束（进入候选结果）", "淘汰"]
    handles = [plt.Rectangle((0, 0), 1, 1, fc=c, ec="#555555") for c in colors]
    if path:
        handles.append(plt.Rectangle((0, 0), 1, 1, fc="white", ec="#1d3557", lw=2.4, ls="--"))
        names.append("贪心解码的路径")
    ax.legend(handles, names, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(names), frameon=False,
              fontsize=fontsize - 1, handlelength=1.2, columnspacing=1.0)
    if title:
        ax.set_title(title, fontsize=fontsize + 1)
    fig.tight_layout()
    return fig
