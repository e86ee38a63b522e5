"""What the linter knows about the tokenizer and template: BOS, end-of-turn ids, vocabulary, template markers.

With a tokenizer (``--tokenizer``) these are read from it; the template (``--template``, or the one
``stats.json`` names) gives the text markers that must never be supervised and the text that ends an
inference prompt (``### Response:``, ``ASSISTANT:``, the chat template's generation prompt). Without a
tokenizer, BOS and the end token are inferred from the rows (:func:`infer_ids`) and the checks that
need decoding are skipped (and reported as skipped).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Facts", "tokenizer_facts", "infer_ids", "TEXT_MARKERS", "PROMPT_ENDS"]

TEXT_MARKERS = {
    "alpaca": ("### Instruction:", "### Input:", "### Response:", "Below is an instruction that describes a task"),
    "vicuna": ("USER:", "ASSISTANT:", "A chat between a curious user and an artificial intelligence assistant"),
    "human_assistant": ("\nhuman: ", "\nassistant:"),
}
"""Template text that is never part of a reply, per text template of :mod:`utils.templates`."""

PROMPT_ENDS = {"alpaca": ("### Response:",), "vicuna": ("ASSISTANT:",), "human_assistant": ("assistant:",)}
"""The text each text template's inference prompt ends with."""

_GENERIC = ("alpaca", "vicuna")  # markers searched when no template is named (distinctive enough)


@dataclass
class Facts:
    """Token ids and texts the checks use; ``None`` / empty where unknown. ``notes`` says what was inferred."""

    bos_id: int | None = None
    end_ids: frozenset = frozenset()
    special_ids: frozenset = frozenset()
    vocab_size: int | None = None
    markers: tuple = ()
    prompt_ends: tuple = ()
    tokenizer: Any = None
    notes: list = field(default_factory=list)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.backend_tokenizer.decode(ids, skip_special_tokens=False)

    def decode_batch(self, batch: list[list[int]]) -> list[str]:
        return self.tokenizer.backend_tokenizer.decode_batch(batch, skip_special_tokens=False)

    def encode(self, text: str, with_bos: bool) -> list[int]:
        return self.tokenizer.backend_tokenizer.encode(text, add_special_tokens=with_bos).ids

    def encode_batch(self, texts: list[str], with_bos: bool) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=with_bos)]


def _chat_markers(tokenizer: Any) -> tuple[tuple[str, ...], tuple[str, ...], str | None]:
    """Text markers of the tokenizer's chat template, its generation-prompt text, its end-of-turn text."""
    from utils.templates import ChatTemplate

    template = ChatTemplate("chat_template")
    try:
        end = template.end_of_turn(tokenizer)
    except ValueError:
        end = None
    holes = {"system": "Zq1 system text", "user": "Zq2 user text", "assistant": "Zq3 reply text"}
    convo = [{"role": "user", "content": holes["user"]}, {"role": "assistant", "content": holes["assistant"]},
             {"role": "user", "content": holes["user"]}]
    texts = []
    for messages in ([{"role": "system", "content": holes["system"]}] + convo, convo):
        try:
            texts.append(template.render_messages(tokenizer, messages, generation_prompt=True))
        except Exception:  # a template that refuses a system turn, or this order
            continue
    pieces = set()
    specials = sorted({t.content for t in tokenizer.added_tokens_decoder.values()}, key=len, reverse=True)
    for text in texts:
        for hole in holes.values():
            text = text.replace(hole, "\x00")
        for special in specials:
            text = text.replace(special, "\x00")
        pieces |= {line.strip() for piece in text.split("\x00") for line in piece.split("\n")}
    # plain words ("user", "assistant") occur in replies; keep bracketed markers and whole sentences
    markers = tuple(sorted(p for p in pieces if len(p) >= 5 and (not p.replace(" ", "").isalnum() or len(p) >= 24)))
    prompt_end = ()
    if texts:
        tail = texts[-1][texts[-1].rindex(holes["user"]) + len(holes["user"]):]
        if tail.strip():
            prompt_end = (tail,)
    return markers, prompt_end, end


def tokenizer_facts(tokenizer: Any, template: str | None) -> Facts:
    """The :class:`Facts` of ``tokenizer`` (a fast ``transformers`` tokenizer) for ``template`` (a name or None).

    Example:
        >>> from utils.models import load_tokenizer
        >>> facts = tokenizer_facts(load_tokenizer(), "alpaca")
        >>> facts.bos_id, sorted(facts.end_ids), facts.prompt_ends
        (1, [2], ('### Response:',))
    """
    facts = Facts(tokenizer=tokenizer, vocab_size=len(tokenizer), bos_id=tokenizer.bos_token_id)
    ends = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    facts.special_ids = frozenset(tokenizer.all_special_ids) | frozenset(
        i for i, t in tokenizer.added_tokens_decoder.items() if t.special)
    names = [template] if template else list(_GENERIC)
    markers, prompt_ends = [], []
    for name in names:
        markers += TEXT_MARKERS.get(name, ())
        prompt_ends += PROMPT_ENDS.get(name, ())
    if getattr(tokenizer, "chat_template", None) and template in (None, "chat_template"):
        chat, chat_end, end = _chat_markers(tokenizer)
        markers += chat
        prompt_ends += chat_end
        if end:
            end_ids = facts.encode(end, False)
            if len(end_ids) == 1:
                ends |= set(end_ids)
    facts.end_ids = frozenset(ends)
    facts.markers = tuple(dict.fromkeys(markers))
    facts.prompt_ends = tuple(dict.fromkeys(prompt_ends))
    return facts


def infer_ids(first_tokens: np.ndarray, span_ends: np.ndarray) -> Facts:
    """Facts inferred from the rows when there is no tokenizer: BOS is the first token of at least 95% of
    rows (if one is), the end token the last supervised token of at least half the supervised spans.

    Example:
        >>> f = infer_ids(np.array([1, 1, 1]), np.array([2, 2, 7]))
        >>> f.bos_id, sorted(f.end_ids)
        (1, [2])
    """
    facts = Facts()
    for values, share, name in ((first_tokens, 0.95, "bos"), (span_ends, 0.5, "end")):
        if not len(values):
            continue
        ids, counts = np.unique(values, return_counts=True)
        top = int(np.argmax(counts))
        if counts[top] >= share * len(values) and (name == "end" or len(values) >= 3):
            if name == "bos":
                facts.bos_id = int(ids[top])
            else:
                facts.end_ids = frozenset({int(ids[top])})
            facts.notes.append(f"{name} id inferred as {int(ids[top])} ({counts[top] / len(values):.0%} of "
                               f"{'rows start' if name == 'bos' else 'supervised spans end'} with it)")
    return facts
