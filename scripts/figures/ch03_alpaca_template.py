"""Chapter 3 figures: the label mask of the manual's Alpaca example ("Give three tips for staying healthy."),
and the prompt/reply boundary merge on GPT-2 under three ways of masking (Stanford train.py, TRL, encode)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from utils.encode import IGNORE_INDEX, encode
from utils.models import load_reference_tokenizer, load_tokenizer
from utils.templates import render, render_prompt
from utils.viz import plot_row_mask
from utils.viz.data_plots import plot_token_mask

QUOTED = {"instruction": "Say hello in English, in quotes.", "input": "", "output": '"Hello"'}
"""The notebook's record whose reply starts with a quote (merges with "### Response:" on GPT-2)."""

CONTEXT = 3
"""Prompt tokens shown before the boundary."""


def boundary_rows(tokenizer, record: dict) -> dict[str, tuple[list[int], list[int]]]:
    """``{method: (input_ids, labels)}``: Stanford train.py and TRL (whole-text ids) and ``utils.encode``."""
    prompt_ids = tokenizer(render_prompt(record, "alpaca", tokenizer))["input_ids"]
    whole_ids = tokenizer(render(record, "alpaca", tokenizer))["input_ids"]
    n_common = next((i for i, (a, b) in enumerate(zip(prompt_ids, whole_ids)) if a != b), len(prompt_ids))
    row = encode(record, tokenizer, "alpaca")
    return {
        "斯坦福 train.py：整段分词，掩掉前 len(提示) 个词元——合并的 ':\"' 被掩掉，开引号学不到":
            (whole_ids, [IGNORE_INDEX] * len(prompt_ids) + whole_ids[len(prompt_ids):]),
        "TRL SFTTrainer：整段分词，从分歧处算回答——合并的 ':\"' 参与训练，模型学着写提示里的冒号":
            (whole_ids, [IGNORE_INDEX] * n_common + whole_ids[n_common:]),
        "utils.encode：提示按推理时分词，回答单独分词——':' 掩掉，'\"' 参与训练":
            (row["input_ids"], row["labels"]),
    }


def make(img_dir: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    tokenizer = load_tokenizer()
    lines = (resources.files("utils") / "data" / "alpaca_samples.jsonl").read_text(encoding="utf-8").splitlines()
    example = json.loads(lines[0])
    fig = plot_row_mask(encode(example, tokenizer, "alpaca"), tokenizer,
                        title="Alpaca 模板的标签掩码：提示全部掩掉，回答和 </s> 参与训练")
    path = img_dir / "ch03_alpaca_mask.png"
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)

    gpt2 = load_reference_tokenizer("gpt2")
    start = len(gpt2(render_prompt(QUOTED, "alpaca", gpt2))["input_ids"]) - CONTEXT
    rows = boundary_rows(gpt2, QUOTED)
    fig, axes = plt.subplots(len(rows), 1, figsize=(7.5, 1.1 * len(rows) + 0.6))
    for ax, (title, (ids, labels)) in zip(axes, rows.items()):
        plot_token_mask([gpt2.decode([i]) for i in ids[start:]], [label != IGNORE_INDEX for label in labels[start:]],
                        chars_per_line=44, ax=ax)
        ax.set_title(title, fontsize=9, loc="left")
        if ax is not axes[-1] and ax.get_legend() is not None:
            ax.get_legend().remove()  # one legend, under the last row
    fig.suptitle('边界合并（GPT-2，回答 "Hello" 紧跟在 "### Response:" 后面）', fontsize=10)
    fig.tight_layout()
    merge_path = img_dir / "ch03_boundary_merge.png"
    fig.savefig(merge_path, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return [path, merge_path]
