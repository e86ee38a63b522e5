"""Chapter 6 figure: base vs fine-tuned (the shipped chat adapter), raw question vs template, on the
held-out questions: share of generations that stop with EOS and share that are correct."""

from __future__ import annotations

from pathlib import Path

from utils.models import load_causal_lm, load_chat_lm, load_tokenizer
from utils.models.sft import compare
from utils.models.sft_data import load_heldout
from utils.viz import plot_eos_correct

PROMPT_NAMES = {"raw": "裸问题", "template": "模板"}


def eos_correct_rates(tokenizer=None) -> dict[str, tuple[float, float]]:
    """``{"基础模型 + 裸问题": (eos_rate, correct_rate), ...}`` for the four conditions."""
    tokenizer = tokenizer or load_tokenizer()
    heldout = load_heldout()
    table = compare({"基础模型": load_causal_lm(), "微调后": load_chat_lm()}, tokenizer, heldout)
    return {f"{m} + {PROMPT_NAMES[p]}": (e, c) for m, p, e, c in table.itertuples(index=False)}


def make(img_dir: Path) -> list[Path]:
    n = len(load_heldout())
    fig = plot_eos_correct(eos_correct_rates(), title=f"{n} 个留出问题：以 EOS 结束的比例与答对的比例")
    path = img_dir / "ch06_eos_correct.png"
    fig.savefig(path, dpi=130, bbox_inches="tight")
    return [path]
