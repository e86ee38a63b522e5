"""Tokenization with prompt masking: ``{input_ids, attention_mask, labels}`` that keep the data contract.

:func:`encode` turns one example into a training row, :func:`encode_dataset` does the same over a
``datasets.Dataset`` (batched ``map``, fast tokenizers, optional ``num_proc``) and counts what happened
(:class:`EncodeResult`). :func:`encode_prompt` gives the ids a model is given at inference time.

How a row is built (the data contract in the README's 设计与数据契约, rules 1-7):

1. The template's :func:`utils.templates.segments` split the rendered text into untrained pieces (system,
   user, template text) and trained replies (each ending with the tokenizer's EOS text).
2. The first piece is tokenized as the prompt is at inference time (``add_special_tokens`` as the
   template says: the tokenizer's BOS for text templates, none for ``chat_template`` whose Jinja text
   writes it). Every later piece is tokenized **on its own, as a continuation**: prefixed with the EOS
   text (a special token, so the tokenizer starts a fresh section there, exactly as it does after a
   reply's EOS in context) whose id is then dropped. This is what keeps SentencePiece tokenizers (LLaMA,
   Mistral) from adding their leading "▁" to a reply (``"Hi"`` alone is ``▁Hi``, after ``:`` it is
   ``Hi``); for byte-level BPE (GPT-2, Qwen2) it changes nothing. The method is checked per tokenizer
   on probe strings against whole-text tokenization (:func:`continuation_method`). Where probes show that a
   text after the EOS gets exactly its tokens alone (byte-level BPE), many pieces share one tokenizer input,
   each after an EOS, and the ids are cut back at the EOS ids (:meth:`_Plan._encode_joined`).
   The template's constant opening (Alpaca's header up to ``### Instruction:\n``, Vicuna's system text,
   a chat template's default system turn) is tokenized once per tokenizer and reused: the first piece
   is then those ids plus its remainder tokenized as a continuation, unless a look at a small window
   around the cut shows that whole-text tokenization puts a token across it (then the whole piece is
   tokenized). This is why encoding with masks is as fast as tokenizing the bare texts. Most such windows
   (and the boundary-merge windows of rule 3) are never tokenized: when no string of the vocabulary holds
   the two characters around the cut, no token can be across it (:class:`utils.spans.PairCheck`).
3. ``labels`` equal ``input_ids`` on reply pieces and -100 elsewhere (not shifted: the model shifts).
   So the ids before each reply are exactly ``tokenizer(render_prompt(history))`` (rule 3) and decoding a
   reply's ids gives its text back (rule 6). Where tokenizing the whole text would instead merge the
   prompt's last characters with the reply's first ones into one token (Alpaca's ``### Response:``
   followed directly by ``"`` merges on GPT-2), the row still uses the separate tokens -- the ones
   inference produces -- and the merge is counted (``boundary_merges``). When that happens at a reply
   that is *not* the last one of its row (Qwen2's chat template, ``assistant\n`` followed by a reply that
   starts with a newline), inference for the later replies re-tokenizes the history with the merged
   token, so the row is split after that reply: the next row starts with the whole history up to the
   next reply tokenized as one prompt (masked) -- rule 3 then holds for **every** reply, and each reply is
   supervised in exactly one row (:func:`encode_rows`).
4. ``attention_mask`` comes from the length (never from comparing ids with the pad id), so EOS stays
   supervised when ``pad_token == eos_token``. No text of a record may contain special-token text (an
   ``</s>`` inside a reply would be a second EOS, an ``<|im_start|>`` in a user turn a fake turn), nor
   the text of a non-special added token that strips the whitespace around it (``lstrip``/``rstrip``: the
   text would not decode back). Non-special added tokens that keep whitespace (Qwen's ``<think>``,
   ``<tool_call>``) are ordinary text. Replies end with the template's end-of-turn marker (the EOS for
   text templates, e.g. ``<|im_end|>`` or ``<|eot_id|>`` for chat templates, see :mod:`utils.templates`).
   Where a chat template changes a reply's text (Llama 3 and Mistral trim its whitespace), the row
   supervises what the template renders -- what inference shows -- and ``trimmed_replies`` counts it.
5. Over-long rows: ``truncation="drop"`` (default) returns None; ``"truncate"`` keeps the prompt whole
   and cuts the end of the last reply (a cut reply loses its EOS; if only untrained template text after
   the last reply is cut, the reply keeps it). A row whose prompt (everything before the last reply)
   does not leave room for one reply token is dropped under both policies. A row with one reply that
   is certainly over-long is dropped *before* it is tokenized (a 50 MB text would take ~144x its size
   in the tokenizer): ``n`` characters give at least ``ceil(n / D)`` tokens, ``D`` from
   :func:`chars_per_token_bound` (512 for Qwen2.5); the same rows and counts as tokenizing it.
6. ``messages`` and ``conversations`` records become the same conversation before rendering (rule 7).
7. ``chat_template_kwargs`` (e.g. ``{"enable_thinking": False}``) are passed to every rendering of
   ``chat_template`` (:func:`encode`, :func:`encode_rows`, :func:`encode_dataset`, :func:`encode_prompt`);
   use the same at inference. A record can give several rows (see rule 3 and Qwen3 in
   :mod:`utils.templates`): :func:`encode_rows` and :func:`encode_dataset` return them all, :func:`encode`
   refuses such a record with that reason.

Records a template cannot encode (a multi-turn conversation for ``alpaca``, special-token text, a chat
template that cannot express the conversation) raise :class:`EncodeError` (a ``ValueError`` with
``index``, ``field`` and ``reason``); ``on_error="skip"`` in :func:`encode_batch` / :func:`encode_dataset`
skips and collects them instead (``invalid``).

Example:
    >>> from utils.models import load_tokenizer
    >>> tok = load_tokenizer()
    >>> row = encode({"instruction": "Hi", "output": "Hello"}, tok, "alpaca")
    >>> sorted(row), row["labels"][-1] == tok.eos_token_id
    (['attention_mask', 'input_ids', 'labels'], True)
"""

from __future__ import annotations

import atexit
import hashlib
import json
import shutil
import tempfile
import weakref
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Mapping, Sequence

from utils.formats import RecordError, check_record, detect_kind
from utils.spans import PairCheck, keeps_every_character
from utils.templates import Segment, Template, TemplateLike, get_template, vocab_key

__all__ = ["IGNORE_INDEX", "EncodeError", "EncodeResult", "encode", "encode_rows", "encode_prompt", "encode_batch",
           "encode_dataset", "records_to_dataset", "continuation_method", "tokenizer_fingerprint",
           "chars_per_token_bound", "LocationLog", "check_options"]

RECORD_JSON = "_record_json"
"""Column of :func:`records_to_dataset`'s datasets: one record as JSON text per row."""

IGNORE_INDEX = -100
"""Label of positions the loss ignores (PyTorch ``CrossEntropyLoss(ignore_index=-100)``)."""

TRUNCATION_POLICIES = ("drop", "truncate")
_WINDOW = 10  # chars each side of a prompt/reply boundary checked for merges (same counts as 64 on the real data)
_JOIN_CHUNK = 256  # windows (or pieces) per tokenizer input in _Plan.crossings (_Plan._encode_joined)
_JOIN_CHARS = 4096  # about the characters per input in _Plan._encode_joined (longer inputs were slower)
# windows as the encoder builds them (template text + a reply's start): letters, spaces at either end, newlines,
# CJK, emoji, digits, punctuation, an empty side
_JOIN_PROBES = ("ASSISTANT: Hello", "ASSISTANT:", " Hello", "Hello ", "  two  ", "\n\nHi", "x\n", "\n",
                "### Response:\n\"q", "assistant\n你好。", "好！😀 ok", "12 34", "a\tb", "é ü", " ", "end\n\n")


# ----------------------------------------------------------------------------------------------------
# Per-tokenizer facts, computed once


class _Plan:
    """What encoding needs to know about a tokenizer (cached per tokenizer object)."""

    def __init__(self, tokenizer: Any):
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise TypeError(f"{type(tokenizer).__name__} is not a fast tokenizer; load it with "
                            "AutoTokenizer.from_pretrained(..., use_fast=True)")
        if backend.truncation is not None or backend.padding is not None:
            # a backend left with truncation/padding on would silently cut or pad pieces: use a clean copy
            from tokenizers import Tokenizer

            backend = Tokenizer.from_str(backend.to_str())
            backend.no_truncation()
            backend.no_padding()
        self.backend = backend
        self.eos = tokenizer.eos_token
        if not self.eos or tokenizer.eos_token_id is None:
            raise ValueError(f"tokenizer {tokenizer.name_or_path!r} has no eos_token; set tokenizer.eos_token")
        self.eos_id = tokenizer.eos_token_id
        added = tokenizer.added_tokens_decoder.get(self.eos_id)
        self.eos_strips = bool(added is not None and (added.lstrip or added.rstrip))
        anchor = backend.encode(self.eos, add_special_tokens=False).ids
        if anchor != [self.eos_id]:
            raise ValueError(f"tokenizer {tokenizer.name_or_path!r}: eos_token {self.eos!r} does not tokenize to "
                             f"its id {self.eos_id} (got {anchor}); it must be a special (added) token")
        self.bos_id = tokenizer.bos_token_id
        probe = backend.encode("a", add_special_tokens=True).ids
        plain = backend.encode("a", add_special_tokens=False).ids
        if probe[-len(plain):] != plain:
            raise ValueError(f"tokenizer {tokenizer.name_or_path!r} adds special tokens after the text "
                             f"({probe} vs {plain}); set add_eos_token=False: replies get their EOS from the template")
        self.specials = sorted({t for t in tokenizer.all_special_tokens if t} |
                               {t.content for t in tokenizer.added_tokens_decoder.values() if t.special}, key=len)
        self.stripping = sorted({t.content for t in tokenizer.added_tokens_decoder.values()
                                 if not t.special and (t.lstrip or t.rstrip)} - set(self.specials), key=len)
        # JSON text of a record shows these tokens verbatim (none holds a character JSON escapes)
        self.json_safe = all(t.isprintable() and '"' not in t and "\\" not in t for t in self.specials + self.stripping)
        self.method = continuation_method(tokenizer, backend)
        self._prefixes: dict = {}
        self._chars_per_token: Any = False  # computed on first use (parses the tokenizer's JSON once)
        self._joinable: bool | None = None
        self._pairs: PairCheck | None = None
        self._json: str | None = None
        self._spec: dict | None = None

    @property
    def json_text(self) -> str:
        """The backend's JSON (``Tokenizer.to_str``), serialised once."""
        if self._json is None:
            self._json = self.backend.to_str()
        return self._json

    @property
    def spec(self) -> dict:
        """:attr:`json_text` parsed once (about 0.3 s for Qwen2.5's 151k tokens, measured: PairCheck and
        :func:`chars_per_token_bound` share it); ``{}`` if the backend cannot be serialised."""
        if self._spec is None:
            try:
                self._spec = json.loads(self.json_text)
            except Exception:  # pragma: no cover - a backend that cannot be serialised
                self._spec = {}
        return self._spec

    @property
    def pairs(self) -> PairCheck:
        """Which character pairs a token of this tokenizer can hold (:class:`utils.spans.PairCheck`)."""
        if self._pairs is None:
            self._pairs = PairCheck(self.backend, self.spec)
        return self._pairs

    @property
    def chars_per_token(self) -> int | None:
        """An upper bound on the characters one token covers (:func:`chars_per_token_bound`), or None."""
        if self._chars_per_token is False:
            self._chars_per_token = chars_per_token_bound(self.backend, self.spec)
        return self._chars_per_token

    def prefixes(self, tmpl: Template, tokenizer: Any) -> list[tuple[str, list[int]]]:
        """``(text, ids)`` of the template's constant prompt openings, longest first (see :func:`_prefixes`)."""
        key = repr(tmpl)
        found = self._prefixes.get(key)
        if found is None:
            found = self._prefixes[key] = _prefixes(tmpl, tokenizer, self)
        return found

    def crossings(self, windows: list[str], cuts: list[int]) -> list[bool]:
        """Per window: does its tokenization put a token across character ``cut`` (``a < cut < b``)?

        The windows (20 characters each, one per cut) are tokenized in chunks of :data:`_JOIN_CHUNK`, each
        window after the EOS (a special token: the tokenizer splits there and tokenizes each side on its own),
        and the tokens are read back from the offsets in one pass, instead of one ``Encoding`` and one offsets
        list per window (``vicuna`` multi-turn ``encode_batch`` 1.09-1.39x faster in two loaded A/B runs,
        ``chat_template`` unchanged: see benchmarks/README.md). Used only where
        probes show that a window after the EOS gets exactly the tokens it gets alone (:meth:`joinable`);
        otherwise, and for the Metaspace ``"first"`` scheme or an EOS that strips whitespace, one by one.
        """
        if not self.joinable:
            return [any(a < cut < b for a, b in enc.offsets)
                    for enc, cut in zip(self.backend.encode_batch(windows, add_special_tokens=False), cuts)]
        eos, step, out = self.eos, len(self.eos), []
        texts, marks = [], []  # per chunk: the joined text; the global cut of each window in it
        for at in range(0, len(windows), _JOIN_CHUNK):
            chunk, pos, where = windows[at:at + _JOIN_CHUNK], 0, []
            for w, cut in zip(chunk, cuts[at:at + _JOIN_CHUNK]):
                where.append(pos + step + cut)
                pos += step + len(w)
            texts.append(eos + eos.join(chunk))
            marks.append(where)
        for enc, where in zip(self.backend.encode_batch(texts, add_special_tokens=False), marks):
            offsets, t, n = enc.offsets, 0, len(enc.offsets)
            for cut in where:  # cuts and offsets both increase: one pass
                while t < n and offsets[t][1] <= cut:
                    t += 1
                out.append(t < n and offsets[t][0] < cut)
        return out

    @property
    def joinable(self) -> bool:
        """Does every probe window tokenize after the EOS exactly as alone (same ids, same offsets)?"""
        if self._joinable is None:
            eos, step, ok, tokens = self.eos, len(self.eos), True, 0
            for w in _JOIN_PROBES:
                alone = self.backend.encode(w, add_special_tokens=False)
                after = self.backend.encode(eos + w, add_special_tokens=False)
                shifted = [(a - step, b - step) for a, b in after.offsets[1:]]
                ok = ok and after.ids[:1] == [self.eos_id] and after.ids[1:] == alone.ids and shifted == alone.offsets
                tokens += 1 + len(alone.ids)
            joined = self.backend.encode(eos + eos.join(_JOIN_PROBES), add_special_tokens=False)
            self._joinable = ok and len(joined.ids) == tokens and not self.eos_strips
        return self._joinable

    def encode_first(self, texts: list[str], add_special_tokens: bool) -> list[list[int]]:
        return [e.ids for e in self.backend.encode_batch_fast(texts, add_special_tokens=add_special_tokens)]

    def encode_cont(self, texts: list[str], method: str | None = None) -> list[list[int]]:
        """Each text tokenized on its own as a continuation (see the module docstring, step 2)."""
        if method is None and self.joinable:
            return self._encode_joined(texts)
        if (method or self.method) == "plain":
            return [e.ids for e in self.backend.encode_batch_fast(texts, add_special_tokens=False)]
        eos = self.eos
        return [e.ids[1:] for e in self.backend.encode_batch_fast([eos + t for t in texts], add_special_tokens=False)]

    def _encode_joined(self, texts: list[str]) -> list[list[int]]:
        """:meth:`encode_cont` with several texts per tokenizer input (:data:`_JOIN_CHUNK`, :data:`_JOIN_CHARS`),
        each after the EOS (where :meth:`joinable` shows a text after the EOS gets exactly its tokens alone:
        fewer, longer inputs are cheaper for the tokenizer, see benchmarks/README.md). The ids are cut back
        into texts at the EOS ids: text k's ids end before the EOS that follows it, found by counting the EOS
        texts inside the texts before it; a chunk whose EOS count disagrees (an EOS text swallowed by a longer added
        token) is tokenized one text at a time."""
        eos, eos_id, out = self.eos, self.eos_id, []
        chunks, chunk, size = [], [], 0
        for t in texts:  # at most _JOIN_CHUNK texts and about _JOIN_CHARS characters per input
            if chunk and (len(chunk) == _JOIN_CHUNK or size + len(t) > _JOIN_CHARS):
                chunks.append(chunk)
                chunk, size = [], 0
            chunk.append(t)
            size += len(t)
        if chunk:
            chunks.append(chunk)
        encoded = self.backend.encode_batch_fast([eos + eos.join(c) for c in chunks], add_special_tokens=False)
        for chunk, enc in zip(chunks, encoded):
            ids, inner = enc.ids, [t.count(eos) for t in chunk]
            if ids.count(eos_id) != len(chunk) + sum(inner):
                out += self.encode_cont(chunk, "anchor")
                continue
            start, last = 1, len(chunk) - 1  # after the chunk's first EOS
            for j, k in enumerate(inner):
                end = start
                for _ in range(k):  # the EOS ids of text j's own EOS texts
                    end = ids.index(eos_id, end) + 1
                end = ids.index(eos_id, end) if j < last else len(ids)
                out.append(ids[start:end])
                start = end + 1
        return out


_PROBE_USER = "Probe"
_PREFIX_PROBES = ({"instruction": _PROBE_USER, "input": "", "output": "o"},
                  {"instruction": _PROBE_USER, "input": "i", "output": "o"},
                  {"messages": [{"role": "user", "content": _PROBE_USER}, {"role": "assistant", "content": "o"}]})


def _prefixes(tmpl: Template, tokenizer: Any, plan: "_Plan") -> list[tuple[str, list[int]]]:
    """The text every prompt of ``tmpl`` starts with before the user's words (e.g. Alpaca's header up to
    ``### Instruction:\n``, Vicuna's system text, a chat template's default system turn), one per prompt
    variant, cut at a token boundary, with its ids. :func:`encode_batch` tokenizes these once instead of
    once per record. Found by rendering probe records; ``[]`` when the template has no such text.
    """
    found: dict[str, list[int]] = {}
    for probe in _PREFIX_PROBES:
        try:
            first = tmpl.segments(probe, tokenizer)[0].text
        except (ValueError, IndexError, TypeError):
            continue
        start = first.find(_PROBE_USER)
        if start <= 0:
            continue
        # cut where whole-text tokenization has a token boundary (``human:`` + `` Probe``, not ``human: ``)
        enc = plan.backend.encode(first, add_special_tokens=False)
        cut = max([b for a, b in enc.offsets if b <= start] + [0])
        if any(a < start < b for a, b in enc.offsets):
            cut = min(cut, max(a for a, b in enc.offsets if a < start < b))
        if cut > 0:
            text = first[:cut]
            found[text] = plan.encode_first([text], tmpl.add_special_tokens)[0]
    return sorted(found.items(), key=lambda kv: -len(kv[0]))


_plans: "weakref.WeakKeyDictionary[Any, _Plan]" = weakref.WeakKeyDictionary()
_PROBE_CONTEXTS = ("Question: what?\nAnswer:", "x:", "你好。")
_PROBE_TEXTS = (" Hello world", "Hello world", "\nok", "你好", "😀 ok", " 123", "(a) b")


def continuation_method(tokenizer: Any, backend: Any = None) -> str:
    """How a piece of text is tokenized "on its own" so that it matches whole-text tokenization.

    ``"anchor"``: after the EOS special token (dropping it); ``"plain"``: as is. Chosen by tokenizing
    probe strings both ways and comparing with ``tokenizer(context + text)``; ``"anchor"`` wins ties.

    >>> from utils.models import load_tokenizer
    >>> continuation_method(load_tokenizer())
    'anchor'
    """
    backend = backend or tokenizer.backend_tokenizer
    eos = tokenizer.eos_token
    score = {"anchor": 0, "plain": 0}
    for ctx in _PROBE_CONTEXTS:
        base = backend.encode(ctx, add_special_tokens=False).ids
        for text in _PROBE_TEXTS:
            whole = backend.encode(ctx + text, add_special_tokens=False).ids
            if whole[:len(base)] != base:
                continue  # merges across the boundary: not a probe of context-free tokenization
            want = whole[len(base):]
            score["plain"] += backend.encode(text, add_special_tokens=False).ids == want
            score["anchor"] += backend.encode(eos + text, add_special_tokens=False).ids[1:] == want
    return "anchor" if score["anchor"] >= score["plain"] else "plain"


# A normalizer may shrink the text before the model sees it. NFC composes a character and its combining
# marks into one: since NFD(NFC(s)) == NFD(s), len(s) <= len(NFD(s)) <= _NFD_MAX * len(NFC(s)), where
# _NFD_MAX is the longest canonical decomposition of one code point (4 in Unicode 14: e.g. U+1F82 →
# α + ̓ + ̀ + ͅ; tests/test_encode.py checks it against unicodedata). Compatibility decompositions
# (NFKC/NFKD) reach 18; other normalizers (Lowercase, Strip, NFD...) are not bounded here.
_NFD_MAX = 4


def chars_per_token_bound(backend: Any, spec: dict | None = None) -> int | None:
    """``D`` such that any text of ``n`` characters tokenizes to at least ``ceil(n / D)`` tokens, or None
    when this tokenizer gives no such guarantee. Used to drop over-long records before tokenizing them.
    ``spec`` is the backend's parsed JSON when the caller has it already (else read from ``backend``).

    Proof sketch (for what this function accepts). The tokenizer splits out added tokens (each covers
    its own text, at most ``L`` characters, ``L`` the longest token string), normalizes the rest, splits
    it into words without removing characters, and the BPE model covers every character of a word by
    tokens, each token touching at most ``len(token string)`` characters of the normalized text (for
    byte-level BPE a token is ``len`` bytes, so at most as many characters; SentencePiece's ``▁`` stands
    for one space; a byte-fallback token ``<0xNN>`` covers one byte). So normalized characters <=
    ``L`` x tokens. Normalizers accepted never shrink the text (none, ``Prepend``, ``Replace`` by a string
    at least as long), or shrink it by a known factor (NFC: ``_NFD_MAX``). Hence ``D = L x factor``.
    Refused (None): a non-BPE model, BPE dropout, an unknown token that fuses runs of unknown characters
    (without byte fallback), added tokens that swallow whitespace (``lstrip``/``rstrip``), pre-tokenizers
    that remove characters (``Whitespace``, ``Split`` with ``behavior="removed"``), other normalizers.

    >>> from utils.models import load_reference_tokenizer
    >>> chars_per_token_bound(load_reference_tokenizer("qwen2_5").backend_tokenizer)  # 128-byte tokens x NFC's 4
    512
    """
    if spec is None:
        try:
            spec = json.loads(backend.to_str())
        except Exception:  # pragma: no cover - a backend that cannot be serialised
            return None
    model = spec.get("model") or {}
    if model.get("type") != "BPE" or model.get("dropout"):
        return None
    vocab = model.get("vocab") or {}
    if model.get("unk_token") is not None and model.get("fuse_unk"):
        if not (model.get("byte_fallback") and all(f"<0x{b:02X}>" in vocab for b in range(256))):
            return None  # a run of unknown characters could become one <unk>
    added = spec.get("added_tokens") or []
    if any(t.get("lstrip") or t.get("rstrip") for t in added):
        return None

    def norm_factor(n: Any) -> int | None:
        if n is None:
            return 1
        kind = n.get("type")
        if kind == "Sequence":
            factor = 1
            for m in n.get("normalizers", []):
                f = norm_factor(m)
                if f is None:
                    return None
                factor *= f
            return factor
        if kind == "Prepend":
            return 1
        if kind == "Replace":
            pattern = (n.get("pattern") or {}).get("String")
            return 1 if pattern is not None and len(n.get("content", "")) >= len(pattern) else None
        if kind == "NFC":
            return _NFD_MAX
        return None

    factor = norm_factor(spec.get("normalizer"))
    if factor is None or not keeps_every_character(spec.get("pre_tokenizer")):
        return None
    strings = vocab if isinstance(vocab, dict) else [t for t, *_ in vocab]
    longest = max([len(t) for t in strings] + [len(t.get("content", "")) for t in added] + [4])
    return longest * factor


def _plan_key(tokenizer: Any) -> tuple:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    state = (id(backend), repr(backend.truncation), repr(backend.padding)) if backend is not None else None
    return (tokenizer.eos_token, tokenizer.bos_token, getattr(tokenizer, "chat_template", None),
            vocab_key(tokenizer), state)


def _plan(tokenizer: Any) -> _Plan:
    """The cached :class:`_Plan` of ``tokenizer`` (rebuilt if its special tokens or template changed)."""
    try:
        plan = _plans.get(tokenizer)
    except TypeError:  # not weak-referenceable
        return _Plan(tokenizer)
    key = _plan_key(tokenizer)
    if plan is None or plan.key != key:
        plan = _plans[tokenizer] = _Plan(tokenizer)
        plan.key = key
    return plan


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of everything about ``tokenizer`` that changes ids (cached; ~0.2 s once for Qwen2)."""
    plan = _plan(tokenizer)
    fp = getattr(plan, "fingerprint", None)
    if fp is None:
        h = hashlib.sha256(plan.json_text.encode())
        h.update(repr((type(tokenizer).__name__, tokenizer.eos_token, tokenizer.bos_token,
                       getattr(tokenizer, "chat_template", None))).encode())
        fp = plan.fingerprint = h.hexdigest()[:32]
    return fp


# ----------------------------------------------------------------------------------------------------
# Encoding


class EncodeError(ValueError):
    """A record the template or tokenizer cannot encode.

    ``str(err)`` is ``"record INDEX: reason"``; ``index`` (position in the input), ``field`` (e.g.
    ``"output"``, ``"messages[3].content"``, ``"messages"``) and ``reason`` are attributes, so a caller that
    knows where each record came from can print ``FILE:LINE: field: reason``.
    """

    def __init__(self, index: int, field: str, reason: str):
        self.index, self.field, self.reason = index, field, reason
        super().__init__(f"record {index}: {reason}")


_REPLY_ROLES = ("assistant", "gpt", "chatgpt", "bing", "bard")


def _text_fields(example: Mapping[str, Any]):
    """``(field, text, what)`` for every text of a raw record (content parts, reasoning, tool calls)."""
    import json

    if "messages" in example or "conversations" in example:
        key, role_key, text_key = (("messages", "role", "content") if "messages" in example
                                   else ("conversations", "from", "value"))
        for i, m in enumerate(example.get(key) or []):
            if not isinstance(m, Mapping):
                continue
            role = str(m.get(role_key, "")).lower()
            what = "an assistant reply" if role in _REPLY_ROLES else f"a {role or 'user'} message"
            value = m.get(text_key)
            if isinstance(value, list):
                for j, part in enumerate(value):
                    if isinstance(part, Mapping):
                        yield f"{key}[{i}].{text_key}[{j}].text", part.get("text"), what
            else:
                yield f"{key}[{i}].{text_key}", value, what
            yield f"{key}[{i}].reasoning_content", m.get("reasoning_content"), "the reasoning of an assistant reply"
            calls = m.get("tool_calls")
            if isinstance(calls, list):
                for j, call in enumerate(calls):
                    if isinstance(call, Mapping):
                        try:
                            text = json.dumps(call, ensure_ascii=False)
                        except (TypeError, ValueError):
                            continue
                        yield f"{key}[{i}].tool_calls[{j}]", text, "a tool call"
        tools = example.get("tools")
        if tools:
            try:
                yield "tools", tools if isinstance(tools, str) else json.dumps(tools, ensure_ascii=False), "the tools"
            except (TypeError, ValueError):
                pass
    else:
        yield "instruction", example.get("instruction"), "the instruction"
        yield "input", example.get("input"), "the input"
        yield "output", example.get("output"), "an assistant reply"


def _strings(value: Any):
    """Every string inside a JSON-like value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


def _special_problem(example: Mapping[str, Any], plan: _Plan, text: str | None = None) -> tuple[str, str] | None:
    """``(field, reason)`` if a text of ``example`` contains special-token text (or the text of an added
    token that strips the whitespace around it), else None. ``text``: the record's JSON text if known."""
    # one scan of the whole record's JSON text (tokens JSON would escape: of the strings); fields only on a hit
    try:
        joined = ((text if text is not None else json.dumps(example, ensure_ascii=False)) if plan.json_safe
                  else "\x00".join(_strings(dict(example))))
    except (TypeError, ValueError):
        joined = "\x00".join(_strings(dict(example)))
    if not any(t in joined for t in plan.specials) and not any(t in joined for t in plan.stripping):
        return None
    for field, text, what in _text_fields(example):
        if isinstance(text, str) and text:
            bad = [t for t in plan.specials if t in text]
            if bad:
                return field, (f"{what} contains the special token text {bad[-1]!r}; it would become a control "
                               "token (a second EOS, a fake turn). Remove it from the data.")
            bad = [t for t in plan.stripping if t in text]
            if bad:
                return field, (f"{what} contains {bad[-1]!r}, the text of an added token of this tokenizer that "
                               "swallows the whitespace around it (AddedToken with lstrip/rstrip): tokenized, the "
                               "text would not decode back (a space lost). Remove or rewrite it in the data.")
    return None


def _rows_or_error(example: Mapping[str, Any], rows_of: Any, plan: _Plan,
                   index: int, text: str | None = None) -> list[list[Segment]]:
    """``rows_of(example)`` (:meth:`Template.rows_of`) after the record checks, errors as :class:`EncodeError`."""
    if detect_kind(example) != "sft":  # e.g. KTO's label: false -- never trained as a plain SFT target
        try:
            check_record(example)
        except RecordError as e:
            raise EncodeError(index, e.field, e.reason) from None
    problem = _special_problem(example, plan, text)
    if problem:
        raise EncodeError(index, *problem)
    try:
        rows = rows_of(example)
    except ValueError as e:
        field = getattr(e, "field", None) or ("messages" if "instruction" not in example else "record")
        raise EncodeError(index, field, getattr(e, "reason", None) or str(e)) from None
    if not rows or not all(any(s.train for s in segs) for segs in rows):
        raise EncodeError(index, "record", "no assistant reply to train on")
    return rows


def check_options(max_length: int | None, truncation: str, on_error: str = "raise") -> None:
    """Raise ``ValueError`` for options no encoder accepts (shared by SFT, preference and pretraining data)."""
    if truncation not in TRUNCATION_POLICIES:
        raise ValueError(f"truncation must be one of {TRUNCATION_POLICIES}, got {truncation!r}")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if max_length is not None and max_length < 2:
        raise ValueError(f"max_length must be at least 2, got {max_length}")


def _with_kwargs(tmpl: Template, chat_template_kwargs: Mapping[str, Any] | None) -> Template:
    if not chat_template_kwargs:
        return tmpl
    if not hasattr(tmpl, "with_kwargs"):
        raise ValueError(f"chat_template_kwargs only apply to template 'chat_template', not {tmpl.name!r}")
    return tmpl.with_kwargs(**chat_template_kwargs)


def _opening(text: str, prefixes: list[tuple[str, list[int]]]) -> tuple[int, list[int]] | None:
    """``(length, ids)`` of the longest cached opening (:meth:`_Plan.prefixes`) that ``text`` goes on after, or None."""
    for ptext, pids in prefixes:
        if len(text) > len(ptext) and text.startswith(ptext):
            return len(ptext), pids
    return None


def _tokenize_units(units: list[list[Segment]], tmpl: Template, tokenizer: Any, plan: _Plan):
    """``(ids, labels, replies)`` per unit (a row's segments); ``replies`` lists ``[start, end, merged]``
    per trained segment (merged: whole-text tokenization would merge the reply's start into its prompt)."""
    # 1. the first piece (the prompt up to the first reply): a text that starts with the template's
    #    constant opening (:func:`_prefixes`) gets its cached ids + the remainder as a continuation
    #    (unless a token would span the cut: then, rarely, the whole piece is tokenized)
    prefixes = plan.prefixes(tmpl, tokenizer)
    split: list[tuple[int, int, list[int]]] = []  # (unit, prefix length, prefix ids)
    whole: list[int] = []
    for i, segs in enumerate(units):
        found = _opening(segs[0].text, prefixes)
        if found:
            split.append((i, *found))
        else:
            whole.append(i)
    # 2. every later piece, tokenized on its own as a continuation -- with the remainders, in one call
    cont_texts = [units[i][0].text[n:] for i, n, _ in split]
    cont_texts += [s.text for segs in units for s in segs[1:]]
    cont = plan.encode_cont(cont_texts) if cont_texts else []
    rest = cont[len(split):]

    # 3. one batched look at small windows around every cut: does whole-text tokenization put a token
    #    across it? At a prompt cut that means "tokenize the whole piece instead"; at a prompt/reply
    #    boundary it is a boundary merge. A prompt ending with a special token cannot merge.
    #    Most cuts are decided without a window: no token of the vocabulary holds the two characters around
    #    them (:class:`utils.spans.PairCheck`)
    flags: list = []  # per cut: whether a token is across it (None until its window is tokenized)
    windows, cuts, looked = [], [], []
    may_span = plan.pairs.may_span

    def window(left: str, right: str) -> None:
        if not may_span(left, right):
            flags.append(False)
            return
        looked.append(len(flags))
        flags.append(None)
        left = left[-_WINDOW:]
        windows.append(left + right[:_WINDOW])
        cuts.append(len(left))

    for i, n, _ in split:
        window(units[i][0].text[:n], units[i][0].text[n:])
    merged_flags: list[bool] = []
    slots: list[int] = []
    ends_special = tuple(plan.specials)
    for segs in units:
        for k in range(1, len(segs)):
            if segs[k].train and not segs[k - 1].train:
                merged_flags.append(False)
                if ends_special and segs[k - 1].text.endswith(ends_special):
                    continue
                window(segs[k - 1].text, segs[k].text)
                slots.append(len(merged_flags) - 1)
    for k, flag in zip(looked, plan.crossings(windows, cuts) if windows else ()):
        flags[k] = flag
    crossing = flags[:len(split)]
    for slot, flag in zip(slots, flags[len(split):]):
        merged_flags[slot] = flag

    firsts: list = [None] * len(units)
    for (i, _, pids), ids, cross in zip(split, cont, crossing):
        if cross:
            whole.append(i)
        else:
            firsts[i] = pids + ids
    if whole:
        for i, ids in zip(whole, plan.encode_first([units[i][0].text for i in whole], tmpl.add_special_tokens)):
            firsts[i] = ids

    out = []
    r = m = 0
    for i, segs in enumerate(units):
        ids = list(firsts[i])
        labels = [IGNORE_INDEX] * len(ids)
        replies: list[list] = []
        if segs[0].train:  # a template whose first piece is trained (never for the built-in ones)
            labels = list(ids)
            replies.append([0, len(ids), False])
        for k in range(1, len(segs)):
            piece = rest[r]
            r += 1
            if segs[k].train:
                merged = False
                if not segs[k - 1].train:
                    merged = merged_flags[m]
                    m += 1
                replies.append([len(ids), len(ids) + len(piece), merged])
                ids += piece
                labels += piece
            else:
                ids += piece
                labels += [IGNORE_INDEX] * len(piece)
        out.append((ids, labels, replies))
    return out


def _certainly_dropped(segs: list[Segment], max_length: int, truncation: str, chars_per_token: int) -> bool:
    """Is the row of ``segs`` dropped whatever its tokens are? Each piece of ``n`` characters gives at least
    ``ceil(n / chars_per_token)`` tokens (:func:`chars_per_token_bound`), so a row of ``n`` characters has at
    least ``ceil(n / chars_per_token)`` tokens. Only rows with one trained segment are decided here (a row
    with several replies may be split into shorter rows, see :func:`encode_rows`): under ``"drop"`` when
    the row's lower bound exceeds ``max_length``, under ``"truncate"`` when the lower bound of everything
    before the reply reaches it (no room for a reply token). Exact: no row that would fit is dropped."""
    trained = [k for k, s in enumerate(segs) if s.train]
    if len(trained) != 1:
        return False
    if truncation == "drop":
        return -(-sum(len(s.text) for s in segs) // chars_per_token) > max_length
    return -(-sum(len(s.text) for s in segs[:trained[0]]) // chars_per_token) >= max_length


def _trims(segs: list[Segment]) -> int:
    """Trained segments whose message content the template did not render verbatim (trimmed whitespace)."""
    return sum(1 for s in segs if s.train and isinstance(s.source, str) and s.source.strip()
               and s.source not in s.text)


def encode_batch(examples: Sequence[Mapping[str, Any]], tokenizer: Any, template: TemplateLike,
                 max_length: int | None = None, truncation: str = "drop", *, start_index: int = 0,
                 details: list | None = None, on_error: str = "raise", problems: list | None = None,
                 chat_template_kwargs: Mapping[str, Any] | None = None, all_rows: bool = False,
                 raw: bool = False, json_texts: Sequence[str] | None = None) -> list:
    """:func:`encode` for many examples at once (one batched tokenizer call per kind of piece).

    Returns one row or None (dropped, or invalid when skipped) per example; with ``all_rows=True`` a
    list of rows per example instead (records that need several rows, see :func:`encode_rows`; dropped
    rows left out). If ``details`` is a list, appends one ``(truncated, boundary_merges, invalid,
    trimmed_replies, dropped)`` tuple of ints per example (per row with ``all_rows``; a dropped row
    counts once in ``dropped``). A record the template cannot encode raises :class:`EncodeError`
    (``on_error="raise"``) or, with ``"skip"``, gives None / ``[]`` and its error is appended to
    ``problems``. ``start_index`` numbers records in errors. ``json_texts``: each example's
    ``json.dumps(example, ensure_ascii=False)`` where the caller has it (the special-token scan reads it).
    """
    check_options(max_length, truncation, on_error)
    tmpl = _with_kwargs(get_template(template), chat_template_kwargs)
    plan = _plan(tokenizer)
    record_rows: list[list[list[Segment]]] = []
    rows_of = tmpl.rows_of(tokenizer)
    for i, ex in enumerate(examples):
        try:
            rows = _rows_or_error(ex, rows_of, plan, start_index + i,
                                  json_texts[i] if json_texts is not None else None)
            if len(rows) > 1 and not all_rows:
                raise EncodeError(start_index + i, "messages", (
                    f"the chat template renders earlier turns of this conversation differently once later turns "
                    f"exist, so it gives {len(rows)} training rows (one per such reply); use encode_rows() or "
                    "encode_dataset()"))
        except EncodeError as e:
            if on_error == "raise":
                raise
            if problems is not None:
                problems.append(e)
            rows = None
        record_rows.append(rows)

    # rows whose non-final reply merges into its prompt are split after that reply: the reply keeps the
    # separate ids inference produced for it, the next row starts with the whole history re-tokenized
    # (what inference for the later replies gives), so rule 3 holds for every reply
    done: list[list[tuple]] = [[] for _ in examples]
    pending = [(i, segs) for i, rows in enumerate(record_rows) if rows for segs in rows]
    # a row certainly longer than max_length is dropped before it is tokenized (a 50 MB text would take
    # ~144x its size in the tokenizer): see _certainly_dropped
    skip = ([_certainly_dropped(segs, max_length, truncation, plan.chars_per_token) for _, segs in pending]
            if max_length is not None and pending and plan.chars_per_token else None)
    while pending:
        again = []
        encoded = iter(_tokenize_units([s for k, (_, s) in enumerate(pending) if not (skip and skip[k])], tmpl,
                                       tokenizer, plan))
        for k, (i, segs) in enumerate(pending):
            if skip and skip[k]:
                done[i].append((None, None, None, _trims(segs)))
                continue
            ids, labels, replies = next(encoded)
            cut = next((r for r, rep in enumerate(replies[:-1]) if rep[2]), None)
            if cut is None:
                done[i].append((ids, labels, replies, _trims(segs)))
                continue
            trained = [k for k, s in enumerate(segs) if s.train]
            head = segs[:trained[cut] + 1]
            end = replies[cut][1]
            done[i].append((ids[:end], labels[:end], replies[:cut + 1], _trims(head)))
            nxt = trained[cut + 1]
            again.append((i, [Segment("".join(s.text for s in segs[:nxt]), False)] + segs[nxt:]))
        pending, skip = again, None

    per_record: list[list[tuple]] = []  # per record: [(row or None, details)]
    for i, rows in enumerate(record_rows):
        if rows is not None and len(done[i]) > 1 and not (all_rows or raw):
            e = EncodeError(start_index + i, "messages", (
                f"an earlier reply's first characters merge into its prompt when the history is tokenized whole, "
                f"so this conversation gives {len(done[i])} training rows (split after such replies, so every "
                "reply sees the prompt ids inference gives it); use encode_rows() or encode_dataset()"))
            if on_error == "raise":
                raise e
            if problems is not None:
                problems.append(e)
            rows = None
        if rows is None:
            per_record.append([(None, (0, 0, 1, 0, 0))])
            continue
        kept = []
        for ids, labels, replies, trims in done[i]:
            if ids is None:  # dropped on the length bound, never tokenized (merges not looked at: 0)
                kept.append((None, (0, 0, 0, trims, 1)))
                continue
            merges = sum(1 for rep in replies if rep[2])
            truncated = 0
            if max_length is not None and len(ids) > max_length:
                if truncation == "drop" or replies[-1][0] >= max_length:
                    kept.append((None, (0, merges, 0, trims, 1)))
                    continue
                del ids[max_length:], labels[max_length:]
                truncated = 1
            kept.append(({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels},
                         (truncated, merges, 0, trims, 0)))
        per_record.append(kept)
    if raw:
        return per_record
    if all_rows:
        if details is not None:
            details.extend(d for kept in per_record for _, d in kept)
        return [[row for row, _ in kept if row is not None] for kept in per_record]
    if details is not None:
        details.extend(kept[0][1] for kept in per_record)
    return [kept[0][0] for kept in per_record]


def encode(example: Mapping[str, Any], tokenizer: Any, template: TemplateLike, max_length: int | None = None,
           truncation: str = "drop", *, chat_template_kwargs: Mapping[str, Any] | None = None) -> dict | None:
    """One training row ``{input_ids, attention_mask, labels}`` (lists of ints), or None when dropped.

    ``example`` is any supported record (Alpaca dict, ``{"messages"}``, ``{"conversations"}``);
    ``template`` a name or :class:`utils.templates.Template`; ``chat_template_kwargs`` (e.g.
    ``{"enable_thinking": False}``) are passed to every rendering of ``chat_template``, as at inference.
    A record that needs several rows (see :func:`encode_rows`) raises :class:`EncodeError`.

    >>> from utils.models import load_tokenizer
    >>> tok = load_tokenizer()
    >>> ex = {"messages": [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "你好！"}]}
    >>> row = encode(ex, tok, "human_assistant")
    >>> tok.decode([t for t, l in zip(row["input_ids"], row["labels"]) if l != -100])
    ' 你好！</s>'
    >>> encode(ex, tok, "human_assistant", max_length=4) is None
    True
    """
    return encode_batch([example], tokenizer, template, max_length, truncation,
                        chat_template_kwargs=chat_template_kwargs)[0]


def encode_rows(example: Mapping[str, Any], tokenizer: Any, template: TemplateLike, max_length: int | None = None,
                truncation: str = "drop", *, chat_template_kwargs: Mapping[str, Any] | None = None) -> list[dict]:
    """Every training row of ``example`` (dropped rows left out): usually one. Several where one row
    cannot show every reply with the prompt inference gives it: a chat template that renders earlier
    turns differently once later turns exist (Qwen3's reasoning), or an earlier reply whose first
    characters merge into its prompt when the history is tokenized whole (each reply is supervised in
    exactly one row).

    >>> from utils.models import load_tokenizer
    >>> len(encode_rows({"instruction": "Hi", "output": "Hello"}, load_tokenizer(), "alpaca"))
    1
    """
    return encode_batch([example], tokenizer, template, max_length, truncation,
                        chat_template_kwargs=chat_template_kwargs, all_rows=True)[0]


def encode_prompt(example: Mapping[str, Any], tokenizer: Any, template: TemplateLike, *,
                  chat_template_kwargs: Mapping[str, Any] | None = None) -> list[int]:
    """The ids a model is given to produce ``example``'s last reply (what inference must use).

    Equal to ``tokenizer(render_prompt(example, template, tokenizer), add_special_tokens=...)["input_ids"]``
    with ``add_special_tokens`` from the template (for ``chat_template`` this equals
    ``apply_chat_template(messages[:-1], add_generation_prompt=True, **chat_template_kwargs)``), and to the
    ids before the last reply in the row that supervises it.

    >>> from utils.models import load_tokenizer
    >>> tok = load_tokenizer()
    >>> ex = {"instruction": "Hi", "output": "Hello"}
    >>> row = encode(ex, tok, "alpaca")
    >>> ids = encode_prompt(ex, tok, "alpaca"); row["input_ids"][:len(ids)] == ids
    True
    """
    from utils.templates import render_prompt

    tmpl = _with_kwargs(get_template(template), chat_template_kwargs)
    return tokenizer(render_prompt(example, tmpl, tokenizer), add_special_tokens=tmpl.add_special_tokens)["input_ids"]


# ----------------------------------------------------------------------------------------------------
# Datasets


@dataclass
class EncodeResult:
    """What :func:`encode_dataset` returns: the encoded ``dataset`` and what happened to the records.

    ``records`` in, ``rows`` out, ``dropped`` (too long), ``invalid`` (skipped records the template
    cannot encode, each :class:`EncodeError` in ``problems``), ``truncated`` (cut to ``max_length``),
    ``tokens`` (all ids), ``supervised_tokens`` (labels != -100), ``boundary_merges`` (replies whose
    first characters whole-text tokenization would merge into the prompt's last token), ``trimmed_replies``
    (replies whose text the chat template changed, e.g. Llama 3 trims the whitespace around them: the row
    supervises what inference renders). ``rows`` may exceed ``records`` (records that need one row per
    reply, see :func:`encode_rows`); ``dropped`` counts dropped rows (one per record for one-row records).
    :meth:`lengths` gives the row lengths; :meth:`as_dict` the counts for ``stats.json``.
    """

    dataset: Any
    records: int
    rows: int
    dropped: int
    truncated: int
    tokens: int
    supervised_tokens: int
    boundary_merges: int
    trimmed_replies: int = 0
    invalid: int = 0
    problems: list = field(default_factory=list)
    template: str = ""
    max_length: int | None = None
    truncation: str = "drop"

    def lengths(self):
        """Row lengths as a numpy array (read from the Arrow column, no Python lists)."""
        import pyarrow.compute as pc

        col = self.dataset.data.column("input_ids")
        return pc.list_value_length(col).to_numpy(zero_copy_only=False)

    def as_dict(self) -> dict:
        """The counts (JSON-serialisable), e.g. for ``stats.json``."""
        return {k: getattr(self, k) for k in ("records", "rows", "dropped", "invalid", "truncated", "tokens",
                                              "supervised_tokens", "boundary_merges", "trimmed_replies", "template",
                                              "max_length", "truncation")}


def _map_batch(batch: dict, indices: list[int], tokenizer: Any, template: Template, max_length: int | None,
               truncation: str, on_error: str = "raise"):
    """``Dataset.map`` function: encodes a batch and returns a ``pyarrow.Table`` (skips list conversion).

    Dropped records leave no row; invalid ones (``on_error="skip"``) leave an empty row flagged
    ``_invalid`` with the error, removed afterwards by :func:`encode_dataset`.
    """
    import numpy as np
    import pyarrow as pa

    texts = batch.get(RECORD_JSON)
    if texts is not None:
        examples = [json.loads(text) for text in texts]
        n = len(examples)
    else:
        keys = list(batch)
        n = len(batch[keys[0]]) if keys else 0
        examples = [{k: batch[k][i] for k in keys if batch[k][i] is not None} for i in range(n)]
    problems: list = []
    per_record = encode_batch(examples, tokenizer, template, max_length, truncation,
                              start_index=indices[0] if indices else 0, on_error=on_error, problems=problems,
                              raw=True, json_texts=texts)
    errors = {e.index: e for e in problems}
    empty = {"input_ids": [], "labels": []}
    kept = []  # (row, (truncated, merges, invalid, trims, dropped), record index)
    dropped = 0
    for i, rows in enumerate(per_record):
        for row, d in rows:
            if row is None and not d[2]:
                dropped += 1
                continue
            kept.append((row or empty, d, indices[i], dropped))
            dropped = 0
    if dropped:  # trailing dropped rows: counted on the batch's last row (or a placeholder row)
        if kept:
            row, d, i, before = kept[-1]
            kept[-1] = (row, d, i, before + dropped)
        else:
            kept.append((empty, (0, 0, 2, 0, 0), indices[-1], dropped))
    lengths = np.fromiter((len(r["input_ids"]) for r, _, _, _ in kept), dtype=np.int32, count=len(kept))
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int32))
    total = int(lengths.sum())
    ids = np.fromiter(chain.from_iterable(r["input_ids"] for r, _, _, _ in kept), dtype=np.int32, count=total)
    labels = np.fromiter(chain.from_iterable(r["labels"] for r, _, _, _ in kept), dtype=np.int32, count=total)
    supervised = np.zeros(len(kept), dtype=np.int32)
    nonempty = lengths > 0
    if total:
        starts = offsets.to_numpy()[:-1][nonempty]
        supervised[nonempty] = np.add.reduceat((labels != IGNORE_INDEX).astype(np.int32), starts)
    return pa.table({
        "input_ids": pa.ListArray.from_arrays(offsets, pa.array(ids)),
        "attention_mask": pa.ListArray.from_arrays(offsets, pa.array(np.ones(total, dtype=np.int32))),
        "labels": pa.ListArray.from_arrays(offsets, pa.array(labels)),
        "_truncated": pa.array(np.array([d[0] for _, d, _, _ in kept], dtype=np.int32)),
        "_merges": pa.array(np.array([d[1] for _, d, _, _ in kept], dtype=np.int32)),
        "_trims": pa.array(np.array([d[3] for _, d, _, _ in kept], dtype=np.int32)),
        "_dropped": pa.array(np.array([dr for _, _, _, dr in kept], dtype=np.int32)),
        "_supervised": pa.array(supervised),
        "_invalid": pa.array(np.array([d[2] for _, d, _, _ in kept], dtype=np.int32)),
        "_index": pa.array(np.array([i for _, _, i, _ in kept], dtype=np.int64)),
        "_error_field": pa.array([errors[i].field if i in errors and d[2] == 1 else "" for _, d, i, _ in kept],
                                 pa.string()),
        "_error_reason": pa.array([errors[i].reason if i in errors and d[2] == 1 else "" for _, d, i, _ in kept],
                                  pa.string()),
    })


class LocationLog:
    """Where each record came from (``FILE:LINE`` / ``FILE:[INDEX]``), appended in record order, kept on
    disk: 8 bytes per record in a temporary file (deleted when closed or collected) behind a buffer of
    ``buffer`` entries, so the memory it takes is the same for 200 records or 20 million. Read back only for
    the few records that fail (``log[index]``).

    >>> log = LocationLog(buffer=2)
    >>> for where in ("a.jsonl:1", "a.jsonl:3", "b.json:[0]", "odd place"):
    ...     log.append(where)
    >>> len(log), log[1], log[2], log[3]
    (4, 'a.jsonl:3', 'b.json:[0]', 'odd place')
    """

    _LINE_BITS = 40

    def __init__(self, directory: str | None = None, buffer: int = 1 << 16):
        from array import array

        self._array = array
        self._directory, self._size = directory, buffer
        self._names: dict[str, int] = {}
        self._prefixes: list[str] = []
        self._odd: dict[int, str] = {}  # locations of no FILE:LINE form (rare): kept as text
        self._buf = array("q")
        self._file: Any = None
        self._flushed = 0

    def append(self, where: str) -> None:
        prefix, sep, tail = where.rpartition(":")
        if sep and tail.isdigit():
            code = int(tail) * 2
        elif sep and tail[:1] == "[" and tail[-1:] == "]" and tail[1:-1].isdigit():
            code = int(tail[1:-1]) * 2 + 1
        else:
            code = -1
        if code < 0 or code >= 1 << self._LINE_BITS:
            self._odd[len(self)] = where
            code, prefix = 0, ""
        number = self._names.get(prefix)
        if number is None:
            number = self._names[prefix] = len(self._prefixes)
            self._prefixes.append(prefix)
        self._buf.append((number << self._LINE_BITS) | code)
        if len(self._buf) >= self._size:
            self._flush()

    def _flush(self) -> None:
        if self._file is None:
            self._file = tempfile.TemporaryFile(dir=self._directory, prefix="locations-")
        self._file.seek(0, 2)
        self._buf.tofile(self._file)
        self._flushed += len(self._buf)
        self._buf = self._array("q")

    def __len__(self) -> int:
        return self._flushed + len(self._buf)

    def __getitem__(self, index: int) -> str:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        if index in self._odd:
            return self._odd[index]
        if index >= self._flushed:
            value = self._buf[index - self._flushed]
        else:
            self._file.seek(index * 8)
            one = self._array("q")
            one.frombytes(self._file.read(8))
            value = one[0]
        number, code = value >> self._LINE_BITS, value & ((1 << self._LINE_BITS) - 1)
        tail = str(code // 2) if code % 2 == 0 else f"[{code // 2}]"
        return f"{self._prefixes[number]}:{tail}"

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


_tmpdirs: list[str] = []


def _cleanup_tmpdirs() -> None:
    for d in _tmpdirs:
        shutil.rmtree(d, ignore_errors=True)


atexit.register(_cleanup_tmpdirs)


def records_to_dataset(data: Any, cache_dir: str | None = None):
    """A ``datasets.Dataset`` of records: a Dataset as is, a list in memory, an iterable streamed to Arrow.

    An iterable (e.g. :func:`utils.formats.iter_records`) is written to an Arrow file in ``cache_dir``
    (default: a temporary folder removed at exit) and memory-mapped, so it never sits in RAM.

    Records from a list or a stream are stored as one JSON text each (column ``_record_json``), not as
    Arrow structs: Arrow gives every record the union of all records' keys, so a tool call's
    ``arguments`` would gain other calls' argument names as ``null`` (and a chat template would render
    them), and records whose keys differ (``tools`` on some) could not be written at all. A ``Dataset``
    you pass is used as is.

    >>> records_to_dataset([{"instruction": "Hi", "output": "Yo"}]).column_names
    ['_record_json']
    """
    import datasets

    if isinstance(data, datasets.Dataset):
        return data
    if isinstance(data, (list, tuple)):
        return datasets.Dataset.from_dict({RECORD_JSON: [json.dumps(dict(r), ensure_ascii=False) for r in data]})
    # a stream (e.g. utils.formats.iter_records): write it to an Arrow file, memory-mapped, never all in RAM
    from datasets.arrow_writer import ArrowWriter

    if cache_dir is None:
        cache_dir = tempfile.mkdtemp(prefix="utils-encode-")
        _tmpdirs.append(cache_dir)
    path = f"{cache_dir}/records-{next(tempfile._get_candidate_names())}.arrow"
    with ArrowWriter(path=path, writer_batch_size=10_000) as writer:
        for rec in data:
            writer.write({RECORD_JSON: json.dumps(dict(rec), ensure_ascii=False)})
        writer.finalize()
    return datasets.Dataset.from_file(path)


def encode_dataset(data: Any, tokenizer: Any, template: TemplateLike, max_length: int | None = None,
                   truncation: str = "drop", num_proc: int | None = None, *, on_error: str = "raise",
                   batch_size: int = 1000, cache_dir: str | None = None, desc: str | None = None,
                   chat_template_kwargs: Mapping[str, Any] | None = None) -> EncodeResult:
    """Encode every record of ``data`` with batched ``Dataset.map``; returns an :class:`EncodeResult`.

    ``data``: a ``datasets.Dataset`` (columns of one record form), a list of records, or any iterable
    of records (streamed to an Arrow file in ``cache_dir`` -- a temporary folder by default -- so
    200,000 records never sit in memory; e.g. ``utils.formats.iter_records(path)``). Output columns:
    ``input_ids``, ``attention_mask``, ``labels`` (int32). Over-long examples are removed and counted
    (``dropped``); records the template cannot encode raise :class:`EncodeError` or, with
    ``on_error="skip"``, are removed and counted (``invalid``, their errors in ``problems``).
    ``new_fingerprint`` is computed from the input's fingerprint, the tokenizer's content, the template and
    the options, so ``datasets`` neither hashes the tokenizer on every call (slow) nor reuses a stale cache.

    >>> from utils.models import load_tokenizer
    >>> res = encode_dataset([{"instruction": "Hi", "output": "Hello"}], load_tokenizer(), "alpaca")
    >>> res.records, res.rows, res.dropped, res.dataset.column_names
    (1, 1, 0, ['input_ids', 'attention_mask', 'labels'])
    """
    import datasets
    import numpy as np
    import pyarrow.compute as pc
    from datasets.fingerprint import Hasher

    from utils._version import __version__

    tmpl = _with_kwargs(get_template(template), chat_template_kwargs)
    check_options(max_length, truncation, on_error)  # before reading a stream into Arrow
    ds = records_to_dataset(data, cache_dir)
    records = len(ds)
    ints = datasets.List(datasets.Value("int32"))
    features = datasets.Features({
        "input_ids": ints, "attention_mask": ints, "labels": ints,
        **{c: datasets.Value("int32") for c in ("_truncated", "_merges", "_trims", "_dropped", "_supervised",
                                                 "_invalid")},
        "_index": datasets.Value("int64"), "_error_field": datasets.Value("string"),
        "_error_reason": datasets.Value("string"),
    })
    fingerprint = Hasher.hash((ds._fingerprint, tokenizer_fingerprint(tokenizer), repr(tmpl), max_length,
                               truncation, on_error, __version__, "encode_dataset/3"))
    if records:
        out = ds.map(_map_batch, batched=True, batch_size=batch_size, with_indices=True,
                     remove_columns=ds.column_names, num_proc=num_proc if num_proc and num_proc > 1 else None,
                     fn_kwargs={"tokenizer": tokenizer, "template": tmpl, "max_length": max_length,
                                "truncation": truncation, "on_error": on_error},
                     features=features, new_fingerprint=fingerprint, desc=desc or f"encode ({tmpl.name})")
    else:
        out = datasets.Dataset.from_dict({k: [] for k in features}, features=features)
    table = out.data
    truncated, merges, trims, dropped, supervised = (
        int(pc.sum(table.column(c)).as_py() or 0) for c in ("_truncated", "_merges", "_trims", "_dropped", "_supervised"))
    problems: list[EncodeError] = []
    flags = table.column("_invalid").to_numpy() if len(out) else np.zeros(0, dtype=np.int32)
    invalid = int((flags == 1).sum())
    if flags.any():
        bad = np.flatnonzero(flags == 1)
        small = table.table.select(["_index", "_error_field", "_error_reason"]).take(bad).to_pylist()
        problems = [EncodeError(r["_index"], r["_error_field"], r["_error_reason"]) for r in small]
        out = out.select(np.flatnonzero(flags == 0)).flatten_indices()
    out = out.remove_columns([c for c in features if c.startswith("_")])
    # row lengths come from the list offsets alone: the token data is never read (it stays on disk)
    tokens = int(pc.sum(pc.list_value_length(out.data.column("input_ids"))).as_py() or 0)
    return EncodeResult(dataset=out, records=records, rows=len(out), dropped=dropped,
                        truncated=truncated, tokens=tokens, supervised_tokens=supervised,
                        boundary_merges=merges, trimmed_replies=trims, invalid=invalid, problems=problems, template=tmpl.name,
                        max_length=max_length, truncation=truncation)
