"""Real chat templates without {% generation %}: end-of-turn markers, multi-turn rows, empty system
messages, merges after earlier replies, added tokens, reasoning (Qwen3), trimmed replies, tools and
content parts -- every rule checked token by token by the independent checker in ``_contract``."""

from __future__ import annotations

import copy

import pytest

from _contract import END_OF_TURN, check_rows, supervised_runs, tokenizer_name
from conftest import load_any_tokenizer
from utils.encode import EncodeError, encode, encode_dataset, encode_prompt, encode_rows
from utils.formats import RecordError, chat_of, check_record, normalize
from utils.templates import TEMPLATES, render, render_prompt, row_segments

CHAT = ("tiny", "mistral", "qwen2", "qwen2_5", "qwen3", "llama3_1", "phi3_like", "qwen2_5_base")

# Phi-3-mini-4k-instruct's chat template (turns end with <|end|>, the EOS <|endoftext|> only closes a
# conversation), written out from the model's tokenizer_config.json
PHI3_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + "
    "'<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}")

_cache: dict = {}


def chat_tok(name: str):
    """A tokenizer with a chat template: the shared ones, a Phi-3-like one and a Qwen2.5 base one."""
    if name not in _cache:
        if name == "phi3_like":
            tok = copy.deepcopy(load_any_tokenizer("qwen2_5"))
            tok.add_special_tokens({"additional_special_tokens": ["<|end|>", "<|user|>", "<|assistant|>",
                                                                  "<|system|>"]})
            tok.eos_token = "<|endoftext|>"
            tok.chat_template = PHI3_TEMPLATE
        elif name == "qwen2_5_base":  # a base checkpoint's eos with the instruct template
            tok = copy.deepcopy(load_any_tokenizer("qwen2_5"))
            tok.eos_token = "<|endoftext|>"
        else:
            tok = load_any_tokenizer(name)
        tok.test_name = name
        _cache[name] = tok
    return _cache[name]


def conv(*pairs, system=None):
    msgs = [] if system is None else [{"role": "system", "content": system}]
    for user, reply in pairs:
        msgs += [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
    return {"messages": msgs}


REPLIES = ["Plain answer.", "\nstarts with a newline", " starts with a space", "，中文标点开头。", "😀 emoji 👍",
           "```python\nprint('hi')\n```", "第六个回答"]
CASES = {
    "one_turn": conv(("Hello", "Hi there")),
    "system": conv(("Hello", "Hi"), ("And?", "More."), system="You are terse. 请简短回答。"),
    "empty_system": conv(("Hello", "Hi"), ("And?", "\nMore."), system=""),
    **{f"turns_{n}": conv(*[(f"Question {i}? 第{i}个问题", REPLIES[i]) for i in range(n)]) for n in (2, 3, 6)},
    **{f"first_{i}": conv(("Say it.", r), ("Again?", REPLIES[(i + 1) % len(REPLIES)])) for i, r in enumerate(REPLIES)},
}


@pytest.mark.parametrize("name", CHAT)
def test_end_of_turn_marker_comes_from_the_template(name):
    tok = chat_tok(name)
    assert TEMPLATES["chat_template"].end_of_turn(tok) == END_OF_TURN[name]


@pytest.mark.parametrize("name", CHAT)
def test_contract_on_tricky_conversations(name):
    tok = chat_tok(name)
    for case, example in CASES.items():
        if name == "mistral" and "system" in case and "empty" not in case:
            # Mistral v0.3 writes the system text into the *last* user turn only: one row per reply
            assert len(row_segments(example, "chat_template", tok)) == 2
        rows = encode_rows(example, tok, "chat_template")
        try:
            check_rows(rows, example, tok, "chat_template")
        except AssertionError as e:
            raise AssertionError(f"{name} / {case}: {e}") from e


def test_phi3_supervises_end_marker_not_eos():
    tok = chat_tok("phi3_like")
    ex = CASES["turns_2"]
    row = encode(ex, tok, "chat_template")
    end = tok.convert_tokens_to_ids("<|end|>")
    runs = supervised_runs(row["labels"])
    assert len(runs) == 2 and all(row["input_ids"][e - 1] == end for _, e in runs)
    assert row["input_ids"][-1] == tok.eos_token_id and row["labels"][-1] == -100  # only because the conversation ends
    assert tok.decode(row["input_ids"]) == tok.apply_chat_template(ex["messages"], tokenize=False)


def test_qwen2_5_base_eos_is_not_the_end_of_turn():
    tok = chat_tok("qwen2_5_base")
    row = encode(conv(("Hi", "Hello!"), ("2+2?", "4"), ("Bye", "Bye!")), tok, "chat_template")
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert [row["input_ids"][e - 1] for _, e in supervised_runs(row["labels"])] == [im_end] * 3
    assert tok.eos_token_id not in row["input_ids"]


def test_empty_system_message_renders_as_apply_chat_template():
    tok = chat_tok("qwen2_5")
    ex = conv(("Hello", "Hi"), system="")
    assert chat_of(ex)[0][0] == {"role": "system", "content": ""}
    text = render(ex, "chat_template", tok)
    assert text == tok.apply_chat_template(ex["messages"], tokenize=False)
    assert text.startswith("<|im_start|>system\n<|im_end|>\n") and "You are Qwen" not in text
    assert "You are Qwen" in render(conv(("Hello", "Hi")), "chat_template", tok)
    assert check_record(ex)[1][0]["messages"][0] == {"role": "system", "content": ""}


@pytest.mark.parametrize("name", ["qwen2", "qwen2_5"])
def test_merge_after_an_earlier_reply_splits_the_record(name):
    """ChatML: "assistant\\n" + a reply starting with "\\n" merges into one token in re-tokenized history."""
    tok = chat_tok(name)
    ex = conv(("Q1", "\nfirst reply"), ("Q2", "second"), ("Q3", "\nthird"), ("Q4", "fourth"))
    rows = encode_rows(ex, tok, "chat_template")
    assert len(rows) == 3  # split after replies 1 and 3
    check_rows(rows, ex, tok, "chat_template")
    for row, k in zip(rows[1:], (1, 3)):  # the later row starts with the re-tokenized history, as inference
        msgs = ex["messages"][:2 * k + 1]
        want = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
        assert row["input_ids"][:len(want)] == want
    with pytest.raises(EncodeError, match="so this conversation gives 3 training rows"):
        encode(ex, tok, "chat_template")
    res = encode_dataset([ex, CASES["one_turn"]], tok, "chat_template")
    assert (res.records, res.rows, res.boundary_merges) == (2, 4, 2)
    assert [dict(r) for r in res.dataset] == rows + [encode(CASES["one_turn"], tok, "chat_template")]


def test_non_special_added_token_that_strips_spaces_is_refused():
    from tokenizers import AddedToken

    tok = copy.deepcopy(load_any_tokenizer("gpt2"))
    tok.add_tokens([AddedToken("</s>", rstrip=True, lstrip=True, special=False)])
    assert tok.decode(tok("a </s> b")["input_ids"]) != "a </s> b"  # the space is really lost
    ex = conv(("Hi", "end </s> here"))
    with pytest.raises(EncodeError) as err:
        encode(ex, tok, "vicuna")
    assert err.value.field == "messages[1].content"
    assert "'</s>', the text of an added token" in err.value.reason and "lstrip/rstrip" in err.value.reason
    with pytest.raises(EncodeError, match="the instruction contains '</s>'"):
        encode({"instruction": "a </s> b", "output": "x"}, tok, "alpaca")


# --- reasoning (Qwen3) ---------------------------------------------------------------------------------

REASONING = {"messages": [
    {"role": "user", "content": "2+2?"},
    {"role": "assistant", "content": "4.", "reasoning_content": "Two plus two is four."},
    {"role": "user", "content": "3+3?"},
    {"role": "assistant", "content": "6.", "reasoning_content": "Three plus three is six."}]}


@pytest.mark.parametrize("kwargs", [None, {"enable_thinking": False}])
@pytest.mark.parametrize("example", [CASES["turns_3"], REASONING], ids=["plain", "reasoning"])
def test_qwen3_one_row_per_reply_where_history_is_rewritten(example, kwargs):
    tok = chat_tok("qwen3")
    if example is REASONING and kwargs:
        with pytest.raises(EncodeError) as err:
            encode_rows(example, tok, "chat_template", chat_template_kwargs=kwargs)
        assert "reply 1 carries reasoning" in err.value.reason and "enable_thinking=False" in err.value.reason
        return
    rows = encode_rows(example, tok, "chat_template", chat_template_kwargs=kwargs)
    n = sum(m["role"] == "assistant" for m in example["messages"])
    assert len(rows) == n  # the template strips earlier reasoning / think blocks: one row per reply
    check_rows(rows, example, tok, "chat_template", chat_template_kwargs=kwargs)
    for row in rows:  # each reply exactly as the model produces it at inference
        (start, end), = supervised_runs(row["labels"])
        text = tok.decode(row["input_ids"][start:end])
        if kwargs:  # thinking off: the empty block is part of the prompt, not supervised
            assert "<think>" not in text and tok.decode(row["input_ids"][:start]).endswith("<think>\n\n</think>\n\n")
        else:
            assert text.startswith("<think>\n") and "</think>\n\n" in text
    if example is REASONING and not kwargs:
        assert "Two plus two is four." in tok.decode(rows[0]["input_ids"])
        assert "Two plus two is four." not in tok.decode(rows[1]["input_ids"])  # stripped from history, as at inference
    last = encode_prompt(example, tok, "chat_template", chat_template_kwargs=kwargs)
    assert last == tok.apply_chat_template(example["messages"][:-1], add_generation_prompt=True, tokenize=True,
                                           return_dict=True, **(kwargs or {}))["input_ids"]


def test_reasoning_in_text_templates_is_refused_with_the_true_reason():
    with pytest.raises(EncodeError) as err:
        encode(REASONING, load_any_tokenizer("tiny"), "vicuna")
    assert err.value.field == "messages[1].reasoning_content"
    assert "no place for separate reasoning" in err.value.reason


def test_chat_template_kwargs_only_for_chat_template():
    with pytest.raises(ValueError, match="chat_template_kwargs only apply to template 'chat_template'"):
        encode(CASES["one_turn"], load_any_tokenizer("tiny"), "vicuna", chat_template_kwargs={"enable_thinking": False})


# --- trimmed replies -------------------------------------------------------------------------------------


def test_llama3_trims_replies_and_counts_them():
    tok = chat_tok("llama3_1")
    ex = conv(("Hi", "  padded reply  "), ("More", "clean"))
    rows = encode_rows(ex, tok, "chat_template")
    check_rows(rows, ex, tok, "chat_template")
    (s, e), _ = supervised_runs(rows[0]["labels"])
    assert tok.decode(rows[0]["input_ids"][s:e]) == "padded reply<|eot_id|>"  # what inference renders
    res = encode_dataset([ex, CASES["one_turn"]], tok, "chat_template")
    assert res.trimmed_replies == 1 and res.as_dict()["trimmed_replies"] == 1
    assert encode_dataset([ex], chat_tok("qwen2_5"), "chat_template").trimmed_replies == 0


# --- tools and content parts ----------------------------------------------------------------------------

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                            "parameters": {"type": "object",
                                                           "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}
TOOL_CALL = {
    "tools": [WEATHER],
    "messages": [
        {"role": "system", "content": "You can call tools."},
        {"role": "user", "content": "北京天气如何？"},
        {"role": "assistant", "content": "",
         "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "北京"}'}}]},
        {"role": "tool", "content": '{"temp": 21, "sky": "sunny"}', "name": "get_weather"},
        {"role": "assistant", "content": "北京今天晴，21 度。"},
        {"role": "user", "content": "Thanks!"},
        {"role": "assistant", "content": "You're welcome."}]}


@pytest.mark.parametrize("name", ["qwen2_5", "qwen3", "llama3_1"])
def test_tool_calls_supervised_tool_results_masked(name):
    tok = chat_tok(name)
    rows = encode_rows(TOOL_CALL, tok, "chat_template")
    check_rows(rows, TOOL_CALL, tok, "chat_template")
    supervised = "".join(tok.decode([t for t, lab in zip(r["input_ids"], r["labels"]) if lab != -100]) for r in rows)
    assert "get_weather" in supervised and "北京" in supervised and "sunny" not in supervised
    assert all("sunny" in tok.decode(r["input_ids"]) for r in rows if "21 度" in tok.decode(
        [t for t, lab in zip(r["input_ids"], r["labels"]) if lab != -100]))
    assert render(TOOL_CALL, "chat_template", tok) == tok.apply_chat_template(
        chat_of(TOOL_CALL)[0], tools=[WEATHER], tokenize=False)


def test_tool_records_normalize():
    rec = check_record(TOOL_CALL)[1][0]
    assert rec["tools"] == [WEATHER]
    call = rec["messages"][2]
    assert call["tool_calls"] == [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "北京"}}}]
    assert rec["messages"][3] == {"role": "tool", "content": '{"temp": 21, "sky": "sunny"}', "name": "get_weather"}
    for bad, field, reason in [
        ({"messages": [{"role": "user", "content": "Hi"}, {"role": "tool", "content": "x"}]},
         "messages[1].role", "a tool message must follow an assistant message (its tool call)"),
        ({"messages": TOOL_CALL["messages"][:3]}, "messages[2]", "conversation ends with a tool call"),
        ({"messages": TOOL_CALL["messages"][:4]}, "messages[3]", "conversation ends with a tool result"),
        ({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "",
                                                           "tool_calls": [{"function": {"name": "f", "arguments": "{x"}}]}]},
         "messages[1].tool_calls[0].function.arguments", "not valid JSON"),
    ]:
        with pytest.raises(RecordError) as err:
            check_record(bad)
        assert err.value.field == field and reason in err.value.reason, (err.value.field, err.value.reason)


def test_text_templates_refuse_tools():
    with pytest.raises(EncodeError) as err:
        encode(TOOL_CALL, load_any_tokenizer("tiny"), "human_assistant")
    assert err.value.field == "tools" and "cannot render tool definitions" in err.value.reason
    no_tools = {"messages": TOOL_CALL["messages"]}
    with pytest.raises(EncodeError) as err:
        encode(no_tools, load_any_tokenizer("tiny"), "vicuna")
    assert err.value.field == "messages[2]" and "cannot render tool calls" in err.value.reason


def test_text_content_parts_equal_strings():
    tok = chat_tok("qwen2_5")
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hel"}, {"type": "text", "text": "lo"}]},
                          {"role": "assistant", "content": [{"type": "text", "text": "Hi there"}]}]}
    assert encode(parts, tok, "chat_template") == encode(CASES["one_turn"], tok, "chat_template")
    assert encode(parts, tok, "vicuna") == encode(CASES["one_turn"], tok, "vicuna")


@pytest.mark.parametrize("part, words", [
    ({"type": "image_url", "image_url": {"url": "x.png"}}, "multimodal content is not supported"),
    ({"type": "reasoning", "text": "hmm"}, "put reasoning text in the assistant message's 'reasoning_content'"),
    ({"type": "tool_use", "name": "f"}, "put tool calls in the assistant message's 'tool_calls'"),
])
def test_other_content_parts_are_refused_by_name(part, words):
    rec = {"messages": [{"role": "user", "content": "Hi"},
                        {"role": "assistant", "content": [{"type": "text", "text": "a"}, part]}]}
    with pytest.raises(RecordError) as err:
        check_record(rec)
    assert err.value.field == "messages[1].content[1].type"
    assert f"content part type {part['type']!r} is not supported" in err.value.reason and words in err.value.reason
    if part["type"] != "image_url":
        assert "multimodal" not in err.value.reason
    with pytest.raises(EncodeError, match="is not supported"):
        encode(rec, chat_tok("qwen2_5"), "chat_template")


# --- real data ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["qwen2_5", "qwen3", "llama3_1", "phi3_like"])
def test_real_conversations(real_data_dir, name):
    from utils.formats import iter_records

    tok = chat_tok(name)
    for file in ("fastchat_dummy_conversation.json", "llamafactory_identity.json"):
        records = list(iter_records(real_data_dir / file))[::4][:60]
        for i, ex in enumerate(records):
            rows = encode_rows(ex, tok, "chat_template")
            try:
                check_rows(rows, ex, tok, "chat_template")
            except AssertionError as e:
                raise AssertionError(f"{file} record {i * 4}: {e}") from e
    assert tokenizer_name(tok) == name


def glaive_as_messages(record: dict) -> dict:
    """LLaMA-Factory's ShareGPT tool-call record in the normalized form (written out here for the test;
    the toolkit's own conversion of ``function_call`` / ``observation`` lives in utils.formats)."""
    import json

    msgs = []
    for turn in record["conversations"]:
        role, value = turn["from"], turn["value"]
        if role == "function_call":
            msgs.append({"role": "assistant", "content": "",
                         "tool_calls": [{"type": "function", "function": json.loads(value)}]})
        elif role == "observation":
            msgs.append({"role": "tool", "content": value})
        else:
            msgs.append({"role": {"human": "user", "gpt": "assistant"}[role], "content": value})
    return {"messages": msgs, "tools": json.loads(record["tools"])}


@pytest.mark.parametrize("name", ["qwen2_5", "qwen3", "llama3_1"])
def test_real_tool_call_data(real_data_dir, name):
    import json

    tok = chat_tok(name)
    records = json.loads((real_data_dir / "llamafactory_glaive_toolcall_zh_demo.json").read_text(encoding="utf-8"))
    for i, raw in list(enumerate(records))[::10]:
        ex = glaive_as_messages(raw)
        # the toolkit's own conversion (utils.formats) gives the same conversation as the one written here
        ours = normalize(raw)
        assert ours["messages"] == ex["messages"], f"record {i}"
        rows = encode_rows(ours, tok, "chat_template")
        try:
            check_rows(rows, ours, tok, "chat_template")
        except AssertionError as e:
            raise AssertionError(f"record {i}: {e}") from e


def test_encode_dataset_keeps_records_whose_keys_differ_exactly():
    """Arrow would give every record the union of all keys: a tool call's arguments would gain the other
    call's argument names as null (and the template would render them), and a `tools` field present on
    one record only could not be written. Each row must decode to exactly what apply_chat_template renders
    for its own record."""
    from utils.encode import encode_dataset
    from utils.models import load_reference_tokenizer

    tok = load_reference_tokenizer("qwen2_5")
    tool = {"type": "function", "function": {"name": "add", "description": "add two numbers",
                                             "parameters": {"type": "object", "properties": {}}}}

    def call(args):
        return [{"role": "user", "content": "算一下"},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"type": "function", "function": {"name": "add", "arguments": args}}]},
                {"role": "tool", "content": "3"}, {"role": "assistant", "content": "结果是 3。"}]

    records = [{"messages": call({"a": 1, "b": 2}), "tools": [tool]},
               {"messages": call({"x": 5})},
               {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}]
    res = encode_dataset(records, tok, "chat_template")
    assert res.rows == 3
    for rec, ids in zip(records, res.dataset["input_ids"]):
        want = tok.apply_chat_template(rec["messages"], tools=rec.get("tools"), tokenize=False)
        assert tok.decode(ids) == want
        assert "null" not in tok.decode(ids)
