"""Chapter 5 figures: the length histogram of the course's SFT data and padding vs packing efficiency.

The same steps as notebooks/05_prepare_dataset.ipynb: the validated, de-duplicated records
(:func:`utils.models.sft_data.load_training_records`), encoded with the ``human_assistant`` template.
"""

from __future__ import annotations

from pathlib import Path

from utils.encode import encode_dataset
from utils.models import load_tokenizer
from utils.models.sft_data import load_training_records
from utils.packing import pack, packing_efficiency
from utils.viz import plot_length_histogram, plot_packing_efficiency

TEMPLATE = "human_assistant"
MAX_LENGTH = 80  # the value notebooks/05_prepare_dataset.ipynb picks (a test checks they agree)
PACK_LENGTH = 128
BATCH_SIZE = 16


def make(img_dir: Path) -> list[Path]:
    import datasets

    datasets.disable_progress_bars()
    tokenizer = load_tokenizer()
    records = load_training_records()
    lengths = encode_dataset(records, tokenizer, TEMPLATE).lengths()
    fig = plot_length_histogram(lengths, max_length=MAX_LENGTH,
                                title="课程 SFT 数据的长度分布（human_assistant 模板）")
    hist = img_dir / "ch05_length_hist.png"
    fig.savefig(hist, dpi=130, bbox_inches="tight")

    rows = list(encode_dataset(records, tokenizer, TEMPLATE, max_length=MAX_LENGTH).dataset)
    packed = pack(rows, max_length=PACK_LENGTH)
    names = ("按批填充", f"打包（{PACK_LENGTH}）")
    fig = plot_packing_efficiency(
        {names[0]: packing_efficiency(rows, batch_size=BATCH_SIZE),
         names[1]: packing_efficiency(packed, batch_size=BATCH_SIZE)},
        rows={names[0]: len(rows), names[1]: len(packed)},
        title=f"填充 vs 打包：有效词元占比（每批 {BATCH_SIZE} 行）")
    eff = img_dir / "ch05_pack_vs_pad.png"
    fig.savefig(eff, dpi=130, bbox_inches="tight")
    return [hist, eff]
