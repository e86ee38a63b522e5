"""``python -m utils check PREPARED [--tokenizer DIR] [--template T] [--max-length N] [--sample N] [--json]``.

Exit status: 0 when no error-level pitfall is found (warnings allowed), 1 when one is, 2 for a usage
error or an input that cannot be read as a tokenized data set (the message names the path).
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["add_parser", "run"]


def add_parser(commands) -> argparse.ArgumentParser:
    """Register ``check`` on the ``python -m utils`` sub-command parsers."""
    check = commands.add_parser("check", help="lint a prepared (tokenized) SFT data set for known pitfalls")
    check.add_argument("data", help="a datasets.save_to_disk directory, a Parquet file or directory, or JSONL")
    check.add_argument("--tokenizer", default=None,
                       help="local tokenizer directory (vocabulary, BOS/EOS, decoding); default: none, or the "
                            "shipped tiny one when stats.json says it was used")
    check.add_argument("--template", default=None, choices=("alpaca", "vicuna", "human_assistant", "chat_template"),
                       help="the template the set was made with (its markers and prompt ending)")
    check.add_argument("--max-length", type=int, default=None, help="longest allowed row in tokens")
    check.add_argument("--sample", type=int, default=None, metavar="N",
                       help="re-tokenize the prompts (boundary_merge, prompt_tokens_differ) of about N rows evenly "
                            "spread instead of all (the slow part with --tokenizer); other checks read every row")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument("--quiet", action="store_true", help="no progress bar")
    check.set_defaults(run=run)
    return check


def run(args: argparse.Namespace) -> int:
    from utils.check import UnreadableInput, format_report, lint
    from utils.cli import EXIT_USAGE, CliError, load_tokenizer_arg

    if args.sample is not None and args.sample < 1:
        raise CliError(f"--sample must be at least 1, got {args.sample}", EXIT_USAGE)
    tokenizer = load_tokenizer_arg(args.tokenizer) if args.tokenizer else None
    try:
        report = lint(args.data, tokenizer=tokenizer, template=args.template, max_length=args.max_length,
                      progress=not args.quiet, sample=args.sample)
    except UnreadableInput as error:
        raise CliError(str(error), EXIT_USAGE) from None
    if args.tokenizer:
        report["tokenizer"] = args.tokenizer
    print(json.dumps(report, ensure_ascii=False, indent=2) if args.json else format_report(report))
    sys.stdout.flush()
    return report["exit_status"]
