"""A linter for prepared SFT data sets: ``python -m utils check PREPARED [--tokenizer DIR] [--template T]``.

It reads a tokenized set -- ``python -m utils prepare`` output, or one written by TRL's ``SFTTrainer``
preparation, LLaMA-Factory or a script: a ``datasets.save_to_disk`` directory, Parquet or JSONL with
``input_ids`` and ``labels`` (or TRL's ``completion_mask`` / ``assistant_masks``), optionally
``attention_mask`` (0/1, or LLaMA-Factory's ``neat_packing`` segment ids 1, 2, 3 ...), ``position_ids``,
``seq_lengths`` -- and reports the known pitfalls
(:data:`utils.check.checks.CHECKS`), each with its level, how many rows (and tokens or spans) and the
first example rows with the position in the row. It streams the Arrow table in batches with NumPy.

What needs what: ``--tokenizer`` gives the vocabulary size, BOS, the EOS and end-of-turn ids and the
special tokens, and lets the linter decode (template text in replies; boundary merges and prompt
tokens that differ from a fresh tokenization). ``--template`` (or the one ``stats.json`` names) says which
markers and which prompt ending to look for; without it the tokenizer's chat template and the Alpaca and
Vicuna markers are used. Without a tokenizer, BOS and the end token are inferred from the rows, and
a ``prepare`` output made with the shipped tiny tokenizer is checked with it. ``--max-length`` (or the
one in ``stats.json``) enables ``over_length``; the truncation check infers the limit when not given.

Example:
    >>> import datasets, tempfile
    >>> rows = {"input_ids": [[1, 5, 6, 2], [1, 5, 6, 2]], "labels": [[-100, -100, 6, 2], [-100, -100, -100, -100]]}
    >>> path = tempfile.mkdtemp() + "/set"
    >>> datasets.Dataset.from_dict(rows).save_to_disk(path)  # doctest: +ELLIPSIS
    ...
    >>> report = lint(path, progress=False)
    >>> [(f["check"], f["level"], f["rows"], [e["row"] for e in f["examples"]]) for f in report["findings"]]
    [('no_supervised', 'error', 1, [1]), ('duplicate_rows', 'warning', 1, [1])]
    >>> report["exit_status"]
    1
"""

from __future__ import annotations

from typing import Any

import numpy as np

from utils.check.checks import CHECKS, State, Tally, check_batch, finish
from utils.check.facts import Facts, infer_ids, tokenizer_facts
from utils.check.load import Prepared, UnreadableInput, open_prepared
from utils.check.rows import rows_of

__all__ = ["lint", "format_report", "CHECKS", "UnreadableInput", "open_prepared"]

_LEVELS = ("error", "warning", "info")
_NEEDS_TOKENIZER = ("label_out_of_vocab (upper bound)", "input_out_of_vocab (upper bound)", "supervised_special",
                    "supervised_template_text", "boundary_merge", "prompt_tokens_differ")
_SHIPPED = "tiny (shipped)"


def _opening(r: Any) -> np.ndarray | None:
    """The tokens every row of the first batch starts with (up to 8): a template's constant header."""
    offsets = np.concatenate([[0], np.cumsum(r.lengths)])
    shortest = int(r.lengths.min()) if len(r.lengths) else 0  # an empty row: no common opening
    common = 0
    for j in range(min(8, shortest)):
        column = r.ids[offsets[:-1] + j]
        if (column != column[0]).any():
            break
        common += 1
    return r.ids[:common].copy() if common >= 6 else None


def _first_facts(r: Any) -> Facts:
    """BOS and the end token inferred from the first batch (no tokenizer): the end token is the last token
    of most supervised spans, or else the masked token right after most of them (the pad == eos trap)."""
    offsets = np.concatenate([[0], np.cumsum(r.lengths)])
    ends = np.flatnonzero(r.span_end)
    facts = infer_ids(r.ids[offsets[:-1][r.lengths > 0]], r.ids[ends])
    after = ends[(ends + 1 < len(r.ids))]
    after = after[r.row[np.minimum(after + 1, len(r.ids) - 1)] == r.row[after]]
    late = infer_ids(np.array([]), r.ids[after + 1])
    if late.end_ids and _share(r.ids[after + 1], late.end_ids) > _share(r.ids[ends], facts.end_ids):
        facts.end_ids = late.end_ids
        facts.notes = [n for n in facts.notes if not n.startswith("end")]
        facts.notes.append(f"end id inferred as {next(iter(late.end_ids))}: it follows most supervised spans, "
                           "masked")
    return facts


def _share(values: np.ndarray, ids: frozenset) -> float:
    return float(np.isin(values, list(ids)).mean()) if ids and len(values) else 0.0


def lint(path: Any, tokenizer: Any = None, template: str | None = None, max_length: int | None = None,
         progress: bool = True, batch_size: int = 1024, sample: int | None = None) -> dict[str, Any]:
    """Check the prepared set at ``path`` (see the module docstring); returns the report as a dict.

    ``sample=N`` runs the re-tokenization checks (``boundary_merge``, ``prompt_tokens_differ``: a decode
    and an encode per reply, the slow part with a tokenizer) on about ``N`` rows evenly spread (every k-th
    row, k = ceil(rows / N)); every other check still reads every row. ``report["boundary_rows"]["checked"]``
    says how many rows they covered.

    ``report["findings"]`` lists each pitfall found (``check``, ``level``, ``rows``, ``count``,
    ``examples`` as ``{"row", "position"}``, ``message``); ``report["exit_status"]`` is 1 when one is an
    error, else 0. Raises :class:`UnreadableInput` when ``path`` is not a readable tokenized set.
    """
    prepared = path if isinstance(path, Prepared) else open_prepared(path)
    stats = prepared.stats
    notes: list[str] = []
    tokenizer_name = getattr(tokenizer, "name_or_path", None) if tokenizer is not None else None
    if tokenizer is None and stats.get("tokenizer") == _SHIPPED:
        from utils.models import load_tokenizer

        tokenizer, tokenizer_name = load_tokenizer(), _SHIPPED
        notes.append("tokenizer: the shipped tiny one, as stats.json says")
    if template is None and stats.get("template"):
        template = stats["template"]
        notes.append(f"template {template!r} from stats.json")
    limit_origin = "given" if max_length else None
    if max_length is None and stats.get("max_length"):
        max_length, limit_origin = int(stats["max_length"]), "stats.json"
    facts = tokenizer_facts(tokenizer, template) if tokenizer is not None else None
    state = None
    tally = Tally()
    problems: dict = {}
    tokens = supervised = packed_rows = 0
    bar = None
    if progress and prepared.num_rows >= 50_000:
        from tqdm.auto import tqdm

        bar = tqdm(total=prepared.num_rows, unit=" rows", desc="check", leave=False)
    first_row = 0
    for batch in prepared.batches(batch_size):
        r = rows_of(batch, first_row, problems)
        first_row += batch.num_rows
        if bar is not None:
            bar.update(batch.num_rows)
        if r is None:
            continue
        if state is None:
            state = State(facts or _first_facts(r), max_length, _opening(r),
                          boundary_stride=-(-prepared.num_rows // sample) if sample else 1)
            notes += state.facts.notes
        tokens += int(r.lengths.sum())
        supervised += int(r.sup.sum())
        packed_rows += int((r.per_row(r.example_start) > 1).sum())
        check_batch(r, state, tally)
    if bar is not None:
        bar.close()
    for row, column in sorted(problems.get("length_mismatch", {}).items()):
        tally.add("length_mismatch", np.array([row]))
    limit = finish(state, tally, inferred_limit=True) if state else None
    if limit and not max_length:
        notes.append(f"max length inferred as {limit} (the longest example) for the truncation check")
    not_checked = []
    if facts is None:
        not_checked += [f"{c}: needs --tokenizer" for c in _NEEDS_TOKENIZER]
        if state is None or not state.facts.end_ids:
            not_checked.append("end_missing / end_not_supervised: needs --tokenizer (no common end token found)")
    if not max_length:
        not_checked.append("over_length: needs --max-length")
    if sample and state is not None and facts is not None and facts.prompt_ends:
        notes.append(f"--sample {sample}: boundary_merge / prompt_tokens_differ checked on {state.boundary_rows:,} "
                     f"of {prepared.num_rows:,} rows (every {state.boundary_stride:,}-th row); the other checks on all")
    if state is not None and state.boundaries_unchecked:
        notes.append(f"{state.boundaries_unchecked} reply boundaries not checked (no known prompt ending before "
                     f"them), {state.boundaries_checked} checked")
    findings = []
    for check, (level, message) in CHECKS.items():
        found = tally.found.get(check)
        if found is None:
            continue
        finding = {"check": check, "level": level, "rows": found.rows, "count": found.count,
                   "examples": [{"row": row, "position": pos} for row, pos in found.examples], "message": message}
        if found.detail:
            finding["detail"] = found.detail
        findings.append(finding)
    findings.sort(key=lambda f: _LEVELS.index(f["level"]))
    errors = sum(f["level"] == "error" for f in findings)
    return {"source": prepared.source, "format": prepared.format, "rows": prepared.num_rows, "tokens": tokens,
            "supervised_tokens": supervised, "packed_rows": packed_rows,
            "columns": [c for c in prepared.columns], "tokenizer": tokenizer_name, "template": template,
            "max_length": {"value": max_length or limit, "origin": limit_origin or ("inferred" if limit else None)},
            "end_ids": sorted(int(i) for i in state.facts.end_ids) if state else [],
            "bos_id": state.facts.bos_id if state else None,
            "boundaries": {"checked": state.boundaries_checked if state else 0,
                           "unchecked": state.boundaries_unchecked if state else 0},
            "boundary_rows": {"checked": state.boundary_rows if state else 0, "sample": sample},
            "notes": notes, "not_checked": not_checked, "findings": findings,
            "errors": errors, "warnings": sum(f["level"] == "warning" for f in findings),
            "exit_status": 1 if errors else 0}


def _examples(finding: dict) -> str:
    parts = [str(e["row"]) if e["position"] is None else f"{e['row']}@{e['position']}" for e in finding["examples"]]
    return ", ".join(parts) + (", ..." if finding["rows"] > len(parts) else "")


def format_report(report: dict[str, Any]) -> str:
    """The report as text: a summary line, a table of findings (pandas), what was not checked.

    Example rows are ``ROW`` or ``ROW@POSITION`` (the token position in the row, from 0).
    """
    import pandas as pd

    head = (f"{report['source']} ({report['format']}): {report['rows']:,} rows, {report['tokens']:,} tokens, "
            f"{report['supervised_tokens']:,} supervised"
            + (f", {report['packed_rows']:,} packed rows" if report["packed_rows"] else ""))
    lines = [head, f"tokenizer: {report['tokenizer'] or 'none (ids inferred from the rows)'}; "
                   f"template: {report['template'] or 'not named'}; max length: "
                   + (f"{report['max_length']['value']} ({report['max_length']['origin']})"
                      if report["max_length"]["value"] else "unknown")]
    if report["findings"]:
        table = pd.DataFrame([{"level": f["level"], "check": f["check"], "rows": f["rows"], "count": f["count"],
                               "examples (row@pos)": _examples(f)} for f in report["findings"]])
        lines += ["", table.to_string(index=False), ""]
        lines += [f"{f['check']}: {f['message']}" + (f" {f['detail']}" if f.get("detail") else "")
                  for f in report["findings"]]
    else:
        lines += ["", "no pitfall found"]
    for note in report["notes"]:
        lines.append(f"note: {note}")
    for item in report["not_checked"]:
        lines.append(f"not checked: {item}")
    lines.append(f"{report['errors']} error(s), {report['warnings']} warning(s)")
    return "\n".join(lines)
