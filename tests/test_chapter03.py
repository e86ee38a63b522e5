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


# ---- real tokenizers, the boundary merge, and what the prose states -------------------------------

from pathlib import Path  # noqa: E402

import nbformat  # noqa: E402

from conftest import needs_tested_trl, require_shared  # noqa: E402
from utils.encode import IGNORE_INDEX, encode_dataset  # noqa: E402
from utils.models import load_reference_tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
QUOTED = {"instruction": "Say hello in English, in quotes.", "input": "", "output": '"Hello"'}


@pytest.fixture(scope="module")
def markdown():
    nb = nbformat.read(ROOT / "notebooks" / "03_alpaca_template.ipynb", as_version=4)
    return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def sample_records():
    return [json.loads(line) for line in _SAMPLE_LINES]


def test_prompt_lengths_on_real_tokenizers(ns, markdown):
    prompt = STANFORD_PROMPT_NO_INPUT.format_map(ns["example"])
    n = {name: len(load_reference_tokenizer(name)(prompt)["input_ids"]) for name in ("gpt2", "qwen2_5", "mistral")}
    n["tiny"] = len(load_tokenizer()(prompt)["input_ids"])
    assert ns["prompt_lengths"].tolist() == [n["tiny"], n["gpt2"], n["qwen2_5"], n["mistral"]]
    assert (f"小分词器上的 {n['tiny']} 个词元，在 Qwen2.5 上只有 {n['qwen2_5']} 个，GPT-2 上 {n['gpt2']} 个，"
            f"Mistral 上 {n['mistral']} 个") in markdown
    assert all(2 <= n["tiny"] / n[k] <= 3 for k in ("gpt2", "qwen2_5", "mistral"))  # "两到三倍"
    assert 1000 < len(load_tokenizer()) < 2000  # "词表只有一千多个词元"


@needs_tested_trl
@pytest.mark.parametrize("name", ["gpt2", "qwen2_5"])
def test_notebook_stanford_and_trl_equal_the_reference_implementations(ns, bench, name, tmp_path, markdown):
    tok = load_reference_tokenizer(name)
    records = [QUOTED, *sample_records()]
    a_ids, a_labels = bench.stanford_alpaca(records, bench.stanford_tokenizer(tok))
    trl = bench.trl_prepare(records, tok, bench.trl_config(tmp_path))
    for i, record in enumerate(records):
        assert ns["stanford_labels"](tok, record) == (a_ids[i].tolist(), a_labels[i].tolist())
        assert ns["trl_labels"](tok, record) == (trl[i]["input_ids"], trl[i]["labels"])
    from importlib.metadata import version

    assert version("trl") == "1.16.0" and "本仓库锁定的 TRL 1.16 版" in markdown


def test_quoted_reply_merges_on_real_tokenizers_not_on_the_tiny_one(ns):
    table = {name: ns["tokens_at_boundary"](tok, QUOTED) for name, tok in
             [("tiny", ns["tokenizer"]), *((n, load_reference_tokenizer(n)) for n in ("gpt2", "qwen2_5", "mistral"))]}
    assert table["tiny"]["整段分词（交界处）"][1:3] == [":", '"']
    for name in ("gpt2", "qwen2_5", "mistral"):
        assert table[name]["提示单独分词（结尾）"][-1] == ":"
        assert table[name]["整段分词（交界处）"][1] == ':"'


def test_boundary_view_token_by_token(ns):
    gpt2 = load_reference_tokenizer("gpt2")
    view = ns["boundary_view"](gpt2, QUOTED)
    eos = "'<|endoftext|>'"
    assert view.loc["Stanford train.py"].tolist() == ["' Response' ○", "':\"' ○", "'Hello' ●", "'\"' ●", f"{eos} ●", ""]
    assert view.loc["TRL SFTTrainer"].tolist() == ["' Response' ○", "':\"' ●", "'Hello' ●", "'\"' ●", f"{eos} ●", ""]
    assert view.loc["utils.encode"].tolist() == ["' Response' ○", "':' ○", "'\"' ●", "'Hello' ●", "'\"' ●", f"{eos} ●"]
    assert view.loc["推理时的提示"].tolist()[:2] == ["' Response'", "':'"]
    # the same, from the labels themselves: encode's prompt ids are the inference ids, its reply decodes back
    row = encode(QUOTED, gpt2, "alpaca")
    prompt_ids = gpt2(render_prompt(QUOTED, "alpaca", gpt2))["input_ids"]
    k = len(prompt_ids)
    assert row["input_ids"][:k] == prompt_ids and set(row["labels"][:k]) == {IGNORE_INDEX}
    assert gpt2.decode(row["labels"][k:]) == '"Hello"' + gpt2.eos_token


def test_what_is_learned(ns):
    learned = ns["what_is_learned"](load_reference_tokenizer("gpt2"), QUOTED)
    assert learned["上下文 == 推理时的提示"].tolist() == [False, False, True]
    eos = "<|endoftext|>"
    assert learned["要学会写出的文本"].tolist() == ['Hello"' + eos, ':"Hello"' + eos, '"Hello"' + eos]
    assert learned.loc["Stanford train.py", "训练时上下文的结尾"].endswith(':"')
    assert learned.loc["TRL SFTTrainer", "训练时上下文的结尾"].endswith("Response")


def test_sample_merges_counted(ns, markdown):
    table = ns["merge_table"].set_index("分词器")
    records = sample_records()
    for name in ("gpt2", "qwen2_5", "mistral"):
        tok = load_reference_tokenizer(name)
        merged = {}
        for i, rec in enumerate(records):  # independent check: whole-text ids vs the prompt's own ids
            prompt_ids = tok(STANFORD_PROMPT_NO_INPUT.format_map(rec) if not rec.get("input")
                             else STANFORD_PROMPT_INPUT.format_map(rec))["input_ids"]
            whole = tok(render(rec, "alpaca", tok))["input_ids"]
            if whole[:len(prompt_ids)] != prompt_ids:
                merged[i] = tok.decode([whole[len(prompt_ids) - 1]])
        assert table.loc[name, "合并的记录 → 词元"] == merged
        assert table.loc[name, "boundary_merges（encode_dataset 计数）"] == len(merged) == \
            encode_dataset(records, tok, "alpaca").boundary_merges
        if name == "qwen2_5":
            assert merged == {4: ":The", 6: ":A"} and f"14 条里有 {len(merged)} 条" in markdown
        else:
            assert merged == {}
    assert len(records) == 14 and table.loc["课程小分词器", "boundary_merges（encode_dataset 计数）"] == 0
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "GPT-2 980 条 = 4.9%" in readme and "Qwen2 4,290 条 = 21.4%" in readme  # "约 5%"、"超过 20%"
    assert "约占 5%" in markdown and "超过 20%" in markdown


def test_base_model_continuation_is_planted_in_the_corpus(ns, markdown):
    lines = (resources.files("utils") / "data" / "corpus_text.txt").read_text(encoding="utf-8").splitlines()
    emails = [n for n, line in enumerate(lines, start=1) if "How are you? Hope this email finds you well" in line]
    assert len(emails) == 7 and "里有 7 段含有" in markdown
    verbatim = [n for n, line in enumerate(lines, start=1) if "How are you?" + ns["continuation"].rstrip() in line]
    assert verbatim == ns["source_lines"] == [71] and "就是第 71 行的原文" in markdown


def test_alpaca_facts_and_links(markdown):
    seeds = require_shared("real_data", "stanford_alpaca_seed_tasks.jsonl").read_text(encoding="utf-8").splitlines()
    assert len([s for s in seeds if s.strip()]) == 175 and "175 条人工写的种子任务" in markdown
    for fact in ("text-davinci-003", "Self-Instruct", "52K", "0.7", "500 美元", "CC BY-NC 4.0",
                 "https://huggingface.co/datasets/tatsu-lab/alpaca",
                 "https://huggingface.co/datasets/ehartford/wizard_vicuna_70k_unfiltered",
                 "Alpaca 遵从 LLaMA 的模板"):
        assert fact in markdown


def test_exercise_solutions_hidden_with_outputs_and_one_open_ended(markdown):
    nb = nbformat.read(ROOT / "notebooks" / "03_alpaca_template.ipynb", as_version=4)
    solutions = [c for c in nb.cells if "solution" in c.metadata.get("tags", [])]
    assert len(solutions) == 2
    for cell in solutions:
        assert cell.metadata["jupyter"] == {"source_hidden": True, "outputs_hidden": True}
    assert "（开放题）边界合并" in markdown


def test_manual_page_agrees_with_the_notebook(ns, markdown):
    page = (ROOT / "hf_basic" / "03_alpaca_template.md").read_text(encoding="utf-8")
    assert "DESIGN.md" not in page and "(../README.md#设计与数据契约)" in page
    assert "## 设计与数据契约" in (ROOT / "README.md").read_text(encoding="utf-8")
    n = dict(zip(["tiny", "gpt2", "qwen2_5", "mistral"], ns["prompt_lengths"].tolist()))
    for label, key in [("课程小分词器（含 `<s>`）", "tiny"), ("GPT-2", "gpt2"), ("Qwen2.5", "qwen2_5"),
                       ("Mistral v0.3（含 `<s>`）", "mistral")]:
        assert f"| {label} | {n[key]} |" in page
    merges = ns["merge_table"].set_index("分词器").loc["qwen2_5", "boundary_merges（encode_dataset 计数）"]
    assert f"14 条 Alpaca 样例里有 {merges} 条在 Qwen2.5 上合并" in page
    assert "7 段含有" in page and "第 71 行的原文" in page and "约占 5%" in page and "超过 20%" in page
    for fact in ("text-davinci-003", "175 条人工写的种子任务", "0.7", "500 美元", "CC BY-NC 4.0",
                 "https://huggingface.co/datasets/tatsu-lab/alpaca",
                 "https://huggingface.co/datasets/ehartford/wizard_vicuna_70k_unfiltered", "Alpaca 遵从 LLaMA 的模板"):
        assert fact in page
    exercises = page.split("## 练习")[1]
    notebook_exercises = markdown.split("## 练习")[1]
    assert exercises.count("\n1. ") == notebook_exercises.count("\n1. ") == 1
    assert "\n4. （开放题）边界合并" in exercises and "\n4. （开放题）边界合并" in notebook_exercises
    assert "\n5. " not in exercises and "\n5. " not in notebook_exercises


def test_boundary_figure_shows_the_notebooks_three_methods(ns):
    from nbexec import load_script

    script = load_script("figures/ch03_alpaca_template.py")
    gpt2 = load_reference_tokenizer("gpt2")
    assert script.QUOTED == QUOTED == ns["quoted"]
    drawn = list(script.boundary_rows(gpt2, QUOTED).values())
    assert drawn == list(ns["three_methods"](gpt2, QUOTED).values())
    page = (ROOT / "hf_basic" / "03_alpaca_template.md").read_text(encoding="utf-8")
    assert "(../img/ch03_boundary_merge.png)" in page and (ROOT / "img" / "ch03_boundary_merge.png").exists()


def test_figure_script_runs_without_missing_glyphs(tmp_path):
    from nbexec import run_figure_script

    paths = run_figure_script("ch03_alpaca_template", tmp_path)
    assert [p.name for p in paths] == ["ch03_alpaca_mask.png", "ch03_boundary_merge.png"]
    assert all(p.stat().st_size > 10_000 for p in paths)
