"""One Arrow record batch as flat NumPy arrays: tokens, labels, row and example boundaries, supervised spans.

A batch of ``B`` rows with ``T`` tokens in all becomes arrays of length ``T`` (``ids``, ``labels``,
``row``, ``pos``, ``example``...) and of length ``B`` (``lengths``), so every check is a vectorized
expression, not a Python loop over tokens. Labels come from ``labels``, else from TRL's mask columns
(``completion_mask``, ``assistant_masks``: a token is supervised where every mask present is 1, as
``SFTTrainer`` builds them), else every token is supervised (what a collator does with no labels).
An *example* is a row, or one of the examples packed into it: ``position_ids`` restarting at 0,
``seq_lengths``, or LLaMA-Factory's ``neat_packing`` segment ids -- an ``attention_mask`` holding ``1``
for the first packed example, ``2`` for the second and so on, and ``0`` for the padding after them
(``PackedSupervisedDatasetProcessor`` writes ``[i + 1] * len(example)``; its collator lets a token attend
only to tokens with the same id). Trailing padding (``attention_mask`` 0 after the last attended token)
starts no example, though LLaMA-Factory gives each pad token position 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Rows", "IGNORE_INDEX", "rows_of"]

IGNORE_INDEX = -100


def _flat(column: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(lengths, values)`` of a list column (nulls are empty lists)."""
    import pyarrow.compute as pc

    lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    values = pc.list_flatten(column).to_numpy(zero_copy_only=False)
    return lengths, values.astype(np.int64, copy=False)


def _within(flags: np.ndarray, same: np.ndarray, step: int) -> np.ndarray:
    """``flags`` shifted by ``step`` (+1: the next token's flag, -1: the previous one's), False across ``same``."""
    out = np.zeros_like(flags)
    if step > 0:
        out[:-1] = flags[1:] & same[:-1]
    else:
        out[1:] = flags[:-1] & same[:-1]
    return out


@dataclass
class Rows:
    """The flat arrays of one batch (see the module docstring); ``index`` maps batch rows to set rows."""

    index: np.ndarray          # (B,) row number in the data set
    lengths: np.ndarray        # (B,)
    ids: np.ndarray            # (T,)
    labels: np.ndarray         # (T,)
    row: np.ndarray            # (T,) batch row of each token
    pos: np.ndarray            # (T,) position in its row
    attention: np.ndarray | None
    position_ids: np.ndarray | None
    seq_lengths: list | None   # per row, or None
    segment_start: np.ndarray | None  # (T,) bool: a neat-packing segment id begins (None: no segment ids)
    example: np.ndarray        # (T,) example number of each token (within the batch)
    example_start: np.ndarray  # (T,) bool
    same_example_next: np.ndarray  # (T,) token i+1 is in the same example as token i
    sup: np.ndarray            # (T,) bool, label != -100
    span_start: np.ndarray     # (T,) bool
    span_end: np.ndarray       # (T,) bool

    @property
    def example_lengths(self) -> np.ndarray:
        return np.bincount(self.example, minlength=int(self.example[-1]) + 1 if len(self.example) else 0)

    def where(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Set row numbers and positions of the tokens where ``mask`` holds."""
        at = np.flatnonzero(mask)
        return self.index[self.row[at]], self.pos[at]

    def per_row(self, mask: np.ndarray) -> np.ndarray:
        """How many tokens of each batch row ``mask`` holds for."""
        return np.bincount(self.row, weights=mask, minlength=len(self.lengths)).astype(np.int64)


def rows_of(batch: Any, first_row: int, problems: dict) -> Rows | None:
    """:class:`Rows` of ``batch`` (its rows numbered from ``first_row``). Rows whose per-token columns are not
    as long as ``input_ids`` are left out and recorded in ``problems["length_mismatch"]`` (set row → column)."""
    names = batch.schema.names
    lengths, _ = _flat(batch.column("input_ids"))
    keep = np.ones(len(lengths), dtype=bool)
    others = {}
    for name in ("labels", "attention_mask", "position_ids", "completion_mask", "assistant_masks"):
        if name in names:
            n, _ = _flat(batch.column(name))
            bad = n != lengths
            for i in np.flatnonzero(bad & keep):
                problems.setdefault("length_mismatch", {})[first_row + int(i)] = name
            keep &= ~bad
            others[name] = True
    index = first_row + np.flatnonzero(keep)
    if not keep.all():
        import pyarrow as pa

        batch = batch.filter(pa.array(keep))
        lengths = lengths[keep]
    if not len(lengths):
        return None
    _, ids = _flat(batch.column("input_ids"))
    col = {name: _flat(batch.column(name))[1] for name in others}
    if "labels" in col:
        labels = col["labels"]
    else:
        masks = [col[m] for m in ("completion_mask", "assistant_masks") if m in col]
        labels = ids.copy()
        for mask in masks:
            labels[mask == 0] = IGNORE_INDEX
    total = len(ids)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    row = np.repeat(np.arange(len(lengths)), lengths)
    pos = np.arange(total) - offsets[:-1][row] if total else np.zeros(0, dtype=np.int64)
    start = pos == 0
    position_ids = col.get("position_ids")
    seq_lengths = None
    if "seq_lengths" in names:
        seq_lengths = batch.column("seq_lengths").to_pylist()
    if position_ids is not None:
        start = start | (position_ids == 0)
    elif seq_lengths is not None:
        for r, parts in enumerate(seq_lengths):
            if parts:
                cuts = offsets[r] + np.cumsum(parts)[:-1]
                start[cuts[cuts < offsets[r + 1]]] = True
    attention = col.get("attention_mask")
    segment_start = None
    if attention is not None and (attention > 1).any():  # segment ids, not a 0/1 mask
        before = np.zeros_like(attention)
        before[1:] = attention[:-1]
        segment_start = (pos == 0) | (attention != 0) & (attention != before)
        start |= segment_start
    if attention is not None and total:
        last_attended = np.full(len(lengths), -1, dtype=np.int64)
        np.maximum.at(last_attended, row, np.where(attention != 0, pos, -1))
        start &= (pos == 0) | (pos <= last_attended[row])  # trailing padding starts no example
    example = np.cumsum(start) - 1
    same = np.zeros(total, dtype=bool)
    if total:
        same[:-1] = example[1:] == example[:-1]
    sup = labels != IGNORE_INDEX
    span_start = sup & ~_within(sup, same, -1)
    span_end = sup & ~_within(sup, same, +1)
    return Rows(index, lengths, ids, labels, row, pos, attention, position_ids, seq_lengths, segment_start,
                example, start, same, sup, span_start, span_end)
