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
    The tokenizer's own Jinja chat template (``tokenizer.apply_chat_template``), for any real template,
    with or without ``{% generation %}`` blocks (it agrees with ``return_assistant_tokens_mask`` where
    they exist). The rule (the data contract, rule 2):

    * **End of turn.** The reply is supervised up to and including the template's *end-of-turn marker*
      (:meth:`ChatTemplate.end_of_turn`): what the template writes right after every reply, found by
      rendering a probe reply mid-conversation and at the end of a conversation and keeping their common
      start up to its last added token -- ``<|im_end|>`` (ChatML, also for a base Qwen2.5 tokenizer whose
      EOS is ``<|endoftext|>``), ``<|eot_id|>`` (Llama 3), ``</s>`` (Mistral), Phi-3's ``<|end|>`` (not
      the ``<|endoftext|>`` its template adds only when the conversation ends). Never ``eos_token`` by
      assumption; text written only because the conversation ends is never supervised.
    * **Prompts.** The prompt of reply k is exactly ``apply_chat_template(history before reply k,
      add_generation_prompt=True, tools=..., **chat_template_kwargs)``; reply k is what the template
      writes after that prompt when the conversation ends with reply k. Both are rendered for every
      reply.
    * **Rows.** Replies whose prompt and text appear as such in the rendering of the whole conversation
      are trained in one row (the whole text). A reply the template renders differently once later
      turns exist gets a row of its own (its prompt + the reply): Qwen3 strips the reasoning of earlier
      turns and writes its empty ``<think>\n\n</think>\n\n`` block only on the last turn, so every
      Qwen3 reply is trained in its own row, with the think block exactly as the model writes it after
      that prompt; Mistral v0.3 writes the system text only into a user turn that is the last message.
      :func:`row_segments` gives every row, :func:`segments` the one row of a one-row record.
    * **Reasoning.** Records may carry ``reasoning_content`` on assistant messages (or ``<think>``
      blocks in the content); the template renders them as it does at inference. ``chat_template_kwargs``
      (e.g. ``enable_thinking=False``) are options of the template (:meth:`ChatTemplate.with_kwargs`,
      ``chat_template_kwargs=`` of :mod:`utils.encode`) applied to every rendering, so training and
      inference prompts stay identical. A reply with reasoning whose prompt already closes the reasoning
      block (thinking disabled) is refused with that reason.
    * **Tools.** A record's ``tools`` go to the template's ``tools=`` argument; assistant ``tool_calls``
      turns are replies (supervised), ``tool`` messages are prompt text (masked).
    * An empty system message is a system message: rendered exactly as ``apply_chat_template`` renders
      it (for Qwen2.5 an empty system turn, not the default system prompt). The text templates treat an
      empty system text like none (their default system text).

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

import os
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Union

from utils.formats import chat_of, conversation_of

__all__ = [
    "Segment", "Template", "AlpacaTemplate", "TurnTemplate", "ChatTemplate", "TEMPLATES",
    "ALPACA_PROMPT_INPUT", "ALPACA_PROMPT_NO_INPUT", "VICUNA_SYSTEM", "DEFAULT_EOS",
    "get_template", "segments", "row_segments", "render", "render_prompt", "eos_text", "vocab_key",
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
    source: Any = field(default=None, repr=False, compare=False)
    """The message content a trained segment renders (to count what a template trims), else None."""


def vocab_key(tokenizer: Any) -> tuple:
    """What changes when tokens are added to ``tokenizer``, cheap to compute on every call: the base
    vocabulary size and the number of added tokens. (``len(tokenizer)`` rebuilds the whole vocabulary on
    tokenizers 0.22, Colab's version: about 80 ms for Qwen2, on every call.)"""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return (len(tokenizer),)
    return backend.get_vocab_size(with_added_tokens=False), len(getattr(tokenizer, "added_tokens_decoder", None) or ())


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

    def row_segments(self, example: Mapping[str, Any], tokenizer: Any = None) -> list[list[Segment]]:
        """The segments of each training row of ``example`` (one row for the text templates)."""
        return [self.segments(example, tokenizer)]

    def rows_of(self, tokenizer: Any = None):
        """``rows(example)`` = :meth:`row_segments` ``(example, tokenizer)``, for many records (a template may
        look up what depends on the tokenizer alone once)."""
        return lambda example: self.row_segments(example, tokenizer)

    def render(self, example: Mapping[str, Any], tokenizer: Any = None) -> str:
        return "".join(s.text for s in self.segments(example, tokenizer))

    def render_prompt(self, example: Mapping[str, Any], tokenizer: Any = None) -> str:
        segs = self.segments(example, tokenizer)
        last = max(i for i, s in enumerate(segs) if s.train)
        return "".join(s.text for s in segs[:last])


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
        return [Segment(prompt, False), Segment(self.reply_format.format(content=output, eos=eos), True, output)]


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
            out.append(Segment(self.reply_format.format(content=reply, eos=eos), True, reply))
            pending = ""
        return out


_PROBE_REPLY = "Probe reply 7"


def _added_texts(tokenizer: Any) -> list[str]:
    """Texts of the tokenizer's added tokens (special or not), longest first."""
    found = {t.content for t in getattr(tokenizer, "added_tokens_decoder", {}).values()}
    found |= {t for t in getattr(tokenizer, "all_special_tokens", []) if t}
    return sorted(found, key=len, reverse=True)


_markers: dict = {}


def _after_prompt(prompt: str, closed: str, core: str, marker: str) -> str | None:
    """The text of ``closed`` after the point that corresponds to the end of ``prompt``, for templates
    whose prompt is not a prefix of the conversation ending with the reply (Mistral v0.3 writes the
    system text only into a user turn that is the last message): the reply starts right after the
    last occurrence, before the reply's text, of the longest end of ``prompt`` that ``closed`` repeats."""
    stop = closed.rfind(marker)
    at = closed.rfind(core, 0, stop) if core else stop
    if stop < 0 or at < 0:
        return None
    head = closed[:at]
    lo, hi = 0, min(len(prompt), len(head))  # the longest L with prompt[-L:] in head (monotone in L)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if prompt[-mid:] in head:
            lo = mid
        else:
            hi = mid - 1
    if lo == 0:
        return None
    return closed[head.rfind(prompt[-lo:]) + lo:]


def _fast_parts(tokenizer: Any, tools: list | None):
    """``(render(**variables), to-plain-data, messages-to-template-data)`` as ``apply_chat_template`` uses them,
    or None where rendering through them is not known to equal ``apply_chat_template``."""
    try:
        from transformers.tokenization_utils_base import PreTrainedTokenizerBase
        from transformers.utils import chat_template_utils as ctu

        compile_, normalize = ctu._compile_jinja_template, ctu._normalize_chat_messages
        plain, alias = ctu._plain_template_data, ctu._alias_reasoning_fields
    except (ImportError, AttributeError):
        return None
    if getattr(type(tokenizer), "apply_chat_template", None) is not PreTrainedTokenizerBase.apply_chat_template:
        return None
    if tools and not all(isinstance(t, dict) for t in tools):
        return None
    source = tokenizer.get_chat_template(None, tools)
    found = _parts.get(source)
    if found is None:
        def to_data(messages: list) -> list:
            # a message that is a dict of strings is its own plain data: the conversion would give a copy;
            # one of just role and content (most records) has no reasoning field to alias either
            if all(type(m) is dict and len(m) == 2 and type(m.get("role")) is str and type(m.get("content")) is str
                   for m in messages):
                return [dict(m) for m in messages]
            if all(type(m) is dict and all(type(k) is str and type(v) is str for k, v in m.items()) for m in messages):
                return alias([dict(m) for m in messages])
            return alias(plain(normalize(messages)))

        found = _parts[source] = (_renderer(compile_(source)), plain, to_data)
    return found


_parts: dict = {}  # chat template source -> what _fast_parts gives


def _renderer(compiled: Any):
    """``compiled.render`` without its per-call cost: Jinja's ``Template.render`` copies the template's
    globals (a ``ChainMap``) into every new context, twice; here they are copied once per compiled
    template and each call builds the same ``Context`` from a plain dict. It is ``render`` itself where
    the Jinja internals this needs are missing."""
    env = compiled.environment
    root = getattr(compiled, "root_render_func", None)
    if root is None or getattr(env, "is_async", True) or not hasattr(env, "context_class"):
        return compiled.render
    glob = dict(compiled.globals)
    name, blocks, context, concat = compiled.name, compiled.blocks, env.context_class, env.concat

    def render(**variables: Any) -> str:
        try:
            return concat(root(context(env, {**glob, **variables}, name, blocks, globals=glob)))
        except Exception:
            env.handle_exception()

    return render


@dataclass(frozen=True)
class ChatTemplate(Template):
    """The tokenizer's own Jinja chat template, through ``tokenizer.apply_chat_template``.

    ``kwargs`` are the ``chat_template_kwargs`` (e.g. ``(("enable_thinking", False),)``) passed to every
    rendering, for training and inference alike; :meth:`with_kwargs` makes a copy with others.
    """

    add_special_tokens: bool = False
    kwargs: tuple = ()

    def with_kwargs(self, **kwargs: Any) -> "ChatTemplate":
        """This template with ``chat_template_kwargs`` set (merged over the current ones).

        >>> TEMPLATES["chat_template"].with_kwargs(enable_thinking=False).kwargs
        (('enable_thinking', False),)
        """
        merged = {**dict(self.kwargs), **kwargs}
        return replace(self, kwargs=tuple(sorted(merged.items())))

    # -- rendering ------------------------------------------------------------------------------------
    def _check(self, tokenizer: Any) -> None:
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            name = getattr(tokenizer, "name_or_path", None)
            raise ValueError(f"template 'chat_template' needs a tokenizer with a chat_template "
                             f"(tokenizer {name!r} has none); use 'alpaca', 'vicuna' or 'human_assistant'")

    def render_messages(self, tokenizer: Any, messages: list[dict], tools: list | None = None,
                        generation_prompt: bool = False) -> str:
        """``apply_chat_template(messages, tools=tools, add_generation_prompt=..., **kwargs)`` as text."""
        extra = dict(self.kwargs)
        if tools:
            extra["tools"] = tools
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt,
                                             **extra)

    def prefix_renderer(self, tokenizer: Any, messages: list[dict], tools: list | None = None):
        """``render(n, generation_prompt)`` = :meth:`render_messages` of ``messages[:n]``, for many ``n``.

        ``apply_chat_template`` converts every message to plain data on every call (most of its time on
        a multi-turn record whose prefixes are all rendered); this converts ``messages`` once, with the
        same transformers functions, and calls the same compiled template on slices (the conversion is
        per message, so converting the whole and slicing equals converting the slice). Where that is not
        known to be equivalent (a tokenizer class that overrides ``apply_chat_template``, tools given as
        functions, transformers internals not found) it is :meth:`render_messages` itself.
        tests/test_chat_render.py compares both on every reference tokenizer and the real data.
        """
        return self._prefix_renderers(tokenizer)(messages, tools)

    def _prefix_renderers(self, tokenizer: Any):
        """:meth:`prefix_renderer` for many records of one tokenizer: what depends on the tokenizer alone
        (the compiled template without tools, the special tokens the template sees) is looked up once, when
        a record first needs it."""
        once: dict = {}

        def make(messages: list[dict], tools: list | None = None):
            if tools:
                fast = _fast_parts(tokenizer, tools)
            else:
                if "base" not in once:
                    once["base"] = _fast_parts(tokenizer, None)
                fast = once["base"]
            if fast is None:
                return lambda n, generation_prompt=False: self.render_messages(tokenizer, messages[:n], tools,
                                                                               generation_prompt)
            render_template, plain, chat_fn = fast
            if "variables" not in once:
                once["variables"] = plain({**tokenizer.special_tokens_map, **dict(self.kwargs)})
            chat, variables = chat_fn(messages), once["variables"]
            schemas = plain(list(tools)) if tools else None

            def render(n: int, generation_prompt: bool = False) -> str:
                return render_template(messages=chat[:n], tools=schemas, documents=None,
                                       add_generation_prompt=generation_prompt, **variables)

            return render

        return make

    def end_of_turn(self, tokenizer: Any) -> str:
        """The text the template writes right after every assistant reply, found by rendering probes.

        It is the common start of what follows a reply in the middle of a conversation and at its end,
        cut after the last added (special) token in it: ``<|im_end|>`` for ChatML (not the ``"\\n"``
        after it), ``<|eot_id|>`` for Llama 3, ``</s>`` for Mistral, Phi-3's ``<|end|>`` (not the
        ``<|endoftext|>`` its template adds only at the end of a conversation).
        """
        self._check(tokenizer)
        key = (id(tokenizer), tokenizer.chat_template, tokenizer.eos_token, vocab_key(tokenizer), self.kwargs)
        found = _markers.get(key)
        if found is not None:
            return found
        one = [{"role": "user", "content": "Probe question"}, {"role": "assistant", "content": _PROBE_REPLY}]
        two = one + [{"role": "user", "content": "Second question"}, {"role": "assistant", "content": "Second"}]
        end = self.render_messages(tokenizer, one)
        mid = self.render_messages(tokenizer, two)
        if _PROBE_REPLY not in end or _PROBE_REPLY not in mid:
            raise ValueError(f"chat template of {tokenizer.name_or_path!r} does not render an assistant reply's "
                             "content verbatim; it cannot be used for training")
        after_end = end[end.rindex(_PROBE_REPLY) + len(_PROBE_REPLY):]
        after_mid = mid[mid.index(_PROBE_REPLY) + len(_PROBE_REPLY):]
        common = os.path.commonprefix([after_end, after_mid])
        stop = 0
        for tok in _added_texts(tokenizer):
            at = common.find(tok)
            while at >= 0:
                stop = max(stop, at + len(tok))
                at = common.find(tok, at + 1)
        if stop == 0:
            raise ValueError(
                f"chat template of {tokenizer.name_or_path!r} writes no special token right after an assistant reply "
                f"(after a reply it writes {after_mid[:40]!r} mid-conversation and {after_end[:40]!r} at the end): "
                "there is no end-of-turn marker a model could learn to stop with")
        found = _markers[key] = common[:stop]
        return found

    # -- replies --------------------------------------------------------------------------------------
    def row_segments(self, example: Mapping[str, Any], tokenizer: Any = None) -> list[list[Segment]]:
        """The rows of ``example``: usually one; one per reply the full rendering cannot hold.

        Reply k is what the template renders after ``prompt_k = apply_chat_template(history before it,
        add_generation_prompt=True)`` when the conversation ends with that reply, up to and including the
        end-of-turn marker. Every reply whose prompt and text appear as such in the full rendering is
        trained in one row (the full text); a reply the template renders differently once later turns
        exist (Qwen3 strips earlier reasoning and its empty ``<think>`` block, Mistral v0.3 moves the
        system text into the last user turn) gets a row of its own: ``prompt_k`` + reply k.
        """
        return self.rows_of(tokenizer)(example)

    def rows_of(self, tokenizer: Any = None):
        """:meth:`row_segments` of many records with one tokenizer: the end-of-turn marker and the compiled
        template are looked up on the first record (an error there is that record's error, as for each)."""
        renderers, marker = self._prefix_renderers(tokenizer), []

        def rows(example: Mapping[str, Any]) -> list[list[Segment]]:
            if not marker:
                self._check(tokenizer)
                marker.append(self.end_of_turn(tokenizer))
            return self._rows(example, tokenizer, marker[0], renderers)

        return rows

    def _rows(self, example: Mapping[str, Any], tokenizer: Any, marker: str, renderers: Any) -> list[list[Segment]]:
        messages, tools = chat_of(example)
        replies = [j for j, m in enumerate(messages) if m["role"] == "assistant"]
        render = renderers(messages, tools)
        full = render(len(messages))
        units: list[tuple[str, str, str]] = []  # (prompt, reply, content)
        for k, j in enumerate(replies):
            prompt = render(j, True)
            closed = full if j == len(messages) - 1 else render(j + 1)
            content = messages[j]["content"]
            core = content.split("</think>")[-1].strip()
            if closed.startswith(prompt):
                region = closed[len(prompt):]
            elif "reasoning_content" in messages[j] or "</think>" in content:
                raise ValueError(
                    f"chat template of {tokenizer.name_or_path!r}: reply {k + 1} carries reasoning, but with these "
                    f"chat_template_kwargs {dict(self.kwargs)} the prompt inference gives it already closes the "
                    "reasoning block (e.g. enable_thinking=False), so the reasoning could never be produced; drop "
                    "it from the record or encode with thinking enabled")
            else:
                region = _after_prompt(prompt, closed, core, marker)
            end = region.rfind(marker) if region is not None else -1
            if end < 0:
                raise ValueError(f"chat template of {tokenizer.name_or_path!r}: cannot find reply {k + 1} followed by "
                                 f"the end-of-turn marker {marker!r} after its prompt (rendered {closed[-80:]!r})")
            if core and core not in region[:end]:
                raise ValueError(f"chat template of {tokenizer.name_or_path!r} does not render reply {k + 1}'s "
                                 f"text where the reply belongs (rendered {region[:60]!r})")
            units.append((prompt, region[:end + len(marker)], content))
        rows: list[tuple[int, list[Segment]]] = []  # (first reply, segments), in reply order
        main: list[Segment] = []
        first = pos = 0
        for k, (prompt, reply, content) in enumerate(units):
            n = len(prompt)
            if n >= pos and full.startswith(prompt) and full.startswith(reply, n):
                first = first if main else k
                main += [Segment(full[pos:n], False), Segment(reply, True, content)]
                pos = n + len(reply)
            else:
                rows.append((k, [Segment(prompt, False), Segment(reply, True, content)]))
        if main:
            if pos < len(full):
                main.append(Segment(full[pos:], False))
            rows.append((first, [s for s in main if s.text or s.train]))
        return [segs for _, segs in sorted(rows, key=lambda r: r[0])]

    def segments(self, example: Mapping[str, Any], tokenizer: Any = None) -> list[Segment]:
        rows = self.row_segments(example, tokenizer)
        if len(rows) != 1:
            raise ValueError(f"chat template of {tokenizer.name_or_path!r} renders earlier turns of this conversation "
                             f"differently once later turns exist, so it needs {len(rows)} training rows (one per "
                             "such reply); use utils.templates.row_segments / utils.encode.encode_rows or "
                             "encode_dataset")
        return rows[0]

    def render(self, example: Mapping[str, Any], tokenizer: Any = None) -> str:
        self._check(tokenizer)
        messages, tools = chat_of(example)
        return self.render_messages(tokenizer, messages, tools)

    def render_prompt(self, example: Mapping[str, Any], tokenizer: Any = None) -> str:
        self._check(tokenizer)
        messages, tools = chat_of(example)
        last = max(j for j, m in enumerate(messages) if m["role"] == "assistant")
        return self.render_messages(tokenizer, messages[:last], tools, True)


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
    return get_template(template).render(example, tokenizer)


def render_prompt(example: Mapping[str, Any], template: TemplateLike, tokenizer: Any = None) -> str:
    """The inference prompt: everything before the last assistant reply (a prefix of :func:`render`).

    >>> render_prompt({"instruction": "Hi", "output": "Hello"}, "alpaca").endswith("### Response:")
    True
    """
    return get_template(template).render_prompt(example, tokenizer)


def row_segments(example: Mapping[str, Any], template: TemplateLike, tokenizer: Any = None) -> list[list[Segment]]:
    """The segments of every training row of ``example``: one row, except where a chat template renders
    earlier turns differently once later turns exist (see :meth:`ChatTemplate.row_segments`).

    >>> len(row_segments({"instruction": "Hi", "output": "Hello"}, "alpaca"))
    1
    """
    return get_template(template).row_segments(example, tokenizer)
