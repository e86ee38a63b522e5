"""utils.preference: DPO / KTO rows keep the SFT contract, token by token, and train with TRL as they are."""

from __future__ import annotations

import json
import math

import pytest

from conftest import needs_tested_trl
from utils.encode import EncodeError
from utils.formats import read_records
from utils.models import load_reference_tokenizer
from utils.preference import (KTO_COLUMNS, PREFERENCE_COLUMNS, encode_kto, encode_preference,
                              encode_preference_dataset, trl_trainer)
from utils.templates import get_template, render, render_prompt

PAIRS = [
    {"prompt": "2+2?", "chosen": "4", "rejected": "5, probably"},
    {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "你好"},
                {"role": "assistant", "content": "你好！"}, {"role": "user", "content": "再见"}],
     "chosen": [{"role": "assistant", "content": "再见。"}], "rejected": [{"role": "assistant", "content": "\n不。😀"}]},
]


def conversation(prompt, answer):
    prompt = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    answer = [{"role": "assistant", "content": answer}] if isinstance(answer, str) else answer
    return {"messages": prompt + answer}


def check_row(row, pair, tok, template, answers=("chosen", "rejected")):
    """The contract, checked from the template's own rendering (not from the code under test).

    Returns the text the template writes after each answer (left out of the rows)."""
    tmpl = get_template(template)
    closing = []
    for side in answers:
        conv = conversation(pair["prompt"], pair[side])
        prompt_text = render_prompt(conv, tmpl, tok)
        want_prompt = tok(prompt_text, add_special_tokens=tmpl.add_special_tokens)["input_ids"]
        assert row["prompt_ids"] == want_prompt  # rule 3: the prompt inference sees, the same for both answers
        ids = row[f"{side}_ids"]
        assert ids.count(tok.eos_token_id) == 1 and ids[-1] == tok.eos_token_id  # rule 2: one end marker, last
        text = tok.decode(ids)
        assert conv["messages"][-1]["content"].strip() in text  # rule 6: the reply's text round-trips
        after = render(conv, tmpl, tok)[len(prompt_text):]
        assert after.startswith(text)  # the answer is exactly what follows the prompt in the training text
        closing.append(after[len(text):])
    return closing


@pytest.mark.parametrize("template", ["alpaca", "vicuna", "human_assistant", "chat_template"])
def test_pairs_on_the_tiny_tokenizer(tok, template):
    for pair in PAIRS:
        if template == "alpaca" and not isinstance(pair["prompt"], str):
            with pytest.raises(EncodeError, match="alpaca template"):
                encode_preference(pair, tok, template)
            continue
        row = encode_preference(pair, tok, template)
        assert sorted(row) == sorted(PREFERENCE_COLUMNS)
        assert check_row(row, pair, tok, template) == ["", ""]  # these templates write nothing after a reply


def test_chatml_answer_is_the_reply_and_im_end_only():
    """Qwen2.5's ChatML writes "\\n" after every <|im_end|>; the last one is closing text, not part of the answer."""
    tok = load_reference_tokenizer("qwen2_5")
    pair = PAIRS[1]
    row = encode_preference(pair, tok, "chat_template")
    assert check_row(row, pair, tok, "chat_template") == ["\n", "\n"]
    assert tok.decode(row["chosen_ids"]) == "再见。<|im_end|>"
    assert tok.decode(row["rejected_ids"]) == "\n不。😀<|im_end|>"
    full = tok.apply_chat_template(conversation(pair["prompt"], pair["chosen"])["messages"], tokenize=False)
    assert tok.decode(row["prompt_ids"] + row["chosen_ids"]) + "\n" == full
    assert row["prompt_ids"] == tok.apply_chat_template(pair["prompt"], add_generation_prompt=True, tokenize=True,
                                                        return_dict=False)


def test_kto_rows(tok):
    bad = {"prompt": "2+2?", "completion": "5", "label": False}
    row = encode_kto(bad, tok, "vicuna")
    assert sorted(row) == sorted(KTO_COLUMNS) and row["label"] is False
    assert check_row(row, bad, tok, "vicuna", answers=("completion",)) == [""]
    assert tok.decode(row["completion_ids"]) == " 5</s>"


def test_truncation_policies(tok):
    pair = {"prompt": "2+2?", "chosen": "four " * 20, "rejected": "5"}
    full = encode_preference(pair, tok, "vicuna")
    limit = len(full["prompt_ids"]) + 5
    assert encode_preference(pair, tok, "vicuna", max_length=limit) is None
    cut = encode_preference(pair, tok, "vicuna", max_length=limit, truncation="truncate")
    assert cut["prompt_ids"] == full["prompt_ids"] and cut["chosen_ids"] == full["chosen_ids"][:5]
    assert cut["rejected_ids"] == full["rejected_ids"]  # short enough: keeps its end marker
    res = encode_preference_dataset([pair, {**pair, "chosen": "4"}], tok, "vicuna", max_length=limit)
    assert (res.records, res.rows, res.dropped, res.truncated) == (2, 1, 1, 0)


def test_bad_records_are_counted_with_their_field(tok):
    data = [PAIRS[0], {"prompt": "x", "chosen": "y"}, {"prompt": "Hi </s>", "chosen": "a", "rejected": "b"}]
    res = encode_preference_dataset(data, tok, "vicuna", on_error="skip")
    assert (res.rows, res.invalid) == (1, 2)
    assert [(e.index, e.field) for e in res.problems] == [(1, "rejected"), (2, "prompt[0].content")]
    with pytest.raises(EncodeError, match="record 1: rejected: missing|record 1: missing"):
        encode_preference_dataset(data, tok, "vicuna")


def test_real_dpo_file_with_chatml(real_data_dir):
    """LLaMA-Factory's DPO demo (300 records, 64 with a system turn) with Qwen2.5's ChatML template."""
    tok = load_reference_tokenizer("qwen2_5")
    records = read_records(real_data_dir / "llamafactory_dpo_zh_demo.json", kind="preference")
    res = encode_preference_dataset(records, tok, "chat_template")
    assert (res.records, res.rows, res.invalid, res.dropped) == (300, 300, 0, 0)
    assert res.closing_tokens == 600  # one "\n" after the last <|im_end|> of each of the 600 answers
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    for rec, row in zip(records, res.dataset):
        assert row["prompt_ids"] == tok.apply_chat_template(rec["prompt"], add_generation_prompt=True,
                                                            tokenize=True, return_dict=False)
        for side in ("chosen", "rejected"):
            assert row[f"{side}_ids"][-1] == im_end and row[f"{side}_ids"].count(im_end) == 1
            assert tok.decode(row[f"{side}_ids"]) == rec[side][0]["content"] + "<|im_end|>"


# ---- TRL trains on the rows as they are ---------------------------------------------------------------

def _tiny_setup(tmp_path):
    import torch

    from utils.models import load_causal_lm, load_tokenizer

    torch.manual_seed(0)
    return load_causal_lm(), load_tokenizer()


def _our_rows(dataset, columns):
    return [tuple(tuple(row[c]) if isinstance(row[c], list) else row[c] for c in columns) for row in dataset]


def test_trl_dpo_trainer_takes_our_rows(tmp_path):
    from trl import DPOConfig

    model, tok = _tiny_setup(tmp_path)
    pairs = [{"prompt": f"{a}+{b}=?", "chosen": str(a + b), "rejected": str(a + b + 1)} for a in range(3) for b in range(2)]
    res = encode_preference_dataset(pairs, tok, "human_assistant")
    args = DPOConfig(output_dir=str(tmp_path / "dpo"), max_steps=2, per_device_train_batch_size=3, learning_rate=1e-3,
                     report_to="none", use_cpu=True, disable_tqdm=True, logging_steps=1, save_strategy="no",
                     dataloader_num_workers=0, seed=0)
    trainer = trl_trainer("dpo")(model=model, args=args, train_dataset=res.dataset, processing_class=tok)
    batch = next(iter(trainer.get_train_dataloader()))
    ours = {(tuple(r["prompt_ids"]), tuple(r["chosen_ids"]), tuple(r["rejected_ids"])) for r in res.dataset}
    n = batch["input_ids"].shape[0] // 2
    for i in range(n):
        rows = []
        for half in (i, n + i):  # first half chosen, second half rejected
            ids = batch["input_ids"][half][batch["attention_mask"][half].bool()].tolist()
            answer = batch["completion_mask"][half][batch["attention_mask"][half].bool()].bool().tolist()
            rows.append((ids, answer))
        prompt = tuple(t for t, a in zip(*rows[0]) if not a)
        assert prompt == tuple(t for t, a in zip(*rows[1]) if not a)  # the shared prompt, masked in both rows
        got = (prompt, tuple(t for t, a in zip(*rows[0]) if a), tuple(t for t, a in zip(*rows[1]) if a))
        assert got in ours  # exactly our ids: prompt masked, each answer supervised with its end marker
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)


@needs_tested_trl
def test_trl_kto_trainer_takes_our_rows(tmp_path):
    from trl import KTOConfig

    model, tok = _tiny_setup(tmp_path)
    data = [{"prompt": f"{a}+{b}=?", "completion": str(a + b + (a % 2)), "label": a % 2 == 0}
            for a in range(4) for b in range(2)]
    res = encode_preference_dataset(data, tok, "human_assistant", kind="kto")
    assert (res.desirable, res.undesirable) == (4, 4)
    args = KTOConfig(output_dir=str(tmp_path / "kto"), max_steps=2, per_device_train_batch_size=4, learning_rate=1e-3,
                     report_to="none", use_cpu=True, disable_tqdm=True, logging_steps=1, save_strategy="no",
                     dataloader_num_workers=0, seed=0)
    trainer = trl_trainer("kto")(model=model, args=args, train_dataset=res.dataset, processing_class=tok)
    ours = {(tuple(r["prompt_ids"]), tuple(r["completion_ids"]), r["label"]) for r in res.dataset}
    batch = next(iter(trainer.get_train_dataloader()))
    for i in range(batch["input_ids"].shape[0]):
        keep = batch["attention_mask"][i].bool()
        ids, answer = batch["input_ids"][i][keep].tolist(), batch["completion_mask"][i][keep].bool().tolist()
        got = (tuple(t for t, a in zip(ids, answer) if not a), tuple(t for t, a in zip(ids, answer) if a),
               bool(batch["label"][i]))
        assert got in ours
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
