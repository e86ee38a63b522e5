"""The data contract (DESIGN.md rules 1-6) as one checker, shared by the encode tests.

Everything expected here is computed independently of :mod:`utils.encode`: prompt ids come from
calling the tokenizer on :func:`utils.templates.render_prompt` (or ``apply_chat_template``), replies from
the template's rendered text.
"""

from __future__ import annotations

import unicodedata

from utils.formats import conversation_of
from utils.templates import get_template, render_prompt, segments


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
    for i, lab in enumerate(labels + [-100]):
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


def check_row(row: dict | None, example: dict, tokenizer, template, *, truncated: bool = False) -> None:
    """Assert rules 1-6 on one encoded row, token by token."""
    assert row is not None
    tmpl = get_template(template)
    ids, labels, mask = row["input_ids"], row["labels"], row["attention_mask"]
    n = len(ids)
    # rule 1: labels are ids or -100, not shifted; attention_mask from the length
    assert len(labels) == n == len(mask) and all(m == 1 for m in mask)
    assert all(lab == -100 or lab == i for i, lab in zip(ids, labels))
    # rule 5: no row without supervision
    assert any(lab != -100 for lab in labels)
    segs = segments(example, tmpl, tokenizer)
    replies = [s.text for s in segs if s.train]
    runs = supervised_runs(labels)
    if truncated:
        assert len(runs) <= len(replies)
    else:
        assert len(runs) == len(replies), (runs, replies)
    merges = boundary_merges(tokenizer, example, tmpl)
    eos, bos = tokenizer.eos_token_id, tokenizer.bos_token_id
    for k, (start, end) in enumerate(runs):
        # rule 3: the ids before every reply are exactly what inference gets for that prompt
        prompt_text = render_prompt(history(example, k), tmpl, tokenizer)
        want = tokenizer(prompt_text, add_special_tokens=tmpl.add_special_tokens)["input_ids"]
        if any(merges[:k]):
            # documented exception: an earlier reply's first characters merge with its prompt in whole-text
            # tokenization; that reply keeps the ids inference produced for it, so the history differs
            # from re-tokenized history only there. The text must still be identical.
            assert decode_continuation(tokenizer, ids[:start]) == decode_continuation(tokenizer, want)
        else:
            assert ids[:start] == want, (k, prompt_text)
        run = ids[start:end]
        cut = truncated and k == len(runs) - 1 and end == n
        expected = replies[k]
        # rules 2 and 4: the reply ends with exactly one EOS, supervised (unless cut by truncation)
        if cut and run[-1] != eos:
            assert eos not in run
            text = decode_continuation(tokenizer, run)
            assert _norm(expected).startswith(_norm(text)), (text, expected)
            continue
        assert run[-1] == eos and run.count(eos) == 1, run
        assert expected.endswith(tokenizer.eos_token)
        # rule 6: decoding the supervised tokens gives the reply text back
        text = decode_continuation(tokenizer, run[:-1])
        assert _norm(text) == _norm(expected[:-len(tokenizer.eos_token)]), (text, expected)
    # rule 2: nothing else is supervised -- implied by run count == reply count and exact run contents
    # rule 4: at most one BOS (GPT-2's BOS is also its EOS: count only non-reply positions)
    if bos is not None:
        sup = {i for s, e in runs for i in range(s, e)}
        assert sum(1 for i, t in enumerate(ids) if t == bos and i not in sup) <= 1


def _norm(text: str) -> str:
    return unicodedata.normalize("NFC", text)
