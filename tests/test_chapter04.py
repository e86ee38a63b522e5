"""Chapter 4 (multi-turn, chat templates): the notebook's hand-written templates equal the library's
and FastChat's, and its exercise solutions hold."""

from __future__ import annotations

import itertools

import pytest

from nbexec import notebook_namespace
from utils.encode import encode
from utils.templates import VICUNA_SYSTEM, render


@pytest.fixture(scope="module")
def ns():
    return notebook_namespace("04_multi_turn_chat_template.ipynb")


def test_vicuna_literal_fastchat_string(ns):
    # FastChat vicuna_v1.1: sep " ", sep2 "</s>", roles USER / ASSISTANT, written out literally
    conv = {"messages": [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi there"},
                         {"role": "user", "content": "How are you?"}, {"role": "assistant", "content": "Fine."}]}
    system = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives "
              "helpful, detailed, and polite answers to the user's questions.")
    expected = f"{system} USER: Hello ASSISTANT: Hi there</s>USER: How are you? ASSISTANT: Fine.</s>"
    assert ns["VICUNA_SYSTEM"] == VICUNA_SYSTEM == system
    assert ns["vicuna"](conv["messages"]) == expected == render(conv, "vicuna", ns["tokenizer"])


def test_hand_written_human_assistant_equals_library_and_chat_template(ns):
    tok = ns["tokenizer"]
    for d in ns["dialogs"]:
        text = ns["human_assistant"](d["messages"])
        assert text == render(d, "human_assistant", tok)
        # the chat template writes the BOS itself; the rest of the text is the same
        assert tok.bos_token + text == tok.apply_chat_template(d["messages"], tokenize=False)


def test_every_assistant_turn_supervised_token_by_token(ns):
    tok = ns["tokenizer"]
    for d in ns["dialogs"]:
        for template in ("vicuna", "human_assistant", "chat_template"):
            row = encode(d, tok, template)
            runs = [[i for i, _ in g] for sup, g in
                    itertools.groupby(enumerate(row["labels"]), key=lambda p: p[1] != -100) if sup]
            replies = [m["content"] for m in d["messages"] if m["role"] == "assistant"]
            assert len(runs) == len(replies)
            for run, reply in zip(runs, replies):
                ids = [row["input_ids"][i] for i in run]
                assert [row["labels"][i] for i in run] == ids
                assert ids[-1] == tok.eos_token_id
                assert tok.decode(ids) == " " + reply + tok.eos_token


def test_assistant_tokens_mask_agrees_with_encode(ns):
    tok = ns["tokenizer"]
    for d in ns["dialogs"]:
        out = tok.apply_chat_template(d["messages"], tokenize=True, return_dict=True,
                                      return_assistant_tokens_mask=True)
        row = encode(d, tok, "chat_template")
        assert row["input_ids"] == out["input_ids"]
        assert [label != -100 for label in row["labels"]] == [bool(m) for m in out["assistant_masks"]]


def test_chat_model_needs_its_own_template(ns):
    from utils.generate import complete
    from utils.templates import render_prompt

    tok, model = ns["tokenizer"], ns["chat_model"]
    q = {"messages": [{"role": "user", "content": "What is the capital of Italy?"},
                      {"role": "assistant", "content": "…"}]}
    prompt = render_prompt(q, "human_assistant", tok)
    assert tok.bos_token + prompt == tok.apply_chat_template(q["messages"][:1], tokenize=False,
                                                             add_generation_prompt=True)
    assert complete(model, tok, prompt, max_new_tokens=20).strip() == "The capital of Italy is Rome."
    for other in ("vicuna", "alpaca"):
        assert "Rome" not in complete(model, tok, render_prompt(q, other, tok), max_new_tokens=20)


# ---- the real templates: Qwen2.5-Instruct ChatML and Mistral v0.3 (shipped tokenizers) ------------

import re  # noqa: E402

import nbformat  # noqa: E402

from nbexec import ROOT, load_script  # noqa: E402

QWEN_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
IM_START, IM_END, NEWLINE = 151644, 151645, 198  # Qwen2.5 ids of <|im_start|>, <|im_end|>, "\n"


@pytest.fixture(scope="module")
def qwen():
    from utils.models import load_reference_tokenizer

    return load_reference_tokenizer("qwen2_5")


@pytest.fixture(scope="module")
def mistral():
    from utils.models import load_reference_tokenizer

    return load_reference_tokenizer("mistral")


@pytest.fixture(scope="module")
def executed():
    return nbformat.read(ROOT / "notebooks" / "04_multi_turn_chat_template.ipynb", as_version=4)


def cell_output(nb, marker: str) -> str:
    """Text (stdout and text/plain / text/html) stored by the one code cell whose source contains ``marker``."""
    cells = [c for c in nb.cells if c.cell_type == "code" and marker in c.source]
    assert len(cells) == 1, f"{len(cells)} cells contain {marker!r}"
    parts = []
    for out in cells[0].outputs:
        if out.output_type == "stream":
            parts.append(out.text)
        elif "data" in out:
            parts += [out.data.get("text/plain", ""), out.data.get("text/html", "")]
    return "".join(parts)


def chatml(messages, generation_prompt=False) -> str:
    """ChatML as Qwen2.5 documents it, written out by hand: the default system turn when none is given."""
    if messages[0]["role"] != "system":
        messages = [{"role": "system", "content": QWEN_SYSTEM}] + list(messages)
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return text + ("<|im_start|>assistant\n" if generation_prompt else "")


def test_notebook_chat_is_two_turns_chinese_and_english(ns):
    chat = ns["chat"]
    assert [m["role"] for m in chat] == ["user", "assistant"] * 2
    assert re.search(r"[\u4e00-\u9fff]", chat[1]["content"]) and chat[3]["content"].isascii()
    assert load_script("figures/ch04_multi_turn.py").CHAT == chat  # the manual's figure shows the same row


def test_qwen_chatml_rendering_default_system_own_system_and_generation_prompt(ns, qwen, executed):
    chat, with_system = ns["chat"], ns["with_system"]
    assert qwen.apply_chat_template(chat, tokenize=False) == chatml(chat) == ns["chatml"]
    assert QWEN_SYSTEM in ns["chatml"]
    assert qwen.apply_chat_template(with_system, tokenize=False) == chatml(with_system)
    assert QWEN_SYSTEM not in chatml(with_system)
    for k in (1, 3):
        prompt = qwen.apply_chat_template(chat[:k], tokenize=False, add_generation_prompt=True)
        assert prompt == chatml(chat[:k], generation_prompt=True)
        assert prompt.endswith("<|im_start|>assistant\n") and ns["chatml"].startswith(prompt)
    assert ns["prompt_1"] == chatml(chat[:1], generation_prompt=True)
    # what the notebook printed
    assert cell_output(executed, "chatml = qwen.apply_chat_template") == ns["chatml"] + "\n"
    assert "'<|im_start|>assistant\\n'" in cell_output(executed, "prompt_1 = ")
    assert cell_output(executed, 'print("eos_token:"') == (
        f"eos_token: <|im_end|> {IM_END} | bos_token: None\n"
        f"[{IM_START}, 77091, {NEWLINE}] ['<|im_start|>', 'assistant', '\\n']\n")
    assert qwen.eos_token_id == IM_END and qwen.bos_token is None


def expected_chat_labels(tok, messages):
    """The labels a ChatML row must have, recomputed from the tokenizer alone: token i is supervised iff its
    characters lie inside a reply (from the end of apply_chat_template(history, add_generation_prompt=True) to
    the end of the reply's <|im_end|>); no token may straddle such a boundary."""
    full = tok.apply_chat_template(messages, tokenize=False)
    enc = tok(full, add_special_tokens=False, return_offsets_mapping=True)
    spans = []
    for j, m in enumerate(messages):
        if m["role"] == "assistant":
            start = len(tok.apply_chat_template(messages[:j], tokenize=False, add_generation_prompt=True))
            end = start + len(m["content"] + tok.eos_token)
            assert full[start:end] == m["content"] + tok.eos_token
            spans.append((start, end))
    labels = []
    for token, (a, b) in zip(enc["input_ids"], enc["offset_mapping"]):
        inside = [s <= a and b <= e for s, e in spans]
        assert not any(a < s < b or a < e < b for s, e in spans), "a token straddles a reply boundary"
        labels.append(token if any(inside) else -100)
    return enc["input_ids"], labels


def test_qwen_mask_token_by_token(ns, qwen, executed):
    chat, row = ns["chat"], ns["row_q"]
    ids, labels = expected_chat_labels(qwen, chat)
    assert row["input_ids"] == ids
    assert row["labels"] == labels
    assert row["attention_mask"] == [1] * len(ids)
    # each reply: its text and <|im_end|> supervised; the "\n" after it and the next header are not
    ends = [i for i, t in enumerate(ids) if t == IM_END]
    assert len(ends) == 5  # system, user, assistant, user, assistant
    ends = [i for i, t in enumerate(ids) if t == IM_END and labels[i] != -100]
    assert len(ends) == 2
    for e in ends:
        assert row["labels"][e] == IM_END
        assert ids[e + 1] == NEWLINE and row["labels"][e + 1] == -100
    assert row["labels"][ends[0] + 2:ends[0] + 4] == [-100, -100] and ids[ends[0] + 2] == IM_START
    for i in range(len(ids) - 2):  # every "<|im_start|>assistant\n" header is masked
        if ids[i:i + 3] == [IM_START, 77091, NEWLINE]:
            assert row["labels"][i:i + 3] == [-100] * 3
            assert row["labels"][i + 3] != -100  # the reply starts right after it
    replies = [m["content"] + "<|im_end|>" for m in chat if m["role"] == "assistant"]
    runs = [[i for i, _ in g] for sup, g in itertools.groupby(enumerate(labels), key=lambda p: p[1] != -100) if sup]
    assert [qwen.decode([ids[i] for i in run]) for run in runs] == replies
    n, m = len(ids), sum(x != -100 for x in labels)
    assert (n, m) == (83, 33)
    assert f"{m} of {n} tokens supervised" in cell_output(executed, "runs_q = ")
    # the hand-made pieces, utils' segments and the Chinese mask view agree
    assert ns["pieces"] == [(chatml(chat[:1], True), False), (replies[0], True),
                            (chatml(chat[:3], True)[len(chatml(chat[:1], True)) + len(replies[0]):], False),
                            (replies[1], True), ("\n", False)]
    html = cell_output(executed, "show_mask(row_q, qwen")
    assert "参与训练（计算损失）" in html and f"共 {n} 个词元，{m} 个参与训练" in html and "supervised" not in html
    table = cell_output(executed, "mask_table(row_q, qwen).iloc[")
    assert re.search(r"<\|im_end\|>\s+151645\s+151645\s+True", table)
    assert re.search(r"⏎\s+198\s+-100\s+False", table)


@pytest.mark.parametrize("name", ["qwen2_5", "mistral", "qwen2", "qwen3", "llama3_1"])
def test_real_templates_have_no_generation_block(name):
    """The notebook says none of the real templates at hand has {% generation %}; the tiny one does."""
    from conftest import load_reference_tokenizer

    assert "generation %}" not in load_reference_tokenizer(name).chat_template


def test_return_assistant_tokens_mask_is_all_zero_on_qwen(ns, qwen, executed):
    out = qwen.apply_chat_template(ns["chat"], tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    assert len(out["input_ids"]) == 83 and set(out["assistant_masks"]) == {0}
    assert "{% generation %}" in ns["tokenizer"].chat_template
    assert "0 of 83 tokens marked as assistant tokens" in cell_output(executed, "out_q = ")


def test_double_bos_when_a_rendered_chat_is_tokenized_again(ns, mistral, executed):
    chat = ns["chat"]
    text = mistral.apply_chat_template(chat, tokenize=False)
    bos = mistral.bos_token_id
    assert text.startswith("<s>[INST]") and bos == 1 and mistral.convert_tokens_to_ids("[INST]") == 3
    twice = mistral(text)["input_ids"]
    once = mistral(text, add_special_tokens=False)["input_ids"]
    assert twice[:3] == [bos, bos, 3] and twice[1:] == once
    assert once[:2] == [bos, 3] and once.count(bos) == 1
    assert mistral.apply_chat_template(chat, tokenize=True)["input_ids"] == once
    assert encode({"messages": chat}, mistral, "chat_template")["input_ids"] == once
    printed = cell_output(executed, "via_template = ")
    assert "tokenizer(text)                      starts with 2 BOS" in printed
    assert "apply_chat_template(tokenize=True)   starts with 1 BOS" in printed
    assert "encode(..., 'chat_template')         starts with 1 BOS" in printed
    # the tiny tokenizer's template writes <s> too (section 5 says so)
    tiny = ns["tokenizer"]
    rendered = tiny.apply_chat_template(ns["conv"]["messages"], tokenize=False)
    assert tiny(rendered)["input_ids"][:2] == [tiny.bos_token_id] * 2
    assert tiny.apply_chat_template(ns["conv"]["messages"], tokenize=True)["input_ids"] == ns["ids_text"]


def test_exercises_hidden_open_ended_and_solved(ns, qwen, executed):
    solutions = [c for c in executed.cells if "solution" in c.metadata.get("tags", [])]
    assert len(solutions) == 5
    for c in solutions:
        assert c.metadata["jupyter"] == {"source_hidden": True, "outputs_hidden": True}
    exercises = next(c.source for c in executed.cells if c.cell_type == "markdown" and "## 练习" in c.source)
    assert exercises.count("（开放）") >= 2
    # exercise 4: the learner's ChatML renders like Qwen2.5's, also on conversations the solution did not try
    mine = ns["MY_CHATML"]
    extra = [[{"role": "system", "content": "简短回答。"}, {"role": "user", "content": "Hi"}],
             [{"role": "user", "content": "第一问"}, {"role": "assistant", "content": "答一"},
              {"role": "user", "content": "第二问"}]]
    for msgs in extra:
        for gen in (False, True):
            assert (qwen.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen, chat_template=mine)
                    == qwen.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen))
    # exercise 5: only the last reply supervised
    last = ns["last_only"]
    ids, labels = expected_chat_labels(qwen, ns["chat"])
    cut = ids.index(IM_END, max(i for i, t in enumerate(ids) if t == IM_START)) + 1
    start = max(i for i, t in enumerate(ids) if t == IM_START) + 3
    assert last["labels"] == [-100] * start + ids[start:cut] + [-100] * (len(ids) - cut)


def test_manual_page_agrees_with_the_notebook(ns):
    page = (ROOT / "hf_basic" / "04_multi_turn_chat_template.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```text\n(.*?)```", page, flags=re.S)
    assert ns["chatml"] in blocks  # the real rendering, byte for byte (its final "\n" included)
    flat = page.replace("\n", "")
    assert "一共 83 个词元，其中 33 个参与训练" in flat and "83 个词元里 0 个被标成助手词元" in flat
    assert "[1, 1, 3, …]" in flat and "[1, 3, …]" in flat and "You are Qwen, created by Alibaba Cloud." in flat
    assert "../img/ch04_chatml_mask.png" in page and (ROOT / "img" / "ch04_chatml_mask.png").exists()
    assert re.search(r"^## 练习", page, re.M) and "（开放）" in page
    assert "The capital of Italy is Rome." in page
