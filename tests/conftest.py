"""Shared test fixtures.

Real tokenizers and real data sets live in ``../shared/`` beside the project (or wherever
``LLM_HANDBOOK_SHARED`` points). A user's clone has no ``../shared/``: tests that need it are skipped
there, with the reason. In CI (``CI`` set) a missing ``shared/`` is a failure, never a skip.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import matplotlib
import pytest

# In-process plotting in tests needs no display. Not via the MPLBACKEND variable: nbval's kernels
# inherit the environment, and under Agg their figures would not be displayed (nor compared).
matplotlib.use("Agg")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LLM_HANDBOOK_SHARED", ROOT.parent / "shared"))
REFERENCE_TOKENIZERS = ("gpt2", "llama", "mistral", "qwen2", "qwen2_5", "qwen3", "llama3_1")
WITH_CHAT_TEMPLATE = ("tiny", "mistral", "qwen2", "qwen2_5", "qwen3", "llama3_1")
"""The tokenizers that carry a Jinja chat template (the others: GPT-2, LLaMA; checked by the fixtures)."""


def require_shared(*parts: str) -> Path:
    """Path under ``shared/``; skips the test when absent, except in CI where it fails."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        reason = (f"needs {path} (the project's shared/ folder with real tokenizers and data, "
                  "present in CI but not in a user's clone)")
        if os.environ.get("CI"):
            pytest.fail("CI must have shared/: " + reason)
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    return require_shared("real_data")


_tokenizer_cache: dict[str, object] = {}


def load_reference_tokenizer(name: str):
    """A real tokenizer from ``shared/reference_tokenizers/<name>`` (cached per session)."""
    if name not in _tokenizer_cache:
        from transformers import AutoTokenizer

        _tokenizer_cache[name] = AutoTokenizer.from_pretrained(
            str(require_shared("reference_tokenizers", name)))
    return _tokenizer_cache[name]


def load_any_tokenizer(name: str):
    """``"tiny"`` (the shipped tokenizer) or one of :data:`REFERENCE_TOKENIZERS`."""
    if name == "tiny":
        from utils.models import load_tokenizer

        return load_tokenizer()
    return load_reference_tokenizer(name)


@pytest.fixture(scope="session", params=REFERENCE_TOKENIZERS)
def reference_tokenizer(request):
    return load_reference_tokenizer(request.param)


@pytest.fixture(scope="session", params=("tiny",) + REFERENCE_TOKENIZERS)
def any_tokenizer(request):
    """Each tokenizer the contract must hold for: tiny and every reference tokenizer."""
    return load_any_tokenizer(request.param)


@pytest.fixture(scope="session")
def tok():
    """The shipped tiny tokenizer."""
    return load_any_tokenizer("tiny")


@pytest.fixture(scope="session", params=WITH_CHAT_TEMPLATE)
def chat_tokenizer(request):
    """Each tokenizer with a chat template (for the ``chat_template`` template)."""
    tok = load_any_tokenizer(request.param)
    assert tok.chat_template, f"{request.param} was expected to carry a chat template"
    return tok


@pytest.fixture(scope="session", params=[t for t in ("tiny",) + REFERENCE_TOKENIZERS if t not in WITH_CHAT_TEMPLATE])
def plain_tokenizer(request):
    """Each tokenizer without a chat template."""
    tok = load_any_tokenizer(request.param)
    assert not tok.chat_template, f"{request.param} was expected to have no chat template"
    return tok


@pytest.fixture(scope="module")
def bench():
    """benchmarks/prepare_bench.py as a module: the Stanford / TRL reference implementations of masking."""
    spec = importlib.util.spec_from_file_location("prepare_bench", ROOT / "benchmarks" / "prepare_bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _trl_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("trl")
    except Exception:  # not installed
        return None


TRL_TESTED = "1.16"
"""The TRL whose data API the tests reproduce (``SFTTrainer._prepare_dataset``) or feed (``KTOTrainer``): the pin."""

needs_tested_trl = pytest.mark.skipif(
    _trl_version() is not None and tuple(int(x) for x in _trl_version().split(".")[:2]) < (1, 16),
    reason=f"TRL {_trl_version()} has an older data API than TRL {TRL_TESTED}, which these tests reproduce or "
           "feed: TRL 0.29 (Colab's) prepares SFT data without a labels column and with a transform that cannot "
           "be saved, and its KTOTrainer wants a prompt column in place of our tokenized rows (KeyError: prompt)")
