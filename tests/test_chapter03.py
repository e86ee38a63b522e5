"""Chapter 3 (Alpaca template): what the notebook writes by hand equals the library, and its
exercise solutions hold (they assert their own results; running the notebook's cells re-checks them)."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from nbexec import notebook_namespace
from utils.encode import encode
from utils.models import load_tokenizer
from utils.templates import ALPACA_PROMPT_INPUT, ALPACA_PROMPT_NO_INPUT, render, render_prompt

# Stanford Alpaca train.py's PROMPT_DICT, written out literally once, in test_templates.py.
from test_templates import STANFORD_PROMPT_INPUT, STANFORD_PROMPT_NO_INPUT  # noqa: E402


@pytest.fixture(scope="module")
def ns():
    return notebook_namespace("03_alpaca_template.ipynb")


def test_notebook_prompt_dict_is_stanfords(ns):
    assert ns["PROMPT_DICT"] == {"prompt_input": STANFORD_PROMPT_INPUT, "prompt_no_input": STANFORD_PROMPT_NO_INPUT}
    assert (ALPACA_PROMPT_INPUT, ALPACA_PROMPT_NO_INPUT) == (STANFORD_PROMPT_INPUT, STANFORD_PROMPT_NO_INPUT)


def test_manual_example_is_shipped_and_rendered_exactly(ns):
    example = ns["example"]
    assert example["instruction"] == "Give three tips for staying healthy." and example["input"] == ""
    tok = ns["tokenizer"]
    assert ns["full_text"] == STANFORD_PROMPT_NO_INPUT.format_map(example) + example["output"] + tok.eos_token
    assert render(example, "alpaca", tok) == ns["full_text"]


def test_hand_written_labels_equal_encode(ns):
    tok = ns["tokenizer"]
    row = encode(ns["example"], tok, "alpaca")
    assert row["input_ids"] == ns["input_ids"] and row["labels"] == ns["labels"]
    # token by token: prompt masked, reply + EOS supervised, EOS last
    n_prompt = len(tok(render_prompt(ns["example"], "alpaca", tok))["input_ids"])
    assert all(label == -100 for label in ns["labels"][:n_prompt])
    assert ns["labels"][n_prompt:] == ns["input_ids"][n_prompt:]
    assert ns["labels"][-1] == tok.eos_token_id


_SAMPLE_LINES = [line for line in (resources.files("utils") / "data" / "alpaca_samples.jsonl")
                 .read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize("index", range(len(_SAMPLE_LINES)))
def test_hand_written_mask_for_every_sample_record(index):
    tok = load_tokenizer()
    rec = json.loads(_SAMPLE_LINES[index])
    prompt = (STANFORD_PROMPT_INPUT if rec.get("input") else STANFORD_PROMPT_NO_INPUT).format_map(rec)
    p_ids = tok(prompt)["input_ids"]
    r_ids = tok(rec["output"] + tok.eos_token, add_special_tokens=False)["input_ids"]
    row = encode(rec, tok, "alpaca")
    assert row["input_ids"] == p_ids + r_ids
    assert row["labels"] == [-100] * len(p_ids) + r_ids


def test_base_model_continues_how_are_you(ns):
    # the notebook's point: a raw question is continued, not answered with EOS
    from utils.generate import complete

    text = complete(ns["base_model"], ns["tokenizer"], "How are you?", max_new_tokens=24)
    assert text.strip() and "email" in text.lower()
