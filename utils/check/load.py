"""Opening a prepared SFT data set as Arrow record batches, whatever wrote it.

Accepted: a ``datasets.save_to_disk`` directory (``Dataset``, or a ``DatasetDict`` with a ``train`` split),
a Parquet file or a directory of Parquet files, a JSONL file (one row per line; a ``.json`` array too).
Rows are read in batches (:meth:`Prepared.batches`), never as one Python list, so a million rows stay in
Arrow memory (memory-mapped for ``save_to_disk`` and Parquet).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

__all__ = ["Prepared", "UnreadableInput", "open_prepared", "ID_COLUMNS"]

ID_COLUMNS = ("input_ids", "labels", "attention_mask", "position_ids", "completion_mask", "assistant_masks")
"""Per-token columns the linter reads (each a list of integers per row, as long as ``input_ids``)."""


class UnreadableInput(Exception):
    """The path is missing, not a data set, or has no ``input_ids`` (the message names the path)."""


@dataclass
class Prepared:
    """An opened data set: ``source`` names the path and its format; ``stats`` is ``stats.json`` if any."""

    source: str
    format: str
    num_rows: int
    columns: list[str]
    _batches: Any = field(repr=False)
    stats: dict = field(default_factory=dict)

    def batches(self, size: int = 2048) -> Iterator[Any]:
        """``pyarrow.RecordBatch`` es of at most ``size`` rows with the columns the linter reads."""
        return self._batches(size)


def _wanted(names: list[str]) -> list[str]:
    return [c for c in (*ID_COLUMNS, "seq_lengths") if c in names]


def _from_table(table: Any, source: str, fmt: str, stats: dict) -> Prepared:
    names = list(table.column_names)
    _require_input_ids(names, source)
    table = table.select(_wanted(names))
    return Prepared(source, fmt, table.num_rows, names,
                    lambda size: iter(table.to_batches(max_chunksize=size)), stats)


def _require_input_ids(names: list[str], source: str) -> None:
    if "input_ids" not in names:
        raise UnreadableInput(f"{source}: no 'input_ids' column (columns: {', '.join(names) or 'none'}); "
                              "this is not a tokenized data set (prepare it first, e.g. python -m utils prepare)")


def _stats_json(directory: Path) -> dict:
    path = directory / "stats.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _open_saved(path: Path) -> Prepared:
    import datasets

    try:
        data = datasets.load_from_disk(str(path))
    except Exception as error:  # datasets raises several kinds for a damaged directory
        raise UnreadableInput(f"{path}: cannot read this datasets.save_to_disk directory ({error})") from None
    fmt = "datasets.save_to_disk"
    if isinstance(data, datasets.DatasetDict):
        if "train" not in data and len(data) != 1:
            raise UnreadableInput(f"{path}: a DatasetDict with splits {', '.join(data)} and no 'train'; "
                                  f"check one split directory, e.g. {path / next(iter(data))}")
        split = "train" if "train" in data else next(iter(data))
        data, fmt = data[split], f"datasets.save_to_disk (split {split!r})"
    if data._indices is not None:
        data = data.flatten_indices()
    return _from_table(data.data.table, str(path), fmt, _stats_json(path))


def _open_parquet(path: Path) -> Prepared:
    import pyarrow.dataset as pads

    try:
        dataset = pads.dataset(str(path), format="parquet")
        names = list(dataset.schema.names)
    except Exception as error:
        raise UnreadableInput(f"{path}: not a readable Parquet file or directory ({error})") from None
    _require_input_ids(names, str(path))
    wanted = _wanted(names)
    rows = dataset.count_rows()
    return Prepared(str(path), "parquet", rows, names,
                    lambda size: dataset.to_batches(columns=wanted, batch_size=size),
                    _stats_json(path if path.is_dir() else path.parent))


def _open_json(path: Path) -> Prepared:
    import pyarrow as pa
    import pyarrow.json as pajson

    try:
        table = pajson.read_json(str(path))
    except Exception as first:
        try:  # a JSON array (pyarrow reads newline-delimited JSON only)
            rows = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise ValueError("not a JSON array of objects")
            table = pa.Table.from_pylist(rows)
        except (ValueError, UnicodeDecodeError, pa.ArrowInvalid):
            raise UnreadableInput(f"{path}: not JSON Lines nor a JSON array of rows ({first})") from None
    return _from_table(table, str(path), "jsonl", _stats_json(path.parent))


def open_prepared(path: str | Path) -> Prepared:
    """Open ``path`` (see the module docstring); raises :class:`UnreadableInput` naming it when it cannot.

    Example:
        >>> open_prepared("no/such/dir")
        Traceback (most recent call last):
        ...
        utils.check.load.UnreadableInput: no/such/dir: no such file or directory
    """
    path = Path(path)
    if not path.exists():
        raise UnreadableInput(f"{path}: no such file or directory")
    if path.is_dir():
        if (path / "state.json").is_file() or (path / "dataset_dict.json").is_file():
            return _open_saved(path)
        if any(path.rglob("*.parquet")):
            return _open_parquet(path)
        raise UnreadableInput(f"{path}: a directory that is neither a datasets.save_to_disk directory "
                              "(no state.json / dataset_dict.json) nor holds Parquet files")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _open_parquet(path)
    if suffix in (".jsonl", ".json", ".ndjson"):
        return _open_json(path)
    try:
        return _open_parquet(path)
    except UnreadableInput:
        raise UnreadableInput(f"{path}: not a data set (expected a datasets.save_to_disk directory, Parquet or "
                              "JSONL)") from None
