"""Chapter 2 (next-token prediction): the chapter's equalities and its exercise answers, on the
shipped tiny base model, plus the notebook's form (练习 with hidden, asserting solution cells)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
import torch
import torch.nn.functional as F

from nbexec import notebook_namespace, run_figure_script
from utils.generate import (beam_search, generation_kwargs, greedy_decode, labels_after_prompt,
                            next_token_distribution, token_losses, warp_logits)

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "02_next_token.ipynb"
SENTENCE, PROMPT = "今天天气真好，我们出去看电影吧", "今天天气真好，"


@pytest.fixture(scope="module")
def lm():
    from utils.models import load_causal_lm, load_tokenizer

    torch.set_num_threads(2)
    return load_causal_lm(), load_tokenizer()


def test_the_chapters_next_tokens_are_on_top(lm):
    model, tok = lm
    assert next_token_distribution(model, tok, "今天天气真", k=10).token.iloc[0] == "好"
    road = next_token_distribution(model, tok, "The chicken crossed the", k=10).token.iloc[0]
    assert road == "·road" or "·road".startswith(road) and len(road) > 1


def test_single_pass_loss_equals_model_loss_and_prefix_losses(lm):
    model, tok = lm
    table = token_losses(model, tok, SENTENCE, prompt=PROMPT)
    assert "".join(table.token) == SENTENCE[len(PROMPT):]          # one row per target character
    ids, labels = labels_after_prompt(tok, SENTENCE, PROMPT)
    with torch.no_grad():
        model_loss = float(model(input_ids=ids, labels=labels).loss)
        prefix = [-float(F.log_softmax(model(input_ids=ids[:, :t]).logits[0, -1], -1)[ids[0, t]])
                  for t in range(len(tok(PROMPT)["input_ids"]), ids.shape[1])]
    assert table.loss.mean() == pytest.approx(model_loss, abs=1e-5)
    assert table.loss.tolist() == pytest.approx(prefix, abs=1e-4)


@pytest.mark.parametrize("prompt", ["今天天气真", "The chicken crossed the", "How are you?"])
def test_hand_greedy_and_beam_equal_generate(lm, prompt):
    model, tok = lm
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    ref = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                         **generation_kwargs(model, tok, max_new_tokens=8))
    for use_cache in (True, False):
        assert greedy_decode(model, tok, prompt, 8, use_cache=use_cache).new_ids == ref[0, ids.shape[1]:].tolist()
    result = beam_search(model, tok, prompt, num_beams=2, max_new_tokens=5)
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), num_beams=2, num_return_sequences=2,
                         output_scores=True, return_dict_in_generate=True,
                         **generation_kwargs(model, tok, max_new_tokens=5))
    for hyp, seq, score in zip(result.hypotheses, out.sequences, out.sequences_scores):
        assert hyp.new_ids == seq[ids.shape[1]:ids.shape[1] + len(hyp.new_ids)].tolist()
        assert hyp.score == pytest.approx(float(score), abs=1e-4)


# ---- the exercises' answers (the notebook's hidden solution cells assert the same under nbval)

def test_exercise_1_perplexity_is_exp_of_the_mean_loss(lm):
    model, tok = lm
    table = token_losses(model, tok, SENTENCE, prompt=PROMPT)
    ids, labels = labels_after_prompt(tok, SENTENCE, PROMPT)
    with torch.no_grad():
        ref = torch.exp(model(input_ids=ids, labels=labels).loss)
    assert float(torch.exp(torch.tensor(table.loss.mean()))) == pytest.approx(float(ref), rel=1e-3)


def test_exercise_2_top_k_by_hand(lm):
    model, tok = lm
    with torch.no_grad():
        logits = model(input_ids=tok("今天天气真", return_tensors="pt")["input_ids"]).logits[0, -1]
    kth = torch.topk(logits, 3).values[-1]
    assert torch.equal(logits.masked_fill(logits < kth, float("-inf")), warp_logits(logits, top_k=3))


def test_exercise_3_one_beam_is_greedy(lm):
    model, tok = lm
    for prompt in ["今天天气真", "How are you?"]:
        assert beam_search(model, tok, prompt, num_beams=1, max_new_tokens=8).hypotheses[0].new_ids == \
            greedy_decode(model, tok, prompt, max_new_tokens=8).new_ids


@pytest.fixture(scope="module")
def ns():
    """The notebook's namespace after running every cell in-process (its hidden solution cells
    assert their own results, so this re-checks the exercises)."""
    return notebook_namespace(NOTEBOOK.name)


def test_notebook_hand_code_equals_the_library(ns, lm):
    model, tok = lm
    assert ns["hand_ids"] == ns["cached_ids"] == ns["decoding"].prompt_ids + ns["decoding"].new_ids
    ids = tok("今天天气真", return_tensors="pt")["input_ids"]
    ref = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                         **generation_kwargs(model, tok, max_new_tokens=8))
    assert ns["hand_ids"] == ref[0].tolist()
    assert float(ns["mean_loss"]) == pytest.approx(float(ns["model_loss"]), abs=1e-5)
    assert float(ns["prefix_mean"]) == pytest.approx(float(ns["model_loss"]), abs=1e-4)
    assert ns["per_token"].loss.tolist() == pytest.approx(ns["table"]["损失"].tolist(), abs=1e-4)
    top = ns["tiny_beam_search"]("The chicken crossed the", num_beams=2, steps=3)
    assert len(top) == 2 and top[0][1] >= top[1][1]


def test_notebook_has_exercises_with_hidden_asserting_solutions():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    from utils.course import SETUP_CELL

    assert next(c for c in nb.cells if c.cell_type == "code").source == SETUP_CELL
    md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "## 小结" in md and "## 练习" in md and "hf_basic/02_next_token.md" in md
    solutions = [c for c in nb.cells if "solution" in c.metadata.get("tags", [])]
    assert len(solutions) == 3
    for cell in solutions:
        assert cell.metadata["jupyter"]["source_hidden"] is True
        assert "assert" in cell.source
        assert not any(o.get("output_type") == "error" for o in cell.get("outputs", []))


def test_figure_script_draws_every_figure_without_missing_glyphs(tmp_path):
    paths = run_figure_script("ch02_next_token", tmp_path)
    assert [p.name for p in paths] == ["ch02_next_token_bars.png", "ch02_token_losses.png",
                                       "ch02_decoding_steps.png", "ch02_beam_tree.png"]
    assert all(p.stat().st_size > 10_000 for p in paths)
