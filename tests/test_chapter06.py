"""Chapter 6 (LoRA SFT): the bar of the template experiment on the shipped adapter, and the notebook's
hand-written pieces (LoRA formula, trainable-parameter count, the pad == eos collator bug) against
peft / the library.

The recipe is retrained and checked against the same bar in ``tests/test_sft.py`` (not repeated here:
one retrain is ~60 s on 2 cores); notebooks/06_lora_sft.ipynb retrains too and asserts the bar in a
cell that nbval runs.
"""

from __future__ import annotations

import copy

import pytest
import torch

from utils.models import load_causal_lm, load_chat_lm
from utils.models.sft import compare, evaluate, lora_config, prompt_ids, rates, training_rows
from utils.models.sft_data import load_heldout, load_training_records
from utils.packing import pad_collate


@pytest.fixture(scope="module")
def table(tok):
    return compare({"base": load_causal_lm(), "lora": load_chat_lm()}, tok, load_heldout()).set_index(
        ["model", "prompt"])


def test_the_bar_on_the_shipped_adapter(table):
    # fine-tuned + template: stops with EOS on >= 90% of held-out prompts and answers >= 70% correctly
    assert table.loc[("lora", "template"), "stops_with_eos"] >= 0.9
    assert table.loc[("lora", "template"), "correct"] >= 0.7
    # raw prompts to the base model are continued
    assert table.loc[("base", "raw"), "stops_with_eos"] <= 0.3
    # and neither the base model nor the raw question gets there
    assert table.loc[("base", "template"), "correct"] < 0.7
    assert table.loc[("lora", "raw"), "correct"] < table.loc[("lora", "template"), "correct"]


def test_heldout_questions_are_not_in_training():
    train_q = {m["content"] for r in load_training_records() for m in r["messages"] if m["role"] == "user"}
    assert not any(q["question"] in train_q for q in load_heldout())


def test_template_prompt_is_the_training_prompt(tok):
    from utils.templates import render_prompt

    q = load_heldout()[0]["question"]
    ex = {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "x"}]}
    assert prompt_ids(q, tok, "template") == tok(render_prompt(ex, "human_assistant", tok))["input_ids"]
    assert tok.decode(prompt_ids(q, tok, "template")) == f"<s>human: {q}\nassistant:"


def test_hand_lora_formula_equals_peft_layer():
    model = load_chat_lm(merge=False)
    layer = model.base_model.model.model.layers[1].mlp.down_proj
    x = torch.randn(3, layer.in_features, generator=torch.Generator().manual_seed(0))
    by_hand = x @ layer.base_layer.weight.T + layer.scaling["default"] * (
        x @ layer.lora_A["default"].weight.T @ layer.lora_B["default"].weight.T)
    with torch.no_grad():
        assert torch.allclose(layer(x), by_hand, atol=1e-5)
        assert not torch.allclose(layer(x), layer.base_layer(x), atol=1e-4)  # the adapter does something


def test_trainable_parameter_count_by_hand():
    from peft import get_peft_model

    model = get_peft_model(copy.deepcopy(load_causal_lm()), lora_config())
    cfg = model.base_model.model.config
    r = lora_config().r
    h, m, n = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    kv = cfg.num_key_value_heads * (h // cfg.num_attention_heads)
    per_layer = r * ((h + h) + (h + kv) + (h + kv) + (h + h) + (h + m) + (h + m) + (m + h))
    assert model.get_nb_trainable_parameters()[0] == n * per_layer


def test_pad_eos_bug_masks_every_real_eos(tok):
    rows = training_rows(load_training_records()[:8], tok)
    eos = tok.eos_token_id
    batch = pad_collate(rows, pad_token_id=eos)
    buggy = batch["labels"].masked_fill(batch["input_ids"] == eos, -100)  # what train_lora(pad_eos_bug=True) does
    real_eos = [(i, len(r["input_ids"]) - 1) for i, r in enumerate(rows)]
    for i, j in real_eos:
        assert batch["labels"][i, j] == eos        # pad_collate keeps EOS supervised (lengths, not ids)
        assert buggy[i, j] == -100                 # the bug hides it
    assert int((buggy == eos).sum()) == 0


def test_alpaca_template_is_worse_for_the_chat_model(tok):
    # exercise 2: a template the model was not trained on
    from utils.encode import encode_prompt

    chat = load_chat_lm()
    heldout = load_heldout()
    eos = tok.eos_token_id
    correct = 0
    for q in heldout:
        p = torch.tensor([encode_prompt({"instruction": q["question"], "output": "-"}, tok, "alpaca")])
        with torch.no_grad():
            out = chat.generate(input_ids=p, attention_mask=torch.ones_like(p), max_new_tokens=24,
                                do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=eos)
        out = out[0, p.shape[1]:].tolist()
        text = tok.decode(out[: out.index(eos)] if eos in out else out, skip_special_tokens=True)
        correct += eos in out and text.strip() == q["answer"]
    assert correct / len(heldout) < rates(evaluate(chat, tok, heldout, "template"))["correct"]
