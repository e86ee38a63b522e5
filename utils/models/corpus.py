"""The pretraining corpus of the tiny models, generated from hand-written material shipped in ``utils/data``.

Three sources, all written for this course (Chinese and English):

- ``corpus_text.txt``: one paragraph per line, including the manual's example sentences
  ("今天天气真好，我们出去看电影吧", "The chicken crossed the road", emails that begin
  "How are you? Hope this email finds you well").
- ``facts.tsv``: small facts (capitals, opposites, colours); the corpus states them in several
  phrasings, some as quiz lines ("Q: What is the capital of Peru? A: The capital of Peru is Lima.",
  "问：秘鲁的首都是哪里？答：秘鲁的首都是利马。"), as web text does. The instruction data
  (:mod:`utils.models.sft_data`) asks about two thirds of them in the chat template; a fine-tuned model
  answers the held-out third from what the base model learned in pretraining — SFT teaches the form
  (template, stopping), pretraining supplied the knowledge.
- ``alpaca_samples.jsonl`` / ``conversations_samples.jsonl``: the small sample sets of chapters 3–4,
  whose texts enter the corpus as loose paragraphs, so every character they use is known to the
  tokenizer and the model.

Example (``n_docs`` generated documents, then every hand-written paragraph once, four per document):
    >>> docs = pretraining_docs(n_docs=5, seed=0)
    >>> paragraphs = read_lines("corpus_text.txt") + sample_texts()
    >>> len(docs) == 5 + -(-len(paragraphs) // 4)
    True
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

DATA_DIR = Path(str(resources.files("utils") / "data"))


@dataclass(frozen=True)
class Fact:
    """One fact: ``relation`` (e.g. ``"capital_zh"``), ``subject`` and ``value``."""

    relation: str
    subject: str
    value: str

    @property
    def lang(self) -> str:
        return self.relation.rsplit("_", 1)[-1]

    @property
    def key(self) -> str:
        return f"{self.relation}:{self.subject}"


# Statements the corpus uses (the first one of each relation is also the answer form in SFT).
STATEMENTS: dict[str, list[str]] = {
    "capital_en": ["The capital of {s} is {v}.", "{v} is the capital of {s}.",
                   "The capital city of {s} is {v}."],
    "capital_zh": ["{s}的首都是{v}。", "{v}是{s}的首都。", "{s}的首都叫{v}。"],
    "opposite_en": ["The opposite of {s} is {v}.", "{s} and {v} are opposites.",
                    "The word {s} means the opposite of {v}."],
    "opposite_zh": ["{s}的反义词是{v}。", "“{s}”和“{v}”意思相反。", "“{s}”的反义词是“{v}”。"],
    "color_en": ["The {s} is {v}.", "The color of the {s} is {v}.", "Look, the {s} is {v}."],
    "color_zh": ["{s}是{v}的。", "{s}的颜色是{v}。", "你看，{s}是{v}的。"],
}

# How the instruction data asks about a fact (question, answer).
QUESTIONS: dict[str, tuple[str, str]] = {
    "capital_en": ("What is the capital of {s}?", "The capital of {s} is {v}."),
    "capital_zh": ("{s}的首都是哪里？", "{s}的首都是{v}。"),
    "opposite_en": ("What is the opposite of {s}?", "The opposite of {s} is {v}."),
    "opposite_zh": ("{s}的反义词是什么？", "{s}的反义词是{v}。"),
    "color_en": ("What color is the {s}?", "The {s} is {v}."),
    "color_zh": ("{s}是什么颜色的？", "{s}是{v}的。"),
}


def read_lines(name: str) -> list[str]:
    """Non-empty lines of a file in ``utils/data`` (lines starting with ``#`` are comments)."""
    text = (DATA_DIR / name).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def load_facts() -> list[Fact]:
    """The hand-written facts of ``facts.tsv``."""
    facts = []
    for i, line in enumerate(read_lines("facts.tsv")):
        parts = line.split("\t")
        if len(parts) != 3 or parts[0] not in QUESTIONS:
            raise ValueError(f"facts.tsv: fact {i + 1}: expected 'relation<TAB>subject<TAB>value' with a "
                             f"relation in {sorted(QUESTIONS)}, got {line!r}")
        facts.append(Fact(*parts))
    return facts


def question_answer(fact: Fact) -> tuple[str, str]:
    """The question the instruction data asks about ``fact`` and its expected answer."""
    q, a = QUESTIONS[fact.relation]
    return q.format(s=fact.subject, v=fact.value), a.format(s=fact.subject, v=fact.value)


def sample_texts() -> list[str]:
    """Every text of the chapter 3–4 sample records, one paragraph each.

    They enter the corpus as loose paragraphs, not as question/answer pairs, so the base model learns
    their words without learning to answer questions (that is what fine-tuning adds).
    """
    texts = []
    for name in ("alpaca_samples.jsonl", "conversations_samples.jsonl"):
        for line in read_lines(name):
            rec = json.loads(line)
            if "instruction" in rec:
                parts = [rec["instruction"], rec.get("input", ""), rec["output"]]
            else:
                parts = [m["content"] for m in rec["messages"]]
            texts.extend(p.replace("\n", " ") for p in parts if p)
    return texts


QA_FORMS = {"en": "Q: {q} A: {a}", "zh": "问：{q}答：{a}"}
"""How a question and its answer are written in the corpus (a quiz, not the chat template)."""


def _fact_sentence(fact: Fact, rng: random.Random) -> str:
    """One sentence stating ``fact``; about one in three is a quiz line ("Q: ... A: ...")."""
    if rng.random() < 0.3:
        q, a = question_answer(fact)
        return QA_FORMS[fact.lang].format(q=q, a=a)
    return rng.choice(STATEMENTS[fact.relation]).format(s=fact.subject, v=fact.value)


def pretraining_docs(n_docs: int = 3000, seed: int = 0) -> list[str]:
    """``n_docs`` deterministic documents mixing paragraphs, fact statements and sample dialogues.

    Each document is plain text; the caller appends the tokenizer's EOS to each.

    >>> pretraining_docs(2, seed=1) == pretraining_docs(2, seed=1)
    True
    """
    rng = random.Random(seed)
    paragraphs = read_lines("corpus_text.txt") + sample_texts()
    facts = load_facts()
    by_lang = {lang: [f for f in facts if f.lang == lang] for lang in ("en", "zh")}
    docs = []
    for _ in range(n_docs):
        # Documents are several sentences long, so the base model learns to go on writing, not to
        # stop after one sentence (a raw question should be continued, not answered and ended).
        if rng.random() < 0.4:
            docs.append(" ".join(rng.sample(paragraphs, rng.randint(3, 6))))
        else:
            lang = rng.choice(("en", "zh"))
            chosen = rng.sample(by_lang[lang], rng.randint(5, 10))
            docs.append((" " if lang == "en" else "").join(_fact_sentence(f, rng) for f in chosen))
    # Every paragraph at least once, so nothing hand-written is left out by chance.
    order = rng.sample(paragraphs, len(paragraphs))
    docs.extend(" ".join(order[i:i + 4]) for i in range(0, len(order), 4))
    rng.shuffle(docs)
    return docs


def tokenizer_training_text() -> list[str]:
    """The texts the tokenizer is trained on: hand-written lines, fact statements and questions."""
    texts = read_lines("corpus_text.txt") + sample_texts()
    for f in load_facts():
        texts.extend(s.format(s=f.subject, v=f.value) for s in STATEMENTS[f.relation])
        q, a = question_answer(f)
        # The chat form too, so "human", "assistant" become tokens of their own.
        texts.append(f"human: {q}\nassistant: {a}")
    return texts
