"""Scale (issue 14 §1): the length bound that drops over-long records before tokenizing, the on-disk record
locations, vectorised packing statistics and sharded output."""

from __future__ import annotations

import json
import math
import random
import unicodedata
from importlib import resources
from pathlib import Path

import datasets
import numpy as np
import pytest

from conftest import REFERENCE_TOKENIZERS, load_any_tokenizer
import utils.encode as encode_mod
from utils.cli import main
from utils.encode import LocationLog, chars_per_token_bound, encode_batch, encode_dataset
from utils.formats import iter_records
from utils.packing import pack_dataset, packing_efficiency

SAMPLES = Path(str(resources.files("utils") / "data"))
# what the bound is decided for: each reference tokenizer's expected D (None: no bound, tokenized in full)
EXPECTED = {"tiny": 11, "gpt2": 128, "llama": 16, "mistral": 18, "qwen2": 512, "qwen2_5": 512, "qwen3": 512,
            "llama3_1": 128}


def test_nfc_factor_covers_the_longest_canonical_decomposition():
    longest = max(len(unicodedata.normalize("NFD", chr(c))) for c in range(0x110000)
                  if not 0xD800 <= c < 0xE000)
    assert longest <= encode_mod._NFD_MAX
    # and NFC really shrinks by that factor: 4 code points become one
    assert len(unicodedata.normalize("NFC", "\u03b1\u0313\u0300\u0345")) == 1


@pytest.mark.parametrize("name", ("tiny",) + REFERENCE_TOKENIZERS)
def test_chars_per_token_bound_of_each_tokenizer(name):
    tok = load_any_tokenizer(name)
    assert chars_per_token_bound(encode_mod._plan(tok).backend) == EXPECTED[name]


def _adversarial_texts(rng: random.Random) -> list[str]:
    pieces = ["a", " ", "\n", "ab", "的", "😀", "e\u0301", "\u03b1\u0313\u0300\u0345", "\u1100\u1161\u11a8", "1",
              "----", "    ", "Ġ", "▁", "<0x0A>", "http://", "�"]
    texts = [p * 3000 for p in pieces]
    texts += ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 400))) for _ in range(200)]
    return texts


@pytest.mark.parametrize("name", ("tiny",) + REFERENCE_TOKENIZERS)
def test_the_bound_never_exceeds_the_real_token_count(name, real_data_dir):
    """Every text of n characters gives at least ceil(n / D) tokens: adversarial runs (long repeats, combining
    marks NFC composes, Hangul jamo, emoji) and the real data's texts."""
    tok = load_any_tokenizer(name)
    plan = encode_mod._plan(tok)
    bound = plan.chars_per_token
    texts = _adversarial_texts(random.Random(0))
    for path in sorted(real_data_dir.glob("llamafactory_alpaca_*_demo.json")):
        texts += [r["instruction"] + r["input"] + r["output"] for r in json.loads(path.read_text("utf-8"))]
    for method in ("plain", "anchor"):
        counts = [len(ids) for ids in plan.encode_cont(texts, method)]
        worst = min(c * bound / max(len(t), 1) for t, c in zip(texts, counts) if t)
        assert all(c >= math.ceil(len(t) / bound) for t, c in zip(texts, counts)), (name, method, worst)


ALPACA = [{"instruction": f"Say {i}.", "input": "", "output": "word " * (40 * i)} for i in range(12)]


@pytest.mark.parametrize("truncation", ("drop", "truncate"))
@pytest.mark.parametrize("name", ("tiny", "qwen2_5"))
def test_early_drop_gives_the_same_rows_and_counts(name, truncation, monkeypatch):
    """Rows, dropped counts and details are those of full tokenization, for records on both sides of the
    bound (max_length chosen so some records are dropped by the bound and others only after tokenizing)."""
    tok = load_any_tokenizer(name)
    records = ALPACA + [{"instruction": "x " * 9000, "input": "", "output": "y"},
                        {"instruction": "Hi", "input": "", "output": "z" * 50_000}]
    for max_length in (16, 60, 200):
        details: list = []
        rows = encode_batch(records, tok, "alpaca", max_length, truncation, details=details)
        with monkeypatch.context() as m:
            m.setattr(encode_mod._Plan, "chars_per_token", property(lambda self: None))
            full_details: list = []
            full = encode_batch(records, tok, "alpaca", max_length, truncation, details=full_details)
        assert rows == full
        assert [d[4] for d in details] == [d[4] for d in full_details]  # the same rows dropped
        assert [d[:4] for d, r in zip(details, rows) if r is not None] == \
            [d[:4] for d, r in zip(full_details, full) if r is not None]


def test_an_over_long_record_is_dropped_without_being_tokenized(monkeypatch):
    tok = load_any_tokenizer("qwen2_5")
    plan = encode_mod._plan(tok)
    seen: list[int] = []
    backend = plan.backend
    real = backend.encode_batch_fast

    class Spy:
        def __getattr__(self, name):
            return getattr(backend, name)

    spy = Spy()
    spy.encode_batch_fast = lambda texts, **kw: (seen.extend(len(t) for t in texts), real(texts, **kw))[1]
    monkeypatch.setattr(plan, "backend", spy)
    huge = {"instruction": "Repeat.", "input": "", "output": "lorem ipsum " * 200_000}  # 2.4 M characters
    details: list = []
    rows = encode_batch([{"instruction": "Hi", "output": "Hello"}, huge], tok, "alpaca", 1024, details=details)
    assert rows[0] is not None and rows[1] is None and details[1][4] == 1  # counted as dropped
    assert max(seen) < 100  # only the small record's pieces reached the tokenizer


def test_location_log_keeps_every_location_on_disk(tmp_path):
    log = LocationLog(str(tmp_path), buffer=1000)
    wheres = [f"data/part {i % 3}.jsonl:{i + 1}" if i % 5 else f"x.json:[{i}]" for i in range(10_500)]
    for w in wheres:
        log.append(w)
    assert len(log) == len(wheres) and len(log._buf) == 500  # 10,000 entries flushed to the file
    assert [log[i] for i in (0, 1, 4, 999, 1000, 7777, 10_499, -1)] == \
        [wheres[i] for i in (0, 1, 4, 999, 1000, 7777, 10_499, -1)]
    with pytest.raises(IndexError):
        log[len(wheres)]


def test_locations_of_bad_records_after_many_good_ones(tmp_path, capsys, monkeypatch):
    """FILE:LINE of the encoder's errors come back from the on-disk log (records far past the buffer)."""

    class SmallLog(LocationLog):
        def __init__(self, directory=None):
            super().__init__(directory, buffer=100)

    monkeypatch.setattr(encode_mod, "LocationLog", SmallLog)
    data = tmp_path / "d.jsonl"
    lines = [json.dumps({"instruction": f"q{i}", "output": f"a{i}"}) for i in range(3_000)]
    for i in (5, 1_234, 2_990):  # special-token text: the encoder refuses these records
        lines[i] = json.dumps({"instruction": "q", "output": "a </s> b"})
    data.write_text("\n".join(lines) + "\n")
    status = main(["prepare", str(data), "--template", "alpaca", "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert status == 1 and all(f"{data}:{i + 1}: output:" in err for i in (5, 1_234, 2_990)), err


def test_packing_efficiency_of_an_array_equals_the_list_version():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 1024, size=10_001)
    for batch in (1, 3, 8):
        assert packing_efficiency(lengths, batch) == packing_efficiency(lengths.tolist(), batch)
        assert packing_efficiency(lengths, batch, pad_to=1024) == packing_efficiency(lengths.tolist(), batch,
                                                                                      pad_to=1024)
    with pytest.raises(ValueError, match="longer than pad_to"):
        packing_efficiency(lengths, 8, pad_to=100)


def test_pack_dataset_efficiency_on_real_data(real_data_dir):
    """Packing in windows of 10,000 (bounded memory) packs the real data as densely as one window holding
    every row (the whole set best-fit at once)."""
    tok = load_any_tokenizer("qwen2_5")
    records = [r for p in sorted(real_data_dir.glob("llamafactory_alpaca_*_demo.json"))
               for r in json.loads(p.read_text("utf-8"))] * 6
    ds = encode_dataset(records, tok, "alpaca", max_length=1024).dataset
    windowed = pack_dataset(ds, 1024, window=10_000)
    whole = pack_dataset(ds, 1024, window=len(ds))
    eff = [packing_efficiency(np.array([len(r) for r in d["input_ids"]]), 8, pad_to=1024) for d in (windowed, whole)]
    assert len(ds) > 10_000 and eff[0] >= eff[1] - 0.001, eff


def test_num_shards_writes_that_many_files(tmp_path, capsys):
    out = tmp_path / "o"
    src = SAMPLES / "alpaca_samples.jsonl"
    assert main(["prepare", str(src), "--template", "alpaca", "--out", str(out), "--num-shards", "3", "--quiet"]) == 0
    assert len(list(out.glob("data-*-of-00003.arrow"))) == 3
    one = tmp_path / "one"
    assert main(["prepare", str(src), "--template", "alpaca", "--out", str(one), "--quiet"]) == 0
    assert datasets.load_from_disk(str(out)).to_dict() == datasets.load_from_disk(str(one)).to_dict()
    streamed = datasets.load_dataset("arrow", data_files=sorted(map(str, out.glob("*.arrow"))), split="train",
                                     streaming=True)
    assert [r["input_ids"] for r in streamed] == datasets.load_from_disk(str(one))["input_ids"]
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["prepare", str(src), "--template", "alpaca", "--out", str(tmp_path / "z"), "--num-shards", "0"])
    assert "--num-shards: must be at least 1, got 0" in capsys.readouterr().err
