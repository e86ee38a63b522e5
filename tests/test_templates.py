"""utils.templates: exact strings (against the sources' literals), prefixes, segments, chat templates."""

from __future__ import annotations

import pytest

from utils.templates import (TEMPLATES, AlpacaTemplate, Segment, TurnTemplate, get_template, render,
                             render_prompt, row_segments, segments)

# Written out from tatsu-lab/stanford_alpaca train.py (PROMPT_DICT), not taken from utils.templates.
STANFORD_PROMPT_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
)
STANFORD_PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:"
)
# FastChat conversation.py, register_conv_template(Conversation(name="vicuna_v1.1", ...)).
FASTCHAT_VICUNA_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
                          "The assistant gives helpful, detailed, and polite answers to the user's questions.")


def fastchat_vicuna_v11(system: str, messages: list[tuple[str, str | None]], sep=" ", sep2="</s>") -> str:
    """FastChat's Conversation.get_prompt for SeparatorStyle.ADD_COLON_TWO, transcribed."""
    seps = [sep, sep2]
    ret = system + seps[0]
    for i, (role, message) in enumerate(messages):
        if message:
            ret += role + ": " + message + seps[i % 2]
        else:
            ret += role + ":"
    return ret


HELLO = {"messages": [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi there"},
                      {"role": "user", "content": "How are you?"}, {"role": "assistant", "content": "Fine."}]}


def test_alpaca_exact_strings():
    with_input = {"instruction": "Translate.", "input": "你好", "output": "Hello"}
    assert render_prompt(with_input, "alpaca") == STANFORD_PROMPT_INPUT.format(instruction="Translate.", input="你好")
    assert render(with_input, "alpaca") == STANFORD_PROMPT_INPUT.format(instruction="Translate.",
                                                                          input="你好") + "Hello</s>"
    for no_input in ({"instruction": "Say hi.", "input": "", "output": "Hi"}, {"instruction": "Say hi.", "output": "Hi"}):
        assert render(no_input, "alpaca") == STANFORD_PROMPT_NO_INPUT.format(instruction="Say hi.") + "Hi</s>"
    # as Stanford's train.py: target = f"{output}{eos}", joined to the prompt with nothing in between
    assert [s.train for s in segments(with_input, "alpaca")] == [False, True]
    assert segments(with_input, "alpaca")[1] == Segment("Hello</s>", True)


def test_alpaca_from_a_conversation():
    one = {"messages": [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi"}]}
    assert render(one, "alpaca") == STANFORD_PROMPT_NO_INPUT.format(instruction="Say hi.") + "Hi</s>"
    with pytest.raises(ValueError, match="alpaca template renders one instruction and one reply; this "
                                         "conversation has 2 user/assistant turns"):
        render(HELLO, "alpaca")


def test_vicuna_exact_strings():
    assert render(HELLO, "vicuna") == fastchat_vicuna_v11(FASTCHAT_VICUNA_SYSTEM, [
        ("USER", "Hello"), ("ASSISTANT", "Hi there"), ("USER", "How are you?"), ("ASSISTANT", "Fine.")])
    assert render_prompt(HELLO, "vicuna") == fastchat_vicuna_v11(FASTCHAT_VICUNA_SYSTEM, [
        ("USER", "Hello"), ("ASSISTANT", "Hi there"), ("USER", "How are you?"), ("ASSISTANT", None)])
    # the brief's literal example
    assert render_prompt(HELLO, "vicuna") == (FASTCHAT_VICUNA_SYSTEM +
                                              " USER: Hello ASSISTANT: Hi there</s>USER: How are you? ASSISTANT:")
    segs = segments(HELLO, "vicuna")
    assert [(s.text, s.train) for s in segs[1:]] == [
        (" Hi there</s>", True), ("USER: How are you? ASSISTANT:", False), (" Fine.</s>", True)]
    custom = {"messages": [{"role": "system", "content": "Be brief."}] + HELLO["messages"][:2]}
    assert render(custom, "vicuna") == "Be brief. USER: Hello ASSISTANT: Hi there</s>"


def test_human_assistant_exact_strings():
    assert render(HELLO, "human_assistant") == (
        "human: Hello\nassistant: Hi there</s>\nhuman: How are you?\nassistant: Fine.</s>")
    with_system = {"messages": [{"role": "system", "content": "你是助手。"}] + HELLO["messages"][:2]}
    assert render(with_system, "human_assistant") == "你是助手。\nhuman: Hello\nassistant: Hi there</s>"
    assert render_prompt(with_system, "human_assistant") == "你是助手。\nhuman: Hello\nassistant:"


def test_eos_comes_from_the_tokenizer(reference_tokenizer):
    tok = reference_tokenizer
    assert render(HELLO, "human_assistant", tok).endswith(" Fine." + tok.eos_token)
    assert render({"instruction": "x", "output": "y"}, "alpaca", tok).endswith("y" + tok.eos_token)


@pytest.mark.parametrize("template", ["alpaca", "vicuna", "human_assistant"])
def test_prompt_is_a_prefix_and_segments_join_to_render(any_tokenizer, template):
    check_prefix_and_segments(any_tokenizer, template)


def test_chat_template_prompt_is_a_prefix_and_segments_join_to_render(chat_tokenizer):
    check_prefix_and_segments(chat_tokenizer, "chat_template")


def check_prefix_and_segments(any_tokenizer, template):
    examples = [{"instruction": "Hi", "input": "", "output": "Hello"},
                {"messages": HELLO["messages"][:2]}, {"conversations": [{"from": "human", "value": "你好"},
                                                                        {"from": "gpt", "value": "😀"}]}]
    if template != "alpaca":
        examples.append(HELLO)
    end = TEMPLATES["chat_template"].end_of_turn(any_tokenizer) if template == "chat_template" else any_tokenizer.eos_token
    for ex in examples:
        full = render(ex, template, any_tokenizer)
        prompt = render_prompt(ex, template, any_tokenizer)
        assert full.startswith(prompt) and len(prompt) < len(full)
        rows = row_segments(ex, template, any_tokenizer)
        if len(rows) > 1:  # a template that rewrites history (Qwen3): the last row holds the full text
            with pytest.raises(ValueError, match="training rows"):
                segments(ex, template, any_tokenizer)
        segs = rows[-1]
        assert "".join(s.text for s in segs) == full
        assert segs[-1].train or segs[-2].train  # a chat template may add untrained text after the last reply
        assert all(s.text.endswith(end) for row in rows for s in row if s.train)


def test_messages_and_conversations_render_identically():
    sharegpt = {"conversations": [{"from": "human", "value": "Hello"}, {"from": "gpt", "value": "Hi there"},
                                  {"from": "human", "value": "How are you?"}, {"from": "gpt", "value": "Fine."}]}
    for name in TEMPLATES:
        if name in ("alpaca", "chat_template"):
            continue
        assert segments(sharegpt, name) == segments(HELLO, name)


def test_chat_template_renders_like_apply_chat_template(chat_tokenizer):
    tok = chat_tokenizer
    assert render(HELLO, "chat_template", tok) == tok.apply_chat_template(HELLO["messages"], tokenize=False)
    assert render_prompt(HELLO, "chat_template", tok) == tok.apply_chat_template(
        HELLO["messages"][:3], tokenize=False, add_generation_prompt=True)


def test_qwen2_chat_template_segments():
    from conftest import load_any_tokenizer

    tok = load_any_tokenizer("qwen2")
    segs = segments(HELLO, "chat_template", tok)
    assert [(s.text, s.train) for s in segs] == [
        ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
         "<|im_start|>assistant\n", False),
        ("Hi there<|im_end|>", True),
        ("\n<|im_start|>user\nHow are you?<|im_end|>\n<|im_start|>assistant\n", False),
        ("Fine.<|im_end|>", True),
        ("\n", False)]


def test_mistral_chat_template_segments():
    from conftest import load_any_tokenizer

    tok = load_any_tokenizer("mistral")
    segs = segments(HELLO, "chat_template", tok)
    assert [(s.text, s.train) for s in segs] == [
        ("<s>[INST] Hello[/INST]", False), (" Hi there</s>", True), ("[INST] How are you?[/INST]", False),
        (" Fine.</s>", True)]


def test_chat_template_needs_one(plain_tokenizer):
    with pytest.raises(ValueError, match="needs a tokenizer with a chat_template"):
        render(HELLO, "chat_template", plain_tokenizer)


def test_template_objects_and_names():
    assert get_template("vicuna") is TEMPLATES["vicuna"]
    assert get_template(TEMPLATES["alpaca"]) is TEMPLATES["alpaca"]
    with pytest.raises(ValueError, match="unknown template 'llama3'; choose one of alpaca, vicuna"):
        get_template("llama3")
    # templates are data: a new one is a few strings
    zh = TurnTemplate("zh", user_format="用户：{content}\n", assistant_prompt="助手：", reply_format="{content}{eos}")
    assert render(HELLO, zh) == "用户：Hello\n助手：Hi there</s>\n用户：How are you?\n助手：Fine.</s>"
    assert render_prompt(HELLO, zh).endswith("助手：")
    short = AlpacaTemplate("short", prompt_no_input="Q: {instruction}\nA:", reply_format=" {content}{eos}")
    assert render({"instruction": "1+1?", "output": "2"}, short) == "Q: 1+1?\nA: 2</s>"


@pytest.mark.parametrize("name", sorted(
    m.name for m in __import__("pkgutil").walk_packages(__import__("utils").__path__, "utils.")
    if not m.name.endswith("__main__")))
def test_docstring_examples(name):
    """The modules' docstrings are the reference docs: their examples must run, in every module."""
    import doctest
    import importlib

    module = importlib.import_module(name)
    if name.startswith("utils.viz"):
        from utils.viz.fonts import use_cjk_font

        use_cjk_font()  # figures with Chinese labels, as in the notebooks
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} docstring examples failed"
