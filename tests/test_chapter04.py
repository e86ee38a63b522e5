"""Chapter 4 (multi-turn, chat templates): the notebook's hand-written templates equal the library's
and FastChat's, and its exercise solutions hold."""

from __future__ import annotations

import itertools

import pytest

from nbexec import notebook_namespace
from utils.encode import encode
from utils.templates import VICUNA_SYSTEM, render


@pytest.fixture(scope="module")
def ns():
    return notebook_namespace("04_multi_turn_chat_template.ipynb")


def test_vicuna_literal_fastchat_string(ns):
    # FastChat vicuna_v1.1: sep " ", sep2 "</s>", roles USER / ASSISTANT, written out literally
    conv = {"messages": [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi there"},
                         {"role": "user", "content": "How are you?"}, {"role": "assistant", "content": "Fine."}]}
    system = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives "
              "helpful, detailed, and polite answers to the user's questions.")
    expected = f"{system} USER: Hello ASSISTANT: Hi there</s>USER: How are you? ASSISTANT: Fine.</s>"
    assert ns["VICUNA_SYSTEM"] == VICUNA_SYSTEM == system
    assert ns["vicuna"](conv["messages"]) == expected == render(conv, "vicuna", ns["tokenizer"])


def test_hand_written_human_assistant_equals_library_and_chat_template(ns):
    tok = ns["tokenizer"]
    for d in ns["dialogs"]:
        text = ns["human_assistant"](d["messages"])
        assert text == render(d, "human_assistant", tok)
        # the chat template writes the BOS itself; the rest of the text is the same
        assert tok.bos_token + text == tok.apply_chat_template(d["messages"], tokenize=False)


def test_every_assistant_turn_supervised_token_by_token(ns):
    tok = ns["tokenizer"]
    for d in ns["dialogs"]:
        for template in ("vicuna", "human_assistant", "chat_template"):
            row = encode(d, tok, template)
            runs = [[i for i, _ in g] for sup, g in
                    itertools.groupby(enumerate(row["labels"]), key=lambda p: p[1] != -100) if sup]
            replies = [m["content"] for m in d["messages"] if m["role"] == "assistant"]
            assert len(runs) == len(replies)
            for run, reply in zip(runs, replies):
                ids = [row["input_ids"][i] for i in run]
                assert [row["labels"][i] for i in run] == ids
                assert ids[-1] == tok.eos_token_id
                assert tok.decode(ids) == " " + reply + tok.eos_token


def test_assistant_tokens_mask_agrees_with_encode(ns):
    tok = ns["tokenizer"]
    for d in ns["dialogs"]:
        out = tok.apply_chat_template(d["messages"], tokenize=True, return_dict=True,
                                      return_assistant_tokens_mask=True)
        row = encode(d, tok, "chat_template")
        assert row["input_ids"] == out["input_ids"]
        assert [label != -100 for label in row["labels"]] == [bool(m) for m in out["assistant_masks"]]


def test_chat_model_needs_its_own_template(ns):
    from utils.generate import complete
    from utils.templates import render_prompt

    tok, model = ns["tokenizer"], ns["chat_model"]
    q = {"messages": [{"role": "user", "content": "What is the capital of Italy?"},
                      {"role": "assistant", "content": "…"}]}
    prompt = render_prompt(q, "human_assistant", tok)
    assert tok.bos_token + prompt == tok.apply_chat_template(q["messages"][:1], tokenize=False,
                                                             add_generation_prompt=True)
    assert complete(model, tok, prompt, max_new_tokens=20).strip() == "The capital of Italy is Rome."
    for other in ("vicuna", "alpaca"):
        assert "Rome" not in complete(model, tok, render_prompt(q, other, tok), max_new_tokens=20)
