"""Chapter 5 (preparing a fine-tuning set): the notebook's hand-written steps agree with the library
(validation, de-duplication, padding) and with ``python -m utils prepare``; its exercises hold."""

from __future__ import annotations

import re

import pytest

from nbexec import load_script, notebook_namespace
from utils.models.sft_data import load_training_records
from utils.packing import pad_collate


@pytest.fixture(scope="module")
def ns():
    return notebook_namespace("05_prepare_dataset.ipynb")


def test_hand_checks_find_a_subset_of_validate_file(ns):
    where = lambda line: re.match(r"(\S+:\d+):", line)[1]  # noqa: E731
    library = {p.where for p in ns["problems"]}
    assert {where(line) for line in ns["found_by_hand"]} < library  # strictly fewer: hand checks miss some
    assert len(ns["skipped"]) == len(ns["problems"]) > 0
    for p in ns["problems"]:  # FILE:LINE: field: reason
        assert re.fullmatch(r"raw/sft_\w+\.jsonl:\d+: \S+: .+", str(p))


def test_dedup_matches_the_training_records_and_removes_only_exact_repeats(ns):
    import json

    assert ns["unique"] == load_training_records()
    keys = [json.dumps(m, ensure_ascii=False, sort_keys=True) for m in ns["valid"]]
    assert len(set(keys)) == len(ns["unique"]) < len(keys)


def test_counts_and_max_length(ns):
    prepared, lengths = ns["prepared"], ns["lengths"]
    assert prepared.dropped == int((lengths > ns["MAX_LENGTH"]).sum())
    assert prepared.rows + prepared.dropped == len(ns["unique"])
    assert max(len(ids) for ids in prepared.dataset["input_ids"]) <= ns["MAX_LENGTH"]


def test_hand_padding_equals_pad_collate_and_transformers(ns):
    from transformers import DataCollatorForSeq2Seq

    rows, pad = ns["batch_rows"], ns["pad"]
    ours = pad_collate(rows, pad_token_id=pad)
    assert {k: ours[k].tolist() for k in ns["by_hand"]} == ns["by_hand"]
    tok = ns["tokenizer"]
    ref = DataCollatorForSeq2Seq(tok, padding="longest", label_pad_token_id=-100)(
        [{k: r[k] for k in ("input_ids", "attention_mask", "labels")} for r in rows])
    for k in ("input_ids", "attention_mask", "labels"):
        assert ref[k].tolist() == ns["by_hand"][k]


def test_cli_result_identical_and_bad_input_writes_nothing(ns):
    assert ns["done"].returncode == 0
    assert ns["cli"]["input_ids"] == ns["prepared"].dataset["input_ids"]
    assert ns["bad"].returncode == 1
    assert ns["bad"].stderr.count("raw/sft_sharegpt.jsonl:") >= 3
    assert ns["stats"]["rows"] == ns["prepared"].rows


def test_truncated_reply_has_no_eos(ns):
    from utils.encode import encode

    tok = ns["tokenizer"]
    cut = ns["CUT"]
    row = encode(ns["long_one"], tok, "human_assistant", max_length=cut, truncation="truncate")
    assert len(row["input_ids"]) == cut and row["labels"][-1] != tok.eos_token_id
    assert row["labels"][-1] != -100


def test_split_is_deterministic(ns):
    again = ns["prepared"].dataset.train_test_split(test_size=0.1, seed=0)
    assert again["test"]["input_ids"] == ns["dataset"]["validation"]["input_ids"]


def test_figure_script_uses_the_notebooks_choices(ns):
    """img/ch05_*.png must show what the notebook chose (the script repeats the constants)."""
    script = load_script("figures/ch05_prepare_dataset.py")
    assert script.MAX_LENGTH == ns["MAX_LENGTH"] and script.TEMPLATE == ns["TEMPLATE"]


# ---- the split, a real tokenizer, and what the prose and the manual page state --------------------

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import nbformat  # noqa: E402

from utils.encode import encode_dataset  # noqa: E402
from utils.formats import read_records  # noqa: E402
from utils.models import load_reference_tokenizer, load_tokenizer  # noqa: E402
from utils.templates import render, render_prompt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "utils" / "data"


@pytest.fixture(scope="module")
def nb():
    return nbformat.read(ROOT / "notebooks" / "05_prepare_dataset.ipynb", as_version=4)


@pytest.fixture(scope="module")
def markdown(nb):
    return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def stored_text(nb, marker: str) -> str:
    """The stored stdout/stderr of the code cell whose source contains ``marker``."""
    cell = next(c for c in nb.cells if c.cell_type == "code" and marker in c.source)
    return "".join(o.get("text", "") for o in cell.outputs)


def test_split_sizes_in_the_prose(ns, markdown):
    train, validation = ns["dataset"]["train"].num_rows, ns["dataset"]["validation"].num_rows
    assert (train, validation) == (ns["prepared"].rows - 51, 51) and ns["prepared"].rows == 502
    assert f"训练集 {train} 行、验证集 {validation} 行" in markdown
    page = (ROOT / "hf_basic" / "05_prepare_dataset.md").read_text(encoding="utf-8")
    assert f"训练 {train} 行，验证 {validation} 行" in page and "450" not in page


def test_real_tokenizer_lengths_in_the_prose(ns, nb, markdown):
    qwen, tiny = load_reference_tokenizer("qwen2_5"), load_tokenizer()
    on_qwen = encode_dataset(load_training_records(), qwen, "human_assistant")
    on_tiny = encode_dataset(load_training_records(), tiny, "human_assistant")
    assert on_qwen.boundary_merges == 0
    assert (f"在 Qwen2.5 上一共 {on_qwen.tokens:,} 个词元（小分词器 {on_tiny.tokens:,} 个），"
            f"最长的一条 {max(on_qwen.lengths())} 个（小分词器 {max(on_tiny.lengths())} 个）") in markdown
    out = stored_text(nb, '"stats", "clean.jsonl"')
    assert f"tokens              {on_qwen.tokens}\n" in out and "boundary merges     0\n" in out
    assert "tokenizer           qwen2_5\n" in out


def test_alpaca_template_merges_on_qwen(ns, nb, markdown):
    qwen = load_reference_tokenizer("qwen2_5")
    records = list(read_records(DATA / "sft_alpaca.jsonl", on_error="skip", problems=[]))
    merged = 0
    for rec in records:  # independent check: the prompt's own ids are not a prefix of the whole text's
        prompt_ids = qwen(render_prompt(rec, "alpaca", qwen))["input_ids"]
        whole_ids = qwen(render(rec, "alpaca", qwen))["input_ids"]
        merged += whole_ids[:len(prompt_ids)] != prompt_ids
    assert merged == encode_dataset(records, qwen, "alpaca").boundary_merges == 50
    assert dict(ns["merged_tokens"]) == {":The": merged}
    out = stored_text(nb, '"stats", "raw/sft_alpaca.jsonl"')
    assert f"rows                {len(records)}\n" in out and f"boundary merges     {merged}\n" in out
    assert f"{len(records)} 条记录里有 {merged} 条发生了边界合并" in markdown and len(records) == 104
    assert f"这 {merged} 条的回答开头" in markdown


def test_exercise_solutions_hidden_with_outputs_and_one_open_ended(nb, markdown):
    solutions = [c for c in nb.cells if "solution" in c.metadata.get("tags", [])]
    assert len(solutions) == 2
    for cell in solutions:
        assert cell.metadata["jupyter"] == {"source_hidden": True, "outputs_hidden": True}
    assert "（开放题）用 Qwen2.5 的分词器" in markdown
    assert "prepared/ex4_qwen_chat" in stored_text(nb, "# 练习 4")


def test_manual_page_agrees_with_the_notebook(ns, markdown):
    page = (ROOT / "hf_basic" / "05_prepare_dataset.md").read_text(encoding="utf-8")
    flow = page.split("## 流程一览")[1].split("## 1.")[0]
    assert flow.index("统一转换成对话形式") < flow.index("精确去重")  # the notebook converts, then de-duplicates
    assert page.index("## 2. 转换") < page.index("## 3. 精确去重")
    n_valid, n_unique = len(ns["valid"]), len(ns["unique"])
    assert f"{n_valid} 条合法记录中 {n_valid - n_unique} 条是重复，剩 {n_unique} 条" in page
    assert "boundary_merges" in page and "18,397" in page and "（开放题）" in page
    exercises = page.split("## 练习")[1]
    for n in range(1, 5):
        assert f"\n{n}. " in exercises and f"\n{n}. " in markdown.split("## 练习")[1]
    assert "\n5. " not in exercises


def test_course_duplicates_are_within_one_file():
    """The manual page says the course data's duplicates all sit inside one file (real data may differ)."""
    from collections import defaultdict

    from utils.formats import to_messages

    files = defaultdict(set)
    for name in ("sft_alpaca.jsonl", "sft_sharegpt.jsonl", "sft_messages.jsonl"):
        for rec in read_records(DATA / name, on_error="skip", problems=[]):
            files[json.dumps(to_messages(rec), ensure_ascii=False, sort_keys=True)].add(name)
    assert all(len(names) == 1 for names in files.values())
    page = (ROOT / "hf_basic" / "05_prepare_dataset.md").read_text(encoding="utf-8")
    assert "12 条重复恰好都在同一个文件内部" in page
