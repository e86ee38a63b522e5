"""Figures of chapter 2 (next-token prediction), drawn with the shipped tiny base model.

    python scripts/make_figures.py ch02
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from utils.generate import beam_search, greedy_decode, next_token_distribution, token_label, token_losses
from utils.models import load_causal_lm, load_tokenizer
from utils.viz import plot_beam_tree, plot_decoding_steps, plot_next_token_bars, plot_token_losses

SENTENCE, PROMPT = "今天天气真好，我们出去看电影吧", "今天天气真好，"
DECODING_STEPS = 9                  # "今天天气真" + 9 tokens = "今天天气真好，我们出去看电影": ends at a word boundary
BEAM_PROMPT, BEAM_STEPS = "用", 3   # beam search finds "用一句话", more probable than greedy's "用户问"


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=120, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return path


def make(img_dir: Path) -> list[Path]:
    model, tok = load_causal_lm(), load_tokenizer()
    paths = []

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4))
    for ax, text in zip(axes, ["今天天气真", "The chicken crossed the"]):
        plot_next_token_bars(next_token_distribution(model, tok, text, k=10),
                             title=f"“{text}”之后的下一个词元", ax=ax)
    paths.append(_save(fig, img_dir / "ch02_next_token_bars.png"))

    paths.append(_save(plot_token_losses(token_losses(model, tok, SENTENCE, prompt=PROMPT),
                                         title=f"提示“{PROMPT}”之后每个目标词元的损失"),
                       img_dir / "ch02_token_losses.png"))

    prompt = "今天天气真"
    decoding = greedy_decode(model, tok, prompt, max_new_tokens=DECODING_STEPS)   # ends with "电影", a whole word
    labels = [token_label(tok, i) for i in decoding.prompt_ids]
    paths.append(_save(plot_decoding_steps(labels, decoding, title="贪心解码：每一步把选出的词元接到输入末尾",
                                           max_steps=DECODING_STEPS),
                       img_dir / "ch02_decoding_steps.png"))

    # the notebook's example where beam search beats greedy decoding
    result = beam_search(model, tok, BEAM_PROMPT, num_beams=2, max_new_tokens=BEAM_STEPS)
    greedy = greedy_decode(model, tok, BEAM_PROMPT, max_new_tokens=BEAM_STEPS)
    paths.append(_save(plot_beam_tree(result, prompt_label=BEAM_PROMPT, highlight=greedy.new_ids,
                                      title="束搜索（num_beams=2）：每步保留得分最高的 2 条路径"),
                       img_dir / "ch02_beam_tree.png"))
    return paths
