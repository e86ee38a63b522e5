"""The Self-Instruct loop (Wang et al., 2022), small enough to read: sample tasks, ask a model for the next
one, parse its reply, keep what is new.

The prompt is Self-Instruct's own shape (its ``bootstrap_instructions.py``): a header line, a few task
instructions numbered ``1.`` … ``k.``, and the number ``k+1.`` with nothing after it, so that a model that
continues text writes the next task (and often more, numbered on). Self-Instruct used 8 tasks per prompt,
6 sampled from the human-written seeds and 2 from the tasks generated so far, and kept a new instruction
only when its ROUGE-L against every instruction in the pool was at most 0.7.

The model is any function ``complete(prompt: str) -> str``: :func:`openai_completer` wraps an
OpenAI-compatible ``/v1/completions`` endpoint (the course's local server, or a hosted one given its URL
and key), :func:`local_completer` the in-process model; the loop does not care which.

>>> prompt = build_prompt(["Give two reasons why people keep a diary.", "把下面的数字按从小到大排列。"])
>>> print(prompt)
Come up with a series of tasks:
1. Give two reasons why people keep a diary.
2. 把下面的数字按从小到大排列。
3.
>>> parse_tasks(" Write a haiku about rain.\\n4. 用一句话解释什么是风。\\n5. Name", finished=False)
['Write a haiku about rain.', '用一句话解释什么是风。']
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

SEED_TASKS = Path(__file__).resolve().parents[1] / "data" / "ch07_seed_tasks.jsonl"
"""The course's own seed tasks (20, Chinese and English, Alpaca fields plus an ``id``)."""

HEADER = "Come up with a series of tasks:\n"
"""Self-Instruct's first line of the prompt (its non-classification variant)."""

_NUMBERED = re.compile(r"\n\s*\d+\s*[.．、]\s*")


def load_seed_tasks(path: str | Path = SEED_TASKS) -> list[dict]:
    """The seed tasks, one JSON object per line.

    >>> seeds = load_seed_tasks()
    >>> len(seeds), sorted(seeds[0])
    (20, ['id', 'input', 'instruction', 'output'])
    """
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def build_prompt(instructions: Sequence[str], header: str = HEADER) -> str:
    """``header``, the instructions numbered from 1 (whitespace collapsed, a trailing ``:`` dropped, as
    Self-Instruct does), then the next number and a dot: the model continues from there."""
    lines = [header.rstrip("\n")]
    for i, text in enumerate(instructions, 1):
        lines.append(f"{i}. {' '.join(text.split()).rstrip(':')}")
    lines.append(f"{len(instructions) + 1}.")
    return "\n".join(lines)


def parse_tasks(reply: str, finished: bool = True) -> list[str]:
    """The task instructions in a model's continuation of :func:`build_prompt`.

    The reply starts with the text of task ``k+1``; later tasks follow on new lines numbered ``k+2.``,
    ``k+3.`` …; a blank line ends the list (Self-Instruct stops generation there). With
    ``finished=False`` (the reply hit ``max_tokens``) the last task may be cut off and is dropped, as
    Self-Instruct and Alpaca do. Empty pieces are dropped; whitespace is collapsed.

    >>> parse_tasks(" 写一首关于雪的短诗。\\n2. Explain gravity.\\n\\nsomething else")
    ['写一首关于雪的短诗。', 'Explain gravity.']
    >>> parse_tasks("")
    []
    """
    pieces = _NUMBERED.split(reply.split("\n\n", 1)[0])
    if not finished and "\n\n" not in reply and pieces:
        pieces = pieces[:-1]
    return [" ".join(p.split()) for p in pieces if p.strip()]


_SENTENCE_END = re.compile(r"[。？！?!]|\.(?=\s|$)")


def first_sentence(reply: str, finished: bool = True) -> list[str]:
    """The reply's first sentence as the only task: for a model that writes one task and then runs on
    (the course's tiny model answers the task it wrote instead of numbering the next one). Empty when
    the reply has no complete sentence.

    >>> first_sentence(" Give three tips for staying healthy. First, drink water.")
    ['Give three tips for staying healthy.']
    >>> first_sentence(" 我们一起学习。你喜欢", finished=False)
    ['我们一起学习。']
    >>> first_sentence(" no end", finished=False)
    []
    """
    text = " ".join(reply.split())
    end = _SENTENCE_END.search(text)
    if end is None:
        return [text] if finished and text else []
    return [text[: end.end()]]


def sample_prompt_instructions(seeds: Sequence[str], generated: Sequence[str], rng: random.Random,
                               n: int = 8, n_generated: int = 2) -> list[str]:
    """Self-Instruct's sampling: up to ``n_generated`` of the generated tasks, the rest from the seeds,
    shuffled.

    >>> sample_prompt_instructions(["a", "b", "c", "d"], [], random.Random(0), n=3)
    ['d', 'a', 'b']
    """
    chosen = rng.sample(list(generated), min(n_generated, len(generated)))
    chosen += rng.sample(list(seeds), min(n - len(chosen), len(seeds)))
    rng.shuffle(chosen)
    return chosen


def openai_completer(client, model: str, max_tokens: int = 48, temperature: float = 0.0,
                     **kwargs) -> Callable[[str], tuple[str, bool]]:
    """``complete(prompt) -> (text, finished)`` over an OpenAI-compatible ``/v1/completions`` endpoint.

    ``client`` is an ``openai.OpenAI`` (the course's server: ``utils.serve.start().client()``; a hosted
    service: ``OpenAI(base_url=..., api_key=os.environ[...])``); ``finished`` is False when the reply
    stopped because of ``max_tokens``.
    """
    def complete(prompt: str) -> tuple[str, bool]:
        response = client.completions.create(model=model, prompt=prompt, max_tokens=max_tokens,
                                             temperature=temperature, **kwargs)
        choice = response.choices[0]
        return choice.text, choice.finish_reason != "length"
    return complete


def local_completer(model, tokenizer, max_new_tokens: int = 48) -> Callable[[str], tuple[str, bool]]:
    """The same as :func:`openai_completer`, with an in-process model and greedy decoding."""
    import torch

    def complete(prompt: str) -> tuple[str, bool]:
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                 max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=tokenizer.eos_token_id)[0, ids.shape[1]:].tolist()
        finished = tokenizer.eos_token_id in out
        if finished:
            out = out[: out.index(tokenizer.eos_token_id)]
        return tokenizer.decode(out, skip_special_tokens=True), finished
    return complete


@dataclass
class Candidate:
    """One task the model proposed, and what the novelty check said about it."""
    round: int
    instruction: str
    most_similar: str
    score: float
    kept: bool


@dataclass
class SelfInstructRun:
    """What :func:`self_instruct` did: every prompt sent, every candidate and the tasks kept."""
    prompts: list[str] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)

    @property
    def kept(self) -> list[str]:
        return [c.instruction for c in self.candidates if c.kept]


def self_instruct(complete: Callable[[str], tuple[str, bool]], seeds: Sequence[str], rounds: int = 4,
                  similarity: Callable[[str, str], float] | None = None, threshold: float = 0.7,
                  n_prompt: int = 8, n_generated: int = 2, seed: int = 0,
                  parse: Callable[[str, bool], list[str]] = parse_tasks) -> SelfInstructRun:
    """The loop: ``rounds`` times, sample a prompt, complete it, parse the tasks and keep each one whose
    ``similarity`` to every instruction in the pool (seeds and tasks kept so far) is at most
    ``threshold``. ``similarity`` defaults to ROUGE-L F1 with Chinese split into characters
    (:func:`utils.curate.rouge_l`); ``parse(reply, finished)`` turns a reply into tasks
    (:func:`parse_tasks`, or :func:`first_sentence` for a model that does not number its tasks)."""
    if similarity is None:
        from utils.curate import rouge_l as similarity
    rng = random.Random(seed)
    run = SelfInstructRun()
    pool = list(seeds)
    for r in range(rounds):
        prompt = build_prompt(sample_prompt_instructions(seeds, run.kept, rng, n_prompt, n_generated))
        reply, finished = complete(prompt)
        run.prompts.append(prompt)
        run.replies.append(reply)
        for task in parse(reply, finished):
            scores = [similarity(task, p) for p in pool]
            best = max(range(len(pool)), key=scores.__getitem__)
            kept = scores[best] <= threshold
            run.candidates.append(Candidate(r, task, pool[best], round(scores[best], 3), kept))
            if kept:
                pool.append(task)
    return run


def instructions(records: Iterable[dict]) -> list[str]:
    """The ``instruction`` of each record (what the novelty check compares)."""
    return [r["instruction"] for r in records]
