"""Benchmark: how fast is preparing Alpaca data for SFT, and are the label masks the same?

Compares, on 20,000 Alpaca records (the real Chinese and English files of ``../shared/real_data/``,
repeated) with the GPT-2 and Qwen2 tokenizers of ``../shared/reference_tokenizers/``:

  (a) Stanford Alpaca ``train.py`` preprocessing, re-implemented faithfully (``preprocess`` /
      ``_tokenize_fn``: one tokenizer call per text, prompt and full text each, labels masked by the
      prompt's token count)
  (b) a naive per-record loop: prompt and response tokenized separately, ids concatenated
  (c) ours: ``utils.encode.encode_dataset`` (batched ``Dataset.map``); (c') ``python -m utils prepare``
      end to end (read + validate + encode + save), run in-process
  (d) the lower bound: one batched ``tokenizer(full_texts)`` on already-rendered texts, no masking
  (e) TRL ``SFTTrainer._prepare_dataset`` on prompt/completion data (what ``SFTTrainer`` runs on a
      dataset before training; called without a model)

Multi-turn rows: 20,000 ShareGPT conversations (FastChat's dummy file, repeated) with the Qwen2
tokenizer, ``encode_dataset`` with ``vicuna`` and ``chat_template`` against the raw limit (one batched
tokenizer call on the already-rendered texts) and, for ``chat_template``, TRL's conversational
preparation (``messages`` through ``apply_chat_template``; it cannot mask without ``{% generation %}``).
Beside them, the two parts of our encoding that no exact implementation can skip, each timed alone (the
renders the contract needs, tokenizing the row pieces): the ratio the limit would give if everything else
took no time ("best possible"). ``--multi-turn-only`` runs just these.

It prints one table (records/s and tokens/s, median of 3 runs, with ratios against (a), (d) and
(e)), how many records each method masks differently from (c) and why, packing efficiency vs
padding to the longest row of a batch, and the peak memory of ``prepare`` on 200,000 records
(measured in a subprocess).

    python benchmarks/prepare_bench.py            # full run (~10 min on 2 busy cores)
    python benchmarks/prepare_bench.py --quick    # smoke run (~1 min)

Needs ``../shared/`` beside the repository (or ``LLM_HANDBOOK_SHARED``); runs offline.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import copy
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# the tokenizers library's default: batched calls use a thread per core (2 here); per-example calls
# cannot. Set TOKENIZERS_PARALLELISM=false to compare single-threaded.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
os.environ.setdefault("RAYON_NUM_THREADS", "2")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("LLM_HANDBOOK_SHARED", ROOT.parent / "shared"))
REAL_FILES = ("llamafactory_alpaca_zh_demo.json", "llamafactory_alpaca_en_demo.json")
TOKENIZERS = ("gpt2", "qwen2")
IGNORE_INDEX = -100

# Stanford Alpaca train.py, PROMPT_DICT (tatsu-lab/stanford_alpaca), verbatim.
PROMPT_DICT = {
    "prompt_input": (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
    ),
    "prompt_no_input": (
        "Below is an instruction that describes a task. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n{instruction}\n\n### Response:"
    ),
}


def load_records(n: int) -> list[dict]:
    """``n`` Alpaca records: the real zh + en files, repeated (shuffling would change nothing)."""
    base = []
    for name in REAL_FILES:
        base += json.loads((SHARED / "real_data" / name).read_text(encoding="utf-8"))
    return [dict(base[i % len(base)]) for i in range(n)]


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(SHARED / "reference_tokenizers" / name), local_files_only=True)


def sources_of(records):
    prompt_input, prompt_no_input = PROMPT_DICT["prompt_input"], PROMPT_DICT["prompt_no_input"]
    return [prompt_input.format_map(ex) if ex.get("input", "") != "" else prompt_no_input.format_map(ex)
            for ex in records]


# ---- (a) Stanford Alpaca train.py ---------------------------------------------------------------

def stanford_tokenizer(tokenizer):
    """train.py's set-up: a pad token is added when missing (``smart_tokenizer_and_embedding_resize``).

    train.py loads with ``model_max_length=512`` and truncates; we lift the limit so every method sees
    the same tokens (it changes no record's mask, only which records would be cut).
    """
    tok = copy.deepcopy(tokenizer)
    if tok.pad_token is None:
        tok.add_special_tokens({"pad_token": "[PAD]"})
    tok.model_max_length = 1_000_000
    return tok


def stanford_alpaca(records, tokenizer):
    def _tokenize_fn(strings, tokenizer):
        tokenized_list = [
            tokenizer(text, return_tensors="pt", padding="longest", max_length=tokenizer.model_max_length,
                      truncation=True)
            for text in strings
        ]
        input_ids = labels = [tokenized.input_ids[0] for tokenized in tokenized_list]
        input_ids_lens = labels_lens = [
            tokenized.input_ids.ne(tokenizer.pad_token_id).sum().item() for tokenized in tokenized_list
        ]
        return dict(input_ids=input_ids, labels=labels, input_ids_lens=input_ids_lens, labels_lens=labels_lens)

    def preprocess(sources, targets, tokenizer):
        examples = [s + t for s, t in zip(sources, targets)]
        examples_tokenized, sources_tokenized = [_tokenize_fn(strings, tokenizer) for strings in (examples, sources)]
        input_ids = examples_tokenized["input_ids"]
        labels = copy.deepcopy(input_ids)
        for label, source_len in zip(labels, sources_tokenized["input_ids_lens"]):
            label[:source_len] = IGNORE_INDEX
        return dict(input_ids=input_ids, labels=labels)

    sources = sources_of(records)
    targets = [f"{example['output']}{tokenizer.eos_token}" for example in records]
    data = preprocess(sources, targets, tokenizer)
    return data["input_ids"], data["labels"]


# ---- (b) naive loop -----------------------------------------------------------------------------

def naive_loop(records, tokenizer):
    ids_out, labels_out = [], []
    eos = tokenizer.eos_token_id
    for source, example in zip(sources_of(records), records):
        prompt = tokenizer(source)["input_ids"]
        reply = tokenizer(example["output"], add_special_tokens=False)["input_ids"] + [eos]
        ids_out.append(prompt + reply)
        labels_out.append([IGNORE_INDEX] * len(prompt) + reply)
    return ids_out, labels_out


# ---- (c) ours -----------------------------------------------------------------------------------

def ours(records, tokenizer):
    from utils.encode import encode_dataset

    result = encode_dataset(records, tokenizer, "alpaca")
    return result


def ours_prepare(jsonl: Path, tokenizer_dir: Path, workdir: Path):
    from utils.cli import main

    out = workdir / f"prepared-{time.monotonic_ns()}"
    with contextlib.redirect_stdout(io.StringIO()):
        status = main(["prepare", str(jsonl), "--template", "alpaca", "--tokenizer", str(tokenizer_dir),
                       "--out", str(out), "--quiet"])
    assert status == 0
    return json.loads((out / "stats.json").read_text())


# ---- (d) lower bound ----------------------------------------------------------------------------

def lower_bound(full_texts, tokenizer, batch_size: int = 1000):
    ids = []
    for start in range(0, len(full_texts), batch_size):
        ids += tokenizer(full_texts[start:start + batch_size])["input_ids"]
    return ids


# ---- (e) TRL ------------------------------------------------------------------------------------

def trl_config(workdir: Path):
    from trl import SFTConfig

    return SFTConfig(output_dir=str(workdir / "trl"), max_length=None, report_to="none", use_cpu=True, bf16=False)


def trl_prepare(records, tokenizer, args):
    import datasets
    from trl import SFTTrainer

    dataset = datasets.Dataset.from_dict({"prompt": sources_of(records),
                                          "completion": [ex["output"] for ex in records]})
    # what SFTTrainer.__init__ sets before calling _prepare_dataset (no model is needed for it)
    trainer = SimpleNamespace(_tokenizer=tokenizer, chat_template=None, completion_only_loss=True)
    return SFTTrainer._prepare_dataset(trainer, dataset, tokenizer, args, packing=False, formatting_func=None,
                                       dataset_name="train")


# ---- multi-turn rows ----------------------------------------------------------------------------

MULTI_TURN_FILE = "fastchat_dummy_conversation.json"


def load_conversations(n: int) -> list[dict]:
    """``n`` ShareGPT conversations (FastChat's dummy file, repeated), normalized to ``{"messages"}``."""
    from utils.formats import iter_records

    base = list(iter_records(SHARED / "real_data" / MULTI_TURN_FILE))
    return [base[i % len(base)] for i in range(n)]


def trl_conversational(records, tokenizer, args):
    """TRL's preparation of a conversational (``messages``) dataset: ``apply_chat_template`` per example.
    Without ``{% generation %}`` blocks TRL cannot mask (``assistant_only_loss`` needs them): every token
    is trained, so its labels are not comparable -- only its speed is."""
    import datasets
    from trl import SFTTrainer

    dataset = datasets.Dataset.from_dict({"messages": [r["messages"] for r in records]})
    trainer = SimpleNamespace(_tokenizer=tokenizer, chat_template=None, completion_only_loss=False)
    return SFTTrainer._prepare_dataset(trainer, dataset, tokenizer, args, packing=False, formatting_func=None,
                                       dataset_name="train")


def floor_parts(records, tok, template: str) -> dict:
    """The two parts of encoding no implementation of the contract can skip, each as a function to time: the
    renders it needs (``chat_template``: every conversation, every reply's prompt and the conversation ending with
    that reply, through the encoder's own renderer; ``vicuna`` renders in plain Python, counted with the rest) and
    tokenizing the row pieces the way the encoder does (prompt openings whole, the rest as continuations), with
    nothing around them. Their sum against the limit is the best ratio any Python around them could reach."""
    from utils.encode import _opening, _plan
    from utils.formats import chat_of
    from utils.templates import get_template

    tmpl, plan = get_template(template), _plan(tok)
    units = [segs for r in records for segs in tmpl.row_segments(r, tok)]
    prefixes = plan.prefixes(tmpl, tok)
    whole, cont = [], []  # as utils.encode._tokenize_units: a first piece after a cached opening is a continuation
    for segs in units:
        found = _opening(segs[0].text, prefixes)
        (cont if found else whole).append(segs[0].text[found[0]:] if found else segs[0].text)
    cont += [s.text for segs in units for s in segs[1:]]
    parts = {"pieces": lambda: (plan.encode_first(whole, tmpl.add_special_tokens), plan.encode_cont(cont))}
    if template == "chat_template":
        renderers = tmpl._prefix_renderers(tok)

        def renders():
            for r in records:
                messages, tools = chat_of(r)
                render, last = renderers(messages, tools), len(messages) - 1
                render(last + 1)
                for j, m in enumerate(messages):
                    if m["role"] == "assistant":
                        render(j, True)
                        if j < last:
                            render(j + 1)

        parts["renders"] = renders
    return parts


def multi_turn(n: int, repeats: int, workdir: Path) -> list[dict]:
    """Multi-turn rows: ``vicuna`` and ``chat_template`` on ShareGPT conversations with Qwen2, against
    the raw limit (one batched tokenizer call on the already-rendered texts) and TRL."""
    from utils.encode import encode_dataset
    from utils.templates import render

    tok = load_tokenizer("qwen2")
    records = load_conversations(n)
    out = []
    for template in ("vicuna", "chat_template"):
        texts = [render(r, template, tok) for r in records]
        special = template != "chat_template"
        encode_dataset(records[:50], tok, template)  # per-tokenizer caches
        fns = {"ours": lambda: encode_dataset(records, tok, template),
               "limit": lambda: [e for s in range(0, n, 1000)
                                 for e in tok(texts[s:s + 1000], add_special_tokens=special)["input_ids"]]}
        if template == "chat_template":
            fns["trl"] = lambda: trl_conversational(records, tok, trl_config(workdir))
        floor = floor_parts(records, tok, template)
        fns.update(floor)
        runs = timed_interleaved(fns, repeats)
        res = runs["ours"][2]
        ids = res.dataset["input_ids"]
        one_row = res.rows == n
        same = sum(a == b for a, b in zip(ids, runs["limit"][2])) if one_row else None
        row = {"template": template, "records": n, "rows": res.rows, "ours_s": runs["ours"][0],
               "limit_s": runs["limit"][0], "x_limit": runs["limit"][0] / runs["ours"][0],
               "x_limit_cpu": runs["limit"][1] / runs["ours"][1], "ids_equal_limit": same,
               "boundary_merges": res.boundary_merges,
               **{f"{k}_s": runs[k][0] for k in floor}}
        row["floor_s"] = sum(runs[k][0] for k in floor)
        row["x_limit_best"] = runs["limit"][0] / row["floor_s"]
        if "trl" in runs:
            row["trl_s"] = runs["trl"][0]
            row["x_trl"] = runs["trl"][0] / runs["ours"][0]
        out.append(row)
    print(f"\nMulti-turn: {n:,} ShareGPT conversations ({MULTI_TURN_FILE} repeated), Qwen2, median of {repeats}; "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| template | ours records/s | × limit (wall · CPU) | × TRL conversational | rows | ids = limit's | "
          "limit s | ours s | renders s | pieces s | best possible × limit |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in out:
        trl = f"{row['x_trl']:.2f}" if "x_trl" in row else "–"
        same = f"{row['ids_equal_limit']:,}" if row["ids_equal_limit"] is not None else "–"
        renders = f"{row['renders_s']:.2f}" if "renders_s" in row else "–"
        print(f"| {row['template']} | {fmt(n / row['ours_s'])} | {row['x_limit']:.2f} · {row['x_limit_cpu']:.2f} | "
              f"{trl} | {row['rows']:,} | {same} | {row['limit_s']:.2f} | {row['ours_s']:.2f} | "
              f"{renders} | {row['pieces_s']:.2f} | {row['x_limit_best']:.2f} |")
    print("renders: the renders the contract needs (chat_template only; vicuna's plain-Python rendering is in ours); "
          "pieces: tokenizing the row pieces as the encoder does, nothing around it; best possible × limit = "
          "limit / (renders + pieces), the ratio if all other work (checks, segments, assembly, Arrow) took no time")
    return out


# ---- measurement --------------------------------------------------------------------------------

def timed_interleaved(fns: dict, repeats: int) -> dict:
    """``{key: (median wall seconds, median CPU seconds, last result)}``.

    The methods run in turn, one repeat of each before the next repeat, so that load from other
    processes on a shared machine falls on all of them alike. CPU seconds (``time.process_time``,
    all threads of this process) do not count time spent waiting for a busy CPU. As ``timeit`` does,
    the garbage collector is off while a method runs (collected before): otherwise the other methods'
    results, alive in this process, would slow down whichever method creates the most Python objects.
    """
    walls: dict = {key: [] for key in fns}
    cpus: dict = {key: [] for key in fns}
    results: dict = {}
    for _ in range(repeats):
        for key, fn in fns.items():
            results[key] = None  # free the previous result first
            gc.collect()
            gc.disable()
            try:
                wall, cpu = time.perf_counter(), time.process_time()
                results[key] = fn()
                walls[key].append(time.perf_counter() - wall)
                cpus[key].append(time.process_time() - cpu)
            finally:
                gc.enable()
    return {key: (statistics.median(walls[key]), statistics.median(cpus[key]), results[key]) for key in fns}


def as_lists(ids, labels):
    return [list(map(int, x)) for x in ids], [list(map(int, x)) for x in labels]


def compare_masks(name, ids, labels, ref_ids, ref_labels, merged):
    """Counts of records identical to (c), and of those that differ, how many at a boundary merge."""
    same = differ_merge = differ_other = 0
    for i, (a, b, c, d) in enumerate(zip(ids, labels, ref_ids, ref_labels)):
        if a == c and b == d:
            same += 1
        elif merged[i]:
            differ_merge += 1
        else:
            differ_other += 1
    return {"method": name, "same": same, "differ_at_merge": differ_merge, "differ_other": differ_other}


def merged_token_supervised(ids, labels, ref_ids, merged):
    """Among merge records: is the token that straddles the boundary supervised in this method?"""
    yes = no = 0
    for i in (i for i, m in enumerate(merged) if m):
        common = next((k for k, (a, b) in enumerate(zip(ids[i], ref_ids[i])) if a != b), None)
        if common is None:
            continue
        yes += labels[i][common] != IGNORE_INDEX
        no += labels[i][common] == IGNORE_INDEX
    return yes, no


def peak_memory_of_prepare(n: int, tokenizer_dir: Path, workdir: Path) -> dict:
    """``prepare --pack`` on ``n`` records in a fresh process; peak RSS of that process."""
    big = workdir / "big.jsonl"
    records = load_records(min(n, 2_000))
    with open(big, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps(records[i % len(records)], ensure_ascii=False) + "\n")
    out = workdir / "big-out"
    code = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
            "r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
            "print(r.returncode, time.perf_counter() - t, "
            "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.stderr.write(r.stderr[-2000:])")
    cmd = [sys.executable, "-c", code, sys.executable, "-m", "utils", "prepare", str(big), "--template", "alpaca",
           "--tokenizer", str(tokenizer_dir), "--out", str(out), "--pack", "--max-length", "1024", "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    status, seconds, rss_kb = done.stdout.split()
    if status != "0":
        raise RuntimeError(f"prepare failed: {done.stderr}")
    stats = json.loads((out / "stats.json").read_text())
    return {"records": n, "seconds": float(seconds), "peak_mb": int(rss_kb) / 1024, "rows": stats["rows"],
            "file_mb": big.stat().st_size / 2**20}


def fmt(x: float) -> str:
    return f"{x:,.0f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 2,000 records, 1 repeat, 20,000 for memory")
    parser.add_argument("--records", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--big", type=int, default=None,
                        help="records for the memory run (default 200,000; 0 skips it)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    parser.add_argument("--multi-turn-only", action="store_true", help="only the multi-turn (ShareGPT) rows")
    args = parser.parse_args(argv)
    n = args.records or (2_000 if args.quick else 20_000)
    repeats = args.repeats or (1 if args.quick else 3)
    big = args.big if args.big is not None else (20_000 if args.quick else 200_000)
    if not (SHARED / "real_data").is_dir():
        sys.exit(f"needs {SHARED} (real data and reference tokenizers); set LLM_HANDBOOK_SHARED")

    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)
    import logging

    logging.getLogger("trl").setLevel(logging.ERROR)  # its boundary-merge warning: we count those below
    import torch

    torch.set_num_threads(2)
    from utils.packing import pack, packing_efficiency

    records = load_records(n)
    workdir = Path(tempfile.mkdtemp(prefix="prepare-bench-"))
    jsonl = workdir / "data.jsonl"
    jsonl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    print(f"{n:,} Alpaca records ({', '.join(REAL_FILES)} repeated); median of {repeats}; "
          f"load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; "
          f"TOKENIZERS_PARALLELISM={os.environ['TOKENIZERS_PARALLELISM']}, "
          f"RAYON_NUM_THREADS={os.environ['RAYON_NUM_THREADS']}")

    if args.multi_turn_only:
        multi_turn(n, repeats, workdir)
        return 0
    table, mask_rows, packing_rows, results = [], [], [], {}
    for name in TOKENIZERS:
        tok = load_tokenizer(name)
        stanford_tok = stanford_tokenizer(tok)
        full_texts = [s + r["output"] + tok.eos_token for s, r in zip(sources_of(records), records)]
        ours(records[:100], tok)  # warm caches that are per tokenizer (continuation probe, fingerprint)

        trl_args = trl_config(workdir)
        tokenizer_dir = SHARED / "reference_tokenizers" / name
        runs = timed_interleaved({
            "a": lambda: stanford_alpaca(records, stanford_tok),
            "b": lambda: naive_loop(records, tok),
            "c": lambda: ours(records, tok),
            "c'": lambda: ours_prepare(jsonl, tokenizer_dir, workdir),
            "d": lambda: lower_bound(full_texts, tok),
            "e": lambda: trl_prepare(records, tok, trl_args),
        }, repeats)
        a_ids, a_labels = as_lists(*runs["a"][2])
        b_ids, b_labels = runs["b"][2]
        result = runs["c"][2]
        c_ids, c_labels = result.dataset["input_ids"], result.dataset["labels"]
        d_ids = runs["d"][2]
        e_ids, e_labels = runs["e"][2]["input_ids"], runs["e"][2]["labels"]

        merged = [d != b for d, b in zip(d_ids, b_ids)]  # whole-text ids differ from prompt ids + reply ids
        tokens = {"a": sum(map(len, a_ids)), "b": sum(map(len, b_ids)), "c": result.tokens,
                  "c'": result.tokens, "d": sum(map(len, d_ids)), "e": sum(map(len, e_ids))}
        for key, (wall, cpu, _) in runs.items():
            table.append({"method": key, "tokenizer": name, "records_per_s": n / wall,
                          "tokens_per_s": tokens[key] / wall, "records_per_cpu_s": n / cpu,
                          "wall": wall, "cpu": cpu})
        for row in table[-len(runs):]:
            for base in ("a", "d", "e"):
                row[f"x_{base}"] = (runs[base][0] / row["wall"], runs[base][1] / row["cpu"])
        masks = [compare_masks("(a) Stanford", a_ids, a_labels, c_ids, c_labels, merged),
                 compare_masks("(b) naive", b_ids, b_labels, c_ids, c_labels, merged),
                 compare_masks("(e) TRL", e_ids, e_labels, c_ids, c_labels, merged)]
        sup_a = merged_token_supervised(a_ids, a_labels, c_ids, merged)
        sup_e = merged_token_supervised(e_ids, e_labels, c_ids, merged)
        for row in masks:
            row["tokenizer"] = name
            mask_rows.append(row)
        results[name] = {"merges": sum(merged), "boundary_merges_counted": result.boundary_merges,
                         "merged_token_supervised": {"a": sup_a, "e": sup_e}}

        from utils.encode import encode_dataset

        capped = encode_dataset(records, tok, "alpaca", max_length=1024)
        rows = [{"input_ids": ids} for ids in capped.dataset["input_ids"]]
        for batch in (8, 32):
            packing_rows.append((name, batch, capped.dropped, packing_efficiency(rows, batch),
                                 packing_efficiency(pack(rows, 1024), batch),
                                 packing_efficiency(pack(rows, 1024, strategy="in_order"), batch),
                                 len(rows), len(pack(rows, 1024))))

    labels = {"a": "(a) Stanford Alpaca train.py", "b": "(b) naive loop", "c": "(c) ours: encode_dataset",
              "c'": "(c') ours: prepare CLI (read+save)", "d": "(d) batched tokenizer, no mask",
              "e": "(e) TRL SFTTrainer._prepare_dataset"}
    print()
    print("| method | tokenizer | records/s | tokens/s | records/CPU-s | × (a) | × (d) | × (e) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in sorted(table, key=lambda r: (list(labels).index(r["method"]), r["tokenizer"])):
        ratios = " | ".join(f"{w:.2f} · {c:.2f}" for w, c in (row["x_a"], row["x_d"], row["x_e"]))
        print(f"| {labels[row['method']]} | {row['tokenizer']} | {fmt(row['records_per_s'])} | "
              f"{fmt(row['tokens_per_s'])} | {fmt(row['records_per_cpu_s'])} | {ratios} |")
    print("Ratios: wall clock · CPU time (time.process_time, all threads). records/s and tokens/s: wall clock.")

    print("\nLabels compared with (c), record by record (input_ids and labels both equal):")
    print("| method | tokenizer | identical | differ at a boundary merge | differ elsewhere |")
    print("| --- | --- | ---: | ---: | ---: |")
    for row in mask_rows:
        print(f"| {row['method']} | {row['tokenizer']} | {row['same']:,} | {row['differ_at_merge']:,} | "
              f"{row['differ_other']:,} |")
    for name, info in results.items():
        (a_yes, a_no), (e_yes, e_no) = info["merged_token_supervised"]["a"], info["merged_token_supervised"]["e"]
        print(f"{name}: {info['merges']:,} records ({info['merges'] / n:.1%}) merge '### Response:' with the "
              f"reply's first characters when the whole text is tokenized (encode_dataset counted "
              f"{info['boundary_merges_counted']:,}). On them (a) and (e) use the whole-text ids, which "
              f"inference never sees; the merged token is masked by (a) in {a_no:,} (the reply's first "
              f"characters are never trained) and supervised by (e) in {e_yes:,} (the model is trained to "
              f"emit part of the prompt). (b) and (c) keep the prompt's own ids.")

    print("\nPacking efficiency (share of real tokens; rows of ≤ 1024 tokens, in data order):")
    print("| tokenizer | batch | dropped (> 1024) | padded to longest | packed best-fit | packed in order | "
          "rows → packed rows |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for name, batch, dropped, padded, best, in_order, before, after in packing_rows:
        print(f"| {name} | {batch} | {dropped} | {padded:.1%} | {best:.1%} | {in_order:.1%} | "
              f"{before:,} → {after:,} |")

    multi = multi_turn(n, repeats, workdir)
    memory = peak_memory_of_prepare(big, SHARED / "reference_tokenizers" / "qwen2", workdir) if big else None
    if memory:
        print(f"\nprepare --pack --max-length 1024 on {memory['records']:,} records ({memory['file_mb']:.0f} MB "
              f"JSONL, Qwen2): {memory['seconds']:.1f} s ({memory['records'] / memory['seconds']:,.0f} records/s), "
              f"{memory['rows']:,} rows, peak memory {memory['peak_mb']:,.0f} MB "
              f"({'under' if memory['peak_mb'] < 1536 else 'OVER'} 1.5 GB)")
    if args.json:
        args.json.write_text(json.dumps({"table": table, "masks": mask_rows, "merges": results,
                                         "packing": packing_rows, "memory": memory,
                                         "multi_turn": multi}, indent=2))
    import shutil

    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
