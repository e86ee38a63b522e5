"""Chapter 6 (LoRA SFT): the bar of the template experiment on the shipped adapter, the numbers its prose
states, and the notebook's hand-written pieces (LoRA formula, trainable-parameter count, adapter sizes,
the pad == eos collator bug, trainable new special tokens) against peft / the library.

The recipe is retrained and checked against the same bar in ``tests/test_sft.py`` (not repeated here:
one retrain is ~60 s on 2 cores); notebooks/06_lora_sft.ipynb retrains too and asserts the bar in a
cell that nbval runs.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import nbformat
import pytest
import torch

from nbexec import load_script, run_figure_script
from utils.models import ASSETS, load_causal_lm, load_chat_lm
from utils.models.sft import (LORA_TARGETS, answer_format, compare, evaluate, lora_config, prompt_ids, rates,
                              training_rows)
from utils.models.sft_data import load_heldout, load_training_records
from utils.packing import pad_collate

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "06_lora_sft.ipynb"
PAGE = ROOT / "hf_basic" / "06_lora_sft.md"
BASE_RAW, BASE_TPL, LORA_RAW, LORA_TPL = "基座模型 + 裸问题", "基座模型 + 模板", "微调后 + 裸问题", "微调后 + 模板"


def notebook_prose() -> str:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


@pytest.fixture(scope="module")
def table(tok):
    """The chapter's table (and figure): the figure script's own function."""
    torch.set_num_threads(2)
    return load_script("figures/ch06_lora_sft.py").score_table(tok)


@pytest.fixture(scope="module")
def lora_raw(tok):
    return evaluate(load_chat_lm(), tok, load_heldout(), "raw")


def test_the_bar_on_the_shipped_adapter(table):
    # fine-tuned + template: stops with EOS on >= 90% of held-out prompts and answers >= 70% correctly
    assert table.loc[LORA_TPL, "stops_with_eos"] >= 0.9
    assert table.loc[LORA_TPL, "correct"] >= 0.7
    # raw prompts to the base model are continued
    assert table.loc[BASE_RAW, "stops_with_eos"] <= 0.3
    # and neither the base model nor the raw question gets the trained answer
    assert table.loc[BASE_TPL, "correct"] < 0.7
    assert table.loc[LORA_RAW, "correct"] < table.loc[LORA_TPL, "correct"]


def test_without_the_template_the_facts_are_still_there(table):
    """The chapter's point: the raw question loses the trained format, not the knowledge."""
    assert table.loc[LORA_RAW, "correct"] == 0 and table.loc[LORA_RAW, "fact_right"] >= 0.5
    assert table.loc[BASE_RAW, "correct"] == 0 and table.loc[BASE_RAW, "fact_right"] >= 0.5
    assert (table["fact_right"] >= table["correct"]).all()   # an exact answer always states the fact


def test_prose_states_the_measured_numbers(table, lora_raw):
    text, page = notebook_prose(), PAGE.read_text(encoding="utf-8")
    for row, score in [(BASE_RAW, "stops_with_eos"), (BASE_RAW, "fact_right"), (BASE_TPL, "fact_right"),
                       (LORA_TPL, "correct"), (LORA_RAW, "fact_right")]:
        stated = f"{table.loc[row, score]:.0%}"
        assert stated in text, (row, score, stated)
        assert stated in page, (row, score, stated)
    formats = lora_raw["output"].map(answer_format)
    n_quiz, n_empty = int((formats == "quiz").sum()), int((formats == "empty").sum())
    n_fact = int(lora_raw["fact_right"].sum())
    assert n_quiz + n_empty == len(lora_raw)
    for phrase in (f"其中 {n_quiz} 条", f"事实对了 {n_fact} 条", f"另有 {n_empty} 条"):
        assert phrase in text, phrase
    assert lora_raw["stops_with_eos"].all()


def test_figure_script_draws_without_missing_glyphs(tmp_path):
    paths = run_figure_script("ch06_lora_sft", tmp_path)
    assert [p.name for p in paths] == ["ch06_eos_correct.png"]


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


# ---------------------------------------------------------------------------------------------- sizes

def test_adapter_size_is_its_parameters_in_float32():
    from peft import get_peft_model

    n = get_peft_model(copy.deepcopy(load_causal_lm()), lora_config()).get_nb_trainable_parameters()[0]
    size = (ASSETS / "chat_adapter" / "adapter_model.safetensors").stat().st_size
    assert n == 139_264
    assert 0 < size - 4 * n < 10_000          # float32 tensors plus a safetensors header
    assert f"{size / 1000:.0f} KB" in PAGE.read_text(encoding="utf-8") and "564 KB" in notebook_prose()


def test_7b_lora_arithmetic_on_a_meta_llama2_7b():
    """4 modules x r x (4096 + 4096) x 32 layers, counted by peft on a Llama-2-7B built on the meta device."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                         num_key_value_heads=32, vocab_size=32000, tie_word_embeddings=False)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    total = sum(p.numel() for p in model.parameters())
    assert total == 6_738_415_616
    lora = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, task_type="CAUSAL_LM",
                                            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    n = lora.get_nb_trainable_parameters()[0]
    assert n == 4 * 16 * (4096 + 4096) * 32 == 16_777_216
    assert round(n * 2 / 1e6, 1) == 33.6 and round(n * 4 / 1e6, 1) == 67.1   # bf16 / fp32 megabytes
    stated = f"{n / total:.2%}"
    assert stated == "0.25%" and stated in notebook_prose() and stated in PAGE.read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------- new tokens

def _resized_with_chatml(tok):
    chatml = copy.deepcopy(tok)
    chatml.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    new_ids = chatml.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    model = copy.deepcopy(load_causal_lm())
    model.resize_token_embeddings(len(chatml), mean_resizing=False)
    ids = chatml("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>", return_tensors="pt")
    return model, new_ids, ids["input_ids"]


def _one_step(peft_model, ids):
    """How much each embedding row (ids 0..max) moved in one SGD step on ``ids``."""
    rows = torch.arange(ids.max().item() + 1)
    embed = peft_model.get_input_embeddings()
    before = embed(rows).detach().clone()
    opt = torch.optim.SGD([p for p in peft_model.parameters() if p.requires_grad], lr=1.0)
    peft_model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    return (embed(rows).detach() - before).abs().sum(dim=1)


def test_new_special_tokens_stay_frozen_under_plain_lora(tok):
    from peft import get_peft_model

    model, new_ids, ids = _resized_with_chatml(tok)
    assert new_ids == [len(tok), len(tok) + 1]
    lora = get_peft_model(model, lora_config())
    assert not any(p.requires_grad for n, p in lora.named_parameters() if "embed_tokens" in n or "lm_head" in n)
    changed = _one_step(lora, ids)
    assert changed[new_ids].sum() == 0          # the new rows never move


def test_trainable_token_indices_train_only_the_new_rows(tok):
    from peft import LoraConfig, get_peft_model

    model, new_ids, ids = _resized_with_chatml(tok)
    hidden = model.config.hidden_size
    plain = get_peft_model(copy.deepcopy(model), lora_config()).get_nb_trainable_parameters()[0]
    cfg = LoraConfig(r=16, lora_alpha=32, target_modules=LORA_TARGETS, task_type="CAUSAL_LM",
                     trainable_token_indices={"embed_tokens": new_ids})
    lora = get_peft_model(model, cfg)
    assert lora.get_nb_trainable_parameters()[0] == plain + len(new_ids) * hidden
    changed = _one_step(lora, ids)
    assert (changed[new_ids] > 0).all()                                  # the new rows learn
    old = [i for i in ids[0].unique().tolist() if i not in new_ids]
    assert changed[old].sum() == 0                                       # the old rows do not


def test_modules_to_save_trains_whole_embedding_and_output_copies(tok):
    from peft import LoraConfig, get_peft_model

    model, new_ids, _ = _resized_with_chatml(tok)
    vocab, hidden = model.get_input_embeddings().weight.shape
    plain = get_peft_model(copy.deepcopy(model), lora_config()).get_nb_trainable_parameters()[0]
    cfg = LoraConfig(r=16, lora_alpha=32, target_modules=LORA_TARGETS, task_type="CAUSAL_LM",
                     modules_to_save=["embed_tokens", "lm_head"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)   # tied embeddings: peft trains two separate copies
        lora = get_peft_model(model, cfg)
    assert lora.get_nb_trainable_parameters()[0] == plain + 2 * vocab * hidden


def test_variant_numbers_in_the_prose_are_the_shipped_variants(tok, table):
    """The 150-step comparison adapters are loaded (not trained) in the notebook, so their numbers are
    fixed: the prose of the notebook and the page states them."""
    from utils.models import load_sft_variant

    heldout = load_heldout()
    masked = rates(evaluate(load_sft_variant("prompt_masked"), tok, heldout, "template"))
    all_tokens = rates(evaluate(load_sft_variant("all_tokens"), tok, heldout, "template"))
    bug = rates(evaluate(load_sft_variant("pad_eos_bug"), tok, heldout, "template"))
    text, page = notebook_prose(), PAGE.read_text(encoding="utf-8")
    # notebook: 150 steps beat 300 steps on the trained format
    assert masked["correct"] > table.loc[LORA_TPL, "correct"]
    assert f"150 步的模型按训练格式答对的比例（{masked['correct']:.0%}）比 300 步的（{table.loc[LORA_TPL, 'correct']:.0%}）" in text
    # page: loss on every token vs masked prompt; the pad == eos bug
    assert f"答对得更少（{all_tokens['correct']:.0%}，掩掉提示的是 {masked['correct']:.0%}）" in page
    assert masked["stops_with_eos"] == 1 and bug["stops_with_eos"] == 0
    assert "正确做法的模型 100% 以 EOS 结束，有这个 bug 的模型一个也没有停下（0%）" in page
    assert bug["correct"] == 0 and bug["fact_right"] >= 0.5
