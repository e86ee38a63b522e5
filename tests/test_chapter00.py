"""Chapter 0 (setup): what the prose says about real tokenizers holds, recomputed from the tokenizers.

The prose states token counts of the chapter's two sentences on four tokenizers and how GPT-2 splits
Chinese characters into byte pieces; each number is recomputed here from the shipped tokenizers, checked
against the notebook's stored table and looked up in its Markdown.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from nbexec import notebook_namespace
from utils.models import load_reference_tokenizer, load_tokenizer

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "00_setup.ipynb"
ZH = "今天天气真好，我们出去看电影吧"
EN = "The chicken crossed the road."


@pytest.fixture(scope="module")
def nb():
    return nbformat.read(NOTEBOOK, as_version=4)


@pytest.fixture(scope="module")
def markdown(nb):
    return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


@pytest.fixture(scope="module")
def ns():
    return notebook_namespace("00_setup.ipynb")


def n_tokens(tok, text):
    return len(tok(text, add_special_tokens=False)["input_ids"])


def test_counts_table_equals_the_tokenizers(ns):
    counts = ns["counts"]
    expected = {"课程小分词器": load_tokenizer(), "gpt2": load_reference_tokenizer("gpt2"),
                "qwen2_5": load_reference_tokenizer("qwen2_5"), "mistral": load_reference_tokenizer("mistral")}
    assert list(counts.columns) == list(expected)
    for label, tok in expected.items():
        assert counts[label].tolist() == [n_tokens(tok, ZH), n_tokens(tok, EN)]


def test_prose_numbers(markdown):
    gpt2, qwen, mistral = (load_reference_tokenizer(n) for n in ("gpt2", "qwen2_5", "mistral"))
    tiny = load_tokenizer()
    en = {n_tokens(t, EN) for t in (tiny, gpt2, qwen, mistral)}
    assert len(en) == 1 and f"都是 {en.pop()} 个词元" in markdown
    assert n_tokens(tiny, ZH) == len(ZH)  # the tiny tokenizer: one token per character, by design
    assert n_tokens(tiny, "龘") > 1 and "生僻字仍会被切成几个字节词元" in markdown  # unseen characters: bytes
    assert f"15 个字只用了 {n_tokens(qwen, ZH)} 个词元" in markdown and len(ZH) == 15
    assert f"GPT-2 要 {n_tokens(gpt2, ZH)} 个词元，Qwen2.5 只要 {n_tokens(qwen, ZH)} 个" in markdown
    assert 3 < n_tokens(gpt2, ZH) / n_tokens(qwen, ZH) < 4 and "三倍多" in markdown
    # Mistral: one token per character plus SentencePiece's leading "▁"
    ids = mistral(ZH, add_special_tokens=False)["input_ids"]
    assert mistral.convert_ids_to_tokens(ids)[0] == "▁" and len(ids) == len(ZH) + 1
    assert f"15 个字切成 {len(ids)} 个词元" in markdown
    # vocabulary sizes the prose gives ("约 5 万", "约 15 万")
    assert 50_000 <= len(gpt2) < 51_000 and 150_000 <= len(qwen) < 155_000
    assert "词表约 5 万" in markdown and "词表约 15 万" in markdown


def test_qwen_merges_words(ns):
    pieces = ns["pieces"](ns["tokenizer_zoo"]["qwen2_5"], ZH).loc["词元"].tolist()
    assert "".join(pieces) == ZH
    for word in ("今天", "天气", "我们", "出去", "看电影"):
        assert word in pieces


def test_gpt2_splits_characters_into_byte_tokens(ns, markdown):
    gpt2 = load_reference_tokenizer("gpt2")
    table = ns["gpt2_chars"]
    assert "".join(table["字"]) == ZH and table["词元数"].sum() == n_tokens(gpt2, ZH)
    for _, row in table.iterrows():
        ids = gpt2(row["字"], add_special_tokens=False)["input_ids"]
        assert len(ids) == row["词元数"] and gpt2.decode(ids) == row["字"] == row["合起来解码"]
        assert row["UTF-8 字节"] == row["字"].encode("utf-8").hex(" ")
        if len(ids) > 1:  # a piece of a character alone is not valid UTF-8: decodes to U+FFFD
            assert row["逐个解码"] == ["\ufffd"] * len(ids)
    assert set(table["词元数"]) == {1, 2, 3}  # "2–3 个词元", and 天 alone is one token
    assert table.loc[table["词元数"] == 1, "字"].unique().tolist() == ["天"]
    assert "只有“天”" in markdown and "2–3 个词元" in markdown
    assert "e4 bb 8a" in markdown and "今".encode("utf-8").hex(" ") == "e4 bb 8a"
    # the byte-level spelling the prose quotes: `ä»` is the bytes e4 bb
    assert gpt2.convert_ids_to_tokens(gpt2("今", add_special_tokens=False)["input_ids"])[0] == "ä»"


def test_exercise_solutions_hidden_with_their_outputs(nb):
    solutions = [c for c in nb.cells if "solution" in c.metadata.get("tags", [])]
    assert len(solutions) >= 2
    for cell in solutions:
        assert cell.metadata["jupyter"] == {"source_hidden": True, "outputs_hidden": True}
    assert re.search(r"开放题", "\n".join(c.source for c in nb.cells if c.cell_type == "markdown"))


def test_manual_page_states_the_same_counts():
    page = (NOTEBOOK.parents[1] / "hf_basic" / "00_setup.md").read_text(encoding="utf-8")
    rows = {"课程小分词器": load_tokenizer(), "GPT-2（字节级 BPE）": load_reference_tokenizer("gpt2"),
            "Qwen2.5（字节级 BPE，中文词多）": load_reference_tokenizer("qwen2_5"),
            "Mistral v0.3（SentencePiece 一族）": load_reference_tokenizer("mistral")}
    for label, tok in rows.items():
        assert f"| {label} | {n_tokens(tok, ZH)} |" in page
        assert n_tokens(tok, EN) == 6
    assert "都是 6 个词元" in page and "三倍多" in page and "## 练习" in page


def test_swapping_in_a_real_model_is_described_truly(markdown):
    assert "一行不用改" not in markdown
    assert "AutoModelForCausalLM.from_pretrained" in markdown and "AutoTokenizer.from_pretrained" in markdown
