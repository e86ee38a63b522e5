"""ChatTemplate.prefix_renderer (one conversion per record) renders exactly what apply_chat_template does."""

from __future__ import annotations

import pytest

from conftest import load_reference_tokenizer
from utils.formats import chat_of, iter_records
from utils.templates import TEMPLATES, ChatTemplate

REAL_FILES = ("fastchat_dummy_conversation.json", "llamafactory_glaive_toolcall_zh_demo.json")
TRICKY = [
    {"messages": [{"role": "system", "content": ""}, {"role": "user", "content": "Hi"},
                  {"role": "assistant", "content": "\nHello"}, {"role": "user", "content": "再见"},
                  {"role": "assistant", "content": " 😀 bye"}]},
    {"messages": [{"role": "user", "content": "2+2?"},
                  {"role": "assistant", "content": "4", "reasoning_content": "Add them."},
                  {"role": "user", "content": "3+3?"},
                  {"role": "assistant", "content": "<think>\nAdd.\n</think>\n\n6"}]},
    {"messages": [{"role": "user", "content": "Weather?"},
                  {"role": "assistant", "content": "", "tool_calls": [
                      {"type": "function", "function": {"name": "weather", "arguments": {"city": "Paris"}}}]},
                  {"role": "tool", "content": "sunny"}, {"role": "assistant", "content": "Sunny."}],
     "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather of a city",
                                                  "parameters": {"type": "object", "properties": {
                                                      "city": {"type": "string"}}}}}]},
]


# reasoning under an older field name (aliased to reasoning_content by transformers), a message with an extra
# string field: both are dicts of strings, which the renderer copies instead of converting
TRICKY += [
    {"messages": [{"role": "user", "content": "1+1?", "name": "ann"},
                  {"role": "assistant", "content": "2", "reasoning": "One and one."}]},
]


def _records(real_data_dir):
    out = list(TRICKY)
    for name in REAL_FILES:
        out += list(iter_records(real_data_dir / name))[:40]
    return out


def _reference(tok, tmpl, messages, tools, gen):
    extra = dict(tmpl.kwargs)
    if tools:
        extra["tools"] = tools
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen, **extra)


@pytest.mark.parametrize("kwargs", [{}, {"enable_thinking": False}])
def test_prefix_renderer_equals_apply_chat_template(chat_tokenizer, real_data_dir, kwargs):
    tmpl = TEMPLATES["chat_template"].with_kwargs(**kwargs) if kwargs else TEMPLATES["chat_template"]
    checked = 0
    for rec in _records(real_data_dir):
        messages, tools = chat_of(rec)
        render = tmpl.prefix_renderer(chat_tokenizer, messages, tools)
        for n in range(1, len(messages) + 1):
            for gen in (False, True):
                try:
                    want = _reference(chat_tokenizer, tmpl, messages[:n], tools, gen)
                except Exception as e:  # a template that refuses a prefix must refuse it on both paths
                    with pytest.raises(type(e)):
                        render(n, gen)
                    continue
                assert render(n, gen) == want, (rec, n, gen)
                checked += 1
    assert checked > 100


def test_prefix_renderer_falls_back_for_overridden_apply_chat_template(tok):
    calls = []

    class Wrapped(type(tok)):
        def apply_chat_template(self, *args, **kwargs):
            calls.append(1)
            return super().apply_chat_template(*args, **kwargs)

    other = Wrapped.from_pretrained(tok.name_or_path)
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]
    text = ChatTemplate("chat_template").prefix_renderer(other, messages)(2)
    assert calls and text == tok.apply_chat_template(messages, tokenize=False)


def test_fast_rendering_raises_what_apply_chat_template_raises():
    """A template's own refusal (``raise_exception``) comes out of the faster rendering unchanged."""
    import jinja2

    tok = load_reference_tokenizer("mistral")
    messages = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    with pytest.raises(jinja2.TemplateError) as want:
        tok.apply_chat_template(messages, tokenize=False)
    with pytest.raises(jinja2.TemplateError) as got:
        ChatTemplate("chat_template").prefix_renderer(tok, messages)(2)
    assert str(got.value) == str(want.value) and "alternate" in str(got.value)
