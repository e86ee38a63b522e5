"""utils.formats: record kinds (sft / preference / kto / pretrain) and the real forms beyond Alpaca/ShareGPT.

Fields that change a record's meaning are used or refused with the reason, never ignored: LLaMA-Factory
``system`` / ``history`` / ``tools`` columns, ShareGPT ``function_call`` / ``observation`` roles, Firefly
conversations, TRL and LLaMA-Factory preference and KTO records, plain text.
"""

from __future__ import annotations

import json

import pytest

from utils.formats import (RecordError, check_record, detect_kind, file_kind, iter_records, normalize,
                           read_records, to_messages, validate_file)


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def user(text):
    return {"role": "user", "content": text}


def bot(text):
    return {"role": "assistant", "content": text}


def system(text):
    return {"role": "system", "content": text}


# ---- SFT: LLaMA-Factory Alpaca columns, Firefly ----------------------------------------------------

def test_alpaca_system_and_history_become_the_conversation_form():
    rec = {"instruction": "And 3+3?", "input": "", "output": "6", "system": "Be brief.",
           "history": [["1+1?", "2"], ["2+2?", "4"]]}
    assert normalize(rec) == {"messages": [system("Be brief."), user("1+1?"), bot("2"), user("2+2?"), bot("4"),
                                           user("And 3+3?"), bot("6")]}
    # input joined to the instruction with "\n", as LLaMA-Factory does; empty columns change nothing
    assert normalize({"instruction": "Translate", "input": "你好", "output": "Hello", "history": [["Hi", "Yo"]]}) == {
        "messages": [user("Hi"), bot("Yo"), user("Translate\n你好"), bot("Hello")]}
    plain = {"instruction": "Hi", "input": "", "output": "Hello"}
    assert normalize({**plain, "system": "", "history": []}) == plain


@pytest.mark.parametrize("record, reason", [
    ({"instruction": "Q", "output": "A", "history": "x"}, "history: expected an array of [user, assistant] pairs, got string"),
    ({"instruction": "Q", "output": "A", "history": [["a"]]}, "history[0]: expected a [user, assistant] pair, got 1 items"),
    ({"instruction": "Q", "output": "A", "history": [["a", ""]]}, "history[0][1]: empty (assistant text)"),
    ({"instruction": "Q", "output": "A", "history": [["a", 3]]}, "history[0][1]: expected a string (assistant text), got number"),
    ({"instruction": "Q", "output": "A", "system": 1}, "system: expected a string, got number"),
    ({"instruction": "Q", "output": "A", "images": ["a.png"]},
     "images: multimodal input (images) is not supported: the text would be trained without what it refers to; "
     "remove the field (or the record)"),
])
def test_alpaca_columns_are_checked(record, reason):
    with pytest.raises(RecordError) as err:
        check_record(record)
    assert str(err.value) == reason


def test_firefly_conversation():
    rec = {"conversation_id": 7, "category": "Brainstorming",
           "conversation": [{"human": "你好", "assistant": "你好！"}, {"human": "再见", "assistant": "再见。"}]}
    assert normalize(rec) == {"messages": [user("你好"), bot("你好！"), user("再见"), bot("再见。")]}
    assert normalize({**rec, "system": "S"})["messages"][0] == system("S")
    with pytest.raises(RecordError, match=r"^conversation\[1\]\.assistant: missing$"):
        check_record({"conversation": [{"human": "a", "assistant": "b"}, {"human": "c"}]})


def test_system_column_beside_a_conversation():
    conv = [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yo"}]
    assert normalize({"conversations": conv, "system": "S"})["messages"][0] == system("S")
    with pytest.raises(RecordError) as err:
        check_record({"conversations": [{"from": "system", "value": "A"}] + conv, "system": "B"})
    assert str(err.value) == "system: two different system texts (the 'system' field and conversations[0]); keep one"


def test_trl_prompt_completion_is_sft():
    assert normalize({"prompt": "2+2?", "completion": "4"}) == {"messages": [user("2+2?"), bot("4")]}
    conv = {"prompt": [system("S"), user("2+2?")], "completion": [bot("4")]}
    assert normalize(conv) == {"messages": [system("S"), user("2+2?"), bot("4")]}


# ---- kinds: nothing of another kind is trained as SFT ---------------------------------------------

KIND_CASES = [
    ({"prompt": "2+2?", "completion": "5", "label": False}, "kto",
     "label: a KTO record (label false: an undesirable answer) given to the sft path: trained as an SFT example, "
     "an undesirable answer would be learned like a good one; prepare it with --kind kto (utils.preference)"),
    ({"messages": [user("2+2?"), bot("5")], "label": False}, "kto", None),  # LLaMA-Factory's KTO form
    ({"instruction": "2+2?", "output": "5", "kto_tag": False}, "kto", None),
    ({"prompt": "2+2?", "chosen": "4", "rejected": "5"}, "preference",
     "chosen: a preference record (a chosen and a rejected answer to one prompt) given to the sft path: trained as "
     "an SFT example, which answer is preferred would be ignored (or the rejected one learned); prepare it with "
     "--kind preference (utils.preference)"),
    ({"conversations": [{"from": "human", "value": "2+2?"}], "chosen": {"from": "gpt", "value": "4"},
      "rejected": {"from": "gpt", "value": "5"}}, "preference", None),
    ({"instruction": "2+2?", "chosen": "4", "rejected": "5"}, "preference", None),
    ({"text": "Once upon a time"}, "pretrain",
     "text: a plain-text record (pretraining text) given to the sft path: it has no prompt and no reply; prepare "
     "it with --kind pretrain (utils.pretrain)"),
    ({"instruction": "Q", "output": "A", "label": "spam"}, "sft", None),  # a non-boolean label is no KTO label
]


@pytest.mark.parametrize("record, kind, reason", KIND_CASES)
def test_records_of_another_kind_are_refused_by_the_sft_path(record, kind, reason):
    assert detect_kind(record) == kind
    if kind == "sft":
        check_record(record)
        return
    with pytest.raises(RecordError) as err:
        check_record(record)
    if reason:
        assert str(err.value) == reason
    assert "--kind " + kind in str(err.value)
    check_record(record, kind)  # ... and accepted by their own path


def test_sft_record_refused_by_the_preference_and_kto_paths():
    rec = {"instruction": "Q", "output": "A"}
    with pytest.raises(RecordError) as err:
        check_record(rec, "preference")
    assert str(err.value).startswith("record: an SFT example (instruction or conversation, no chosen/rejected/label "
                                     "fields) given to the preference path: a preference record needs a prompt with "
                                     "'chosen' and 'rejected' answers; prepare it with --kind sft")
    with pytest.raises(RecordError, match=r"^record: .* given to the kto path: a KTO record needs a completion"):
        check_record(rec, "kto")


def test_kind_auto_and_a_mix_in_one_file(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "a", "chosen": "b", "rejected": "c"},
                                              {"prompt": "a", "completion": "b", "label": True}])
    assert file_kind(path) == "preference"
    with pytest.raises(RecordError) as err:
        read_records(path, kind=None)
    assert str(err.value) == (f"{path}:2: record: a kto record in a file of preference records (the kind of its "
                              "first record, read from the keys); use one kind per file")
    problems = validate_file(path)  # default kind sft: both refused, each with its reason
    assert [p.field for p in problems] == ["chosen", "label"]


def test_txt_file_is_one_pretraining_document(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text("第一段。\n\n第二段。\n", encoding="utf-8")
    assert read_records(path, kind="pretrain") == [{"text": "第一段。\n\n第二段。\n"}]
    with pytest.raises(RecordError, match=r"book.txt:1: text: a plain-text record .* --kind pretrain"):
        read_records(path)
    (tmp_path / "empty.txt").write_text(" \n")
    with pytest.raises(RecordError, match=r"empty.txt:1: text: empty$"):
        read_records(tmp_path / "empty.txt", kind="pretrain")


def test_parquet_input(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"instruction": "Hi", "input": "", "output": "Hello", "history": None},
            {"instruction": "Q2", "input": "x", "output": "A2", "history": [["Q1", "A1"]]},
            {"instruction": "Q3", "input": "", "output": "", "history": None}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    problems: list = []
    got = list(iter_records(tmp_path / "d.parquet", on_error="skip", problems=problems, with_location=True))
    assert got == [(f"{tmp_path / 'd.parquet'}:[0]", {"instruction": "Hi", "input": "", "output": "Hello"}),
                   (f"{tmp_path / 'd.parquet'}:[1]", {"messages": [user("Q1"), bot("A1"), user("Q2\nx"), bot("A2")]})]
    assert [str(p) for p in problems] == [f"{tmp_path / 'd.parquet'}:[2]: output: empty"]


# ---- tool calls: LLaMA-Factory ShareGPT roles and OpenAI messages -> one form ------------------------

TOOLS = [{"name": "add", "description": "Add two numbers",
          "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}}]
TOOL_CALL = {"type": "function", "function": {"name": "add", "arguments": {"a": 1, "b": 2}}}
TOOL_CONVERSATION = {"messages": [user("1+2?"), {"role": "assistant", "content": "", "tool_calls": [TOOL_CALL]},
                                  {"role": "tool", "content": "3"}, bot("3.")],
                     "tools": [{"type": "function", "function": TOOLS[0]}]}


def test_sharegpt_function_call_and_observation():
    rec = {"conversations": [{"from": "human", "value": "1+2?"},
                             {"from": "function_call", "value": '{"name": "add", "arguments": {"a": 1, "b": 2}}'},
                             {"from": "observation", "value": "3"}, {"from": "gpt", "value": "3."}],
           "tools": json.dumps(TOOLS)}
    assert normalize(rec) == TOOL_CONVERSATION
    assert normalize(TOOL_CONVERSATION) == TOOL_CONVERSATION  # the normalized form is a valid record
    assert to_messages(rec) == TOOL_CONVERSATION["messages"]
    # an empty tools list is no tools
    plain = {"conversations": rec["conversations"][:1] + [{"from": "gpt", "value": "3"}], "tools": "[]"}
    assert normalize(plain) == {"messages": [user("1+2?"), bot("3")]}


def test_openai_tool_calls_are_normalized():
    rec = {"messages": [user("1+2?"), {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "3"}, bot("3.")],
        "tools": [{"type": "function", "function": TOOLS[0]}]}
    # the call's id and the result's tool_call_id are kept (templates such as Mistral's write them)
    want = json.loads(json.dumps(TOOL_CONVERSATION))
    want["messages"][1]["tool_calls"][0]["id"] = "call_1"
    want["messages"][2]["tool_call_id"] = "call_1"
    assert normalize(rec) == want


@pytest.mark.parametrize("turns, tools, reason", [
    ([("human", "1+2?"), ("function_call", "add(1, 2)")], None,
     'conversations[1].value: a function_call value must be JSON {"name": ..., "arguments": {...}}; not valid JSON '
     "(Expecting value at column 1)"),
    ([("human", "1+2?"), ("function_call", '{"arguments": {}}')], None, "conversations[1].value[0].name: missing"),
    ([("human", "1+2?"), ("function_call", '{"name": "add", "arguments": [1, 2]}')], None,
     "conversations[1].value[0].arguments: expected an object (or a JSON string of one), got array"),
    ([("human", "1+2?"), ("function_call", '{"name": "add", "arguments": {}}'), ("observation", "3")], None,
     "conversations[2]: conversation ends with a tool result (the last message must be an assistant reply)"),
    ([("human", "1+2?"), ("observation", "3"), ("gpt", "3")], None,
     "conversations[1].from: a tool message must follow an assistant message (its tool call) or another tool message"),
    ([("human", "1+2?"), ("gpt", "3")], "[{", "tools: not valid JSON (Expecting property name enclosed in double "
                                              "quotes at column 3)"),
    ([("human", "1+2?"), ("gpt", "3")], '[{"description": "x"}]', "tools[0].name: missing"),
])
def test_tool_problems_are_named(turns, tools, reason):
    rec = {"conversations": [{"from": f, "value": v} for f, v in turns]}
    if tools is not None:
        rec["tools"] = tools
    with pytest.raises(RecordError) as err:
        check_record(rec)
    assert str(err.value) == reason


def test_real_tool_call_file_converts_completely(real_data_dir):
    """LLaMA-Factory's glaive tool-call demo: every record converts, every turn is kept."""
    path = real_data_dir / "llamafactory_glaive_toolcall_zh_demo.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert validate_file(path) == []
    records = read_records(path)
    assert len(records) == len(raw) == 300
    role_of = {"human": "user", "gpt": "assistant", "function_call": "assistant", "observation": "tool"}
    calls = results = 0
    for src, rec in zip(raw, records):
        turns = src["conversations"]
        assert [m["role"] for m in rec["messages"]] == [role_of[t["from"]] for t in turns]
        for turn, message in zip(turns, rec["messages"]):
            if turn["from"] == "function_call":
                call = json.loads(turn["value"])
                assert message == {"role": "assistant", "content": "", "tool_calls": [
                    {"type": "function", "function": {"name": call["name"], "arguments": call["arguments"]}}]}
                calls += 1
            else:
                assert message["content"] == turn["value"] and "tool_calls" not in message
                results += turn["from"] == "observation"
        schemas = json.loads(src["tools"])
        assert rec.get("tools", []) == [{"type": "function", "function": s} for s in schemas]
    assert (calls, results) == (216, 218)  # 2 records have an observation after a plain reply (kept as is)
    assert sum(1 for r in records if "tools" in r) == 200  # 100 records have tools "[]"


# ---- preference and KTO: every real shape to one form ----------------------------------------------

PAIR = {"prompt": [user("2+2?")], "chosen": [bot("4")], "rejected": [bot("5")]}


@pytest.mark.parametrize("record", [
    {"prompt": "2+2?", "chosen": "4", "rejected": "5"},                               # TRL standard
    {"prompt": [user("2+2?")], "chosen": [bot("4")], "rejected": [bot("5")]},          # TRL conversational
    {"chosen": [user("2+2?"), bot("4")], "rejected": [user("2+2?"), bot("5")]},        # TRL implicit prompt
    {"conversations": [{"from": "human", "value": "2+2?"}], "chosen": {"from": "gpt", "value": "4"},
     "rejected": {"from": "gpt", "value": "5"}},                                       # LLaMA-Factory ShareGPT
    {"messages": [user("2+2?")], "chosen": bot("4"), "rejected": bot("5")},            # LLaMA-Factory OpenAI
    {"instruction": "2+2?", "input": "", "chosen": "4", "rejected": "5"},              # LLaMA-Factory Alpaca
], ids=["trl-standard", "trl-conversational", "trl-implicit", "lf-sharegpt", "lf-openai", "lf-alpaca"])
def test_preference_shapes(record):
    assert normalize(record, "preference") == PAIR


def test_preference_with_history_and_system():
    rec = {"instruction": "And 3+3?", "system": "S", "history": [["2+2?", "4"]], "chosen": "6", "rejected": "7"}
    assert normalize(rec, "preference") == {"prompt": [system("S"), user("2+2?"), bot("4"), user("And 3+3?")],
                                            "chosen": [bot("6")], "rejected": [bot("7")]}


@pytest.mark.parametrize("record, reason", [
    ({"prompt": [user("2+2?"), bot("4")], "chosen": [bot("a")], "rejected": [bot("b")]},
     "prompt[1].role: the prompt must end with a user turn (the chosen and rejected answers reply to it), got 'assistant'"),
    ({"prompt": "2+2?", "chosen": "4"}, "rejected: missing"),
    ({"prompt": "2+2?", "chosen": "", "rejected": "5"}, "chosen: empty"),
    ({"prompt": "2+2?", "chosen": [bot("4"), bot("4")], "rejected": "5"}, "chosen: expected one assistant message, got 2 messages"),
    ({"prompt": [user("2+2?")], "chosen": [{"role": "user", "content": "4"}], "rejected": [bot("5")]},
     "chosen[0].role: roles must alternate user/assistant starting with user: expected assistant, got 'user'"),
    ({"conversations": [{"from": "human", "value": "Q"}], "chosen": {"from": "gpt", "value": "A"},
      "rejected": {"from": "gpt"}}, "rejected.value: missing"),
    ({"chosen": "4", "rejected": "5"}, "prompt: missing: without a prompt, chosen and rejected must be whole "
                                       "conversations (arrays of messages) sharing the prompt; chosen is string"),
    ({"chosen": [user("a"), bot("4")], "rejected": [user("b"), bot("5")]},
     "prompt: missing: chosen and rejected must be the same conversation up to their last (assistant) message; "
     "they share 0 messages, then have 2 and 2"),
])
def test_preference_problems_are_named(record, reason):
    with pytest.raises(RecordError) as err:
        check_record(record, "preference")
    assert str(err.value) == reason


@pytest.mark.parametrize("record", [
    {"prompt": "2+2?", "completion": "5", "label": False},
    {"prompt": [user("2+2?")], "completion": [bot("5")], "label": False},
    {"messages": [user("2+2?"), bot("5")], "label": False},
    {"conversations": [{"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "5"}], "kto_tag": False},
    {"instruction": "2+2?", "input": "", "output": "5", "kto_tag": False},
], ids=["trl-standard", "trl-conversational", "lf-messages", "lf-sharegpt", "lf-alpaca"])
def test_kto_shapes(record):
    assert normalize(record, "kto") == {"prompt": [user("2+2?")], "completion": [bot("5")], "label": False}


def test_kto_label_must_be_boolean():
    with pytest.raises(RecordError) as err:
        check_record({"prompt": "2+2?", "completion": "5", "label": "no"}, "kto")
    assert str(err.value) == "label: expected true or false (is the completion a desirable answer?), got string"


def test_real_preference_file(real_data_dir):
    """LLaMA-Factory's DPO demo: the prompt is the conversation (its system turn included), the answers the
    chosen / rejected messages, for every record."""
    path = real_data_dir / "llamafactory_dpo_zh_demo.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    records = read_records(path, kind="preference")
    assert len(records) == len(raw) == 300
    role_of = {"system": "system", "human": "user", "gpt": "assistant"}
    for src, rec in zip(raw, records):
        assert rec["prompt"] == [{"role": role_of[t["from"]], "content": t["value"]} for t in src["conversations"]]
        assert rec["chosen"] == [bot(src["chosen"]["value"])] and rec["rejected"] == [bot(src["rejected"]["value"])]
    assert sum(r["prompt"][0]["role"] == "system" for r in records) == 64
    with pytest.raises(RecordError, match=r"\[0\]: chosen: a preference record .* --kind preference"):
        read_records(path)


def test_encode_refuses_records_of_another_kind_given_directly():
    """Straight to encode() (not through the readers): a KTO 'label: false' answer or a preference pair
    is refused with the reason, never trained as an SFT target."""
    from utils.encode import EncodeError, encode
    from utils.models import load_tokenizer

    tok = load_tokenizer()
    with pytest.raises(EncodeError, match=r"label.*undesirable answer"):
        encode({"instruction": "2+2?", "output": "5", "label": False}, tok, "alpaca")
    with pytest.raises(EncodeError, match="preference record"):
        encode({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}],
                "chosen": "Yo", "rejected": "Go away"}, tok, "human_assistant")
