"""utils.packing: padding and packing against transformers' collators, and packed loss == unpacked loss."""

from __future__ import annotations

import random

import pytest
import torch
from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening, LlamaConfig, LlamaForCausalLM

from utils.packing import (PackedCollator, PadCollator, causal_lm_loss, pack, pack_dataset,
                           packing_efficiency, pad_collate)


def random_rows(n: int, seed: int = 0, vocab: int = 100, min_len: int = 2, max_len: int = 20):
    """Rows shaped like encode()'s output: a masked prompt, then a supervised reply."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        length = rng.randint(min_len, max_len)
        ids = [rng.randrange(3, vocab) for _ in range(length)]
        prompt = rng.randint(1, length - 1)
        rows.append({"input_ids": ids, "attention_mask": [1] * length,
                     "labels": [-100] * prompt + ids[prompt:]})
    return rows


def segments_of(packed_row):
    """Split a packed row back into its examples, using the restarting position_ids."""
    starts = [i for i, p in enumerate(packed_row["position_ids"]) if p == 0] + [len(packed_row["input_ids"])]
    return [(packed_row["input_ids"][a:b], packed_row["labels"][a:b]) for a, b in zip(starts, starts[1:])]


# ---- padding ---------------------------------------------------------------------------------

@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("multiple", [None, 8])
def test_pad_collate_equals_data_collator_for_seq2seq(reference_tokenizer, padding_side, multiple):
    tok = reference_tokenizer
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    rows = [{"input_ids": tok(text)["input_ids"]} for text in
            ["Hello world", "A much longer sentence with several more tokens in it.", "今天天气真好", "x"]]
    for row in rows:
        row["labels"] = [-100] + row["input_ids"][1:]
        row["attention_mask"] = [1] * len(row["input_ids"])
    old_pad, old_side = tok.pad_token, tok.padding_side
    try:
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        tok.padding_side = padding_side
        expected = DataCollatorForSeq2Seq(tok, padding="longest", label_pad_token_id=-100,
                                          pad_to_multiple_of=multiple, return_tensors="pt")(
            [dict(row) for row in rows])
    finally:
        tok.pad_token, tok.padding_side = old_pad, old_side
    ours = pad_collate(rows, pad_id, padding_side=padding_side, pad_to_multiple_of=multiple)
    assert set(ours) == {"input_ids", "attention_mask", "labels"}
    for key in ours:
        assert torch.equal(ours[key], expected[key]), key


def test_attention_mask_comes_from_lengths_when_pad_is_eos():
    eos = 2
    rows = [{"input_ids": [1, 7, 8, eos], "labels": [-100, -100, 8, eos]},
            {"input_ids": [1, 9, eos], "labels": [-100, 9, eos]}]
    batch = PadCollator(pad_token_id=eos)(rows)
    assert batch["input_ids"].tolist() == [[1, 7, 8, eos], [1, 9, eos, eos]]
    # The EOS the row ends with is real: attended and supervised; only the added slot is padding.
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    assert batch["labels"].tolist() == [[-100, -100, 8, eos], [-100, 9, eos, -100]]


def test_pad_collate_rejects_bad_rows():
    with pytest.raises(ValueError, match="row 1: labels has 1 values but input_ids has 2"):
        pad_collate([{"input_ids": [1], "labels": [1]}, {"input_ids": [1, 2], "labels": [1]}], 0)
    with pytest.raises(ValueError, match="pad_token_id is None"):
        pad_collate([{"input_ids": [1]}], None)
    with pytest.raises(ValueError, match="empty"):
        pad_collate([], 0)


# ---- packing ---------------------------------------------------------------------------------

def test_pack_in_order_equals_data_collator_with_flattening():
    rows = random_rows(6, seed=1)
    total = sum(len(r["input_ids"]) for r in rows)
    (row,) = pack(rows, max_length=total, strategy="in_order")
    expected = DataCollatorWithFlattening(return_tensors="pt")([dict(r) for r in rows])
    for key in ("input_ids", "labels", "position_ids"):
        assert row[key] == expected[key][0].tolist(), key


@pytest.mark.parametrize("strategy", ["best_fit", "in_order"])
def test_pack_keeps_every_example_whole_and_isolated(strategy):
    rows = random_rows(300, seed=2, max_len=60)
    packed = pack(rows, max_length=64, strategy=strategy)
    seen = []
    for row in packed:
        assert len(row["input_ids"]) <= 64
        assert len(row["labels"]) == len(row["position_ids"]) == len(row["input_ids"])
        # Each packed row is exactly what DataCollatorWithFlattening makes of its examples.
        examples = segments_of(row)
        flat = DataCollatorWithFlattening(return_tensors="pt")(
            [{"input_ids": ids, "labels": labels} for ids, labels in examples])
        assert row["input_ids"] == flat["input_ids"][0].tolist()
        assert row["position_ids"] == flat["position_ids"][0].tolist()
        for ids, labels in examples:
            assert labels[0] == -100
            seen.append(tuple(ids))
    assert sorted(seen) == sorted(tuple(r["input_ids"]) for r in rows)
    # Each example's labels survive unchanged (its first label was already -100 here).
    by_ids = {tuple(r["input_ids"]): r["labels"] for r in rows}
    for row in packed:
        for ids, labels in segments_of(row):
            assert labels == by_ids[tuple(ids)]


def test_pack_in_order_keeps_order_and_best_fit_uses_no_more_rows():
    rows = random_rows(500, seed=3, max_len=100)
    in_order = pack(rows, 128, strategy="in_order")
    assert [ids for row in in_order for ids, _ in segments_of(row)] == [r["input_ids"] for r in rows]
    best_fit = pack(rows, 128)
    total = sum(len(r["input_ids"]) for r in rows)
    assert -(-total // 128) <= len(best_fit) <= len(in_order)


def test_pack_sets_first_label_of_each_example_to_ignore():
    rows = [{"input_ids": [5, 6, 7], "labels": [5, 6, 7]}, {"input_ids": [8, 9], "labels": [8, 9]}]
    assert pack(rows, 10, strategy="in_order") == [
        {"input_ids": [5, 6, 7, 8, 9], "labels": [-100, 6, 7, -100, 9], "position_ids": [0, 1, 2, 0, 1]}]


def test_pack_rejects_an_example_longer_than_max_length():
    rows = random_rows(5, seed=4, min_len=5, max_len=5) + [{"input_ids": [1] * 11, "labels": [1] * 11}]
    with pytest.raises(ValueError, match=r"row 5: 11 tokens do not fit in max_length=10"):
        pack(rows, 10)
    with pytest.raises(ValueError, match="strategy"):
        pack(rows[:1], 10, strategy="first_fit")


@pytest.mark.parametrize("strategy", ["best_fit", "in_order"])
@pytest.mark.parametrize("window", [7, 1000])
def test_pack_dataset_equals_pack_window_by_window(strategy, window):
    import datasets

    rows = random_rows(60, seed=8, max_len=40)
    dataset = datasets.Dataset.from_list([{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows])
    packed = pack_dataset(dataset, max_length=48, strategy=strategy, window=window)
    expected = [row for start in range(0, len(rows), window)
                for row in pack(rows[start:start + window], 48, strategy=strategy)]
    assert packed.column_names == ["input_ids", "attention_mask", "labels", "position_ids"]
    got = packed.to_list()
    assert [{k: r[k] for k in ("input_ids", "labels", "position_ids")} for r in got] == expected
    assert all(r["attention_mask"] == [1] * len(r["input_ids"]) for r in got)


def test_pack_dataset_without_labels_and_with_a_too_long_row():
    import datasets

    dataset = datasets.Dataset.from_dict({"input_ids": [[1, 2], [3, 4, 5]]})
    assert pack_dataset(dataset, 8).to_list()[0]["labels"] == [-100, 2, -100, 4, 5]
    with pytest.raises(ValueError, match="row 1: 3 tokens do not fit in max_length=2"):
        pack_dataset(dataset, 2)


def test_packed_collator_pads_as_a_separate_sequence_without_attention_mask():
    packed = pack([{"input_ids": [1, 2, 3], "labels": [-100, 2, 3]}, {"input_ids": [4], "labels": [4]}],
                  max_length=3, strategy="in_order")
    batch = PackedCollator(pad_token_id=0)(packed)
    assert "attention_mask" not in batch
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 2, 3], [-100, -100, -100]]
    assert batch["position_ids"].tolist() == [[0, 1, 2], [0, 0, 1]]


def test_packing_efficiency_counts_real_tokens_per_padded_slot():
    lengths = [10, 2, 9, 3]
    # batches (10, 2) and (9, 3): 24 real tokens in 2*10 + 2*9 = 38 slots
    assert packing_efficiency(lengths, batch_size=2) == pytest.approx(24 / 38)
    assert packing_efficiency([{"input_ids": [0] * n} for n in lengths], batch_size=2) == pytest.approx(24 / 38)
    assert packing_efficiency(lengths, batch_size=4, pad_to=16) == pytest.approx(24 / 64)
    assert packing_efficiency(pack([{"input_ids": [0] * n} for n in lengths], 12), batch_size=2) == 1.0
    with pytest.raises(ValueError, match="longer than pad_to"):
        packing_efficiency(lengths, pad_to=5)


# ---- contract rule 8: packed rows give the same loss as the same examples unpacked -----------

def tiny_llama(attn: str) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=True, attn_implementation=attn)
    model = LlamaForCausalLM(config)
    assert model.config.use_cache  # the default, and the trap
    return model


@pytest.fixture(scope="module", params=["eager", "sdpa"])
def model(request):
    return tiny_llama(request.param)


def test_packed_loss_equals_unpacked_loss(model):
    rows = random_rows(24, seed=5, max_len=30)
    model.train()  # training mode still creates a KV cache unless use_cache=False
    padded = pad_collate(rows, pad_token_id=0)
    unpacked = causal_lm_loss(model, padded)
    # the reference: the model's own loss (mean over every supervised token of the batch)
    assert unpacked.item() == pytest.approx(model(**padded, use_cache=False).loss.item(), abs=1e-6)
    packed_rows = pack(rows, max_length=64)
    assert len(packed_rows) < len(rows)
    packed = PackedCollator(pad_token_id=0)(packed_rows)
    assert causal_lm_loss(model, packed).item() == pytest.approx(unpacked.item(), abs=1e-5)
    # one example at a time, weighted by supervised tokens, gives the same mean too
    losses = [causal_lm_loss(model, pad_collate([r], 0)) for r in rows]
    weights = [sum(label != -100 for label in r["labels"][1:]) for r in rows]
    weighted = sum(loss.item() * w for loss, w in zip(losses, weights)) / sum(weights)
    assert weighted == pytest.approx(unpacked.item(), abs=1e-5)


def test_each_packed_example_sees_only_itself(model):
    rows = random_rows(5, seed=6)
    model.eval()
    (row,) = pack(rows, max_length=200, strategy="in_order")
    batch = PackedCollator(0)([row])
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[0]
        start = 0
        for r in rows:
            alone = model(input_ids=torch.tensor([r["input_ids"]]), use_cache=False).logits[0]
            assert torch.allclose(logits[start:start + len(r["input_ids"])], alone, atol=1e-5)
            start += len(r["input_ids"])


def test_use_cache_trap_is_caught_and_avoided(model):
    """With the default use_cache=True, packed examples attend to each other; causal_lm_loss avoids it."""
    rows = random_rows(8, seed=7)
    model.train()
    model.config.use_cache = True
    packed = PackedCollator(0)(pack(rows, max_length=200, strategy="in_order"))
    unpacked = causal_lm_loss(model, pad_collate(rows, 0)).item()
    trapped = model(**packed).loss.item()  # the library default: cache on, isolation silently lost
    assert abs(trapped - unpacked) > 1e-3
    assert model(**packed, use_cache=False).loss.item() == pytest.approx(unpacked, abs=1e-5)
    assert causal_lm_loss(model, packed).item() == pytest.approx(unpacked, abs=1e-5)


def test_packed_loss_on_the_shipped_causal_lm():
    from utils import models

    model = models.load_causal_lm()
    tok = models.load_tokenizer()
    texts = ["今天天气真好，我们出去看电影吧", "The chicken crossed the road.", "How are you?", "你好"]
    rows = []
    for text in texts:
        ids = tok(text)["input_ids"] + [tok.eos_token_id]
        rows.append({"input_ids": ids, "labels": [-100] * 2 + ids[2:]})
    model.train()
    unpacked = causal_lm_loss(model, pad_collate(rows, tok.pad_token_id)).item()
    packed = causal_lm_loss(model, PackedCollator(tok.pad_token_id)(pack(rows, 128))).item()
    assert packed == pytest.approx(unpacked, abs=1e-5)
