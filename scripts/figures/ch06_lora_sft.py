"""Chapter 6 figure: base vs fine-tuned (the shipped chat adapter), raw question vs template, on the
held-out questions: the share of generations that stop with EOS, that are the exact answer in the trained
format, and that state the right fact in any format (:func:`utils.models.sft.states_fact`)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from utils.models import load_causal_lm, load_chat_lm, load_tokenizer
from utils.models.sft import compare
from utils.models.sft_data import load_heldout

PROMPT_NAMES = {"raw": "裸问题", "template": "模板"}
SCORE_NAMES = {"stops_with_eos": "以 EOS 结束", "correct": "按训练格式答对", "fact_right": "事实正确"}


def score_table(tokenizer=None):
    """The chapter's table: one row per (model, prompt) with the three rates, rows named "基座模型 + 裸问题" …"""
    tokenizer = tokenizer or load_tokenizer()
    table = compare({"基座模型": load_causal_lm(), "微调后": load_chat_lm()}, tokenizer, load_heldout())
    return table.set_index(table["model"] + " + " + table["prompt"].map(PROMPT_NAMES))[list(SCORE_NAMES)]


def make(img_dir: Path) -> list[Path]:
    n = len(load_heldout())
    bars = score_table()
    ax = bars.rename(columns=SCORE_NAMES).plot.bar(figsize=(8, 3.8), rot=0, width=0.8,
                                                   color=["#4c72b0", "#55a868", "#dd8452"])
    for container in ax.containers:
        ax.bar_label(container, labels=[f"{v:.0%}" for v in container.datavalues], fontsize=8)
    ax.set(ylim=(0, 1.15), ylabel="比例", xlabel="", title=f"{n} 个留出问题上的三个比例")
    ax.legend(loc="upper left", frameon=False, ncol=3)
    fig = ax.figure
    fig.tight_layout()
    path = img_dir / "ch06_eos_correct.png"
    fig.savefig(path, dpi=130, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return [path]
