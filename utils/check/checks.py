"""The pitfalls the linter looks for, each a vectorized test over :class:`~utils.check.rows.Rows`.

:data:`CHECKS` lists them with their level: ``error`` (training on this set teaches the wrong thing or
fails), ``warning`` (probably unintended; look), ``info`` (worth knowing). :class:`Tally` accumulates,
batch after batch, how many rows (and tokens or spans) each check found and the first example rows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from utils.check.facts import Facts
from utils.check.rows import IGNORE_INDEX, Rows

__all__ = ["CHECKS", "Tally", "check_batch", "EXAMPLES"]

EXAMPLES = 5
"""How many example rows each finding keeps."""

CHECKS: dict[str, tuple[str, str]] = {
    "length_mismatch": ("error", "a per-token column is not as long as input_ids (rows left out of the other checks)"),
    "no_supervised": ("error", "rows with no supervised token (every label -100): no loss, NaN for a batch of them"),
    "labels_shifted": ("error", "labels[i] == input_ids[i+1]: labels were shifted before saving, but the model "
                                "shifts them again (it would learn to predict two tokens ahead)"),
    "label_mismatch": ("error", "supervised labels that differ from input_ids at the same position"),
    "label_out_of_vocab": ("error", "labels outside the vocabulary (not -100, below 0 or >= the vocabulary size)"),
    "input_out_of_vocab": ("error", "input_ids outside the vocabulary (below 0 or >= the vocabulary size)"),
    "end_not_supervised": ("error", "the end-of-turn / EOS token follows a reply but is masked (-100): the model "
                                    "never learns to stop (the pad == eos trap: labels masked where input == pad)"),
    "end_missing": ("error", "supervised replies that do not end with the end-of-turn / EOS token"),
    "multiple_bos": ("error", "more than one BOS at the start of an example (the template wrote one and the "
                              "tokenizer added another)"),
    "supervised_special": ("error", "supervised special tokens other than the end marker (<|im_start|>, [INST], BOS "
                                    "...) in rows that do mask their prompt"),
    "supervised_template_text": ("error", "supervised text containing the template's prompt markers (### Response:, "
                                          "USER:, the system prompt ...) in rows that do mask their prompt"),
    "truncated_with_end": ("error", "examples exactly max-length long that still end with a supervised end marker, "
                                    "far more of them than of nearby lengths: the end marker was appended after "
                                    "cutting the reply, so the model learns to stop mid-answer"),
    "over_length": ("error", "rows longer than the maximum length"),
    "positions_invalid": ("error", "position_ids that neither restart at 0 nor count up by one"),
    "seq_lengths_invalid": ("error", "seq_lengths that do not add up to the row length or disagree with position_ids"),
    "positions_not_restarting": ("error", "packed rows: a new example starts (its opening tokens recur) but "
                                          "position_ids (or seq_lengths, or neat-packing segment ids) do not "
                                          "restart there, so it attends to the one before"),
    "packed_without_boundaries": ("warning", "rows that hold several examples (their opening tokens recur) with no "
                                             "position_ids, seq_lengths or segment ids: the examples attend to "
                                             "each other"),
    "attention_zeros": ("error", "attention_mask zeros inside a row (before its last attended token)"),
    "supervised_padding": ("error", "supervised positions whose attention_mask is 0"),
    "boundary_merge": ("warning", "a token merges the end of the prompt with the start of the reply: either the "
                                  "reply's first characters are masked (never trained) or prompt text is supervised, "
                                  "and the prompt tokens differ from what inference feeds the model"),
    "prompt_tokens_differ": ("warning", "the tokens before a reply differ from a fresh tokenization of the same "
                                        "prompt text (training and inference see different prompt tokens)"),
    "all_supervised": ("warning", "rows where every token is supervised (no prompt masking): the loss includes "
                                  "prompt and template text (right for pretraining text, usually not for SFT)"),
    "duplicate_rows": ("warning", "rows whose input_ids repeat an earlier row"),
    "cut_reply": ("info", "replies cut at the maximum length, without an end marker (as a truncating encoder "
                          "should leave them)"),
    "supervised_after_end": ("info", "replies whose end marker is followed by supervised whitespace (the template's "
                                     "newline after it): harmless, generation stops at the marker"),
    "padded_rows": ("info", "rows saved with padding (trailing attention_mask zeros)"),
}


@dataclass
class Found:
    rows: int = 0
    count: int = 0
    examples: list = field(default_factory=list)  # (row, position or None)
    detail: dict = field(default_factory=dict)


class Tally:
    """Per check: rows found, tokens/spans found, the first :data:`EXAMPLES` ``(row, position)``."""

    def __init__(self):
        self.found: dict[str, Found] = {}

    def add(self, check: str, rows: np.ndarray, positions: np.ndarray | None = None, count: int | None = None,
            **detail: int) -> None:
        rows = np.asarray(rows)
        if not len(rows):
            return
        entry = self.found.setdefault(check, Found())
        entry.rows += int(len(np.unique(rows)))
        entry.count += int(len(rows) if count is None else count)
        for key, value in detail.items():
            entry.detail[key] = entry.detail.get(key, 0) + int(value)
        seen = {r for r, _ in entry.examples}
        for i in range(len(rows)):
            if len(entry.examples) >= EXAMPLES:
                break
            r = int(rows[i])
            if r not in seen:
                seen.add(r)
                entry.examples.append((r, None if positions is None else int(positions[i])))


def _isin(values: np.ndarray, ids) -> np.ndarray:
    return np.isin(values, np.fromiter(ids, dtype=np.int64)) if ids else np.zeros(len(values), dtype=bool)


def _next(values: np.ndarray, same: np.ndarray, fill) -> np.ndarray:
    out = np.full_like(values, fill)
    out[:-1] = np.where(same[:-1], values[1:], fill)
    return out


@dataclass
class State:
    """What the checks carry across batches."""

    facts: Facts
    max_length: int | None
    opening: np.ndarray | None = None
    hashes: list = field(default_factory=list)
    length_hist: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    end_at_length: list = field(default_factory=list)  # (length, set row, position) of supervised-end examples
    boundaries_unchecked: int = 0
    boundaries_checked: int = 0
    boundary_stride: int = 1  # re-tokenize the prompts of every k-th row only (--sample)
    boundary_rows: int = 0    # rows whose reply boundaries were looked at


def check_batch(r: Rows, state: State, tally: Tally) -> None:
    """Run every check on one batch, adding what it finds to ``tally``."""
    facts = state.facts
    T = len(r.ids)
    sup_n = r.per_row(r.sup)
    examples_n = r.per_row(r.example_start)
    masked_n = r.lengths - sup_n
    none = sup_n == 0
    tally.add("no_supervised", r.index[none])
    all_sup = ~none & (masked_n <= examples_n)
    tally.add("all_supervised", r.index[all_sup])
    masks_prompt = ~none & ~all_sup  # rows that mask something beyond each example's first token

    # labels: shifted, out of vocabulary, different from input_ids
    same_row_next = np.zeros(T, dtype=bool)
    same_row_next[:-1] = r.row[1:] == r.row[:-1]
    ids_next = _next(r.ids, same_row_next, -1)
    equal = r.sup & (r.labels == r.ids)
    ahead = r.sup & (r.labels == ids_next)
    equal_n, ahead_n = r.per_row(equal), r.per_row(ahead)
    shifted = (sup_n >= 2) & (ahead_n > equal_n) & (ahead_n >= 0.8 * sup_n)
    rows_s, pos_s = r.where(ahead & shifted[r.row])
    tally.add("labels_shifted", rows_s, pos_s, count=int(ahead_n[shifted].sum()))
    vocab = facts.vocab_size
    bad_label = r.sup & ((r.labels < 0) | ((r.labels >= vocab) if vocab else False))
    tally.add("label_out_of_vocab", *r.where(bad_label))
    tally.add("input_out_of_vocab", *r.where((r.ids < 0) | ((r.ids >= vocab) if vocab else False)))
    tally.add("label_mismatch", *r.where(r.sup & ~equal & ~bad_label & ~shifted[r.row]))

    # end of each supervised span
    ex_len = r.example_lengths
    ex_last = ~r.same_example_next
    if facts.end_ids:
        ends = np.flatnonzero(r.span_end & ~shifted[r.row])
        ok = _isin(r.ids[ends], facts.end_ids)
        _after_end(r, facts, np.flatnonzero(r.span_start & ~shifted[r.row]), ends, ok, tally)
        nxt = np.minimum(ends + 1, T - 1)
        trap = ~ok & same_row_next[ends] & _isin(r.ids[nxt], facts.end_ids) & ~r.sup[nxt]
        at_limit = ex_last[ends] & (ex_len[r.example[ends]] == state.max_length) if state.max_length else False
        cut = ~ok & ~trap & at_limit
        missing = ~ok & ~trap & ~cut
        for name, which in (("end_not_supervised", trap), ("cut_reply", cut), ("end_missing", missing)):
            tally.add(name, r.index[r.row[ends[which]]], r.pos[ends[which]])
        # examples whose last token is a supervised end marker, by length (truncated_with_end, decided at the end)
        last = np.flatnonzero(ex_last & r.sup & _isin(r.ids, facts.end_ids))
        if len(last):
            state.end_at_length.append(np.stack([ex_len[r.example[last]], r.index[r.row[last]], r.pos[last]], 1))

    hist = np.bincount(ex_len)
    if len(hist) > len(state.length_hist):
        hist[:len(state.length_hist)] += state.length_hist
        state.length_hist = hist
    else:
        state.length_hist[:len(hist)] += hist

    # BOS, special tokens and template text
    starts = np.flatnonzero(r.example_start & r.same_example_next)
    if facts.bos_id is not None and len(starts):
        double = (r.ids[starts] == facts.bos_id) & (r.ids[starts + 1] == facts.bos_id)
        tally.add("multiple_bos", r.index[r.row[starts[double]]], r.pos[starts[double]])
    specials = facts.special_ids - facts.end_ids
    if specials:
        tally.add("supervised_special", *r.where(r.sup & masks_prompt[r.row] & _isin(r.ids, specials)))
    if facts.tokenizer is not None and facts.markers:
        _template_text(r, facts, masks_prompt, tally)
    if facts.tokenizer is not None and facts.prompt_ends:
        _boundaries(r, state, tally)

    # lengths
    if state.max_length:
        over = r.lengths > state.max_length
        tally.add("over_length", r.index[over], count=int(over.sum()))

    _positions(r, state, tally)
    _attention(r, tally)
    offsets = np.concatenate([[0], np.cumsum(r.lengths)])
    ids64 = r.ids.astype(np.int64, copy=False)
    state.hashes.append(np.fromiter(
        (int.from_bytes(hashlib.blake2b(ids64[offsets[i]:offsets[i + 1]].tobytes(), digest_size=8).digest(), "little")
         for i in range(len(r.lengths))), dtype=np.uint64, count=len(r.lengths)))
    state.hashes.append(r.index.astype(np.uint64))


def _after_end(r: Rows, facts: Facts, starts: np.ndarray, ends: np.ndarray, ok: np.ndarray, tally: Tally) -> None:
    """Spans whose end marker is followed by one or two more supervised tokens of whitespace (TRL supervises
    ChatML's closing ``"\\n"`` after ``<|im_end|>``): the marker is learned; noted, and ``ok`` set for them."""
    late = np.zeros(len(ends), dtype=bool)
    for back in (1, 2):
        at = ends - back
        late |= ~ok & ~late & (at >= starts) & _isin(r.ids[np.maximum(at, 0)], facts.end_ids)
    for i in np.flatnonzero(late):
        tail = r.ids[ends[i] - 1:ends[i] + 1]
        marker = max(j for j in range(len(tail)) if tail[j] in facts.end_ids)
        if facts.tokenizer is not None and facts.decode(tail[marker + 1:].tolist()).strip():
            late[i] = False
    tally.add("supervised_after_end", r.index[r.row[ends[late]]], r.pos[ends[late]])
    ok |= late


def _template_text(r: Rows, facts: Facts, masks_prompt: np.ndarray, tally: Tally) -> None:
    starts = np.flatnonzero(r.span_start & masks_prompt[r.row])
    if not len(starts):
        return
    ends = np.flatnonzero(r.span_end & masks_prompt[r.row])
    texts = facts.decode_batch([r.ids[a:b + 1].tolist() for a, b in zip(starts, ends)])
    hit = np.array([any(m in text for m in facts.markers) for text in texts], dtype=bool)
    tally.add("supervised_template_text", r.index[r.row[starts[hit]]], r.pos[starts[hit]])


def _boundaries(r: Rows, state: State, tally: Tally) -> None:
    """For each reply: does the masked prefix end exactly where the template's prompt text ends, and are its
    tokens those of a fresh tokenization of that prompt text (contract rule 3)? Decoded and re-encoded in
    batches (the tokenizer's Rust batch calls)."""
    facts = state.facts
    first_of_example = np.flatnonzero(r.example_start)
    chosen = r.index % state.boundary_stride == 0
    state.boundary_rows += int(chosen.sum())
    spans = []  # (start, end, example start, with BOS)
    for t, e in zip(np.flatnonzero(r.span_start), np.flatnonzero(r.span_end)):
        if not chosen[r.row[t]]:
            continue
        a = first_of_example[r.example[t]]
        if t - a >= 2:
            spans.append((t, e, a, facts.bos_id is not None and r.ids[a] == facts.bos_id))
    if not spans:
        return
    texts = facts.decode_batch([r.ids[a + 1 if bos else a:t].tolist() for t, e, a, bos in spans])
    heads = facts.decode_batch([r.ids[t:min(t + 8, e + 1)].tolist() for t, e, a, bos in spans])
    merged, kinds, aligned = [], {"reply_start_masked": 0, "prompt_end_supervised": 0}, []
    for span, text, head in zip(spans, texts, heads):
        joined, cut = text + head, len(text)
        best = None
        for end_text in facts.prompt_ends:
            j = joined.rfind(end_text, 0, cut + len(end_text))
            if j >= 0 and j + len(end_text) >= cut - 16 and (best is None or abs(j + len(end_text) - cut) < abs(best)):
                best = j + len(end_text) - cut
        if best is None:
            state.boundaries_unchecked += 1
            continue
        state.boundaries_checked += 1
        if best:
            merged.append(span[0])
            kinds["prompt_end_supervised" if best > 0 else "reply_start_masked"] += 1
        else:
            aligned.append((span, text))
    differ = []
    for bos in (False, True):
        group = [(span, text) for span, text in aligned if span[3] == bos]
        if group:
            fresh = facts.encode_batch([text for _, text in group], bos)
            differ += [span[0] for (span, _), ids in zip(group, fresh) if ids != r.ids[span[2]:span[0]].tolist()]
    merged_at, differ_at = np.array(merged, dtype=np.int64), np.array(sorted(differ), dtype=np.int64)
    tally.add("boundary_merge", r.index[r.row[merged_at]], r.pos[merged_at], **kinds)
    tally.add("prompt_tokens_differ", r.index[r.row[differ_at]], r.pos[differ_at])


def _positions(r: Rows, state: State, tally: Tally) -> None:
    T = len(r.ids)
    same_row_prev = np.zeros(T, dtype=bool)
    same_row_prev[1:] = r.row[1:] == r.row[:-1]
    if r.position_ids is not None:
        p = r.position_ids
        prev = np.full(T, -2, dtype=np.int64)
        prev[1:] = p[:-1]
        bad = np.where(same_row_prev, (p != 0) & (p != prev + 1), p != 0)
        tally.add("positions_invalid", *r.where(bad))
    if r.seq_lengths is not None:
        bad_rows = [i for i, parts in enumerate(r.seq_lengths) if sum(parts or ()) != r.lengths[i]]
        if r.position_ids is not None:
            restarts = r.per_row(r.position_ids == 0)
            bad_rows += [i for i, parts in enumerate(r.seq_lengths) if len(parts or ()) != restarts[i]]
        tally.add("seq_lengths_invalid", r.index[sorted(set(bad_rows))])
    # packed examples, seen by their opening tokens recurring inside a row
    evidence = np.zeros(T, dtype=bool)
    opening = state.opening
    if opening is not None and len(opening):
        k = len(opening)
        hit = np.ones(T, dtype=bool)
        for j in range(k):
            hit[:T - j] &= r.ids[j:] == opening[j]
            hit[max(T - j, 0):] = False
        room = (r.pos + k) <= r.lengths[r.row]
        evidence |= hit & room & (r.pos > 0)
    if state.facts.tokenizer is not None and state.facts.bos_id is not None and \
            state.facts.bos_id not in state.facts.end_ids:  # GPT-2's BOS is its EOS, which ends every row
        evidence |= (r.ids == state.facts.bos_id) & (r.pos > 0)
    if not evidence.any():
        return
    if r.segment_start is not None:  # neat packing: the segment ids alone decide what attends to what
        tally.add("positions_not_restarting", *r.where(evidence & ~r.segment_start))
    elif r.position_ids is not None or r.seq_lengths is not None:
        tally.add("positions_not_restarting", *r.where(evidence & ~r.example_start))
    else:
        tally.add("packed_without_boundaries", *r.where(evidence))


def _attention(r: Rows, tally: Tally) -> None:
    if r.attention is None:
        return
    att = r.attention
    ones_at = np.where(att != 0, r.pos, -1)
    last_one = np.full(len(r.lengths), -1, dtype=np.int64)
    np.maximum.at(last_one, r.row, ones_at)
    zero = att == 0
    tally.add("attention_zeros", *r.where(zero & (r.pos < last_one[r.row])))
    trailing = zero & (r.pos > last_one[r.row])
    tally.add("padded_rows", *r.where(trailing), count=int(trailing.sum()))
    tally.add("supervised_padding", *r.where(zero & r.sup))


def finish(state: State, tally: Tally, inferred_limit: bool) -> int | None:
    """The set-level decisions after the last batch: duplicates and truncation spikes. Returns the maximum
    length the truncation check used (given or inferred), or None."""
    if state.hashes:
        hashes = np.concatenate(state.hashes[0::2])
        index = np.concatenate(state.hashes[1::2]).astype(np.int64)
        _, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
        dup = np.flatnonzero(first[inverse] != np.arange(len(hashes)))
        tally.add("duplicate_rows", index[dup])
        if len(dup):
            tally.found["duplicate_rows"].detail["of"] = [int(index[first[inverse[d]]]) for d in dup[:EXAMPLES]]
    hist = state.length_hist
    limit = state.max_length
    if limit is None and inferred_limit and len(hist) > 1:
        limit = len(hist) - 1
    if not limit or not state.end_at_length:
        return limit
    ends = np.concatenate(state.end_at_length)
    at = ends[ends[:, 0] == limit]
    if not len(at):
        return limit
    # a spike at the limit among examples that end with a supervised end marker (natural endings spread evenly)
    ending = np.bincount(ends[:, 0], minlength=limit + 1)
    near = ending[max(limit - 8, 1):limit]
    if len(at) >= 3 and len(at) > 3 * float(near.mean() if len(near) else 0) + 2:
        tally.add("truncated_with_end", at[:, 1], at[:, 2])
    return limit
