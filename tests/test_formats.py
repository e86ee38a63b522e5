"""utils.formats: detection, conversion, exact error lines, collecting every problem, streaming."""

from __future__ import annotations

import json

import pytest

from utils.formats import (DataFormatError, RecordError, check_record, conversation_of, detect_format,
                           from_seed_task, iter_records, normalize, read_records, to_messages, validate_file)

OK_ALPACA = {"instruction": "Hi", "input": "", "output": "Hello"}
OK_SHAREGPT = {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}
OK_MESSAGES = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}


def write_jsonl(path, lines):
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x, ensure_ascii=False) for x in lines) + "\n",
                    encoding="utf-8")
    return path


def test_detect_and_normalize():
    assert [detect_format(r) for r in (OK_ALPACA, OK_SHAREGPT, OK_MESSAGES)] == ["alpaca", "sharegpt", "messages"]
    assert normalize(OK_SHAREGPT) == normalize(OK_MESSAGES) == OK_MESSAGES
    assert normalize({"instruction": "Hi", "output": "Hello"}) == OK_ALPACA  # missing input -> ""
    assert to_messages(OK_ALPACA) == to_messages(OK_SHAREGPT) == OK_MESSAGES["messages"]
    assert to_messages({"instruction": "Translate", "input": "你好", "output": "Hello"})[0] == {
        "role": "user", "content": "Translate\n你好"}


def test_role_aliases():
    rec = {"conversations": [{"from": "system", "value": "S"}, {"from": "user", "value": "Hi"},
                             {"from": "assistant", "value": "Yo"}, {"from": "human", "value": "Q"},
                             {"from": "chatgpt", "value": "A"}]}
    assert [m["role"] for m in normalize(rec)["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    msg = {"messages": [{"role": "human", "content": "Hi"}, {"role": "gpt", "content": "Yo"}]}
    assert normalize(msg) == {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}
    assert conversation_of(rec) == ("S", [("Hi", "Yo"), ("Q", "A")])


def test_seed_task_conversion():
    seed = {"id": "seed_task_1", "instruction": "Relation?", "is_classification": False,
            "instances": [{"input": "Night : Day", "output": "Opposites."}, {"input": "", "output": "None."}]}
    assert detect_format(seed) == "seed"
    assert from_seed_task(seed) == [{"instruction": "Relation?", "input": "Night : Day", "output": "Opposites."},
                                    {"instruction": "Relation?", "input": "", "output": "None."}]


BAD = [
    ('{"instruction": "Hi", "output": "Yo"', "record: not valid JSON (Expecting ',' delimiter at column 37)"),
    ('[1, 2]', "record: expected a JSON object, got array"),
    ({"instruction": "Hi"}, "output: missing"),
    ({"instruction": "Hi", "output": 3}, "output: expected a string, got number"),
    ({"instruction": "Hi", "output": "  "}, "output: empty"),
    ({"instruction": "", "input": "", "output": "x"}, "instruction: empty (and no input)"),
    ({"instruction": "Hi", "input": ["a"], "output": "x"}, "input: expected a string, got array"),
    ({"question": "Hi", "answer": "x"}, "record: unknown format: expected 'instruction'/'output' (Alpaca), "
                                        "'conversations' (ShareGPT), 'messages' (OpenAI), 'conversation' (Firefly), "
                                        "'prompt' + 'completion'/'chosen'/'rejected' (TRL) or 'text' (plain text); "
                                        "got keys: answer, question"),
    ({"conversations": [{"from": "human", "value": "Hi"}, {"from": "bot", "value": "x"}]},
     "conversations[1].from: unknown role 'bot' (expected human, gpt or system)"),
    ({"conversations": [{"from": "human", "value": "Hi"}, {"from": "human", "value": "x"}]},
     "conversations[1].from: roles must alternate user/assistant starting with user: expected assistant, got 'human'"),
    ({"conversations": [{"from": "gpt", "value": "Hi"}, {"from": "human", "value": "x"}]},
     "conversations[0].from: roles must alternate user/assistant starting with user: expected user, got 'gpt'"),
    ({"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "x"}, {"from": "human", "value": "y"}]},
     "conversations[2]: conversation ends with a user turn (the last message must be an assistant reply)"),
    ({"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": ""}]},
     "conversations[1].value: empty"),
    ({"conversations": [{"from": "human"}, {"from": "gpt", "value": "x"}]}, "conversations[0].value: missing"),
    ({"conversations": []}, "conversations: empty conversation"),
    ({"conversations": "Hi"}, "conversations: expected an array, got string"),
    ({"messages": [{"role": "user", "content": "Hi"}, {"role": "function", "content": "x"}]},
     "messages[1].role: unknown role 'function' (expected system, user or assistant)"),
    ({"messages": [{"role": "user", "content": "Hi"}, {"role": "tool", "content": "x"}]},
     "messages[1].role: a tool message must follow an assistant message (its tool call) or another tool message"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "a.png"}}]},
                   {"role": "assistant", "content": "x"}]},
     "messages[0].content[0].type: content part type 'image_url' is not supported (only 'text' parts are; this "
     "message has 'image_url'): multimodal content is not supported: only text can be encoded"),
    ({"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "x"}]},
     "messages[0].content: expected a string, got number"),
    ({"messages": [{"role": "user", "content": "Hi"}, {"role": "system", "content": "S"},
                   {"role": "assistant", "content": "x"}]},
     "messages[1].role: a system message is only allowed as the first message"),
    ({"instruction": "Q", "instances": [{"input": "", "output": ""}]}, "instances[0].output: empty"),
]


@pytest.mark.parametrize("record, reason", BAD, ids=[r for _, r in BAD])
def test_bad_record_jsonl_line(tmp_path, record, reason):
    path = write_jsonl(tmp_path / "data.jsonl", [OK_ALPACA if not isinstance(record, dict) or "instruction" in record
                                                 or "prompt" in record else OK_MESSAGES, "", record])
    with pytest.raises(RecordError) as err:
        list(iter_records(path))
    assert str(err.value) == f"{path}:3: {reason}"  # line 3: blank line 2 still counts


@pytest.mark.parametrize("record, reason", [b for b in BAD if isinstance(b[0], dict)][:6])
def test_bad_record_json_array_index(tmp_path, record, reason):
    path = tmp_path / "data.json"
    path.write_text(json.dumps([OK_ALPACA, record], indent=2), encoding="utf-8")
    with pytest.raises(RecordError) as err:
        read_records(path)
    assert str(err.value) == f"{path}:[1]: {reason}"


def test_invalid_json_array_names_the_line(tmp_path):
    path = tmp_path / "data.json"
    path.write_text('[\n  {"instruction": "Hi", "output": "x"},\n  {"instruction": "Hi" "output": "x"}\n]\n')
    with pytest.raises(RecordError) as err:
        read_records(path)
    assert str(err.value) == f"{path}:3: record: not valid JSON (Expecting ',' delimiter at column 24)"


def test_collect_every_problem(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [OK_SHAREGPT, {"conversations": [{"from": "human", "value": "Hi"}]},
                                              "not json", OK_MESSAGES, {"messages": [{"role": "bot", "content": "x"}]},
                                              OK_ALPACA])
    problems = validate_file(path)
    assert [str(p) for p in problems] == [
        f"{path}:2: conversations[0]: conversation ends with a user turn (the last message must be an assistant reply)",
        f"{path}:3: record: not valid JSON (Expecting value at column 1)",
        f"{path}:5: messages[0].role: unknown role 'bot' (expected system, user or assistant)",
        f"{path}:6: record: format 'alpaca' differs from the file's format ('messages', from its first record); "
        "use one format per file",
    ]
    skipped: list = []
    good = list(iter_records(path, on_error="skip", problems=skipped))
    assert good == [OK_MESSAGES, OK_MESSAGES] and len(skipped) == 4
    err = DataFormatError(problems)
    assert str(err).splitlines() == [str(p) for p in problems]
    assert (problems[0].where, problems[0].field) == (f"{path}:2", "conversations[0]")


def test_locations(tmp_path):
    seed = {"instruction": "Q", "instances": [{"input": "", "output": "a"}, {"input": "x", "output": "b"}]}
    path = write_jsonl(tmp_path / "d.jsonl", [seed, "", {"instruction": "Hi"}, OK_ALPACA])
    got = list(iter_records(path, on_error="skip", problems=[], with_location=True))
    assert [w for w, _ in got] == [f"{path}:1", f"{path}:1", f"{path}:4"]
    assert [r["output"] for _, r in got] == ["a", "b", "Hello"]


def test_jsonl_is_streamed(tmp_path):
    """Records come out one by one: a bad line further down is not read until reached."""
    path = write_jsonl(tmp_path / "d.jsonl", [OK_ALPACA, OK_ALPACA, "garbage"])
    it = iter_records(path)
    assert next(it) == OK_ALPACA and next(it) == OK_ALPACA
    with pytest.raises(RecordError, match=r"d.jsonl:3: record: not valid JSON"):
        next(it)


def test_check_record_has_no_location():
    with pytest.raises(RecordError) as err:
        check_record({"instruction": "Hi"})
    assert str(err.value) == "output: missing" and err.value.where == ""


REAL = {  # file: (records after conversion, format)
    "llamafactory_alpaca_en_demo.json": (999, "alpaca"),
    "llamafactory_alpaca_zh_demo.json": (1000, "alpaca"),
    "llamafactory_identity.json": (91, "alpaca"),
    "fastchat_dummy_conversation.json": (500, "messages"),
}


@pytest.mark.parametrize("filename", sorted(REAL))
def test_real_files_read_cleanly(real_data_dir, filename):
    n, fmt = REAL[filename]
    path = real_data_dir / filename
    assert validate_file(path) == []
    records = read_records(path)
    assert len(records) == n and len(json.loads(path.read_text(encoding="utf-8"))) == n
    assert all(("messages" in r) == (fmt == "messages") for r in records)


def test_real_seed_tasks(real_data_dir):
    path = real_data_dir / "stanford_alpaca_seed_tasks.jsonl"
    tasks = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    records = read_records(path)
    assert len(tasks) == 175
    assert len(records) == sum(len(t["instances"]) for t in tasks)
    assert records[0]["instruction"] == tasks[0]["instruction"]
    assert records[0]["output"] == tasks[0]["instances"][0]["output"]
