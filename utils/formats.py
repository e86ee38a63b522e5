"""Reading and validating training data: every real record form, one normalized form per kind.

A record's **kind** -- what it trains -- is read from its keys, as TRL's ``data_utils`` does
(:func:`detect_kind`, :data:`KINDS`): ``sft`` (a prompt and replies, :mod:`utils.encode`), ``preference``
(``chosen`` + ``rejected``, :mod:`utils.preference`), ``kto`` (a completion with a true/false ``label``,
:mod:`utils.preference`) and ``pretrain`` (``text``, :mod:`utils.pretrain`). A reader asks for one kind
and a record of another kind is refused with the reason, never trained as something else: a KTO
``label: false`` answer is not an SFT target, a ``chosen``/``rejected`` pair is not two SFT examples.
Fields that change a record's meaning are used or refused, never ignored (``system``, ``history``,
``tools``, ``label``; ``images``/``videos``/``audios`` are refused: multimodal data is not supported).

Record **forms** (:func:`detect_format`, per record from its keys):

============  ====================================================================================
format        record
============  ====================================================================================
``alpaca``    ``{"instruction": str, "input": str (optional, may be empty), "output": str}``, and
              LLaMA-Factory's optional columns ``system`` (str), ``history`` (``[[user, assistant],
              ...]``, earlier turns) and ``tools``
``sharegpt``  ``{"conversations": [{"from": "system"|"human"|"gpt", "value": str}, ...]}`` (role
              aliases: :data:`ROLE_ALIASES`); LLaMA-Factory's ``function_call`` / ``observation``
              roles with a ``tools`` column; an optional ``system`` column
``messages``  ``{"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}`` (OpenAI;
              ``human``/``gpt`` accepted as aliases too; ``tool`` messages and assistant
              ``tool_calls`` with ``tools``)
``firefly``   Firefly / Swift: ``{"conversation": [{"human": str, "assistant": str}, ...], "system"?}``
``prompt``    TRL: ``{"prompt", "completion"}`` (sft), ``{"prompt", "chosen", "rejected"}``
              (preference; or ``chosen``/``rejected`` alone as whole conversations: the implicit
              prompt), ``{"prompt", "completion", "label"}`` (kto); strings or lists of messages
``seed``      Stanford Alpaca's ``seed_tasks.jsonl``: ``{"instruction": str, "instances": [{"input",
              "output"}, ...]}``; each instance becomes one Alpaca record (a documented conversion)
``text``      ``{"text": str}`` (pretraining text; a ``.txt`` file is one such record)
============  ====================================================================================

LLaMA-Factory's preference and KTO forms are the SFT forms plus ``chosen`` / ``rejected`` (a
``{from, value}`` / ``{role, content}`` message after a conversation that ends with the user turn, or
two strings beside an Alpaca instruction) or a boolean ``label`` / ``kto_tag``.

Normalized records (what :func:`iter_records` yields; the toolkit works on these only):

- ``sft``: plain Alpaca records stay ``{"instruction", "input", "output"}`` (the ``alpaca`` template
  needs the input on its own); everything else becomes the conversation form ``{"messages": [...]}``
  (LLaMA-Factory's Alpaca ``system`` / ``history`` too: system, the history turns, then
  ``instruction\ninput``, as its converter does). Tool calls use one form: an assistant message
  ``{"role": "assistant", "content": str, "tool_calls": [{"type": "function", "function": {"name": str,
  "arguments": dict}}]}`` (a ShareGPT ``function_call`` value is parsed from its JSON), a ``tool``
  message ``{"role": "tool", "content": str}`` per result (``observation``), and the schemas in a
  record-level ``"tools": [{"type": "function", "function": {...}}]`` (parsed from a JSON string;
  an empty list means no tools).
- ``preference``: ``{"prompt": [messages], "chosen": [assistant message], "rejected": [assistant
  message], "tools"?}`` (TRL's conversational shape; a string prompt is one user message).
- ``kto``: ``{"prompt": [messages], "completion": [assistant message], "label": bool, "tools"?}``.
- ``pretrain``: ``{"text": str}``.

:func:`to_messages` converts any SFT form to the one conversation form, ``[{"role", "content"}, ...]`` (an
Alpaca input is joined to the instruction with ``"\n"``, as LLaMA-Factory does).

Files: JSONL (one record per line, read as a stream, blank lines ignored), a JSON array (``[...]``,
detected from the first non-blank character), Parquet (``.parquet``, read in batches) or ``.txt``
(one pretraining document per file). A file must use one format (Alpaca and seed tasks may mix;
ShareGPT, messages and Firefly may mix) and hold one kind.

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

Rules for a valid record: every text field a string; ``output`` / every assistant reply non-empty
(after stripping whitespace; a tool-call turn may be empty); user turns non-empty; an optional system message first, then user and
assistant alternating, starting with user and ending with assistant; only known roles. With tool
calls, LLaMA-Factory's order: a user message or tool results, then an assistant reply or call,
alternating (several tool results may follow one another), ending with an assistant message. A
preference / KTO prompt ends with the user turn (or a tool result) the answers reply to.

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
import re
from pathlib import Path
from typing import Any, Iterator, Mapping

__all__ = [
    "RecordError", "DataFormatError", "ROLE_ALIASES", "KINDS", "SUFFIXES", "detect_format", "detect_kind",
    "check_record", "normalize", "to_messages", "chat_of", "conversation_of", "from_seed_task", "iter_records",
    "read_records", "validate_file", "file_kind", "FileReadError", "MAX_DEPTH", "iter_parsed", "iter_raw_records",
]

ROLE_ALIASES: dict[str, str] = {
    "system": "system",
    "human": "user", "user": "user", "tool": "tool",
    "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant", "bing": "assistant",
    "bard": "assistant",
}
"""Accepted speaker names (ShareGPT ``from`` / OpenAI ``role``) and the role each means."""

_LLAMAFACTORY_ROLES = {"function_call": "assistant", "observation": "tool"}
"""LLaMA-Factory's ShareGPT tool roles: ``function_call`` (an assistant turn whose value is the call as JSON)
and ``observation`` (a tool result)."""


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
    """The record's form, from its keys: ``"alpaca"``, ``"sharegpt"``, ``"messages"``, ``"seed"``,
    ``"firefly"``, ``"prompt"`` (TRL's ``prompt`` + ``completion`` / ``chosen`` / ``rejected``) or ``"text"``.

    The form says how a record is written; its *kind* (:func:`detect_kind`) says what it trains.

    >>> detect_format({"conversations": []}), detect_format({"instruction": "x", "output": "y"})
    ('sharegpt', 'alpaca')
    >>> detect_format({"conversation": [{"human": "Hi", "assistant": "Yo"}]})
    'firefly'
    """
    if not isinstance(record, Mapping):
        raise RecordError("record", f"expected a JSON object, got {_type(record)}")
    if "messages" in record:
        return "messages"
    if "conversations" in record:
        return "sharegpt"
    if "conversation" in record:
        return "firefly"
    if "instances" in record:
        return "seed"
    if "instruction" in record or "output" in record:
        return "alpaca"
    if "prompt" in record or "chosen" in record or "rejected" in record or "completion" in record:
        return "prompt"
    if "text" in record:
        return "text"
    keys = ", ".join(sorted(map(str, record))) or "none"
    raise RecordError("record", "unknown format: expected 'instruction'/'output' (Alpaca), 'conversations' "
                                "(ShareGPT), 'messages' (OpenAI), 'conversation' (Firefly), 'prompt' + "
                                f"'completion'/'chosen'/'rejected' (TRL) or 'text' (plain text); got keys: {keys}")


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
    """An Alpaca record: Alpaca form, or the conversation form when it has a system text, history or tools."""
    instruction = _text(record, "instruction", prefix + "instruction", empty_ok=True)
    inp = _text(record, "input", prefix + "input", required=False, empty_ok=True)
    if not instruction.strip() and not inp.strip():
        raise RecordError(prefix + "instruction", "empty (and no input)")
    output = _text(record, "output", prefix + "output")
    system = _text(record, "system", prefix + "system", required=False, empty_ok=True)
    history = _history(record, prefix)
    tools = _tools(record, prefix)
    if not system and not history and tools is None:
        return {"instruction": instruction, "input": inp, "output": output}
    # LLaMA-Factory's AlpacaDatasetConverter: system, then the history pairs, then "instruction\ninput"
    out: dict = {"messages": _alpaca_prompt(record, prefix) + [{"role": "assistant", "content": output}]}
    if tools is not None:
        out["tools"] = tools
    return out


_PART_HINTS = {
    "reasoning": "put reasoning text in the assistant message's 'reasoning_content'",
    "thinking": "put reasoning text in the assistant message's 'reasoning_content'",
    "tool_call": "put tool calls in the assistant message's 'tool_calls'",
    "tool_use": "put tool calls in the assistant message's 'tool_calls'",
    "function_call": "put tool calls in the assistant message's 'tool_calls'",
    "tool_result": "put a tool's result in a message with role 'tool'",
}


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
        role = ROLE_ALIASES.get(name.lower()) or _LLAMAFACTORY_ROLES.get(name.lower())
        if role is None:
            raise RecordError(f"{f}.{role_key}", f"unknown role {name!r} (expected {names})")
        if turn.get(text_key) is not None and not isinstance(turn.get(text_key), (str, list)):
            raise RecordError(f"{f}.{text_key}", f"expected a string, got {_type(turn.get(text_key))}")
        calls = None
        if name.lower() == "function_call":  # LLaMA-Factory: the call as JSON text, an assistant turn
            calls = _calls_from_json(_text(turn, text_key, f"{f}.{text_key}"), f"{f}.{text_key}")
            turn = {**turn, text_key: ""}
        elif turn.get("tool_calls") is not None:
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
            # a tool result may also follow a plain reply (LLaMA-Factory accepts it; its glaive demo has two)
            allowed = {None: ("user",), "user": ("assistant",), "assistant": ("user", "tool"),
                       "tool": ("tool", "assistant"), "assistant+tools": ("tool",)}[prev]
            if role not in allowed:
                if prev == "assistant+tools":
                    reason = f"an assistant message with tool_calls must be followed by the tool results (role 'tool'), got {name!r}"
                elif role == "tool":
                    reason = "a tool message must follow an assistant message (its tool call) or another tool message"
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


# ---- record kinds and the other real forms (LLaMA-Factory, Firefly, TRL, tool calls) ----------------

KINDS = ("sft", "preference", "kto", "pretrain")
"""What a record trains: ``sft`` (prompt + replies, :mod:`utils.encode`), ``preference`` (a prompt with a
chosen and a rejected answer, DPO / ORPO) and ``kto`` (a prompt, one completion and a true/false label),
both :mod:`utils.preference`, and ``pretrain`` (plain text, :mod:`utils.pretrain`)."""

_KIND_HOME = {"sft": "--kind sft (utils.encode)", "preference": "--kind preference (utils.preference)",
              "kto": "--kind kto (utils.preference)", "pretrain": "--kind pretrain (utils.pretrain)"}
_CONVERSATION_KEYS = ("messages", "conversations", "conversation", "instruction", "output", "instances",
                      "prompt", "completion")
_MEDIA_KEYS = ("images", "videos", "audios", "image", "video", "audio")
_KEYS = {"sharegpt": ("conversations", "from", "value"), "messages": ("messages", "role", "content")}


def detect_kind(record: Any) -> str:
    """The record's kind (one of :data:`KINDS`), read from its keys as TRL's ``data_utils`` does.

    ``chosen`` / ``rejected`` make a preference record; a boolean ``label`` (or a ``label`` beside a
    ``completion``, or LLaMA-Factory's ``kto_tag``) a KTO record; a ``text`` field without any
    conversation field a pretraining text; everything else is SFT.

    >>> detect_kind({"prompt": "2+2?", "chosen": "4", "rejected": "5"})
    'preference'
    >>> detect_kind({"prompt": "2+2?", "completion": "5", "label": False}), detect_kind({"text": "Once upon"})
    ('kto', 'pretrain')
    """
    if not isinstance(record, Mapping):
        raise RecordError("record", f"expected a JSON object, got {_type(record)}")
    if "chosen" in record or "rejected" in record:
        return "preference"
    if "kto_tag" in record or "label" in record and ("completion" in record or isinstance(record["label"], bool)):
        return "kto"
    if "text" in record and not any(k in record for k in _CONVERSATION_KEYS):
        return "pretrain"
    return "sft"


def _wrong_kind(record: Mapping, got: str, kind: str) -> RecordError:
    """The refusal of a record whose fields say it is a ``got`` record, given to the ``kind`` path."""
    if got == "preference":
        field = "chosen" if "chosen" in record else "rejected"
        what = "a preference record (a chosen and a rejected answer to one prompt)"
        why = {"sft": "trained as an SFT example, which answer is preferred would be ignored (or the rejected "
                      "one learned)"}.get(kind, "it has two answers, not one")
    elif got == "kto":
        field = "kto_tag" if "kto_tag" in record else "label"
        value = record.get(field)
        desirable = {True: "a desirable", False: "an undesirable"}.get(value, "a labelled") if isinstance(
            value, bool) else "a labelled"
        what = f"a KTO record (label {json.dumps(value)}: {desirable} answer)"
        why = {"sft": "trained as an SFT example, an undesirable answer would be learned like a good one"}.get(
            kind, "it has one labelled completion, not a pair" if kind == "preference" else "it has a label")
    elif got == "pretrain":
        field, what = "text", "a plain-text record (pretraining text)"
        why = "it has no prompt and no reply"
    else:
        field, what = "record", "an SFT example (instruction or conversation, no chosen/rejected/label fields)"
        why = {"preference": "a preference record needs a prompt with 'chosen' and 'rejected' answers",
               "kto": "a KTO record needs a completion with a true/false 'label'",
               "pretrain": "pretraining text is a 'text' field (a .txt file, or JSONL {\"text\": ...})"}[kind]
    return RecordError(field, f"{what} given to the {kind} path: {why}; prepare it with {_KIND_HOME[got]}")


def _refuse_media(record: Mapping) -> None:
    for key in _MEDIA_KEYS:
        if record.get(key):
            raise RecordError(key, f"multimodal input ({key}) is not supported: the text would be trained without "
                                   "what it refers to; remove the field (or the record)")


def _history(record: Mapping, prefix: str = "") -> list[dict]:
    """LLaMA-Factory's Alpaca ``history``: ``[[user, assistant], ...]`` as messages (earlier turns)."""
    pairs = record.get("history")
    if pairs is None:
        return []
    if not isinstance(pairs, list):
        raise RecordError(prefix + "history", f"expected an array of [user, assistant] pairs, got {_type(pairs)}")
    messages = []
    for i, pair in enumerate(pairs):
        f = f"{prefix}history[{i}]"
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            got = f"{len(pair)} items" if isinstance(pair, (list, tuple)) else _type(pair)
            raise RecordError(f, f"expected a [user, assistant] pair, got {got}")
        for j, role in enumerate(("user", "assistant")):
            if not isinstance(pair[j], str):
                raise RecordError(f"{f}[{j}]", f"expected a string ({role} text), got {_type(pair[j])}")
            if not pair[j].strip():
                raise RecordError(f"{f}[{j}]", f"empty ({role} text)")
            messages.append({"role": role, "content": pair[j]})
    return messages


def _alpaca_prompt(record: Mapping, prefix: str = "") -> list[dict]:
    """The prompt of an Alpaca-form record as messages: system, history, ``instruction\\ninput``."""
    instruction = _text(record, "instruction", prefix + "instruction", empty_ok=True)
    inp = _text(record, "input", prefix + "input", required=False, empty_ok=True)
    if not instruction.strip() and not inp.strip():
        raise RecordError(prefix + "instruction", "empty (and no input)")
    system = _text(record, "system", prefix + "system", required=False, empty_ok=True)
    user = instruction + ("\n" + inp if inp else "") if instruction else inp
    return (([{"role": "system", "content": system}] if system else []) + _history(record, prefix)
            + [{"role": "user", "content": user}])


def _tools(record: Mapping, prefix: str = "") -> list[dict] | None:
    """The ``tools`` column (a JSON string or a list of function schemas) as OpenAI-style tool dicts
    ``{"type": "function", "function": {"name", "description", "parameters"}}``; None when absent or empty."""
    value = record.get("tools")
    field = prefix + "tools"
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise RecordError(field, f"not valid JSON ({e.msg} at column {e.colno})") from None
    if isinstance(value, Mapping):
        value = [value]
    if not isinstance(value, list):
        raise RecordError(field, f"expected an array of function schemas (or a JSON string of one), got {_type(value)}")
    tools = []
    for i, tool in enumerate(value):
        f = f"{field}[{i}]"
        if not isinstance(tool, Mapping):
            raise RecordError(f, f"expected a function schema object, got {_type(tool)}")
        fn, f = (tool.get("function"), f + ".function") if "function" in tool else (tool, f)
        if not isinstance(fn, Mapping):
            raise RecordError(f, f"expected a function schema object, got {_type(fn)}")
        if not isinstance(fn.get("name"), str) or not fn["name"].strip():
            raise RecordError(f + ".name", "missing" if "name" not in fn else "expected a non-empty string")
        if fn.get("parameters") is not None and not isinstance(fn["parameters"], Mapping):
            raise RecordError(f + ".parameters", f"expected a JSON schema object, got {_type(fn['parameters'])}")
        tools.append({"type": "function", "function": dict(fn)})
    return tools or None


def _calls_from_json(value: str, field: str) -> list[dict]:
    """A LLaMA-Factory ``function_call`` value: JSON ``{"name", "arguments"}`` (or a list of them)."""
    try:
        obj = json.loads(value)
    except json.JSONDecodeError as e:
        raise RecordError(field, 'a function_call value must be JSON {"name": ..., "arguments": {...}}; not valid '
                                 f"JSON ({e.msg} at column {e.colno})") from None
    items = obj if isinstance(obj, list) else [obj]
    if not items:
        raise RecordError(field, "an empty list of function calls")
    return _tool_calls(items, field)


def _conversation(record: Mapping, key: str, role_key: str, text_key: str) -> dict:
    """``{"messages": [...], "tools"?: [...]}``: a conversation record in the one normalized form (with
    LLaMA-Factory's ``system`` column in front and its ``tools`` column parsed)."""
    out: dict = {"messages": _with_system_column(record, _turns(record, key, role_key, text_key), key)}
    tools = _tools(record)
    if tools:
        out["tools"] = tools
    return out


def _with_system_column(record: Mapping, messages: list[dict], key: str) -> list[dict]:
    """LLaMA-Factory's ``system`` column in front of a conversation (refused if it has another one)."""
    system = _text(record, "system", "system", required=False, empty_ok=True)
    if not system:
        return messages
    if messages and messages[0]["role"] == "system":
        if messages[0]["content"] == system:
            return messages
        raise RecordError("system", f"two different system texts (the 'system' field and {key}[0]); keep one")
    return [{"role": "system", "content": system}] + messages


def _firefly(record: Mapping) -> dict:
    """Firefly / Swift: ``{"conversation": [{"human", "assistant"}, ...], "system"?}`` as messages."""
    turns = record["conversation"]
    if not isinstance(turns, list):
        raise RecordError("conversation", f"expected an array, got {_type(turns)}")
    if not turns:
        raise RecordError("conversation", "empty conversation")
    messages = []
    for i, turn in enumerate(turns):
        f = f"conversation[{i}]"
        if not isinstance(turn, Mapping):
            raise RecordError(f, f"expected an object with 'human' and 'assistant', got {_type(turn)}")
        messages.append({"role": "user", "content": _text(turn, "human", f + ".human")})
        messages.append({"role": "assistant", "content": _text(turn, "assistant", f + ".assistant")})
    return {"messages": _with_system_column(record, messages, "conversation")}


def _renamed(error: RecordError, key: str, names: list[str]) -> RecordError:
    """``error`` about ``key[i]...`` of a joined conversation, named after where turn ``i`` came from."""
    m = re.match(rf"{re.escape(key)}\[(\d+)\](.*)", error.field, re.S)
    if m and int(m.group(1)) < len(names):
        return RecordError(names[int(m.group(1))] + m.group(2), error.reason)
    if error.field == key:
        return RecordError(re.sub(r"\[\d+\]$", "", names[0]), error.reason)
    return error


def _joined(turns: list, names: list[str], key: str, extra: Mapping) -> dict:
    """Validate ``turns`` (raw turns from several fields) as one SFT conversation; errors use ``names``."""
    try:
        _, out = check_record({key: turns, **extra})
    except RecordError as e:
        raise _renamed(e, key, names) from None
    return out[0]


def _side_turns(record: Mapping, side: str, role_key: str, text_key: str) -> tuple[list, list[str]]:
    """The answer in ``record[side]`` as raw turns: a string, one message, or a list of one message."""
    if side not in record or record[side] is None:
        raise RecordError(side, "missing")
    value = record[side]
    if isinstance(value, str):
        _text(record, side, side)
        return [{role_key: "assistant", text_key: value}], [side]
    if isinstance(value, Mapping):
        return [value], [side]
    if isinstance(value, list):
        if len(value) != 1:
            raise RecordError(side, f"expected one assistant message, got {len(value)} messages")
        return [value[0]], [f"{side}[0]"]
    raise RecordError(side, f"expected a string or an assistant message, got {_type(value)}")


def _prompt_turns(record: Mapping, fmt: str, answer: str) -> tuple[list, list[str], str, str, str, dict]:
    """``(raw prompt turns, their field names, key, role_key, text_key, extra fields)`` of a preference /
    KTO record whose prompt is a conversation (LLaMA-Factory ShareGPT / OpenAI) or TRL's ``prompt``."""
    extra = {k: record[k] for k in ("tools", "system") if k in record}
    if fmt in _KEYS:
        key, role_key, text_key = _KEYS[fmt]
        turns = record[key]
        if not isinstance(turns, list):
            raise RecordError(key, f"expected an array, got {_type(turns)}")
        names = [f"{key}[{i}]" for i in range(len(turns))]
    else:
        key, role_key, text_key = _KEYS["messages"]
        prompt = record.get("prompt")
        if prompt is None:
            raise RecordError("prompt", "missing")
        if isinstance(prompt, str):
            turns, names = [{"role": "user", "content": _text(record, "prompt", "prompt")}], ["prompt"]
        elif isinstance(prompt, list):
            turns, names = prompt, [f"prompt[{i}]" for i in range(len(prompt))]
        else:
            raise RecordError("prompt", f"expected a string or an array of messages, got {_type(prompt)}")
    if not turns:
        raise RecordError(re.sub(r"\[\d+\]$", "", names[0]) if names else key, "empty prompt")
    last = turns[-1]
    if isinstance(last, Mapping):
        who = str(last.get(role_key, "")).lower()
        if ROLE_ALIASES.get(who, who) not in ("user", "observation", "tool"):
            raise RecordError(f"{names[-1]}.{role_key}", f"the prompt must end with a user turn ({answer} to it), "
                                                         f"got {last.get(role_key)!r}")
    return list(turns), names, key, role_key, text_key, extra


def _preference(record: Mapping, fmt: str) -> dict:
    """``{"prompt": [messages], "chosen": [assistant message], "rejected": [assistant message], "tools"?}``."""
    if fmt == "alpaca":  # LLaMA-Factory Alpaca ranking: instruction / input / system / history + two strings
        prompt = _alpaca_prompt(record)
        out = {"prompt": prompt}
        for side in ("chosen", "rejected"):
            out[side] = [{"role": "assistant", "content": _text(record, side, side)}]
        tools = _tools(record)
        return {**out, "tools": tools} if tools else out
    if fmt == "prompt" and "prompt" not in record:
        return _implicit_preference(record)
    if fmt not in _KEYS and fmt != "prompt":
        raise RecordError("record", f"a preference record in the {fmt!r} form is not supported; use TRL's "
                                    "prompt/chosen/rejected or LLaMA-Factory's conversations/chosen/rejected")
    turns, names, key, role_key, text_key, extra = _prompt_turns(record, fmt, "the chosen and rejected answers reply")
    convs = {}
    for side in ("chosen", "rejected"):
        reply, reply_names = _side_turns(record, side, role_key, text_key)
        convs[side] = _joined(turns + reply, names + reply_names, key, extra)
    out = {"prompt": convs["chosen"]["messages"][:-1], "chosen": convs["chosen"]["messages"][-1:],
           "rejected": convs["rejected"]["messages"][-1:]}
    if "tools" in convs["chosen"]:
        out["tools"] = convs["chosen"]["tools"]
    return out


def _implicit_preference(record: Mapping) -> dict:
    """TRL's implicit prompt: ``chosen`` and ``rejected`` are whole conversations sharing their prompt."""
    chosen, rejected = record.get("chosen"), record.get("rejected")
    for side, value in (("chosen", chosen), ("rejected", rejected)):
        if value is None:
            raise RecordError(side, "missing")
        if not isinstance(value, list):
            raise RecordError("prompt", "missing: without a prompt, chosen and rejected must be whole conversations "
                                        f"(arrays of messages) sharing the prompt; {side} is {_type(value)}")
    n = 0
    while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
        n += 1
    if n == 0 or len(chosen) != n + 1 or len(rejected) != n + 1:
        raise RecordError("prompt", "missing: chosen and rejected must be the same conversation up to their last "
                                    f"(assistant) message; they share {n} messages, then have {len(chosen) - n} and "
                                    f"{len(rejected) - n}")
    return _preference({"prompt": chosen[:n], "chosen": chosen[n:], "rejected": rejected[n:],
                        **{k: record[k] for k in ("tools", "system") if k in record}}, "prompt")


def _kto(record: Mapping, fmt: str) -> dict:
    """``{"prompt": [messages], "completion": [assistant message], "label": bool, "tools"?}``."""
    label_key = "kto_tag" if "kto_tag" in record else "label"
    label = record.get(label_key)
    if label is None:
        raise RecordError(label_key, "missing (true: a desirable completion, false: an undesirable one)")
    if not isinstance(label, bool):
        raise RecordError(label_key, f"expected true or false (is the completion a desirable answer?), got {_type(label)}")
    if fmt == "alpaca":
        conv = {"messages": _alpaca_prompt(record) + [{"role": "assistant", "content": _text(record, "output", "output")}]}
        tools = _tools(record)
        if tools:
            conv["tools"] = tools
    elif fmt == "firefly":
        conv = _firefly(record)
    elif fmt in _KEYS:  # LLaMA-Factory: a conversation ending with the labelled reply
        key = _KEYS[fmt][0]
        conv = _joined(record[key], [f"{key}[{i}]" for i in range(len(record[key]))] if isinstance(
            record[key], list) else [key], key, {k: record[k] for k in ("tools", "system") if k in record})
    elif fmt == "prompt":
        turns, names, key, role_key, text_key, extra = _prompt_turns(record, fmt, "the completion replies")
        reply, reply_names = _side_turns(record, "completion", role_key, text_key)
        conv = _joined(turns + reply, names + reply_names, key, extra)
    else:
        raise RecordError("record", f"a KTO record in the {fmt!r} form is not supported; use TRL's "
                                    "prompt/completion/label")
    out = {"prompt": conv["messages"][:-1], "completion": conv["messages"][-1:], "label": label}
    if "tools" in conv:
        out["tools"] = conv["tools"]
    return out


def _prompt_completion(record: Mapping) -> dict:
    """TRL's prompt-completion SFT form (strings, or lists of messages) as a conversation."""
    turns, names, key, role_key, text_key, extra = _prompt_turns(record, "prompt", "the completion replies")
    reply, reply_names = _side_turns(record, "completion", role_key, text_key)
    return _joined(turns + reply, names + reply_names, key, extra)


def check_record(record: Any, kind: str | None = "sft") -> tuple[str, list[dict]]:
    """Validate one record: ``(format, normalized records)``; raises :class:`RecordError` (no location).

    ``kind`` (one of :data:`KINDS`, or None to take it from the record's keys, :func:`detect_kind`) is
    what the caller will train; a record of another kind is refused with the reason (a KTO record's
    ``label: false`` answer is never trained as an SFT target). Normalized records:

    - ``sft``: ``{"instruction", "input", "output"}`` (plain Alpaca; a seed task gives one per instance) or
      ``{"messages": [...], "tools"?: [...]}`` (everything else: ShareGPT, OpenAI, Firefly, TRL
      prompt/completion, Alpaca with LLaMA-Factory's ``system`` / ``history`` / ``tools`` columns);
    - ``preference``: ``{"prompt": [messages], "chosen": [message], "rejected": [message], "tools"?}``;
    - ``kto``: ``{"prompt": [messages], "completion": [message], "label": bool, "tools"?}``;
    - ``pretrain``: ``{"text": str}``.

    >>> check_record({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]})[0]
    'messages'
    >>> check_record({"instruction": "Hi", "output": "Hello", "history": [["Q", "A"]]})[1]
    [{'messages': [{'role': 'user', 'content': 'Q'}, {'role': 'assistant', 'content': 'A'}, {'role': 'user', 'content': 'Hi'}, {'role': 'assistant', 'content': 'Hello'}]}]
    >>> check_record({"prompt": "Hi", "completion": "Bad answer", "label": False})
    Traceback (most recent call last):
    ...
    utils.formats.RecordError: label: a KTO record (label false: an undesirable answer) given to the sft path: trained as an SFT example, an undesirable answer would be learned like a good one; prepare it with --kind kto (utils.preference)
    """
    got = detect_kind(record)
    if kind is None:
        kind = got
    elif kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)} or None, got {kind!r}")
    if got != kind:
        raise _wrong_kind(record, got, kind)
    _refuse_media(record)
    fmt = detect_format(record)
    if kind == "preference":
        return fmt, [_preference(record, fmt)]
    if kind == "kto":
        return fmt, [_kto(record, fmt)]
    if kind == "pretrain":
        return fmt, [{"text": _text(record, "text", "text")}]
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
    if fmt == "firefly":
        return fmt, [_firefly(record)]
    if fmt == "prompt":
        return fmt, [_prompt_completion(record)]
    return fmt, [_conversation(record, *_KEYS[fmt])]


def from_seed_task(record: Mapping) -> list[dict]:
    """A Stanford seed task (``instruction`` + ``instances``) as Alpaca records, one per instance.

    >>> from_seed_task({"instruction": "Add", "instances": [{"input": "1+1", "output": "2"}]})
    [{'instruction': 'Add', 'input': '1+1', 'output': '2'}]
    """
    fmt, out = check_record(record)
    if fmt != "seed":
        raise RecordError("instances", "missing (not a seed task)")
    return out


def normalize(record: Any, kind: str | None = "sft") -> dict:
    """One validated record in normalized form (Alpaca stays Alpaca, conversations become messages).

    >>> normalize({"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yo"}]})
    {'messages': [{'role': 'user', 'content': 'Hi'}, {'role': 'assistant', 'content': 'Yo'}]}
    """
    fmt, out = check_record(record, kind)
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


_GROUPS = {"alpaca": "alpaca", "seed": "alpaca", "sharegpt": "messages", "messages": "messages",
           "firefly": "messages", "prompt": "prompt", "text": "text"}
SUFFIXES = (".jsonl", ".json", ".parquet", ".txt")
"""File types :func:`iter_records` reads (anything else is read as JSONL / JSON array)."""


MAX_DEPTH = 100
"""Deepest nesting of arrays / objects a record may have (real records nest a few levels; a deeper one is
refused with its place rather than crashing the JSON parser or a later step)."""

_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32 (little-endian)"), (b"\x00\x00\xfe\xff", "UTF-32 (big-endian)"),
         (b"\xff\xfe", "UTF-16 (little-endian)"), (b"\xfe\xff", "UTF-16 (big-endian)"))
_MAGIC = ((b"\x1f\x8b", "a gzip-compressed file: decompress it first (gunzip)"),
          (b"\x28\xb5\x2f\xfd", "a zstd-compressed file: decompress it first (unzstd)"),
          (b"PK\x03\x04", "a zip archive: extract the data file first"),
          (b"PAR1", "a Parquet file: name it *.parquet"))
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


class FileReadError(OSError):
    """A data file that cannot be read at all (permission denied, an I/O error): not a record problem, so
    ``on_error="skip"`` does not skip it. ``str``: ``"FILE: cannot read it: reason"``; ``errno`` and
    ``filename`` are the underlying error's."""

    def __init__(self, path: str, error: OSError):
        reason = error.strerror or str(error)
        super().__init__(error.errno, f"cannot read it: {reason}", path)
        self.path = path

    def __str__(self) -> str:
        return f"{self.path}: {self.strerror}"


def _open(path: Path):
    """The one place data files are opened (binary: the readers decode and locate bad bytes themselves)."""
    return open(path, "rb")


def _hint_encoding(raw: bytes) -> str:
    """What a line that is not UTF-8 probably is, and how to convert it."""
    try:
        text = raw.decode("gb18030")
        if re.search("[\u4e00-\u9fff]", text):
            return "it decodes as GBK / GB18030 (Chinese): convert the file, e.g. iconv -f GB18030 -t UTF-8"
    except UnicodeDecodeError:
        pass
    try:
        raw.decode("cp1252")
        return ("it decodes as Latin-1 / Windows-1252: convert the file, e.g. iconv -f WINDOWS-1252 -t UTF-8 "
                "(if that is its encoding)")
    except UnicodeDecodeError:
        return "convert the file to UTF-8 from the encoding it was written in (e.g. with iconv)"


def _utf8_name(name: str) -> str:
    stem, dot, suffix = os.path.basename(name).rpartition(".")
    return f"{stem}.utf8.{suffix}" if dot else f"{suffix}.utf8"


def _not_utf8(raw: bytes, error: UnicodeDecodeError, offset: int) -> RecordError:
    column = len(raw[:error.start].decode("utf-8", errors="replace")) + 1
    bad = raw[error.start:error.end].hex(" ").upper()
    return RecordError("record", f"not UTF-8 text: byte {bad} at byte offset {offset + error.start} of the file "
                                 f"(column {column}): {error.reason}; {_hint_encoding(raw)}")


def _file_encoding_problem(head: bytes, name: str) -> str | None:
    """Why a file cannot be UTF-8 JSON / text at all, from its first bytes (a UTF-16 BOM, gzip, NULs)."""
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return (f"the file is {encoding} text (it starts with that byte-order mark), not UTF-8: convert it, "
                    f"e.g. iconv -f {encoding.split()[0]} -t UTF-8 {name} > {_utf8_name(name)}")
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return f"not text: this is {what}"
    if b"\x00" in head:
        nul = head.index(b"\x00")
        return (f"not UTF-8 text: a NUL byte at byte offset {nul}; the file looks like UTF-16 without a byte-order "
                "mark (convert it, e.g. iconv -f UTF-16LE -t UTF-8) or is not a text file")
    return None


def _value_problem(value: Any, raw: bytes | None) -> RecordError | None:
    """A lone surrogate (``"\\ud800"``: valid JSON, not valid Unicode) or nesting deeper than :data:`MAX_DEPTH`
    anywhere in a parsed record, with the field's path; walked without recursion, only when the raw text
    could hold either."""
    surrogates = raw is None or _SURROGATE_ESCAPE.search(raw) is not None
    deep = raw is None or raw.count(b"[") + raw.count(b"{") > MAX_DEPTH
    if not surrogates and not deep:
        return None
    stack = [(value, "", 1)]
    while stack:
        item, where, depth = stack.pop()
        if deep and depth > MAX_DEPTH:
            top = re.split(r"[.\[]", where, maxsplit=1)[0] if where and not where.startswith("record[") else "record"
            return RecordError(top, f"nested more than {MAX_DEPTH} levels deep (arrays / objects); a training "
                                    "record nests a few levels: check how it was written")
        if isinstance(item, str):
            if surrogates:
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError as e:
                    return RecordError(where or "record", f"lone surrogate \\u{ord(item[e.start]):04x} at character "
                                                          f"{e.start}: valid JSON but not valid Unicode (half of a "
                                                          "UTF-16 pair, e.g. an emoji cut in two by the program that "
                                                          "wrote the file); fix or remove the text")
        elif isinstance(item, dict):
            for key, sub in item.items():
                path = f"{where}.{key}" if where else str(key)
                stack.append((sub, path, depth + 1))
                if surrogates:
                    stack.append((key, path, depth + 1))
        elif isinstance(item, list):
            stack.extend((sub, f"{where or 'record'}[{i}]", depth + 1) for i, sub in enumerate(item))
    return None


def _parse(raw: bytes, text: str) -> Any:
    """A JSON value, or a :class:`RecordError` saying why the text is not one."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        return RecordError("record", f"not valid JSON ({e.msg} at column {e.colno})")
    except RecursionError:
        return RecordError("record", f"nested more than {MAX_DEPTH} levels deep (arrays / objects): too deep to "
                                     "parse; a training record nests a few levels: check how it was written")
    return _value_problem(value, raw) or value



def _decode_whole(raw: bytes, name: str, start: int):
    """``(text, None)``, or ``(None, (where, error))`` for the first byte that is not UTF-8: its line, and its
    byte offset in the file (``raw`` begins ``start`` bytes into it, after a byte-order mark)."""
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        begin = raw.rfind(b"\n", 0, e.start) + 1
        end = raw.find(b"\n", e.start)
        shifted = UnicodeDecodeError(e.encoding, e.object, e.start - begin, e.end - begin, e.reason)
        return None, (f"{name}:{line}", _not_utf8(raw[begin:end if end >= 0 else len(raw)], shifted, start + begin))

def iter_parsed(path: str | os.PathLike) -> Iterator[tuple[str, Any]]:
    """``(where, parsed or RecordError)`` for each record of a file, streamed, before any check of its fields
    (for files that are not training data, e.g. an evaluation set of any JSON shape; training data is read
    with :func:`iter_raw_records` / :func:`iter_records`).

    JSONL or a JSON array (from the first non-blank character), Parquet (``.parquet``, read in batches
    with pyarrow; null columns dropped from each row) or plain text (``.txt``: the whole file is one
    ``{"text": ...}`` record -- one document per file). Text must be UTF-8 (a UTF-8 byte-order mark is
    skipped); a line that is not gives its byte offset and the likely encoding, a UTF-16 / compressed file
    one problem for the whole file. A file that cannot be read raises :class:`FileReadError`.
    """
    name = os.fspath(path)
    try:
        yield from _raw_records(Path(path), name)
    except FileReadError:
        raise
    except OSError as error:
        raise FileReadError(name, error) from None


def _raw_records(path: Path, name: str) -> Iterator[tuple[str, Any]]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(path)
        except Exception as e:  # pyarrow raises ArrowInvalid / OSError with a message
            if isinstance(e, OSError) and e.errno:
                raise
            yield name, RecordError("record", f"not a readable Parquet file ({e})")
            return
        index = 0
        for batch in parquet.iter_batches(batch_size=1000):
            try:
                rows = batch.to_pylist()
            except UnicodeDecodeError as e:
                yield f"{name}:[{index}]", RecordError("record", f"a string column is not valid UTF-8 ({e.reason})")
                return
            for row in rows:
                yield f"{name}:[{index}]", {k: v for k, v in row.items() if v is not None}
                index += 1
        return
    with _open(path) as f:
        head = f.read(4096)
        problem = _file_encoding_problem(head, name)
        if problem:
            yield f"{name}:1", RecordError("file", problem)
            return
        start = 3 if head.startswith(b"\xef\xbb\xbf") else 0
        if suffix == ".txt":
            raw = head[start:] + f.read()
            text, bad = _decode_whole(raw, name, start)
            if bad:
                yield bad
                return
            yield f"{name}:1", {"text": text}
            return
        first = head[start:].lstrip()[:1]
        f.seek(start)
        if first == b"[":
            raw = f.read()
            text, bad = _decode_whole(raw, name, start)
            if bad:
                yield bad
                return
            try:
                data = json.loads(text)
            except json.JSONDecodeError as e:
                yield f"{name}:{e.lineno}", RecordError("record", f"not valid JSON ({e.msg} at column {e.colno})")
                return
            except RecursionError:
                yield f"{name}:1", RecordError("record", f"nested more than {MAX_DEPTH} levels deep (arrays / "
                                                         "objects): too deep to parse")
                return
            scan = _SURROGATE_ESCAPE.search(raw) is not None or raw.count(b"[") + raw.count(b"{") > MAX_DEPTH
            for i, rec in enumerate(data):
                yield f"{name}:[{i}]", (_value_problem(rec, None) if scan else None) or rec
            return
        offset = start
        for lineno, raw in enumerate(f, 1):
            here = offset
            offset += len(raw)
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield f"{name}:{lineno}", _not_utf8(raw, e, here)
                continue
            yield f"{name}:{lineno}", _parse(raw, text.rstrip("\r\n"))


def file_kind(path: str | os.PathLike) -> str | None:
    """The kind (:func:`detect_kind`) of a file's first record that is a JSON object; None if it has none.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "d.jsonl"
    >>> _ = p.write_text('{"prompt": "Hi", "chosen": "Hello", "rejected": "Go away"}\\n')
    >>> file_kind(p)
    'preference'
    """
    for _, rec in iter_parsed(path):
        if isinstance(rec, Mapping):
            return detect_kind(rec)
    return None


def iter_raw_records(path: str | os.PathLike, *, kind: str | None = "sft", on_error: str = "raise",
                     problems: list[RecordError] | None = None) -> Iterator[tuple[str, Any, list[dict]]]:
    """``(where, raw, normalized)`` for each valid record of a file: the record as it is in the file, and the
    normalized record(s) it stands for (a seed task with several instances gives several).

    Every record is checked (:func:`check_record`), and a file holds one kind and one format of record:
    ``kind`` is what the records must be (:data:`KINDS`; default ``"sft"``), ``None`` takes it from the
    first record's keys (:func:`detect_kind`) and refuses later records of another kind. ``on_error``:
    ``"raise"`` raises the first :class:`RecordError` (located ``FILE:LINE`` / ``FILE:[INDEX]``); ``"skip"``
    skips bad records and appends each problem to ``problems``. Tools that write records back as they were
    (``python -m utils curate``) use ``raw``; :func:`iter_records` yields the normalized ones.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "d.jsonl"
    >>> _ = p.write_text('{"instruction": "Hi", "output": "Hello", "input": ""}\\n')
    >>> [(where.rsplit(":", 1)[1], raw, out) for where, raw, out in iter_raw_records(p)]  # doctest: +NORMALIZE_WHITESPACE
    [('1', {'instruction': 'Hi', 'output': 'Hello', 'input': ''},
      [{'instruction': 'Hi', 'input': '', 'output': 'Hello'}])]
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)} or None, got {kind!r}")
    group = None
    file_kind_ = kind
    for where, rec in iter_parsed(path):
        try:
            if isinstance(rec, RecordError):
                raise rec
            if kind is None:
                got = detect_kind(rec)
                if file_kind_ is None:
                    file_kind_ = got
                elif got != file_kind_:
                    raise RecordError("record", f"a {got} record in a file of {file_kind_} records (the kind of its "
                                                "first record, read from the keys); use one kind per file")
            fmt, out = check_record(rec, file_kind_)
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
        yield where, rec, out


def iter_records(path: str | os.PathLike, *, kind: str | None = "sft", on_error: str = "raise",
                 problems: list[RecordError] | None = None, with_location: bool = False) -> Iterator[Any]:
    """Stream the normalized records of a JSONL / JSON-array / Parquet / ``.txt`` file (see the module docstring).

    ``kind``, ``on_error`` and ``problems`` as in :func:`iter_raw_records` (each record checked; one kind and
    one format per file). ``with_location=True`` yields ``(where, record)`` pairs (``where`` as in errors; a
    seed task's instances share their line), so later errors can be placed too.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "d.jsonl"
    >>> _ = p.write_text('{"instruction": "Hi", "output": "Hello"}\\n{"instruction": "Hi"}\\n')
    >>> bad = []
    >>> len(list(iter_records(p, on_error="skip", problems=bad))), str(bad[0]).split(": ", 1)[1]
    (1, 'output: missing')
    """
    for where, _, out in iter_raw_records(path, kind=kind, on_error=on_error, problems=problems):
        if with_location:
            for rec in out:
                yield where, rec
        else:
            yield from out


def read_records(path: str | os.PathLike, *, kind: str | None = "sft", on_error: str = "raise",
                 problems: list[RecordError] | None = None) -> list[dict]:
    """All normalized records of a file, as a list (see :func:`iter_records`)."""
    return list(iter_records(path, kind=kind, on_error=on_error, problems=problems))


def validate_file(path: str | os.PathLike, kind: str | None = "sft") -> list[RecordError]:
    """Every problem in a file (empty list when it is valid), one :class:`RecordError` each."""
    problems: list[RecordError] = []
    for _ in iter_records(path, kind=kind, on_error="skip", problems=problems):
        pass
    return problems
