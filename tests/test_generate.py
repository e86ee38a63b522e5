"""utils.generate: every hand-written piece checked against the library (transformers) it mirrors.

Models: a random-init tiny Llama with the GPT-2 tokenizer (peaky logits via a large init range, so
that ties are improbable) and, when the shipped checkpoints exist, the course's tiny base model.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.generation.logits_process import (LogitsProcessorList, TemperatureLogitsWarper,
                                                    TopKLogitsWarper, TopPLogitsWarper)

from conftest import load_reference_tokenizer
from utils.generate import (PIECE_MARKS, beam_search, chat, chat_prompt_ids, complete, first_divergence,
                            generation_kwargs, greedy_decode, labels_after_prompt,
                            next_token_distribution, sample_decode, sequence_logprobs,
                            teacher_forcing_vs_free_running, token_label, token_labels,
                            token_losses, warp_logits)

PROMPTS = ["The chicken crossed the", "How are you?", "今天天气真"]


def random_llama(tokenizer, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    eos = tokenizer.eos_token_id
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                      initializer_range=0.5, tie_word_embeddings=True, attn_implementation="eager",
                      bos_token_id=tokenizer.bos_token_id, eos_token_id=eos,
                      pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos)
    return LlamaForCausalLM(cfg).eval()


def _shipped():
    from utils.models import load_causal_lm, load_tokenizer

    return load_causal_lm(), load_tokenizer()


@pytest.fixture(scope="module", params=["random-tiny", "random-gpt2", "shipped"])
def lm(request):
    """(model, tokenizer): random-init with the tiny tokenizer (BOS, pad != eos) or GPT-2's (no BOS,
    no pad; 50k vocabulary), and the shipped base model."""
    torch.set_num_threads(2)
    if request.param == "shipped":
        return _shipped()
    if request.param == "random-tiny":
        from utils.models import load_tokenizer

        tok = load_tokenizer()
    else:
        tok = load_reference_tokenizer("gpt2")
    return random_llama(tok), tok


def _ids(tok, text):
    return tok(text, return_tensors="pt")["input_ids"]


# ---------------------------------------------------------------- next-token distribution

def test_next_token_distribution_is_the_softmax_of_the_last_logits(lm):
    model, tok = lm
    for text in PROMPTS:
        table = next_token_distribution(model, tok, text, k=10)
        with torch.no_grad():
            probs = torch.softmax(model(_ids(tok, text)).logits[0, -1], -1)
        expected = torch.sort(probs, descending=True)
        assert table.id.tolist() == expected.indices[:10].tolist()
        assert torch.allclose(torch.tensor(table.prob.tolist()), expected.values[:10], atol=1e-6)
        assert table.prob.is_monotonic_decreasing


# ---------------------------------------------------------------- training loss

@pytest.mark.parametrize("text,prompt", [("今天天气真好，我们出去看电影吧", "今天天气真好，"),
                                         ("The chicken crossed the road.", "The chicken"),
                                         ("The chicken crossed the road.", "")])
def test_single_pass_loss_equals_model_loss_and_prefix_by_prefix(lm, text, prompt):
    model, tok = lm
    table = token_losses(model, tok, text, prompt=prompt)
    ids, labels = labels_after_prompt(tok, text, prompt)
    n_prompt = len(tok(prompt)["input_ids"]) if prompt else 0
    # the labels: prompt positions -100, the rest the ids themselves (unshifted)
    assert labels[0, :n_prompt].tolist() == [-100] * n_prompt
    assert labels[0, n_prompt:].tolist() == ids[0, n_prompt:].tolist()
    with torch.no_grad():
        model_loss = model(input_ids=ids, labels=labels).loss
    assert table.loss.mean() == pytest.approx(float(model_loss), abs=1e-5)
    # one target at a time: feed the prefix, take -log p(next token)
    first_target = max(n_prompt, 1)
    prefix_losses = []
    for t in range(first_target, ids.shape[1]):
        with torch.no_grad():
            logp = F.log_softmax(model(input_ids=ids[:, :t]).logits[0, -1], -1)
        prefix_losses.append(-float(logp[ids[0, t]]))
    assert table.position.tolist() == list(range(first_target, ids.shape[1]))
    assert table.id.tolist() == ids[0, first_target:].tolist()
    assert table.loss.tolist() == pytest.approx(prefix_losses, abs=1e-4)
    assert sum(prefix_losses) / len(prefix_losses) == pytest.approx(float(model_loss), abs=1e-4)


def test_labels_after_prompt_rejects_a_prompt_that_is_not_a_token_prefix():
    tok = load_reference_tokenizer("gpt2")
    with pytest.raises(ValueError, match="does not start with the prompt"):
        labels_after_prompt(tok, "The chicken", "A dog")
    with pytest.raises(ValueError, match="not a prefix"):   # "The chick" | "en" merges into " chicken"
        labels_after_prompt(tok, "The chicken", "The chick")


# ---------------------------------------------------------------- greedy

@pytest.mark.parametrize("use_cache", [True, False])
def test_hand_greedy_equals_generate(lm, use_cache):
    model, tok = lm
    for text in PROMPTS:
        ids = _ids(tok, text)
        mine = greedy_decode(model, tok, text, max_new_tokens=12, use_cache=use_cache)
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                             **generation_kwargs(model, tok, max_new_tokens=12))
        assert mine.new_ids == out[0, ids.shape[1]:].tolist()
        assert mine.prompt_ids == ids[0].tolist()
        assert mine.stopped_at_eos == (mine.new_ids[-1] == tok.eos_token_id)
        assert [s.token_id for s in mine.steps] == mine.new_ids


def test_greedy_step_probabilities_match_a_full_forward_pass(lm):
    model, tok = lm
    mine = greedy_decode(model, tok, PROMPTS[0], max_new_tokens=5)
    full = torch.tensor([mine.prompt_ids + mine.new_ids])
    with torch.no_grad():
        probs = torch.softmax(model(full).logits[0], -1)
    n = len(mine.prompt_ids)
    for i, step in enumerate(mine.steps):
        assert step.prob == pytest.approx(float(probs[n - 1 + i, step.token_id]), abs=1e-5)
        assert step.prob == pytest.approx(step.top[0][1], abs=1e-6)   # greedy takes the top token


# ---------------------------------------------------------------- sampling

@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, None, None), (0.7, None, None),
                                                     (1.0, 5, None), (1.3, None, 0.9),
                                                     (0.8, 20, 0.5), (1.0, 1, None)])
def test_warp_logits_equals_transformers_warpers(temperature, top_k, top_p):
    logits = torch.randn(3, 257, generator=torch.Generator().manual_seed(1)) * 3
    processors = LogitsProcessorList()
    if temperature != 1.0:
        processors.append(TemperatureLogitsWarper(temperature))
    if top_k:
        processors.append(TopKLogitsWarper(top_k))
    if top_p is not None:
        processors.append(TopPLogitsWarper(top_p))
    expected = processors(torch.zeros(3, 1, dtype=torch.long), logits.clone())
    mine = warp_logits(logits, temperature, top_k, top_p)
    assert torch.equal(torch.isinf(mine), torch.isinf(expected))
    assert torch.allclose(mine[~torch.isinf(mine)], expected[~torch.isinf(expected)])
    if top_k and top_p is None:
        assert int((~torch.isinf(mine[0])).sum()) == top_k


SAMPLING_SETTINGS = [(1.0, None, None), (0.7, 10, None), (1.2, None, 0.8)]
# For speed the 50k-vocabulary model runs one setting; the others run all.
SAMPLING_CASES = [(which, *setting) for which in ("random-tiny", "random-gpt2", "shipped")
                  for setting in SAMPLING_SETTINGS if which != "random-gpt2" or setting[0] == 1.0]


@pytest.mark.parametrize("lm,temperature,top_k,top_p", SAMPLING_CASES, indirect=["lm"])
def test_hand_sampling_equals_generate_with_the_same_seed(lm, temperature, top_k, top_p):
    model, tok = lm
    for seed in range(3):
        text = PROMPTS[seed % len(PROMPTS)]
        ids = _ids(tok, text)
        mine = sample_decode(model, tok, text, max_new_tokens=10, temperature=temperature, top_k=top_k,
                             top_p=top_p, generator=torch.Generator().manual_seed(seed))
        torch.manual_seed(seed)
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                             **generation_kwargs(model, tok, max_new_tokens=10, do_sample=True,
                                                 temperature=temperature, top_k=top_k or 0,
                                                 top_p=top_p if top_p is not None else 1.0))
        assert mine.new_ids == out[0, ids.shape[1]:].tolist()


def test_sampling_is_reproducible_with_a_seeded_generator(lm):
    model, tok = lm
    runs = [sample_decode(model, tok, "今天", max_new_tokens=8, temperature=1.5,
                          generator=torch.Generator().manual_seed(7)).new_ids for _ in range(2)]
    assert runs[0] == runs[1]


# ---------------------------------------------------------------- beam search

def _generate_beams(model, tok, ids, eos, **kw):
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), output_scores=True,
                         return_dict_in_generate=True, num_return_sequences=kw["num_beams"],
                         **generation_kwargs(model, tok, eos_token_id=eos, **kw))
    return out.sequences[:, ids.shape[1]:], out.sequences_scores


BEAM_SETTINGS = [(3, 1.0, False), (3, 0.0, False), (3, 2.0, False), (3, -1.0, False),
                 (3, 1.0, True), (2, 1.0, "never"), (3, 2.0, "never")]


# The shipped model runs every setting with both EOS choices; for speed the 50k-vocabulary model runs
# one setting, and the random tiny model (whose real EOS is improbable) only the "likely" EOS.
BEAM_CASES = ([("shipped", *s, eos) for s in BEAM_SETTINGS for eos in ("real", "likely")]
              + [("random-tiny", *s, "likely") for s in BEAM_SETTINGS]
              + [("random-gpt2", 3, 1.0, False, "real")])


@pytest.mark.parametrize("lm,num_beams,length_penalty,early_stopping,eos_choice", BEAM_CASES, indirect=["lm"])
def test_hand_beam_search_equals_generate(lm, num_beams, length_penalty, early_stopping, eos_choice):
    """Token ids and sequence scores of every returned beam. With ``eos_choice="likely"`` the EOS id is
    a token the model often predicts, so beams finish early and the stopping rules are exercised."""
    model, tok = lm
    pad = generation_kwargs(model, tok)["pad_token_id"]
    for text in PROMPTS:
        ids = _ids(tok, text)
        eos = tok.eos_token_id
        if eos_choice == "likely":
            with torch.no_grad():
                eos = int(torch.topk(model(ids).logits[0, -1], 2).indices[1])
        mine = beam_search(model, tok, text, num_beams=num_beams, max_new_tokens=7,
                           length_penalty=length_penalty, early_stopping=early_stopping, eos_token_id=eos)
        seqs, scores = _generate_beams(model, tok, ids, eos, num_beams=num_beams, max_new_tokens=7,
                                       length_penalty=length_penalty, early_stopping=early_stopping)
        assert len(mine.hypotheses) == num_beams
        for hyp, seq, score in zip(mine.hypotheses, seqs.tolist(), scores.tolist()):
            n = len(hyp.new_ids)
            assert hyp.new_ids == seq[:n], (text, hyp.text)
            assert all(t == pad for t in seq[n:])
            assert hyp.score == pytest.approx(score, rel=1e-5, abs=1e-4)
            assert hyp.score == pytest.approx(hyp.sum_logprob / n ** length_penalty, abs=1e-6)


def test_beam_tree_is_consistent(lm):
    """Every kept candidate extends a running beam of the previous step; scores add up."""
    model, tok = lm
    result = beam_search(model, tok, PROMPTS[0], num_beams=3, max_new_tokens=5)
    prev_scores = {0: 0.0}
    for step in result.steps:
        assert len(step) == 6
        assert [c.score for c in step] == sorted((c.score for c in step), reverse=True)
        for c in step:
            assert c.parent in prev_scores
            assert c.score == pytest.approx(prev_scores[c.parent] + c.logprob, abs=1e-4)
        kept = [c for c in step if c.status == "kept"]
        assert [c.slot for c in kept] == list(range(len(kept)))
        prev_scores = {c.slot: c.score for c in kept}


def test_one_beam_is_greedy(lm):
    model, tok = lm
    for text in PROMPTS:
        beam = beam_search(model, tok, text, num_beams=1, max_new_tokens=8)
        greedy = greedy_decode(model, tok, text, max_new_tokens=8)
        assert beam.hypotheses[0].new_ids == greedy.new_ids


# ---------------------------------------------------------------- completion vs chat

def test_complete_returns_the_generated_continuation(lm):
    model, tok = lm
    ids = _ids(tok, "How are you?")
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                         **generation_kwargs(model, tok, max_new_tokens=10))
    assert complete(model, tok, "How are you?", max_new_tokens=10) == tok.decode(
        out[0, ids.shape[1]:], skip_special_tokens=True)


def test_generation_kwargs_set_special_ids_explicitly():
    tok = load_reference_tokenizer("gpt2")   # no pad token: falls back to EOS
    kw = generation_kwargs(None, tok, max_new_tokens=3)
    assert kw["pad_token_id"] == kw["eos_token_id"] == tok.eos_token_id
    assert kw["max_new_tokens"] == 3 and kw["do_sample"] is False


def test_chat_renders_with_the_chat_template_and_one_bos():
    from utils.models import load_tokenizer

    messages = [{"role": "user", "content": "1+1=?"}]
    tiny = load_tokenizer()   # its template writes BOS itself, as apply_chat_template(tokenize=True) sees it
    text = tiny.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text.startswith(tiny.bos_token) and text.endswith("assistant:")
    assert chat_prompt_ids(tiny, messages)[0].tolist() == tiny.apply_chat_template(
        messages, add_generation_prompt=True, return_dict=True)["input_ids"]
    assert chat_prompt_ids(tiny, messages)[0].tolist().count(tiny.bos_token_id) == 1
    gpt2 = copy.deepcopy(load_reference_tokenizer("gpt2"))   # no BOS at all: none is invented
    gpt2.chat_template = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
    assert chat_prompt_ids(gpt2, messages)[0].tolist() == gpt2("1+1=?\n")["input_ids"]
    llama = copy.deepcopy(load_reference_tokenizer("llama"))   # a template that writes BOS itself
    llama.chat_template = ("{{ bos_token }}{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n"
                           "{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}")
    ids = chat_prompt_ids(llama, messages)[0].tolist()
    assert ids.count(llama.bos_token_id) == 1 and ids[0] == llama.bos_token_id


def test_chat_equals_complete_on_the_rendered_prompt(lm):
    model, tok = lm
    if not tok.chat_template:
        tok = copy.deepcopy(tok)
        tok.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                             "{% if add_generation_prompt %}assistant:{% endif %}")
    messages = [{"role": "user", "content": "How are you?"}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert chat(model, tok, messages, max_new_tokens=8) == complete(model, tok, text, max_new_tokens=8).strip()


def test_chat_without_template_says_so():
    tok = load_reference_tokenizer("gpt2")
    with pytest.raises(ValueError, match="no chat_template"):
        chat_prompt_ids(tok, [{"role": "user", "content": "hi"}])


# ---------------------------------------------------------------- token labels

@pytest.mark.parametrize("name", ["tiny", "gpt2", "qwen2"])
def test_token_labels_name_the_character_a_byte_piece_belongs_to(name):
    from conftest import load_any_tokenizer

    tok = load_any_tokenizer(name)
    ids = tok("ok 😀!", add_special_tokens=False)["input_ids"]
    labels = token_labels(tok, ids)
    pieces = [lab.lstrip("·") for lab in labels if "😀" in lab]    # "·": a space in the same token
    assert pieces
    if len(pieces) > 1:   # the emoji is split into byte tokens: numbered pieces, in order
        assert pieces == [f"😀{PIECE_MARKS[min(k, len(PIECE_MARKS) - 1)]}" for k in range(len(pieces))]
    assert not any("<0x" in lab for lab in labels)
    # whole tokens keep their plain label
    for i, lab in zip(ids, labels):
        if "😀" not in lab:
            assert lab == token_label(tok, i)


# ---------------------------------------------------------------- scoring a continuation, exposure bias

def test_sequence_logprobs_are_the_prefix_by_prefix_log_probs(lm):
    model, tok = lm
    for text in PROMPTS:
        new = greedy_decode(model, tok, text, max_new_tokens=4).new_ids
        table = sequence_logprobs(model, tok, text, new)
        ids = _ids(tok, text)[0].tolist()
        expected = []
        for k, token in enumerate(new):     # one prefix at a time: log p(token | prompt + new[:k])
            with torch.no_grad():
                logp = F.log_softmax(model(torch.tensor([ids + new[:k]])).logits[0, -1], -1)
            expected.append(float(logp[token]))
        assert table.id.tolist() == new and table.step.tolist() == list(range(1, len(new) + 1))
        assert table.logprob.tolist() == pytest.approx(expected, abs=1e-4)
        assert table.prob.tolist() == pytest.approx([float(torch.tensor(x).exp()) for x in expected], abs=1e-5)


def test_sequence_logprobs_sum_is_the_beams_sum_logprob(lm):
    model, tok = lm
    result = beam_search(model, tok, PROMPTS[0], num_beams=2, max_new_tokens=4)
    for hyp in result.hypotheses:
        assert sequence_logprobs(model, tok, PROMPTS[0], hyp.new_ids).logprob.sum() == \
            pytest.approx(hyp.sum_logprob, abs=1e-4)


def test_sequence_logprobs_rejects_an_empty_continuation(lm):
    model, tok = lm
    with pytest.raises(ValueError, match="empty"):
        sequence_logprobs(model, tok, PROMPTS[0], [])


def test_first_divergence():
    assert first_divergence([1, 2, 3], [1, 2, 4]) == 2
    assert first_divergence([7], [8]) == 0
    assert first_divergence([1, 2], [1, 2, 3]) is None
    assert first_divergence(torch.tensor([1, 5]), [1, 6]) == 1


def test_teacher_forcing_vs_free_running(lm):
    model, tok = lm
    prompt = PROMPTS[0]
    ids = _ids(tok, prompt)[0].tolist()
    reference = " road to get to the other side."
    ref = tok(reference, add_special_tokens=False)["input_ids"]
    table = teacher_forcing_vs_free_running(model, tok, prompt, reference)
    free = greedy_decode(model, tok, prompt, max_new_tokens=len(ref), eos_token_id=-1).new_ids
    tf = []
    for k in range(len(ref)):                # teacher forcing: the argmax after prompt + the TRUE tokens
        with torch.no_grad():
            tf.append(int(model(torch.tensor([ids + ref[:k]])).logits[0, -1].argmax()))
    label = lambda seq: [token_label(tok, i) for i in seq]   # noqa: E731
    assert table.step.tolist() == list(range(1, len(ref) + 1))
    assert table.true.tolist() == label(ref)
    assert table.tf_pred.tolist() == label(tf)
    assert table.tf_fed.tolist() == label([ids[-1]] + ref[:-1])
    assert table.fr_pred.tolist() == label(free)
    assert table.fr_fed.tolist() == label([ids[-1]] + free[:-1])
    assert table.tf_ok.tolist() == [a == b for a, b in zip(tf, ref)]
    assert table.fr_ok.tolist() == [a == b for a, b in zip(free, ref)]
    d = first_divergence(free, ref)
    stop = len(ref) if d is None else d + 1
    assert table.tf_pred.tolist()[:stop] == table.fr_pred.tolist()[:stop]   # same inputs up to the divergence
    assert len(teacher_forcing_vs_free_running(model, tok, prompt, ref, max_new_tokens=3)) == 3
