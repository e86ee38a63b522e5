"""The command line: ``python -m utils prepare | inspect | stats``.

::

    python -m utils prepare DATA.jsonl --template alpaca --tokenizer DIR --out OUT_DIR \\
        [--max-length N] [--truncation drop|truncate] [--pack] [--num-proc N] [--on-error stop|skip]
        [--overwrite]
    python -m utils inspect DATA.jsonl --template vicuna --tokenizer DIR [-n 3] [--color auto|always|never]
    python -m utils stats DATA.jsonl --template alpaca --tokenizer DIR [--max-length N] [--json]

``DATA`` is a JSONL file or a JSON array of Alpaca, ShareGPT or OpenAI-messages records
(:mod:`utils.formats`). ``--tokenizer`` is a local directory (this course never downloads); without
it, the tiny tokenizer shipped with the package is used.

``prepare`` encodes every record (:func:`utils.encode.encode_dataset`), optionally packs the rows
(:func:`utils.packing.pack_dataset`, within windows of :data:`PACK_WINDOW` rows), and writes ``OUT_DIR`` with
``datasets.Dataset.save_to_disk`` (columns ``input_ids``, ``attention_mask``, ``labels``, plus
``position_ids`` when packed) and ``OUT_DIR/stats.json``. It writes nothing at ``OUT_DIR`` unless it
succeeds (it works in a temporary folder beside it and renames it at the end) and refuses to replace
an existing ``OUT_DIR`` without ``--overwrite``.

Bad input: every problem is printed on its own line, ``FILE:LINE: field: reason`` (``FILE:[INDEX]:
...`` for a JSON array), and the exit status is 1; with ``--on-error skip`` bad records are skipped
and counted (``invalid`` in ``stats.json``). Usage errors (an unknown template, a missing tokenizer
directory) exit with status 2.

Example:
    >>> main(["stats", "utils/data/alpaca_samples.jsonl", "--template", "alpaca"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import shutil
import sys
import tempfile
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
    try:
        return _cached_tokenizer(str(path.resolve()))
    except (OSError, ValueError) as error:
        raise CliError(f"--tokenizer {spec!r}: cannot load a tokenizer from this directory ({error})") from None


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
    data = Path(path)
    if not data.is_file():
        raise CliError(f"{path}: no such file")
    return data


def _encode_file(path: Path, tokenizer: Any, template: Any, args: argparse.Namespace, workdir: str,
                 progress: bool) -> tuple[Any, list[str]]:
    """Read, validate and encode a file in one pass: ``(EncodeResult, problem lines)``.

    Every problem is collected -- records :func:`utils.formats.iter_records` rejects and records the
    template cannot encode (:class:`utils.encode.EncodeError`) -- each as ``FILE:LINE: field: reason``.
    With ``--on-error stop`` (default) any problem raises :class:`BadRecords` listing all of them.
    """
    from utils.encode import encode_dataset, records_to_dataset
    from utils.formats import iter_records

    problems: list[Any] = []
    where_of: list[str] = []  # FILE:LINE of each record, to place the errors the template finds

    def located(stream):
        for where, record in stream:
            where_of.append(where)
            yield record

    stream = located(iter_records(path, on_error="skip", problems=problems, with_location=True))
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
                            cache_dir=workdir, on_error="skip")
    lines = [str(p) for p in problems]
    lines += [f"{where_of[e.index]}: {e.field}: {e.reason}" for e in result.problems]
    if lines and args.on_error == "stop":
        raise BadRecords(path, lines)
    return result, lines


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
    rows = [("file", stats["file"]), ("template", stats["template"]), ("tokenizer", stats["tokenizer"]),
            ("records", stats["records"] + stats["invalid"]), ("invalid (skipped)", stats["invalid"]),
            ("dropped (too long)", stats["dropped"]), ("truncated", stats["truncated"]),
            ("rows", stats["rows"]), ("tokens", stats["tokens"]),
            ("supervised tokens", f"{stats['supervised_tokens']} ({stats['supervised_share']:.1%})"),
            ("boundary merges", stats["boundary_merges"])]
    if stats.get("packed"):
        rows.append(("examples packed", stats["examples"]))
        rows.append(("packing efficiency", f"{stats['packing_efficiency']['packed']:.1%} packed vs "
                                           f"{stats['packing_efficiency']['padded']:.1%} padded "
                                           f"(batch {stats['packing_efficiency']['batch_size']})"))
    lengths = stats["lengths"]
    if lengths:
        rows.append(("length (tokens)", "  ".join(f"{k} {v}" for k, v in lengths.items())))
    if stats.get("max_length"):
        rows.append(("max_length", f"{stats['max_length']} ({stats['truncation']})"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


# ---- commands -----------------------------------------------------------------------------------

def prepare_file(args: argparse.Namespace, workdir: str, progress: bool = True) -> tuple[Any, dict, list[str]]:
    """Encode (and pack) ``args.data``: ``(dataset, stats, problem lines)``; the work of ``prepare``."""
    path = _data_path(args.data)
    template = _template(args.template)
    tokenizer = load_tokenizer_arg(args.tokenizer)
    result, problems = _encode_file(path, tokenizer, template, args, workdir, progress)
    stats = _stats(result, len(problems), path, _tokenizer_name(args.tokenizer))
    dataset = result.dataset
    stats["packed"] = bool(getattr(args, "pack", False))
    if stats["packed"]:
        from utils.packing import pack_dataset, packing_efficiency

        lengths = result.lengths().tolist()
        dataset = pack_dataset(dataset, args.max_length, window=PACK_WINDOW, desc="pack" if progress else None)
        stats["rows"] = len(dataset)
        import pyarrow.compute as pc

        packed_lengths = pc.list_value_length(dataset.data.column("input_ids")).to_numpy().tolist()
        stats["packing_efficiency"] = {"batch_size": 8, "padded": round(packing_efficiency(lengths, 8), 4),
                                       "packed": round(packing_efficiency(packed_lengths, 8), 4)}
    return dataset, stats, problems


def _cmd_prepare(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if args.pack and not args.max_length:
        raise CliError("--pack needs --max-length (the length of a packed row)")
    if out.exists() and not args.overwrite:
        raise CliError(f"{out} already exists; choose another --out or pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent)
    try:
        dataset, stats, problems = prepare_file(args, workdir, progress=not args.quiet)
        staged = Path(workdir) / "out"
        dataset.save_to_disk(str(staged))
        (staged / "stats.json").write_text(json.dumps(stats, ensure_ascii=False, indent=2) + "\n",
                                           encoding="utf-8")
        if out.exists():  # --overwrite: swap only now that the new output is complete
            out.rename(Path(workdir) / "old")
        staged.rename(out)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for line in problems:
        print(f"skipped: {line}", file=sys.stderr)
    print(_format_table(stats))
    print(f"wrote {stats['rows']} rows to {out}")
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    workdir = tempfile.mkdtemp(prefix="utils-stats-")
    try:
        _, stats, problems = prepare_file(args, workdir, progress=not args.quiet)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for line in problems:
        print(f"skipped: {line}", file=sys.stderr)
    print(json.dumps(stats, ensure_ascii=False, indent=2) if args.json else _format_table(stats))
    return 0


def _use_color(choice: str) -> bool:
    if choice == "auto":
        return sys.stdout.isatty() and "NO_COLOR" not in os.environ
    return choice == "always"


def _cmd_inspect(args: argparse.Namespace) -> int:
    from utils.encode import IGNORE_INDEX, encode_batch
    from utils.formats import iter_records
    from utils.viz.masks import mask_ansi

    path = _data_path(args.data)
    template = _template(args.template)
    tokenizer = load_tokenizer_arg(args.tokenizer)
    color = _use_color(args.color)
    problems: list[Any] = []
    shown = 0
    for index, example in enumerate(itertools.islice(iter_records(path, on_error="skip", problems=problems),
                                                     args.n)):
        for problem in problems:
            print(str(problem), file=sys.stderr)
        problems.clear()
        try:
            (row,) = encode_batch([example], tokenizer, template, args.max_length, args.truncation)
        except ValueError as error:
            reason = str(error).split(": ", 1)[1] if str(error).startswith("record ") else str(error)
            print(f"{path}: example {index + 1}: {reason}", file=sys.stderr)
            continue
        title = f"── example {index + 1} · {template.name} · {_tokenizer_name(args.tokenizer)} "
        if row is None:
            print(f"{title}── dropped: longer than --max-length {args.max_length}\n")
            continue
        supervised = sum(label != IGNORE_INDEX for label in row["labels"])
        print(f"{title}· {len(row['input_ids'])} tokens, {supervised} supervised ──")
        print(mask_ansi(row, tokenizer, color=color))
        print()
        shown += 1
    for problem in problems:
        print(str(problem), file=sys.stderr)
    legend = ("\x1b[30;42m supervised \x1b[0m \x1b[37;100m masked (label -100) \x1b[0m "
              "\x1b[97;41m wrong label \x1b[0m" if color else
              "[...] supervised tokens, | token boundary, {...} wrong label; · space, ⏎ newline")
    print(legend)
    return 0 if shown or not problems else EXIT_BAD_DATA


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m utils``."""
    parser = argparse.ArgumentParser(prog="python -m utils", description=(
        "Prepare instruction-tuning data: encode with prompt masking, inspect masks, count tokens. "
        "Everything runs offline."))
    commands = parser.add_subparsers(dest="command", required=True, metavar="{prepare,inspect,stats}")

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("data", help="JSONL file or JSON array (Alpaca, ShareGPT or OpenAI messages)")
        sub.add_argument("--template", required=True,
                         help="alpaca, vicuna, human_assistant or chat_template (the tokenizer's own)")
        sub.add_argument("--tokenizer", default=None,
                         help="local tokenizer directory (default: the course's tiny tokenizer)")
        sub.add_argument("--max-length", type=int, default=None, help="longest row in tokens (default: none)")
        sub.add_argument("--truncation", choices=("drop", "truncate"), default="drop",
                         help="what to do with longer examples (default: drop)")

    prepare = commands.add_parser("prepare", help="encode a data file and save it with datasets.save_to_disk")
    common(prepare)
    prepare.add_argument("--out", required=True, help="output directory (must not exist, see --overwrite)")
    prepare.add_argument("--pack", action="store_true", help="pack whole examples into rows of --max-length")
    prepare.add_argument("--num-proc", type=int, default=None, help="processes for encoding")
    prepare.add_argument("--on-error", choices=("stop", "skip"), default="stop",
                         help="bad records: stop and list them all (default), or skip and count them")
    prepare.add_argument("--overwrite", action="store_true", help="replace an existing --out directory")
    prepare.add_argument("--quiet", action="store_true", help="no progress bars")
    prepare.set_defaults(run=_cmd_prepare)

    inspect = commands.add_parser("inspect", help="show the first examples with their label masks")
    common(inspect)
    inspect.add_argument("-n", type=int, default=3, help="how many examples (default: 3)")
    inspect.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                         help="colour the mask (default: when writing to a terminal)")
    inspect.set_defaults(run=_cmd_inspect)

    stats = commands.add_parser("stats", help="counts and length percentiles of an encoded data file")
    common(stats)
    stats.add_argument("--on-error", choices=("stop", "skip"), default="stop",
                       help="bad records: stop and list them all (default), or skip and count them")
    stats.add_argument("--num-proc", type=int, default=None, help="processes for encoding")
    stats.add_argument("--json", action="store_true", help="print the statistics as JSON")
    stats.add_argument("--quiet", action="store_true", help="no progress bars")
    stats.set_defaults(run=_cmd_stats)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 bad data, 2 usage error)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    if (getattr(args, "num_proc", None) or 1) > 1:
        # worker processes share the cores; a tokenizer thread pool inherited over fork would deadlock
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if getattr(args, "quiet", False):
        import datasets

        datasets.disable_progress_bars()
    if args.max_length is not None and args.max_length < 2:
        print("error: --max-length must be at least 2", file=sys.stderr)
        return EXIT_USAGE
    try:
        return args.run(args)
    except CliError as error:
        for line in getattr(error, "lines", ()):
            print(line, file=sys.stderr)
        print(f"error: {error}", file=sys.stderr)
        return error.status
