"""utils.pretrain and pack(strategy="wrapped"): pretraining text round-trips, every token kept and supervised."""

from __future__ import annotations

import json

import pytest
import torch

from utils.formats import iter_records
from utils.packing import iter_wrapped, pack
from utils.pretrain import document_ids, prepare_pretrain

DOCS = ["今天天气真好，我们出去看电影吧。", "Hello world. 😀 A second, longer document " * 6, "短。", "x = 1\n\n\ty = 2\n"]


def expected_stream(tok, docs):
    """Each document as the tokenizer encodes it alone, then EOS -- computed here, not by the code under test."""
    ids, starts = [], []
    for doc in docs:
        starts.append(len(ids))
        ids += tok(doc)["input_ids"] + [tok.eos_token_id]
    return ids, starts


@pytest.mark.parametrize("max_length", [7, 16, 64])
def test_blocks_round_trip_every_token(any_tokenizer, max_length):
    tok = any_tokenizer
    want, _ = expected_stream(tok, DOCS)
    res = prepare_pretrain([{"text": d} for d in DOCS], tok, max_length)
    blocks = res.dataset.to_dict()
    got = [t for b in blocks["input_ids"] for t in b]
    assert got == want  # no token lost, none added, in order
    assert blocks["labels"] == blocks["input_ids"]  # every token supervised
    assert all(m == [1] * len(b) for m, b in zip(blocks["attention_mask"], blocks["input_ids"]))
    assert [len(b) for b in blocks["input_ids"][:-1]] == [max_length] * (res.blocks - 1)
    assert (res.documents, res.tokens, res.blocks) == (len(DOCS), len(want), -(-len(want) // max_length))
    assert res.last_block_tokens == len(want) - (res.blocks - 1) * max_length and res.dropped_tokens == 0
    # decoding the blocks gives back the documents, each followed by EOS (after the tokenizer's BOS, if any)
    bos = tok.bos_token if tok("x")["input_ids"][0] == tok.bos_token_id else ""
    text = tok.decode(got)
    assert text.replace(" ", "") == "".join(bos + d + tok.eos_token for d in DOCS).replace(" ", "")
    if not bos:  # byte-level tokenizers without BOS decode exactly
        assert text == "".join(d + tok.eos_token for d in DOCS)


def test_remainder_drop_counts_what_is_dropped(tok):
    want, _ = expected_stream(tok, DOCS)
    res = prepare_pretrain(DOCS, tok, 16, remainder="drop")
    got = [t for b in res.dataset["input_ids"] for t in b]
    assert res.blocks == len(want) // 16 and res.dropped_tokens == len(want) % 16 > 0
    assert got == want[:res.blocks * 16] and res.tokens == len(got) + res.dropped_tokens


def test_positions_restart_at_document_starts_only_when_asked(tok):
    want, starts = expected_stream(tok, DOCS)
    plain = prepare_pretrain(DOCS, tok, 16).dataset["position_ids"]
    assert all(p == list(range(len(p))) for p in plain)
    restarted = prepare_pretrain(DOCS, tok, 16, restart_positions=True).dataset["position_ids"]
    flat = [p for block in restarted for p in block]
    for i, p in enumerate(flat):
        block_start = i % 16 == 0
        assert p == (0 if i in starts or block_start else flat[i - 1] + 1)


def test_restarted_positions_isolate_documents():
    """With restarts and no KV cache, a document in a block gets the logits it gets alone."""
    from utils.models import load_causal_lm, load_tokenizer

    tok, model = load_tokenizer(), load_causal_lm()
    docs = ["今天天气真好。", "我们去公园散步吧。"]
    (block,) = list(iter_wrapped(({"input_ids": ids} for ids in document_ids(docs, tok)), 64, restart_positions=True))
    n = len(tok(docs[0])["input_ids"]) + 1
    with torch.no_grad():
        packed = model(input_ids=torch.tensor([block["input_ids"]]), position_ids=torch.tensor([block["position_ids"]]),
                       use_cache=False).logits[0]
        alone = model(input_ids=torch.tensor([block["input_ids"][n:]]), use_cache=False).logits[0]
        joined = model(input_ids=torch.tensor([block["input_ids"]]), use_cache=False).logits[0]
    assert torch.allclose(packed[n:], alone, atol=1e-5)
    assert not torch.allclose(joined[n:], alone, atol=1e-3)  # without restarts the second document sees the first


def test_pack_wrapped_is_iter_wrapped_and_options_are_checked():
    rows = [{"input_ids": [1, 2, 3]}, {"input_ids": [4, 5, 6, 7], "labels": [-100, 5, 6, 7]}, {"input_ids": [8]}]
    assert pack(rows, 3, strategy="wrapped") == list(iter_wrapped(rows, 3)) == [
        {"input_ids": [1, 2, 3], "labels": [1, 2, 3], "position_ids": [0, 1, 2]},
        {"input_ids": [4, 5, 6], "labels": [-100, 5, 6], "position_ids": [0, 1, 2]},
        {"input_ids": [7, 8], "labels": [7, 8], "position_ids": [0, 1]}]
    counts: dict = {}
    assert len(list(iter_wrapped(rows, 3, remainder="drop", counts=counts))) == 2
    assert counts == {"documents": 3, "tokens": 8, "blocks": 2, "dropped_tokens": 2}
    with pytest.raises(ValueError, match="apply to strategy='wrapped' only"):
        pack(rows, 8, restart_positions=True)
    with pytest.raises(ValueError, match="remainder must be"):
        pack(rows, 8, strategy="wrapped", remainder="pad")


def test_special_token_text_is_refused(tok):
    with pytest.raises(ValueError, match=r"document 1: contains the special token text '</s>'"):
        prepare_pretrain(["ok", "a </s> b"], tok, 8)
    res = prepare_pretrain(["ok", "a </s> b", "fine"], tok, 8, on_error="skip")
    assert (res.documents, res.invalid) == (2, 1) and res.problems[0][0] == 1


def test_txt_and_jsonl_files(tmp_path, tok):
    (tmp_path / "a.txt").write_text(DOCS[0] + "\n\n" + DOCS[2], encoding="utf-8")
    (tmp_path / "b.jsonl").write_text("".join(json.dumps({"text": d, "id": i}) + "\n" for i, d in enumerate(DOCS)),
                                      encoding="utf-8")
    one = prepare_pretrain(iter_records(tmp_path / "a.txt", kind="pretrain"), tok, 32)
    assert one.documents == 1  # a .txt file is one document, its blank lines included
    assert tok.decode([t for b in one.dataset["input_ids"] for t in b]) == f"<s>{DOCS[0]}\n\n{DOCS[2]}</s>"
    many = prepare_pretrain(iter_records(tmp_path / "b.jsonl", kind="pretrain"), tok, 32)
    assert many.documents == len(DOCS) and many.tokens == len(expected_stream(tok, DOCS)[0])
