"""Reading and validating instruction data: Alpaca, ShareGPT, OpenAI messages (and Alpaca seed tasks).

Supported record forms (auto-detected per record from its keys):

===========  =====================================================================================
format       record
===========  =====================================================================================
``alpaca``   ``{"instruction": str, "input": str (optional, may be empty), "output": str}``
``sharegpt`` ``{"conversations": [{"from": "system"|"human"|"gpt", "value": str}, ...]}``
             (role aliases accepted: ``user``/``assistant``/``chatgpt``/``bing``/``bard``, see
             :data:`ROLE_ALIASES`)
``messages`` ``{"messages": [{"role": "system"|"user"|"assistant"|"tool", "content": str}, ...],
             "tools"?: [...]}`` (OpenAI; ``human``/``gpt`` accepted as aliases too; see below)
``seed``     Stanford Alpaca's ``seed_tasks.jsonl``: ``{"instruction": str, "instances": [{"input",
             "output"}, ...]}``; each instance becomes one Alpaca record (a documented conversion)
===========  =====================================================================================

Files: JSONL (one record per line, read as a stream, blank lines ignored) or a JSON array (``[...]``,
detected from the first non-blank character). :func:`iter_records` yields *normalized* records:
Alpaca records stay Alpaca (``instruction``, ``input``, ``output``: the ``alpaca`` template needs the
input on its own), ShareGPT and OpenAI records become ``{"messages": [...]}``. :func:`to_messages`
converts any form to the one conversation form, ``[{"role", "content"}, ...]`` (an Alpaca input is
joined to the instruction with ``"\\n"``, as LLaMA-Factory does). A file must use one format
(Alpaca and seed tasks may mix; ShareGPT and messages may mix).

The one conversation form (what ShareGPT and OpenAI records normalize to; chat templates render it)::

    {"messages": [{"role": "system"|"user"|"assistant"|"tool", "content": str,
                   "tool_calls"?: [{"type": "function", "function": {"name": str, "arguments": dict}}],
                   "reasoning_content"?: str, "name"?: str}, ...],
     "tools"?: [JSON-schema function definitions]}

``content`` may be given as a list of ``{"type": "text", "text": ...}`` parts (joined); other part types
are refused with their name (images: not supported; reasoning / tool parts: where they belong instead).
``tool_calls`` ``arguments`` given as a JSON string are parsed. An assistant message with ``tool_calls``
may have empty content and is followed by one or more ``tool`` messages (results), then an assistant
reply; ``reasoning_content`` only on assistant messages. An empty system message (``""``) is kept.
The text templates (``alpaca``, ``vicuna``, ``human_assistant``) refuse tools and separate reasoning
(:func:`conversation_of`).

Other keys are ignored (``id``, LLaMA-Factory's ``system`` / ``history`` columns of Alpaca files: put a
system text or earlier turns into the ``messages`` form instead).

Rules for a valid record: every text field a string; ``output`` / every assistant reply non-empty
(after stripping whitespace; a tool-call turn may be empty); user turns non-empty; an optional system
message first, then user and assistant alternating (tool results between a tool-call turn and the next
assistant message), starting with user and ending with an assistant reply; only known roles.

Errors name the place and the field, one line per problem: ``FILE:LINE: field: reason`` for JSONL,
``FILE:[INDEX]: field: reason`` for a JSON array, e.g.
``data.jsonl:7: conversations[3].from: unknown role 'bot' (expected human, gpt or system)``.
:func:`iter_records` raises the first (:class:`RecordError`) or, with ``on_error="skip"``, skips bad
records and appends each problem to a list you pass, so a command line can print them all or count
them; :func:`validate_file` returns all problems of a file. ``with_location=True`` yields
``(where, record)`` pairs, so problems found later (e.g. by a template, :class:`utils.encode.EncodeError`)
can be placed at ``FILE:LINE`` too.

Example:
    >>> to_messages({"instruction": "Translate", "input": "你好", "output": "Hello"})
    [{'role': 'user', 'content': 'Translate\\n你好'}, {'role': 'assistant', 'content': 'Hello'}]
    >>> check_record({"conversations": [{"from": "human", "value": "Hi"}]})
    Traceback (most recent call last):
    ...
    utils.formats.RecordError: conversations[0]: conversation ends with a user turn (the last message must be an assistant reply)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator, Mapping

__all__ = [
    "RecordError", "DataFormatError", "ROLE_ALIASES", "detect_format", "check_record", "normalize",
    "to_messages", "chat_of", "conversation_of", "from_seed_task", "iter_records", "read_records", "validate_file",
]

ROLE_ALIASES: dict[str, str] = {
    "system": "system",
    "human": "user", "user": "user", "tool": "tool",
    "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant", "bing": "assistant",
    "bard": "assistant",
}
"""Accepted speaker names (ShareGPT ``from`` / OpenAI ``role``) and the role each means."""


class RecordError(ValueError):
    """One bad record: ``str(err)`` is ``"WHERE: field: reason"`` (``WHERE`` omitted when unknown).

    Attributes: ``where`` (``"FILE:LINE"`` or ``"FILE:[INDEX]"`` or ``""``), ``field``, ``reason``.
    """

    def __init__(self, field: str, reason: str, where: str = ""):
        self.field, self.reason, self.where = field, reason, where
        super().__init__(f"{where}: {field}: {reason}" if where else f"{field}: {reason}")

    def at(self, where: str) -> "RecordError":
        """The same error located at ``where``."""
        return RecordError(self.field, self.reason, where)


class DataFormatError(ValueError):
    """Several bad records; ``problems`` is the list of :class:`RecordError`, one line each in ``str``."""

    def __init__(self, problems: list[RecordError]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def _type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null",
            int: "number", float: "number"}.get(type(value), type(value).__name__)


def detect_format(record: Any) -> str:
    """``"alpaca"``, ``"sharegpt"``, ``"messages"`` or ``"seed"``, from the record's keys.

    >>> detect_format({"conversations": []}), detect_format({"instruction": "x", "output": "y"})
    ('sharegpt', 'alpaca')
    """
    if not isinstance(record, Mapping):
        raise RecordError("record", f"expected a JSON object, got {_type(record)}")
    if "messages" in record:
        return "messages"
    if "conversations" in record:
        return "sharegpt"
    if "instances" in record:
        return "seed"
    if "instruction" in record or "output" in record:
        return "alpaca"
    keys = ", ".join(sorted(map(str, record))) or "none"
    raise RecordError("record", "unknown format: expected 'instruction'/'output' (Alpaca), 'conversations' "
                                f"(ShareGPT) or 'messages' (OpenAI); got keys: {keys}")


def _text(record: Mapping, key: str, field: str, *, required: bool = True, empty_ok: bool = False) -> str:
    if key not in record or (record[key] is None and not required):
        if required:
            raise RecordError(field, "missing")
        return ""
    value = record[key]
    if not isinstance(value, str):
        raise RecordError(field, f"expected a string, got {_type(value)}")
    if not empty_ok and not value.strip():
        raise RecordError(field, "empty")
    return value


def _alpaca(record: Mapping, prefix: str = "") -> dict:
    instruction = _text(record, "instruction", prefix + "instruction", empty_ok=True)
    inp = _text(record, "input", prefix + "input", required=False, empty_ok=True)
    if not instruction.strip() and not inp.strip():
        raise RecordError(prefix + "instruction", "empty (and no input)")
    output = _text(record, "output", prefix + "output")
    return {"instruction": instruction, "input": inp, "output": output}


_PART_HINTS = {
    "reasoning": "put reasoning text in the assistant message's 'reasoning_content'",
    "thinking": "put reasoning text in the assistant message's 'reasoning_content'",
    "tool_call": "put tool calls in the assistant message's 'tool_calls'",
    "tool_use": "put tool calls in the assistant message's 'tool_calls'",
    "function_call": "put tool calls in the assistant message's 'tool_calls'",
    "tool_result": "put a tool's result in a message with role 'tool'",
}
_MESSAGE_KEYS = ("role", "content", "tool_calls", "reasoning_content", "name", "tool_call_id")


def _content(turn: Mapping, text_key: str, f: str, role: str, may_be_empty: bool) -> str:
    """A message's text: a string, or a list of ``{"type": "text", "text": ...}`` parts joined."""
    value = turn.get(text_key)
    if isinstance(value, list):
        texts = []
        for j, part in enumerate(value):
            pf = f"{f}.{text_key}[{j}]"
            if not isinstance(part, Mapping):
                raise RecordError(pf, f"expected a content part object, got {_type(part)}")
            kind = part.get("type")
            if kind != "text":
                others = sorted({str(p.get("type")) for p in value if isinstance(p, Mapping) and p.get("type") != "text"})
                hint = _PART_HINTS.get(str(kind), "multimodal content is not supported: only text can be encoded")
                raise RecordError(pf + ".type", f"content part type {kind!r} is not supported (only 'text' parts are; "
                                                f"this message has {', '.join(map(repr, others))}): {hint}")
            if not isinstance(part.get("text"), str):
                raise RecordError(pf + ".text", "missing" if "text" not in part
                                  else f"expected a string, got {_type(part.get('text'))}")
            texts.append(part["text"])
        value = "".join(texts)
        if not may_be_empty and not value.strip():
            raise RecordError(f"{f}.{text_key}", "empty")
        return value
    if value is None and may_be_empty:
        return ""
    return _text(turn, text_key, f"{f}.{text_key}", empty_ok=may_be_empty)


def _tool_calls(calls: Any, f: str) -> list[dict]:
    """OpenAI ``tool_calls`` as ``[{"type": "function", "function": {"name", "arguments": dict}}]``
    (``arguments`` given as a JSON string are parsed: chat templates write them with ``tojson``)."""
    if not isinstance(calls, list) or not calls:
        raise RecordError(f, "expected a non-empty array of tool calls" if isinstance(calls, list)
                          else f"expected an array, got {_type(calls)}")
    out = []
    for j, call in enumerate(calls):
        cf = f"{f}[{j}]"
        if not isinstance(call, Mapping):
            raise RecordError(cf, f"expected an object, got {_type(call)}")
        fn = call.get("function", call)
        if not isinstance(fn, Mapping):
            raise RecordError(cf + ".function", f"expected an object, got {_type(fn)}")
        prefix = cf + (".function" if "function" in call else "")
        name = fn.get("name")
        if not isinstance(name, str) or not name.strip():
            raise RecordError(prefix + ".name", "missing" if name is None else
                              ("empty" if isinstance(name, str) else f"expected a string, got {_type(name)}"))
        args = fn.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except json.JSONDecodeError as e:
                raise RecordError(prefix + ".arguments", f"not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(args, Mapping):
            raise RecordError(prefix + ".arguments", f"expected an object (or a JSON string of one), got {_type(args)}")
        norm = {"type": "function", "function": {"name": name, "arguments": dict(args)}}
        if isinstance(call.get("id"), str):
            norm["id"] = call["id"]
        out.append(norm)
    return out


def _turns(record: Mapping, key: str, role_key: str, text_key: str) -> list[dict]:
    """The messages of a conversation record, validated and normalized (see the module docstring)."""
    turns = record[key]
    if not isinstance(turns, list):
        raise RecordError(key, f"expected an array, got {_type(turns)}")
    if not turns:
        raise RecordError(key, "empty conversation")
    names = "human, gpt or system" if key == "conversations" else "system, user or assistant"  # (+ tool after tool calls)
    messages: list[dict] = []
    prev = None  # role of the previous non-system message
    for i, turn in enumerate(turns):
        f = f"{key}[{i}]"
        if not isinstance(turn, Mapping):
            raise RecordError(f, f"expected an object with '{role_key}' and '{text_key}', got {_type(turn)}")
        name = turn.get(role_key)
        if role_key not in turn:
            raise RecordError(f"{f}.{role_key}", "missing")
        if not isinstance(name, str):
            raise RecordError(f"{f}.{role_key}", f"expected a string, got {_type(name)}")
        role = ROLE_ALIASES.get(name.lower())
        if role is None:
            raise RecordError(f"{f}.{role_key}", f"unknown role {name!r} (expected {names})")
        if turn.get(text_key) is not None and not isinstance(turn.get(text_key), (str, list)):
            raise RecordError(f"{f}.{text_key}", f"expected a string, got {_type(turn.get(text_key))}")
        calls = None
        if turn.get("tool_calls") is not None:
            if role != "assistant":
                raise RecordError(f"{f}.tool_calls", f"only assistant messages carry tool calls (this one is {role!r})")
            calls = _tool_calls(turn["tool_calls"], f"{f}.tool_calls")
        content = _content(turn, text_key, f, role, may_be_empty=role in ("system", "tool") or calls is not None)
        msg: dict = {"role": role, "content": content}
        if calls is not None:
            msg["tool_calls"] = calls
        reasoning = turn.get("reasoning_content")
        if reasoning is not None:
            if role != "assistant":
                raise RecordError(f"{f}.reasoning_content", f"only assistant messages carry reasoning (this one is {role!r})")
            if not isinstance(reasoning, str):
                raise RecordError(f"{f}.reasoning_content", f"expected a string, got {_type(reasoning)}")
            msg["reasoning_content"] = reasoning
        for extra in ("name", "tool_call_id"):
            if role == "tool" and isinstance(turn.get(extra), str):
                msg[extra] = turn[extra]
        if role == "system":
            if i != 0:
                raise RecordError(f"{f}.{role_key}", "a system message is only allowed as the first message")
        else:
            allowed = {None: ("user",), "user": ("assistant",), "assistant": ("user",), "tool": ("tool", "assistant"),
                       "assistant+tools": ("tool",)}[prev]
            if role not in allowed:
                if prev == "assistant+tools":
                    reason = f"an assistant message with tool_calls must be followed by the tool results (role 'tool'), got {name!r}"
                elif role == "tool":
                    reason = "a tool message must follow an assistant message with tool_calls (or another tool message)"
                else:
                    reason = (f"roles must alternate user/assistant starting with user: expected "
                              f"{' or '.join(allowed)}, got {name!r}")
                raise RecordError(f"{f}.{role_key}", reason)
            prev = "assistant+tools" if calls is not None else role
        messages.append(msg)
    last = messages[-1]["role"]
    if last != "assistant" or prev == "assistant+tools":
        reason = {"user": "conversation ends with a user turn (the last message must be an assistant reply)",
                  "tool": "conversation ends with a tool result (the last message must be an assistant reply)"}.get(
            last, "conversation has no assistant reply")
        if prev == "assistant+tools":
            reason = "conversation ends with a tool call (the last message must be an assistant reply after its results)"
        raise RecordError(f"{key}[{len(turns) - 1}]", reason)
    return messages


def _tools(record: Mapping) -> list[dict] | None:
    """The record-level ``tools`` (JSON-schema function definitions), validated; None when absent."""
    tools = record.get("tools")
    if tools is None:
        return None
    if isinstance(tools, str):  # LLaMA-Factory stores them as a JSON string
        try:
            tools = json.loads(tools) if tools.strip() else []
        except json.JSONDecodeError as e:
            raise RecordError("tools", f"not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(tools, list) or not all(isinstance(t, Mapping) for t in tools):
        raise RecordError("tools", "expected an array of tool (function schema) objects")
    return [dict(t) for t in tools] or None


def _conversation(record: Mapping, key: str, role_key: str, text_key: str) -> dict:
    """``{"messages": [...], "tools"?: [...]}``: a conversation record in the one normalized form."""
    out: dict = {"messages": _turns(record, key, role_key, text_key)}
    tools = _tools(record)
    if tools:
        out["tools"] = tools
    return out


def check_record(record: Any) -> tuple[str, list[dict]]:
    """Validate one record: ``(format, normalized records)``; raises :class:`RecordError` (no location).

    Normalized records are ``{"instruction", "input", "output"}`` (Alpaca; a seed task gives one per
    instance) or ``{"messages": [...]}`` (ShareGPT / OpenAI).

    >>> check_record({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]})[0]
    'messages'
    """
    fmt = detect_format(record)
    if fmt == "alpaca":
        return fmt, [_alpaca(record)]
    if fmt == "seed":
        instruction = _text(record, "instruction", "instruction", empty_ok=True)
        instances = record["instances"]
        if not isinstance(instances, list) or not instances:
            raise RecordError("instances", "expected a non-empty array" if isinstance(instances, list)
                              else f"expected an array, got {_type(instances)}")
        out = []
        for i, inst in enumerate(instances):
            if not isinstance(inst, Mapping):
                raise RecordError(f"instances[{i}]", f"expected an object, got {_type(inst)}")
            out.append(_alpaca({"instruction": instruction, **inst}, f"instances[{i}]."))
        return fmt, out
    if fmt == "sharegpt":
        return fmt, [_conversation(record, "conversations", "from", "value")]
    return fmt, [_conversation(record, "messages", "role", "content")]


def from_seed_task(record: Mapping) -> list[dict]:
    """A Stanford seed task (``instruction`` + ``instances``) as Alpaca records, one per instance.

    >>> from_seed_task({"instruction": "Add", "instances": [{"input": "1+1", "output": "2"}]})
    [{'instruction': 'Add', 'input': '1+1', 'output': '2'}]
    """
    fmt, out = check_record(record)
    if fmt != "seed":
        raise RecordError("instances", "missing (not a seed task)")
    return out


def normalize(record: Any) -> dict:
    """One validated record in normalized form (Alpaca stays Alpaca, conversations become messages).

    >>> normalize({"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yo"}]})
    {'messages': [{'role': 'user', 'content': 'Hi'}, {'role': 'assistant', 'content': 'Yo'}]}
    """
    fmt, out = check_record(record)
    if len(out) != 1:
        raise RecordError("instances", f"a seed task holds {len(out)} examples; use from_seed_task()")
    return out[0]


def _plain(msgs: Any) -> bool:
    """Already-normalized plain messages (string contents, no tool calls): the fast path."""
    return isinstance(msgs, list) and all(
        type(m) is dict and len(m) == 2 and "role" in m and "content" in m and isinstance(m["content"], str)
        and (m["role"] in ("system", "user") or m["role"] == "assistant" and m["content"].strip())
        for m in msgs)


def chat_of(example: Mapping[str, Any]) -> tuple[list[dict], list[dict] | None]:
    """``(messages, tools)`` of any supported record: what a chat template renders.

    Messages keep everything a chat template reads (an empty system message stays, ``tool_calls``,
    ``reasoning_content``, tool results); ``tools`` is the record's tool list or None.

    >>> chat_of({"messages": [{"role": "system", "content": ""}, {"role": "user", "content": "Hi"},
    ...                       {"role": "assistant", "content": [{"type": "text", "text": "Yo"}]}]})
    ([{'role': 'system', 'content': ''}, {'role': 'user', 'content': 'Hi'}, {'role': 'assistant', 'content': 'Yo'}], None)
    """
    msgs = example.get("messages")
    if "tools" not in example and _plain(msgs):
        return [dict(m) for m in msgs], None  # alternation checked by the caller
    rec = normalize(example)
    if "messages" in rec:
        return rec["messages"], rec.get("tools")
    user = rec["instruction"] + ("\n" + rec["input"] if rec["input"] else "") if rec["instruction"] else rec["input"]
    return [{"role": "user", "content": user}, {"role": "assistant", "content": rec["output"]}], None


def to_messages(example: Mapping[str, Any]) -> list[dict]:
    """The one conversation form ``[{"role", "content", ...}, ...]`` of any supported record.

    >>> to_messages({"instruction": "Hi", "output": "Hello"})
    [{'role': 'user', 'content': 'Hi'}, {'role': 'assistant', 'content': 'Hello'}]
    """
    return chat_of(example)[0]


def conversation_of(example: Mapping[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    """``(system, [(user, reply), ...])`` of any supported record (system ``""`` when absent or empty).

    This is the form the text templates (``alpaca``, ``vicuna``, ``human_assistant``) render; they have
    no place for tool calls, tool results or separate reasoning, so such records raise
    :class:`RecordError` here (the chat template renders them: :func:`chat_of`).

    >>> conversation_of({"instruction": "Hi", "output": "Hello"})
    ('', [('Hi', 'Hello')])
    """
    messages, tools = chat_of(example)
    if tools:
        raise RecordError("tools", "text templates (alpaca, vicuna, human_assistant) cannot render tool definitions; "
                                   "use template 'chat_template' with a tokenizer whose chat template supports tools")
    for i, m in enumerate(messages):
        if m["role"] == "tool" or "tool_calls" in m:
            what = "tool results (role 'tool')" if m["role"] == "tool" else "tool calls"
            raise RecordError(f"messages[{i}]", f"text templates (alpaca, vicuna, human_assistant) cannot render "
                                                f"{what}; use template 'chat_template' with a tokenizer whose chat "
                                                "template supports tools")
        if "reasoning_content" in m:
            raise RecordError(f"messages[{i}].reasoning_content",
                              "text templates (alpaca, vicuna, human_assistant) have no place for separate reasoning; "
                              "use template 'chat_template' with a reasoning chat template, or put the reasoning "
                              "into the reply's content")
    system = ""
    if messages and messages[0]["role"] == "system":
        system, messages = messages[0]["content"], messages[1:]
    turns = []
    for i in range(0, len(messages), 2):
        if i + 1 >= len(messages) or messages[i]["role"] != "user" or messages[i + 1]["role"] != "assistant":
            raise RecordError("messages", "roles must alternate user/assistant after an optional system "
                                          "message and end with an assistant reply")
        turns.append((messages[i]["content"], messages[i + 1]["content"]))
    return system, turns


_GROUPS = {"alpaca": "alpaca", "seed": "alpaca", "sharegpt": "messages", "messages": "messages"}


def _raw(path: Path) -> Iterator[tuple[str, Any]]:
    """``(where, parsed or RecordError)`` for each record of a JSONL file or JSON array, streamed."""
    name = os.fspath(path)
    with open(path, encoding="utf-8") as f:
        head = ""
        while True:
            ch = f.read(1)
            if not ch or not ch.isspace() and ch != "\ufeff":
                head = ch
                break
        f.seek(0)
        if head == "[":
            try:
                data = json.load(f)
            except json.JSONDecodeError as e:
                yield f"{name}:{e.lineno}", RecordError("record", f"not valid JSON ({e.msg} at column {e.colno})")
                return
            for i, rec in enumerate(data):
                yield f"{name}:[{i}]", rec
            return
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield f"{name}:{lineno}", json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as e:
                yield f"{name}:{lineno}", RecordError("record", f"not valid JSON ({e.msg} at column {e.colno})")


def iter_records(path: str | os.PathLike, *, on_error: str = "raise",
                 problems: list[RecordError] | None = None, with_location: bool = False) -> Iterator[Any]:
    """Stream the normalized records of a JSONL / JSON-array file (see the module docstring).

    ``on_error="raise"`` raises the first :class:`RecordError` (located ``FILE:LINE`` /
    ``FILE:[INDEX]``); ``"skip"`` skips bad records and appends each problem to ``problems``.
    ``with_location=True`` yields ``(where, record)`` pairs (``where`` as in errors; a seed task's
    instances share their line), so later errors can be placed too.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "d.jsonl"
    >>> _ = p.write_text('{"instruction": "Hi", "output": "Hello"}\\n{"instruction": "Hi"}\\n')
    >>> bad = []
    >>> len(list(iter_records(p, on_error="skip", problems=bad))), str(bad[0]).split(": ", 1)[1]
    (1, 'output: missing')
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    group = None
    for where, rec in _raw(Path(path)):
        try:
            if isinstance(rec, RecordError):
                raise rec
            fmt, out = check_record(rec)
            if group is None:
                group = _GROUPS[fmt]
            elif _GROUPS[fmt] != group:
                raise RecordError("record", f"format {fmt!r} differs from the file's format ({group!r}, from its "
                                            "first record); use one format per file")
        except RecordError as e:
            err = e.at(where)
            if on_error == "raise":
                raise err from None
            if problems is not None:
                problems.append(err)
            continue
        if with_location:
            for rec in out:
                yield where, rec
        else:
            yield from out


def read_records(path: str | os.PathLike, *, on_error: str = "raise",
                 problems: list[RecordError] | None = None) -> list[dict]:
    """All normalized records of a file, as a list (see :func:`iter_records`)."""
    return list(iter_records(path, on_error=on_error, problems=problems))


def validate_file(path: str | os.PathLike) -> list[RecordError]:
    """Every problem in a file (empty list when it is valid), one :class:`RecordError` each."""
    problems: list[RecordError] = []
    for _ in iter_records(path, on_error="skip", problems=problems):
        pass
    return problems
