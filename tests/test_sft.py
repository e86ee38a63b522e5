"""The instruction data, the LoRA SFT recipe and the shipped chat adapter (chapters 5–6)."""

from __future__ import annotations

import json

import pytest
import torch

from utils.models import ASSETS, load_causal_lm, load_chat_lm
from utils.models import sft, sft_data
from utils.models.sft import evaluate, rates

BAR_EOS, BAR_CORRECT, BASE_RAW_EOS_MAX = 0.9, 0.7, 0.3


@pytest.fixture(scope="module")
def heldout():
    return sft_data.load_heldout()


# ---------------------------------------------------------------------------------------------- raw data

def test_raw_files_are_reproduced_by_the_generator(tmp_path):
    sft_data.write_all(tmp_path)
    for name in sft_data.FILES.values():
        assert (tmp_path / name).read_text(encoding="utf-8") == \
            (sft_data.DATA_DIR / name).read_text(encoding="utf-8"), name


def test_raw_files_hold_the_bad_records_and_duplicates():
    from utils.formats import validate_file

    reasons = []
    for name in ("alpaca", "sharegpt", "messages"):
        path = sft_data.DATA_DIR / sft_data.FILES[name]
        problems = validate_file(path)
        assert len(problems) == len(sft_data.BAD_RECORDS[name])
        reasons += [str(p) for p in problems]
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        assert len(lines) - len(set(lines)) == 4  # exact duplicate lines
    text = "\n".join(reasons)
    for what in ("not valid JSON", "output: missing", "output: empty", "ends with a user turn", "unknown role"):
        assert what in text


def test_formats_are_mixed():
    first = {name: json.loads((sft_data.DATA_DIR / sft_data.FILES[name]).read_text(encoding="utf-8")
                              .splitlines()[0]) for name in ("alpaca", "sharegpt", "messages")}
    assert "instruction" in first["alpaca"]
    assert "conversations" in first["sharegpt"]
    assert "messages" in first["messages"]


def test_training_records_are_clean_and_unique():
    records = sft_data.load_training_records()
    keys = [json.dumps(r, ensure_ascii=False, sort_keys=True) for r in records]
    assert len(keys) == len(set(keys)) >= 500
    assert any(len(r["messages"]) == 4 for r in records) and any(len(r["messages"]) == 2 for r in records)


# ---------------------------------------------------------------------------------------------- masking

def test_rows_mask_the_prompt_and_supervise_reply_and_eos(tok):
    msgs = [{"role": "user", "content": "What is the capital of Peru?"},
            {"role": "assistant", "content": "The capital of Peru is Lima."}]
    row, = sft.training_rows([{"messages": msgs}], tok)
    prompt = tok("human: What is the capital of Peru?\nassistant:")["input_ids"]
    reply = tok(" The capital of Peru is Lima.", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert row["input_ids"] == prompt + reply
    assert row["labels"] == [-100] * len(prompt) + reply
    row_all, = sft.training_rows([{"messages": msgs}], tok, masking="all")
    assert row_all["labels"] == row_all["input_ids"]


def test_prompt_ids_match_training_prefix(tok):
    q = "雪是什么颜色的？"
    row, = sft.training_rows([{"messages": [{"role": "user", "content": q},
                                            {"role": "assistant", "content": "雪是白色的。"}]}], tok)
    ids = sft.prompt_ids(q, tok, "template")
    assert row["input_ids"][:len(ids)] == ids and row["labels"][len(ids)] != -100
    assert sft.prompt_ids(q, tok, "raw") == tok(q)["input_ids"]


def test_pad_eos_bug_masks_every_eos(tok):
    from utils.packing import pad_collate

    rows = sft.training_rows(sft_data.load_training_records()[:4], tok)
    batch = pad_collate(rows, tok.eos_token_id)
    buggy = batch["labels"].masked_fill(batch["input_ids"] == tok.eos_token_id, -100)
    assert (batch["labels"] == tok.eos_token_id).sum() >= 4
    assert (buggy == tok.eos_token_id).sum() == 0


# ---------------------------------------------------------------------------------------------- models

def test_base_model_continues_raw_questions(tok, heldout):
    torch.set_num_threads(2)
    r = rates(evaluate(load_causal_lm(), tok, heldout, "raw"))
    assert r["stops_with_eos"] <= BASE_RAW_EOS_MAX, r


def test_shipped_adapter_stops_with_eos(tok, heldout):
    torch.set_num_threads(2)
    r = rates(evaluate(load_chat_lm(), tok, heldout, "template"))
    assert r["stops_with_eos"] >= BAR_EOS, r


def test_shipped_adapter_meets_the_correctness_bar(tok, heldout):
    torch.set_num_threads(2)
    table = evaluate(load_chat_lm(), tok, heldout, "template")
    r = rates(table)
    assert r["correct"] >= BAR_CORRECT, (r, table[~table.correct])


def test_shipped_adapter_is_safetensors_and_merges_exactly(tok):
    assert (ASSETS / "chat_adapter" / "adapter_model.safetensors").exists()
    assert not list((ASSETS / "chat_adapter").glob("*.bin"))
    ids = tok("human: 你好\nassistant:", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        merged = load_chat_lm()(ids).logits
        unmerged = load_chat_lm(merge=False)(ids).logits
    torch.testing.assert_close(merged, unmerged, rtol=1e-4, atol=1e-4)


def test_retraining_with_the_recipe_meets_the_bar(tok, heldout):
    """Retrain from the shipped base with the recipe and check the bar (~25 s on 2 idle cores)."""
    torch.set_num_threads(2)
    model, losses = sft.train_lora(load_causal_lm(), tok, sft_data.load_training_records(), progress=False)
    assert losses[-1] < losses[0]
    r = rates(evaluate(model, tok, heldout, "template"))
    assert r["stops_with_eos"] >= BAR_EOS and r["correct"] >= BAR_CORRECT, r
