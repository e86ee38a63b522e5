"""The data contract (README 设计与数据契约, rules 1-6) as one checker, shared by the encode tests.

Everything expected here is computed independently of :mod:`utils.encode` and of the template code's
reply finding: for ``chat_template`` the prompt ids of reply k come from
``tokenizer.apply_chat_template(history before it, add_generation_prompt=True, **kwargs)`` and the reply
text from the rendering of the conversation that ends with it, cut after the end-of-turn marker written
out per tokenizer in :data:`END_OF_TURN` (not found by the code under test); for the text templates,
from calling the tokenizer on :func:`utils.templates.render_prompt` and the template's rendered text.
"""

from __future__ import annotations

import os
import unicodedata

from utils.formats import chat_of, conversation_of
from utils.templates import get_template, render_prompt, segments

END_OF_TURN = {"qwen2": "<|im_end|>", "qwen2_5": "<|im_end|>", "qwen3": "<|im_end|>", "llama3_1": "<|eot_id|>",
               "mistral": "</s>", "tiny": "</s>", "phi3_like": "<|end|>", "qwen2_5_base": "<|im_end|>"}
"""The token each chat template writes after every assistant reply, read off the templates by hand."""
REPLY_TEXT = {"mistral": lambda content: " " + content.strip()}
"""How a template writes a reply after its generation prompt (read off by hand; used where the prompt is
not a prefix of the conversation that ends with the reply)."""


def tokenizer_name(tokenizer) -> str:
    name = getattr(tokenizer, "test_name", None)
    if name:
        return name
    base = os.path.basename(str(tokenizer.name_or_path).rstrip("/"))
    return base if base in END_OF_TURN else "tiny"


def history(example: dict, k: int) -> dict:
    """The conversation up to and including the (k+1)-th assistant reply, as ``{"messages"}``."""
    if "instruction" in example:
        return example
    system, turns = conversation_of(example)
    msgs = [{"role": "system", "content": system}] if system else []
    for user, reply in turns[:k + 1]:
        msgs += [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
    return {"messages": msgs}


def supervised_runs(labels: list[int]) -> list[tuple[int, int]]:
    """Maximal ``[start, end)`` runs of positions whose label is not -100."""
    runs, start = [], None
    for i, lab in enumerate(list(labels) + [-100]):
        if lab != -100 and start is None:
            start = i
        elif lab == -100 and start is not None:
            runs.append((start, i))
            start = None
    return runs


def decode_continuation(tokenizer, ids: list[int]) -> str:
    """Text of ``ids`` as they appear mid-text (decoded after an EOS, so no leading-space stripping)."""
    text = tokenizer.decode([tokenizer.eos_token_id] + list(ids), skip_special_tokens=False,
                            clean_up_tokenization_spaces=False)
    assert text.startswith(tokenizer.eos_token), text
    return text[len(tokenizer.eos_token):]


def boundary_merges(tokenizer, example: dict, template) -> list[bool]:
    """Per reply: does whole-text tokenization merge the prompt's end with the reply's start?"""
    tmpl = get_template(template)
    segs = segments(example, tmpl, tokenizer)
    out, text = [], ""
    for s in segs:
        if s.train:
            before = tokenizer(text, add_special_tokens=False)["input_ids"]
            both = tokenizer(text + s.text, add_special_tokens=False)["input_ids"]
            out.append(both[:len(before)] != before)
        text += s.text
    return out


def expected_replies(example: dict, tokenizer, template, chat_template_kwargs=None) -> list[tuple[list[int], str, str]]:
    """``(prompt ids inference uses, reply text with its end marker, end marker)`` per assistant reply."""
    tmpl = get_template(template)
    kwargs = dict(chat_template_kwargs or {})
    if tmpl.name != "chat_template":
        replies = [s.text for s in segments(example, tmpl, tokenizer) if s.train]
        out = []
        for k, reply in enumerate(replies):
            prompt = render_prompt(history(example, k), tmpl, tokenizer)
            out.append((tokenizer(prompt, add_special_tokens=tmpl.add_special_tokens)["input_ids"], reply,
                        tokenizer.eos_token))
        return out
    marker = END_OF_TURN[tokenizer_name(tokenizer)]
    messages, tools = chat_of(example)
    if tools:
        kwargs["tools"] = tools
    out = []
    for j, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prompt = tokenizer.apply_chat_template(messages[:j], add_generation_prompt=True, tokenize=False, **kwargs)
        ids = tokenizer.apply_chat_template(messages[:j], add_generation_prompt=True, tokenize=True,
                                            return_dict=True, **kwargs)["input_ids"]
        closed = tokenizer.apply_chat_template(messages[:j + 1], tokenize=False, **kwargs)
        if closed.startswith(prompt):
            region = closed[len(prompt):]
            reply = region[:region.index(marker) + len(marker)]
        else:  # the prompt is rendered differently (Mistral's system text goes into the last user turn only)
            reply = REPLY_TEXT[tokenizer_name(tokenizer)](m["content"]) + marker
            assert reply in closed, (reply, closed)
        out.append((list(ids), reply, marker))
    return out


def check_rows(rows: list[dict], example: dict, tokenizer, template, chat_template_kwargs=None) -> None:
    """Assert rules 1-6 on all rows of one record: every reply supervised in exactly one row, with the
    prompt ids inference gives it before it, its text and end marker exactly, nothing else supervised."""
    want = expected_replies(example, tokenizer, template, chat_template_kwargs)
    seen = [0] * len(want)
    for row in rows:
        ids = _check_row_shape(row, tokenizer)
        for start, end in supervised_runs(row["labels"]):
            matches = [k for k, (p, _, _) in enumerate(want) if ids[:start] == p]
            assert matches, ("the ids before a supervised run are no reply's inference prompt",
                             tokenizer.decode(ids[:start])[-80:])
            k = matches[-1]
            _check_reply(ids[start:end], want[k][1], want[k][2], tokenizer)
            seen[k] += 1
    assert seen == [1] * len(want), ("every reply supervised exactly once", seen)


def check_row(row: dict | None, example: dict, tokenizer, template, *, truncated: bool = False,
              chat_template_kwargs=None) -> None:
    """Assert rules 1-6 on the one row of a one-row record, token by token."""
    assert row is not None
    if not truncated:
        check_rows([row], example, tokenizer, template, chat_template_kwargs)
        return
    want = expected_replies(example, tokenizer, template, chat_template_kwargs)
    ids = _check_row_shape(row, tokenizer)
    runs = supervised_runs(row["labels"])
    assert len(runs) <= len(want)
    for k, (start, end) in enumerate(runs):
        assert ids[:start] == want[k][0], k
        if k == len(runs) - 1 and end == len(ids) and ids[end - 1] != tokenizer.convert_tokens_to_ids(want[k][2]):
            text = decode_continuation(tokenizer, ids[start:end])
            assert want[k][2] not in text
            assert _norm(want[k][1]).startswith(_norm(text)), (text, want[k][1])
        else:
            _check_reply(ids[start:end], want[k][1], want[k][2], tokenizer)


def _check_row_shape(row: dict, tokenizer) -> list[int]:
    ids, labels, mask = row["input_ids"], row["labels"], row["attention_mask"]
    n = len(ids)
    # rule 1: labels are ids or -100, not shifted; attention_mask from the length
    assert len(labels) == n == len(mask) and all(m == 1 for m in mask)
    assert all(lab == -100 or lab == i for i, lab in zip(ids, labels))
    # rule 5: no row without supervision
    assert any(lab != -100 for lab in labels)
    # rule 4: at most one BOS (GPT-2's BOS is also its EOS: count only non-reply positions)
    bos = tokenizer.bos_token_id
    if bos is not None:
        sup = {i for s, e in supervised_runs(labels) for i in range(s, e)}
        assert sum(1 for i, t in enumerate(ids) if t == bos and i not in sup) <= 1
    return list(ids)


def _check_reply(run: list[int], expected: str, marker: str, tokenizer) -> None:
    # rules 2 and 4: the reply ends with exactly one end-of-turn marker, supervised
    marker_id = tokenizer.convert_tokens_to_ids(marker)
    assert run[-1] == marker_id and run.count(marker_id) == 1, (run, marker)
    assert expected.endswith(marker)
    # rule 6: decoding the supervised tokens gives the reply text back (nothing else is supervised)
    text = decode_continuation(tokenizer, run)
    assert _norm(text) == _norm(expected), (text, expected)


def _norm(text: str) -> str:
    return unicodedata.normalize("NFC", text)
