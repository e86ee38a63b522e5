"""Simple quality heuristics, each with its threshold and where it fails.

Flags (in this order):

- ``"too_short"``: fewer than ``min_chars`` characters after :func:`~utils.curate.text.normalize_text`
  (default :data:`MIN_CHARS` = 5). Fails on right, short answers ("2+2=?" → "4"): lower it for such data.
- ``"too_long"``: more than ``max_chars`` characters (default :data:`MAX_CHARS` = 10,000, beyond what most
  SFT runs keep). It says nothing about content.
- ``"repetition"`` (after Gopher, Rae et al. 2021, appendix A): the share of lines that repeat an earlier
  line exceeds :data:`DUP_LINE_SHARE` (0.3; texts of three lines or more), or the share of tokens covered
  by a token 10-gram (:data:`DUP_NGRAM`) that occurs more than once exceeds :data:`DUP_NGRAM_SHARE` (0.3;
  texts of 20 tokens or more; a token is a word or a CJK character). Gopher's 10-gram threshold for web
  pages is 0.10; replies that explain a term legitimately repeat it, so ours is looser: it flags 0.3% of
  the real LLaMA-Factory Alpaca demo replies (3 of 1,000 Chinese, 3 of 999 English; 5-grams at 0.3
  flagged 5% of the Chinese ones, mostly fine answers). Lists and tables whose lines legitimately repeat a pattern
  can trip it; a model looping "的的的" or the same sentence over and over does.
- ``"language_mismatch"`` (only when a language is expected: ``lang=`` or a record's instruction): the
  text's language by its CJK token share (:func:`language`: ``"zh"`` when at least
  :data:`ZH_SHARE` = 0.5 of the tokens are CJK characters, ``"en"`` when at most :data:`EN_SHARE` = 0.1
  are, ``None`` in between) differs from the expected one. Fenced code blocks are left out first (code is
  English-looking in any language). Fails on translation tasks (a Chinese request for an English text):
  :func:`quality_flags_record` skips instructions that mention translation. On the real LLaMA-Factory
  Chinese Alpaca demo it flags 19 of 1,000 records: most are real defects (Chinese instructions answered
  in English), a few are fine (a Chinese question about an English phrase, code without a fence).
- ``"refusal"``: a boilerplate phrase of assistants that refuse or talk about themselves
  (:data:`REFUSAL_PATTERNS`, matched in the normalised text, e.g. "As an AI language model",
  "I'm sorry, but I cannot", "作为一个AI语言模型"). Fails on records *about* such phrases, and misses
  refusals in other words.

Example:
    >>> quality_flags("好的")
    ['too_short']
    >>> quality_flags("As an AI language model, I cannot browse the internet.")
    ['refusal']
    >>> quality_flags("This answer is in English.", lang="zh")
    ['language_mismatch']
    >>> quality_flags_record({"instruction": "用一句话介绍北京。", "output": "Beijing is the capital of China."})
    ['language_mismatch']
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from utils.curate.text import CJK, normalize_text, record_sides, tokens

__all__ = ["MIN_CHARS", "MAX_CHARS", "DUP_LINE_SHARE", "DUP_NGRAM_SHARE", "ZH_SHARE", "EN_SHARE",
           "REFUSAL_PATTERNS", "FLAGS", "quality_flags", "quality_issues", "quality_flags_record",
           "quality_issues_record", "language", "repetition"]

MIN_CHARS = 5
MAX_CHARS = 10_000
DUP_LINE_SHARE = 0.3
DUP_NGRAM_SHARE = 0.3
DUP_NGRAM = 10
ZH_SHARE = 0.5
EN_SHARE = 0.1
FLAGS = ("too_short", "too_long", "repetition", "language_mismatch", "refusal")

REFUSAL_PATTERNS = (
    "as an ai language model", "as an ai model", "as a language model", "as an ai assistant",
    "i'm sorry, but i cannot", "i'm sorry, but i can't", "i am sorry, but i cannot", "i cannot fulfill",
    "i can't fulfill", "i cannot assist with", "i can't assist with", "i'm unable to provide",
    "作为一个ai语言模型", "作为一个人工智能语言模型", "作为ai语言模型", "作为一个人工智能", "作为一个ai助手",
    "作为人工智能助手", "我只是一个ai", "我只是一个语言模型", "抱歉,我无法", "抱歉,我不能", "对不起,我无法",
    "很抱歉,我无法", "很抱歉,我不能",
)
"""Phrases matched (as substrings) in :func:`~utils.curate.text.normalize_text` of a text: lower case,
NFKC (a full-width "，" becomes ","), whitespace collapsed."""

_CJK_CHAR = re.compile(f"[{CJK}]")
_FENCE = re.compile(r"```.*?(```|$)", re.S)
_TRANSLATE = re.compile(r"翻译|译成|translat", re.I)


def language(text: str) -> str | None:
    """``"zh"``, ``"en"`` (not CJK: English or another alphabetic language) or ``None`` (mixed, or no
    tokens), from the share of CJK characters among the tokens; fenced code blocks are left out.

    >>> language("用 Python 写一个快速排序"), language("Write a quicksort in Python"), language("OK, ok 好")
    ('zh', 'en', None)
    """
    toks = tokens(_FENCE.sub(" ", text))
    if not toks:
        return None
    share = sum(1 for t in toks if _CJK_CHAR.match(t)) / len(toks)
    return "zh" if share >= ZH_SHARE else "en" if share <= EN_SHARE else None


def repetition(text: str) -> tuple[float, float]:
    """``(duplicate line share, duplicate 10-gram token share)`` of ``text`` (see the module docstring);
    each 0.0 where the text is too short for it.

    >>> repetition("a\\na\\na\\nb")
    (0.5, 0.0)
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line_share = 0.0
    if len(lines) >= 3:
        line_share = sum(c - 1 for c in Counter(lines).values()) / len(lines)
    toks = tokens(text)
    gram_share = 0.0
    if len(toks) >= 20:
        n = DUP_NGRAM
        grams = [tuple(toks[i:i + n]) for i in range(len(toks) - n + 1)]
        counts = Counter(grams)
        covered = [False] * len(toks)
        for i, g in enumerate(grams):
            if counts[g] > 1:
                for k in range(i, i + n):
                    covered[k] = True
        gram_share = sum(covered) / len(toks)
    return line_share, gram_share


def _refusal(text: str) -> str | None:
    norm = normalize_text(text)
    return next((p for p in REFUSAL_PATTERNS if p in norm), None)


def quality_issues(text: str, *, min_chars: int = MIN_CHARS, max_chars: int = MAX_CHARS,
                   lang: str | None = None) -> list[tuple[str, str]]:
    """``(flag, detail)`` for each flag of :data:`FLAGS` the text raises (see the module docstring).

    >>> quality_issues("a\\na\\na\\na", min_chars=1)
    [('repetition', '75% of lines repeat an earlier line (> 30%)')]
    """
    issues: list[tuple[str, str]] = []
    size = len(normalize_text(text))
    if size < min_chars:
        issues.append(("too_short", f"{size} characters (< {min_chars})"))
    if size > max_chars:
        issues.append(("too_long", f"{size} characters (> {max_chars})"))
    line_share, gram_share = repetition(text)
    if line_share > DUP_LINE_SHARE:
        issues.append(("repetition", f"{line_share:.0%} of lines repeat an earlier line (> {DUP_LINE_SHARE:.0%})"))
    elif gram_share > DUP_NGRAM_SHARE:
        issues.append(("repetition", f"{gram_share:.0%} of tokens are in a repeated {DUP_NGRAM}-gram "
                                     f"(> {DUP_NGRAM_SHARE:.0%})"))
    if lang is not None:
        if lang not in ("zh", "en"):
            raise ValueError(f"lang must be 'zh', 'en' or None, got {lang!r}")
        got = language(text)
        if got is not None and got != lang:
            issues.append(("language_mismatch", f"expected {lang}, the text is {got}"))
    phrase = _refusal(text)
    if phrase:
        issues.append(("refusal", f"boilerplate {phrase!r}"))
    return issues


def quality_flags(text: str, *, min_chars: int = MIN_CHARS, max_chars: int = MAX_CHARS,
                  lang: str | None = None) -> list[str]:
    """The flags of :data:`FLAGS` that ``text`` raises, in that order (empty: nothing found).

    >>> quality_flags("The capital of France is Paris.")
    []
    """
    return [flag for flag, _ in quality_issues(text, min_chars=min_chars, max_chars=max_chars, lang=lang)]


def quality_issues_record(record: Any, *, min_chars: int = MIN_CHARS,
                          max_chars: int = MAX_CHARS) -> list[tuple[str, str]]:
    """``(flag, detail)`` of an SFT record (any form :mod:`utils.formats` reads): length, repetition and
    refusal on the replies (all assistant turns); ``too_long`` on prompt and replies together;
    ``language_mismatch`` when the replies' language differs from the instruction's (the user turns';
    skipped when the instruction mentions translation).

    >>> quality_issues_record({"instruction": "Say hi", "output": "hi"})
    [('too_short', '2 characters (< 5)')]
    """
    prompt, reply = record_sides(record)
    issues = [(f, d) for f, d in quality_issues(reply, min_chars=min_chars, max_chars=10 ** 18)]
    total = len(normalize_text(prompt)) + len(normalize_text(reply))
    if total > max_chars:
        issues.insert(1 if issues and issues[0][0] == "too_short" else 0,
                      ("too_long", f"{total} characters in prompt and reply (> {max_chars})"))
    expected = language(prompt) if prompt and not _TRANSLATE.search(prompt) else None
    if expected is not None:
        got = language(reply)
        if got is not None and got != expected:
            at = next((k for k, (f, _) in enumerate(issues) if f == "refusal"), len(issues))
            issues.insert(at, ("language_mismatch", f"instruction is {expected}, reply is {got}"))
    return issues


def quality_flags_record(record: Any, *, min_chars: int = MIN_CHARS, max_chars: int = MAX_CHARS) -> list[str]:
    """The flags of :func:`quality_issues_record`.

    >>> quality_flags_record({"instruction": "Name a colour.", "output": "I'm sorry, but I cannot do that."})
    ['refusal']
    """
    return [flag for flag, _ in quality_issues_record(record, min_chars=min_chars, max_chars=max_chars)]
