"""Figures of chapter 1 (model types): attention patterns of a decoder-only vs an encoder-decoder model.

    python scripts/make_figures.py ch01
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from utils.models import load_causal_lm, load_seq2seq_lm, load_tokenizer
from utils.models.seq2seq import translate
from utils.viz import causal_attention, plot_attention_patterns, seq2seq_attention

CAUSAL_TEXT = "今天天气真好"
SEQ2SEQ_INPUT = "翻译成中文：one cat"
BYTE_NOTE = ("注：小分词器没有把“翻”“译”“成”“只”“猫”的 UTF-8 字节合并成一个词元，一个字被拆成两三个字节词元；\n"
             "单个字节显示不出字形，图中把同一个字的字节词元记作 翻① 翻② 翻③。标签里的 · 表示空格。")


def attention_panels(causal, seq2seq, tok):
    """The four panels of the chapter's attention figure (also drawn in the notebook)."""
    target = translate(seq2seq, tok, [SEQ2SEQ_INPUT])[0]
    return [causal_attention(causal, tok, CAUSAL_TEXT)] + seq2seq_attention(seq2seq, tok, SEQ2SEQ_INPUT, target)


def make(img_dir: Path) -> list[Path]:
    tok = load_tokenizer()
    panels = attention_panels(load_causal_lm(), load_seq2seq_lm(), tok)
    fig = plot_attention_patterns(panels, ncols=2)
    fig.text(0.5, -0.01, BYTE_NOTE, ha="center", va="top", fontsize=10, linespacing=1.6)
    path = img_dir / "ch01_attention_patterns.png"
    fig.savefig(path, dpi=120, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return [path]
