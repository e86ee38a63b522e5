"""LoRA supervised fine-tuning (SFT) of the tiny base model, and its evaluation (chapter 6).

Recipe (measured on 2 CPU cores): the instruction records of :mod:`utils.models.sft_data`, encoded
with the ``human_assistant`` template by :func:`utils.encode.encode_batch` (prompt masked with -100,
reply + EOS supervised); LoRA r=16, alpha=32 on q/k/v/o and gate/up/down projections; AdamW lr 1e-3,
20 warm-up steps then cosine; batch 16 (padded by :func:`utils.packing.pad_collate`); 300 steps.
Measured on the 38 held-out questions (templated): stops with EOS 100%, exactly right 87% (seeds 1–3:
87%, 87%, 92%). More steps
or a higher learning rate fit the training answers better and the held-out ones worse (the model
starts naming facts memorised from the instruction set): 500 steps at lr 3e-3 79%, 1,000 steps at
lr 1e-3 76%; 150 steps (chapter 6's in-notebook run) 92%.

Two deliberate mistakes can be switched on to compare:

- ``masking="all"``: loss on every token (prompt too), instead of ``"prompt"`` masking;
- ``pad_eos_bug=True``: pad with EOS and mask labels wherever ``input_ids == pad_token_id`` — which also
  masks every real EOS, so the model never learns to stop.

:func:`evaluate` generates greedily for held-out questions, either as the bare question (``"raw"``) or in
the template (``"template"``), and scores each generation three ways: does it stop with EOS, is it the
exact answer in the trained format (``correct``), and is the fact right whatever the format
(``fact_right``, :func:`states_fact`: the first sentence names the fact's subject and value). The last
score separates "the model does not know" from "the model answers in another format": given the bare
question, the fine-tuned model often writes the fact as a pretraining quiz line
("A: The capital of China is Beijing."), which is not the trained answer but states the right fact.

Example:
    >>> from utils.models import load_tokenizer, load_chat_lm
    >>> from utils.models.sft_data import load_heldout
    >>> table = evaluate(load_chat_lm(), load_tokenizer(), load_heldout()[:4], style="template")
    >>> list(table.columns)
    ['question', 'answer', 'output', 'stops_with_eos', 'correct', 'fact_right']
"""

from __future__ import annotations

import copy
import functools
import json
import re
import time
from pathlib import Path
from typing import Any, Sequence

TEMPLATE = "human_assistant"
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
STYLES = ("raw", "template")
SCORES = ("stops_with_eos", "correct", "fact_right")
VARIANT_STEPS = 150
"""Steps of chapter 6's comparison runs (the in-notebook run and the shipped variants)."""
VARIANTS = {"prompt_masked": {}, "all_tokens": {"masking": "all"}, "pad_eos_bug": {"pad_eos_bug": True}}
"""The shipped comparison adapters (``utils/assets/sft_variants/NAME``): :func:`train_lora` with
``steps=VARIANT_STEPS`` and these arguments. Chapter 6 trains ``prompt_masked`` live and loads the
other two, so that the notebook stays under a minute; ``python -m utils.models build --only variants``
retrains all three, and tests/test_sft.py retrains each and compares it with the shipped one."""

_SENTENCE_END = re.compile(r"[.!?。！？\n]")


def first_sentence(text: str) -> str:
    """``text`` up to its first sentence end (``.`` ``!`` ``?`` ``。`` ``！`` ``？`` or a line break).

    >>> first_sentence(" A: The capital of China is Beijing. The opposite of happy is sad.")
    'A: The capital of China is Beijing'
    >>> first_sentence("答：快的反义词是慢。问：草莓是什么颜色的？")
    '答：快的反义词是慢'
    """
    text = text.strip()
    end = _SENTENCE_END.search(text)
    return text[: end.start()] if end else text


def states_fact(output: str, subject: str, value: str) -> bool:
    """Whether the first sentence of ``output`` names both the fact's ``subject`` and its ``value``, in
    any format ("A: The capital of China is Beijing." states the fact as well as the trained answer).

    English words must stand as whole words (case ignored), Chinese ones as substrings. Only the first
    sentence counts, so a generation that rambles through many facts is not credited for one it names
    later; and the subject must be there, so a memorised answer about another subject that happens to
    share the value ("The strawberry is red." for the tomato) does not count.

    >>> states_fact(" A: The capital of China is Beijing.", "China", "Beijing")
    True
    >>> states_fact("The capital of Peru is Lima. Q: What is the capital of China? A: Beijing", "China", "Beijing")
    False
    >>> states_fact("答：快的反义词是慢。", "快", "慢"), states_fact("The strawberry is red.", "tomato", "red")
    (True, False)
    """
    sentence = first_sentence(output)
    return _names(sentence, subject) and _names(sentence, value)


def _names(sentence: str, word: str) -> bool:
    if re.fullmatch(r"[A-Za-z][A-Za-z ]*", word):
        return re.search(rf"(?<![A-Za-z]){re.escape(word)}(?![A-Za-z])", sentence, re.IGNORECASE) is not None
    return word in sentence


def answer_format(output: str) -> str:
    """How a generation is written: ``"empty"``, ``"quiz"`` (the pretraining corpus's quiz line,
    ``"A: …"`` / ``"答：…"``) or ``"other"`` (e.g. the trained answer).

    >>> [answer_format(t) for t in ("", " A: The snow is white.", "答：雪是白色的。", " The snow is white.")]
    ['empty', 'quiz', 'quiz', 'other']
    """
    text = output.strip()
    if not text:
        return "empty"
    return "quiz" if text.startswith(("A:", "答：")) else "other"


@functools.lru_cache(maxsize=1)
def _facts_by_answer() -> dict:
    from utils.models.corpus import load_facts, question_answer
    from utils.models.sft_data import chat_question_answer

    facts = {}
    for fact in load_facts():
        for answer in (question_answer(fact)[1], chat_question_answer(fact)[1]):
            facts[answer] = fact
    return facts


def fact_of(question: dict) -> tuple[str, str]:
    """``(subject, value)`` of the fact ``question`` asks about: its ``"subject"`` and ``"value"`` if it has
    them, else looked up by its ``"answer"`` among the facts of the corpus.

    >>> fact_of({"question": "What is the capital of China?", "answer": "The capital of China is Beijing."})
    ('China', 'Beijing')
    >>> fact_of({"question": "请问，秘鲁的首都是哪里？", "answer": "你好，秘鲁的首都是利马。"})
    ('秘鲁', '利马')
    """
    if "subject" in question and "value" in question:
        return question["subject"], question["value"]
    fact = _facts_by_answer().get(question["answer"])
    if fact is None:
        raise ValueError(f"no fact of the corpus has the answer {question['answer']!r}: give the row "
                         "'subject' and 'value' (what a right answer names)")
    return fact.subject, fact.value


def lora_config(r: int = 16, alpha: int = 32, targets: Sequence[str] = tuple(LORA_TARGETS)):
    """The ``peft.LoraConfig`` of the recipe."""
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=list(targets),
                      task_type="CAUSAL_LM")


def training_rows(records: Sequence[dict], tokenizer, masking: str = "prompt") -> list[dict]:
    """Encode ``records`` with :data:`TEMPLATE`; ``masking="all"`` puts the loss on every token."""
    from utils.encode import encode_batch

    if masking not in ("prompt", "all"):
        raise ValueError(f"masking must be 'prompt' or 'all', got {masking!r}")
    rows = [r for r in encode_batch(list(records), tokenizer, TEMPLATE) if r is not None]
    if masking == "all":
        rows = [dict(r, labels=list(r["input_ids"])) for r in rows]
    return rows


def train_lora(base_model, tokenizer, records: Sequence[dict], *, steps: int = 300, batch_size: int = 16,
               lr: float = 1e-3, warmup: int = 20, r: int = 16, alpha: int = 32, masking: str = "prompt",
               pad_eos_bug: bool = False, seed: int = 0, progress: bool = True):
    """LoRA-fine-tune a copy of ``base_model`` on ``records``; returns ``(peft_model, losses)``.

    The base model itself is left unchanged.
    """
    import torch
    from peft import get_peft_model

    from utils.models.causal import deterministic
    from utils.models.training import train_steps
    from utils.packing import pad_collate

    deterministic(seed)
    rows = training_rows(records, tokenizer, masking)
    pad_id = tokenizer.eos_token_id if pad_eos_bug else tokenizer.pad_token_id
    model = get_peft_model(copy.deepcopy(base_model), lora_config(r, alpha))
    model.train()
    gen = torch.Generator().manual_seed(seed)

    def next_batch(step: int) -> dict:
        idx = torch.randint(len(rows), (batch_size,), generator=gen).tolist()
        batch = pad_collate([rows[i] for i in idx], pad_id)
        if pad_eos_bug:  # the classic collator bug: every position whose input is the pad id is ignored
            batch["labels"] = batch["labels"].masked_fill(batch["input_ids"] == pad_id, -100)
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
                "labels": batch["labels"], "use_cache": False}

    params = [p for p in model.parameters() if p.requires_grad]
    losses = train_steps(model, params, next_batch, steps=steps, lr=lr, warmup=warmup, weight_decay=0.0,
                         desc="LoRA SFT", progress=progress)
    return model.eval(), losses


def prompt_ids(question: str, tokenizer, style: str) -> list[int]:
    """The ids given to the model: the bare question (``"raw"``) or the templated prompt (``"template"``).

    >>> from utils.models import load_tokenizer
    >>> tok = load_tokenizer()
    >>> tok.decode(prompt_ids("Hi?", tok, "template"))
    '<s>human: Hi?\\nassistant:'
    """
    from utils.encode import encode_prompt

    if style == "raw":
        return tokenizer(question)["input_ids"]
    if style == "template":
        example = {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": "-"}]}
        return encode_prompt(example, tokenizer, TEMPLATE)
    raise ValueError(f"style must be one of {STYLES}, got {style!r}")


def evaluate(model, tokenizer, questions: Sequence[dict], style: str = "template",
             max_new_tokens: int = 24):
    """Greedy answers to ``questions`` (rows with ``question`` and ``answer``) as a ``pandas.DataFrame``.

    Columns: ``question``, ``answer``, ``output`` (the text generated before EOS), ``stops_with_eos``
    (EOS within ``max_new_tokens``), ``correct`` (the exact answer in the trained format: stops with EOS
    and the output, stripped, equals the answer) and ``fact_right`` (the first sentence of the output
    names the fact's subject and value, :func:`states_fact`, whatever the format and whether or not it
    stops).
    Prompts of equal length are generated together, so no padding is involved.
    """
    import pandas as pd
    import torch

    from utils.generate import generation_kwargs

    prompts = [prompt_ids(q["question"], tokenizer, style) for q in questions]
    results: dict[int, tuple[str, bool]] = {}
    by_len: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        by_len.setdefault(len(p), []).append(i)
    eos = tokenizer.eos_token_id
    with torch.no_grad():
        for n, idx in by_len.items():
            ids = torch.tensor([prompts[i] for i in idx])
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                 **generation_kwargs(model, tokenizer, max_new_tokens=max_new_tokens))
            for i, row in zip(idx, out[:, n:].tolist()):
                stops = eos in row
                text = tokenizer.decode(row[: row.index(eos)] if stops else row, skip_special_tokens=True)
                results[i] = (text, stops)
    rows = []
    for i, q in enumerate(questions):
        text, stops = results[i]
        rows.append({"question": q["question"], "answer": q["answer"], "output": text,
                     "stops_with_eos": stops, "correct": stops and text.strip() == q["answer"],
                     "fact_right": states_fact(text, *fact_of(q))})
    return pd.DataFrame(rows)


def rates(table) -> dict[str, float]:
    """``{"stops_with_eos": ..., "correct": ..., "fact_right": ...}``: the fractions of an :func:`evaluate` table."""
    return {score: float(table[score].mean()) for score in SCORES}


def compare(models: dict[str, Any], tokenizer, questions: Sequence[dict], styles: Sequence[str] = STYLES):
    """One row per (model, prompt style) with the three rates (:data:`SCORES`), as a ``pandas.DataFrame``.

    >>> from utils.models import load_tokenizer, load_causal_lm
    >>> from utils.models.sft_data import load_heldout
    >>> compare({"base": load_causal_lm()}, load_tokenizer(), load_heldout()[:2]).columns.tolist()
    ['model', 'prompt', 'stops_with_eos', 'correct', 'fact_right']
    """
    import pandas as pd

    rows = []
    for name, model in models.items():
        for style in styles:
            rows.append({"model": name, "prompt": style, **rates(evaluate(model, tokenizer, questions, style))})
    return pd.DataFrame(rows)


def build_variants(root: Path) -> list[Path]:
    """Train and save every adapter of :data:`VARIANTS` under ``root`` (one folder each)."""
    return [build(root / name, steps=VARIANT_STEPS, **kwargs) for name, kwargs in VARIANTS.items()]


def build(out_dir: Path, **kwargs) -> Path:
    """Train the chat adapter on the shipped data and save it (safetensors) to ``out_dir``."""
    from utils.models import load_causal_lm, load_tokenizer
    from utils.models.sft_data import load_heldout, load_training_records

    start = time.perf_counter()
    tokenizer, base = load_tokenizer(), load_causal_lm()
    model, losses = train_lora(base, tokenizer, load_training_records(), **kwargs)
    seconds = time.perf_counter() - start
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    # Keep machine paths out of the shipped files: the adapter is always loaded onto load_causal_lm().
    (out_dir / "README.md").unlink(missing_ok=True)
    config_path = out_dir / "adapter_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = None
    config["target_modules"] = sorted(config["target_modules"])  # peft stores a set: keep rebuilds byte-identical
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    r = rates(evaluate(model, tokenizer, load_heldout(), "template"))
    print(f"{out_dir.name}: {n_train:,} trainable parameters, {len(losses)} steps, final loss {losses[-1]:.3f}, "
          f"{seconds:.1f} s; held-out (template): stops with EOS {r['stops_with_eos']:.0%}, "
          f"correct {r['correct']:.0%}")
    return out_dir
