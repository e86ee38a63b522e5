"""The shipped tiny tokenizer and base model: format, chat template, quality bar, reproducibility."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from utils.models import ASSETS, load_causal_lm
from utils.models import corpus, sft_data

MANUAL_SENTENCES = ["今天天气真好，我们出去看电影吧", "The chicken crossed the road",
                    "How are you? Hope this email finds you well"]


@pytest.fixture(scope="module")
def base():
    torch.set_num_threads(2)
    return load_causal_lm()


# ---------------------------------------------------------------------------------------------- tokenizer

def test_special_tokens(tok):
    assert (tok.unk_token, tok.bos_token, tok.eos_token, tok.pad_token) == ("<unk>", "<s>", "</s>", "<pad>")
    ids = {tok.unk_token_id, tok.bos_token_id, tok.eos_token_id, tok.pad_token_id}
    assert len(ids) == 4, "pad must be distinct from eos"
    from transformers import PreTrainedTokenizerFast

    assert isinstance(tok, PreTrainedTokenizerFast) and tok.is_fast


def test_bos_added_once_by_post_processor(tok):
    ids = tok("hello")["input_ids"]
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    assert tok("hello", add_special_tokens=False)["input_ids"] == ids[1:]
    assert tok.eos_token_id not in ids


def test_digits_and_cjk_are_split(tok):
    pieces = [tok.decode([i]) for i in tok("一个星期有17天", add_special_tokens=False)["input_ids"]]
    assert pieces == ["一", "个", "星", "期", "有", "1", "7", "天"]
    assert [tok.decode([i]) for i in tok("2026", add_special_tokens=False)["input_ids"]] == list("2026")
    text = "今天天气真好，我们出去看电影吧。"
    pieces = [tok.decode([i]) for i in tok(text, add_special_tokens=False)["input_ids"]]
    assert pieces == list(text), "every CJK character is a token of its own"


@pytest.mark.parametrize("text", ["今天天气真好，我们出去看电影吧", "The chicken crossed the road.",
                                  "混合 mixed text 🙂 with emoji ✓ and ünïcödé", "tabs\tand\nnewlines  "])
def test_round_trip(tok, text):
    ids = tok(text)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert tok.unk_token_id not in ids  # byte-level: nothing is unknown


def test_chat_template_renders_the_manuals_form(tok):
    msgs = [{"role": "system", "content": "你是助手。"}, {"role": "user", "content": "你好"},
            {"role": "assistant", "content": "你好！"}, {"role": "user", "content": "What is 1+1?"},
            {"role": "assistant", "content": "2"}]
    # Written by hand from the README's template description: system line, "human: {user}\n", "assistant:" + " {reply}</s>", "\n" between turns.
    # The template writes the one BOS itself (its text is tokenized without special tokens).
    expected = "<s>你是助手。\nhuman: 你好\nassistant: 你好！</s>\nhuman: What is 1+1?\nassistant: 2</s>"
    assert tok.apply_chat_template(msgs, tokenize=False) == expected
    assert tok.apply_chat_template(msgs[:4], tokenize=False, add_generation_prompt=True) == \
        "<s>你是助手。\nhuman: 你好\nassistant: 你好！</s>\nhuman: What is 1+1?\nassistant:"
    assert tok.apply_chat_template(msgs[1:3], tokenize=False) == "<s>human: 你好\nassistant: 你好！</s>"
    ids = tok.apply_chat_template(msgs[1:3], return_dict=True)["input_ids"]
    assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id


def test_chat_template_agrees_with_human_assistant_template(tok):
    from utils.templates import render, render_prompt

    for line in corpus.read_lines("conversations_samples.jsonl"):
        msgs = json.loads(line)["messages"]
        # same text after the BOS the template writes (text templates leave BOS to the tokenizer) ...
        assert tok.apply_chat_template(msgs, tokenize=False) == tok.bos_token + render(
            {"messages": msgs}, "human_assistant", tok)
        assert tok.apply_chat_template(msgs[:-1], tokenize=False, add_generation_prompt=True) == \
            tok.bos_token + render_prompt({"messages": msgs}, "human_assistant", tok)
        # ... so the same ids: a model trained on either is prompted identically by utils.generate.chat
        assert tok.apply_chat_template(msgs[:-1], add_generation_prompt=True, return_dict=True)["input_ids"] == \
            tok(render_prompt({"messages": msgs}, "human_assistant", tok))["input_ids"]


def test_assistant_mask_marks_replies_and_eos(tok):
    from utils.encode import encode

    msgs = [{"role": "user", "content": "法国的首都是哪里？"}, {"role": "assistant", "content": "法国的首都是巴黎。"},
            {"role": "user", "content": "And Japan?"}, {"role": "assistant", "content": "Tokyo."}]
    out = tok.apply_chat_template(msgs, return_assistant_tokens_mask=True, return_dict=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    supervised = [i for i, m in zip(ids, mask) if m]
    assert tok.decode(supervised) == " 法国的首都是巴黎。</s> Tokyo.</s>"
    assert supervised.count(tok.eos_token_id) == 2
    # the library's mask agrees with utils.encode's labels
    row = encode({"messages": msgs}, tok, "human_assistant")
    assert row["input_ids"] == ids
    assert [lab != -100 for lab in row["labels"]] == [bool(m) for m in mask]


def test_unknown_role_is_a_clear_error(tok):
    with pytest.raises(Exception, match="unknown role: robot"):
        tok.apply_chat_template([{"role": "robot", "content": "hi"}], tokenize=False)


def test_tokenizer_build_reproduces_committed(tmp_path):
    from utils.models import tokenizer

    tokenizer.build(tmp_path)
    committed = json.loads((ASSETS / "tokenizer" / "tokenizer.json").read_text(encoding="utf-8"))
    assert json.loads((tmp_path / "tokenizer.json").read_text(encoding="utf-8")) == committed
    assert (tmp_path / "chat_template.jinja").read_text() == (ASSETS / "tokenizer" / "chat_template.jinja").read_text()


# ---------------------------------------------------------------------------------------------- corpus

def test_corpus_holds_the_manuals_sentences():
    text = "\n".join(corpus.read_lines("corpus_text.txt"))
    for s in MANUAL_SENTENCES:
        assert s in text


def test_corpus_is_deterministic():
    assert corpus.pretraining_docs(50, seed=3) == corpus.pretraining_docs(50, seed=3)
    assert corpus.pretraining_docs(50, seed=3) != corpus.pretraining_docs(50, seed=4)


def test_every_character_of_the_instruction_data_is_pretrained():
    """An embedding never seen in pretraining stays untrained, and frozen-embedding LoRA can't fix it."""
    seen = set("".join(corpus.pretraining_docs()))
    texts = [m["content"] for r in sft_data.load_training_records() for m in r["messages"]]
    texts += [q["question"] + q["answer"] for q in sft_data.load_heldout()]
    texts += corpus.sample_texts()
    missing = sorted(set("".join(texts)) - seen - {"\n"})
    assert not missing, f"characters missing from the pretraining corpus: {missing}"


def test_heldout_facts_are_stated_in_pretraining_but_never_asked_in_sft():
    docs = "\n".join(corpus.pretraining_docs())
    train_text = json.dumps(sft_data.load_training_records(), ensure_ascii=False)
    held = sft_data.split_facts()[1]
    assert [sft_data.chat_question_answer(f)[0] for f in held] == [q["question"] for q in sft_data.load_heldout()]
    for fact in held:
        assert corpus.question_answer(fact)[1] in docs  # the fact, as the answer states it
        for question, answer in sft_data.question_variants(fact):
            assert question not in train_text and answer not in train_text


# ---------------------------------------------------------------------------------------------- base model

def _top_next(model, tok, text):
    with torch.no_grad():
        logits = model(tok(text, return_tensors="pt")["input_ids"]).logits[0, -1]
    return tok.decode(int(logits.argmax()))


def test_base_model_config(base, tok):
    cfg = base.config
    assert cfg.model_type == "llama" and cfg.tie_word_embeddings
    assert (cfg.pad_token_id, cfg.bos_token_id, cfg.eos_token_id) == \
        (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id)
    assert cfg.vocab_size == len(tok)
    assert (ASSETS / "causal_lm" / "model.safetensors").exists()
    assert not list((ASSETS / "causal_lm").glob("*.bin"))


def test_quality_bar_next_tokens(base, tok):
    assert _top_next(base, tok, "今天天气真") == "好"
    road = _top_next(base, tok, "The chicken crossed the")
    assert road.strip() and " road".startswith(road), road  # " road" or the token that starts it


def test_quality_bar_email_is_continued_not_answered(base, tok):
    ids = tok("How are you?", return_tensors="pt")["input_ids"]
    out = base.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    assert tok.decode(out[0, ids.shape[1]:]).startswith(" Hope this email finds you well")


def test_all_checkpoints_are_small():
    total = sum(f.stat().st_size for f in ASSETS.rglob("*") if f.is_file())
    assert total < 20e6, f"shipped checkpoints take {total / 1e6:.1f} MB (limit 20 MB)"


def test_no_machine_paths_in_assets():
    for f in ASSETS.rglob("*.json"):
        text = f.read_text(encoding="utf-8")
        assert "/work/" not in text and "/home/" not in text and "/tmp/" not in text, f


def test_pretraining_is_bit_reproducible(tok):
    from utils.models.causal import pretrain

    a, _ = pretrain(tok, n_docs=60, steps=3, batch_size=4, progress=False)
    b, _ = pretrain(tok, n_docs=60, steps=3, batch_size=4, progress=False)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name


# ---------------------------------------------------------------------------------------------- command line

def test_check_command_passes():
    out = subprocess.run([sys.executable, "-m", "utils.models", "check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "ok  tokenizer" in out.stdout and "ok  causal_lm" in out.stdout and "total" in out.stdout


def test_check_fails_clearly_when_assets_are_missing(tmp_path, monkeypatch, capsys):
    import utils.models as m
    from utils.models.__main__ import check

    monkeypatch.setattr(m, "ASSETS", tmp_path)
    assert check() == 1
    err = capsys.readouterr().err
    assert "tokenizer" in err and "python -m utils.models build" in err
