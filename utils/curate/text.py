"""The text of a record, normalised, as shingles and as tokens: what every curation filter compares.

- :func:`record_text` -- one string per record, whatever its form (read with :mod:`utils.formats`).
- :func:`normalize_text` -- Unicode NFKC (full-width ``ＡＢＣ１２３，`` become ``ABC123,``), lower case,
  runs of whitespace collapsed to one space, stripped.
- :func:`shingles` -- character n-grams of the normalised text. Character shingles need no word
  segmentation, so they work the same for Chinese (which has no spaces) and English (where a 5-gram
  spans parts of one or two words); one choice for mixed data.
- :func:`tokens` -- words and CJK characters: a token is a run of letters / digits (``\\w``) outside the
  CJK ranges, or a single CJK character (:data:`CJK`); punctuation and spaces are dropped. The unit of
  ROUGE-L (:mod:`utils.curate.novelty`) and of contamination n-grams (:mod:`utils.curate.contamination`).

Example:
    >>> record_text({"instruction": "Translate", "input": "你好", "output": "Hello"})
    'Translate\\n你好\\nHello'
    >>> normalize_text("  Hello,\\n\\n  ＷＯＲＬＤ！ ")
    'hello, world!'
    >>> sorted(shingles("今天天气好", n=3))
    ['今天天', '天天气', '天气好']
    >>> tokens("GPT-3 用了 13-gram 检查")
    ['gpt', '3', '用', '了', '13', 'gram', '检', '查']
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any, Mapping

__all__ = ["CJK", "record_text", "record_sides", "normalize_text", "shingles", "tokens", "cjk_share"]

CJK = "\u2e80-\u2fdf\u3040-\u30ff\u3100-\u312f\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
"""Character ranges counted as CJK (one token each): radicals, kana, bopomofo, CJK unified ideographs
(with extension A), Hangul syllables, compatibility ideographs. Used in a regex character class."""

_CJK_RE = re.compile(f"[{CJK}]")
_TOKEN_RE = re.compile(f"[{CJK}]|[^\\W{CJK}]+")
_SPACE_RE = re.compile(r"\s+")


def _message_text(message: Mapping[str, Any]) -> str:
    parts = [message.get("content") or ""]
    for call in message.get("tool_calls") or ():
        function = call.get("function", call)
        parts.append(f"{function.get('name', '')}({json.dumps(function.get('arguments', {}), ensure_ascii=False, sort_keys=True)})")
    if message.get("reasoning_content"):
        parts.insert(0, message["reasoning_content"])
    return "\n".join(p for p in parts if p)


def record_text(record: Any, *, system: bool = False) -> str:
    """The text of one record for comparison: its parts joined with ``"\\n"``.

    - a string: itself;
    - Alpaca (``instruction``, ``input``, ``output``): the three, empty ones left out;
    - a conversation (ShareGPT ``conversations``, OpenAI ``messages``, Firefly, TRL ``prompt`` +
      ``completion``; anything :func:`utils.formats.normalize` reads as SFT): every turn's content in
      order (tool calls as ``name({arguments})``);
    - a Stanford seed task: the instruction and every instance;
    - preference / KTO records: the prompt's turns, then the ``chosen``, ``rejected`` / ``completion`` replies;
    - pretraining text ``{"text": ...}``: the text.

    A system message is left out unless ``system=True``: many data sets share one long system prompt,
    which would make every short record look like a near-duplicate of every other.

    Invalid records raise :class:`utils.formats.RecordError` (with the field), as the readers do.

    >>> record_text({"conversations": [{"from": "system", "value": "Be brief."},
    ...     {"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]})
    'Hi\\nHello!'
    >>> record_text({"prompt": "2+2?", "completion": "4"})
    '2+2?\\n4'
    """
    if isinstance(record, str):
        return record
    from utils.formats import check_record, detect_kind

    kind = detect_kind(record)
    fmt, out = check_record(record, kind)
    pieces: list[str] = []
    for rec in out:
        if "instruction" in rec:
            pieces += [rec["instruction"], rec["input"], rec["output"]]
        elif "text" in rec:
            pieces.append(rec["text"])
        else:
            for key in ("messages", "prompt", "chosen", "rejected", "completion"):
                for m in rec.get(key, ()):
                    if m.get("role") != "system" or system:
                        pieces.append(_message_text(m))
    if fmt == "alpaca" and system and isinstance(record, Mapping) and record.get("system"):
        pieces.insert(0, record["system"])
    return "\n".join(p for p in pieces if p)


def record_sides(record: Any) -> tuple[str, str]:
    """``(prompt, reply)`` texts of a record: the user turns and the assistant turns, each joined with
    ``"\\n"`` (Alpaca: instruction and input / output; a seed task: every instance; preference: the
    prompt / the chosen answer -- a rejected answer is meant to be bad, quality checks leave it alone;
    KTO: the prompt / the completion; pretraining text and plain strings: ``("", text)``). System messages and tool
    results are in neither.

    >>> record_sides({"instruction": "Translate", "input": "你好", "output": "Hello"})
    ('Translate\\n你好', 'Hello')
    """
    if isinstance(record, str):
        return "", record
    from utils.formats import check_record, detect_kind

    _, out = check_record(record, detect_kind(record))
    prompt: list[str] = []
    reply: list[str] = []
    for rec in out:
        if "instruction" in rec:
            prompt += [rec["instruction"], rec["input"]]
            reply.append(rec["output"])
        elif "text" in rec:
            reply.append(rec["text"])
        else:
            for key in ("messages", "prompt", "chosen", "completion"):  # a rejected answer is meant to be bad
                for m in rec.get(key, ()):
                    if m.get("role") == "user":
                        prompt.append(_message_text(m))
                    elif m.get("role") == "assistant":
                        reply.append(_message_text(m))
    return "\n".join(p for p in prompt if p), "\n".join(r for r in reply if r)


def normalize_text(text: str) -> str:
    """NFKC, lower case, whitespace runs collapsed to one space, stripped (see the module docstring).

    >>> normalize_text("A  B\\tC")
    'a b c'
    """
    return _SPACE_RE.sub(" ", unicodedata.normalize("NFKC", text).lower()).strip()


def shingles(text: str, n: int = 5) -> set[str]:
    """Character ``n``-grams of :func:`normalize_text` ``(text)``, as a set.

    Character shingles work for Chinese and English alike (no word segmentation needed). A text
    shorter than ``n`` characters is one shingle (itself); an empty text has none.

    >>> sorted(shingles("Hello  World", n=5))
    [' worl', 'ello ', 'hello', 'llo w', 'lo wo', 'o wor', 'world']
    >>> shingles("hi", n=5)
    {'hi'}
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    norm = normalize_text(text)
    if len(norm) <= n:
        return {norm} if norm else set()
    return {norm[i:i + n] for i in range(len(norm) - n + 1)}


def tokens(text: str) -> list[str]:
    """Words and CJK characters of ``text`` (NFKC, lower case), punctuation dropped.

    A word is a run of letters, digits or ``_`` outside the CJK ranges; each CJK character is a token.

    >>> tokens("Self-Instruct 生成了 52K 条")
    ['self', 'instruct', '生', '成', '了', '52k', '条']
    """
    return _TOKEN_RE.findall(unicodedata.normalize("NFKC", text).lower())


def cjk_share(text: str) -> float:
    """Share of CJK characters among the letters of ``text`` (``\\w`` characters, digits excluded);
    0.0 for a text without letters.

    >>> cjk_share("你好 world")
    0.2857142857142857
    """
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return 0.0
    return sum(1 for ch in letters if _CJK_RE.match(ch)) / len(letters)
