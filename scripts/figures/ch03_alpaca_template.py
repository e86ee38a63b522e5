"""Chapter 3 figure: the label mask of the manual's Alpaca example ("Give three tips for staying healthy.")."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from utils.encode import encode
from utils.models import load_tokenizer
from utils.viz import plot_row_mask


def make(img_dir: Path) -> list[Path]:
    tokenizer = load_tokenizer()
    lines = (resources.files("utils") / "data" / "alpaca_samples.jsonl").read_text(encoding="utf-8").splitlines()
    example = json.loads(lines[0])
    fig = plot_row_mask(encode(example, tokenizer, "alpaca"), tokenizer,
                        title="Alpaca 模板的标签掩码：提示全部掩掉，回答和 </s> 参与训练")
    path = img_dir / "ch03_alpaca_mask.png"
    fig.savefig(path, dpi=130, bbox_inches="tight")
    return [path]
