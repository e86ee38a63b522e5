"""The command line: ``python -m utils prepare | inspect | stats | check | curate`` (``check``: :mod:`utils.check`;
``curate``: :mod:`utils.curate.cli`).

::

    python -m utils prepare DATA... --template alpaca --tokenizer DIR --out OUT_DIR \\
        [--kind sft|preference|kto|pretrain] [--max-length N] [--truncation drop|truncate] [--pack]
        [--chat-template-kwargs JSON] [--num-proc N] [--on-error stop|skip] [--overwrite]
    python -m utils prepare BOOK.txt MORE.jsonl --kind pretrain --max-length 1024 [--restart-positions]
        [--drop-last] --out OUT_DIR
    python -m utils inspect DATA... --template vicuna --tokenizer DIR [-n 3] [--color auto|always|never]
    python -m utils stats DATA... --template alpaca --tokenizer DIR [--max-length N] [--json]

``DATA`` is one or more files or glob patterns (``data/*.jsonl``): JSONL, JSON arrays, Parquet or ``.txt``,
each in any record form :mod:`utils.formats` reads (Alpaca with LLaMA-Factory's columns, ShareGPT,
OpenAI messages, Firefly, TRL), each file in its own. ``--kind`` says what the records train; without
it, the kind is read from the records' keys (TRL-style) and files of different kinds are an error.
Records of another kind than the one prepared are refused with the reason (a KTO ``label: false``
answer is never an SFT target). ``--tokenizer`` is a local directory (this course never downloads);
without it, the tiny tokenizer shipped with the package is used.

``prepare`` writes ``OUT_DIR`` with ``datasets.Dataset.save_to_disk`` and ``OUT_DIR/stats.json`` (counts):

- ``sft`` (:func:`utils.encode.encode_dataset`, each file on its own, rows in file order): columns
  ``input_ids``, ``attention_mask``, ``labels`` (plus ``position_ids`` with ``--pack``,
  :func:`utils.packing.pack_dataset` within windows of :data:`PACK_WINDOW` rows); ``stats.json`` has the
  totals and, for several files, ``files`` (each file's counts);
- ``preference`` / ``kto`` (:func:`utils.preference.encode_preference_dataset`): ``prompt_ids``,
  ``chosen_ids``, ``rejected_ids`` / ``prompt_ids``, ``completion_ids``, ``label`` (TRL's columns; train
  with :func:`utils.preference.trl_trainer`);
- ``pretrain`` (:func:`utils.pretrain.prepare_pretrain`): blocks of ``--max-length`` tokens,
  ``input_ids``, ``attention_mask``, ``labels`` (= ``input_ids``), ``position_ids``; ``stats.json``
  counts documents, tokens, blocks and the tokens of the last block (kept, or dropped with ``--drop-last``).

``--chat-template-kwargs`` (a JSON object, e.g. ``{"enable_thinking": false}``) is passed to the encoder
when not empty. A record with tools is refused when the template does not write tool schemas into the
text (it would be trained without them).

``prepare`` writes nothing at ``OUT_DIR`` unless it succeeds, and never over the user's data
(:mod:`utils.output`): it works in a hidden temporary folder beside it and publishes it with one atomic
rename at the end; ``OUT_DIR`` must not be, hold or lie inside an input; ``--overwrite`` replaces only an
earlier output of this toolkit (never a file or a folder of other files), swapping old and new in one step;
an ``OUT_DIR`` that appears while the run works is never replaced. Temporary folders left by a killed
run are removed by the next run (only those whose process has ended).

Bad input: every problem is printed on its own line, ``FILE:LINE: field: reason`` (``FILE:[INDEX]:
...`` for a JSON array or Parquet), and the exit status is 1; with ``--on-error skip`` bad records are
skipped and counted (``invalid`` in ``stats.json``). Text that is not UTF-8 is located to the line and
byte offset, with its likely encoding (a UTF-8 byte-order mark is fine); lone surrogates and nesting
deeper than :data:`utils.formats.MAX_DEPTH` are record problems too. A run that gives no rows at all
(every record dropped as too long) is an error (status 1; ``stats`` still prints the counts). Usage
errors (an unknown template, a missing or empty tokenizer directory, ``chat_template`` with a tokenizer
that has none, a directory or FIFO given as data, an unreadable file, ``--num-proc`` outside 1..CPUs, an
``--out`` that would destroy data) exit with status 2. A full or read-only disk is one line naming the
folder (status 1). Ctrl-C prints one line and exits with 130 (SIGTERM: 143), leaving nothing behind.
No traceback for any of these: a traceback is a bug.

``--num-proc`` helps only when the tokenizer's own threads do not already keep every core busy (with
``TOKENIZERS_PARALLELISM=false``, or more cores than it uses); a fast tokenizer on 2 cores was slower with
``--num-proc 2`` than with 1.

Example:
    >>> main(["stats", "utils/data/alpaca_samples.jsonl", "--template", "alpaca"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import functools
import glob
import itertools
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

__all__ = ["PACK_WINDOW", "main", "build_parser", "load_tokenizer_arg", "prepare_file"]

PACK_WINDOW = 10_000
"""``prepare --pack`` packs rows within windows of this many examples (keeps memory flat)."""
PERCENTILES = (50, 90, 95, 99)
EXIT_BAD_DATA = 1
EXIT_USAGE = 2


class CliError(Exception):
    """A problem to report as ``error: ...`` with an exit status (2: usage, 1: bad data)."""

    def __init__(self, message: str, status: int = EXIT_USAGE):
        super().__init__(message)
        self.status = status


class BadRecords(CliError):
    """Invalid records: ``lines`` holds one ``FILE:LINE: field: reason`` per problem."""

    def __init__(self, path: Path, lines: list[str]):
        n = len(lines)
        super().__init__(f"{n} invalid record{'s' if n > 1 else ''} in {path}; nothing written (fix them, "
                         "or pass --on-error skip to skip and count them)", EXIT_BAD_DATA)
        self.lines = lines
        self.path = path


# ---- inputs -------------------------------------------------------------------------------------

def load_tokenizer_arg(spec: str | None) -> Any:
    """The tokenizer named on the command line: a local directory, or the shipped tiny one (``None``).

    Never contacts the network: a hub name such as ``gpt2`` is an error that says so.

    Example:
        >>> tok = load_tokenizer_arg(None)  # the course's tiny tokenizer
    """
    if spec is None:
        return _cached_tokenizer(None)
    path = Path(spec)
    if not path.exists():
        raise CliError(f"--tokenizer {spec!r}: no such directory. This course runs offline and never downloads "
                       "from the Hugging Face Hub; pass a local directory holding the tokenizer files "
                       "(tokenizer.json, tokenizer_config.json), e.g. one written by "
                       "tokenizer.save_pretrained(DIR), or omit --tokenizer to use the course's tiny tokenizer.")
    if not path.is_dir():
        raise CliError(f"--tokenizer {spec!r} is a file; pass the directory that holds tokenizer.json")
    if not any((path / name).is_file() for name in _TOKENIZER_FILES):
        raise CliError(f"--tokenizer {spec!r}: this directory holds no tokenizer files (expected tokenizer.json, or "
                       "tokenizer_config.json with its vocabulary files); pass the directory that "
                       "tokenizer.save_pretrained(DIR) wrote")
    try:
        return _cached_tokenizer(str(path.resolve()))
    except Exception as error:  # transformers / tokenizers raise many types for a broken directory
        reason = " ".join(str(error).split()) or type(error).__name__
        raise CliError(f"--tokenizer {spec!r}: cannot load a tokenizer from this directory ({reason})") from None


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "spiece.model",
                    "tiktoken.model", "vocab.txt")


def _check_template(template: Any, tokenizer: Any, spec: str | None) -> None:
    """A usage error, once, when ``chat_template`` is asked of a tokenizer that has none."""
    if getattr(template, "name", None) == "chat_template" and not getattr(tokenizer, "chat_template", None):
        raise CliError(f"--template chat_template: the tokenizer {_tokenizer_name(spec)!r} has no chat template; use "
                       "--template alpaca, vicuna or human_assistant, or a tokenizer that has one")


@functools.lru_cache(maxsize=4)
def _cached_tokenizer(directory: str | None) -> Any:
    """Loaded once per process (``main`` may run many times in one process, e.g. in tests)."""
    if directory is None:
        from utils.models import load_tokenizer

        return load_tokenizer()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(directory, local_files_only=True)


def _template(name: str) -> Any:
    from utils.templates import get_template

    try:
        return get_template(name)
    except (KeyError, ValueError) as error:
        raise CliError(str(error).strip("'\"")) from None


def _data_path(path: str) -> Path:
    """An input file that exists, is a regular file and can be read (else a usage error saying which)."""
    import stat

    data = Path(path)
    try:
        mode = data.stat().st_mode
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    except OSError as error:
        raise CliError(f"{path}: cannot read it: {error.strerror}") from None
    if stat.S_ISDIR(mode):
        raise CliError(f"{path} is a directory; pass the data files in it (e.g. {Path(path) / '*.jsonl'})")
    if not stat.S_ISREG(mode):
        what = "a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "not a regular file"
        raise CliError(f"{path} is {what}; the reader needs a regular file (it reads each file more than once: "
                       "its kind, then its records): save the data to a file first")
    try:
        with open(data, "rb"):
            pass
    except OSError as error:
        raise CliError(f"{path}: cannot read it: {error.strerror}") from None
    return data


def _data_paths(specs: Sequence[str]) -> list[Path]:
    """The input files: each argument a file or a glob pattern (``data/*.jsonl``), in order, without repeats."""
    paths: list[Path] = []
    for spec in specs:
        if any(ch in spec for ch in "*?[") and not Path(spec).exists():
            found = sorted(glob.glob(spec, recursive=True))
            if not found:
                raise CliError(f"{spec}: no file matches this pattern")
            paths += [Path(f) for f in found if Path(f).is_file()]
        else:
            paths.append(_data_path(spec))
    unique = list(dict.fromkeys(paths))
    return unique


def _data_kind(paths: list[Path], requested: str | None) -> str:
    """``--kind``, or the kind every file's first record has (a mix of kinds is an error)."""
    from utils.formats import file_kind

    if requested:
        return requested
    kinds = {}
    for path in paths:
        try:
            kind = file_kind(path)
        except Exception:  # unreadable: the reader reports it with its location
            kind = None
        if kind:
            kinds[path] = kind
    found = sorted(set(kinds.values()))
    if len(found) > 1:
        listing = "; ".join(f"{path}: {kind}" for path, kind in kinds.items())
        raise CliError(f"the input files hold different kinds of records ({listing}); prepare one kind at a time, "
                       "or pass --kind to say which one you mean (records of another kind are then refused)")
    return found[0] if found else "sft"


def _chat_template_kwargs(args: argparse.Namespace) -> dict:
    text = getattr(args, "chat_template_kwargs", None)
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise CliError(f"--chat-template-kwargs: not valid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(value, dict):
        raise CliError("--chat-template-kwargs: expected a JSON object, e.g. '{\"enable_thinking\": false}'")
    return value


def _encode_options(kwargs: dict, function: Any) -> dict:
    """``chat_template_kwargs=...`` for ``function`` when given (and refused clearly if it has no such option)."""
    if not kwargs:
        return {}
    import inspect

    if "chat_template_kwargs" not in inspect.signature(function).parameters:
        raise CliError("--chat-template-kwargs: this version of utils.encode has no chat_template_kwargs option")
    return {"chat_template_kwargs": kwargs}


_TOOL_PROBE = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
               "tools": [{"type": "function", "function": {"name": "zz_probe_tool", "description": "probe",
                                                           "parameters": {"type": "object", "properties": {}}}}]}


def _renders_tools(template: Any, tokenizer: Any) -> bool:
    """Does ``template`` write a record's tool schemas into the text (else tool records would lose them)?"""
    try:
        return "zz_probe_tool" in "".join(s.text for s in template.segments(_TOOL_PROBE, tokenizer))
    except (ValueError, TypeError, KeyError):
        return False


def _uniform(stream, template: Any, tokenizer: Any, problems: list):
    """SFT records in one form per run, as Arrow needs (one set of columns): Alpaca form for the ``alpaca``
    template (single exchanges of a conversation become Alpaca records, which it renders the same way;
    the others are refused with its reason), the conversation form for the other templates (which render an
    Alpaca record as its conversation). A record with tools is refused when the template does not write
    tool schemas into the text: it would be trained without them."""
    from utils.formats import RecordError, conversation_of, to_messages

    tools_ok = None
    for where, record in stream:
        if "tools" in record or any("tool_calls" in m or m.get("role") == "tool" for m in record.get("messages", ())):
            if tools_ok is None:
                tools_ok = _renders_tools(template, tokenizer)
            if not tools_ok:
                problems.append(RecordError("tools", f"the {template.name!r} template (with this tokenizer) does not "
                                                     "write tool schemas and tool calls into the text; this record "
                                                     "would be trained without them. Use a chat template that "
                                                     "renders tools", where))
                continue
        if template.name == "alpaca" and "messages" in record:
            try:
                template.segments(record, tokenizer)
            except ValueError as error:
                problems.append(RecordError("messages", str(error), where))
                continue
            ((user, reply),) = conversation_of(record)[1]
            record = {"instruction": user, "input": "", "output": reply}
        elif template.name != "alpaca" and "messages" not in record:
            record = {"messages": to_messages(record)}
        yield where, record


def _encode_file(path: Path, tokenizer: Any, template: Any, args: argparse.Namespace, workdir: str,
                 progress: bool) -> tuple[Any, list[str]]:
    """Read, validate and encode a file in one pass: ``(EncodeResult, problem lines)``.

    Every problem is collected -- records :func:`utils.formats.iter_records` rejects and records the
    template cannot encode (:class:`utils.encode.EncodeError`) -- each as ``FILE:LINE: field: reason``.
    With ``--on-error stop`` (default) any problem raises :class:`BadRecords` listing all of them.
    """
    from utils.encode import LocationLog, encode_dataset, records_to_dataset
    from utils.formats import iter_records

    problems: list[Any] = []
    where_of = LocationLog(workdir)  # FILE:LINE of each record (on disk), to place the errors the template finds

    def located(stream):
        for where, record in stream:
            where_of.append(where)
            yield record

    records_in = iter_records(path, kind="sft", on_error="skip", problems=problems, with_location=True)
    stream = located(_uniform(records_in, template, tokenizer, problems))
    first = next(stream, None)
    if first is None:  # nothing valid to encode
        if problems and args.on_error == "stop":
            raise BadRecords(path, [str(p) for p in problems])
        error = CliError(f"{path}: no valid records" if problems else f"{path}: no records", EXIT_BAD_DATA)
        error.lines = [f"skipped: {p}" for p in problems]
        raise error
    stream = itertools.chain([first], stream)
    if progress:
        from datasets.utils import tqdm  # honours datasets.disable_progress_bars()

        stream = tqdm(stream, desc="read", unit=" records", leave=False)
    records = records_to_dataset(stream, workdir)
    result = encode_dataset(records, tokenizer, template, max_length=args.max_length,
                            truncation=args.truncation, num_proc=getattr(args, "num_proc", None),
                            cache_dir=workdir, on_error="skip",
                            **_encode_options(_chat_template_kwargs(args), encode_dataset))
    lines = [str(p) for p in problems]
    lines += [f"{where_of[e.index]}: {e.field}: {e.reason}" for e in result.problems]
    if lines and args.on_error == "stop":
        raise BadRecords(path, lines)
    return result, lines


def _located_records(paths: list[Path], kind: str, problems: list, where_of: Any):
    """The normalized records of every file, in order; each one's ``FILE:LINE`` appended to ``where_of``."""
    from utils.formats import iter_records

    for path in paths:
        for where, record in iter_records(path, kind=kind, on_error="skip", problems=problems, with_location=True):
            where_of.append(where)
            yield record


# ---- statistics ---------------------------------------------------------------------------------

def _length_summary(lengths: Any) -> dict[str, float]:
    import numpy as np

    if len(lengths) == 0:
        return {}
    summary = {"min": int(np.min(lengths)), "mean": round(float(np.mean(lengths)), 1)}
    for q in PERCENTILES:
        summary[f"p{q}"] = int(np.percentile(lengths, q, method="nearest"))
    summary["max"] = int(np.max(lengths))
    return summary


def _tokenizer_name(spec: str | None) -> str:
    return Path(spec).name if spec else "tiny (shipped)"


def _stats(result: Any, invalid: int, path: Path, tokenizer_name: str) -> dict[str, Any]:
    stats = {"file": path.name, "tokenizer": tokenizer_name}
    stats.update(result.as_dict())
    stats["records"] = result.records - result.invalid  # valid records; ``invalid`` counts every rejected one
    stats["invalid"] = invalid
    stats["examples"] = result.rows
    stats["supervised_share"] = round(result.supervised_tokens / result.tokens, 4) if result.tokens else 0.0
    stats["lengths"] = _length_summary(result.lengths())
    return stats


def _format_table(stats: dict[str, Any]) -> str:
    kind = stats.get("kind", "sft")
    rows = [("file", stats["file"]), ("kind", kind)]
    if kind != "pretrain":
        rows.append(("template", stats["template"]))
    rows.append(("tokenizer", stats["tokenizer"]))
    if kind == "pretrain":
        rows += [("documents", stats["documents"]), ("invalid (skipped)", stats["invalid"]),
                 ("tokens", stats["tokens"]), ("blocks", f"{stats['blocks']} of {stats['max_length']} tokens"
                                                         + (", positions restart per document"
                                                            if stats["restart_positions"] else "")),
                 ("last block", f"{stats['last_block_tokens']} tokens" if not stats["dropped_tokens"] else
                  f"dropped ({stats['dropped_tokens']} tokens)")]
    elif kind in ("preference", "kto"):
        rows += [("records", stats["records"]), ("invalid (skipped)", stats["invalid"]),
                 ("dropped (too long)", stats["dropped"]), ("truncated", stats["truncated"]),
                 ("rows", stats["rows"]), ("prompt tokens", stats["prompt_tokens"]),
                 ("answer tokens (supervised)", stats["answer_tokens"]),
                 ("closing tokens (left out)", stats["closing_tokens"])]
        if kind == "kto":
            rows.append(("desirable / undesirable", f"{stats['desirable']} / {stats['undesirable']}"))
    else:
        rows += [("records", stats["records"]), ("invalid (skipped)", stats["invalid"]),
                 ("dropped (too long)", stats["dropped"]), ("truncated", stats["truncated"]),
                 ("rows", stats["rows"]), ("tokens", stats["tokens"]),
                 ("supervised tokens", f"{stats['supervised_tokens']} ({stats['supervised_share']:.1%})"),
                 ("boundary merges", stats["boundary_merges"])]
        if stats.get("packed"):
            rows.append(("examples packed", stats["examples"]))
            rows.append(("packing efficiency", f"{stats['packing_efficiency']['packed']:.1%} packed vs "
                                               f"{stats['packing_efficiency']['padded']:.1%} padded "
                                               f"(batch {stats['packing_efficiency']['batch_size']})"))
    lengths = stats.get("lengths")
    if lengths:
        rows.append(("length (tokens)", "  ".join(f"{k} {v}" for k, v in lengths.items())))
    if stats.get("max_length") and kind != "pretrain":
        rows.append(("max_length", f"{stats['max_length']} ({stats['truncation']})"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


# ---- commands -----------------------------------------------------------------------------------

_SUMMED = ("records", "rows", "dropped", "invalid", "truncated", "tokens", "supervised_tokens", "boundary_merges",
           "examples")


def _prepare_sft(paths: list[Path], tokenizer: Any, args: argparse.Namespace, workdir: str,
                 progress: bool) -> tuple[Any, dict, list[str]]:
    """Each file encoded on its own (its own format), the rows concatenated; stats per file and in total."""
    import datasets

    template = _template(args.template)
    results, per_file, problems, failures = [], [], [], []
    for path in paths:
        try:
            result, lines = _encode_file(path, tokenizer, template, args, workdir, progress)
        except BadRecords as error:  # collect every file's problems before stopping
            failures.append(error)
            continue
        results.append(result)
        problems += lines
        per_file.append(_stats(result, len(lines), path, _tokenizer_name(args.tokenizer)))
    if failures:
        if len(failures) == 1 and len(paths) == 1:
            raise failures[0]
        lines = [line for f in failures for line in f.lines]
        error = CliError(f"{len(lines)} invalid record{'s' if len(lines) > 1 else ''} in "
                         f"{', '.join(str(f.path) for f in failures)}; nothing written (fix them, or pass --on-error "
                         "skip to skip and count them)", EXIT_BAD_DATA)
        error.lines = lines
        raise error
    if len(results) == 1:
        stats = per_file[0]
        dataset = results[0].dataset
        lengths = results[0].lengths()
    else:
        import numpy as np

        dataset = datasets.concatenate_datasets([r.dataset for r in results])
        lengths = np.concatenate([r.lengths() for r in results])
        stats = {"file": ", ".join(p.name for p in paths), "tokenizer": _tokenizer_name(args.tokenizer)}
        stats.update({k: v for k, v in per_file[0].items() if k not in _SUMMED and k not in ("file", "lengths")})
        stats.update({k: sum(f[k] for f in per_file) for k in _SUMMED})
        stats["supervised_share"] = round(stats["supervised_tokens"] / stats["tokens"], 4) if stats["tokens"] else 0.0
        stats["lengths"] = _length_summary(lengths)
        stats["files"] = per_file
    stats["kind"] = "sft"
    stats["packed"] = bool(getattr(args, "pack", False))
    if stats["packed"] and not len(dataset):
        raise CliError(f"nothing left to pack: {_nothing_left(stats)}", EXIT_BAD_DATA)
    if stats["packed"]:
        from utils.packing import pack_dataset, packing_efficiency

        dataset = pack_dataset(dataset, args.max_length, window=PACK_WINDOW, desc="pack" if progress else None)
        stats["rows"] = len(dataset)
        import pyarrow.compute as pc

        packed_lengths = pc.list_value_length(dataset.data.column("input_ids")).to_numpy()
        stats["packing_efficiency"] = {"batch_size": 8, "padded": round(packing_efficiency(lengths, 8), 4),
                                       "packed": round(packing_efficiency(packed_lengths, 8), 4)}
    return dataset, stats, problems


def _check_problems(paths: list[Path], lines: list[str], args: argparse.Namespace) -> None:
    if lines and getattr(args, "on_error", "stop") == "stop":
        raise BadRecords(paths[0] if len(paths) == 1 else ", ".join(map(str, paths)), lines)


def _prepare_preference(paths: list[Path], kind: str, tokenizer: Any, args: argparse.Namespace,
                        workdir: str) -> tuple[Any, dict, list[str]]:
    from utils.encode import LocationLog
    from utils.preference import encode_preference_dataset

    template = _template(args.template)
    problems: list = []
    where_of = LocationLog(workdir)
    options = _encode_options(_chat_template_kwargs(args), encode_preference_dataset)
    result = encode_preference_dataset(_located_records(paths, kind, problems, where_of), tokenizer, template,
                                       kind=kind, max_length=args.max_length, truncation=args.truncation,
                                       on_error="skip", **options)
    lines = [str(p) for p in problems] + [f"{where_of[e.index]}: {e.field}: {e.reason}" for e in result.problems]
    _check_problems(paths, lines, args)
    if result.records == 0 or result.rows == 0 and not result.dropped:
        error = CliError(f"{', '.join(map(str, paths))}: no valid records", EXIT_BAD_DATA)
        error.lines = [f"skipped: {line}" for line in lines]
        raise error
    import numpy as np

    answers = ("chosen_ids", "rejected_ids") if kind == "preference" else ("completion_ids",)
    table = result.dataset.data
    import pyarrow.compute as pc

    prompt = pc.list_value_length(table.column("prompt_ids")).to_numpy()
    longest = np.max([pc.list_value_length(table.column(a)).to_numpy() for a in answers], axis=0) if len(prompt) \
        else np.array([])
    stats = {"file": ", ".join(p.name for p in paths), "tokenizer": _tokenizer_name(args.tokenizer), **result.as_dict()}
    stats["records"] = result.records - result.invalid
    stats["invalid"] = len(lines)
    stats["lengths"] = _length_summary(prompt + longest)
    return result.dataset, stats, lines


def _prepare_pretrain(paths: list[Path], tokenizer: Any, args: argparse.Namespace,
                      workdir: str) -> tuple[Any, dict, list[str]]:
    from utils.encode import LocationLog
    from utils.pretrain import prepare_pretrain

    if not args.max_length:
        raise CliError("--kind pretrain needs --max-length (the length of a block)")
    problems: list = []
    where_of = LocationLog(workdir)
    result = prepare_pretrain(_located_records(paths, "pretrain", problems, where_of), tokenizer, args.max_length,
                              restart_positions=getattr(args, "restart_positions", False),
                              remainder="drop" if getattr(args, "drop_last", False) else "keep", on_error="skip",
                              cache_dir=workdir)
    lines = [str(p) for p in problems] + [f"{where_of[i]}: text: {message.split(': ', 1)[1]}"
                                          for i, message in result.problems]
    _check_problems(paths, lines, args)
    if result.documents == 0:
        error = CliError(f"{', '.join(map(str, paths))}: no valid documents", EXIT_BAD_DATA)
        error.lines = [f"skipped: {line}" for line in lines]
        raise error
    stats = {"file": ", ".join(p.name for p in paths), "tokenizer": _tokenizer_name(args.tokenizer), **result.as_dict()}
    stats["invalid"] = len(lines)
    stats["records"] = result.documents
    stats["rows"] = result.blocks
    return result.dataset, stats, lines


def prepare_file(args: argparse.Namespace, workdir: str, progress: bool = True) -> tuple[Any, dict, list[str]]:
    """Encode (and pack) ``args.data`` (one or more files): ``(dataset, stats, problem lines)``; the work of
    ``prepare`` and ``stats``. The kind (``--kind``, or read from the files' records) chooses the path:
    ``sft`` (:mod:`utils.encode`), ``preference`` / ``kto`` (:mod:`utils.preference`), ``pretrain``
    (:mod:`utils.pretrain`)."""
    specs = args.data if isinstance(args.data, (list, tuple)) else [args.data]
    paths = _data_paths([str(s) for s in specs])
    kind = _data_kind(paths, getattr(args, "kind", None))
    if kind != "pretrain" and not args.template:
        raise CliError(f"--template is needed for {kind} data (alpaca, vicuna, human_assistant or chat_template)")
    if kind != "sft" and getattr(args, "pack", False):
        raise CliError(f"--pack packs SFT rows; {kind} rows are not packed"
                       + (" (pretraining blocks are always full: see --max-length)" if kind == "pretrain" else ""))
    tokenizer = load_tokenizer_arg(args.tokenizer)
    if kind != "pretrain":
        _check_template(_template(args.template), tokenizer, args.tokenizer)
    if kind == "sft":
        return _prepare_sft(paths, tokenizer, args, workdir, progress)
    if kind in ("preference", "kto"):
        return _prepare_preference(paths, kind, tokenizer, args, workdir)
    return _prepare_pretrain(paths, tokenizer, args, workdir)


def _nothing_left(stats: dict) -> str | None:
    """Why a run gives no rows at all (every record dropped or invalid), or None when it gives some."""
    if stats.get("rows", 0):
        return None
    if stats.get("kind") == "pretrain":
        return (f"0 blocks: the {stats.get('tokens', 0)} tokens do not fill one block of --max-length "
                f"{stats.get('max_length')} and --drop-last drops the rest")
    dropped = stats.get("dropped", 0)
    if dropped:
        return (f"0 rows: every record was dropped ({dropped} longer than --max-length {stats.get('max_length')}); "
                "raise --max-length, or pass --truncation truncate to keep their start")
    return "0 rows: no record could be encoded"


def _write_os_error(error: OSError, out: Path, advice: str | None = None) -> CliError:
    """A disk-full / read-only / permission error met while writing ``out``, as one message (exit 1)."""
    from utils.output import describe_os_error

    message = describe_os_error(error, out, advice=advice)
    if message is None:
        where = f"{error.filename}: " if getattr(error, "filename", None) else ""
        message = f"writing {out} failed: {where}{error.strerror or error}; nothing was written"
    return CliError(message, EXIT_BAD_DATA)


def _cmd_prepare(args: argparse.Namespace) -> int:
    from utils.formats import FileReadError
    from utils.output import StagedOutput

    if args.pack and not args.max_length:
        raise CliError("--pack needs --max-length (the length of a packed row)")
    specs = args.data if isinstance(args.data, (list, tuple)) else [args.data]
    inputs = _data_paths([str(s) for s in specs])
    out = Path(args.out)
    stage = None
    try:
        with StagedOutput(out, inputs, overwrite=args.overwrite, command="prepare") as stage:
            dataset, stats, problems = prepare_file(args, str(stage.workdir), progress=not args.quiet)
            empty = _nothing_left(stats)
            if empty:
                raise CliError(f"{empty}; nothing written to {out}", EXIT_BAD_DATA)
            shards = getattr(args, "num_shards", None)  # at most one shard per row
            dataset.save_to_disk(str(stage.path), num_shards=min(shards, max(len(dataset), 1)) if shards else None)
            (stage.path / "stats.json").write_text(json.dumps(stats, ensure_ascii=False, indent=2) + "\n",
                                                   encoding="utf-8")
            stage.commit()
    except KeyboardInterrupt as error:
        error.committed = stage is not None and stage.committed  # Ctrl-C during the commit waits for it
        raise
    except (FileReadError, CliError):
        raise
    except OSError as error:
        raise _write_os_error(error, out) from None
    for line in problems:
        print(f"skipped: {line}", file=sys.stderr)
    print(_format_table(stats))
    print(f"wrote {stats['rows']} rows to {out}")
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    from utils.formats import FileReadError
    from utils.output import ScratchDir

    scratch = ScratchDir(prefix="utils-stats-")
    try:
        with scratch as workdir:
            _, stats, problems = prepare_file(args, str(workdir), progress=not args.quiet)
    except (FileReadError, CliError):
        raise
    except OSError as error:
        raise _write_os_error(error, scratch.parent / "utils-stats-*",
                              "set TMPDIR to a folder with room for the encoded rows") from None
    for line in problems:
        print(f"skipped: {line}", file=sys.stderr)
    print(json.dumps(stats, ensure_ascii=False, indent=2) if args.json else _format_table(stats))
    empty = _nothing_left(stats)
    if empty:
        print(f"error: {empty}", file=sys.stderr)
        return EXIT_BAD_DATA
    return 0


def _use_color(choice: str) -> bool:
    if choice == "auto":
        return sys.stdout.isatty() and "NO_COLOR" not in os.environ
    return choice == "always"


def _inspect_rows(paths: list[Path], kind: str, tokenizer: Any, args: argparse.Namespace, problems: list):
    """``(title, row)`` of the first ``-n`` examples (a row: ``input_ids`` + ``labels``), problems on the way."""
    from utils.encode import IGNORE_INDEX, encode_batch
    from utils.formats import iter_records

    if kind == "pretrain":
        from utils.pretrain import pretrain_blocks

        if not args.max_length:
            raise CliError("--kind pretrain needs --max-length (the length of a block)")
        records = (r for path in paths for r in iter_records(path, kind=kind, on_error="skip", problems=problems))
        blocks = pretrain_blocks(records, tokenizer, args.max_length,
                                 restart_positions=getattr(args, "restart_positions", False))
        for index, block in enumerate(itertools.islice(blocks, args.n)):
            yield f"block {index + 1}", {"input_ids": block["input_ids"], "labels": block["labels"]}
        return
    template = _template(args.template)
    options = _chat_template_kwargs(args)
    shown = 0
    for path in paths:
        stream = iter_records(path, kind=kind, on_error="skip", problems=problems, with_location=True)
        for where, example in stream:
            if shown >= args.n:
                return
            shown += 1
            try:
                if kind == "sft":
                    (row,) = encode_batch([example], tokenizer, template, args.max_length, args.truncation,
                                          **_encode_options(options, encode_batch))
                    yield f"example {shown} · {template.name}", row
                    continue
                from utils.preference import encode_kto, encode_preference

                row = (encode_preference if kind == "preference" else encode_kto)(
                    example, tokenizer, template, args.max_length, args.truncation, chat_template_kwargs=options)
            except ValueError as error:
                reason = str(error).split(": ", 1)[1] if str(error).startswith("record ") else str(error)
                problems.append(f"{where}: {getattr(error, 'field', 'record')}: {reason}"
                                if hasattr(error, "field") else f"{where}: {reason}")
                continue
            if row is None:
                yield f"example {shown} · {template.name}", None
                continue
            for side in ("chosen", "rejected", "completion"):
                if f"{side}_ids" in row:
                    label = f" (label {str(row['label']).lower()})" if side == "completion" else ""
                    answer = row[f"{side}_ids"]
                    yield (f"example {shown} · {template.name} · {side}{label}",
                           {"input_ids": row["prompt_ids"] + answer,
                            "labels": [IGNORE_INDEX] * len(row["prompt_ids"]) + answer})


def _cmd_inspect(args: argparse.Namespace) -> int:
    from utils.encode import IGNORE_INDEX
    from utils.viz.masks import mask_ansi

    paths = _data_paths([str(s) for s in args.data])
    kind = _data_kind(paths, args.kind)
    if kind != "pretrain" and not args.template:
        raise CliError(f"--template is needed for {kind} data (alpaca, vicuna, human_assistant or chat_template)")
    tokenizer = load_tokenizer_arg(args.tokenizer)
    if kind != "pretrain":
        _check_template(_template(args.template), tokenizer, args.tokenizer)
    color = _use_color(args.color)
    problems: list[Any] = []
    shown = failed = dropped = 0
    for title, row in _inspect_rows(paths, kind, tokenizer, args, problems):
        failed += len(problems)
        for problem in problems:
            print(str(problem), file=sys.stderr)
        problems.clear()
        title = f"── {title} · {_tokenizer_name(args.tokenizer)} "
        if row is None:
            print(f"{title}── dropped: longer than --max-length {args.max_length}\n")
            dropped += 1
            continue
        supervised = sum(label != IGNORE_INDEX for label in row["labels"])
        print(f"{title}· {len(row['input_ids'])} tokens, {supervised} supervised ──")
        print(mask_ansi(row, tokenizer, color=color))
        print()
        shown += 1
    failed += len(problems)
    for problem in problems:
        print(str(problem), file=sys.stderr)
    legend = ("\x1b[30;42m supervised \x1b[0m \x1b[37;100m masked (label -100) \x1b[0m "
              "\x1b[97;41m wrong label \x1b[0m" if color else
              "[...] supervised tokens, | token boundary, {...} wrong label; · space, ⏎ newline")
    print(legend)
    if shown:
        return 0
    why = [f"{failed} invalid" if failed else "", f"{dropped} longer than --max-length" if dropped else ""]
    print(f"error: no example to show ({', '.join(w for w in why if w) or 'no records'})", file=sys.stderr)
    return EXIT_BAD_DATA


_NUM_PROC_HELP = ("processes for encoding, 1 to the number of CPUs (default 1). It helps only when the tokenizer's "
                  "own threads do not already keep every core busy (TOKENIZERS_PARALLELISM=false, or more cores "
                  "than the tokenizer uses); with a fast tokenizer on 2 cores, 2 processes were slower than 1")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m utils``."""
    parser = argparse.ArgumentParser(prog="python -m utils", description=(
        "Prepare training data (SFT, preference / KTO, pretraining text): encode with prompt masking, inspect "
        "masks, count tokens. "
        "Everything runs offline."))
    commands = parser.add_subparsers(dest="command", required=True, metavar="{prepare,inspect,stats,check,curate}")

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("data", nargs="+", help="data files or glob patterns: JSONL, JSON array, Parquet or .txt "
                                                 "(any record form utils.formats reads; each file its own form)")
        sub.add_argument("--kind", choices=("sft", "preference", "kto", "pretrain"), default=None,
                         help="what the records train (default: read from the records' keys; a mix is an error)")
        sub.add_argument("--template", default=None,
                         help="alpaca, vicuna, human_assistant or chat_template (the tokenizer's own); "
                              "not used for --kind pretrain")
        sub.add_argument("--chat-template-kwargs", default=None, metavar="JSON",
                         help="options for the chat template, e.g. '{\"enable_thinking\": false}'")
        sub.add_argument("--restart-positions", action="store_true",
                         help="pretrain: restart position_ids at each document start")
        sub.add_argument("--tokenizer", default=None,
                         help="local tokenizer directory (default: the course's tiny tokenizer)")
        sub.add_argument("--max-length", type=int, default=None, help="longest row in tokens (default: none)")
        sub.add_argument("--truncation", choices=("drop", "truncate"), default="drop",
                         help="what to do with longer examples (default: drop)")

    prepare = commands.add_parser("prepare", help="encode a data file and save it with datasets.save_to_disk")
    common(prepare)
    prepare.add_argument("--out", required=True, help="output directory (must not exist, see --overwrite)")
    prepare.add_argument("--pack", action="store_true", help="pack whole examples into rows of --max-length")
    prepare.add_argument("--drop-last", action="store_true",
                         help="pretrain: drop the short last block (its tokens are counted in stats.json)")
    prepare.add_argument("--num-proc", type=int, default=None, help=_NUM_PROC_HELP)
    prepare.add_argument("--num-shards", type=_positive_int, default=None, metavar="N",
                         help="write the rows as N Arrow files (shards a trainer can stream; default: by size)")
    prepare.add_argument("--on-error", choices=("stop", "skip"), default="stop",
                         help="bad records: stop and list them all (default), or skip and count them")
    prepare.add_argument("--overwrite", action="store_true", help="replace an existing --out directory written by an earlier "
                         "run (never a file or a folder of other files)")
    prepare.add_argument("--quiet", action="store_true", help="no progress bars")
    prepare.set_defaults(run=_cmd_prepare)

    inspect = commands.add_parser("inspect", help="show the first examples with their label masks")
    common(inspect)
    inspect.add_argument("-n", type=_positive_int, default=3, help="how many examples (default: 3)")
    inspect.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                         help="colour the mask (default: when writing to a terminal)")
    inspect.set_defaults(run=_cmd_inspect)

    stats = commands.add_parser("stats", help="counts and length percentiles of an encoded data file")
    common(stats)
    stats.add_argument("--on-error", choices=("stop", "skip"), default="stop",
                       help="bad records: stop and list them all (default), or skip and count them")
    stats.add_argument("--num-proc", type=int, default=None, help=_NUM_PROC_HELP)
    stats.add_argument("--json", action="store_true", help="print the statistics as JSON")
    stats.add_argument("--quiet", action="store_true", help="no progress bars")
    stats.add_argument("--drop-last", action="store_true", help="pretrain: drop the short last block")
    stats.set_defaults(run=_cmd_stats)

    from utils.check.command import add_parser as add_check  # lint a prepared set: utils/check/
    from utils.curate.cli import add_parser as add_curate_parser  # `curate`: its code is in utils/curate/cli.py

    add_check(commands)
    add_curate_parser(commands)
    return parser


EXIT_INTERRUPTED = 130
"""Exit status after Ctrl-C (SIGINT), as shells report it (128 + 2); 143 after SIGTERM."""


class _Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that temporary folders are removed on the way out."""


def _on_sigterm(signum, frame):  # pragma: no cover - exercised by tests/test_faults.py in a subprocess
    raise _Terminated()


_IN_RUN = False


def _child_after_fork() -> None:
    """Worker processes (``--num-proc``) leave Ctrl-C and SIGTERM to the main process, which stops them."""
    if _IN_RUN:
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_child_after_fork)


def _interrupted(error: KeyboardInterrupt, args: argparse.Namespace) -> int:
    what = "terminated" if isinstance(error, _Terminated) else "interrupted"
    out = getattr(args, "out", None)
    if getattr(error, "committed", False):
        print(f"\n{what} after {out} was written (it is complete)", file=sys.stderr)
    else:
        print(f"\n{what}; nothing written" + (f" to {out}" if out else ""), file=sys.stderr)
    return 143 if isinstance(error, _Terminated) else EXIT_INTERRUPTED


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 bad data, 2 usage error, 130 interrupted).

    Never a traceback for bad input or a fault of the environment: unreadable or non-UTF-8 files, an
    ``--out`` that would destroy data, a full or read-only disk, Ctrl-C (exit 130, nothing left behind).
    """
    global _IN_RUN
    import signal

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    num_proc = getattr(args, "num_proc", None)
    if num_proc is not None and not 1 <= num_proc <= _cpus():
        print(f"error: --num-proc must be between 1 and {_cpus()} (the CPUs this process may use), got {num_proc}. "
              "It helps only when the tokenizer's own threads do not already keep every core busy",
              file=sys.stderr)
        return EXIT_USAGE
    if (num_proc or 1) > 1:
        # worker processes share the cores; a tokenizer thread pool inherited over fork would deadlock
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if getattr(args, "quiet", False):
        import datasets

        datasets.disable_progress_bars()
    if args.max_length is not None and args.max_length < 2:
        print("error: --max-length must be at least 2", file=sys.stderr)
        return EXIT_USAGE
    from utils.formats import FileReadError
    from utils.output import OutputError

    in_main_thread = hasattr(signal, "SIGTERM") and _in_main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if in_main_thread else None
    _IN_RUN = True
    try:
        return args.run(args)
    except CliError as error:
        for line in getattr(error, "lines", ()):
            print(line, file=sys.stderr)
        print(f"error: {error}", file=sys.stderr)
        return error.status
    except OutputError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.status
    except FileReadError as error:
        print(f"error: {error}; nothing written", file=sys.stderr)
        return EXIT_BAD_DATA
    except KeyboardInterrupt as error:
        return _interrupted(error, args)
    except Exception as error:
        # Ctrl-C inside a library's clean-up can surface as another error (``datasets``' multiprocess map
        # raises TimeoutError while the KeyboardInterrupt is being handled): still an interruption
        interrupt = _interrupt_in_chain(error)
        if interrupt is None:
            raise
        return _interrupted(interrupt, args)
    finally:
        _IN_RUN = False
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _interrupt_in_chain(error: BaseException) -> KeyboardInterrupt | None:
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
