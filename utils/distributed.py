"""SFT preparation on Ray Data: the same rows as ``python -m utils prepare``, on one machine or a cluster.

::

    pip install -e ".[ray]"        # the optional extra: Ray is not needed by the course or the default install
    python -m utils.distributed DATA... --template alpaca --tokenizer DIR --out OUT_DIR \\
        [--max-length N] [--truncation drop|truncate] [--chat-template-kwargs JSON] [--on-error stop|skip] \\
        [--address auto|ray://HOST:10001] [--num-cpus N]

The pipeline (:func:`prepare_with_ray`) is Ray Data's ``from_items`` → ``map_batches`` → ``write_parquet``:

1. **read**: one Ray task per input file reads it with :func:`utils.formats.iter_records` (every record
   form the local path reads, each problem located ``FILE:LINE: field: reason``) and the CLI's own
   normalisation (``utils.cli._uniform``), in batches of ``batch_size`` records. Ray's ``read_json``
   would lose the line numbers and the record forms, so the files are read by the toolkit's reader.
2. **encode**: ``map_batches`` with :func:`utils.encode._map_batch` -- the very function
   :func:`utils.encode.encode_dataset` maps over a ``datasets.Dataset`` (no logic written twice).
3. **write**: the encoded batches (rows, a sort key and the per-row counts) are written as Parquet to a
   staging folder; the driver reads only the count columns to build ``stats.json`` and the problem list
   (``--on-error stop``: nothing is written at OUT if any record is bad); a second ``map_batches`` keeps
   the real rows and writes ``OUT_DIR/*.parquet`` (one file per block: shards a trainer can stream with
   ``datasets.load_dataset("parquet", data_files="OUT_DIR/*.parquet", streaming=True)``).

Rows are those of the local path: same ``input_ids``, ``attention_mask`` and ``labels``, in the same order
(Ray's ``preserve_order``), and each row carries its sort key: ``source_file`` (position of its file among
the inputs) and ``record_index`` (the record's number in that file, counting the records that were read).
``tests/test_ray.py`` compares both paths row by row on a local Ray cluster (127.0.0.1, 2 CPUs).

Packing (``--pack``) is not done here: pack the Parquet shards afterwards (:func:`utils.packing.pack_dataset`)
or pack inside the trainer.

Example:
    >>> stats = prepare_with_ray(["data.jsonl"], "out", template="alpaca")  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = ["prepare_with_ray", "main"]

ROW_COLUMNS = ("input_ids", "attention_mask", "labels", "source_file", "record_index")
_COUNTS = ("_truncated", "_merges", "_trims", "_dropped", "_supervised", "_records", "_length")


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ImportError("the Ray path needs Ray Data, an optional extra of this package: "
                          "pip install 'llm-data-handbook[ray]' (or pip install 'ray[data]')") from None
    return ray


def _read_file(batch: Any, template: str, tokenizer_dir: str | None, batch_size: int):
    """``map_batches`` over file rows: yields Arrow tables of ``batch_size`` records (JSON text) with their
    sort key and location; problems of the reader become rows with ``problem`` set."""
    import pyarrow as pa

    from utils.cli import _template, _uniform, load_tokenizer_arg
    from utils.formats import iter_records

    tokenizer = load_tokenizer_arg(tokenizer_dir)
    tmpl = _template(template)
    for file_no, path in zip(batch.column("source_file").to_pylist(), batch.column("path").to_pylist()):
        problems: list = []
        cols: dict[str, list] = {"source_file": [], "record_index": [], "where": [], "record": [], "problem": []}

        def flush():
            table = pa.table({"source_file": pa.array(cols["source_file"], pa.int32()),
                              "record_index": pa.array(cols["record_index"], pa.int64()),
                              "where": pa.array(cols["where"], pa.string()),
                              "record": pa.array(cols["record"], pa.string()),
                              "problem": pa.array(cols["problem"], pa.string())})
            for values in cols.values():
                values.clear()
            return table

        def add_problems():
            for p in problems:
                for key, value in zip(cols, (int(file_no), -1, "", None, str(p))):
                    cols[key].append(value)
            problems.clear()

        stream = _uniform(iter_records(path, kind="sft", on_error="skip", problems=problems, with_location=True),
                          tmpl, tokenizer, problems)
        for index, (where, record) in enumerate(stream):
            add_problems()
            for key, value in zip(cols, (int(file_no), index, where, json.dumps(dict(record), ensure_ascii=False),
                                         None)):
                cols[key].append(value)
            if len(cols["record"]) >= batch_size:
                yield flush()
        add_problems()
        if cols["record"]:
            yield flush()


def _encode(batch: Any, tokenizer_dir: str | None, template: str, max_length: int | None, truncation: str,
            chat_template_kwargs: Mapping[str, Any] | None):
    """``map_batches`` over record batches: :func:`utils.encode._map_batch` (the local path's function), then
    each output row gets its record's sort key and location back; reader problems pass through as rows."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from utils.cli import load_tokenizer_arg
    from utils.encode import RECORD_JSON, _map_batch, _with_kwargs
    from utils.templates import get_template

    tokenizer = load_tokenizer_arg(tokenizer_dir)
    tmpl = _with_kwargs(get_template(template), chat_template_kwargs)
    ok = pc.is_null(batch.column("problem")).to_numpy(zero_copy_only=False)
    good = batch.filter(pa.array(ok))
    bad = batch.filter(pa.array(~ok))
    out = None
    if len(good):
        out = _map_batch({RECORD_JSON: good.column("record").to_pylist()}, list(range(len(good))), tokenizer, tmpl,
                         max_length, truncation, on_error="skip")
        position = out.column("_index").to_numpy()
        out = out.append_column("source_file", good.column("source_file").take(pa.array(position)))
        out = out.append_column("record_index", good.column("record_index").take(pa.array(position)))
        out = out.append_column("where", good.column("where").take(pa.array(position)))
        out = out.append_column("problem", pa.nulls(len(out), pa.string()))
        records = np.zeros(len(out), dtype=np.int32)
        records[0] = len(good)  # records read (what the local path counts), carried by the batch's first row
        out = out.append_column("_records", pa.array(records))
        out = out.append_column("_length", pc.list_value_length(out.column("input_ids")).cast(pa.int32()))
        out = out.drop_columns(["_index"])
    if len(bad):
        n = len(bad)
        empty = pa.array([[]] * n, pa.list_(pa.int32()))
        zeros = pa.array(np.zeros(n, dtype=np.int32))
        extra = pa.table({"input_ids": empty, "attention_mask": empty, "labels": empty,
                          **{c: zeros for c in _COUNTS if c not in ("_records", "_length")}, "_invalid": pa.array(np.full(n, 1, dtype=np.int32)),
                          "_error_field": pa.array([""] * n), "_error_reason": pa.array([""] * n),
                          "source_file": bad.column("source_file"), "record_index": bad.column("record_index"),
                          "where": bad.column("where"), "problem": bad.column("problem"),
                          "_records": zeros, "_length": zeros})
        out = extra if out is None else pa.concat_tables([out, extra.select(out.column_names)])
    return out


def _keep_rows(batch: Any):
    import pyarrow.compute as pc

    return batch.filter(pc.equal(batch.column("_invalid"), 0)).select(list(ROW_COLUMNS))


def prepare_with_ray(paths: Sequence[str | os.PathLike], out: str | os.PathLike, tokenizer_dir: str | None = None,
                     template: str = "alpaca", *, max_length: int | None = None, truncation: str = "drop",
                     chat_template_kwargs: Mapping[str, Any] | None = None, on_error: str = "stop",
                     batch_size: int = 1000, overwrite: bool = False) -> dict:
    """Encode SFT files on Ray Data into ``out`` (Parquet shards + ``stats.json``); returns the stats.

    The same rows as ``python -m utils prepare`` with the same options (see the module docstring), with
    the sort key columns ``source_file`` and ``record_index``. Uses the running Ray cluster (``ray.init``
    first, e.g. ``ray.init(address="auto")`` on a cluster) or starts a local one. ``out`` may be a local
    folder (written beside it, then renamed: nothing half-written) or any path Ray's ``write_parquet``
    takes (``s3://bucket/prefix``: written in place, staging under ``out + ".staging"``).
    ``on_error="stop"`` raises ``ValueError`` listing every bad record as ``FILE:LINE: field: reason`` and
    writes nothing; ``"skip"`` skips and counts them (``invalid``).
    """
    ray = _ray()
    import pyarrow.dataset as pads

    from utils.encode import check_options

    check_options(max_length, truncation, "skip")
    if on_error not in ("stop", "skip"):
        raise ValueError(f"on_error must be 'stop' or 'skip', got {on_error!r}")
    paths = [str(p) for p in paths]
    for p in paths:
        if not Path(p).is_file():
            raise FileNotFoundError(f"{p}: no such file")
    out = str(out)
    remote = "://" in out
    if not remote and Path(out).exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; choose another out or pass overwrite=True")
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    if not remote:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        work = tempfile.mkdtemp(prefix=f".{Path(out).name}.tmp-", dir=str(Path(out).parent))
        staging, final = str(Path(work) / "encoded"), str(Path(work) / "out")
    else:
        work, staging, final = None, out.rstrip("/") + ".staging", out
    try:
        files = ray.data.from_items([{"source_file": k, "path": str(Path(p).resolve()) if not remote else p}
                                     for k, p in enumerate(paths)], override_num_blocks=len(paths))
        encoded = files.map_batches(_read_file, batch_size=1, batch_format="pyarrow",
                                    fn_kwargs={"template": template, "tokenizer_dir": tokenizer_dir,
                                               "batch_size": batch_size}) \
            .map_batches(_encode, batch_size=None, batch_format="pyarrow",
                         fn_kwargs={"tokenizer_dir": tokenizer_dir, "template": template, "max_length": max_length,
                                    "truncation": truncation, "chat_template_kwargs": chat_template_kwargs})
        encoded.write_parquet(staging)
        # the counts and problems: only these small columns are read back (no token data)
        table = pads.dataset(staging, format="parquet").to_table(
            columns=[*_COUNTS, "_invalid", "_error_field", "_error_reason", "source_file", "record_index", "where",
                     "problem"])
        stats = _stats(table, paths, template, max_length, truncation)
        if stats["problems"] and on_error == "stop":
            n = len(stats["problems"])
            raise ValueError(f"{n} invalid record{'s' if n > 1 else ''}; nothing written (fix them, or pass "
                             "on_error='skip'):\n" + "\n".join(stats["problems"]))
        ray.data.read_parquet(staging).map_batches(_keep_rows, batch_size=None, batch_format="pyarrow") \
            .write_parquet(final)
        problems = stats.pop("problems")
        stats["invalid"] = len(problems)
        if not remote:
            Path(final).mkdir(parents=True, exist_ok=True)
            (Path(final) / "stats.json").write_text(json.dumps(stats, ensure_ascii=False, indent=2) + "\n",
                                                    encoding="utf-8")
            if Path(out).exists():
                shutil.rmtree(out) if Path(out).is_dir() else Path(out).unlink()
            Path(final).rename(out)
        stats["problems"] = problems
        return stats
    finally:
        if work:
            shutil.rmtree(work, ignore_errors=True)


def _stats(table: Any, paths: list[str], template: str, max_length: int | None,
           truncation: str) -> dict:
    import numpy as np
    import pyarrow.compute as pc

    flags = table.column("_invalid").to_numpy()
    bad = table.filter(pc.equal(table.column("_invalid"), 1))
    # per file: the reader's problems (record_index -1) first, then the encoder's in record order
    bad = bad.sort_by([("source_file", "ascending"), ("record_index", "ascending")])
    problems = [r["problem"] if r["problem"] is not None else f"{r['where']}: {r['_error_field']}: {r['_error_reason']}"
                for r in bad.to_pylist()]
    encode_invalid = int(pc.sum(pc.is_null(bad.column("problem"))).as_py() or 0)
    kept = flags == 0
    sums = {c: int(table.column(c).to_numpy().astype(np.int64).sum()) for c in _COUNTS}
    lengths = table.column("_length").to_numpy()
    return {"file": ", ".join(Path(p).name for p in paths), "kind": "sft", "template": template,
            "records": sums["_records"] - encode_invalid, "rows": int(kept.sum()), "dropped": sums["_dropped"],
            "truncated": sums["_truncated"], "tokens": int(lengths[kept].astype(np.int64).sum()),
            "supervised_tokens": sums["_supervised"],
            "boundary_merges": sums["_merges"], "trimmed_replies": sums["_trims"], "max_length": max_length,
            "truncation": truncation, "engine": "ray", "problems": problems}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m utils.distributed``: exit 0 on success, 1 on bad records, 2 on usage errors."""
    parser = argparse.ArgumentParser(prog="python -m utils.distributed", description=(
        "Prepare SFT data on Ray Data: the same rows as `python -m utils prepare`, written as Parquet shards."))
    parser.add_argument("data", nargs="+", help="data files (JSONL, JSON array, Parquet; any form utils.formats reads)")
    parser.add_argument("--out", required=True, help="output folder (Parquet shards + stats.json), or s3://...")
    parser.add_argument("--template", required=True, help="alpaca, vicuna, human_assistant or chat_template")
    parser.add_argument("--tokenizer", default=None, help="local tokenizer directory (default: the course's tiny one); "
                                                          "on a cluster every node must see it at this path")
    parser.add_argument("--max-length", type=int, default=None)
    parser.add_argument("--truncation", choices=("drop", "truncate"), default="drop")
    parser.add_argument("--chat-template-kwargs", default=None, metavar="JSON")
    parser.add_argument("--on-error", choices=("stop", "skip"), default="stop")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--address", default=None,
                        help="Ray cluster to join (e.g. auto, ray://HEAD:10001); default: start a local one")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local cluster (default: all)")
    args = parser.parse_args(argv)
    try:
        ray = _ray()
    except ImportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    kwargs = json.loads(args.chat_template_kwargs) if args.chat_template_kwargs else None
    if args.address:
        ray.init(address=args.address, include_dashboard=False, log_to_driver=False)
    else:
        ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    try:
        stats = prepare_with_ray(args.data, args.out, args.tokenizer, args.template, max_length=args.max_length,
                                 truncation=args.truncation, chat_template_kwargs=kwargs, on_error=args.on_error,
                                 overwrite=args.overwrite)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except (FileNotFoundError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        ray.shutdown()
    for line in stats.pop("problems"):
        print(f"skipped: {line}", file=sys.stderr)
    print(json.dumps(stats, ensure_ascii=False, indent=2))
    print(f"wrote {stats['rows']} rows to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
