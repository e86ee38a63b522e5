"""Label-mask views: see at a glance which tokens a row trains on.

An encoded row (``{"input_ids", "labels"}``, optionally packed with ``position_ids``) is shown token
by token, in the spirit of axolotl's debug view:

- **supervised** tokens (``labels[i] == input_ids[i]``) in green, **masked** tokens
  (``labels[i] == -100``) in grey;
- a label that is neither (e.g. labels shifted by one, a classic bug) in **red**;
- token boundaries visible (each token its own box, alternating shades), special tokens (``<s>``,
  ``</s>``, ``<|im_end|>``) outlined, whitespace made visible (``·`` space, ``⏎`` newline,
  ``→`` tab), and the start of each packed example marked ``‖``.

Three forms: :func:`mask_html` (a string of HTML; :func:`show_mask` displays it in a notebook),
:func:`mask_ansi` (coloured text for a terminal, or plain text with ``|`` between tokens and
``[...]`` around supervised ones), and :func:`mask_table` (a ``pandas.DataFrame`` with one row per
token: ``token``, ``id``, ``label``, ``supervised``).

Characters that a byte-level tokenizer splits over several tokens (many Chinese characters and
emoji in GPT-2) are shown once, over the tokens that make them up.

Example:
    >>> row = encode({"instruction": "Hi", "output": "Hello"}, tok, "alpaca")  # doctest: +SKIP
    >>> print(mask_ansi(row, tok, color=False))                                 # doctest: +SKIP
    Below| is| an| instruction| ...|:[ Hello][</s>]
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from utils.encode import IGNORE_INDEX
from utils.viz.tokens import visible_token_text

_CONTEXT = 8  # tokens of left context when decoding one token (for "▁" spaces, split characters)

__all__ = ["TokenView", "mask_ansi", "mask_html", "mask_table", "show_mask", "token_views"]


@dataclass(frozen=True)
class TokenView:
    """A group of consecutive tokens shown as one box: usually one token, several when a character
    is split over tokens. ``kind`` is ``"supervised"``, ``"masked"``, ``"mixed"`` (some of each)
    or ``"wrong"`` (a label that is neither -100 nor the token's id)."""

    start: int
    end: int
    text: str
    ids: tuple[int, ...]
    labels: tuple[int, ...]
    kind: str
    special: bool
    example_start: bool

    @property
    def visible(self) -> str:
        """``text`` with spaces, newlines and tabs replaced by visible marks."""
        return visible_token_text(self.text)


def _as_list(values: Any) -> list[int]:
    return values.tolist() if hasattr(values, "tolist") else list(values)


def _decode(tokenizer: Any, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def _kind(ids: Sequence[int], labels: Sequence[int]) -> str:
    kinds = set()
    for token, label in zip(ids, labels):
        if label == IGNORE_INDEX:
            kinds.add("masked")
        elif label == token:
            kinds.add("supervised")
        else:
            return "wrong"
    return kinds.pop() if len(kinds) == 1 else "mixed"


def token_views(row: Mapping[str, Any], tokenizer: Any) -> list[TokenView]:
    """The tokens of ``row`` as :class:`TokenView` groups, in order.

    ``row`` needs ``input_ids``; ``labels`` (default: all -100) and ``position_ids`` (packed rows)
    are optional. Each token's text is what it adds to the decoded text (leading spaces included).

    Example:
        >>> views = token_views({"input_ids": [9906, 1917], "labels": [-100, 1917]}, gpt2)  # doctest: +SKIP
        >>> [(v.text, v.kind) for v in views]                                              # doctest: +SKIP
        [('Hello', 'masked'), (' world', 'supervised')]
    """
    ids = _as_list(row["input_ids"])
    labels = _as_list(row["labels"]) if "labels" in row else [IGNORE_INDEX] * len(ids)
    if len(labels) != len(ids):
        raise ValueError(f"labels has {len(labels)} values but input_ids has {len(ids)}")
    positions = _as_list(row["position_ids"]) if "position_ids" in row else None
    starts = {i for i, p in enumerate(positions) if p == 0 and i > 0} if positions else set()
    special_ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    views: list[TokenView] = []
    group = 0
    for end in range(1, len(ids) + 1):
        context = ids[max(0, group - _CONTEXT):group]
        before = _decode(tokenizer, context)
        full = _decode(tokenizer, context + ids[group:end])
        text = full[len(before):] if full.startswith(before) else _decode(tokenizer, ids[group:end])
        next_starts_new = end < len(ids) and (end in starts or ids[end] in special_ids)
        if text.endswith("\ufffd") and end < len(ids) and not next_starts_new and end - group < 8:
            continue  # an incomplete character: take the next token into the same box
        views.append(TokenView(
            start=group, end=end, text=text, ids=tuple(ids[group:end]), labels=tuple(labels[group:end]),
            kind=_kind(ids[group:end], labels[group:end]),
            special=any(i in special_ids for i in ids[group:end]), example_start=group in starts))
        group = end
    return views


# ---- HTML ---------------------------------------------------------------------------------------

_HTML_COLOURS = {  # (background, alternate background, text colour)
    "supervised": ("#a8e6a1", "#7fd477", "#0b3d0b"),
    "masked": ("#ececec", "#dcdcdc", "#555555"),
    "mixed": ("#ffd27f", "#ffc14d", "#4d3300"),
    "wrong": ("#ff8a8a", "#ff6b6b", "#5c0000"),
}
_LEGEND = (("supervised", "supervised 计算损失"), ("masked", "masked, label = -100 不计算损失"),
           ("mixed", "mixed 部分计算"), ("wrong", "label ≠ input_id 标签错误"))
_LEGEND_ZH = (("supervised", "参与训练（计算损失）"), ("masked", "掩掉（label = -100，不计算损失）"),
              ("mixed", "部分参与训练"), ("wrong", "标签错误（label ≠ input_id）"))
LEGEND_LANGUAGES = ("en+zh", "zh")
"""Legend texts of :func:`mask_html`: ``"en+zh"`` (English key words with Chinese, the default) or ``"zh"``."""


def _title(view: TokenView) -> str:
    pairs = ", ".join(f"{i}→{'-100' if label == IGNORE_INDEX else label}"
                      for i, label in zip(view.ids, view.labels))
    return f"pos {view.start}: id→label {pairs}"


def mask_html(row: Mapping[str, Any], tokenizer: Any, legend: bool = True, *, lang: str = "en+zh") -> str:
    """The row as HTML: one coloured box per token; hover a box for its position, ids and labels.

    ``lang="zh"`` writes the legend and the token count in Chinese only (see :data:`LEGEND_LANGUAGES`).

    Example:
        >>> from IPython.display import HTML                    # doctest: +SKIP
        >>> HTML(mask_html(row, tokenizer, lang="zh"))           # doctest: +SKIP
    """
    if lang not in LEGEND_LANGUAGES:
        raise ValueError(f"lang must be one of {', '.join(LEGEND_LANGUAGES)}, got {lang!r}")
    views = token_views(row, tokenizer)
    parts = []
    for n, view in enumerate(views):
        if view.example_start:
            parts.append('<br><span style="color:#1f4e9c;font-weight:bold">‖ </span>')
        background, alternate, colour = _HTML_COLOURS[view.kind]
        style = (f"background:{alternate if n % 2 else background};color:{colour};"
                 "border-radius:3px;padding:1px 1px;margin:0 1px 0 0;")
        if view.special:
            style += "outline:1.5px solid #333;font-weight:bold;"
        parts.append(f'<span style="{style}" title="{html.escape(_title(view))}">'
                     f"{html.escape(view.visible)}</span>")
        if "\n" in view.text:
            parts.append("<br>")
    counts = _counts(views)
    header = ""
    if legend:
        used = {view.kind for view in views} | {"supervised", "masked"}
        keys = "".join(
            f'<span style="background:{_HTML_COLOURS[kind][0]};color:{_HTML_COLOURS[kind][2]};'
            f'border-radius:3px;padding:1px 4px;margin-right:6px">{html.escape(text)}</span>'
            for kind, text in (_LEGEND_ZH if lang == "zh" else _LEGEND) if kind in used)
        summary = (f'共 {counts["tokens"]} 个词元，{counts["supervised"]} 个参与训练' if lang == "zh"
                   else f'{counts["tokens"]} tokens, {counts["supervised"]} supervised')
        header = (f'<div style="margin-bottom:4px">{keys}<span style="color:#555">'
                  f'{summary}</span></div>')
    return ('<div style="font-family:monospace;font-size:13px;line-height:1.9;white-space:pre-wrap;'
            f'word-break:break-all">{header}{"".join(parts)}</div>')


def show_mask(row: Mapping[str, Any], tokenizer: Any, legend: bool = True, *, lang: str = "zh") -> Any:
    """:func:`mask_html` wrapped for display in a notebook (the last expression of a cell); the legend is
    in Chinese by default, as in the course's notebooks (``lang="en+zh"`` for both languages).

    Example:
        >>> show_mask(encode(example, tokenizer, "vicuna"), tokenizer, lang="zh")  # doctest: +SKIP
    """
    from IPython.display import HTML

    return HTML(mask_html(row, tokenizer, legend=legend, lang=lang))


def _counts(views: list[TokenView]) -> dict[str, int]:
    tokens = sum(view.end - view.start for view in views)
    supervised = sum(label != IGNORE_INDEX for view in views for label in view.labels)
    return {"tokens": tokens, "supervised": supervised}


# ---- terminal -----------------------------------------------------------------------------------

_ANSI = {  # SGR codes (two shades alternate so token boundaries show)
    "supervised": ("30;42", "30;102"),
    "masked": ("37;100", "90;47"),
    "mixed": ("30;43", "30;103"),
    "wrong": ("97;41", "97;101"),
}
_RESET = "\x1b[0m"


def mask_ansi(row: Mapping[str, Any], tokenizer: Any, color: bool = True) -> str:
    """The row as terminal text.

    With ``color=True``: supervised tokens on green, masked on grey, wrong labels on red, mixed on
    yellow; neighbouring tokens alternate shades; special tokens bold and underlined. With
    ``color=False`` (a file, a pipe): tokens separated by ``|``, supervised runs in ``[...]``, wrong
    labels in ``{...}``. Newlines are shown as ``⏎`` followed by a line break.

    Example:
        >>> print(mask_ansi({"input_ids": ids, "labels": labels}, tokenizer))  # doctest: +SKIP
    """
    views = token_views(row, tokenizer)
    out: list[str] = []
    in_run = False  # inside a [...] run of supervised tokens (plain mode)
    for n, view in enumerate(views):
        shown = view.visible
        newline = "\n" if "\n" in view.text else ""  # after the colour reset: no bleeding background
        if color:
            if view.example_start:
                out.append("\n‖ ")
            code = _ANSI[view.kind][n % 2] + (";1;4" if view.special else "")
            out.append(f"\x1b[{code}m{shown}{_RESET}{newline}")
            continue
        supervised = view.kind == "supervised"
        if view.example_start:
            out.append("]\n‖ " if in_run else "\n‖ ")
            in_run = False
        elif n and supervised == in_run:
            out.append("|")
        if supervised and not in_run:
            out.append("[")
        elif in_run and not supervised:
            out.append("]")
        in_run = supervised
        out.append(("{" + shown + "}" if view.kind == "wrong" else shown) + newline)
    if in_run:
        out.append("]")
    return "".join(out)


# ---- table --------------------------------------------------------------------------------------

def mask_table(row: Mapping[str, Any], tokenizer: Any) -> Any:
    """One ``pandas.DataFrame`` row per token: ``token``, ``id``, ``label``, ``supervised``.

    ``token`` is the token's text with whitespace made visible; when a character is split over
    several tokens it is shown on each of them as ``你 (1/2)``, ``你 (2/2)``.

    Example:
        >>> mask_table(row, tokenizer).head()  # doctest: +SKIP
    """
    import pandas as pd

    records = []
    for view in token_views(row, tokenizer):
        size = view.end - view.start
        for k, (token, label) in enumerate(zip(view.ids, view.labels)):
            text = view.visible if size == 1 else f"{view.visible} ({k + 1}/{size})"
            records.append({"token": text, "id": token, "label": label, "supervised": label != IGNORE_INDEX})
    return pd.DataFrame.from_records(records, columns=["token", "id", "label", "supervised"])
