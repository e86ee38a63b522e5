"""Decontamination: training texts that share a run of n tokens with an evaluation text.

The rule of the GPT-3 paper (Brown et al., 2020, appendix C; later reports such as Llama 2's use the same
idea on tokens): a training text is contaminated by an evaluation text when both contain the same
``n``-gram. Here a token is an English word or a single CJK character (:func:`utils.curate.text.tokens`:
NFKC, lower case, punctuation dropped), so one rule covers Chinese (n characters) and English (n words).

Default ``n = 10``. GPT-3 used 13 words on long benchmark documents; our evaluation items are short
questions and answers (chapter 06's held-out questions have 5–11 tokens, with the answer 9–21), which
13-grams would mostly miss. Shorter n-grams match the stock phrases of templated data: chapter 06's
training records and its held-out questions + answers are disjoint by construction, yet with ``n = 8``
200 of the 504 training records share an 8-gram with them (``是什么颜色的你好``, the seam between the
question template and the answer template); with ``n = 10`` (and 13) none does. A leaked question is
still caught: an evaluation text with fewer than ``n`` tokens (and at least ``min_tokens``) is matched as
a whole -- a training text contaminated by it contains all its tokens in a row. Evaluation texts with
fewer than ``min_tokens`` tokens are never matched (they would be everywhere). Read the shared n-gram
in each hit before deleting: templated data can still collide.

Example:
    >>> evals = ["What is the capital of Greece?", "法国的首都是哪座城市？"]
    >>> train = ["Q: what is the capital of greece A: Athens", "请介绍一下法国的首都是哪座城市以及它的历史", "Name a fruit."]
    >>> [(h.index, h.eval_index, h.ngram) for h in find_contamination(train, evals)]
    [(0, 0, 'what is the capital of greece'), (1, 1, '法国的首都是哪座城市')]
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from utils.curate.text import CJK, tokens

__all__ = ["Hit", "find_contamination", "DEFAULT_N"]

DEFAULT_N = 10
"""Default n-gram length in tokens (see the module docstring for why)."""

_CJK_CHAR = re.compile(f"[{CJK}]")


def _join(toks: Sequence[str]) -> str:
    out = ""
    for k, tok in enumerate(toks):
        if k and not (_CJK_CHAR.match(tok) or _CJK_CHAR.match(toks[k - 1])):
            out += " "
        out += tok
    return out


@dataclass(frozen=True)
class Hit:
    """A training text (``index``) that shares ``ngram`` (its first shared n-gram, tokens joined) with
    evaluation text ``eval_index``; ``count`` distinct shared n-grams in all."""

    index: int
    eval_index: int
    ngram: str
    count: int = 1


def find_contamination(texts: Iterable[str], eval_texts: Sequence[str], n: int = DEFAULT_N, *,
                       min_tokens: int = 4) -> list[Hit]:
    """One :class:`Hit` per (training text, evaluation text) pair sharing an ``n``-gram of tokens, in
    order of ``index`` then ``eval_index`` (see the module docstring for tokens and short texts).

    >>> find_contamination(["a b c d e f g h i"], ["x b c d e f g h i y"], n=8)[0].count
    1
    >>> find_contamination(["a b c d e f g h i"], ["x b c d e f g h i y"])  # n=10: no shared 10-gram
    []
    >>> find_contamination(["clean text"], ["x b c d e f g h i y"])
    []
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    index: dict[tuple[str, ...], list[int]] = {}
    lengths: set[int] = set()
    for e, text in enumerate(eval_texts):
        toks = tokens(text)
        if len(toks) < min_tokens:
            continue
        k = min(n, len(toks))
        lengths.add(k)
        for start in range(len(toks) - k + 1):
            grams = index.setdefault(tuple(toks[start:start + k]), [])
            if not grams or grams[-1] != e:
                grams.append(e)
    hits: list[Hit] = []
    for i, text in enumerate(texts):
        toks = tokens(text)
        found: dict[int, list] = {}
        for k in sorted(lengths, reverse=True):
            for start in range(len(toks) - k + 1):
                gram = tuple(toks[start:start + k])
                for e in index.get(gram, ()):
                    if e in found:
                        if gram not in found[e][1]:
                            found[e][1].add(gram)
                    else:
                        found[e] = [gram, {gram}]
        hits += [Hit(i, e, _join(first), len(grams)) for e, (first, grams) in sorted(found.items())]
    return hits
