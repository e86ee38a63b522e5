"""Can one token of a tokenizer cover both sides of a cut between two characters?

:mod:`utils.encode` checks every prompt/reply boundary for a *boundary merge* (whole-text tokenization putting
one token across the cut) by tokenizing a small window around it. For byte-level BPE (GPT-2, Qwen, Llama 3,
the course's tiny tokenizer) most cuts can be decided without tokenizing anything: a token across the cut
covers the last byte before it and the first byte after it, so its string in the vocabulary contains those two
bytes side by side. If no string of the vocabulary (nor any added token's text) contains that pair, no
tokenization of any text can put a token across such a cut. :class:`PairCheck` answers exactly that, per
character pair, from the vocabulary alone: a table of the 65,536 byte pairs, built once per tokenizer in one
NumPy pass over the vocabulary (0.02-0.1 s for the reference tokenizers), instead of a substring search of
the whole vocabulary per new pair (which cost 0.5 s on a first `prepare` of 20,000 Chinese and English
Alpaca records with Qwen2).

It answers "may span" (so: tokenize the window) whenever the argument does not hold: models other than BPE
over the byte-level alphabet, BPE with word prefixes/suffixes or dropout, pre-tokenizers that remove characters
(then the characters a token joins need not be neighbours in the text), normalizers other than none / NFC,
and with NFC any pair with a character outside :data:`NFC_INERT` (NFC can compose a character with the one
before it: ``e`` + ``\\u0301`` becomes ``é``; ASCII and CJK characters never compose with a neighbour).
tests/test_spans.py checks it against whole-text tokenization on real data for every reference tokenizer.

>>> from utils.models import load_tokenizer
>>> check = PairCheck(load_tokenizer().backend_tokenizer)
>>> check.may_span(":", " ")  # no token of the tiny tokenizer contains ":" followed by a space
False
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["PairCheck", "NFC_INERT", "nfc_inert", "keeps_every_character"]


_KEEPING_PRETOKENIZERS = {"ByteLevel", "Metaspace", "Digits", "Split", "Punctuation", "Sequence", "UnicodeScripts"}


def keeps_every_character(pre: Any) -> bool:
    """Does the pre-tokenizer (its JSON spec, None for none) split text without removing a character?
    (Not ``Whitespace``/``WhitespaceSplit``, nor ``Split``/``Punctuation`` with ``behavior="removed"``.)"""
    if pre is None:
        return True
    kind = pre.get("type")
    if kind == "Sequence":
        return all(keeps_every_character(q) for q in pre.get("pretokenizers", []))
    if kind in ("Split", "Punctuation") and str(pre.get("behavior", "")).lower() == "removed":
        return False
    return kind in _KEEPING_PRETOKENIZERS


def _has_byte_level(pre: Any) -> bool:
    if not isinstance(pre, dict):
        return False
    if pre.get("type") == "Sequence":
        return any(_has_byte_level(p) for p in pre.get("pretokenizers", []))
    return pre.get("type") == "ByteLevel"


def _normalizer_kind(norm: Any) -> str | None:
    """``"none"``, ``"nfc"`` or None (another normalizer: no shortcut)."""
    if norm is None:
        return "none"
    kind = norm.get("type")
    if kind == "NFC":
        return "nfc"
    if kind == "Sequence":
        kinds = {_normalizer_kind(n) for n in norm.get("normalizers", [])}
        if None in kinds:
            return None
        return "nfc" if "nfc" in kinds else "none"
    return None


# characters NFC leaves alone and never composes with a neighbour (canonical combining class 0, no canonical
# decomposition, not the second half of one): ASCII, CJK punctuation (without the tone marks U+302A-U+302F),
# CJK ideographs, full-width forms; tests/test_spans.py checks every one against the Unicode database
NFC_INERT = ((0x0000, 0x007F), (0x3000, 0x3029), (0x3030, 0x303F), (0x4E00, 0x9FFF), (0xFF00, 0xFFEF))


def nfc_inert(ch: str) -> bool:
    """Is ``ch`` in :data:`NFC_INERT` (so NFC of a text never changes at a cut next to it)?"""
    o = ord(ch)
    return o < 0x80 or any(lo <= o <= hi for lo, hi in NFC_INERT[1:])


_ALPHABET: dict[str, int] = {}


def byte_level_alphabet() -> dict[str, int]:
    """``{character: byte}``: the byte-level alphabet (GPT-2's ``bytes_to_unicode``) as the ``tokenizers``
    ByteLevel pre-tokenizer itself maps bytes, read from it once on a text holding every byte that UTF-8
    text can contain (0xC0, 0xC1 and 0xF5-0xFF never occur in UTF-8, so they are not in the result)."""
    if not _ALPHABET:
        from tokenizers.pre_tokenizers import ByteLevel

        # every 1- and 2-byte character, then one character per lead byte of 3 and 4 bytes (0xE0-0xEF, 0xF0-0xF4)
        points = [*range(0x800), 0x800, *range(0x1000, 0x10000, 0x1000), 0x10000, 0x40000, 0x80000, 0xC0000, 0x100000]
        text = "".join(map(chr, points))
        mapped = "".join(piece for piece, _ in ByteLevel(add_prefix_space=False, use_regex=False)
                         .pre_tokenize_str(text))
        raw = text.encode("utf-8")
        if len(mapped) != len(raw):  # pragma: no cover - one alphabet character per byte is ByteLevel's design
            raise RuntimeError("the ByteLevel pre-tokenizer did not map one character per byte")
        _ALPHABET.update(zip(mapped, raw))
    return _ALPHABET


class PairCheck:
    """``may_span(left, right)``: can a token cover the end of ``left`` and the start of ``right``?

    ``spec`` is the backend's parsed JSON when the caller has it already (else read from ``backend``).
    """

    def __init__(self, backend: Any, spec: dict | None = None):
        self.backend = backend
        self._cache: dict[str, bool] = {}
        self._added = ""
        if spec is None:
            try:
                spec = json.loads(backend.to_str())
            except Exception:  # pragma: no cover - a backend that cannot be serialised
                spec = {}
        model = spec.get("model") or {}
        self.norm = _normalizer_kind(spec.get("normalizer")) if spec else None
        self.usable = (model.get("type") == "BPE" and not model.get("dropout")
                       and not model.get("continuing_subword_prefix") and not model.get("end_of_word_suffix")
                       and not model.get("byte_fallback") and _has_byte_level(spec.get("pre_tokenizer"))
                       and keeps_every_character(spec.get("pre_tokenizer")) and self.norm is not None)
        if self.usable:
            self._added = "\x00".join(t.get("content", "") for t in spec.get("added_tokens") or [])
        self._table: Any = None

    def _pair_table(self) -> Any:
        """65,536 booleans: ``table[x << 8 | y]`` says whether some vocabulary string holds the alphabet
        characters of bytes ``x`` and ``y`` side by side. Built once from the vocabulary (a NumPy pass over
        all its strings, NUL-separated: NUL is not in the byte-level alphabet, so no pair spans two strings)."""
        if self._table is None:
            import numpy as np

            byte_of = byte_level_alphabet()
            inverse = np.full(max(map(ord, byte_of)) + 1, -1, dtype=np.int32)
            for ch, byte in byte_of.items():
                inverse[ord(ch)] = byte
            pool = "\x00".join(self.backend.get_vocab(with_added_tokens=False))
            points = np.frombuffer(pool.encode("utf-32-le"), dtype=np.uint32)
            codes = np.where(points < len(inverse), inverse[np.minimum(points, len(inverse) - 1)], -1)
            first, second = codes[:-1], codes[1:]
            both = (first >= 0) & (second >= 0)
            table = np.zeros(1 << 16, dtype=bool)
            table[(first[both] << 8) | second[both]] = True
            self._table = table
        return self._table

    def may_span(self, left: str, right: str) -> bool:
        """False only when no token can cover the last character of ``left`` and the first of ``right``."""
        if not left or not right:
            return False  # nothing on one side: no token can be across the cut
        if not self.usable:
            return True
        a, b = left[-1], right[0]
        if self.norm == "nfc" and not (nfc_inert(a) and nfc_inert(b)):
            return True
        key = a + b
        found = self._cache.get(key)
        if found is None:
            pair = a.encode("utf-8")[-1] << 8 | b.encode("utf-8")[0]  # the bytes either side of the cut
            found = bool(self._pair_table()[pair]) or key in self._added
            self._cache[key] = found
        return found
