"""Next-token prediction and decoding, written out by hand for a decoder-only (causal) model.

Everything here is what ``model.generate`` does, spelled out in a few lines so it can be read and
drawn; ``tests/test_generate.py`` checks each function against the library:

- :func:`next_token_distribution` — the model's probabilities for the next token (a table).
- :func:`token_losses` — the cross-entropy of every target token from ONE forward pass
  (logits shifted by one, prompt positions labelled ``-100``); its mean is ``model(labels=...).loss``.
- :func:`greedy_decode` / :func:`sample_decode` — the token-by-token loop (with or without the
  KV cache); :func:`warp_logits` is temperature → top-k → top-p, in ``generate``'s order.
- :func:`beam_search` — beam search with ``generate(num_beams=...)``'s exact rules, returning every
  step so that the beam tree can be drawn.
- :func:`sequence_logprobs` — score a given continuation: the log-probability of each of its tokens
  (one teacher-forced forward pass); their sum is the sequence's log-probability, what beam search
  maximises.
- :func:`teacher_forcing_vs_free_running` / :func:`first_divergence` — the same prefix continued with
  the true tokens fed at every step vs the model's own tokens fed back (exposure bias).
- :func:`complete` / :func:`chat` — the two API styles: a string the model continues vs a list of
  messages that the tokenizer's chat template turns into that string.

Example::

    >>> from utils.models import load_causal_lm, load_tokenizer
    >>> model, tok = load_causal_lm(), load_tokenizer()
    >>> next_token_distribution(model, tok, "今天天气真", k=3).token.iloc[0]
    '好'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, Union

import pandas as pd
import torch
import torch.nn.functional as F

from utils.encode import IGNORE_INDEX
from utils.viz.tokens import visible_token_text

__all__ = [
    "BeamCandidate", "BeamHypothesis", "BeamSearchResult", "DecodeStep", "Decoding",
    "beam_search", "cache_arg", "chat", "chat_prompt_ids", "complete", "first_divergence", "generation_kwargs",
    "greedy_decode", "kv_cache", "labels_after_prompt", "next_token_distribution", "prompt_ids", "sample_decode",
    "sequence_logprobs", "teacher_forcing_vs_free_running", "token_label", "token_labels",
    "token_losses", "warp_logits",
]

Prompt = Union[str, Sequence[int], torch.Tensor]


# --------------------------------------------------------------------------- the KV cache, by either name

def kv_cache(outputs):
    """The KV cache a forward pass returned: ``outputs.cache`` from transformers 5.24,
    ``outputs.past_key_values`` before (5.24 keeps the old name as an alias).

    >>> from utils.models import load_causal_lm, load_tokenizer
    >>> model, tok = load_causal_lm(), load_tokenizer()
    >>> ids = tok("你好", return_tensors="pt").input_ids
    >>> kv_cache(model(input_ids=ids, use_cache=True)).get_seq_length() == ids.shape[1]
    True
    """
    cache = getattr(outputs, "cache", None)
    return cache if cache is not None else getattr(outputs, "past_key_values", None)


def cache_arg(model, cache) -> dict:
    """The keyword that hands ``cache`` back to ``model``'s forward: ``{"cache": cache}`` where the
    forward takes ``cache`` (transformers 5.24+), else ``{"past_key_values": cache}`` (earlier 5.x).
    Use as ``model(input_ids=..., use_cache=True, **cache_arg(model, cache))``."""
    import inspect

    params = inspect.signature(model.forward).parameters
    return {"cache" if "cache" in params else "past_key_values": cache}


# --------------------------------------------------------------------------- helpers

def token_label(tokenizer, token_id: int) -> str:
    """Readable text of one token, spaces and newlines made visible (the course's one convention,
    :func:`utils.viz.data_plots.visible_token_text`).

    >>> token_label(tok, tok(" road", add_special_tokens=False).input_ids[0])   # doctest: +SKIP
    '·road'
    """
    text = tokenizer.decode([int(token_id)])
    if "\ufffd" in text:   # a piece of a multi-byte character (byte-level BPE): show its bytes
        return _byte_label(tokenizer, int(token_id)) or text
    return visible_token_text(text)


PIECE_MARKS = "①②③④"


def token_labels(tokenizer, ids: Sequence[int]) -> list[str]:
    """Readable labels for a SEQUENCE of ids: like :func:`token_label`, but a token that holds only
    part of a character's UTF-8 bytes (byte-level BPE splits rare characters) is labelled with that
    character and which piece it is, e.g. ``猫①`` ``猫②`` instead of ``<0xE7><0x8C>`` ``<0xAB>``.

    >>> token_labels(tok, tok("一只猫").input_ids)   # doctest: +SKIP
    ['<s>', '一', '只①', '只②', '猫①', '猫②']
    """
    pieces = [_token_bytes(tokenizer, int(i)) for i in ids]
    labels = [token_label(tokenizer, int(i)) for i in ids]
    stream = b"".join(p for p in pieces if p is not None)
    owner: list[tuple[str, int]] = []        # for each byte of the stream: (its character, its byte index)
    pos = 0
    while pos < len(stream):
        for size in (1, 2, 3, 4):
            try:
                ch = stream[pos:pos + size].decode("utf-8")
            except UnicodeDecodeError:
                continue
            owner += [(ch, pos)] * size
            pos += size
            break
        else:   # not valid UTF-8: leave the byte labels as they are
            return labels
    offset = 0
    for k, piece in enumerate(pieces):
        if piece is None:
            continue
        span = owner[offset:offset + len(piece)]
        starts = {start for _, start in span}
        split = [start for start in starts if any(o[1] == start for o in owner[:offset])
                 or any(o[1] == start for o in owner[offset + len(piece):])]
        if split:   # this token shares a character with a neighbour: name the character and the piece
            parts = []
            for start in sorted(starts):
                ch = next(c for c, st in span if st == start)
                if start in split:
                    first = next(j for j, o in enumerate(owner) if o[1] == start)
                    n_before = len({_token_index(pieces, b) for b in range(first, offset)})
                    parts.append(ch + PIECE_MARKS[min(n_before, len(PIECE_MARKS) - 1)])
                else:
                    parts.append(ch)
            labels[k] = visible_token_text("".join(parts))
        offset += len(piece)
    return labels


def _token_index(pieces: list[bytes | None], byte_pos: int) -> int:
    """Which token holds byte ``byte_pos`` of the concatenated stream."""
    offset = 0
    for k, piece in enumerate(pieces):
        if piece is None:
            continue
        if byte_pos < offset + len(piece):
            return k
        offset += len(piece)
    return len(pieces)


def _token_bytes(tokenizer, token_id: int) -> bytes | None:
    """The UTF-8 bytes a token stands for (None for special tokens)."""
    if token_id in tokenizer.all_special_ids:
        return None
    label = _byte_label(tokenizer, token_id)
    if label is not None:
        return bytes(int(h, 16) for h in label.replace("<0x", " ").replace(">", " ").split())
    return tokenizer.decode([token_id]).encode("utf-8")


def _byte_label(tokenizer, token_id: int) -> str | None:
    """``<0xE5><0xA4>`` for a byte-level token that is not a whole character (None if not byte-level)."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    piece = tokenizer.convert_ids_to_tokens(token_id)
    if piece.startswith("<0x"):                          # SentencePiece byte fallback: already bytes
        return piece
    to_byte = {ch: b for b, ch in bytes_to_unicode().items()}
    if not all(ch in to_byte for ch in piece):
        return None
    return "".join(f"<0x{to_byte[ch]:02X}>" for ch in piece)


def prompt_ids(tokenizer, prompt: Prompt) -> torch.Tensor:
    """The prompt as a ``(1, T)`` tensor of ids; ids are used as given. Text is tokenized with the
    tokenizer's special tokens (the tiny tokenizer adds BOS) unless it already starts with the BOS text,
    as a chat template's output may: a prompt gets one BOS, never two."""
    if isinstance(prompt, str):
        bos = tokenizer.bos_token
        add_special = not (bos and prompt.startswith(bos))
        ids = tokenizer(prompt, add_special_tokens=add_special, return_tensors="pt")["input_ids"]
    else:
        ids = torch.as_tensor(prompt, dtype=torch.long).reshape(1, -1)
    if ids.shape[1] == 0:
        raise ValueError("the prompt is empty: a causal model needs at least one token to condition on")
    return ids


@torch.no_grad()
def _last_logits(model, ids: torch.Tensor) -> torch.Tensor:
    return model(input_ids=ids).logits[0, -1].float()


# --------------------------------------------------------------------------- next-token distribution

@torch.no_grad()
def next_token_distribution(model, tokenizer, text: Prompt, k: int = 10) -> pd.DataFrame:
    """The ``k`` most probable next tokens after ``text``: columns ``token``, ``id``, ``prob``.

    >>> next_token_distribution(model, tok, "The chicken crossed the", k=2)   # doctest: +SKIP
        token   id   prob
    0   ·road  ...   0.9...
    """
    probs = torch.softmax(_last_logits(model, prompt_ids(tokenizer, text)), dim=-1)
    top = torch.topk(probs, k=min(k, probs.numel()))
    ids = top.indices.tolist()
    return pd.DataFrame({"token": [token_label(tokenizer, i) for i in ids], "id": ids,
                         "prob": top.values.tolist()})


# --------------------------------------------------------------------------- training loss

def labels_after_prompt(tokenizer, text: str, prompt: str = "") -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, labels)`` for ``text`` with the prompt's positions labelled ``-100``.

    Labels are NOT shifted (the model shifts them), exactly like ``model(input_ids, labels=labels)``
    expects. The prompt must tokenize to a prefix of the text's ids, else a ``ValueError`` says where.

    >>> ids, labels = labels_after_prompt(tok, "今天天气真好，我们出去看电影吧", "今天天气真好，")  # doctest: +SKIP
    """
    if not text.startswith(prompt):
        raise ValueError(f"text {text!r} does not start with the prompt {prompt!r}")
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    n_prompt = 0    # without a prompt every token is a label (the first one, e.g. BOS, is never a target)
    if prompt:
        p_ids = tokenizer(prompt)["input_ids"]
        n_prompt = len(p_ids)
        if ids[0, :n_prompt].tolist() != p_ids:
            raise ValueError(f"the prompt {prompt!r} tokenizes to {p_ids}, which is not a prefix of the "
                             f"text's ids {ids[0].tolist()}: a token merges across the boundary")
    labels = ids.clone()
    labels[:, :n_prompt] = IGNORE_INDEX
    return ids, labels


@torch.no_grad()
def token_losses(model, tokenizer, text: str, prompt: str = "") -> pd.DataFrame:
    """Cross-entropy of every target token of ``text``, from ONE forward pass.

    The logits at position ``t`` predict token ``t+1``: shift logits left and labels right, drop the
    ``-100`` positions. One row per target token: ``position`` (its index in ``input_ids``),
    ``context`` (the text before it), ``token``, ``id``, ``prob`` (the model's probability of it) and
    ``loss`` (``-log prob``). ``table.loss.mean()`` equals ``model(input_ids, labels=labels).loss``.

    >>> token_losses(model, tok, "今天天气真好，我们出去看电影吧", prompt="今天天气真好，")  # doctest: +SKIP
    """
    ids, labels = labels_after_prompt(tokenizer, text, prompt)
    logits = model(input_ids=ids).logits[0].float()
    shift_logits, shift_labels = logits[:-1], labels[0, 1:]
    losses = F.cross_entropy(shift_logits, shift_labels, ignore_index=IGNORE_INDEX, reduction="none")
    rows = []
    for i in range(len(shift_labels)):
        if shift_labels[i] == IGNORE_INDEX:
            continue
        target = int(shift_labels[i])
        rows.append({"position": i + 1,
                     "context": tokenizer.decode(ids[0, : i + 1], skip_special_tokens=True),
                     "token": token_label(tokenizer, target), "id": target,
                     "prob": float(torch.exp(-losses[i])), "loss": float(losses[i])})
    if not rows:
        raise ValueError(f"no target tokens: the prompt {prompt!r} covers all of {text!r}")
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- token-by-token decoding

@dataclass
class DecodeStep:
    """One step of a decoding loop: the chosen token and the model's top alternatives."""

    step: int
    token_id: int
    token: str
    prob: float                       # the model's probability of the chosen token (no warping)
    top: list[tuple[str, float]]      # the model's most probable tokens at this step


@dataclass
class Decoding:
    """The result of :func:`greedy_decode` / :func:`sample_decode`."""

    prompt_ids: list[int]
    new_ids: list[int]
    text: str                         # the decoded new tokens (special tokens dropped)
    stopped_at_eos: bool
    steps: list[DecodeStep] = field(default_factory=list)

    def table(self) -> pd.DataFrame:
        """One row per step: ``step``, ``token``, ``id``, ``prob``, ``alternatives``."""
        return pd.DataFrame([{"step": s.step, "token": s.token, "id": s.token_id,
                              "prob": round(s.prob, 4),
                              "alternatives": "  ".join(f"{t} {p:.2f}" for t, p in s.top[1:])}
                             for s in self.steps])


@torch.no_grad()
def _decode_loop(model, tokenizer, prompt: Prompt, choose: Callable[[torch.Tensor], int],
                 max_new_tokens: int, use_cache: bool, eos_token_id: int | None, top: int) -> Decoding:
    ids = prompt_ids(tokenizer, prompt)
    eos = tokenizer.eos_token_id if eos_token_id is None else eos_token_id
    generated: list[int] = []
    steps: list[DecodeStep] = []
    cache = None
    step_input = ids
    for step in range(1, max_new_tokens + 1):
        if use_cache:   # feed only the new token; keys/values of earlier ones come from the cache
            out = model(input_ids=step_input, use_cache=True, **cache_arg(model, cache))
            cache = kv_cache(out)
        else:           # run the whole sequence again
            out = model(input_ids=step_input, use_cache=False)
        logits = out.logits[0, -1].float()
        next_id = choose(logits)
        probs = torch.softmax(logits, dim=-1)
        best = torch.topk(probs, k=min(top, probs.numel()))
        steps.append(DecodeStep(step, next_id, token_label(tokenizer, next_id), float(probs[next_id]),
                                [(token_label(tokenizer, i), float(p))
                                 for i, p in zip(best.indices.tolist(), best.values.tolist())]))
        generated.append(next_id)
        if next_id == eos:
            break
        new = torch.tensor([[next_id]])
        step_input = new if use_cache else torch.cat([step_input, new], dim=1)
    return Decoding(ids[0].tolist(), generated, tokenizer.decode(generated, skip_special_tokens=True),
                    bool(generated and generated[-1] == eos), steps)


def greedy_decode(model, tokenizer, prompt: Prompt, max_new_tokens: int = 20, use_cache: bool = True,
                  eos_token_id: int | None = None, top: int = 3) -> Decoding:
    """Greedy decoding by hand: pick the most probable token, append it, run again; stop at EOS.

    Gives the same tokens as ``model.generate(do_sample=False, max_new_tokens=...)``.

    >>> greedy_decode(model, tok, "今天天气真", max_new_tokens=5).text   # doctest: +SKIP
    """
    return _decode_loop(model, tokenizer, prompt, lambda logits: int(torch.argmax(logits)),
                        max_new_tokens, use_cache, eos_token_id, top)


def warp_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None) -> torch.Tensor:
    """Temperature, then top-k, then top-p (nucleus) filtering, in the order ``generate`` applies them.

    Removed tokens get ``-inf``. Top-p keeps the smallest set of most probable tokens whose
    probabilities add up to at least ``top_p`` (always at least one token).

    >>> warp_logits(torch.tensor([2.0, 1.0, 0.0]), top_k=2)
    tensor([2., 1., -inf])
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature} (use greedy_decode for argmax)")
    logits = logits / temperature if temperature != 1.0 else logits.clone()
    if top_k:
        kth_best = torch.topk(logits, min(top_k, logits.shape[-1])).values[..., -1, None]
        logits = logits.masked_fill(logits < kth_best, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=False)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove_sorted = cumulative <= (1 - top_p)     # the improbable tail whose mass is <= 1 - top_p
        remove_sorted[..., -1:] = False                # keep the most probable token
        remove = remove_sorted.scatter(-1, order, remove_sorted)
        logits = logits.masked_fill(remove, float("-inf"))
    return logits


def sample_decode(model, tokenizer, prompt: Prompt, max_new_tokens: int = 20, temperature: float = 1.0,
                  top_k: int | None = None, top_p: float | None = None,
                  generator: torch.Generator | None = None, use_cache: bool = True,
                  eos_token_id: int | None = None, top: int = 3) -> Decoding:
    """Sampling by hand: warp the logits (:func:`warp_logits`), draw from the softmax, append, repeat.

    Pass a seeded ``torch.Generator`` for reproducible draws. With
    ``torch.Generator().manual_seed(s)`` it draws the same tokens as ``torch.manual_seed(s)`` followed
    by ``model.generate(do_sample=True, temperature=..., top_k=top_k or 0, top_p=top_p or 1.0)``
    (note ``generate``'s default ``top_k`` is 50, ours is no top-k).

    >>> sample_decode(model, tok, "今天", temperature=0.8, generator=torch.Generator().manual_seed(0)).text  # doctest: +SKIP
    """
    def choose(logits: torch.Tensor) -> int:
        probs = torch.softmax(warp_logits(logits[None], temperature, top_k, top_p), dim=-1)
        return int(torch.multinomial(probs, num_samples=1, generator=generator)[0, 0])

    return _decode_loop(model, tokenizer, prompt, choose, max_new_tokens, use_cache, eos_token_id, top)


# --------------------------------------------------------------------------- beam search

@dataclass
class BeamCandidate:
    """One continuation considered at a step: ``parent`` is the slot of the beam it extends."""

    step: int
    parent: int
    token_id: int
    token: str
    logprob: float       # log p(token | beam)
    score: float         # the beam's summed log-probability including this token
    status: str          # "kept" (a running beam next step), "finished" (ended, stored), "dropped"
    slot: int = -1       # its slot among the running beams of the next step ("kept" only)


@dataclass
class BeamHypothesis:
    """A finished sequence: ``score = sum_logprob / len(new_ids) ** length_penalty``."""

    new_ids: list[int]
    text: str
    sum_logprob: float
    score: float


@dataclass
class BeamSearchResult:
    prompt_ids: list[int]
    hypotheses: list[BeamHypothesis]           # best first (what generate returns, in order)
    steps: list[list[BeamCandidate]]           # steps[t]: the candidates considered at step t+1

    def table(self) -> pd.DataFrame:
        """One row per finished hypothesis."""
        return pd.DataFrame([{"rank": i + 1, "text": h.text, "tokens": len(h.new_ids),
                              "sum_logprob": round(h.sum_logprob, 4), "score": round(h.score, 4)}
                             for i, h in enumerate(self.hypotheses)])


@torch.no_grad()
def beam_search(model, tokenizer, prompt: Prompt, num_beams: int = 3, max_new_tokens: int = 10,
                length_penalty: float = 1.0, early_stopping: bool | str = False,
                eos_token_id: int | None = None) -> BeamSearchResult:
    """Beam search by hand, with the rules of ``model.generate(num_beams=..., do_sample=False)``.

    At every step each running beam is extended by every token; the ``2 * num_beams`` best
    continuations by summed log-probability are considered, best first:

    - one that ends (EOS, or the ``max_new_tokens``-th token) is *finished* if it is among the best
      ``num_beams`` candidates of the step; its score is ``sum_logprob / n_new_tokens **
      length_penalty`` (EOS counted) and the best ``num_beams`` finished hypotheses are kept;
    - the best ``num_beams`` that do not end become the running beams of the next step.

    Stopping (``early_stopping``): ``True`` stops once ``num_beams`` hypotheses are finished;
    ``False`` (the default) stops when they are finished and the best running beam, scored as if
    it ended now, cannot beat the worst of them; ``"never"`` does the same but, for
    ``length_penalty > 0``, scores the running beam as if it ended at ``max_new_tokens``.
    Returns the hypotheses best first and every step's candidates (for drawing the tree).

    >>> beam_search(model, tok, "The chicken crossed the", num_beams=2, max_new_tokens=4).hypotheses[0].text  # doctest: +SKIP
    """
    if num_beams < 1:
        raise ValueError(f"num_beams must be >= 1, got {num_beams}")
    ids = prompt_ids(tokenizer, prompt)
    eos = tokenizer.eos_token_id if eos_token_id is None else eos_token_id
    running: list[tuple[list[int], float]] = [([], 0.0)]    # (new ids, summed log-prob)
    finished: list[BeamHypothesis] = []
    improvement_possible = True
    steps: list[list[BeamCandidate]] = []
    for t in range(max_new_tokens):
        batch = torch.cat([ids.repeat(len(running), 1),
                           torch.tensor([r[0] for r in running], dtype=torch.long).reshape(len(running), t)],
                          dim=1)
        logprobs = F.log_softmax(model(input_ids=batch).logits[:, -1].float(), dim=-1)
        scores = logprobs + torch.tensor([r[1] for r in running])[:, None]
        vocab = scores.shape[1]
        top = torch.topk(scores.reshape(-1), k=min(2 * num_beams, scores.numel()))
        n_new = t + 1
        last_step = n_new == max_new_tokens
        full = len(finished) == num_beams
        next_running: list[tuple[list[int], float]] = []
        candidates: list[BeamCandidate] = []
        new_hyps: dict[int, BeamHypothesis] = {}           # candidate index -> its hypothesis
        for rank, (score, flat) in enumerate(zip(top.values.tolist(), top.indices.tolist())):
            parent, token = divmod(flat, vocab)
            cand = BeamCandidate(n_new, parent, token, token_label(tokenizer, token),
                                 float(logprobs[parent, token]), score, "dropped")
            if token == eos or last_step:
                if rank < num_beams and improvement_possible and not (early_stopping is True and full):
                    hyp_ids = running[parent][0] + [token]
                    new_hyps[rank] = BeamHypothesis(hyp_ids, tokenizer.decode(hyp_ids, skip_special_tokens=True),
                                                    score, score / n_new ** length_penalty)
            elif len(next_running) < num_beams:
                cand.status, cand.slot = "kept", len(next_running)
                next_running.append((running[parent][0] + [token], score))
            candidates.append(cand)
        # keep the best num_beams finished hypotheses (earlier ones win ties, as in generate)
        finished = sorted(finished + list(new_hyps.values()), key=lambda h: -h.score)[:num_beams]
        for rank, hyp in new_hyps.items():
            if any(h is hyp for h in finished):
                candidates[rank].status = "finished"
        steps.append(candidates)
        running = next_running
        if last_step or not running:
            break
        if len(finished) == num_beams:
            if early_stopping is True:
                break
            best_len = max_new_tokens if (early_stopping == "never" and length_penalty > 0) else n_new
            best_possible = running[0][1] / best_len ** length_penalty
            improvement_possible = improvement_possible and best_possible > finished[-1].score
            if not improvement_possible:
                break
    return BeamSearchResult(ids[0].tolist(), finished, steps)


# --------------------------------------------------------------------------- scoring a continuation

@torch.no_grad()
def sequence_logprobs(model, tokenizer, prompt: Prompt, new_ids: Sequence[int]) -> pd.DataFrame:
    """The log-probability of every token of a continuation ``new_ids`` of ``prompt``.

    One forward pass over ``prompt + new_ids`` (teacher forcing): the logits at position ``t`` give
    ``log p(token t+1 | tokens <= t)``. One row per new token: ``step`` (1, 2, ...), ``token`` (its
    :func:`token_labels` label in the sequence, e.g. ``户①`` for a byte piece of 户), ``id``,
    ``logprob``, ``prob``; ``table.logprob.sum()`` is the continuation's log-probability, the quantity
    beam search maximises (``BeamHypothesis.sum_logprob``).

    >>> sequence_logprobs(model, tok, "The chicken crossed the", [tok(" road").input_ids[1]])  # doctest: +SKIP
       step  token   id  logprob  prob
    0     1  ·road  619   -0.017  0.98
    """
    ids = prompt_ids(tokenizer, prompt)
    new = [int(i) for i in new_ids]
    if not new:
        raise ValueError("new_ids is empty: there is no continuation to score")
    full = torch.cat([ids, torch.tensor([new], dtype=torch.long)], dim=1)
    logp = F.log_softmax(model(input_ids=full).logits[0].float(), dim=-1)
    n = ids.shape[1]
    labels = token_labels(tokenizer, ids[0].tolist() + new)[n:]   # a byte piece is named after its character
    rows = [{"step": k + 1, "token": labels[k], "id": i,
             "logprob": float(logp[n - 1 + k, i]), "prob": float(logp[n - 1 + k, i].exp())}
            for k, i in enumerate(new)]
    return pd.DataFrame(rows)


def first_divergence(a: Sequence[int], b: Sequence[int]) -> int | None:
    """The first index where two id sequences differ (None if one is a prefix of the other).

    >>> first_divergence([5, 6, 7], [5, 6, 9])
    2
    >>> first_divergence([5, 6], [5, 6, 7]) is None
    True
    """
    return next((k for k, (x, y) in enumerate(zip(a, b)) if int(x) != int(y)), None)


@torch.no_grad()
def teacher_forcing_vs_free_running(model, tokenizer, prompt: Prompt, reference: Union[str, Sequence[int]],
                                    max_new_tokens: int | None = None) -> pd.DataFrame:
    """Continue ``prompt`` two ways, step by step, against a ``reference`` continuation.

    - teacher forcing: at step ``k`` the model is fed the prompt and the first ``k-1`` TRUE tokens
      (one forward pass over ``prompt + reference``, as in training);
    - free running: it is fed its own greedy outputs (``greedy_decode``, as in generation).

    ``reference`` is text that follows the prompt (tokenized without special tokens) or ids. One row per
    step: ``step``, ``true`` (the reference token of this step), ``tf_fed`` (the token teacher forcing
    was fed last: the previous TRUE token; the prompt's last token at step 1), ``tf_pred`` and ``tf_ok``
    (its prediction, whether it is the true token), ``fr_fed`` (free running's last input: its OWN
    previous output), ``fr_pred`` and ``fr_ok``. Up to the first divergence (:func:`first_divergence`)
    both are fed the same tokens and predict the same. Free running does not stop at EOS here, so that
    both have one prediction per reference token.

    >>> teacher_forcing_vs_free_running(model, tok, "今天", "天气真好")   # doctest: +SKIP
    """
    ids = prompt_ids(tokenizer, prompt)
    if isinstance(reference, str):
        ref = tokenizer(reference, add_special_tokens=False)["input_ids"]
    else:
        ref = [int(i) for i in reference]
    if max_new_tokens is not None:
        ref = ref[:max_new_tokens]
    if not ref:
        raise ValueError("the reference continuation is empty")
    full = torch.cat([ids, torch.tensor([ref], dtype=torch.long)], dim=1)
    tf_pred = model(input_ids=full).logits[0, ids.shape[1] - 1:-1].float().argmax(-1).tolist()
    free = greedy_decode(model, tokenizer, ids, max_new_tokens=len(ref), eos_token_id=-1).new_ids
    last = int(ids[0, -1])
    tf_fed, fr_fed = [last] + ref[:-1], [last] + free[:-1]
    label = lambda i: token_label(tokenizer, i)   # noqa: E731
    return pd.DataFrame([{"step": k + 1, "true": label(ref[k]),
                          "tf_fed": label(tf_fed[k]), "tf_pred": label(tf_pred[k]), "tf_ok": tf_pred[k] == ref[k],
                          "fr_fed": label(fr_fed[k]), "fr_pred": label(free[k]), "fr_ok": free[k] == ref[k]}
                         for k in range(len(ref))])


# --------------------------------------------------------------------------- the two API styles

def generation_kwargs(model, tokenizer, **gen: Any) -> dict:
    """``generate()`` arguments with the special-token ids set explicitly (pad falls back to EOS);
    greedy with ``max_new_tokens=40`` unless ``gen`` says otherwise."""
    kwargs = {"max_new_tokens": 40, "do_sample": False,
              "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None
              else tokenizer.eos_token_id,
              "eos_token_id": tokenizer.eos_token_id}
    if tokenizer.bos_token_id is not None:
        kwargs["bos_token_id"] = tokenizer.bos_token_id
    kwargs.update(gen)
    return kwargs


@torch.no_grad()
def complete(model, tokenizer, prompt: str, **gen: Any) -> str:
    """Completion style: the model continues one string; returns only the new text.

    >>> complete(model, tok, "How are you?", max_new_tokens=12)   # doctest: +SKIP
    ' Hope this email finds you well...'
    """
    ids = prompt_ids(tokenizer, prompt)
    return _generate_text(model, tokenizer, ids, **gen)


def chat_prompt_ids(tokenizer, messages: list[dict]) -> torch.Tensor:
    """The ``(1, T)`` ids a chat request becomes: the chat template's text (with the generation prompt
    that asks for the assistant's reply), tokenized like any text — BOS added by the tokenizer unless
    the template already wrote it."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("this tokenizer has no chat_template: chat() needs one (use complete())")
    return prompt_ids(tokenizer, tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))


@torch.no_grad()
def chat(model, tokenizer, messages: list[dict], **gen: Any) -> str:
    """Chat style: a list of ``{"role", "content"}`` messages, rendered by the tokenizer's chat template
    with ``add_generation_prompt=True``; returns the assistant's reply text.

    >>> chat(chat_model, tok, [{"role": "user", "content": "1+1=?"}])   # doctest: +SKIP
    """
    return _generate_text(model, tokenizer, chat_prompt_ids(tokenizer, messages), **gen).strip()


def _generate_text(model, tokenizer, ids: torch.Tensor, **gen: Any) -> str:
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                         **generation_kwargs(model, tokenizer, **gen))
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
