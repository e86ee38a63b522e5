"""Chapter 2 (next-token prediction): the chapter's equalities and its exercise answers, on the
shipped tiny base model, plus the notebook's form (练习 with hidden, asserting solution cells)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
import torch
import torch.nn.functional as F

from nbexec import notebook_namespace, run_figure_script
from utils.generate import (beam_search, first_divergence, generation_kwargs, greedy_decode,
                            labels_after_prompt, next_token_distribution, sequence_logprobs,
                            teacher_forcing_vs_free_running, token_losses, warp_logits)

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "02_next_token.ipynb"
SENTENCE, PROMPT = "今天天气真好，我们出去看电影吧", "今天天气真好，"
EB_PROMPT, EB_REFERENCE = "今天", "天气真好，天空很蓝，小鸟在树上唱歌。"   # section 5 (exposure bias)
BEAM_PROMPT = "用"                                                         # section 6 (beam beats greedy)


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
                         **generation_kwargs(model, tok, max_new_tokens=9))
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
    assert len(solutions) == 4
    assert "（开放题）" in md
    for cell in solutions:
        assert cell.metadata["jupyter"]["source_hidden"] is True
        assert cell.metadata["jupyter"]["outputs_hidden"] is True
        assert "assert" in cell.source
        assert not any(o.get("output_type") == "error" for o in cell.get("outputs", []))


def test_figure_script_draws_every_figure_without_missing_glyphs(tmp_path):
    paths = run_figure_script("ch02_next_token", tmp_path)
    assert [p.name for p in paths] == ["ch02_next_token_bars.png", "ch02_token_losses.png",
                                       "ch02_decoding_steps.png", "ch02_beam_tree.png"]
    assert all(p.stat().st_size > 10_000 for p in paths)


# ---- section 4: decoding ends at a word boundary; the KV-cache counts

def test_decoding_demo_ends_at_a_word_boundary(lm):
    model, tok = lm
    decoding = greedy_decode(model, tok, "今天天气真", max_new_tokens=9)
    assert decoding.text == "好，我们出去看电影"      # "电影" complete, not cut after "电"
    from nbexec import load_script
    assert load_script("figures/ch02_next_token.py").DECODING_STEPS == 9


def _outputs(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts.append(out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def test_notebook_states_the_kv_cache_counts_it_printed():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    out = _outputs(nb)
    # 6 prompt tokens + 9 steps: without a cache 6 + 7 + ... + 14 = 90 tokens are fed, with it 6 + 8 = 14,
    # and the last step's attention still reads all 14 cached positions
    assert "不用缓存 90，用缓存 14" in out
    assert "缓存里全部 14 个位置" in out
    md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "省不掉注意力本身" in md and "所有" in md
    for line in ("不用缓存: 今天天气真好，我们出去看电影\n", "generate: 今天天气真好，我们出去看电影\n"):
        assert line in out          # the text ends with "电影", not cut after "电"


def test_replacement_character_is_explained_only_where_it_appears():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert ("\ufffd" in md) == ("\ufffd" in _outputs(nb))


# ---- section 5: exposure bias, teacher forcing vs free running from the same prefix

def test_exposure_bias_example(lm):
    model, tok = lm
    table = teacher_forcing_vs_free_running(model, tok, EB_PROMPT, EB_REFERENCE)
    ref = tok(EB_REFERENCE, add_special_tokens=False)["input_ids"]
    free = greedy_decode(model, tok, EB_PROMPT, max_new_tokens=len(ref)).new_ids
    d = first_divergence(free, ref)
    assert d == 5                                               # the prose's "第 6 步"
    assert table.true[d] == "天" and table.fr_pred[d] == "我" and table.tf_pred[d] == "我"
    after = table.iloc[d + 1:]
    assert len(after) == 12 and after.tf_ok.all() and not after.fr_ok.any()   # "12 步全部对" / "一步也没对上"
    assert table.tf_ok.sum() == 17 and table.fr_ok.sum() == 5
    assert tok.decode(free).startswith("天气真好，我们出去看电影吧。")
    dist = next_token_distribution(model, tok, EB_PROMPT + EB_REFERENCE[:d], k=4)
    assert dist.token.tolist()[:2] == ["我", "天"]              # "“我”排第一，正确的“天”排第二"


def test_notebook_prints_the_exposure_bias_numbers(ns):
    assert ns["diverge"] == 5
    after = ns["after"]
    assert int(after.tf_ok.sum()) == 12 and int(after.fr_ok.sum()) == 0
    out = _outputs(nbformat.read(NOTEBOOK, as_version=4))
    assert "第 6 步，模型自己的预测第一次偏离参考" in out
    assert "偏离之后的 12 步：教师强制对了 12 步，自由生成对了 0 步" in out


# ---- section 6: beam search finds a more probable sequence than greedy decoding

def test_beam_search_beats_greedy_on_the_example(lm):
    model, tok = lm
    greedy = greedy_decode(model, tok, BEAM_PROMPT, max_new_tokens=3)
    beam = beam_search(model, tok, BEAM_PROMPT, num_beams=2, max_new_tokens=3)
    best = beam.hypotheses[0]
    assert (greedy.text, best.text) == ("户问", "一句话")
    g = sequence_logprobs(model, tok, BEAM_PROMPT, greedy.new_ids)
    b = sequence_logprobs(model, tok, BEAM_PROMPT, best.new_ids)
    assert b.logprob.sum() > g.logprob.sum()
    assert b.logprob.sum() == pytest.approx(best.sum_logprob, abs=1e-4)
    assert g.token.tolist() == ["户①", "户②", "问"] and b.token.tolist() == ["一", "句", "话"]
    # the prose's probabilities, read from the notebook's table: 0.562 / 0.486 vs 0.316 / 0.906 / 0.976
    assert g.prob.round(3).tolist()[:2] == [0.562, 0.486]
    assert b.prob.round(3).tolist() == [0.316, 0.906, 0.976]
    assert (round(float(g.prob.prod()), 3), round(float(b.prob.prod()), 3)) == (0.264, 0.280)
    assert g.logprob[0] > b.logprob[0]                          # greedy's first token is the locally best one
    assert g.logprob[1:].sum() < b.logprob[1:].sum()            # ... and leads to a worse total
    ids = tok(BEAM_PROMPT, return_tensors="pt")["input_ids"]
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), num_beams=2,
                         **generation_kwargs(model, tok, max_new_tokens=3))
    assert out[0, ids.shape[1]:].tolist() == best.new_ids
    from nbexec import load_script
    script = load_script("figures/ch02_next_token.py")
    assert (script.BEAM_PROMPT, script.BEAM_STEPS) == (BEAM_PROMPT, 3)   # the figure draws this example


def test_beam_tree_fits_a_notebook_page(lm):
    from utils.viz import plot_beam_tree

    model, tok = lm
    fig = plot_beam_tree(beam_search(model, tok, BEAM_PROMPT, num_beams=2, max_new_tokens=3), prompt_label=BEAM_PROMPT,
                         highlight=greedy_decode(model, tok, BEAM_PROMPT, max_new_tokens=3).new_ids)
    width, _ = fig.get_size_inches()
    assert width <= 9.5           # shown at ~900 px, so 12-pt text stays readable
    assert min(t.get_fontsize() for t in fig.axes[0].texts) >= 11


def test_manual_page_has_exercises_and_the_notebooks_examples():
    page = (Path(__file__).resolve().parents[1] / "hf_basic" / "02_next_token.md").read_text()
    assert "## 练习" in page
    assert EB_REFERENCE in page and "第 6 步" in page and "用一句话" in page and "用户问" in page
    assert "所有" in page and "O(1)" not in page
    for number in ("0.562", "0.486", "0.316", "0.264", "0.280", "送进模型 90 个词元", "只送 14 个", "全部 14 个位置",
                   "12 步"):   # each recomputed by a test above
        assert number in page, number


def test_notebook_prose_numbers_are_the_printed_ones():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    out = _outputs(nb)
    for number in ("0.562", "0.486", "0.316", "0.906", "0.976", "0.264", "0.280"):
        assert number in md and number in out, number
    assert "之后 12 步它全部预测对了" in md and "第 6 步" in md
