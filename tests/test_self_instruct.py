"""The Self-Instruct helpers of chapter 07 (utils.curate.self_instruct): the prompt is Self-Instruct's own
shape, replies are parsed as Self-Instruct parses them, the loop keeps only novel tasks, and the
in-process completer gives exactly what the course's OpenAI-compatible server gives (greedy)."""

from __future__ import annotations

import json
import random
import re

import pytest

from utils.curate.self_instruct import (SEED_TASKS, build_prompt, first_sentence, load_seed_tasks,
                                        local_completer, openai_completer, parse_tasks,
                                        sample_prompt_instructions, self_instruct)

CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(scope="module")
def causal_lm():
    import torch

    from utils.models import load_causal_lm

    torch.set_num_threads(2)
    return load_causal_lm()


def test_seed_tasks_are_ours_bilingual_and_complete():
    seeds = load_seed_tasks()
    assert len(seeds) == 20
    assert len({s["id"] for s in seeds}) == 20 and len({s["instruction"] for s in seeds}) == 20
    chinese = [s for s in seeds if CJK.search(s["instruction"])]
    assert len(chinese) == 10                                      # half Chinese, half English
    for s in seeds:
        assert set(s) == {"id", "instruction", "input", "output"} and s["instruction"].strip() and s["output"].strip()
    with open(SEED_TASKS, encoding="utf-8") as f:
        assert all(json.loads(line) for line in f)


def test_prompt_is_self_instructs_format():
    prompt = build_prompt(["  Write   a poem:", "把数字排序。"])
    assert prompt == "Come up with a series of tasks:\n1. Write a poem\n2. 把数字排序。\n3."
    # ends with the next number: a model that continues text writes task 3
    assert prompt.endswith("\n3.")


def test_sampling_takes_generated_tasks_first_then_seeds():
    seeds = [f"seed {i}" for i in range(10)]
    generated = ["gen a", "gen b", "gen c"]
    picked = sample_prompt_instructions(seeds, generated, random.Random(1), n=8, n_generated=2)
    assert len(picked) == 8 and len(set(picked)) == 8
    assert sum(p.startswith("gen") for p in picked) == 2
    assert sample_prompt_instructions(seeds, [], random.Random(1), n=8).count("gen a") == 0


@pytest.mark.parametrize("reply, finished, expected", [
    (" Write a haiku.\n4. Explain gravity.\n5. 写一首诗。", True, ["Write a haiku.", "Explain gravity.", "写一首诗。"]),
    (" Write a haiku.\n4. Explain gravity.\n5. 写一", False, ["Write a haiku.", "Explain gravity."]),  # cut: dropped
    (" Write a haiku.\n4 . Explain gravity.\n\n5. after the blank line", True, ["Write a haiku.", "Explain gravity."]),
    (" Write a haiku.\n4. Explain gravity.\n\n", False, ["Write a haiku.", "Explain gravity."]),  # blank line = done
    ("   ", True, []),
])
def test_parse_tasks(reply, finished, expected):
    assert parse_tasks(reply, finished) == expected


def test_parse_tasks_matches_self_instructs_split_on_a_numbered_reply():
    """Self-Instruct splits with re.split(r"\\n\\d+\\s?\\. ", text) and strips each piece."""
    reply = " Sort the numbers.\n10. Name a colour.\n11. Give an example of a verb."
    theirs = [" ".join(p.split()) for p in re.split(r"\n\d+\s?\. ", reply) if p.strip()]
    assert parse_tasks(reply) == theirs


def test_first_sentence():
    assert first_sentence(" 我们一起学习怎样制作训练数据。 你喜欢什么颜色的？", False) == ["我们一起学习怎样制作训练数据。"]
    assert first_sentence(" Give three tips. First, drink water.", False) == ["Give three tips."]
    assert first_sentence(" version 2.5 is out", False) == []       # a decimal point is no sentence end
    assert first_sentence(" no end but finished", True) == ["no end but finished"]


def test_the_loop_keeps_only_novel_tasks():
    replies = iter([" Name a colour.", " Name a colour.", " Name a color!", " Write a haiku about rain."])

    def complete(prompt):
        assert prompt.startswith("Come up with a series of tasks:\n1. ")
        return next(replies), True

    def overlap(a, b):   # a toy similarity: share of words in common
        wa, wb = set(re.findall(r"\w+", a.lower())), set(re.findall(r"\w+", b.lower()))
        return len(wa & wb) / max(len(wa | wb), 1)

    run = self_instruct(complete, ["Sort the numbers.", "Translate the sentence."], rounds=4,
                        parse=first_sentence, similarity=overlap, threshold=0.7, n_prompt=2)
    assert [c.kept for c in run.candidates] == [True, False, True, True]
    assert run.kept == ["Name a colour.", "Name a color!", "Write a haiku about rain."]
    assert run.candidates[1].most_similar == "Name a colour." and run.candidates[1].score == 1.0
    assert len(run.prompts) == len(run.replies) == 4
    # from the second round on, a kept task can be in the prompt (Self-Instruct's 2 generated tasks)
    assert any("Name a colour" in p for p in run.prompts[1:])


def test_local_completer_is_greedy_and_reports_finish(tok, causal_lm):
    complete = local_completer(causal_lm, tok, max_new_tokens=8)
    a, finished = complete("Come up with a series of tasks:\n1. Sort the numbers.\n2.")
    assert (a, finished) == complete("Come up with a series of tasks:\n1. Sort the numbers.\n2.")
    assert isinstance(a, str) and finished in (True, False)
    assert len(tok(a, add_special_tokens=False)["input_ids"]) <= 8 + 1


def test_server_and_in_process_completers_agree(tok, causal_lm):
    """The chapter runs the in-process completer and says the server gives the same text: checked."""
    pytest.importorskip("openai", reason="needs the serve extra: pip install -e '.[serve]'")
    from utils.serve import start

    seeds = [s["instruction"] for s in load_seed_tasks()]
    rng = random.Random(0)
    prompts = [build_prompt(sample_prompt_instructions(seeds, [], rng)) for _ in range(3)]
    local = local_completer(causal_lm, tok, max_new_tokens=24)
    with start(verbose=False) as server:
        remote = openai_completer(server.client(), "tiny-base", max_tokens=24)
        for p in prompts:
            assert remote(p) == local(p)
