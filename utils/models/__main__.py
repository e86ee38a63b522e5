"""Build or check the shipped tiny checkpoints.

    python -m utils.models build [--only data|tokenizer|causal|chat|variants|seq2seq]
    python -m utils.models check

``build`` retrains everything deterministically from the shipped corpus (a few minutes on 2 cores) and
overwrites ``utils/assets/``; ``data`` rewrites the instruction sample files in ``utils/data/``.
``check`` verifies the committed assets exist and load, and prints their sizes; it exits non-zero
with a clear message if not.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

STEPS = ("data", "tokenizer", "causal", "chat", "variants", "seq2seq")
ASSET_DIRS = {"tokenizer": "tokenizer", "causal": "causal_lm", "chat": "chat_adapter",
              "variants": "sft_variants", "seq2seq": "seq2seq_lm"}


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def build(only: list[str] | None = None) -> None:
    os.environ.setdefault("RAYON_NUM_THREADS", "2")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from utils.models import ASSETS, load_tokenizer

    steps = only or list(STEPS)
    total = time.perf_counter()
    for step in steps:
        start = time.perf_counter()
        print(f"== {step}", flush=True)
        if step == "data":
            from utils.models import sft_data

            for path in sft_data.write_all():
                print(f"   wrote {path.relative_to(ASSETS.parent)}")
        elif step == "tokenizer":
            from utils.models import tokenizer

            tokenizer.build(ASSETS / "tokenizer")
            print(f"   vocabulary: {len(load_tokenizer())} tokens")
        elif step == "causal":
            from utils.models import causal

            causal.build(ASSETS / "causal_lm", load_tokenizer())
        elif step == "chat":
            from utils.models import sft

            sft.build(ASSETS / "chat_adapter")
        elif step == "variants":
            from utils.models import sft

            sft.build_variants(ASSETS / "sft_variants")
        elif step == "seq2seq":
            from utils.models import seq2seq

            seq2seq.build(ASSETS / "seq2seq_lm")
        print(f"   {step}: {time.perf_counter() - start:.1f} s", flush=True)
    print(f"build finished in {time.perf_counter() - total:.1f} s")
    check()


def check() -> int:
    """Load every shipped asset; print sizes; return 0 if all are fine, 1 otherwise."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import warnings

    warnings.filterwarnings("ignore")
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    import utils.models as m

    from utils.models.sft import VARIANTS

    loaders = {"tokenizer": m.load_tokenizer, "causal": m.load_causal_lm, "chat": m.load_chat_lm,
               "variants": lambda: [m.load_sft_variant(name) for name in VARIANTS][-1],
               "seq2seq": m.load_seq2seq_lm}
    problems, total = [], 0
    for step, sub in ASSET_DIRS.items():
        path = m.ASSETS / sub
        try:
            obj = loaders[step]()
        except Exception as exc:  # report every problem, not just the first
            problems.append(f"{path}: cannot load ({type(exc).__name__}: {exc})")
            continue
        size = _size(path)
        total += size
        what = (f"{len(obj)} tokens" if step == "tokenizer"
                else f"{sum(p.numel() for p in obj.parameters()):,} parameters")
        print(f"ok  {sub:<14} {size / 1e6:6.2f} MB  {what}")
    print(f"total {total / 1e6:.2f} MB")
    for p in problems:
        print("ERROR " + p, file=sys.stderr)
    if problems:
        print("Some shipped checkpoints are missing or broken; rebuild them with "
              "`python -m utils.models build` (see utils/models/__main__.py).", file=sys.stderr)
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.models", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="retrain the tiny tokenizer and models deterministically")
    b.add_argument("--only", action="append", choices=STEPS,
                   help="build only this step (repeatable); default: all, in order")
    sub.add_parser("check", help="verify the shipped checkpoints exist and load")
    args = parser.parse_args(argv)
    if args.command == "build":
        build(args.only)
        return 0
    return check()


if __name__ == "__main__":
    sys.exit(main())
