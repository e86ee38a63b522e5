"""Prompt and chat templates as data: rendering and segments.

A template turns an example (an Alpaca record, ``{"messages": [...]}`` or ``{"conversations":
[...]}``, see :mod:`utils.formats`) into text. :func:`segments` is the one source of truth: a list of
:class:`Segment` ``(text, train)`` whose texts, joined, are the training text (:func:`render`) and whose
``train`` flags say which characters the model learns to produce (the assistant replies, each with its
end marker). :func:`render_prompt` is the text a model is given at inference time: everything before the
*last* assistant reply, ending with the text that asks for it -- always a prefix of :func:`render`.
:mod:`utils.encode` tokenizes the same segments, so masks and rendering can never disagree.

The four templates (``TEMPLATES``), exactly:

``alpaca`` (Stanford Alpaca, ``train.py``'s ``PROMPT_DICT``, byte for byte)
    With a non-empty input::

        Below is an instruction that describes a task, paired with an input that provides further
        context. Write a response that appropriately completes the request.\\n\\n### Instruction:\\n
        {instruction}\\n\\n### Input:\\n{input}\\n\\n### Response:

    (one line in the real string), without input the shorter "Below is an instruction that describes a
    task. Write a response that appropriately completes the request.\\n\\n### Instruction:\\n
    {instruction}\\n\\n### Response:". The reply is ``{output}{eos}``.
    *Nothing* separates the prompt's ``### Response:`` from the output: Stanford concatenates
    ``source + target`` directly, and we keep that so that prompts written for Alpaca-trained models
    match. The price is that ``:`` and the output's first characters can merge into one token when the
    whole text is tokenized (GPT-2 ``:"``, Qwen2 ``:String``); :mod:`utils.encode` therefore tokenizes
    the reply on its own (the prompt ids stay exactly those inference sees) and counts these
    ``boundary_merges``. A conversation of one user and one assistant message renders with the user
    text as instruction; a longer conversation is an error for this template.
``vicuna`` (FastChat ``vicuna_v1.1``, ``SeparatorStyle.ADD_COLON_TWO``, sep ``" "``, sep2 ``eos``)
    ``"{system} USER: {user} ASSISTANT: {reply}{eos}USER: {user} ASSISTANT:"`` ... The default system
    text is :data:`VICUNA_SYSTEM`. The prompt for a reply ends with ``"ASSISTANT:"``, the trained
    reply segment is ``" {reply}{eos}"``.
``human_assistant`` (the manual's form)
    An optional system text on its own first line, then per turn ``"human: {user}\\n"`` and
    ``"assistant:"`` + ``" {reply}{eos}"``, turns joined by ``"\\n"``.
``chat_template``
    The tokenizer's own Jinja chat template (``tokenizer.apply_chat_template``). Replies are located
    by rendering each prompt with ``add_generation_prompt=True``: the text from the end of that prompt
    up to and including the next ``eos_token`` is the trained reply segment. This works for templates
    without ``{% generation %}`` blocks (Qwen2's and Mistral's) and agrees with
    ``return_assistant_tokens_mask`` where they exist. Templates whose earlier turns render differently
    once later turns exist are rejected for those conversations with a clear error, because no single
    token sequence can match what inference sees at every turn (Mistral v0.3 writes the system text only
    into a user turn that is the *last* message, so a conversation with a system message never renders
    it in training text).

Special tokens: text templates render no BOS (the tokenizer adds it, ``add_special_tokens=True``);
``chat_template`` renders whatever the Jinja template writes (often ``bos_token``) and is tokenized with
``add_special_tokens=False``, as ``apply_chat_template(tokenize=True)`` does. See
:attr:`Template.add_special_tokens`.

Example:
    >>> ex = {"messages": [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi there"},
    ...                    {"role": "user", "content": "How are you?"}, {"role": "assistant", "content": "Fine."}]}
    >>> render_prompt(ex, "human_assistant")
    'human: Hello\\nassistant: Hi there</s>\\nhuman: How are you?\\nassistant:'
    >>> [(s.text, s.train) for s in segments(ex, "vicuna")][1:3]
    [(' Hi there</s>', True), ('USER: How are you? ASSISTANT:', False)]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Union

from utils.formats import conversation_of

__all__ = [
    "Segment", "Template", "AlpacaTemplate", "TurnTemplate", "ChatTemplate", "TEMPLATES",
    "ALPACA_PROMPT_INPUT", "ALPACA_PROMPT_NO_INPUT", "VICUNA_SYSTEM", "DEFAULT_EOS",
    "get_template", "segments", "render", "render_prompt", "eos_text",
]

ALPACA_PROMPT_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
)
"""Stanford Alpaca's prompt for records with an input (``PROMPT_DICT["prompt_input"]``)."""

ALPACA_PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:"
)
"""Stanford Alpaca's prompt for records without input (``PROMPT_DICT["prompt_no_input"]``)."""

VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
"""FastChat's ``vicuna_v1.1`` system message."""

DEFAULT_EOS = "</s>"
"""EOS text used when rendering without a tokenizer (for display only; encoding always has one)."""


@dataclass(frozen=True)
class Segment:
    """A piece of rendered text; ``train`` is True for assistant replies (and their end marker).

    >>> Segment(" Hi</s>", True)
    Segment(text=' Hi</s>', train=True)
    """

    text: str
    train: bool


def eos_text(tokenizer: Any = None) -> str:
    """The EOS token's text of ``tokenizer`` (``"</s>"`` when ``tokenizer`` is None).

    >>> eos_text()
    '</s>'
    """
    if tokenizer is None:
        return DEFAULT_EOS
    eos = getattr(tokenizer, "eos_token", None)
    if not eos:
        raise ValueError(f"tokenizer {getattr(tokenizer, 'name_or_path', tokenizer)!r} has no eos_token; "
                         "set one (tokenizer.eos_token = ...) so replies can end with it")
    return eos


@dataclass(frozen=True)
class Template:
    """Base class of templates. Subclasses implement :meth:`segments`.

    ``add_special_tokens`` says how :mod:`utils.encode` (and inference code) must tokenize the
    rendered prompt: True means the tokenizer adds its BOS (text templates), False means the template
    already wrote every special token (``chat_template``).
    """

    name: str
    add_special_tokens: bool = True

    def segments(self, example: Mapping[str, Any], tokenizer: Any = None) -> list[Segment]:
        raise NotImplementedError


@dataclass(frozen=True)
class AlpacaTemplate(Template):
    """Stanford Alpaca: single turn, prompt with or without an input section, reply ``{output}{eos}``."""

    prompt_input: str = ALPACA_PROMPT_INPUT
    prompt_no_input: str = ALPACA_PROMPT_NO_INPUT
    reply_format: str = "{content}{eos}"

    def segments(self, example: Mapping[str, Any], tokenizer: Any = None) -> list[Segment]:
        eos = eos_text(tokenizer)
        if "instruction" in example or "output" in example:
            instruction = example.get("instruction") or ""
            inp = example.get("input") or ""
            output = example.get("output")
            if not isinstance(output, str):
                raise ValueError(f"alpaca template: output must be a string, got {type(output).__name__}")
        else:
            system, turns = conversation_of(example)
            if len(turns) != 1:
                raise ValueError(f"alpaca template renders one instruction and one reply; this conversation has "
                                 f"{len(turns)} user/assistant turns (use 'vicuna', 'human_assistant' or "
                                 "'chat_template' for multi-turn data)")
            if system:
                raise ValueError("alpaca template has no place for a system message; drop it or use "
                                 "another template")
            (instruction, output), inp = turns[0], ""
        prompt = (self.prompt_input.format(instruction=instruction, input=inp) if inp
                  else self.prompt_no_input.format(instruction=instruction))
        return [Segment(prompt, False), Segment(self.reply_format.format(content=output, eos=eos), True)]


@dataclass(frozen=True)
class TurnTemplate(Template):
    """A turn-based text template (``vicuna``, ``human_assistant``), written as format strings.

    Rendered as ``system_format`` (when there is a system text), then for each turn
    ``user_format`` + ``assistant_prompt`` (untrained) and ``reply_format`` (trained), with
    ``turn_separator`` between turns.
    """

    default_system: str = ""
    system_format: str = "{system}\n"
    user_format: str = "human: {content}\n"
    assistant_prompt: str = "assistant:"
    reply_format: str = " {content}{eos}"
    turn_separator: str = "\n"

    def segments(self, example: Mapping[str, Any], tokenizer: Any = None) -> list[Segment]:
        eos = eos_text(tokenizer)
        system, turns = conversation_of(example)
        system = system or self.default_system
        out: list[Segment] = []
        pending = self.system_format.format(system=system) if system else ""
        for i, (user, reply) in enumerate(turns):
            if i:
                pending += self.turn_separator
            pending += self.user_format.format(content=user) + self.assistant_prompt
            out.append(Segment(pending, False))
            out.append(Segment(self.reply_format.format(content=reply, eos=eos), True))
            pending = ""
        return out


@dataclass(frozen=True)
class ChatTemplate(Template):
    """The tokenizer's own Jinja chat template, through ``tokenizer.apply_chat_template``."""

    add_special_tokens: bool = False

    def _render(self, tokenizer: Any, messages: list[dict], generation_prompt: bool) -> str:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)

    def segments(self, example: Mapping[str, Any], tokenizer: Any = None) -> list[Segment]:
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            name = getattr(tokenizer, "name_or_path", None)
            raise ValueError(f"template 'chat_template' needs a tokenizer with a chat_template "
                             f"(tokenizer {name!r} has none); use 'alpaca', 'vicuna' or 'human_assistant'")
        eos = eos_text(tokenizer)
        system, turns = conversation_of(example)
        messages: list[dict] = [{"role": "system", "content": system}] if system else []
        prompt_ends: list[int] = []
        prompts: list[str] = []
        for user, reply in turns:
            messages.append({"role": "user", "content": user})
            prompts.append(self._render(tokenizer, messages, True))
            messages.append({"role": "assistant", "content": reply})
        full = self._render(tokenizer, messages, False)
        for k, prompt in enumerate(prompts):
            if not full.startswith(prompt):
                raise ValueError(
                    f"chat template of {tokenizer.name_or_path!r} is not prefix-consistent for this conversation: "
                    f"the prompt for reply {k + 1} is not a prefix of the full rendering (the template renders "
                    "earlier turns differently once later turns exist, e.g. a system text moved into the last "
                    "user turn). No token sequence can then match inference at every turn; split the "
                    "conversation or use another template.")
            prompt_ends.append(len(prompt))
        out: list[Segment] = []
        pos = 0
        for k, start in enumerate(prompt_ends):
            if start < pos:
                raise ValueError(f"chat template of {tokenizer.name_or_path!r}: reply {k} and prompt {k + 1} overlap")
            out.append(Segment(full[pos:start], False))
            stop = prompt_ends[k + 1] if k + 1 < len(prompt_ends) else len(full)
            region = full[start:stop]
            content = turns[k][1].strip()
            at = region.find(content) if content else 0
            end = region.find(eos, max(at, 0) + len(content)) if at >= 0 else -1
            if at < 0 or end < 0:
                raise ValueError(
                    f"chat template of {tokenizer.name_or_path!r}: cannot find reply {k + 1} followed by the "
                    f"eos_token {eos!r} in the rendered text {region[:80]!r}...; this template does not end "
                    "assistant replies with eos_token, which the contract requires")
            end += len(eos)
            out.append(Segment(region[:end], True))
            pos = start + end
        if pos < len(full):
            out.append(Segment(full[pos:], False))
        return [s for s in out if s.text or s.train]


TEMPLATES: dict[str, Template] = {
    "alpaca": AlpacaTemplate("alpaca"),
    "vicuna": TurnTemplate(
        "vicuna", default_system=VICUNA_SYSTEM, system_format="{system} ", user_format="USER: {content} ",
        assistant_prompt="ASSISTANT:", reply_format=" {content}{eos}", turn_separator=""),
    "human_assistant": TurnTemplate("human_assistant"),
    "chat_template": ChatTemplate("chat_template"),
}
"""The templates by name."""

TemplateLike = Union[str, Template]


def get_template(template: TemplateLike) -> Template:
    """A :class:`Template` from its name (see :data:`TEMPLATES`) or the template itself.

    >>> get_template("vicuna").name
    'vicuna'
    """
    if isinstance(template, Template):
        return template
    try:
        return TEMPLATES[template]
    except (KeyError, TypeError):
        raise ValueError(f"unknown template {template!r}; choose one of {', '.join(TEMPLATES)} "
                         "or pass a Template object") from None


def segments(example: Mapping[str, Any], template: TemplateLike, tokenizer: Any = None) -> list[Segment]:
    """The rendered pieces of ``example``: untrained prompt text and trained replies, in order.

    >>> [(s.text[-15:], s.train) for s in segments({"instruction": "Hi", "output": "Hello"}, "alpaca")]
    [('\\n\\n### Response:', False), ('Hello</s>', True)]
    """
    return get_template(template).segments(example, tokenizer)


def render(example: Mapping[str, Any], template: TemplateLike, tokenizer: Any = None) -> str:
    """The full training text of ``example``.

    >>> render({"messages": [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi"}]},
    ...        "vicuna").endswith("USER: Hello ASSISTANT: Hi</s>")
    True
    """
    return "".join(s.text for s in segments(example, template, tokenizer))


def render_prompt(example: Mapping[str, Any], template: TemplateLike, tokenizer: Any = None) -> str:
    """The inference prompt: everything before the last assistant reply (a prefix of :func:`render`).

    >>> render_prompt({"instruction": "Hi", "output": "Hello"}, "alpaca").endswith("### Response:")
    True
    """
    segs = segments(example, template, tokenizer)
    last = max(i for i, s in enumerate(segs) if s.train)
    return "".join(s.text for s in segs[:last])
