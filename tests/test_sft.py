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


# ---------------------------------------------------------------------------------------------- scoring

@pytest.mark.parametrize("output, subject, value, expected", [
    (" The capital of China is Beijing.", "China", "Beijing", True),        # the trained answer
    (" A: The capital of China is Beijing.", "China", "Beijing", True),     # the pretraining quiz line
    ("\nassistant: The capital of China is Beijing.", "China", "Beijing", True),
    (" the capital of china is beijing", "China", "Beijing", True),         # case ignored, no full stop
    (" The capital of Peru is Lima. The capital of China is Beijing.", "China", "Beijing", False),  # 2nd sentence
    (" The capital of Japan is Tokyo.", "China", "Beijing", False),
    (" The strawberry is red.", "tomato", "red", False),                    # right value, wrong subject
    (" The orange is orange.", "carrot", "orange", False),
    (" The opposite of sad is happy.", "sad", "ha", False),                 # whole words only
    (" The opposite of dark is lighter.", "dark", "light", False),
    ("", "China", "Beijing", False),
    ("答：秘鲁的首都是利马。问：泰国的首都是哪里？", "秘鲁", "利马", True),
    (" 你好，智利的首都是圣地亚哥。", "挪威", "奥斯陆", False),
    ("答：的反义词是苦。", "甜", "苦", False),                                # subject missing
    ("答：大海是蓝色的", "大海", "蓝", True),
])
def test_states_fact(output, subject, value, expected):
    assert sft.states_fact(output, subject, value) is expected


def test_first_sentence_and_answer_format():
    assert sft.first_sentence(" A: x. B: y.") == "A: x"
    assert sft.first_sentence("答：慢。问：") == "答：慢"
    assert sft.first_sentence("one\ntwo") == "one"
    assert sft.first_sentence("no end") == "no end"
    assert [sft.answer_format(t) for t in ("", "  ", " A: Lima.", "答：利马。", " The capital is Lima.", "A Lima")] == \
        ["empty", "empty", "quiz", "quiz", "other", "other"]


def test_every_reference_answer_states_its_fact(heldout):
    """The score credits the expected answers themselves, and names the fact's own subject and value."""
    from utils.models.corpus import load_facts

    facts = {(f.subject, f.value) for f in load_facts()}
    for q in heldout:
        subject, value = sft.fact_of(q)
        assert (subject, value) in facts
        assert subject in q["question"] and value in q["answer"]
        assert sft.states_fact(q["answer"], subject, value)
    assert sft.fact_of({"answer": "?", "subject": "Mars", "value": "red"}) == ("Mars", "red")
    with pytest.raises(ValueError, match="no fact of the corpus"):
        sft.fact_of({"question": "Who?", "answer": "Nobody."})


@pytest.mark.parametrize("reply, stops, correct, fact_right", [
    (" A: The capital of China is Beijing.", True, [False, False], [True, False]),   # quiz style: fact only
    (" The capital of China is Beijing.", True, [True, False], [True, False]),       # the trained answer
    (" The capital of China is Beijing.", False, [False, False], [True, False]),     # no EOS: not exact
    ("", True, [False, False], [False, False]),                                       # stops at once
])
def test_evaluate_scores_planted_generations(tok, heldout, reply, stops, correct, fact_right):
    """evaluate's three scores on a stand-in model that writes ``reply`` (then EOS if ``stops``) to every prompt."""
    continuation = tok(reply, add_special_tokens=False)["input_ids"] + ([tok.eos_token_id] if stops else [])

    class Planted:
        def generate(self, input_ids, **kwargs):
            tail = torch.tensor([continuation], dtype=input_ids.dtype).expand(input_ids.shape[0], -1)
            return torch.cat([input_ids, tail], dim=1)

    questions = heldout[:2]  # China, Russia
    assert [sft.fact_of(q)[0] for q in questions] == ["China", "Russia"]
    table = evaluate(Planted(), tok, questions, "template", max_new_tokens=len(continuation))
    assert table["output"].tolist() == [reply] * 2
    assert table["stops_with_eos"].tolist() == [stops] * 2
    assert table["correct"].tolist() == correct and table["fact_right"].tolist() == fact_right


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


# ---------------------------------------------------------------------------------- chapter 6's variants

@pytest.mark.parametrize("name", sorted(sft.VARIANTS))
def test_shipped_variant_is_the_stated_training_run(tok, name):
    """Each shipped comparison adapter is exactly ``train_lora(..., steps=VARIANT_STEPS, **VARIANTS[name])``:
    retrain it here (~25 s on 2 idle cores) and compare every LoRA weight with the shipped file."""
    from safetensors.torch import load_file

    torch.set_num_threads(2)
    model, losses = sft.train_lora(load_causal_lm(), tok, sft_data.load_training_records(),
                                   steps=sft.VARIANT_STEPS, progress=False, **sft.VARIANTS[name])
    assert len(losses) == sft.VARIANT_STEPS and losses[-1] < losses[0]
    shipped = load_file(str(ASSETS / "sft_variants" / name / "adapter_model.safetensors"))
    trained = {k: v for k, v in model.state_dict().items() if "lora_" in k}
    assert len(trained) == len(shipped) > 0
    for key, value in shipped.items():
        ours = [v for k, v in trained.items() if k.replace(".default", "") == key]
        assert len(ours) == 1, key
        torch.testing.assert_close(ours[0], value, rtol=1e-4, atol=1e-5, msg=key)


def test_variants_show_what_chapter_6_says_they_show(tok, heldout):
    """Loss on every token makes the model write the prompt's template text itself; the pad == eos bug
    removes stopping (and so the trained format) but not the facts; the recipe at 150 steps stops and
    answers."""
    from utils.models import load_sft_variant

    masked = rates(evaluate(load_sft_variant("prompt_masked"), tok, heldout, "template"))
    assert masked["stops_with_eos"] == 1 and masked["correct"] >= BAR_CORRECT
    all_tokens = load_sft_variant("all_tokens")
    raw = evaluate(all_tokens, tok, heldout[:4], "raw", max_new_tokens=16)["output"]
    assert all(out.startswith("\nassistant:") for out in raw), raw.tolist()
    assert rates(evaluate(all_tokens, tok, heldout, "template"))["correct"] < masked["correct"]
    bug = rates(evaluate(load_sft_variant("pad_eos_bug"), tok, heldout, "template"))
    assert bug["stops_with_eos"] < 0.5 * masked["stops_with_eos"] and bug["correct"] == 0
    assert bug["fact_right"] >= 0.8


def test_unknown_variant_is_a_clear_error():
    from utils.models import load_sft_variant

    with pytest.raises(ValueError, match="unknown SFT variant 'nope'.*all_tokens"):
        load_sft_variant("nope")
