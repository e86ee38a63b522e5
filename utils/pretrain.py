"""Pretraining / continued-pretraining text: documents joined with EOS, cut into blocks, every token trained.

Input: ``{"text": ...}`` records (JSONL, JSON array, Parquet) or ``.txt`` files -- **one document per
``.txt`` file** (a book, an article; blank lines inside it stay part of the text). Split a file into
paragraph documents yourself if that is what you mean (e.g. JSONL with one ``{"text"}`` per paragraph).
See :mod:`utils.formats` (kind ``pretrain``).

Each document is tokenized as the tokenizer does for a lone text (its BOS, if it adds one -- LLaMA,
Mistral, the course's tiny tokenizer; none for GPT-2 or Qwen) and followed by the EOS id, exactly as the
course's base model was pretrained (:func:`utils.models.causal.pack_documents`). The documents are
concatenated and cut into blocks of ``max_length`` tokens (:func:`utils.packing.iter_wrapped`, i.e.
``pack(strategy="wrapped")``): ``labels == input_ids`` (no mask: every token, EOS included, is a target;
the model shifts). A document longer than a block continues in the next one. With
``restart_positions=True`` the ``position_ids`` restart at 0 where a document starts, so that with
``use_cache=False`` a document never attends to the previous one in its block (as for packed SFT
rows); the one prediction that still crosses a boundary is the first token of a document from the
previous document's EOS, as in the plain stream. The last block is shorter than ``max_length`` unless
it is dropped (``remainder="drop"``, as Hugging Face's ``run_clm`` and LLaMA-Factory do): its tokens are
then counted in ``dropped_tokens``. Nothing else is ever lost: decoding the blocks in order gives back
every document, each followed by EOS.

A document containing the text of a special token (``</s>``, ``<|endoftext|>``) is refused: it would
become a control token in the middle of a document.

Example:
    >>> from utils.models import load_tokenizer
    >>> tok = load_tokenizer()
    >>> res = prepare_pretrain([{"text": "今天天气真好。"}, {"text": "Hello world."}], tok, max_length=8)
    >>> res.documents, res.tokens, res.blocks, res.dropped_tokens, res.dataset.column_names
    (2, 18, 3, 0, ['input_ids', 'attention_mask', 'labels', 'position_ids'])
    >>> tok.decode([t for b in res.dataset["input_ids"] for t in b])
    '<s>今天天气真好。</s><s>Hello world.</s>'
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping

from utils.packing import iter_wrapped

__all__ = ["PretrainResult", "document_ids", "pretrain_blocks", "prepare_pretrain"]


@dataclass
class PretrainResult:
    """What :func:`prepare_pretrain` returns: the blocks and the counts (:meth:`as_dict` for ``stats.json``).

    ``documents`` and ``tokens`` (EOS included) in; ``blocks`` out, of ``max_length`` tokens except the last
    (``last_block_tokens``); ``dropped_tokens`` (the short last block under ``remainder="drop"``);
    ``invalid`` documents refused (each error in ``problems``, with the index of the document).
    """

    dataset: Any
    documents: int = 0
    tokens: int = 0
    blocks: int = 0
    last_block_tokens: int = 0
    dropped_tokens: int = 0
    invalid: int = 0
    problems: list = field(default_factory=list)
    max_length: int = 0
    remainder: str = "keep"
    restart_positions: bool = False

    def as_dict(self) -> dict:
        return {"kind": "pretrain", **{k: getattr(self, k) for k in (
            "documents", "tokens", "blocks", "last_block_tokens", "dropped_tokens", "invalid", "max_length",
            "remainder", "restart_positions")}}


def _texts(data: Iterable[Any]) -> Iterator[str]:
    for rec in data:
        yield rec["text"] if isinstance(rec, Mapping) else rec


def document_ids(data: Iterable[Any], tokenizer: Any, *, batch_size: int = 1000, on_error: str = "raise",
                 problems: list | None = None) -> Iterator[list[int]]:
    """The ids of each document (a string or a ``{"text"}`` record): the tokenizer's own tokens, then EOS.

    A document with special-token text raises ``ValueError`` (``on_error="skip"``: skipped, the error
    appended to ``problems`` as ``(index, message)``).

    >>> from utils.models import load_tokenizer
    >>> tok = load_tokenizer()
    >>> [tok.convert_ids_to_tokens(ids) for ids in document_ids(["Hi"], tok)]
    [['<s>', 'H', 'i', '</s>']]
    """
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError(f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no eos_token: documents must "
                         "end with one")
    specials = sorted({t for t in tokenizer.all_special_tokens if t} |
                      {t.content for t in tokenizer.added_tokens_decoder.values() if t.special}, key=len)
    batch: list[str] = []
    index = 0

    def flush():
        nonlocal index
        good, where = [], []
        for text in batch:
            bad = [t for t in specials if t in text] if isinstance(text, str) else []
            problem = (f"document {index}: expected a string, got {type(text).__name__}" if not isinstance(text, str)
                       else f"document {index}: contains the special token text {bad[-1]!r}; it would become a "
                            "control token inside the document. Remove it from the text." if bad else None)
            if problem:
                if on_error == "raise":
                    raise ValueError(problem)
                if problems is not None:
                    problems.append((index, problem))
            else:
                good.append(text)
                where.append(index)
            index += 1
        for ids in tokenizer(good)["input_ids"] if good else []:
            yield ids if ids and ids[-1] == eos else ids + [eos]  # a tokenizer that adds EOS itself: not twice

    for text in _texts(data):
        batch.append(text)
        if len(batch) >= batch_size:
            yield from flush()
            batch = []
    if batch:
        yield from flush()


def pretrain_blocks(data: Iterable[Any], tokenizer: Any, max_length: int, *, restart_positions: bool = False,
                    remainder: str = "keep", counts: dict | None = None) -> Iterator[dict]:
    """Blocks ``{input_ids, labels, position_ids}`` of ``max_length`` tokens, streamed (see the module docs).

    >>> from utils.models import load_tokenizer
    >>> [b["position_ids"] for b in pretrain_blocks(["ab", "c"], load_tokenizer(), 4, restart_positions=True)]  # <s> ab </s> | <s> c </s>
    [[0, 1, 2, 0], [0, 1]]
    """
    rows = ({"input_ids": ids} for ids in document_ids(data, tokenizer))
    return iter_wrapped(rows, max_length, restart_positions=restart_positions, remainder=remainder, counts=counts)


def prepare_pretrain(data: Iterable[Any], tokenizer: Any, max_length: int, *, restart_positions: bool = False,
                     remainder: str = "keep", on_error: str = "raise", cache_dir: str | None = None) -> PretrainResult:
    """Tokenize, join with EOS and cut ``data`` (strings or ``{"text"}`` records, e.g.
    ``utils.formats.iter_records(path, kind="pretrain")``) into a ``datasets.Dataset`` of blocks.

    Columns (int32 lists): ``input_ids``, ``attention_mask`` (ones), ``labels`` (= ``input_ids``) and
    ``position_ids``. Blocks are written to an Arrow file in ``cache_dir`` (default: a temporary folder)
    as they are made, so a large corpus never sits in memory.
    """
    import datasets
    from datasets.arrow_writer import ArrowWriter

    if max_length < 2:
        raise ValueError(f"max_length must be at least 2, got {max_length}")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    result = PretrainResult(dataset=None, max_length=max_length, remainder=remainder,
                            restart_positions=restart_positions)
    if cache_dir is None:
        cache_dir = tempfile.mkdtemp(prefix="utils-pretrain-")
        atexit.register(shutil.rmtree, cache_dir, ignore_errors=True)
    ints = datasets.List(datasets.Value("int32"))
    features = datasets.Features({c: ints for c in ("input_ids", "attention_mask", "labels", "position_ids")})
    path = f"{cache_dir}/pretrain-{next(tempfile._get_candidate_names())}.arrow"
    counts: dict = {}
    problems: list = []
    rows = ({"input_ids": ids} for ids in document_ids(data, tokenizer, on_error=on_error, problems=problems))
    last = 0
    with ArrowWriter(path=path, features=features, writer_batch_size=1000) as writer:
        for block in iter_wrapped(rows, max_length, restart_positions=restart_positions, remainder=remainder,
                                  counts=counts):
            last = len(block["input_ids"])
            writer.write({**block, "attention_mask": [1] * last})
        writer.finalize()
    result.dataset = datasets.Dataset.from_file(path)
    result.documents, result.tokens = counts["documents"], counts["tokens"]
    result.blocks, result.dropped_tokens = counts["blocks"], counts["dropped_tokens"]
    result.last_block_tokens = last
    result.invalid, result.problems = len(problems), problems
    return result
