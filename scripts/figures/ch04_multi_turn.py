"""Chapter 4 figure: the label mask of a 3-turn conversation under the Vicuna v1.1 template."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from utils.encode import encode
from utils.models import load_tokenizer
from utils.viz import plot_row_mask


def make(img_dir: Path) -> list[Path]:
    tokenizer = load_tokenizer()
    lines = (resources.files("utils") / "data" / "conversations_samples.jsonl").read_text(encoding="utf-8").splitlines()
    conversation = json.loads(lines[2])  # 3 turns, no system message
    fig = plot_row_mask(encode(conversation, tokenizer, "vicuna"), tokenizer, chars_per_line=80,
                        title="Vicuna v1.1 模板下的三轮对话：三条助手回复（连同 </s>）参与训练")
    path = img_dir / "ch04_vicuna_mask.png"
    fig.savefig(path, dpi=130, bbox_inches="tight")
    return [path]
