"""Near-duplicate detection at scale, and what the ROUGE-L novelty filter costs next to MinHash.

1. Near-duplicates (MinHash + LSH, threshold 0.7, 128 permutations, character 5-gram shingles) on
   synthetic records: the real LLaMA-Factory Alpaca demos of ``../shared/real_data/`` (1,999 records,
   Chinese and English; without ``shared/``, the course's own data in ``utils/data``) repeated, every
   repeat with 1-3 random character edits, so each original has ~N/1,999 near copies. Methods:

   - (a) the straightforward datasketch loop: per record one ``MinHash()``, ``update()`` per shingle
     (datasketch's default SHA-1 hash), ``query()`` the index, verify each candidate with
     ``MinHash.jaccard``, ``insert()``; all MinHash objects kept for verification;
   - (b) datasketch's batch path: ``MinHash.bulk`` over each record's encoded shingles (default SHA-1),
     ``LeanMinHash`` kept, otherwise as (a);
   - (c) ours: :func:`utils.curate.dedup.near_duplicates` (numpy shingle hashing per batch,
     ``MinHash.generator`` + ``update_batch``, one signature matrix, vectorised verification).

   All use the same ``MinHashLSH`` parameters (``utils.curate.dedup.minhash_lsh``). Each run is a fresh
   subprocess: time, records/s and peak resident memory during the run (``VmHWM`` after resetting it
   once the data is built; ``RssAnon`` too). (a) is slow (one numpy call per shingle), so it runs on a
   subset, with (b) and (c) on the same subset for the ratios; (c) then runs at 1x, 2x and 4x N.

2. Novelty: Self-Instruct's ROUGE-L filter (:func:`utils.curate.novelty.novelty_filter`, every
   candidate against every kept instruction: O(n²)) vs MinHash near-duplicates on the same pools of real
   instructions, for growing pool sizes; a size is skipped once the previous one took longer than
   ``--rouge-budget`` seconds.

::

    python benchmarks/curate_bench.py            # make bench-curate (~10-15 min on 2 loaded cores)
    python benchmarks/curate_bench.py --quick    # smoke run (~1 min)
    python benchmarks/curate_bench.py --json results.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LLM_HANDBOOK_SHARED", ROOT.parent / "shared"))
REAL = ("llamafactory_alpaca_zh_demo.json", "llamafactory_alpaca_en_demo.json")
sys.path.insert(0, str(ROOT))

THRESHOLD, NUM_PERM, NGRAM, SEED = 0.7, 128, 5, 1


def base_records() -> tuple[list[dict], str]:
    """The real Alpaca demos, or the course's own records when ``shared/`` is absent."""
    from utils.formats import iter_records

    if all((SHARED / "real_data" / name).is_file() for name in REAL):
        records = []
        for name in REAL:
            records += json.loads((SHARED / "real_data" / name).read_text(encoding="utf-8"))
        return records, " + ".join(REAL)
    records = []
    for path in sorted((ROOT / "utils" / "data").glob("*.jsonl")):
        records += list(iter_records(path, kind=None, on_error="skip", problems=[]))
    return records, "utils/data/*.jsonl (shared/ not found)"


def synthetic_texts(n: int) -> list[str]:
    """``n`` texts: the base records' texts, then repeats with 1-3 random character edits each."""
    from utils.curate.text import record_text

    texts = [record_text(r) for r in base_records()[0]]
    rng = random.Random(0)
    out = texts[:n]
    alphabet = "abcdefghijklmnopqrstuvwxyz的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动"
    while len(out) < n:
        chars = list(texts[len(out) % len(texts)])
        for _ in range(rng.randint(1, 3)):
            k = rng.randrange(len(chars))
            op = rng.random()
            if op < 0.5:
                chars[k] = rng.choice(alphabet)
            elif op < 0.75:
                del chars[k]
            else:
                chars.insert(k, rng.choice(alphabet))
        out.append("".join(chars))
    return out


# ---- the methods (run inside a worker process) ---------------------------------------------------

def _clusters(parent: list[int]) -> list[int]:
    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    return sorted(i for i in range(len(parent)) if find(i) != i)


def naive_loop(texts: list[str]) -> list[int]:
    """(a) The straightforward datasketch loop (README style): update per shingle, query, verify, insert."""
    from datasketch import MinHash

    from utils.curate.dedup import minhash_lsh
    from utils.curate.text import shingles

    lsh = minhash_lsh(THRESHOLD, NUM_PERM)
    minhashes, parent = [], list(range(len(texts)))
    for i, text in enumerate(texts):
        m = MinHash(num_perm=NUM_PERM, seed=SEED)
        for s in shingles(text, NGRAM):
            m.update(s.encode("utf-8"))
        for j in lsh.query(m):
            if m.jaccard(minhashes[j]) >= THRESHOLD:
                _union(parent, i, j)
        lsh.insert(i, m)
        minhashes.append(m)
    return _clusters(parent)


def bulk_loop(texts: list[str]) -> list[int]:
    """(b) datasketch's batch API alone: MinHash.bulk (SHA-1), LeanMinHash, query, verify, insert."""
    from datasketch import LeanMinHash, MinHash

    from utils.curate.dedup import minhash_lsh
    from utils.curate.text import shingles

    lsh = minhash_lsh(THRESHOLD, NUM_PERM)
    parent = list(range(len(texts)))
    encoded = ([s.encode("utf-8") for s in shingles(t, NGRAM)] for t in texts)
    minhashes = []
    for i, m in enumerate(MinHash.generator(encoded, num_perm=NUM_PERM, seed=SEED)):
        m = LeanMinHash(m)
        for j in lsh.query(m):
            if m.jaccard(minhashes[j]) >= THRESHOLD:
                _union(parent, i, j)
        lsh.insert(i, m, check_duplication=False)
        minhashes.append(m)
    return _clusters(parent)


def _union(parent: list[int], i: int, j: int) -> None:
    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    ri, rj = find(i), find(j)
    if ri != rj:
        parent[max(ri, rj)] = min(ri, rj)


def ours(texts: list[str]) -> list[int]:
    from utils.curate.dedup import near_duplicates

    return near_duplicates(texts, threshold=THRESHOLD, num_perm=NUM_PERM, ngram=NGRAM, seed=SEED,
                           all_pairs=False).removed


METHODS = {"naive": naive_loop, "bulk": bulk_loop, "ours": ours}
LABELS = {"naive": "(a) datasketch loop: update() per shingle", "bulk": "(b) datasketch MinHash.bulk + LeanMinHash",
          "ours": "(c) ours: near_duplicates"}


def _status(key: str) -> int:
    """A ``/proc/self/status`` field in kB (0 where unavailable)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def worker(method: str, n: int) -> dict:
    import gc

    import datasketch  # noqa: F401  (imports are not the method's memory or time)
    import numpy  # noqa: F401

    import utils.curate.dedup  # noqa: F401

    texts = synthetic_texts(n)
    gc.collect()
    before = _status("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
        reset = True
    except OSError:
        reset = False
    start, cpu = time.perf_counter(), time.process_time()
    removed = METHODS[method](texts)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"method": method, "n": n, "seconds": seconds, "cpu_seconds": cpu, "removed": len(removed),
            "removed_list": removed if n <= 20_000 else None, "rss_before_mb": before / 1024,
            "peak_mb": _status("VmHWM") / 1024 if reset else None, "rss_anon_end_mb": _status("RssAnon") / 1024}


def run_worker(method: str, n: int) -> dict:
    env = dict(os.environ, PYTHONHASHSEED="0")
    proc = subprocess.run([sys.executable, __file__, "--worker", method, "--n", str(n)], capture_output=True,
                          text=True, env=env, check=False)
    if proc.returncode:
        raise SystemExit(f"worker {method} {n} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---- novelty cost ---------------------------------------------------------------------------------

def novelty_costs(sizes: list[int], budget: float) -> list[dict]:
    from utils.curate.dedup import near_duplicates
    from utils.curate.novelty import novelty_filter

    instructions = [r.get("instruction") or "" for r in base_records()[0]]
    instructions = [t for t in instructions if t.strip()]
    random.Random(0).shuffle(instructions)
    rows, last = [], 0.0
    for size in sizes:
        if size > len(instructions):
            break
        pool = instructions[:size]
        start = time.perf_counter()
        near = near_duplicates(pool, threshold=THRESHOLD)
        minhash_s = time.perf_counter() - start
        row = {"pool": size, "minhash_seconds": minhash_s, "minhash_removed": len(near.removed)}
        if last > budget:
            row.update(rouge_seconds=None, comparisons=None, rouge_removed=None)
        else:
            start = time.perf_counter()
            result = novelty_filter(pool, threshold=THRESHOLD)
            last = time.perf_counter() - start
            row.update(rouge_seconds=last, comparisons=result.comparisons, rouge_removed=len(result.removed))
        rows.append(row)
    return rows


# ---- report ---------------------------------------------------------------------------------------

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: small sizes")
    parser.add_argument("--n", type=int, default=None, help="largest N for (c) (default 200,000; quick 8,000)")
    parser.add_argument("--subset", type=int, default=None,
                        help="records for the (a)/(b)/(c) comparison (default 5,000; quick 500)")
    parser.add_argument("--rouge-budget", type=float, default=None,
                        help="stop growing the ROUGE-L pool after a size took this many seconds (default 30)")
    parser.add_argument("--json", default=None, help="also write the numbers to this file")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.n)))
        return 0
    big = args.n or (8_000 if args.quick else 200_000)
    subset = args.subset or (500 if args.quick else 5_000)
    budget = args.rouge_budget if args.rouge_budget is not None else (5.0 if args.quick else 30.0)
    sizes = [big // 4, big // 2, big]
    print(f"data: {base_records()[1]} ({len(base_records()[0]):,} records), repeated with 1-3 random character "
          f"edits per copy")
    print(f"MinHash + LSH: threshold {THRESHOLD}, {NUM_PERM} permutations, character {NGRAM}-grams; "
          f"load average at start {os.getloadavg()[0]:.1f}\n")
    results = {"subset": [], "scaling": [], "novelty": []}
    print(f"{subset:,} records, each method in a fresh process:")
    print("| method | seconds | CPU s | records/s | x (a) wall · CPU | x (b) wall · CPU | peak RSS MB | removed |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    runs = {m: run_worker(m, subset) for m in ("naive", "bulk", "ours")}
    for m, r in runs.items():
        r["records_per_s"] = r["n"] / r["seconds"]
        results["subset"].append(r)
    for m, r in runs.items():
        a, b = runs["naive"], runs["bulk"]
        print(f"| {LABELS[m]} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} | {r['records_per_s']:,.0f} | "
              f"{a['seconds'] / r['seconds']:.1f} · {a['cpu_seconds'] / r['cpu_seconds']:.1f} | "
              f"{b['seconds'] / r['seconds']:.1f} · {b['cpu_seconds'] / r['cpu_seconds']:.1f} | "
              f"{r['peak_mb']:,.0f} | {r['removed']:,} |")
    ref = set(runs["ours"]["removed_list"])
    for m in ("naive", "bulk"):
        other = set(runs[m]["removed_list"])
        runs[m]["agreement"] = {"both": len(ref & other), "only_this": len(other - ref), "only_ours": len(ref - other)}
    print("removed by (a) and (c): {both:,}; only (a): {only_this}; only (c): {only_ours}".format(**runs["naive"]["agreement"])
          + " (SHA-1 vs our shingle hash: the estimates differ slightly near the threshold)\n")
    print("(c) ours as N grows:")
    print("| N | seconds | CPU s | records/s | time / time(N/4) wall · CPU | peak RSS MB | RSS before MB | removed |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    first = None
    for n in sizes:
        r = run_worker("ours", n)
        r["records_per_s"] = n / r["seconds"]
        first = first or r
        results["scaling"].append(r)
        print(f"| {n:,} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} | {r['records_per_s']:,.0f} | "
              f"{r['seconds'] / first['seconds']:.2f} · {r['cpu_seconds'] / first['cpu_seconds']:.2f} | "
              f"{r['peak_mb']:,.0f} | {r['rss_before_mb']:,.0f} | {r['removed']:,} |")
    print("\nNovelty: ROUGE-L (Self-Instruct's rule, O(n²)) vs MinHash on pools of real instructions:")
    print("| pool | ROUGE-L seconds | comparisons | removed | MinHash seconds | removed | ROUGE-L / MinHash |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    pools = [100, 200, 400] if args.quick else [250, 500, 1000, 2000]
    for row in novelty_costs(pools, budget):
        results["novelty"].append(row)
        if row["rouge_seconds"] is None:
            print(f"| {row['pool']:,} | skipped (> {budget:.0f} s before) | | | {row['minhash_seconds']:.2f} | "
                  f"{row['minhash_removed']} | |")
        else:
            print(f"| {row['pool']:,} | {row['rouge_seconds']:.2f} | {row['comparisons']:,} | {row['rouge_removed']} | "
                  f"{row['minhash_seconds']:.2f} | {row['minhash_removed']} | "
                  f"{row['rouge_seconds'] / row['minhash_seconds']:.0f} |")
    print(f"\nload average at end {os.getloadavg()[0]:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
