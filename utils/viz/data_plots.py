"""Figures about training data and fine-tuning (chapters 3–6).

- :func:`plot_token_mask`        each token as a box: supervised (coloured) vs masked (grey)
- :func:`plot_row_mask`          the same for an encoded row (``input_ids`` + ``labels``)
- :func:`plot_length_histogram`  example lengths in tokens, with the chosen ``max_length``
- :func:`plot_packing_efficiency` share of real (non-padding) tokens, padding vs packing
- :func:`plot_loss_curve`        training loss per step (optionally smoothed)

Every function returns a :class:`matplotlib.figure.Figure` (draws on ``ax`` when one is given), so the
same code makes the notebook figure and the PNG under ``img/`` (``scripts/figures/ch0N_*.py``).
Titles and labels are Chinese; call :func:`utils.viz.use_cjk_font` first (``setup_notebook`` does).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from utils.viz.tokens import VISIBLE_WHITESPACE, visible_token_text  # noqa: F401 (re-exported)

SUPERVISED_COLOR = "#f4a261"
MASKED_COLOR = "#e6e6e6"


def _figure(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=figsize)
    return fig, ax


def plot_token_mask(tokens: Sequence[str], supervised: Sequence[bool], *, title: str | None = None,
                    chars_per_line: int = 60, ax: Axes | None = None) -> Figure:
    """Draw tokens as boxes, wrapping like text: supervised tokens coloured, masked ones grey.

    ``tokens`` are the decoded token texts (one per id), ``supervised[i]`` is ``labels[i] != -100``.
    A newline token ends the line, as in the rendered text.

    >>> fig = plot_token_mask(["human", ":", " Hi", "\\n", "assistant", ":", " Hello", "</s>"],
    ...                       [False] * 6 + [True, True])
    """
    if len(tokens) != len(supervised):
        raise ValueError(f"tokens ({len(tokens)}) and supervised ({len(supervised)}) differ in length")
    # layout in character units: each box is as wide as its visible text (CJK counts double)
    def width(s: str) -> float:
        return sum(1.9 if ord(ch) > 0x2E80 else 1.0 for ch in s) + 0.8

    rows: list[list[tuple[str, bool, float, float]]] = [[]]
    x = 0.0
    for tok, sup in zip(tokens, supervised):
        label = visible_token_text(tok)
        w = width(label)
        if x + w > chars_per_line and rows[-1]:
            rows.append([])
            x = 0.0
        rows[-1].append((label, bool(sup), x, w))
        x += w + 0.3
        if "\n" in tok:
            rows.append([])
            x = 0.0
    if not rows[-1]:
        rows.pop()
    line_h = 2.2
    fig, ax = _figure(ax, (0.16 * chars_per_line + 0.5, 0.3 * len(rows) + 0.8))
    for r, row in enumerate(rows):
        y = -r * line_h
        for label, sup, x0, w in row:
            ax.add_patch(FancyBboxPatch((x0, y - 0.8), w, 1.6, boxstyle="round,pad=0.02,rounding_size=0.3",
                                        facecolor=SUPERVISED_COLOR if sup else MASKED_COLOR,
                                        edgecolor="#555555" if sup else "#bbbbbb", linewidth=0.6))
            ax.text(x0 + w / 2, y, label, ha="center", va="center", fontsize=8,
                    color="black" if sup else "#666666")
    ax.set_xlim(-0.5, chars_per_line + 0.5)
    ax.set_ylim(-(len(rows) - 1) * line_h - 1.3, 1.3)
    ax.axis("off")
    handles = [plt.Rectangle((0, 0), 1, 1, facecolor=SUPERVISED_COLOR, edgecolor="#555555"),
               plt.Rectangle((0, 0), 1, 1, facecolor=MASKED_COLOR, edgecolor="#bbbbbb")]
    ax.legend(handles, ["参与训练（标签 = 词元 id）", "掩掉（标签 = -100）"], loc="upper center",
              bbox_to_anchor=(0.5, 0.0), ncol=2, frameon=False, fontsize=9)
    if title:
        ax.set_title(title, fontsize=11)
    fig.tight_layout()
    return fig


def plot_row_mask(row: Mapping, tokenizer, *, title: str | None = None, chars_per_line: int = 70,
                  ax: Axes | None = None) -> Figure:
    """:func:`plot_token_mask` of an encoded row, tokens grouped as :func:`utils.viz.masks.token_views`
    groups them (a character split over several byte tokens is one box).

    >>> fig = plot_row_mask(encode(example, tokenizer, "alpaca"), tokenizer)  # doctest: +SKIP
    """
    from utils.viz.masks import token_views  # masks imports this module: import here, not above

    views = token_views(row, tokenizer)
    return plot_token_mask([v.text for v in views], [v.kind == "supervised" for v in views],
                           title=title, chars_per_line=chars_per_line, ax=ax)


def plot_length_histogram(lengths: Sequence[int], *, max_length: int | None = None, bins: int = 30,
                          title: str = "样例长度分布", ax: Axes | None = None) -> Figure:
    """Histogram of example lengths (tokens); a dashed line marks ``max_length`` and how many exceed it.

    >>> fig = plot_length_histogram([12, 30, 31, 45, 90], max_length=64)
    """
    fig, ax = _figure(ax, (7, 3.6))
    ax.hist(list(lengths), bins=bins, color="#4c72b0", edgecolor="white")
    if max_length is not None:
        over = sum(1 for n in lengths if n > max_length)
        ax.axvline(max_length, color="#c44e52", linestyle="--", linewidth=1.5)
        ax.text(max_length, ax.get_ylim()[1] * 0.97, f"max_length = {max_length} \n超出：{over} 条 ",
                color="#c44e52", va="top", ha="right", fontsize=9,
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1})
    ax.set_xlabel("词元数")
    ax.set_ylabel("样例数")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_packing_efficiency(efficiency: Mapping[str, float], *, rows: Mapping[str, int] | None = None,
                            title: str = "填充 vs 打包：有效词元占比", ax: Axes | None = None) -> Figure:
    """Bars of the share of non-padding tokens per method (``{"按批填充": 0.55, "打包": 0.97}``).

    ``rows`` (optional, same keys) is printed under each bar, e.g. the number of rows or batches.

    >>> fig = plot_packing_efficiency({"填充": 0.5, "打包": 0.95}, rows={"填充": 100, "打包": 40})
    """
    fig, ax = _figure(ax, (5.5, 3.6))
    names = list(efficiency)
    values = [efficiency[n] for n in names]
    colors = ["#8c8c8c", "#55a868", "#4c72b0", "#dd8452"][: len(names)]
    bars = ax.bar(range(len(names)), values, color=colors, width=0.55)
    for bar, v in zip(bars, values):
        ax.text(bar.get_x() + bar.get_width() / 2, v + 0.02, f"{v:.0%}", ha="center", fontsize=10)
    ax.set_xticks(range(len(names)),
                  [f"{n}\n（{rows[n]} 行）" if rows else n for n in names])
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("非填充词元占比")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_loss_curve(losses: Sequence[float] | Mapping[str, Sequence[float]], *, smooth: int = 1,
                    title: str = "训练损失", ax: Axes | None = None) -> Figure:
    """Loss per step; a mapping draws one line per run. ``smooth`` = moving-average window.

    >>> fig = plot_loss_curve({"掩掉提示": [3.0, 2.0, 1.5], "全部词元": [3.2, 2.5, 2.0]})
    """
    series = losses if isinstance(losses, Mapping) else {"loss": losses}
    fig, ax = _figure(ax, (6.5, 3.4))
    for name, ys in series.items():
        ys = list(ys)
        if smooth > 1 and len(ys) >= smooth:
            ys = [sum(ys[i - smooth + 1:i + 1]) / smooth for i in range(smooth - 1, len(ys))]
            xs = range(smooth, smooth + len(ys))
        else:
            xs = range(1, len(ys) + 1)
        ax.plot(list(xs), ys, label=name, linewidth=1.4)
    ax.set_xlabel("步数")
    ax.set_ylabel("交叉熵损失")
    ax.set_title(title)
    if isinstance(losses, Mapping):
        ax.legend(frameon=False)
    fig.tight_layout()
    return fig
