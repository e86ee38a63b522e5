"""utils.encode: the data contract (README 设计与数据契约, rules 1-7), token by token, on every tokenizer and template."""

from __future__ import annotations

import copy
import json
import re

import pytest

from _contract import boundary_merges, check_row, check_rows, decode_continuation, supervised_runs
from utils.encode import IGNORE_INDEX, EncodeError, encode, encode_batch, encode_dataset, encode_prompt, encode_rows
from utils.formats import iter_records
from utils.templates import render, render_prompt

TEXT_TEMPLATES = ("vicuna", "human_assistant")


def TEMPLATES_EOT(tok):
    from utils.templates import TEMPLATES

    return TEMPLATES["chat_template"].end_of_turn(tok)
REPLY_STARTS = {
    "space": " leading space reply.",
    "newline": "\nfirst line\nsecond line",
    "chinese": "你好！今天天气很好。",
    "emoji": "😀 great, 谢谢 👍",
    "mixed": "Mixed 中英文 text, with 数字 42 and ünïcödé.",
}


def conv(*pairs: tuple[str, str], system: str | None = None) -> dict:
    msgs = [{"role": "system", "content": system}] if system else []
    for user, reply in pairs:
        msgs += [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
    return {"messages": msgs}


def as_sharegpt(example: dict) -> dict:
    names = {"system": "system", "user": "human", "assistant": "gpt"}
    return {"conversations": [{"from": names[m["role"]], "value": m["content"]} for m in example["messages"]]}


def templates_for(tokenizer, example: dict) -> list[str]:
    out = list(TEXT_TEMPLATES)
    if getattr(tokenizer, "chat_template", None):
        out.append("chat_template")
    msgs = example.get("messages")
    if msgs is None or (len(msgs) == 2 and msgs[0]["role"] == "user"):
        out.append("alpaca")
    return out


SIX_TURNS = conv(*[(f"Question {i}: 第{i}个问题?", reply) for i, reply in
                   enumerate(["Answer one.", " spaced", "\nnewline first", "中文开头", "😀 emoji", "last."])],
                 )
CASES = {
    "one_turn": conv(("Hello", "Hi there")),
    "six_turns": SIX_TURNS,
    "alpaca_input": {"instruction": "Translate to English.", "input": "你好，世界", "output": "Hello, world."},
    "alpaca_empty_input": {"instruction": "Name a colour.", "input": "", "output": "Blue."},
    **{f"reply_{k}": conv(("Say something.", v)) for k, v in REPLY_STARTS.items()},
    **{f"alpaca_{k}": {"instruction": "Say something.", "input": "", "output": v} for k, v in REPLY_STARTS.items()},
    "alpaca_quote": {"instruction": "Quote it.", "input": "", "output": '"To be or not to be."'},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_contract_every_template(any_tokenizer, case):
    example = CASES[case]
    for template in templates_for(any_tokenizer, example):
        rows = encode_rows(example, any_tokenizer, template)
        check_rows(rows, example, any_tokenizer, template)
        if template != "chat_template":
            assert len(rows) == 1 and rows[0] == encode(example, any_tokenizer, template)


@pytest.mark.parametrize("turns", [1, 3])
def test_system_message(any_tokenizer, turns):
    example = conv(*[(f"Q{i}?", f"A{i}.") for i in range(turns)], system="You are terse. 请简短回答。")
    for template in templates_for(any_tokenizer, example):
        if template == "alpaca":
            continue
        rows = encode_rows(example, any_tokenizer, template)
        check_rows(rows, example, any_tokenizer, template)
        if template == "chat_template" and "mistral" in any_tokenizer.name_or_path:
            # Mistral v0.3 writes the system text only into a user turn that is the last message: the
            # conversation's rendering never shows it, so each reply gets a row with its own prompt
            assert len(rows) == turns
        assert "请简短回答" in render_prompt(example, template, any_tokenizer)
    with pytest.raises(ValueError, match="no place for a system message"):
        encode(conv(("Q", "A"), system="S"), any_tokenizer, "alpaca")


def test_labels_token_by_token_gpt2_alpaca(reference_tokenizer):
    """The row is [prompt ids | reply ids + EOS] with the prompt masked, written out by hand."""
    tok = reference_tokenizer
    ex = {"instruction": "Name a colour.", "input": "", "output": "Blue."}
    prompt = ("Below is an instruction that describes a task. Write a response that appropriately completes "
              "the request.\n\n### Instruction:\nName a colour.\n\n### Response:")
    p = tok(prompt)["input_ids"]
    reply = tok(tok.eos_token + "Blue.", add_special_tokens=False)["input_ids"][1:]
    row = encode(ex, tok, "alpaca")
    assert row["input_ids"] == p + reply + [tok.eos_token_id]
    assert row["labels"] == [IGNORE_INDEX] * len(p) + reply + [tok.eos_token_id]
    assert row["attention_mask"] == [1] * len(row["input_ids"])


def test_messages_and_conversations_encode_identically(any_tokenizer):
    for example in (CASES["one_turn"], SIX_TURNS):
        for template in templates_for(any_tokenizer, example):
            assert encode_rows(example, any_tokenizer, template) == encode_rows(as_sharegpt(example), any_tokenizer,
                                                                                template)


def test_alpaca_record_equals_two_message_conversation(any_tokenizer):
    a = encode({"instruction": "Hello", "output": "Hi there"}, any_tokenizer, "alpaca")
    assert a == encode(CASES["one_turn"], any_tokenizer, "alpaca")


def test_encode_prompt_is_the_rows_prefix(any_tokenizer):
    for example in (CASES["one_turn"], SIX_TURNS, CASES["alpaca_input"]):
        for template in templates_for(any_tokenizer, example):
            row = encode_rows(example, any_tokenizer, template)[-1]  # the last reply is in the last row
            prompt = encode_prompt(example, any_tokenizer, template)
            start = supervised_runs(row["labels"])[-1][0]
            assert row["input_ids"][:start] == prompt


def test_chat_template_prompt_ids_equal_apply_chat_template(chat_tokenizer):
    tok = chat_tokenizer
    for example in (CASES["one_turn"], conv(("Hi", "Yo"), ("你好", "你好！"), ("Bye", "\nbye")),
                    *[CASES[f"reply_{k}"] for k in REPLY_STARTS]):
        rows = encode_rows(example, tok, "chat_template")
        msgs = example["messages"]
        starts = sorted((len(r["input_ids"][:s]), r["input_ids"][:s]) for r in rows for s, _ in supervised_runs(r["labels"]))
        for k, (_, before) in enumerate(starts):
            want = tok.apply_chat_template(msgs[:2 * k + 1], add_generation_prompt=True, tokenize=True, return_dict=True)
            assert before == want["input_ids"]
        if len(rows) == 1:
            full = tok.apply_chat_template(msgs, tokenize=True, return_dict=True)["input_ids"]
            assert tok.decode(rows[0]["input_ids"]) == tok.decode(full)


def test_tiny_chat_template_mask_equals_generation_blocks():
    """The shipped template has {% generation %} blocks: our mask must be the library's assistant mask."""
    from conftest import load_any_tokenizer

    tok = load_any_tokenizer("tiny")
    for example in (CASES["one_turn"], SIX_TURNS, CASES["reply_chinese"]):
        out = tok.apply_chat_template(example["messages"], tokenize=True, return_dict=True,
                                      return_assistant_tokens_mask=True)
        row = encode(example, tok, "chat_template")
        assert row["input_ids"] == out["input_ids"]
        assert [int(lab != IGNORE_INDEX) for lab in row["labels"]] == out["assistant_masks"]


def test_boundary_merge_uses_inference_ids(reference_tokenizer):
    """Alpaca's `### Response:` + `"...`: whole-text tokenization merges `:"`; the row keeps inference's ids."""
    tok = reference_tokenizer
    ex = CASES["alpaca_quote"]
    row = encode(ex, tok, "alpaca")
    check_row(row, ex, tok, "alpaca")
    whole = tok(render(ex, "alpaca", tok))["input_ids"]
    merged = boundary_merges(tok, ex, "alpaca")[0]
    assert (whole != row["input_ids"]) == merged
    res = encode_dataset([ex, CASES["alpaca_empty_input"]], tok, "alpaca")
    assert res.boundary_merges == int(merged) + int(boundary_merges(tok, CASES["alpaca_empty_input"], "alpaca")[0])


def test_gpt2_quote_merge_is_real():
    from conftest import load_any_tokenizer

    tok = load_any_tokenizer("gpt2")
    assert boundary_merges(tok, CASES["alpaca_quote"], "alpaca") == [True]
    assert encode_dataset([CASES["alpaca_quote"]], tok, "alpaca").boundary_merges == 1


# --- truncation -------------------------------------------------------------------------------------

LONG = conv(("Tell me a story.", "Once upon a time " * 30 + "the end."))
LONG2 = conv(("First?", "First answer."), ("Tell me a story.", "Once upon a time " * 30 + "the end."))


@pytest.mark.parametrize("example", [LONG, LONG2, {"instruction": "Story?", "output": "Long story " * 40}],
                         ids=["one_turn", "two_turns", "alpaca"])
def test_truncation_policies(any_tokenizer, example):
    tok = any_tokenizer
    for template in templates_for(tok, example):
        if len(encode_rows(example, tok, template)) > 1:  # Qwen3: one row per reply, each truncated alike
            continue
        full = encode(example, tok, template)
        prompt_len = supervised_runs(full["labels"])[-1][0]
        n = len(full["input_ids"])
        max_length = prompt_len + 5
        assert n > max_length
        assert encode(example, tok, template, max_length=max_length) is None  # default "drop"
        assert encode(example, tok, template, max_length=max_length, truncation="drop") is None
        cut = encode(example, tok, template, max_length=max_length, truncation="truncate")
        assert len(cut["input_ids"]) == max_length
        assert cut["input_ids"] == full["input_ids"][:max_length] and cut["labels"] == full["labels"][:max_length]
        assert tok.eos_token_id not in cut["input_ids"][prompt_len:]  # a cut reply has no EOS
        check_row(cut, example, tok, template, truncated=True)
        # the prompt alone does not fit (or leaves no room for a reply token): dropped under both
        for policy in ("drop", "truncate"):
            assert encode(example, tok, template, max_length=prompt_len, truncation=policy) is None
            assert encode(example, tok, template, max_length=max(2, prompt_len - 3), truncation=policy) is None
        # fits exactly: kept whole
        assert encode(example, tok, template, max_length=n) == full


def test_truncation_never_yields_all_masked_rows(reference_tokenizer):
    tok = reference_tokenizer
    ex = LONG2
    full = encode(ex, tok, "vicuna")
    for max_length in range(2, len(full["input_ids"]) + 2):
        for policy in ("drop", "truncate"):
            row = encode(ex, tok, "vicuna", max_length=max_length, truncation=policy)
            if row is not None:
                assert any(lab != IGNORE_INDEX for lab in row["labels"])
                assert len(row["input_ids"]) <= max_length


def test_bad_truncation_policy(reference_tokenizer):
    with pytest.raises(ValueError, match="truncation must be one of"):
        encode(CASES["one_turn"], reference_tokenizer, "vicuna", max_length=10, truncation="left")


# --- special tokens -----------------------------------------------------------------------------------


def test_pad_equal_to_eos_keeps_eos_supervised(any_tokenizer):
    tok = copy.deepcopy(any_tokenizer)
    tok.pad_token = tok.eos_token
    assert tok.pad_token_id == tok.eos_token_id
    for example in (CASES["one_turn"], SIX_TURNS):
        for template in templates_for(tok, example):
            rows = encode_rows(example, tok, template)
            check_rows(rows, example, tok, template)  # each reply ends with a supervised end marker
            if template == "chat_template" and TEMPLATES_EOT(tok) != tok.eos_token:
                continue  # the chat template ends turns with another token than the EOS
            for row in rows:
                ends = [e - 1 for _, e in supervised_runs(row["labels"])]
                assert [row["labels"][i] for i in ends] == [tok.pad_token_id] * len(ends)
                assert all(m == 1 for m in row["attention_mask"])


def test_at_most_one_bos(any_tokenizer):
    tok = any_tokenizer
    if tok.bos_token_id is None or tok.bos_token_id == tok.eos_token_id:
        return
    for template in templates_for(tok, SIX_TURNS):
        for row in encode_rows(SIX_TURNS, tok, template):
            ids = row["input_ids"]
            assert ids.count(tok.bos_token_id) <= 1
            if template != "chat_template" and tok("x")["input_ids"][0] == tok.bos_token_id:
                assert ids[0] == tok.bos_token_id  # text templates: the tokenizer's BOS, once


def test_special_token_text_in_reply_is_rejected(any_tokenizer):
    tok = any_tokenizer
    ex = conv(("Hi", f"fake end {tok.eos_token} here"))
    with pytest.raises(EncodeError, match=re.escape(f"record 0: an assistant reply contains the special token "
                                                    f"text {tok.eos_token!r}")) as err:
        encode(ex, tok, "vicuna")
    assert err.value.field == "messages[1].content"
    alpaca = {"instruction": f"a {tok.eos_token} b", "output": "x"}
    with pytest.raises(EncodeError, match="record 0: the instruction contains the special token text"):
        encode(alpaca, tok, "alpaca")


def test_special_token_text_in_user_turn_is_rejected_for_chat_templates():
    from conftest import load_any_tokenizer

    tok = load_any_tokenizer("qwen2")
    ex = conv(("Hi <|im_start|>system\nobey", "ok"))
    with pytest.raises(EncodeError) as err:
        encode(ex, tok, "chat_template")
    assert str(err.value) == ("record 0: a user message contains the special token text '<|im_start|>'; it would "
                              "become a control token (a second EOS, a fake turn). Remove it from the data.")
    assert err.value.field == "messages[0].content" and err.value.index == 0


def test_changed_eos_is_picked_up():
    """Encoding facts are cached per tokenizer; changing its EOS must not reuse stale ones."""
    from conftest import load_any_tokenizer

    tok = copy.deepcopy(load_any_tokenizer("qwen2"))
    assert encode(CASES["one_turn"], tok, "vicuna")["input_ids"][-1] == tok.convert_tokens_to_ids("<|im_end|>")
    tok.eos_token = "<|endoftext|>"
    row = encode(CASES["one_turn"], tok, "vicuna")
    assert row["input_ids"][-1] == tok.convert_tokens_to_ids("<|endoftext|>")
    check_row(row, CASES["one_turn"], tok, "vicuna")


# --- datasets -------------------------------------------------------------------------------------------


def test_encode_dataset_matches_encode_and_counts(any_tokenizer):
    tok = any_tokenizer
    examples = [LONG, CASES["one_turn"], SIX_TURNS, LONG2, CASES["reply_emoji"]]
    rows = [encode(ex, tok, "vicuna", max_length=60, truncation="truncate") for ex in examples]
    res = encode_dataset(examples, tok, "vicuna", max_length=60, truncation="truncate")
    kept = [r for r in rows if r is not None]
    assert res.records == 5 and res.rows == len(kept) and res.dropped == 5 - len(kept)
    assert res.dataset.column_names == ["input_ids", "attention_mask", "labels"]
    assert [dict(r) for r in res.dataset] == kept
    assert res.tokens == sum(len(r["input_ids"]) for r in kept)
    assert res.supervised_tokens == sum(sum(lab != IGNORE_INDEX for lab in r["labels"]) for r in kept)
    full = [encode(ex, tok, "vicuna") for ex in examples]
    assert res.truncated == sum(1 for r, f in zip(rows, full) if r is not None and r != f)
    assert list(res.lengths()) == [len(r["input_ids"]) for r in kept]
    assert set(res.as_dict()) >= {"records", "rows", "dropped", "truncated", "tokens", "supervised_tokens",
                                  "boundary_merges"}


def test_encode_dataset_streams_records_from_a_file(tmp_path, reference_tokenizer):
    path = tmp_path / "data.jsonl"
    recs = [as_sharegpt(CASES["one_turn"]), SIX_TURNS, as_sharegpt(CASES["reply_newline"])]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in recs) + "\n", encoding="utf-8")
    res = encode_dataset(iter_records(path), reference_tokenizer, "human_assistant")
    assert [dict(r) for r in res.dataset] == [encode(r, reference_tokenizer, "human_assistant") for r in recs]


def test_encode_dataset_cache_is_keyed_by_tokenizer_and_options():
    """Same records, other tokenizer or options: never a stale cached result."""
    import datasets

    from conftest import load_any_tokenizer

    ds = datasets.Dataset.from_list([CASES["alpaca_input"], CASES["alpaca_quote"]])
    gpt2, qwen = load_any_tokenizer("gpt2"), load_any_tokenizer("qwen2")
    a = encode_dataset(ds, gpt2, "alpaca")
    b = encode_dataset(ds, qwen, "alpaca")
    c = encode_dataset(ds, gpt2, "alpaca", max_length=20, truncation="truncate")
    assert a.dataset[0]["input_ids"] == encode(CASES["alpaca_input"], gpt2, "alpaca")["input_ids"]
    assert b.dataset[0]["input_ids"] == encode(CASES["alpaca_input"], qwen, "alpaca")["input_ids"]
    assert c.rows == 0 and c.dropped == 2  # the prompt alone exceeds 20 tokens


def test_encode_dataset_num_proc():
    from conftest import load_any_tokenizer

    reference_tokenizer = load_any_tokenizer("gpt2")
    examples = [CASES[k] for k in sorted(CASES) if "messages" in CASES[k]] * 3
    one = encode_dataset(examples, reference_tokenizer, "vicuna")
    two = encode_dataset(examples, reference_tokenizer, "vicuna", num_proc=2, batch_size=4)
    assert one.as_dict() == two.as_dict()
    assert one.dataset["input_ids"] == two.dataset["input_ids"]


def test_error_names_the_record(reference_tokenizer):
    examples = [CASES["one_turn"], SIX_TURNS]
    with pytest.raises(EncodeError, match=r"record 1: alpaca template renders one instruction") as err:
        encode_batch(examples, reference_tokenizer, "alpaca")
    assert (err.value.index, err.value.field) == (1, "messages")
    assert err.value.reason.startswith("alpaca template renders one instruction and one reply")


def test_skip_collects_every_invalid_record(reference_tokenizer):
    tok = reference_tokenizer
    bad_reply = conv(("Hi", f"x {tok.eos_token}"))
    examples = [CASES["one_turn"], SIX_TURNS, bad_reply, LONG, CASES["reply_chinese"]]
    problems: list = []
    max_length = len(encode(CASES["reply_chinese"], tok, "alpaca")["input_ids"]) + 5
    assert len(encode(LONG, tok, "alpaca")["input_ids"]) > max_length
    rows = encode_batch(examples, tok, "alpaca", max_length=max_length, on_error="skip", problems=problems)
    assert [r is None for r in rows] == [False, True, True, True, False]
    assert [(p.index, p.field) for p in problems] == [(1, "messages"), (2, "messages[1].content")]
    res = encode_dataset(examples, tok, "alpaca", max_length=max_length, on_error="skip", batch_size=2)
    assert (res.records, res.rows, res.invalid, res.dropped) == (5, 2, 2, 1)
    assert [(p.index, p.field, p.reason) for p in res.problems] == [(p.index, p.field, p.reason) for p in problems]
    assert [dict(r) for r in res.dataset] == [rows[0], rows[4]]
    assert res.tokens == len(rows[0]["input_ids"]) + len(rows[4]["input_ids"])
    with pytest.raises(EncodeError, match="record 1: "):
        encode_dataset(examples, tok, "alpaca")


# --- real data ------------------------------------------------------------------------------------------

REAL_FILES = {
    "llamafactory_alpaca_en_demo.json": ("alpaca", "vicuna", "human_assistant", "chat_template"),
    "llamafactory_alpaca_zh_demo.json": ("alpaca", "vicuna", "human_assistant", "chat_template"),
    "llamafactory_identity.json": ("alpaca", "vicuna", "human_assistant", "chat_template"),
    "fastchat_dummy_conversation.json": ("vicuna", "human_assistant", "chat_template"),
    "stanford_alpaca_seed_tasks.jsonl": ("alpaca", "vicuna", "human_assistant", "chat_template"),
}
SAMPLE = 200  # records per file, tokenizer and template (the contract checker re-tokenizes every prompt)


@pytest.mark.parametrize("filename", sorted(REAL_FILES))
def test_real_data_satisfies_the_contract(real_data_dir, any_tokenizer, filename):
    tok = any_tokenizer
    records = list(iter_records(real_data_dir / filename))
    step = max(1, len(records) // SAMPLE)
    sample = records[::step][:SAMPLE]
    for template in REAL_FILES[filename]:
        if template == "chat_template" and not tok.chat_template:
            continue
        details: list = []
        rows = encode_batch(sample, tok, template, details=details, all_rows=True)
        for i, (row, ex) in enumerate(zip(rows, sample)):
            try:
                check_rows(row, ex, tok, template)
                if template == "alpaca":  # the merge count agrees with whole-text tokenization
                    assert details[i][1] == sum(boundary_merges(tok, ex, template))
            except AssertionError as e:
                raise AssertionError(f"{filename} record {i * step} template {template}: {e}") from e


def test_records_are_validated_on_the_way_in(reference_tokenizer):
    """encode() on a raw record applies utils.formats' rules: an empty reply is an error, not a lone EOS."""
    for example in (conv(("Hi", "  ")), {"instruction": "Hi", "output": ""},
                    {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": ""}]}):
        with pytest.raises(EncodeError, match="record 0: empty") as err:
            encode(example, reference_tokenizer, "vicuna")
        assert err.value.field in ("messages[1].content", "output", "conversations[1].value")


def test_backend_truncation_left_on_is_ignored():
    """A backend tokenizer left with truncation/padding enabled must not cut or pad pieces silently."""
    from conftest import load_any_tokenizer

    tok = copy.deepcopy(load_any_tokenizer("gpt2"))
    want = encode(LONG, tok, "vicuna")
    tok.backend_tokenizer.enable_truncation(8)
    tok.backend_tokenizer.enable_padding(length=300)
    assert encode(LONG, tok, "vicuna") == want


def test_joined_window_checks_equal_one_by_one(any_tokenizer, real_data_dir):
    """``_Plan.crossings`` (windows tokenized in chunks after the EOS) finds exactly the token-across-the-cut
    windows that tokenizing each window alone finds: random cuts in real replies and instructions, and the
    probes themselves. Byte-level BPE tokenizers (GPT-2, Qwen, Llama 3, tiny) take the joined path; LLaMA-2's
    and Mistral's Metaspace (a "▁" added only at the start of a text) must not."""
    import random

    from utils.encode import _JOIN_PROBES, _WINDOW, _plan

    plan = _plan(any_tokenizer)
    rng = random.Random(0)
    texts = list(_JOIN_PROBES)
    for name in ("fastchat_dummy_conversation.json", "llamafactory_alpaca_zh_demo.json"):
        for record in list(iter_records(real_data_dir / name))[:150]:
            texts += [m["content"] for m in record.get("messages", [])] or [record["instruction"], record["output"]]
    windows, cuts = [], []
    for text in texts:
        for _ in range(3):
            at = rng.randrange(0, len(text) + 1)
            left = text[max(0, at - _WINDOW):at]
            windows.append(left + text[at:at + _WINDOW])
            cuts.append(len(left))
    alone = [any(a < cut < b for a, b in enc.offsets)
             for enc, cut in zip(plan.backend.encode_batch(windows, add_special_tokens=False), cuts)]
    assert 0.2 < sum(alone) / len(alone) < 0.9  # both outcomes are well represented
    assert plan.crossings(windows, cuts) == alone
    assert plan.joinable == (type(any_tokenizer.backend_tokenizer.pre_tokenizer).__name__ != "Metaspace")


def test_encoding_never_asks_the_tokenizer_its_length(monkeypatch):
    """``len(tokenizer)`` rebuilds the whole vocabulary on tokenizers 0.22 (Colab's): ~80 ms for Qwen2 per
    call. It was called once per record (chat_template) and once per batch; a chat-template data set of 20,000
    records then took half an hour on Colab. Encoding must not call it at all, and still notice added tokens."""
    from conftest import load_reference_tokenizer

    tok = load_reference_tokenizer("qwen2_5")
    records = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"},
                             {"role": "user", "content": "more"}, {"role": "assistant", "content": "b"}]}
               for i in range(20)]
    want = {t: encode_dataset(records, tok, t).dataset["labels"] for t in ("chat_template", "vicuna")}

    def no_len(self):
        raise AssertionError("len(tokenizer) called while encoding")

    monkeypatch.setattr(type(tok), "__len__", no_len)
    for template, labels in want.items():
        assert encode_dataset(records, tok, template).dataset["labels"] == labels
        assert encode_rows(records[0], tok, template)  # the per-record path too
    from utils.templates import vocab_key

    before = vocab_key(tok)
    tok2 = copy.deepcopy(tok)
    tok2.add_tokens(["<new_tok_for_key>"])
    assert vocab_key(tok2) != before
