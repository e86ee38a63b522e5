"""The real tokenizers shipped as course data (utils/assets/reference_tokenizers): offline, unchanged
copies of the shared reference files, licences that allow shipping, and the facts the chapters show."""

from __future__ import annotations

import hashlib
import re

import pytest

from conftest import load_reference_tokenizer as load_shared
from utils.models import ASSETS, REFERENCE_TOKENIZERS, load_reference_tokenizer

SHIPPED = ASSETS / "reference_tokenizers"
SAMPLE = "今天天气真好，我们出去看电影吧 Hello world 😀 ### Response:\"Hi\"\n\tcode()"


def test_every_shipped_file_matches_its_recorded_sha256():
    listed = dict(reversed(line.split()) for line in (SHIPPED / "SOURCES.md").read_text().splitlines()
                  if re.fullmatch(r"\s+[0-9a-f]{64}\s+\S+", line))
    files = sorted(str(p.relative_to(SHIPPED)) for p in SHIPPED.glob("*/*"))
    assert sorted(listed) == files
    for rel in files:
        assert hashlib.sha256((SHIPPED / rel).read_bytes()).hexdigest() == listed[rel], rel


def test_only_permissively_licensed_tokenizers_are_shipped():
    # LLaMA-2 / Llama-3 tokenizers are under Meta's community licences: tests only, never in the package
    assert sorted(p.name for p in SHIPPED.iterdir() if p.is_dir()) == sorted(REFERENCE_TOKENIZERS)
    sources = (SHIPPED / "SOURCES.md").read_text()
    for name, licence in (("gpt2", "MIT"), ("qwen2_5", "Apache-2.0"), ("mistral", "Apache-2.0")):
        row = next(line for line in sources.splitlines() if line.startswith(f"| `{name}/`"))
        assert licence in row


@pytest.mark.parametrize("name", REFERENCE_TOKENIZERS)
def test_shipped_tokenizer_equals_the_shared_reference(name):
    ours, ref = load_reference_tokenizer(name), load_shared(name)
    assert ours(SAMPLE)["input_ids"] == ref(SAMPLE)["input_ids"]
    assert (ours.bos_token, ours.eos_token, ours.pad_token) == (ref.bos_token, ref.eos_token, ref.pad_token)
    assert ours.chat_template == ref.chat_template
    assert ours.decode(ours(SAMPLE, add_special_tokens=False)["input_ids"]) == SAMPLE


def test_reference_tokenizers_carry_what_the_chapters_show():
    qwen, gpt2, mistral = (load_reference_tokenizer(n) for n in ("qwen2_5", "gpt2", "mistral"))
    # one Chinese character is not one token on real tokenizers: Qwen merges words, GPT-2 splits bytes
    text = "今天天气真好，我们出去看电影吧"
    assert len(qwen(text)["input_ids"]) < len(text) < len(gpt2(text)["input_ids"])
    chat = qwen.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert chat.startswith("<|im_start|>system\nYou are Qwen") and chat.endswith("<|im_start|>assistant\n")
    assert mistral("Hi")["input_ids"][0] == mistral.bos_token_id and gpt2.chat_template is None


def test_unknown_name_is_a_clear_error():
    with pytest.raises(ValueError, match="choose one of gpt2, qwen2_5, mistral"):
        load_reference_tokenizer("llama3_1")
