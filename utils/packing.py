"""Batching encoded rows: padding, packing, and how much of a batch is real tokens.

Two ways to turn encoded rows (``{"input_ids", "labels", ...}``, as :func:`utils.encode.encode`
returns them) into training batches:

- **Padding** (:func:`pad_collate` / :class:`PadCollator`): every row of a batch is padded to the
  longest row. ``labels`` are padded with ``-100`` (no loss) and ``attention_mask`` is built from
  the row *lengths*, never by comparing ids to the pad id: when ``pad_token == eos_token`` that
  comparison would hide every EOS from the model (the classic bug; chapter 06 shows it).
- **Packing** (:func:`pack` + :class:`PackedCollator`): several whole examples are concatenated into
  one row of at most ``max_length`` tokens. ``position_ids`` restart at 0 for each example and the
  first label of each example is ``-100``, exactly as ``transformers.DataCollatorWithFlattening``
  does, so that attention and loss stay inside each example. No example is ever split across rows.
- **Wrapping** (``pack(..., strategy="wrapped")`` / :func:`iter_wrapped`, for pretraining text, see
  :mod:`utils.pretrain`): documents are concatenated and cut into blocks of exactly ``max_length``
  tokens, every token supervised; a document may be split across blocks, and its start restarts
  ``position_ids`` only when asked (``restart_positions=True``).

Packed rows give the same loss as the same examples unpacked (contract rule 8), *if* the model is
run without a KV cache: transformers only isolates the examples of a packed row when it gets
``position_ids``, no 2-D ``attention_mask`` and no cache. With the default ``use_cache=True`` a
cache is created even in training mode and later examples silently attend to earlier ones.
:func:`causal_lm_loss` always passes ``use_cache=False``; if you train with ``Trainer``, set
``model.config.use_cache = False``.

Example:
    >>> rows = [{"input_ids": [1, 5, 6], "labels": [-100, 5, 6]},
    ...         {"input_ids": [1, 7], "labels": [-100, 7]}]
    >>> pad_collate(rows, pad_token_id=0)["labels"].tolist()
    [[-100, 5, 6], [-100, 7, -100]]
    >>> pack(rows, max_length=8)
    [{'input_ids': [1, 5, 6, 1, 7], 'labels': [-100, 5, 6, -100, 7], 'position_ids': [0, 1, 2, 0, 1]}]
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from utils.encode import IGNORE_INDEX

__all__ = [
    "IGNORE_INDEX",
    "PackedCollator",
    "iter_wrapped",
    "PadCollator",
    "causal_lm_loss",
    "pack",
    "pack_dataset",
    "packing_efficiency",
    "pad_collate",
]


def _as_list(values: Any) -> list[int]:
    """A row's column as a plain list of ints (lists, tuples, tensors and arrays are accepted)."""
    return values.tolist() if hasattr(values, "tolist") else list(values)


def _padded(values: list[int], length: int, pad: int, side: str) -> list[int]:
    filler = [pad] * (length - len(values))
    return values + filler if side == "right" else filler + values


def _target_length(lengths: list[int], pad_to_multiple_of: int | None) -> int:
    longest = max(lengths)
    if pad_to_multiple_of:
        longest = -(-longest // pad_to_multiple_of) * pad_to_multiple_of
    return longest


@dataclass
class PadCollator:
    """Pad a list of rows to the longest one: a ``DataCollatorForSeq2Seq`` for causal LM rows.

    ``input_ids`` are padded with ``pad_token_id``, ``labels`` with ``label_pad_token_id`` (-100)
    and ``attention_mask`` is 1 on each row's own tokens and 0 on padding, computed from the row
    lengths (a row's own ``attention_mask``, if present, is ignored). Rows without ``labels`` get
    none in the batch. Returns ``torch.long`` tensors of shape ``(batch, longest)``.

    Example:
        >>> collate = PadCollator(pad_token_id=0)
        >>> batch = collate([{"input_ids": [1, 2, 3], "labels": [-100, 2, 3]},
        ...                  {"input_ids": [1, 2], "labels": [-100, 2]}])
        >>> batch["attention_mask"].tolist()
        [[1, 1, 1], [1, 1, 0]]
    """

    pad_token_id: int
    label_pad_token_id: int = IGNORE_INDEX
    pad_to_multiple_of: int | None = None
    padding_side: Literal["right", "left"] = "right"

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        import torch

        if self.pad_token_id is None:
            raise ValueError("pad_token_id is None: set tokenizer.pad_token (e.g. to eos_token) first")
        if self.padding_side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', got {self.padding_side!r}")
        if not rows:
            raise ValueError("cannot collate an empty list of rows")
        ids = [_as_list(row["input_ids"]) for row in rows]
        lengths = [len(x) for x in ids]
        length = _target_length(lengths, self.pad_to_multiple_of)
        side = self.padding_side
        batch = {
            "input_ids": [_padded(x, length, self.pad_token_id, side) for x in ids],
            "attention_mask": [_padded([1] * n, length, 0, side) for n in lengths],
        }
        if "labels" in rows[0]:
            labels = [_as_list(row["labels"]) for row in rows]
            for index, (row_labels, n) in enumerate(zip(labels, lengths)):
                if len(row_labels) != n:
                    raise ValueError(f"row {index}: labels has {len(row_labels)} values but "
                                     f"input_ids has {n}")
            batch["labels"] = [_padded(x, length, self.label_pad_token_id, side) for x in labels]
        return {key: torch.tensor(value, dtype=torch.long) for key, value in batch.items()}


def pad_collate(rows: Sequence[Mapping[str, Any]], pad_token_id: int, **options: Any) -> dict[str, Any]:
    """Pad ``rows`` into batch tensors; shorthand for ``PadCollator(pad_token_id, **options)(rows)``.

    Example:
        >>> pad_collate([{"input_ids": [5], "labels": [5]}, {"input_ids": [6, 7], "labels": [-100, 7]}],
        ...             pad_token_id=0)["input_ids"].tolist()
        [[5, 0], [6, 7]]
    """
    return PadCollator(pad_token_id, **options)(rows)


def _example_lengths(rows: Sequence[Mapping[str, Any]], max_length: int) -> list[int]:
    lengths = []
    for index, row in enumerate(rows):
        n = len(row["input_ids"])
        if n == 0:
            raise ValueError(f"row {index}: input_ids is empty")
        if n > max_length:
            raise ValueError(f"row {index}: {n} tokens do not fit in max_length={max_length}; "
                             "drop or truncate long examples before packing (encode(max_length=...))")
        if "labels" in row and len(row["labels"]) != n:
            raise ValueError(f"row {index}: labels has {len(row['labels'])} values but input_ids has {n}")
        lengths.append(n)
    return lengths


def _bins_in_order(lengths: list[int], max_length: int) -> list[list[int]]:
    bins: list[list[int]] = []
    room = 0
    for index, n in enumerate(lengths):
        if not bins or n > room:
            bins.append([])
            room = max_length
        bins[-1].append(index)
        room -= n
    return bins


def _bins_best_fit_decreasing(lengths: list[int], max_length: int) -> list[list[int]]:
    bins: list[list[int]] = []
    open_bins: list[tuple[int, int]] = []  # (room left, bin number), sorted
    for index in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        n = lengths[index]
        at = bisect.bisect_left(open_bins, (n, -1))
        if at < len(open_bins):
            room, number = open_bins.pop(at)
        else:
            room, number = max_length, len(bins)
            bins.append([])
        bins[number].append(index)
        if room - n > 0:
            bisect.insort(open_bins, (room - n, number))
    for members in bins:
        members.sort()
    bins.sort(key=lambda members: members[0])
    return bins


def _bins(lengths: list[int], max_length: int, strategy: str) -> list[list[int]]:
    """Which examples go into which row: lists of example indices, each list in increasing order."""
    if max_length < 1:
        raise ValueError(f"max_length must be positive, got {max_length}")
    if strategy == "best_fit":
        return _bins_best_fit_decreasing(lengths, max_length)
    if strategy == "in_order":
        return _bins_in_order(lengths, max_length)
    raise ValueError(f"strategy must be 'best_fit', 'in_order' or 'wrapped', got {strategy!r}")


def iter_wrapped(rows: Iterable[Mapping[str, Any]], max_length: int, *, restart_positions: bool = False,
                 remainder: Literal["keep", "drop"] = "keep", counts: dict | None = None) -> Iterator[dict]:
    """The ``"wrapped"`` packing of :func:`pack`, streamed: rows (documents) concatenated and cut into
    blocks of exactly ``max_length`` tokens; only the last block may be shorter (``remainder="keep"``)
    or is dropped (``"drop"``). A document may be split across blocks.

    ``labels`` are the rows' labels concatenated (``input_ids`` when a row has none: every token
    supervised, as pretraining wants). ``position_ids`` count from 0 in each block; with
    ``restart_positions=True`` they also restart at 0 where a document starts, so that (run without a KV
    cache, see the module docs) no document attends to the one before it in the same block. If ``counts``
    is a dict, it receives ``documents``, ``tokens`` (all tokens in), ``blocks`` and ``dropped_tokens``
    (the short last block under ``remainder="drop"``).

    Example:
        >>> docs = [{"input_ids": [1, 2, 3]}, {"input_ids": [4, 5, 6, 7]}]
        >>> [(b["input_ids"], b["position_ids"]) for b in iter_wrapped(docs, 3, restart_positions=True)]
        [([1, 2, 3], [0, 1, 2]), ([4, 5, 6], [0, 1, 2]), ([7], [0])]
    """
    if max_length < 1:
        raise ValueError(f"max_length must be positive, got {max_length}")
    if remainder not in ("keep", "drop"):
        raise ValueError(f"remainder must be 'keep' or 'drop', got {remainder!r}")
    stats = counts if counts is not None else {}
    stats.update(documents=0, tokens=0, blocks=0, dropped_tokens=0)
    ids: list[int] = []
    labels: list[int] = []
    positions: list[int] = []
    for index, row in enumerate(rows):
        row_ids = _as_list(row["input_ids"])
        row_labels = _as_list(row["labels"]) if "labels" in row else row_ids
        if not row_ids:
            raise ValueError(f"row {index}: input_ids is empty")
        if len(row_labels) != len(row_ids):
            raise ValueError(f"row {index}: labels has {len(row_labels)} values but input_ids has {len(row_ids)}")
        stats["documents"] += 1
        stats["tokens"] += len(row_ids)
        start = 0
        while start < len(row_ids):
            take = min(max_length - len(ids), len(row_ids) - start)
            # a piece of a document either starts it or starts a block: with restarts it counts from 0
            first = 0 if restart_positions else len(ids)
            ids += row_ids[start:start + take]
            labels += row_labels[start:start + take]
            positions += range(first, first + take)
            start += take
            if len(ids) == max_length:
                stats["blocks"] += 1
                yield {"input_ids": ids, "labels": labels, "position_ids": positions}
                ids, labels, positions = [], [], []
    if ids:
        if remainder == "keep":
            stats["blocks"] += 1
            yield {"input_ids": ids, "labels": labels, "position_ids": positions}
        else:
            stats["dropped_tokens"] = len(ids)


def pack(rows: Sequence[Mapping[str, Any]], max_length: int,
         strategy: Literal["best_fit", "in_order", "wrapped"] = "best_fit", *,
         restart_positions: bool | None = None, remainder: Literal["keep", "drop"] = "keep") -> list[dict[str, list[int]]]:
    """Pack whole examples into rows of at most ``max_length`` tokens.

    Each packed row holds ``input_ids``, ``labels`` and ``position_ids``: the examples' ids and
    labels concatenated, ``position_ids`` restarting at 0 for each example and the first label of
    each example set to -100 (so the last token of one example is never trained to predict the
    first token of the next) — the same row ``transformers.DataCollatorWithFlattening`` builds from
    the same examples. Rows without ``labels`` are supervised on every token but the first.

    ``strategy="best_fit"`` (default) places the longest examples first, each into the fullest row
    it still fits (best-fit decreasing: few, full rows); ``"in_order"`` keeps the examples' order
    and starts a new row whenever the next one does not fit. Within a row, examples keep their
    original order. An example longer than ``max_length`` is an error: drop or truncate first.

    ``strategy="wrapped"`` is pretraining's packing (:func:`iter_wrapped`, used by :mod:`utils.pretrain`):
    the rows are concatenated in order and cut every ``max_length`` tokens, splitting rows across
    blocks; labels are kept as they are (every token supervised when rows have none), positions
    restart at document starts only with ``restart_positions=True``, and the short last block is kept
    (``remainder="keep"``) or dropped (``"drop"``). ``restart_positions`` and ``remainder`` apply to
    ``"wrapped"`` only (whole examples always restart their positions).

    Example:
        >>> rows = [{"input_ids": [1, 2, 3]}, {"input_ids": [4, 5, 6, 7]}, {"input_ids": [8]}]
        >>> [r["position_ids"] for r in pack(rows, max_length=4)]
        [[0, 1, 2, 0], [0, 1, 2, 3]]
        >>> [r["input_ids"] for r in pack(rows, max_length=3, strategy="wrapped", remainder="drop")]
        [[1, 2, 3], [4, 5, 6]]
    """
    if strategy == "wrapped":
        return list(iter_wrapped(rows, max_length, restart_positions=bool(restart_positions), remainder=remainder))
    if restart_positions is not None or remainder != "keep":
        raise ValueError(f"restart_positions and remainder apply to strategy='wrapped' only, not {strategy!r} (whole "
                         "examples always restart their positions and are never cut)")
    bins = _bins(_example_lengths(rows, max_length), max_length, strategy)
    packed = []
    for members in bins:
        input_ids: list[int] = []
        labels: list[int] = []
        position_ids: list[int] = []
        for index in members:
            ids = _as_list(rows[index]["input_ids"])
            row_labels = _as_list(rows[index]["labels"]) if "labels" in rows[index] else ids
            input_ids += ids
            labels += [IGNORE_INDEX] + row_labels[1:]
            position_ids += range(len(ids))
        packed.append({"input_ids": input_ids, "labels": labels, "position_ids": position_ids})
    return packed


def _pack_table(table: Any, max_length: int, strategy: str, first_row: int) -> Any:
    """:func:`pack` on an Arrow table of encoded rows, with Arrow/NumPy instead of Python lists."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    lengths = pc.list_value_length(table.column("input_ids")).to_numpy(zero_copy_only=False)
    for index in np.flatnonzero((lengths > max_length) | (lengths == 0))[:1]:
        raise ValueError(f"row {first_row + int(index)}: {int(lengths[index])} tokens do not fit in "
                         f"max_length={max_length}; drop or truncate long examples before packing")
    bins = _bins(lengths.tolist(), max_length, strategy)
    order = np.fromiter((i for members in bins for i in members), dtype=np.int64, count=len(lengths))
    sizes = lengths[order]
    row_lengths = np.array([int(lengths[members].sum()) for members in bins], dtype=np.int64)
    offsets = pa.array(np.concatenate([[0], np.cumsum(row_lengths)]).astype(np.int32))
    ids = pc.list_flatten(table.column("input_ids").take(pa.array(order))).combine_chunks()
    if "labels" in table.column_names:
        labels = pc.list_flatten(table.column("labels").take(pa.array(order))).to_numpy(zero_copy_only=False)
    else:
        labels = ids.to_numpy(zero_copy_only=False)
    labels = labels.astype(np.int32, copy=True)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    labels[starts] = IGNORE_INDEX
    positions = (np.arange(len(labels)) - np.repeat(starts, sizes)).astype(np.int32)
    ones = np.ones(len(labels), dtype=np.int32)
    columns = {"input_ids": ids.cast(pa.int32()), "attention_mask": ones, "labels": labels,
               "position_ids": positions}
    return pa.table({name: pa.ListArray.from_arrays(offsets, pa.array(values))
                     for name, values in columns.items()})


def pack_dataset(dataset: Any, max_length: int, strategy: Literal["best_fit", "in_order"] = "best_fit",
                 window: int = 10_000, desc: str | None = None) -> Any:
    """:func:`pack` for a ``datasets.Dataset`` of encoded rows, in windows of ``window`` rows.

    Same rows as ``pack(rows_of_each_window, max_length, strategy)``, plus an ``attention_mask`` of
    ones (for the ``prepare`` output format; :class:`PackedCollator` ignores it). Works on Arrow
    columns with NumPy (no Python lists of ids), so memory stays flat; best-fit packing within a
    window of 10,000 examples is as dense as over the whole set (a few partly filled rows per
    window). Columns are int32 lists: ``input_ids``, ``attention_mask``, ``labels``, ``position_ids``.

    Example:
        >>> import datasets
        >>> ds = datasets.Dataset.from_dict({"input_ids": [[1, 2, 3], [4, 5], [6]]})
        >>> pack_dataset(ds, max_length=4).to_dict()["position_ids"]
        [[0, 1, 2, 0], [0, 1]]
    """
    import datasets
    from datasets.fingerprint import Hasher

    if strategy == "wrapped":
        raise ValueError("pack_dataset packs whole examples ('best_fit' or 'in_order'); wrapped blocks of "
                         "pretraining text are made by utils.pretrain.prepare_pretrain")
    int_list = datasets.List(datasets.Value("int32"))
    features = datasets.Features({name: int_list for name in
                                  ("input_ids", "attention_mask", "labels", "position_ids")})
    fingerprint = Hasher.hash((dataset._fingerprint, max_length, strategy, window, "pack_dataset/1"))
    return dataset.with_format("arrow").map(
        lambda table, indices: _pack_table(table, max_length, strategy, indices[0]), batched=True,
        batch_size=window, with_indices=True, remove_columns=dataset.column_names, features=features,
        new_fingerprint=fingerprint, desc=desc).with_format(None)


@dataclass
class PackedCollator:
    """Batch packed rows (from :func:`pack`) so that each example stays isolated.

    Rows are padded to the longest; the padding gets ``labels`` -100 and ``position_ids`` 0, 1, 2, …
    (a separate dummy sequence after the real ones, so it never changes their attention). No
    ``attention_mask`` is returned on purpose: a 2-D mask makes transformers ignore the restarting
    ``position_ids`` and let examples attend to each other. Run the model with ``use_cache=False``
    (:func:`causal_lm_loss` does).

    Example:
        >>> batch = PackedCollator(pad_token_id=0)(pack([{"input_ids": [1, 2]}, {"input_ids": [3]}], 8))
        >>> batch["position_ids"].tolist(), "attention_mask" in batch
        ([[0, 1, 0]], False)
    """

    pad_token_id: int
    label_pad_token_id: int = IGNORE_INDEX
    pad_to_multiple_of: int | None = None

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        import torch

        if not rows:
            raise ValueError("cannot collate an empty list of rows")
        columns: dict[str, list[list[int]]] = {"input_ids": [], "labels": [], "position_ids": []}
        length = _target_length([len(row["input_ids"]) for row in rows], self.pad_to_multiple_of)
        for index, row in enumerate(rows):
            if "position_ids" not in row:
                raise ValueError(f"row {index} has no position_ids: PackedCollator takes rows from pack()")
            ids = _as_list(row["input_ids"])
            extra = length - len(ids)
            columns["input_ids"].append(ids + [self.pad_token_id] * extra)
            columns["labels"].append(_as_list(row["labels"]) + [self.label_pad_token_id] * extra)
            columns["position_ids"].append(_as_list(row["position_ids"]) + list(range(extra)))
        return {key: torch.tensor(value, dtype=torch.long) for key, value in columns.items()}


def causal_lm_loss(model: Any, batch: Mapping[str, Any]) -> Any:
    """Mean cross-entropy over all supervised tokens of ``batch`` (padded or packed).

    Runs ``model`` with ``use_cache=False`` (needed for packed rows, see the module docs) and
    averages the loss over every label that is not -100 in the whole batch — not per row, so a
    padded batch and the same examples packed into fewer rows give the same number.

    Example:
        >>> loss = causal_lm_loss(model, pad_collate(rows, pad_token_id=0))  # doctest: +SKIP
    """
    import torch.nn.functional as F

    inputs = {key: batch[key] for key in ("input_ids", "attention_mask", "position_ids") if key in batch}
    logits = model(**inputs, use_cache=False).logits
    labels = batch["labels"].to(logits.device)
    shift_logits = logits[:, :-1].reshape(-1, logits.shape[-1]).float()
    shift_labels = labels[:, 1:].reshape(-1)
    supervised = (shift_labels != IGNORE_INDEX).sum()
    if supervised == 0:
        raise ValueError("batch has no supervised tokens (every label is -100)")
    total = F.cross_entropy(shift_logits, shift_labels, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / supervised


def _lengths(rows: Iterable[Any]) -> list[int]:
    return [row if isinstance(row, int) else len(row["input_ids"]) for row in rows]


def packing_efficiency(rows: Iterable[Any], batch_size: int = 8, pad_to: int | None = None) -> float:
    """Share of real (non-padding) tokens when ``rows`` are fed in batches of ``batch_size``.

    Rows are taken in order, ``batch_size`` at a time, and each batch is padded to its longest row
    (or to ``pad_to`` tokens, e.g. ``max_length``). ``rows`` are encoded or packed rows (anything
    with ``input_ids``) or plain lengths. Compare padded examples with the same examples packed:

    Example:
        >>> rows = [{"input_ids": [0] * n} for n in (10, 2, 9, 3)]
        >>> round(packing_efficiency(rows, batch_size=2), 2)  # 24 real tokens in 38 slots
        0.63
        >>> packing_efficiency(pack(rows, max_length=12), batch_size=2)
        1.0
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if hasattr(rows, "dtype") and hasattr(rows, "ndim"):  # a NumPy array of lengths: no Python list of N ints
        return _packing_efficiency_array(rows, batch_size, pad_to)
    lengths = _lengths(rows)
    if not lengths:
        raise ValueError("no rows")
    real = sum(lengths)
    slots = 0
    for start in range(0, len(lengths), batch_size):
        chunk = lengths[start:start + batch_size]
        width = pad_to if pad_to is not None else max(chunk)
        if max(chunk) > width:
            raise ValueError(f"a row of {max(chunk)} tokens is longer than pad_to={pad_to}")
        slots += width * len(chunk)
    return real / slots


def _packing_efficiency_array(lengths: Any, batch_size: int, pad_to: int | None) -> float:
    """:func:`packing_efficiency` of a NumPy array of lengths, vectorised (same integer sums, same float)."""
    import numpy as np

    lengths = np.asarray(lengths, dtype=np.int64).ravel()
    if not len(lengths):
        raise ValueError("no rows")
    starts = np.arange(0, len(lengths), batch_size)
    widest = np.maximum.reduceat(lengths, starts)
    counts = np.diff(np.append(starts, len(lengths)))
    if pad_to is not None:
        if int(widest.max()) > pad_to:
            raise ValueError(f"a row of {int(widest.max())} tokens is longer than pad_to={pad_to}")
        widest = np.full_like(widest, pad_to)
    return int(lengths.sum()) / int((widest * counts).sum())
