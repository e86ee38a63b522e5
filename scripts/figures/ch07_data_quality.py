"""Chapter 7 figures: precision / recall of near-duplicate detection against the planted ground truth as
the MinHash threshold moves, and the cost of ROUGE-L novelty filtering vs MinHash + LSH as the pool grows.

The same steps as notebooks/07_data_sources_quality.ipynb (sections 5 and 6). The first figure is
deterministic; the second shows measured times (median of 3 runs), so its values vary by machine and load.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from utils.curate import near_duplicates, novelty_filter, record_text
from utils.models.corpus import DATA_DIR

THRESHOLDS = [round(0.5 + 0.05 * k, 2) for k in range(10)]   # 0.5 ... 0.95
SIZES = [50, 100, 200, 400]  # capped at the pool's size (352 distinct instructions)


def load_pool() -> tuple[list[dict], dict[int, dict]]:
    with open(DATA_DIR / "ch07_candidates.jsonl", encoding="utf-8") as f:
        pool = [json.loads(line) for line in f]
    with open(DATA_DIR / "ch07_planted.json", encoding="utf-8") as f:
        planted = {int(k): v for k, v in json.load(f).items()}
    return pool, planted


def planted_pairs(planted: dict[int, dict], kind: str) -> set[tuple[int, int]]:
    return {tuple(sorted((i, v["partner"]))) for i, v in planted.items() if v["kind"] == kind}


def sweep_table(thresholds=THRESHOLDS):
    """Precision and recall of :func:`near_duplicates` on the planted near-duplicates (exact duplicates
    left out), per threshold: what the notebook's sweep computes."""
    import pandas as pd

    pool, planted = load_pool()
    texts = [record_text(r) for r in pool]
    exact, near = planted_pairs(planted, "exact_duplicate"), planted_pairs(planted, "near_duplicate")
    rows = []
    for t in thresholds:
        pairs = {(i, j) for i, j, _ in near_duplicates(texts, threshold=t).pairs} - exact
        tp = len(pairs & near)
        rows.append({"threshold": t, "precision": tp / len(pairs) if pairs else 1.0, "recall": tp / len(near)})
    return pd.DataFrame(rows).set_index("threshold")


def instruction_pool() -> list[str]:
    """Distinct instructions: the candidate pool's, the seed tasks', chapter 06's questions."""
    from utils.curate.self_instruct import load_seed_tasks
    from utils.models.sft_data import load_heldout, load_training_records

    pool, _ = load_pool()
    more = [m["content"] for r in load_training_records() for m in r["messages"] if m["role"] == "user"]
    return list(dict.fromkeys([r["instruction"] for r in pool] + [s["instruction"] for s in load_seed_tasks()]
                              + [q["question"] for q in load_heldout()] + more))


def timing_table(sizes=SIZES, repeats: int = 3):
    import pandas as pd

    big = instruction_pool()
    rows = []
    for n in sorted({min(n, len(big)) for n in sizes}):  # the last size: every distinct instruction there is
        rouge, minhash = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            novelty_filter(big[:n], threshold=0.7)
            t1 = time.perf_counter()
            near_duplicates(big[:n], threshold=0.7)
            t2 = time.perf_counter()
            rouge.append(t1 - t0)
            minhash.append(t2 - t1)
        rows.append({"records": n, "rouge": sorted(rouge)[repeats // 2], "minhash": sorted(minhash)[repeats // 2],
                     "comparisons": novelty_filter(big[:n], threshold=0.7).comparisons})
    return pd.DataFrame(rows).set_index("records")


def make(img_dir: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    from utils.curate import jaccard

    pool, planted = load_pool()
    texts = [record_text(r) for r in pool]
    sweep = sweep_table()
    true_j = sorted(jaccard(texts[i], texts[j]) for i, j in planted_pairs(planted, "near_duplicate"))
    fig, ax = plt.subplots(figsize=(7, 3.4))
    ax.plot(sweep.index, sweep["precision"], "o-", label="精确率")
    ax.plot(sweep.index, sweep["recall"], "s-", label="召回率")
    ax.plot(true_j, [0.02] * len(true_j), "|", color="gray", markersize=14, label="埋下的近似重复的真实 Jaccard")
    ax.set(xlabel="MinHash 阈值（估计的 Jaccard）", ylabel="比例", ylim=(0, 1.05),
           title=f"近似重复：{len(true_j)} 对埋下的近似重复上的精确率与召回率")
    ax.legend(loc="lower left", frameon=False)
    sweep_path = img_dir / "ch07_near_dup_sweep.png"
    fig.savefig(sweep_path, dpi=130, bbox_inches="tight")
    plt.close(fig)

    timing = timing_table()
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    ax.plot(timing.index, timing["rouge"], "o-", label="ROUGE-L 新颖度（两两比较）")
    ax.plot(timing.index, timing["minhash"], "s-", label="MinHash + LSH")
    for n, row in timing.iterrows():
        ax.annotate(f"{int(row['comparisons']):,} 次", (n, row["rouge"]), textcoords="offset points", xytext=(-10, 6),
                    fontsize=8, ha="right")
    ax.set_ylim(0, timing["rouge"].max() * 1.15)
    ax.set(xlabel="指令条数", ylabel="秒（3 次取中位数）", title="去重的代价随池子增长（标注：ROUGE-L 计算次数）")
    ax.legend(frameon=False)
    timing_path = img_dir / "ch07_rouge_vs_minhash.png"
    fig.savefig(timing_path, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return [sweep_path, timing_path]
