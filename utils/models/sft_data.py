"""The course's instruction data (chapters 5–6), generated from the facts the pretraining corpus states.

The task: answer a question about a fact (a capital, an opposite, a colour) with one sentence
("What is the capital of Peru?" → "The capital of Peru is Lima."; "请问，秘鲁的首都是哪里？" →
"你好，秘鲁的首都是利马。"). Each fact is *stated* in the pretraining corpus; the instruction data only
*asks* about two thirds of them. The held-out questions ask about the other third, so a fine-tuned model
can only answer them by combining the answer format (learned in SFT) with the fact (learned in
pretraining) — the point of chapter 6.

Chinese questions open with "请问，" and answers with "你好，" (:data:`CHAT_OPENERS`), as polite chat
does. It matters to the tiny model: the answer restates the subject ("秘鲁的首都是…"), which the model
copies from the question by matching what precedes it. In English, "capital of" precedes the subject in
both question and answer; a bare Chinese question starts with the subject, leaving nothing to match, and
a fine-tuned model then named a subject memorised from the training set (held-out Chinese questions
0–40% right, measured; with the openers 80–90%).

Raw files, written by :func:`write_all` into ``utils/data`` (what chapter 5 cleans up):

- ``sft_alpaca.jsonl``   Alpaca records (``instruction``, ``input``, ``output``);
- ``sft_sharegpt.jsonl`` ShareGPT records (``conversations`` of ``{from, value}``), many with 2 turns;
- ``sft_messages.jsonl`` OpenAI ``messages`` records, single- and multi-turn;
- each with a few deliberately bad records (:data:`BAD_RECORDS`: not JSON, a missing field, an empty
  output, a conversation ending with a user turn, an unknown role) and some exact duplicate lines;
- ``sft_heldout.jsonl``  held-out ``{"question", "answer", "relation"}`` rows for evaluation.

Example:
    >>> train, held = split_facts()
    >>> len(train), len(held)
    (82, 38)
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from utils.models.corpus import DATA_DIR, Fact, load_facts, question_answer

# A second phrasing of each question (the first is corpus.QUESTIONS); held-out questions use the first.
ALT_QUESTIONS: dict[str, str] = {
    "capital_en": "Which city is the capital of {s}?",
    "capital_zh": "{s}的首都是哪个城市？",
    "opposite_en": "What is the opposite of the word {s}?",
    "opposite_zh": "“{s}”的反义词是什么？",
    "color_en": "What is the color of the {s}?",
    "color_zh": "{s}是什么颜色？",
}

# How the chat data opens a question and an answer, per language (see the module docstring).
CHAT_OPENERS: dict[str, tuple[str, str]] = {"en": ("", ""), "zh": ("请问，", "你好，")}

# Subjects the chapter 3–4 sample records already ask about: never held out.
_IN_SAMPLES = {"capital_en:France", "capital_en:Japan", "capital_en:Italy", "capital_zh:中国",
               "opposite_zh:大"}

FILES = {"alpaca": "sft_alpaca.jsonl", "sharegpt": "sft_sharegpt.jsonl", "messages": "sft_messages.jsonl",
         "heldout": "sft_heldout.jsonl"}

# Deliberately bad raw lines, per file (chapter 5 finds and reports them).
BAD_RECORDS: dict[str, list[str]] = {
    "alpaca": [
        '{"instruction": "What is the capital of Spain?", "input": "", "output": "The capital of Spain is Madrid."',
        json.dumps({"instruction": "德国的首都是哪里？", "input": ""}, ensure_ascii=False),
        json.dumps({"instruction": "What is the opposite of fast?", "input": "", "output": ""}),
    ],
    "sharegpt": [
        json.dumps({"conversations": [{"from": "human", "value": "What color is the sky?"},
                                      {"from": "gpt", "value": "The sky is blue."},
                                      {"from": "human", "value": "And the grass?"}]}),
        json.dumps({"conversations": [{"from": "human", "value": "雪是什么颜色的？"},
                                      {"from": "bot", "value": "雪是白色的。"}]}, ensure_ascii=False),
        "{'conversations': []}",
    ],
    "messages": [
        json.dumps({"messages": [{"role": "user", "content": "高的反义词是什么？"},
                                 {"role": "assistant", "content": "   "}]}, ensure_ascii=False),
        json.dumps({"messages": [{"role": "user", "content": "What is the capital of Egypt?"},
                                 {"role": "robot", "content": "The capital of Egypt is Cairo."}]}),
        json.dumps({"messages": [{"role": "user", "content": "What is the opposite of up?"}]}),
    ],
}


def chat_question_answer(fact: Fact, question: str | None = None) -> tuple[str, str]:
    """The (question, answer) of ``fact`` as the chat data writes them (:data:`CHAT_OPENERS` added).

    >>> chat_question_answer(Fact("capital_zh", "秘鲁", "利马"))
    ('请问，秘鲁的首都是哪里？', '你好，秘鲁的首都是利马。')
    """
    q, a = question_answer(fact)
    q_open, a_open = CHAT_OPENERS[fact.lang]
    return q_open + (question or q), a_open + a


def question_variants(fact: Fact) -> list[tuple[str, str]]:
    """The (question, answer) pairs the training data uses for ``fact`` (two phrasings)."""
    alt = ALT_QUESTIONS[fact.relation].format(s=fact.subject, v=fact.value)
    return [chat_question_answer(fact), chat_question_answer(fact, alt)]


def split_facts(seed: int = 0) -> tuple[list[Fact], list[Fact]]:
    """``(train, heldout)``: one third of each relation's facts held out (never one the samples use)."""
    rng = random.Random(seed)
    train, held = [], []
    facts = load_facts()
    for rel in dict.fromkeys(f.relation for f in facts):
        group = [f for f in facts if f.relation == rel]
        candidates = [f for f in group if f.key not in _IN_SAMPLES]
        chosen = set(f.key for f in rng.sample(candidates, len(group) // 3))
        for f in group:
            (held if f.key in chosen else train).append(f)
    return train, held


def heldout_questions(seed: int = 0) -> list[dict]:
    """The held-out rows ``{"question", "answer", "relation"}`` (the same as ``sft_heldout.jsonl``)."""
    return [dict(zip(("question", "answer"), chat_question_answer(f)), relation=f.relation)
            for f in split_facts(seed)[1]]


def conversations(seed: int = 0, n_multi: int = 340) -> tuple[list[list[tuple[str, str]]], list[list[tuple[str, str]]]]:
    """``(single, multi)``: every single-turn (question, answer) of the training facts, and ``n_multi``
    distinct 2-turn conversations (two facts of the same language)."""
    rng = random.Random(seed)
    train, _ = split_facts(seed)
    single = [[qa] for f in train for qa in question_variants(f)]
    by_lang: dict[str, list[Fact]] = {}
    for f in train:
        by_lang.setdefault(f.lang, []).append(f)
    multi, seen = [], set()
    while len(multi) < n_multi:
        group = by_lang[rng.choice(sorted(by_lang))]
        a, b = rng.sample(group, 2)
        conv = [rng.choice(question_variants(a)), rng.choice(question_variants(b))]
        key = tuple(conv)
        if key not in seen:
            seen.add(key)
            multi.append(conv)
    return single, multi


def raw_records(seed: int = 0) -> dict[str, list[str]]:
    """The raw JSONL lines of each file (good records, duplicates and bad records, shuffled)."""
    rng = random.Random(seed)
    single, multi = conversations(seed)
    rng.shuffle(single)
    alpaca_part, messages_single = single[:100], single[100:]
    lines: dict[str, list[str]] = {"alpaca": [], "sharegpt": [], "messages": []}
    for conv in alpaca_part:
        (q, a), = conv
        lines["alpaca"].append(json.dumps({"instruction": q, "input": "", "output": a}, ensure_ascii=False))
    half = len(multi) // 2
    for conv in multi[:half]:
        turns = [t for q, a in conv for t in ({"from": "human", "value": q}, {"from": "gpt", "value": a})]
        lines["sharegpt"].append(json.dumps({"conversations": turns}, ensure_ascii=False))
    for conv in messages_single + multi[half:]:
        msgs = [m for q, a in conv for m in ({"role": "user", "content": q}, {"role": "assistant", "content": a})]
        lines["messages"].append(json.dumps({"messages": msgs}, ensure_ascii=False))
    for name, good in lines.items():
        dups = rng.sample(good, 4)
        good.extend(dups + BAD_RECORDS[name])
        rng.shuffle(good)
    return lines


def write_all(out_dir: Path | None = None, seed: int = 0) -> list[Path]:
    """Write the raw instruction files and the held-out questions; returns their paths."""
    out_dir = Path(out_dir) if out_dir else DATA_DIR
    paths = []
    for name, lines in raw_records(seed).items():
        path = out_dir / FILES[name]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths.append(path)
    path = out_dir / FILES["heldout"]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in heldout_questions(seed)),
                    encoding="utf-8")
    paths.append(path)
    return paths


def load_training_records(data_dir: Path | None = None) -> list[dict]:
    """The good, de-duplicated training records of the three raw files, as ``{"messages": [...]}``.

    Bad records are skipped (:func:`utils.formats.read_records` with ``on_error="skip"``); exact
    duplicates are dropped, keeping the first. (Chapter 5 does this step by step.)

    >>> len(load_training_records())
    504
    """
    from utils.formats import read_records, to_messages

    data_dir = Path(data_dir) if data_dir else DATA_DIR
    seen, records = set(), []
    for name in ("alpaca", "sharegpt", "messages"):
        for rec in read_records(data_dir / FILES[name], on_error="skip", problems=[]):
            msgs = to_messages(rec)
            key = json.dumps(msgs, ensure_ascii=False, sort_keys=True)
            if key not in seen:
                seen.add(key)
                records.append({"messages": msgs})
    return records


def load_heldout(data_dir: Path | None = None) -> list[dict]:
    """The held-out questions of ``sft_heldout.jsonl``."""
    data_dir = Path(data_dir) if data_dir else DATA_DIR
    text = (data_dir / FILES["heldout"]).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]
