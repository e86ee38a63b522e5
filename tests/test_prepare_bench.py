"""benchmarks/prepare_bench.py's "best possible" column times the renders and the tokenizing the encoder
cannot skip: these tests check that the bench's stand-ins do exactly that work (the same render calls, the same
texts tokenized the same way), so the column stays true when the encoder changes."""

from __future__ import annotations

from collections import Counter

import pytest

from conftest import load_reference_tokenizer
from utils import encode as E
from utils.formats import iter_records
from utils.templates import ChatTemplate


@pytest.fixture(scope="module")
def conversations(real_data_dir):
    return list(iter_records(real_data_dir / "fastchat_dummy_conversation.json"))[:40]


@pytest.fixture()
def render_log(monkeypatch):
    """Every ``render(n, generation_prompt)`` call of the chat template's prefix renderers."""
    calls: list = []
    original = ChatTemplate._prefix_renderers

    def logged(self, tokenizer):
        make = original(self, tokenizer)

        def make_logged(messages, tools=None):
            render = make(messages, tools)

            def render_logged(n, generation_prompt=False):
                calls.append((tuple(m["content"] for m in messages[:n]), n, generation_prompt))
                return render(n, generation_prompt)

            return render_logged

        return make_logged

    monkeypatch.setattr(ChatTemplate, "_prefix_renderers", logged)
    return calls


@pytest.fixture()
def piece_log(monkeypatch):
    """Every text the encoder tokenizes as a whole first piece or as a continuation."""
    texts: dict = {"first": [], "cont": []}
    first, cont = E._Plan.encode_first, E._Plan.encode_cont

    def encode_first(self, batch, add_special_tokens):
        texts["first"] += batch
        return first(self, batch, add_special_tokens)

    def encode_cont(self, batch, method=None):
        if method is None:  # not the encoder's own fallback inside a call already logged
            texts["cont"] += batch
        return cont(self, batch, method)

    monkeypatch.setattr(E._Plan, "encode_first", encode_first)
    monkeypatch.setattr(E._Plan, "encode_cont", encode_cont)
    return texts


def test_floor_renders_are_the_encoders_renders(bench, conversations, render_log):
    tok = load_reference_tokenizer("qwen2")
    E.encode_batch(conversations[:2], tok, "chat_template")  # the per-tokenizer probes, rendered once
    render_log.clear()
    E.encode_batch(conversations, tok, "chat_template", all_rows=True)
    encoder = Counter(render_log)
    assert sum(encoder.values()) > 2 * len(conversations)  # multi-turn: more than a prompt and a full text each
    renders = bench.floor_parts(conversations, tok, "chat_template")["renders"]
    render_log.clear()
    renders()
    assert Counter(render_log) == encoder


@pytest.mark.parametrize("template", ["vicuna", "chat_template"])
def test_floor_pieces_are_the_encoders_pieces(bench, conversations, piece_log, template):
    tok = load_reference_tokenizer("qwen2")
    E.encode_batch(conversations[:2], tok, template)  # the per-tokenizer prompt openings, tokenized once
    piece_log["first"].clear()
    piece_log["cont"].clear()
    res = E.encode_dataset(conversations, tok, template)
    assert res.rows == len(conversations) and res.boundary_merges == 0  # no row split: one tokenizing pass
    encoder = {k: Counter(v) for k, v in piece_log.items()}
    assert sum(encoder["cont"].values()) > 2 * len(conversations)
    parts = bench.floor_parts(conversations, tok, template)
    assert ("renders" in parts) == (template == "chat_template")
    piece_log["first"].clear()
    piece_log["cont"].clear()
    parts["pieces"]()
    assert {k: Counter(v) for k, v in piece_log.items()} == encoder
