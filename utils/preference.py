"""Preference data (DPO / ORPO / KTO): one prompt, the answers, the same segments as SFT.

A preference record (:mod:`utils.formats`, kind ``preference``) is a prompt with a chosen and a rejected
answer; a KTO record (kind ``kto``) a prompt with one completion and a true/false ``label``. Both are
encoded exactly like an SFT conversation -- ``prompt + [answer]`` through
:func:`utils.encode.encode_batch`, i.e. :func:`utils.templates.segments` of the template -- and then
split where the answer's segment starts:

- ``prompt_ids``: every id before the answer's first supervised token: the whole prompt (system, earlier
  turns, their replies too: in a preference row only the answer is trained), exactly the ids inference
  gives the model (contract rule 3), and **identical for the chosen and the rejected answer** (checked);
- ``chosen_ids`` / ``rejected_ids`` / ``completion_ids``: the answer's supervised tokens, its end marker
  included (rule 2), nothing else. Text the template writes only because the conversation ends (e.g. the
  ``"\\n"`` after ChatML's ``<|im_end|>``) is not part of the answer and is left out (counted in
  ``closing_tokens``).

Output columns are the ones TRL's trainers build and their collators take (TRL 1.16:
``DataCollatorForPreference`` reads ``prompt_ids``, ``chosen_ids``, ``rejected_ids``;
``DataCollatorForUnpairedPreference`` reads ``prompt_ids``, ``completion_ids``, ``label``), so the
masks TRL computes from them (``completion_mask``: 0 on the prompt, 1 on the answer) are ours. Why not
give TRL the conversational columns and let it tokenize? Because TRL tokenizes ``prompt + answer``
through ``apply_chat_template`` and takes the answer to be everything after the common prefix: the
template's closing text would be trained, text templates (``alpaca``, ``vicuna``) would not be used at all
(plain strings are concatenated raw, with an EOS appended), and a boundary merge moves the cut into the
prompt (TRL warns that the prompt then differs from inference). TRL 1.16 re-tokenizes every dataset it is
given, so :func:`trl_trainer` returns the trainer class with that step skipped for rows that are
already tokenized (the KTO mismatched-pair ``KL_completion_ids`` are still added by TRL's own rule).

Over-long rows (``max_length`` counts prompt + the longer answer): ``truncation="drop"`` (default)
drops the record; ``"truncate"`` keeps the prompt whole and cuts the answers (a cut answer loses its end
marker, as in :mod:`utils.encode`); a prompt that leaves no room for one answer token is dropped.

Example:
    >>> from utils.models import load_tokenizer
    >>> tok = load_tokenizer()
    >>> pair = {"prompt": "2+2?", "chosen": "4", "rejected": "5"}
    >>> row = encode_preference(pair, tok, "human_assistant")
    >>> tok.decode(row["prompt_ids"]), tok.decode(row["chosen_ids"]), tok.decode(row["rejected_ids"])
    ('<s>human: 2+2?\\nassistant:', ' 4</s>', ' 5</s>')
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from utils.encode import IGNORE_INDEX, EncodeError, check_options, encode_batch
from utils.formats import RecordError, check_record
from utils.templates import TemplateLike, get_template

__all__ = ["PreferenceResult", "encode_preference", "encode_kto", "encode_preference_dataset", "trl_trainer",
           "PREFERENCE_COLUMNS", "KTO_COLUMNS"]

PREFERENCE_COLUMNS = ("prompt_ids", "chosen_ids", "rejected_ids")
"""Columns of an encoded preference row (TRL's ``DPOTrainer`` after tokenization)."""
KTO_COLUMNS = ("prompt_ids", "completion_ids", "label")
"""Columns of an encoded KTO row (TRL's ``KTOTrainer`` after tokenization)."""

_ANSWERS = {"preference": ("chosen", "rejected"), "kto": ("completion",)}


def _encode_options(chat_template_kwargs: Mapping | None) -> dict:
    """Keyword arguments for :func:`utils.encode.encode_batch`: ``chat_template_kwargs`` only when given."""
    if not chat_template_kwargs:
        return {}
    if "chat_template_kwargs" not in inspect.signature(encode_batch).parameters:
        raise TypeError("chat_template_kwargs is not supported by this version of utils.encode")
    return {"chat_template_kwargs": dict(chat_template_kwargs)}


def _normalized(example: Mapping[str, Any], kind: str) -> dict:
    """``example`` in the normalized form of ``kind`` (already-normalized records pass unchanged)."""
    _, out = check_record(example, kind)
    return out[0]


def _field(name: str, prompt_length: int, side: str) -> str:
    """A field of the joined conversation (``messages[i]...``) named in the record (``prompt[i]``, ``chosen[0]``)."""
    m = re.match(r"messages\[(\d+)\](.*)", name, re.S)
    if not m:
        return name
    i = int(m.group(1))
    return f"prompt[{i}]{m.group(2)}" if i < prompt_length else f"{side}[{i - prompt_length}]{m.group(2)}"


def _answer_span(labels: list[int]) -> tuple[int, int]:
    """``(start, end)`` of the last run of supervised labels: the last reply and its end marker."""
    end = len(labels)
    while end and labels[end - 1] == IGNORE_INDEX:
        end -= 1
    start = end
    while start and labels[start - 1] != IGNORE_INDEX:
        start -= 1
    return start, end


@dataclass
class PreferenceResult:
    """What :func:`encode_preference_dataset` returns: the rows and what happened to the records.

    ``records`` in, ``rows`` out, ``dropped`` (too long), ``truncated`` (answers cut), ``invalid`` (records
    refused, each error in ``problems``), ``prompt_tokens`` and ``answer_tokens`` (ids in the rows),
    ``closing_tokens`` (template text after the answers, left out of the rows); for KTO ``desirable`` and
    ``undesirable`` count the labels. :meth:`as_dict` gives the counts for ``stats.json``.
    """

    dataset: Any
    kind: str
    records: int = 0
    rows: int = 0
    dropped: int = 0
    truncated: int = 0
    invalid: int = 0
    prompt_tokens: int = 0
    answer_tokens: int = 0
    closing_tokens: int = 0
    desirable: int = 0
    undesirable: int = 0
    problems: list = field(default_factory=list)
    template: str = ""
    max_length: int | None = None
    truncation: str = "drop"

    def as_dict(self) -> dict:
        keys = ["kind", "records", "rows", "dropped", "invalid", "truncated", "prompt_tokens", "answer_tokens",
                "closing_tokens", "template", "max_length", "truncation"]
        if self.kind == "kto":
            keys[-3:-3] = ["desirable", "undesirable"]
        return {k: getattr(self, k) for k in keys}


def _encode_many(examples: list[Mapping[str, Any]], tokenizer: Any, template: TemplateLike, kind: str,
                 max_length: int | None, truncation: str, on_error: str, start_index: int,
                 problems: list, stats: PreferenceResult | None, chat_template_kwargs: Mapping | None) -> list:
    if kind not in _ANSWERS:
        raise ValueError(f"kind must be 'preference' or 'kto', got {kind!r}")
    check_options(max_length, truncation, on_error)
    answers = _ANSWERS[kind]
    options = _encode_options(chat_template_kwargs)
    records: list[dict | None] = []
    for i, ex in enumerate(examples):
        try:
            records.append(_normalized(ex, kind))
        except RecordError as e:
            if on_error == "raise":
                raise EncodeError(start_index + i, e.field, e.reason) from None
            problems.append(EncodeError(start_index + i, e.field, e.reason))
            records.append(None)
    convs, owners = [], []
    for i, rec in enumerate(records):
        if rec is None:
            continue
        extra = {"tools": rec["tools"]} if "tools" in rec else {}
        for side in answers:
            convs.append({"messages": rec["prompt"] + rec[side], **extra})
            owners.append(i)
    encoded: list = []
    errors: dict[int, EncodeError] = {}
    if convs:
        sub: list = []
        encoded = encode_batch(convs, tokenizer, template, None, "drop", on_error="skip", problems=sub, **options)
        for e in sub:  # e.index is the position in convs: report it at the record's index, with its field
            owner = owners[e.index]
            side = answers[sum(1 for j in range(e.index) if owners[j] == owner)]
            errors.setdefault(owner, EncodeError(start_index + owner, _field(e.field, len(records[owner]["prompt"]),
                                                                             side), e.reason))
    rows: list[dict | None] = []
    k = 0
    for i, rec in enumerate(records):
        if rec is None:
            rows.append(None)
            continue
        parts = encoded[k:k + len(answers)]
        k += len(answers)
        if i in errors:
            if on_error == "raise":
                raise errors[i]
            problems.append(errors[i])
            rows.append(None)
            continue
        prompts, outs, closing = [], [], 0
        for row in parts:
            start, end = _answer_span(row["labels"])
            prompts.append(row["input_ids"][:start])
            outs.append(row["input_ids"][start:end])
            closing += len(row["input_ids"]) - end
        if any(p != prompts[0] for p in prompts[1:]):
            error = EncodeError(start_index + i, "prompt", "the prompt tokenizes differently before the chosen and "
                                                           "the rejected answer (the template renders it differently)")
            if on_error == "raise":
                raise error
            problems.append(error)
            rows.append(None)
            continue
        prompt, cut = prompts[0], False
        if max_length is not None and len(prompt) + max(map(len, outs)) > max_length:
            room = max_length - len(prompt)
            if truncation == "drop" or room < 1:
                rows.append(None)
                if stats is not None:
                    stats.dropped += 1
                continue
            cut = any(len(o) > room for o in outs)
            outs = [o[:room] for o in outs]
        row = {"prompt_ids": prompt, **{f"{side}_ids": o for side, o in zip(answers, outs)}}
        if kind == "kto":
            row["label"] = rec["label"]
        rows.append(row)
        if stats is not None:
            stats.rows += 1
            stats.truncated += cut
            stats.prompt_tokens += len(prompt)
            stats.answer_tokens += sum(map(len, outs))
            stats.closing_tokens += closing
            if kind == "kto":
                stats.desirable += rec["label"]
                stats.undesirable += not rec["label"]
    return rows


def encode_preference(example: Mapping[str, Any], tokenizer: Any, template: TemplateLike,
                      max_length: int | None = None, truncation: str = "drop", *,
                      chat_template_kwargs: Mapping | None = None) -> dict | None:
    """``{prompt_ids, chosen_ids, rejected_ids}`` of one preference record (any form :mod:`utils.formats`
    reads), or None when dropped (too long). Raises :class:`utils.encode.EncodeError` for a bad record.

    >>> from utils.models import load_tokenizer
    >>> tok = load_tokenizer()
    >>> pair = {"prompt": [{"role": "user", "content": "Hi"}], "chosen": [{"role": "assistant", "content": "Hello!"}],
    ...         "rejected": [{"role": "assistant", "content": "Go away."}]}
    >>> row = encode_preference(pair, tok, "chat_template")
    >>> row["chosen_ids"][-1] == row["rejected_ids"][-1] == tok.eos_token_id
    True
    """
    return _encode_many([example], tokenizer, template, "preference", max_length, truncation, "raise", 0, [], None,
                        chat_template_kwargs)[0]


def encode_kto(example: Mapping[str, Any], tokenizer: Any, template: TemplateLike, max_length: int | None = None,
               truncation: str = "drop", *, chat_template_kwargs: Mapping | None = None) -> dict | None:
    """``{prompt_ids, completion_ids, label}`` of one KTO record, or None when dropped (too long).

    >>> from utils.models import load_tokenizer
    >>> tok = load_tokenizer()
    >>> row = encode_kto({"prompt": "2+2?", "completion": "5", "label": False}, tok, "vicuna")
    >>> tok.decode(row["completion_ids"]), row["label"]
    (' 5</s>', False)
    """
    return _encode_many([example], tokenizer, template, "kto", max_length, truncation, "raise", 0, [], None,
                        chat_template_kwargs)[0]


def encode_preference_dataset(data: Iterable[Mapping[str, Any]], tokenizer: Any, template: TemplateLike,
                              kind: str = "preference", max_length: int | None = None, truncation: str = "drop", *,
                              on_error: str = "raise", batch_size: int = 500,
                              chat_template_kwargs: Mapping | None = None) -> PreferenceResult:
    """Encode preference (``kind="preference"``) or KTO (``kind="kto"``) records into a ``datasets.Dataset``
    with the columns :data:`PREFERENCE_COLUMNS` / :data:`KTO_COLUMNS` (int32 lists; ``label`` bool).

    ``data`` is any iterable of records (e.g. :func:`utils.formats.iter_records` with ``kind=...``).
    Bad records raise :class:`utils.encode.EncodeError` or, with ``on_error="skip"``, are counted
    (``invalid``) and listed in ``problems`` with their index in ``data``.

    >>> from utils.models import load_tokenizer
    >>> res = encode_preference_dataset([{"prompt": "2+2?", "chosen": "4", "rejected": "5"}], load_tokenizer(), "alpaca")
    >>> res.rows, res.dataset.column_names
    (1, ['prompt_ids', 'chosen_ids', 'rejected_ids'])
    """
    import datasets

    check_options(max_length, truncation, on_error)  # before reading a stream
    tmpl = get_template(template)
    result = PreferenceResult(dataset=None, kind=kind, template=tmpl.name, max_length=max_length,
                              truncation=truncation)
    ints = datasets.List(datasets.Value("int32"))
    columns = PREFERENCE_COLUMNS if kind == "preference" else KTO_COLUMNS
    features = datasets.Features({c: (datasets.Value("bool") if c == "label" else ints) for c in columns})
    table: dict[str, list] = {c: [] for c in columns}
    batch: list = []

    def flush() -> None:
        rows = _encode_many(batch, tokenizer, tmpl, kind, max_length, truncation, on_error, result.records - len(batch),
                            result.problems, result, chat_template_kwargs)
        for row in rows:
            if row is not None:
                for c in columns:
                    table[c].append(row[c])
        batch.clear()

    for rec in data:
        batch.append(rec)
        result.records += 1
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    result.invalid = len(result.problems)
    result.dataset = datasets.Dataset.from_dict(table, features=features)
    return result


def trl_trainer(kind: str = "dpo"):
    """TRL's ``DPOTrainer`` (``"dpo"``) or ``KTOTrainer`` (``"kto"``), taking our encoded rows as they are.

    TRL 1.16 tokenizes every dataset it is given (its ``_prepare_dataset`` reads ``prompt`` / ``chosen`` /
    ``rejected`` or ``completion`` text). The returned subclass skips that step when the dataset already
    has the tokenized columns, so training sees exactly our ids; KTO's mismatched completions
    (``KL_completion_ids``, TRL's rotation by one within each batch) are still added. Needs ``trl``
    (``pip install -e ".[dev]"``).

    Example:
        >>> DPO = trl_trainer("dpo")  # doctest: +SKIP
        >>> DPO(model=model, args=DPOConfig(...), train_dataset=result.dataset, processing_class=tok)  # doctest: +SKIP
    """
    if kind == "dpo":
        from trl import DPOTrainer as Base

        columns = PREFERENCE_COLUMNS
    elif kind == "kto":
        from trl import KTOTrainer as Base

        columns = KTO_COLUMNS
    else:
        raise ValueError(f"kind must be 'dpo' or 'kto', got {kind!r}")

    class Pretokenized(Base):
        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            if not set(columns) <= set(dataset.column_names or ()):
                return super()._prepare_dataset(dataset, processing_class, args, dataset_name)
            if kind == "kto" and self.calculate_KL:  # the same rule as KTOTrainer._prepare_dataset

                def add_kl(examples):
                    examples["KL_completion_ids"] = [examples["completion_ids"][-1]] + examples["completion_ids"][:-1]
                    return examples

                dataset = dataset.map(add_kl, batched=True, batch_size=args.per_device_train_batch_size)
            return dataset

    Pretokenized.__name__ = Pretokenized.__qualname__ = f"Pretokenized{Base.__name__}"
    return Pretokenized
