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
