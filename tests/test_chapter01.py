"""Chapter 1 (model types, chat vs completion): the structural facts the chapter shows, on the shipped
models, and its exercise answers; the notebook's hidden solution cells are re-run in-process."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from packaging.version import Version

from nbexec import load_script, notebook_namespace, run_figure_script
from utils.generate import chat, chat_prompt_ids, complete

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "01_model_types.ipynb"


@pytest.fixture(scope="module")
def models():
    from utils.models import load_causal_lm, load_chat_lm, load_seq2seq_lm, load_tokenizer

    torch.set_num_threads(2)
    return {"tok": load_tokenizer(), "causal": load_causal_lm(), "seq2seq": load_seq2seq_lm(),
            "chat": load_chat_lm()}


def test_attention_patterns_are_what_the_architectures_say(models):
    """Causal: zero above the diagonal; encoder and cross attention: every position visible."""
    from utils.viz import causal_attention, seq2seq_attention

    tok = models["tok"]
    panel = causal_attention(models["causal"], tok, "今天天气真好")
    n = len(panel.query_labels)
    assert np.all(panel.weights[np.triu_indices(n, k=1)] == 0)
    assert np.all(panel.weights[np.tril_indices(n)] > 0)
    assert np.allclose(panel.weights.sum(axis=1), 1, atol=1e-5)
    enc, dec, cross = seq2seq_attention(models["seq2seq"], tok, "翻译成英文：两辆红色的大车", "two big red cars")
    assert np.all(enc.weights > 0) and np.all(cross.weights > 0)
    m = len(dec.query_labels)
    assert np.all(dec.weights[np.triu_indices(m, k=1)] == 0) and np.all(dec.weights[np.tril_indices(m)] > 0)
    for p in (panel, enc, dec, cross):
        assert (p.weights[~p.allowed] == 0).all()


def test_attention_helpers_restore_the_attention_implementation(models):
    from utils.viz import causal_attention

    before = models["causal"].config._attn_implementation
    causal_attention(models["causal"], models["tok"], "今天")
    assert models["causal"].config._attn_implementation == before


def test_chat_is_completion_of_the_rendered_template(models):
    tok, model = models["tok"], models["chat"]
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == "<s>human: What is the capital of France?\nassistant:"
    # one BOS: the template wrote it, so the tokenizer adds none
    assert chat_prompt_ids(tok, messages)[0].tolist() == tok(rendered, add_special_tokens=False)["input_ids"]
    assert chat_prompt_ids(tok, messages)[0].tolist().count(tok.bos_token_id) == 1
    assert chat(model, tok, messages, max_new_tokens=16) == complete(model, tok, rendered, max_new_tokens=16).strip()


def test_only_the_seq2seq_model_has_an_encoder_and_cross_attention(models):
    causal, seq2seq = models["causal"], models["seq2seq"]
    assert not causal.config.is_encoder_decoder and seq2seq.config.is_encoder_decoder
    assert not any("EncDecAttention" in n or "cross" in n for n, _ in causal.named_parameters())
    assert any("EncDecAttention" in n for n, _ in seq2seq.named_parameters())


@pytest.fixture(scope="module")
def ns():
    """The notebook run in-process; its hidden solution cells assert their own answers."""
    return notebook_namespace(NOTEBOOK.name)


def test_notebook_parameter_table_counts_every_parameter_once(ns, models):
    parts = ns["parts"]
    for column, model in [("CausalLM（Llama）", models["causal"]), ("Seq2SeqLM（T5）", models["seq2seq"])]:
        assert parts.loc["合计", column] == sum(p.numel() for p in model.parameters())
    assert parts.loc["解码器 · 交叉注意力", "CausalLM（Llama）"] == 0
    assert parts.loc["编码器 · 自注意力", "CausalLM（Llama）"] == 0


def _outputs(path: Path) -> str:
    import nbformat

    texts = []
    for cell in nbformat.read(path, as_version=4).cells:
        for out in cell.get("outputs", []):
            texts.append(out.get("text", "") or out.get("data", {}).get("text/plain", ""))
    return "\n".join(texts)


def test_notebook_server_answers_match_local_greedy_and_the_stated_counts(ns, models):
    """Section 4 on the real server: every count the prose states, recomputed from the tokenizer and models."""
    tok = models["tok"]
    assert ns["rendered"].endswith("assistant:")
    assert not ns["server"].running()                     # the notebook stops its server
    # completion on the base model: an e-mail, cut at max_tokens
    base = ns["base_reply"]
    assert base.choices[0].text == complete(models["causal"], tok, "How are you?", max_new_tokens=16)
    assert base.choices[0].text.startswith(" Hope this email finds you well")
    assert base.choices[0].finish_reason == "length"
    assert len(tok("How are you?", add_special_tokens=False)["input_ids"]) == 4
    assert base.usage.prompt_tokens == 5 == len(tok("How are you?")["input_ids"])   # + BOS
    assert base.usage.completion_tokens == 16 and base.usage.total_tokens == 21
    # chat on the chat model: the answer, stopped at </s> (counted, not shown)
    chat_reply, as_completion = ns["chat_reply"], ns["as_completion"]
    answer = chat_reply.choices[0].message.content
    assert chat_reply.choices[0].message.role == "assistant" and chat_reply.choices[0].finish_reason == "stop"
    assert answer.strip() == chat(models["chat"], tok, ns["messages"], max_new_tokens=24) == ns["reply_chat"]
    n_answer = len(tok(answer, add_special_tokens=False)["input_ids"])
    assert n_answer == 7 and chat_reply.usage.completion_tokens == n_answer + 1 == 8
    # the same request as a completion of the rendered template: same answer, one more BOS in the prompt
    assert as_completion.choices[0].text == answer and as_completion.usage.completion_tokens == 8
    n_template = len(chat_prompt_ids(tok, ns["messages"])[0])
    assert chat_reply.usage.prompt_tokens == n_template == 13
    assert as_completion.usage.prompt_tokens == n_template + 1 == 14
    assert tok(ns["rendered"])["input_ids"][:2] == [tok.bos_token_id] * 2
    # streaming: the chunks join to the answer, each holds whole tokens; one token each up to transformers 5.24
    # (what the stored output shows), 5.25 may put the tokens ready at once into one chunk
    token_texts = [tok.decode([i]) for i in tok(answer, add_special_tokens=False)["input_ids"]]
    assert ns["token_texts"] == token_texts and len(token_texts) == 7 and "".join(ns["pieces"]) == answer
    per_chunk = ns["tokens_per_chunk"]
    assert sum(per_chunk) == 7 and min(per_chunk) >= 1 and len(per_chunk) == len(ns["pieces"])
    bounds = [sum(per_chunk[:k]) for k in range(len(per_chunk) + 1)]
    assert ns["pieces"] == ["".join(token_texts[a:b]) for a, b in zip(bounds, bounds[1:])]
    if Version(transformers.__version__).release < (5, 25):
        assert per_chunk == [1] * 7
    page = (NOTEBOOK.parents[1] / "hf_basic" / "01_model_types.md").read_text(encoding="utf-8")
    assert f'"text": {json.dumps(base.choices[0].text)}' in page           # the page quotes the real responses
    assert f'"content": {json.dumps(answer)}' in page and f'"text": {json.dumps(answer)}' in page
    assert "、".join(f"`{p!r}`" for p in token_texts[:3]) in page     # the first streamed chunks


def test_notebook_prose_and_stored_outputs_state_the_measured_counts():
    text, outputs = _markdown(NOTEBOOK), _outputs(NOTEBOOK)
    for phrase in ("\"How are you?\" 的 4 个词元", "共 5 个", "生成的词元数（16）", "回答的 7 个词元加上 `</s>`，共 8 个",
                   "（13 个词元", "只有 `prompt_tokens` 差 1"):
        assert phrase in text, phrase
    for stored in ('"prompt_tokens": 5', '"completion_tokens": 16', '"text": " Hope this email finds you well',
                   '"content": " The capital of France is Paris."', '"prompt_tokens": 13', '"prompt_tokens": 14',
                   "prompt_tokens: 13 (chat) vs 14 (completion)", "'completion_tokens': 8"):
        assert stored in outputs, stored
    assert "127.0.0.1:" not in outputs        # the random port is not part of the stored outputs
    page = (NOTEBOOK.parents[1] / "hf_basic" / "01_model_types.md").read_text(encoding="utf-8")
    for phrase in ('"prompt_tokens": 5', '"prompt_tokens": 13', '"prompt_tokens": 14', "共 8 个", "多了 1 个"):
        assert phrase in page, phrase


def test_figure_script_draws_without_missing_glyphs(tmp_path):
    paths = run_figure_script("ch01_model_types", tmp_path)
    assert [p.name for p in paths] == ["ch01_attention_patterns.png"]


def _markdown(path: Path) -> str:
    import nbformat

    return "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")


def test_raw_questions_to_the_chat_model_fall_back_to_the_pretraining_format(models):
    """What the chat model does without its template, counted as the notebook and the page state it."""
    from utils.models.sft import answer_format, evaluate
    from utils.models.sft_data import load_heldout

    tok, chat_model = models["tok"], models["chat"]
    raw = evaluate(chat_model, tok, load_heldout(), "raw")
    formats = raw["output"].map(answer_format)
    n_empty, n_quiz = int((formats == "empty").sum()), int((formats == "quiz").sum())
    n_fact = int(raw["fact_right"].sum())
    assert raw["stops_with_eos"].all()
    assert n_empty + n_quiz == len(raw) and n_empty < n_quiz          # empty replies are the minority
    assert int((raw["output"].str.strip() == "答：").sum()) == 1
    assert complete(chat_model, tok, "What is the capital of France?", max_new_tokens=16) == ""
    text = _markdown(NOTEBOOK)
    page = (NOTEBOOK.parents[1] / "hf_basic" / "01_model_types.md").read_text(encoding="utf-8")
    for phrase in (f"{len(raw)} 个问题里只有 {n_empty} 个立刻结束", f"其余 {n_quiz} 个", f"其中 {n_fact} 个事实是对的"):
        assert phrase in text, phrase
    for phrase in (f"有 {n_quiz} 个用预训练语料里的问答体", f"只有 {n_empty} 个立刻结束"):
        assert phrase in page, phrase
    assert "立刻结束、回答为空——" not in page   # the old claim ("it usually stops at once, empty") is gone


def test_figure_labels_with_circled_numbers_are_bytes_of_one_character(models):
    """The figure's 翻① 翻② 翻③: characters the tiny tokenizer splits into byte tokens, which join back."""
    tok = models["tok"]
    figure = load_script("figures/ch01_model_types.py")
    for ch in "翻译成只猫":
        assert f"“{ch}”" in figure.BYTE_NOTE
        ids = tok(ch, add_special_tokens=False)["input_ids"]
        assert 2 <= len(ids) <= 3
        assert all("\ufffd" in tok.decode([i]) for i in ids)    # no piece is a character on its own
        assert tok.decode(ids) == ch
    assert len(tok("天", add_special_tokens=False)["input_ids"]) == 1   # a common character is one token
