"""Chapter 4 figures: the label mask of a 3-turn conversation under the Vicuna v1.1 template (tiny
tokenizer), and of the notebook's 2-turn conversation under Qwen2.5-Instruct's real ChatML template."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from utils.encode import encode
from utils.models import load_reference_tokenizer, load_tokenizer
from utils.viz import plot_row_mask

# the conversation of the notebook's section 6 (tests check that both agree)
CHAT = [{"role": "user", "content": "用一句话介绍长城。"},
        {"role": "assistant", "content": "长城是中国古代修建的军事防御工程，东西绵延上万里。"},
        {"role": "user", "content": "And in English, please?"},
        {"role": "assistant", "content": "The Great Wall is an ancient Chinese defence system that runs for thousands of kilometres."}]


def make(img_dir: Path) -> list[Path]:
    tokenizer = load_tokenizer()
    lines = (resources.files("utils") / "data" / "conversations_samples.jsonl").read_text(encoding="utf-8").splitlines()
    conversation = json.loads(lines[2])  # 3 turns, no system message
    fig = plot_row_mask(encode(conversation, tokenizer, "vicuna"), tokenizer, chars_per_line=80,
                        title="Vicuna v1.1 模板下的三轮对话：三条助手回复（连同 </s>）参与训练")
    vicuna_path = img_dir / "ch04_vicuna_mask.png"
    fig.savefig(vicuna_path, dpi=130, bbox_inches="tight")

    qwen = load_reference_tokenizer("qwen2_5")
    fig = plot_row_mask(encode({"messages": CHAT}, qwen, "chat_template"), qwen, chars_per_line=80,
                        title="Qwen2.5 的 ChatML 模板：两条回复连同 <|im_end|> 参与训练，其后的换行不参与")
    chatml_path = img_dir / "ch04_chatml_mask.png"
    fig.savefig(chatml_path, dpi=130, bbox_inches="tight")
    return [vicuna_path, chatml_path]
