"""The offline tiny tokenizer and models shipped with the course (no network, ever).

- :func:`load_tokenizer`: byte-level BPE trained on our Chinese + English corpus, with BOS/EOS/PAD
  and the manual's ``human:`` / ``assistant:`` chat template.
- :func:`load_causal_lm`: the *base* model, a tiny Llama-style decoder that continues text.
- :func:`load_chat_lm`: the base model with the shipped LoRA adapter (instruction-tuned) merged in.
- :func:`load_sft_variant`: chapter 6's comparison adapters (150 steps: the recipe, loss on every token,
  the pad == eos bug), so the chapter can compare them without training each one.
- :func:`load_seq2seq_lm`: a tiny T5 (encoder-decoder), from :mod:`utils.models.seq2seq`.
- :func:`load_reference_tokenizer`: a *real* tokenizer shipped as data (GPT-2, Qwen2.5-Instruct with its
  ChatML template, Mistral v0.3), to see what real tokenizers and chat templates do; see
  ``utils/assets/reference_tokenizers/SOURCES.md`` for where each comes from and its licence.

All are rebuilt deterministically by ``python -m utils.models build`` and checked by
``python -m utils.models check``.

Example:
    >>> from utils.models import load_tokenizer, load_causal_lm
    >>> tok, model = load_tokenizer(), load_causal_lm()
    >>> ids = tok("今天天气真", return_tensors="pt")["input_ids"]
    >>> tok.decode(model(ids).logits[0, -1].argmax())
    '好'
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

ASSETS = Path(str(resources.files("utils") / "assets"))
"""Folder of the shipped checkpoints: ``tokenizer/``, ``causal_lm/``, ``chat_adapter/``, ``seq2seq_lm/``."""

REFERENCE_TOKENIZERS = ("gpt2", "qwen2_5", "mistral")
"""Names of the real tokenizers shipped in ``utils/assets/reference_tokenizers/`` (files only, no weights)."""

_MISSING = ("{path} is missing. The checkpoints ship with the repository; rebuild them with "
            "`python -m utils.models build` (or check out the repository's utils/assets/).")


def _asset(name: str) -> Path:
    path = ASSETS / name
    if not path.is_dir() or not any(path.iterdir()):
        raise FileNotFoundError(_MISSING.format(path=path))
    return path


def load_tokenizer():
    """The tiny tokenizer (a ``PreTrainedTokenizerFast``) from ``utils/assets/tokenizer``.

    >>> tok = load_tokenizer()
    >>> tok.bos_token, tok.eos_token, tok.pad_token
    ('<s>', '</s>', '<pad>')
    """
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(str(_asset("tokenizer")))


def load_causal_lm():
    """The tiny base model (``LlamaForCausalLM``, eval mode) from ``utils/assets/causal_lm``.

    >>> load_causal_lm().config.model_type
    'llama'
    """
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(_asset("causal_lm")), use_safetensors=True)
    return model.eval()


def load_chat_lm(merge: bool = True):
    """The base model with the shipped LoRA chat adapter (``utils/assets/chat_adapter``).

    ``merge=True`` (default) folds the adapter into the weights and returns a plain
    ``LlamaForCausalLM``; ``merge=False`` returns the ``PeftModel``.

    >>> model = load_chat_lm()
    >>> type(model).__name__
    'LlamaForCausalLM'
    """
    from peft import PeftModel

    model = PeftModel.from_pretrained(load_causal_lm(), str(_asset("chat_adapter")))
    model = model.merge_and_unload() if merge else model
    return model.eval()


def load_sft_variant(name: str, merge: bool = True):
    """One of chapter 6's shipped comparison adapters on the base model (``utils/assets/sft_variants/NAME``).

    ``name`` is a key of :data:`utils.models.sft.VARIANTS`: ``"prompt_masked"`` (the recipe, 150 steps),
    ``"all_tokens"`` (loss on the prompt too) or ``"pad_eos_bug"`` (every real EOS masked by the classic
    pad == eos collator bug). Each is exactly ``train_lora(base, tokenizer, records, steps=150, **VARIANTS[name])``.

    >>> type(load_sft_variant("all_tokens")).__name__
    'LlamaForCausalLM'
    """
    from peft import PeftModel

    from utils.models.sft import VARIANTS

    if name not in VARIANTS:
        raise ValueError(f"unknown SFT variant {name!r}; choose one of {sorted(VARIANTS)}")
    model = PeftModel.from_pretrained(load_causal_lm(), str(_asset(f"sft_variants/{name}")))
    model = model.merge_and_unload() if merge else model
    return model.eval()


def load_reference_tokenizer(name: str):
    """A real tokenizer shipped with the course, loaded offline: ``"gpt2"``, ``"qwen2_5"`` or ``"mistral"``.

    ``gpt2``: GPT-2's byte-level BPE (no chat template); ``qwen2_5``: Qwen2.5-Instruct with its upstream
    ChatML chat template; ``mistral``: Mistral-7B-Instruct-v0.3, a SentencePiece-family tokenizer that adds
    ``<s>`` itself. Tokenizer files only (no model): for counting and looking at tokens and templates.

    >>> tok = load_reference_tokenizer("qwen2_5")
    >>> tok.eos_token, len(tok("今天天气真好")["input_ids"])
    ('<|im_end|>', 4)
    """
    if name not in REFERENCE_TOKENIZERS:
        raise ValueError(f"unknown reference tokenizer {name!r}; choose one of {', '.join(REFERENCE_TOKENIZERS)} "
                         "(or load your own with transformers.AutoTokenizer.from_pretrained(DIR))")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(_asset(f"reference_tokenizers/{name}")))


def load_seq2seq_lm():
    """The tiny T5 model (see :mod:`utils.models.seq2seq`)."""
    from utils.models.seq2seq import load_seq2seq_lm as _load

    return _load()


__all__ = ["ASSETS", "REFERENCE_TOKENIZERS", "load_reference_tokenizer", "load_tokenizer", "load_causal_lm", "load_chat_lm", "load_seq2seq_lm"]
