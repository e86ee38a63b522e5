"""The course's tiny encoder-decoder (T5) model and its text-to-text task: phrase translation.

The model translates short noun phrases between Chinese and English, in both directions, told
apart by a T5-style prefix in the input::

    翻译成英文：两辆红色的大车  ->  two big red cars
    翻译成中文：three small fish  ->  三条小鱼

The output is a different text that *corresponds* to the input, not a continuation of it: the
words change language, their order changes (红色的大车 -> big red car), and the output depends on
the whole input (两 for "two" before a measure word; the measure word 只/条/个/本/辆/把/朵 is
chosen by the noun at the end of the English phrase; "one cat" but "two cats", "two fish").
The phrases (10 counts x 3 sizes x 7 colours x 10 nouns = 2,100) are split once and for all by a
hash: about 15% are held out and never seen in training, in either direction, so held-out accuracy
measures whether the model learned to compose, not to recall.

Typical use::

    >>> from utils.models import load_tokenizer
    >>> from utils.models.seq2seq import load_seq2seq_lm, translate
    >>> model, tokenizer = load_seq2seq_lm(), load_tokenizer()  # doctest: +SKIP
    >>> translate(model, tokenizer, ["翻译成英文：两辆红色的大车", "翻译成中文：three small fish"])  # doctest: +SKIP
    ['two big red cars', '三条小鱼']

Rebuild the committed checkpoint (deterministic)::

    python -m utils.models.seq2seq          # or: python -m utils.models build --only seq2seq
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import tempfile
import time
from functools import lru_cache
from itertools import product
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:  # heavy imports stay lazy so `import utils.models` is cheap
    import pandas as pd
    from transformers import PreTrainedTokenizerBase, T5ForConditionalGeneration

ASSET_DIR = Path(__file__).resolve().parents[1] / "assets" / "seq2seq_lm"
BUILD_INFO = "build_info.json"

TO_ENGLISH = "翻译成英文："
TO_CHINESE = "翻译成中文："
TASKS = {"zh_to_en": TO_ENGLISH, "en_to_zh": TO_CHINESE}
HELD_OUT_PERCENT = 15
EVAL_SEED = 1234
EVAL_SIZE = 300
ACCURACY_BAR = 0.95  # what tests require of the committed checkpoint (exact match, held out)

# count: (Chinese before a measure word, English)
COUNTS = [("一", "one"), ("两", "two"), ("三", "three"), ("四", "four"), ("五", "five"),
          ("六", "six"), ("七", "seven"), ("八", "eight"), ("九", "nine"), ("十", "ten")]
SIZES = [("", ""), ("大", "big"), ("小", "small")]
COLORS = [("", ""), ("红色", "red"), ("黄色", "yellow"), ("蓝色", "blue"), ("绿色", "green"),
          ("白色", "white"), ("黑色", "black")]


class Noun(NamedTuple):
    zh: str
    singular: str
    plural: str
    measure: str  # the Chinese measure word (量词) this noun takes


NOUNS = [Noun("猫", "cat", "cats", "只"), Noun("狗", "dog", "dogs", "只"),
         Noun("鸟", "bird", "birds", "只"), Noun("鱼", "fish", "fish", "条"),
         Noun("苹果", "apple", "apples", "个"), Noun("杯子", "cup", "cups", "个"),
         Noun("书", "book", "books", "本"), Noun("车", "car", "cars", "辆"),
         Noun("椅子", "chair", "chairs", "把"), Noun("花", "flower", "flowers", "朵")]

MODEL_CONFIG = dict(d_model=128, d_kv=32, num_heads=4, d_ff=256, num_layers=2,
                    num_decoder_layers=2, relative_attention_num_buckets=32,
                    relative_attention_max_distance=64, dropout_rate=0.0,
                    feed_forward_proj="relu", tie_word_embeddings=True)


# --------------------------------------------------------------------------------------------
# The task
# --------------------------------------------------------------------------------------------

class Phrase(NamedTuple):
    """A noun phrase as indices into :data:`COUNTS`, :data:`SIZES`, :data:`COLORS`, :data:`NOUNS`."""
    count: int
    size: int
    color: int
    noun: int

    def zh(self) -> str:
        """Chinese: count, measure word, colour + 的, size, noun. ``Phrase(1, 1, 1, 7).zh()`` is
        ``'两辆红色的大车'``."""
        noun = NOUNS[self.noun]
        color = COLORS[self.color][0]
        return (COUNTS[self.count][0] + noun.measure + (color + "的" if color else "")
                + SIZES[self.size][0] + noun.zh)

    def en(self) -> str:
        """English: count, size, colour, noun (plural unless one). ``Phrase(1, 1, 1, 7).en()`` is
        ``'two big red cars'``."""
        noun = NOUNS[self.noun]
        words = [COUNTS[self.count][1], SIZES[self.size][1], COLORS[self.color][1],
                 noun.singular if self.count == 0 else noun.plural]
        return " ".join(w for w in words if w)


def all_phrases() -> list[Phrase]:
    """Every phrase of the task (2,100), in a fixed order."""
    return [Phrase(*idx) for idx in product(range(len(COUNTS)), range(len(SIZES)),
                                            range(len(COLORS)), range(len(NOUNS)))]


def is_held_out(phrase: Phrase) -> bool:
    """Whether ``phrase`` belongs to the held-out split (fixed by a hash of its English text)."""
    digest = hashlib.sha256(phrase.en().encode()).hexdigest()
    return int(digest, 16) % 100 < HELD_OUT_PERCENT


@lru_cache(maxsize=None)
def split_phrases(split: str) -> tuple[Phrase, ...]:
    """All phrases of ``split`` ("train" or "test")."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return tuple(p for p in all_phrases() if is_held_out(p) == (split == "test"))


def example_for(phrase: Phrase, task: str) -> dict[str, str]:
    """One example ``{"input", "target"}``: ``phrase`` in direction ``task`` ("zh_to_en" or "en_to_zh").

    >>> example_for(Phrase(1, 1, 1, 7), "zh_to_en")
    {'input': '翻译成英文：两辆红色的大车', 'target': 'two big red cars'}
    >>> example_for(Phrase(2, 2, 0, 3), "en_to_zh")
    {'input': '翻译成中文：three small fish', 'target': '三条小鱼'}
    """
    if task == "zh_to_en":
        return {"input": TO_ENGLISH + phrase.zh(), "target": phrase.en()}
    if task == "en_to_zh":
        return {"input": TO_CHINESE + phrase.en(), "target": phrase.zh()}
    raise ValueError(f"unknown task {task!r}; expected one of {sorted(TASKS)}")


def make_examples(split: str, n: int, seed: int = 0) -> list[dict[str, str]]:
    """``n`` examples ``{"input", "target"}`` from ``split`` ("train" or "test"), deterministic.

    "train": phrases drawn with replacement, random direction. "test": ``n`` distinct held-out
    phrases, directions alternating (half each); none of them ever occurs in "train".

    >>> make_examples("test", 2, seed=0)[0]["input"].startswith(TO_ENGLISH)
    True
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    pool = split_phrases(split)
    if n < 0 or (split == "test" and n > len(pool)):
        raise ValueError(f"n must be >= 0 (and <= {len(pool)} distinct held-out phrases for 'test'), got {n}")
    rng = random.Random(f"{split}-{seed}")
    if split == "test":
        chosen = rng.sample(pool, n)
        return [example_for(p, ("zh_to_en", "en_to_zh")[i % 2]) for i, p in enumerate(chosen)]
    return [example_for(rng.choice(pool), rng.choice(("zh_to_en", "en_to_zh"))) for _ in range(n)]


# --------------------------------------------------------------------------------------------
# Encoding, generation, evaluation
# --------------------------------------------------------------------------------------------

def encode_examples(examples: list[dict[str, str]], tokenizer: "PreTrainedTokenizerBase"
                    ) -> list[dict[str, list[int]]]:
    """Training features: ``input_ids`` / ``attention_mask`` of the input exactly as
    ``tokenizer(text)`` gives them (what :func:`translate` feeds the encoder), and ``labels``: the
    target's ids followed by EOS (no BOS; T5 shifts them right itself, starting the decoder from
    ``decoder_start_token_id`` = the pad id).

    >>> encode_examples([{"input": "翻译成中文：one cat", "target": "一只猫"}], tokenizer)  # doctest: +SKIP
    [{'input_ids': [1, ...], 'attention_mask': [1, ...], 'labels': [..., 2]}]
    """
    inputs = tokenizer([e["input"] for e in examples])
    targets = tokenizer([e["target"] for e in examples], add_special_tokens=False)["input_ids"]
    return [{"input_ids": i, "attention_mask": a, "labels": t + [tokenizer.eos_token_id]}
            for i, a, t in zip(inputs["input_ids"], inputs["attention_mask"], targets)]


def translate(model: "T5ForConditionalGeneration", tokenizer: "PreTrainedTokenizerBase",
              texts: list[str] | str, max_new_tokens: int = 24, batch_size: int = 128) -> list[str]:
    """Greedy outputs of the encoder-decoder for each input text (special tokens removed).

    >>> translate(model, tokenizer, ["翻译成英文：一只猫"])  # doctest: +SKIP
    ['one cat']
    """
    import torch

    if isinstance(texts, str):
        texts = [texts]
    model.eval()
    outputs: list[str] = []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True)
        with torch.no_grad():
            ids = model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                                 max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                 decoder_start_token_id=model.config.decoder_start_token_id,
                                 eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        outputs += [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]
    return outputs


def predictions_table(model: "T5ForConditionalGeneration", tokenizer: "PreTrainedTokenizerBase",
                      examples: list[dict[str, str]]) -> "pd.DataFrame":
    """A table of ``input``, ``target``, ``prediction``, ``correct`` (exact match) per example."""
    import pandas as pd

    preds = translate(model, tokenizer, [e["input"] for e in examples])
    return pd.DataFrame({"input": [e["input"] for e in examples],
                         "target": [e["target"] for e in examples],
                         "prediction": preds,
                         "correct": [p == e["target"] for p, e in zip(preds, examples)]})


def held_out_examples(n: int = EVAL_SIZE, seed: int = EVAL_SEED) -> list[dict[str, str]]:
    """The fixed held-out evaluation set (half in each direction)."""
    return make_examples("test", n, seed)


def held_out_accuracy(model: "T5ForConditionalGeneration", tokenizer: "PreTrainedTokenizerBase",
                      n: int = EVAL_SIZE, seed: int = EVAL_SEED, by_task: bool = False
                      ) -> float | dict[str, float]:
    """Exact-match accuracy on held-out phrases (never seen in training, in either direction).

    With ``by_task=True``, a dict ``{"all": ..., "zh_to_en": ..., "en_to_zh": ...}``.
    """
    table = predictions_table(model, tokenizer, held_out_examples(n, seed))
    overall = float(table["correct"].mean())
    if not by_task:
        return overall
    result = {"all": overall}
    for task, prefix in TASKS.items():
        result[task] = float(table.loc[table["input"].str.startswith(prefix), "correct"].mean())
    return result


# --------------------------------------------------------------------------------------------
# Loading and building
# --------------------------------------------------------------------------------------------

def tokenizer_fingerprint(tokenizer: "PreTrainedTokenizerBase") -> str:
    """A short hash of the tokenizer's vocabulary (id <-> token), to detect a rebuilt tokenizer."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    return hashlib.sha256(json.dumps(vocab, ensure_ascii=False).encode()).hexdigest()[:16]


def build_info(path: str | Path | None = None) -> dict[str, Any]:
    """The metrics recorded when the checkpoint was built (task, sizes, seconds, accuracy)."""
    path = Path(path) if path is not None else ASSET_DIR
    return json.loads((path / BUILD_INFO).read_text(encoding="utf-8"))


def load_seq2seq_lm(path: str | Path | None = None, check_tokenizer: bool = True
                     ) -> "T5ForConditionalGeneration":
    """The shipped tiny T5 (offline, safetensors), in eval mode. Use it with ``load_tokenizer()``.

    Raises ``FileNotFoundError`` if the checkpoint is missing and ``RuntimeError`` if the course
    tokenizer was rebuilt since the checkpoint was trained (its ids would no longer match).

    >>> model = load_seq2seq_lm()  # doctest: +SKIP
    >>> model.config.model_type  # doctest: +SKIP
    't5'
    """
    from transformers import T5ForConditionalGeneration

    path = Path(path) if path is not None else ASSET_DIR
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"{path}: no model.safetensors; build it with "
                                "`python -m utils.models build --only seq2seq`")
    if check_tokenizer and (path / BUILD_INFO).is_file():
        from utils.models import load_tokenizer

        expected = build_info(path).get("tokenizer_fingerprint")
        actual = tokenizer_fingerprint(load_tokenizer())
        if expected and expected != actual:
            raise RuntimeError(f"{path} was trained with another version of the course tokenizer "
                               f"({expected} != {actual}); rebuild it with "
                               "`python -m utils.models build --only seq2seq`")
    model = T5ForConditionalGeneration.from_pretrained(str(path), local_files_only=True,
                                                       use_safetensors=True)
    model.eval()
    return model


def new_model(tokenizer: "PreTrainedTokenizerBase", seed: int = 0, **overrides: Any
              ) -> "T5ForConditionalGeneration":
    """A freshly initialised tiny T5 sized for ``tokenizer`` (pad / EOS / decoder start set)."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    cfg = {**MODEL_CONFIG, **overrides}
    config = T5Config(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.eos_token_id,
                      decoder_start_token_id=tokenizer.pad_token_id, **cfg)
    torch.manual_seed(seed)
    return T5ForConditionalGeneration(config)


def build(out_dir: str | Path | None = None, tokenizer: "PreTrainedTokenizerBase | None" = None,
          steps: int = 500, batch_size: int = 64, lr: float = 3e-3, warmup: int = 50,
          seed: int = 0, eval_n: int = EVAL_SIZE, threads: int = 2, progress: bool = True,
          **model_overrides: Any
          ) -> dict[str, Any]:
    """Train the tiny T5 on the task deterministically and save it (safetensors) to ``out_dir``.

    Seeds everything, uses ``threads`` threads (the same count on the same CPU gives bit-identical
    weights; another count gives slightly different ones) and ``torch.use_deterministic_algorithms
    (True)``, both restored afterwards. Writes ``config.json``, ``generation_config.json``, ``model.safetensors``
    and ``build_info.json`` into a temporary folder and moves it into place only when training
    and evaluation succeeded. Returns the metrics (also stored in ``build_info.json``).

    >>> metrics = build("t5_test", steps=50, progress=False)  # doctest: +SKIP
    >>> sorted(metrics)[:3]  # doctest: +SKIP
    ['batch_size', 'examples', 'held_out_accuracy']
    """
    import numpy as np
    import torch
    from transformers import DataCollatorForSeq2Seq

    from utils.models.training import train_steps

    out_dir = Path(out_dir) if out_dir is not None else ASSET_DIR
    if tokenizer is None:
        from utils.models import load_tokenizer

        tokenizer = load_tokenizer()
    for name in ("pad_token_id", "eos_token_id"):
        if getattr(tokenizer, name) is None:
            raise ValueError(f"the tokenizer has no {name[:-3]}; the T5 needs pad and EOS tokens")

    previous_threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    random.seed(seed)
    np.random.seed(seed)
    try:
        start = time.perf_counter()
        examples = make_examples("train", steps * batch_size, seed)
        features = encode_examples(examples, tokenizer)
        collate = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100, return_tensors="pt")

        model = new_model(tokenizer, seed=seed, **model_overrides)
        model.train()
        losses = train_steps(model, model.parameters(),
                             lambda step: collate(features[step * batch_size:(step + 1) * batch_size]),
                             steps=steps, lr=lr, warmup=warmup, weight_decay=0.01, desc="seq2seq (T5)",
                             progress=progress)
        train_seconds = time.perf_counter() - start
        model.eval()
        accuracy = held_out_accuracy(model, tokenizer, n=eval_n, by_task=True)
        metrics: dict[str, Any] = {
            "task": "phrase translation zh <-> en (翻译成英文：两辆红色的大车 -> two big red cars)",
            "parameters": sum(p.numel() for p in model.parameters()),
            "config": {**MODEL_CONFIG, **model_overrides, "vocab_size": len(tokenizer)},
            "steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed,
            "examples": len(examples),
            "final_loss": float(np.mean(losses[-50:])),
            "held_out_examples": eval_n,
            "held_out_accuracy": accuracy["all"],
            "held_out_accuracy_by_task": {k: v for k, v in accuracy.items() if k != "all"},
            "train_seconds": round(train_seconds, 1),
            "seconds": round(time.perf_counter() - start, 1),
            "torch_threads": threads,
            "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer),
        }
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".seq2seq_tmp_", dir=out_dir.parent))
        try:
            model.save_pretrained(tmp, safe_serialization=True)
            (tmp / BUILD_INFO).write_text(json.dumps(metrics, ensure_ascii=False, indent=1) + "\n",
                                          encoding="utf-8")
            tmp.chmod(0o755)  # mkdtemp makes it private; the package's files must be readable
            for f in tmp.iterdir():
                f.chmod(0o644)
            if out_dir.exists():
                shutil.rmtree(out_dir)
            tmp.rename(out_dir)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
        return metrics
    finally:
        torch.set_num_threads(previous_threads)
        torch.use_deterministic_algorithms(deterministic)


def main(argv: list[str] | None = None) -> int:
    """``python -m utils.models.seq2seq [--out DIR] [--steps N]``: build and print the metrics."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m utils.models.seq2seq", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=None, help="output folder (default: the package's assets)")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--tokenizer", default=None, help="a tokenizer folder (default: the course's)")
    args = parser.parse_args(argv)
    tokenizer = None
    if args.tokenizer:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer, local_files_only=True)
    metrics = build(args.out, tokenizer=tokenizer, steps=args.steps)
    print(json.dumps({k: v for k, v in metrics.items() if k != "config"}, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
