"""``python -m utils curate``: filter data files, write the kept records in their own format, and a report.

::

    python -m utils curate DATA... --out OUT [--near-dup THRESHOLD|off] [--decontaminate EVAL_FILE]
        [--novelty-seeds FILE --novelty THRESHOLD] [--no-quality] [--min-chars N] [--max-chars N]
        [--ngram N] [--on-error stop|skip] [--overwrite]

``DATA`` is one or more JSONL, JSON-array, Parquet or ``.txt`` files (or glob patterns) in any record form
:mod:`utils.formats` reads, each file in one form and one kind. A ``.txt`` file is what :mod:`utils.formats`
reads it as: one pretraining document, one record (``{"text": <the whole file>}``, located ``FILE:1``), so
give a directory of documents as ``docs/*.txt`` to find the duplicated ones. Every record is validated first; bad
records are listed one per line, ``FILE:LINE: field: reason`` (``FILE:[INDEX]`` in a JSON array or
Parquet), the exit status is 1 and nothing is written; with ``--on-error skip`` they are left out of
``OUT`` and listed in the report (``invalid``, counted in ``counts``). The filters are those of
:func:`utils.curate.pipeline.curate`, in its order (exact → quality → contamination → near-duplicate →
novelty), over all input files together: a record duplicated in a later file is removed there.

Output, in the input's own format, records unchanged and in their input order:

- one input: ``OUT`` is a file (JSONL lines copied byte for byte; a JSON array written with
  ``indent=2`` and non-ASCII text as is; Parquet with pyarrow; a kept ``.txt`` document copied byte for
  byte, a removed one not written, as an empty file would be an empty document), and the report ``OUT`` with its
  suffix replaced by ``.report.json`` beside it (``kept.jsonl`` → ``kept.report.json``);
- several inputs: ``OUT`` is a directory with one file per input under the input's file name (two
  inputs with the same name are an error) and ``OUT/report.json``.

The report holds ``counts`` (invalid, records, removed per filter, kept), ``flags`` (quality flags raised),
``settings``, ``inputs`` / ``outputs`` and ``removed``: one entry per removed record with its
``location`` (``FILE:LINE``), ``filter``, ``reason``, ``partner`` and ``partner_location`` (the
``FILE:LINE`` of the record it duplicates, the evaluation text or the seed).

``--decontaminate EVAL_FILE`` (repeatable): evaluation texts, one per record (a record's
:func:`~utils.curate.text.record_text`, or for other JSON objects -- e.g. ``{"question", "answer"}`` --
the text fields of :data:`_TEXT_KEYS` joined) or one per non-empty line of a ``.txt`` file. ``--novelty-seeds FILE``: seed
tasks (records or lines; a record's instruction is compared) for ``--novelty THRESHOLD`` (Self-Instruct:
0.7).

Nothing is written at ``OUT`` unless everything succeeds: files are written to temporary names in the
same directory and renamed at the end; an existing ``OUT`` is refused without ``--overwrite``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping

__all__ = ["add_parser", "run", "read_raw_records", "read_texts"]

_TEXT_KEYS = ("question", "query", "prompt", "instruction", "input", "context", "passage", "choices", "answer",
              "response", "output", "target", "text")
"""Fields read, in this order, from an evaluation record that is not a training record (e.g.
``{"question", "answer", "relation"}``: the question and the answer, not the label); other objects give
all their string values."""


def _errors():
    from utils.cli import BadRecords, CliError

    return CliError, BadRecords


def _file_format(path: Path) -> str:
    """``jsonl``, ``json`` (an array), ``parquet`` or ``txt``, from the suffix and, for JSON, the first character."""
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".txt"):
        return suffix[1:]
    with open(path, encoding="utf-8") as f:
        while True:
            ch = f.read(1)
            if not ch or not ch.isspace() and ch != "\ufeff":
                return "json" if ch == "[" else "jsonl"


def read_raw_records(path: Path, problems: list) -> list[tuple[str, Any]]:
    """``(where, raw record)`` of every valid record of ``path`` as it is in the file (not normalized), read
    and checked by :func:`utils.formats.iter_raw_records` (one kind, that of the first record, and one format
    per file); problems appended as ``FILE:LINE: field: reason``."""
    from utils.formats import iter_raw_records

    errors: list = []
    out = [(where, raw) for where, raw, _ in iter_raw_records(path, kind=None, on_error="skip", problems=errors)]
    problems.extend(str(error) for error in errors)
    return out


def _loose_text(rec: Any) -> str:
    from utils.curate.text import record_text
    from utils.formats import RecordError

    if isinstance(rec, str):
        return rec
    try:
        return record_text(rec)
    except (RecordError, ValueError, KeyError, TypeError):
        if isinstance(rec, Mapping):
            known = [rec[k] for k in _TEXT_KEYS if isinstance(rec.get(k), str)]
            return "\n".join(known or [v for v in rec.values() if isinstance(v, str)])
        raise


def read_texts(path: Path, *, instructions: bool = False) -> tuple[list[str], list[str]]:
    """``(texts, locations)`` of an evaluation or seed file: ``.txt`` one text per non-empty line, else one
    per record (:func:`~utils.curate.text.record_text`, or the string values of other JSON objects;
    ``instructions=True``: :func:`~utils.curate.pipeline.instruction_text`)."""
    from utils.curate.pipeline import instruction_text
    from utils.formats import RecordError, iter_parsed

    CliError, BadRecords = _errors()
    if not path.is_file():
        raise CliError(f"{path}: no such file")
    texts, where = [], []
    if path.suffix.lower() == ".txt":
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                texts.append(line.strip())
                where.append(f"{path}:{lineno}")
        return texts, where
    problems = []
    for at, rec in iter_parsed(path):
        if isinstance(rec, RecordError):
            problems.append(str(rec.at(at)))
            continue
        try:
            text = instruction_text(rec) if instructions else _loose_text(rec)
        except (RecordError, ValueError, KeyError, TypeError) as error:
            text = _loose_text(rec) if isinstance(rec, Mapping) else ""
            if not text:
                problems.append(f"{at}: {error}")
                continue
        if not isinstance(text, str) or not text.strip():
            problems.append(f"{at}: record: no text to compare")
            continue
        texts.append(text)
        where.append(at)
    if problems:
        raise BadRecords(path, problems)
    return texts, where


def _threshold(value: str) -> float | None:
    if value.lower() in ("off", "none", "no"):
        return None
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1] or 'off', got {value!r}") from None
    if not 0.0 < number <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1] or 'off', got {value!r}")
    return number


def _unit(value: str) -> float:
    number = _threshold(value)
    if number is None:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {value!r}")
    return number


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Register ``curate`` on the sub-command set of ``python -m utils``."""
    sub = commands.add_parser("curate", help="filter duplicates, near-duplicates, contamination, low quality; "
                                             "write kept records in the input's format and a report")
    sub.add_argument("data", nargs="+", help="data files or glob patterns: JSONL, JSON array, Parquet, or .txt "
                                               "(one document per file)")
    sub.add_argument("--out", required=True, help="output file (one input) or directory (several inputs)")
    sub.add_argument("--near-dup", type=_threshold, default=0.7, metavar="THRESHOLD|off",
                     help="MinHash Jaccard threshold for near-duplicates (default 0.7), or off")
    sub.add_argument("--ngram", type=int, default=5, help="character shingle size for near-duplicates (default 5)")
    sub.add_argument("--decontaminate", action="append", default=[], metavar="EVAL_FILE",
                     help="remove records sharing an n-gram with these evaluation texts (repeatable)")
    sub.add_argument("--contamination-n", type=int, default=None, metavar="N",
                     help="n-gram length in tokens (words / CJK characters) for --decontaminate (default 10)")
    sub.add_argument("--novelty", type=_unit, default=None, metavar="THRESHOLD",
                     help="Self-Instruct's ROUGE-L novelty filter on instructions (e.g. 0.7)")
    sub.add_argument("--novelty-seeds", default=None, metavar="FILE", help="seed tasks for --novelty")
    sub.add_argument("--no-quality", action="store_true", help="skip the quality heuristics")
    sub.add_argument("--min-chars", type=int, default=None, help="quality: shortest reply kept (default 5)")
    sub.add_argument("--max-chars", type=int, default=None, help="quality: longest record kept (default 10000)")
    sub.add_argument("--on-error", choices=("stop", "skip"), default="stop",
                     help="invalid records: stop and list them all (default), or leave them out and list them "
                          "in the report")
    sub.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    sub.set_defaults(run=run, max_length=None)
    if getattr(commands, "metavar", None) and "curate" not in commands.metavar:
        commands.metavar = commands.metavar.rstrip("}") + ",curate}"
    return sub


def _write(path: Path, fmt: str, source: Path, kept: list[tuple[str, Any]]) -> None:
    if fmt == "jsonl":
        lines = source.read_bytes().split(b"\n")
        with open(path, "wb") as f:
            for where, _ in kept:
                line = lines[int(where.rsplit(":", 1)[1]) - 1].rstrip(b"\r")
                f.write(line + b"\n")
    elif fmt == "json":
        with open(path, "w", encoding="utf-8") as f:
            json.dump([rec for _, rec in kept], f, ensure_ascii=False, indent=2)
            f.write("\n")
    elif fmt == "txt":
        shutil.copyfile(source, path)  # one document per file: kept, it is the file (callers skip a removed one)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pq.read_schema(source)
        table = pa.Table.from_pylist([rec for _, rec in kept], schema=schema) if kept else schema.empty_table()
        pq.write_table(table, path)


def _temp_beside(path: Path, suffix: str = "") -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    return Path(name)


def run(args: argparse.Namespace) -> int:
    """Run ``curate`` (see the module docstring); returns the exit status."""
    from utils.cli import _data_paths
    from utils.curate.pipeline import curate

    CliError, BadRecords = _errors()
    paths = _data_paths([str(s) for s in args.data])
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise CliError(f"--out {out} exists; pass --overwrite to replace it")
    if args.novelty_seeds and args.novelty is None:
        raise CliError("--novelty-seeds needs --novelty THRESHOLD (Self-Instruct used 0.7)")
    several = len(paths) > 1
    if several:
        names = [p.name for p in paths]
        clash = sorted({n for n in names if names.count(n) > 1})
        if clash:
            raise CliError(f"several inputs share a file name ({', '.join(clash)}); OUT/<name> would clash. "
                           "Rename them or curate them one at a time")
    elif out.is_dir():
        raise CliError(f"--out {out} is a directory; with one input OUT is the output file")
    formats = {p: _file_format(p) for p in paths}

    problems: list[str] = []
    located: list[tuple[Path, str, Any]] = []
    for path in paths:
        located += [(path, where, rec) for where, rec in read_raw_records(path, problems)]
    for line in problems:
        print(line, file=sys.stderr)
    if problems and args.on_error == "stop":
        n = len(problems)
        raise CliError(f"{n} invalid record{'s' if n > 1 else ''}; nothing written (fix them, or pass "
                       "--on-error skip to leave them out and list them in the report)", 1)

    eval_texts, eval_where = [], []
    for spec in args.decontaminate:
        texts, where = read_texts(Path(spec))
        eval_texts += texts
        eval_where += where
    seeds, seed_where = [], []
    if args.novelty_seeds:
        seeds, seed_where = read_texts(Path(args.novelty_seeds), instructions=True)
    quality: bool | dict = not args.no_quality
    if quality and (args.min_chars is not None or args.max_chars is not None):
        quality = {k: v for k, v in (("min_chars", args.min_chars), ("max_chars", args.max_chars)) if v is not None}
    options = {"contamination_n": args.contamination_n} if args.contamination_n else {}
    result = curate([rec for _, _, rec in located], near_dup=args.near_dup,
                    decontaminate=eval_texts if args.decontaminate else None, novelty=args.novelty,
                    novelty_seeds=seeds, quality=quality, locations=[w for _, w, _ in located],
                    eval_locations=eval_where, seed_locations=seed_where, ngram=args.ngram, **options)

    kept_by_file: dict[Path, list[tuple[str, Any]]] = {p: [] for p in paths}
    for index in result.kept_indices:
        path, where, rec = located[index]
        kept_by_file[path].append((where, rec))
    targets = {p: (out / p.name if several else out) for p in paths}
    # a .txt input is one document: removed, there is no file to write (an empty one would be an empty document)
    written = [p for p in paths if formats[p] != "txt" or kept_by_file[p]]
    report_path = out / "report.json" if several else out.with_name(out.stem + ".report.json")
    report = {"inputs": [str(p) for p in paths], "outputs": [str(targets[p]) for p in written],
              "report": str(report_path), **result.as_dict()}
    report["invalid"] = problems
    report["counts"] = {"invalid": len(problems), **report["counts"]}
    report["counts_per_file"] = {str(p): {"records": sum(1 for q, _, _ in located if q == p),
                                          "kept": len(kept_by_file[p])} for p in paths}

    out.parent.mkdir(parents=True, exist_ok=True)
    if several:
        work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
        try:
            for path in written:
                _write(work / path.name, formats[path], path, kept_by_file[path])
            (work / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n",
                                              encoding="utf-8")
            if out.exists():
                shutil.rmtree(out) if out.is_dir() else out.unlink()
            os.replace(work, out)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    else:
        (path,) = paths
        data_tmp, report_tmp = _temp_beside(out), _temp_beside(report_path)
        try:
            if written:
                _write(data_tmp, formats[path], path, kept_by_file[path])
            report_tmp.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
            os.replace(report_tmp, report_path)
            if written:
                os.replace(data_tmp, out)
            else:
                data_tmp.unlink()
                out.unlink(missing_ok=True)  # --overwrite: the old OUT is not this run's result
        except BaseException:
            for tmp in (data_tmp, report_tmp):
                tmp.unlink(missing_ok=True)
            raise
    counts = result.counts
    width = max(len(k) for k in counts)
    print("\n".join(f"{k:<{width}}  {v:>8,}" for k, v in counts.items()))
    if result.flags:
        print("quality flags: " + ", ".join(f"{k} {v:,}" for k, v in sorted(result.flags.items())))
    if several or written:
        print(f"wrote {out}" + (f" ({len(written)} files)" if several else "") + f" and {report_path}")
    else:
        print(f"the document was removed: no {out}; wrote {report_path}")
    return 0
