"""``utils.spans.PairCheck``: a cut it calls safe never has a token across it, on real text, every tokenizer.

And ``_Plan``'s joined tokenization of continuation pieces (several pieces per tokenizer input, cut back at the
EOS ids) gives exactly the ids of tokenizing each piece alone."""

from __future__ import annotations

import random

import pytest

from utils.formats import iter_records
from utils.spans import PairCheck

# the cuts the encoder makes: template text, then a reply that starts in any of the ways replies start
TEMPLATE_ENDS = ("ASSISTANT:", "### Response:\n", "<|im_start|>assistant\n", "[/INST]", "\n\n", "### Response:")
REPLY_STARTS = (" Hello", "Hello", "\nHi", "\n\n1.", '"quote"', "你好。", "😀 ok", "  two", "e\u0301t\u00e9", "12",
                " The", "I", "Sure")
BYTE_LEVEL = ("tiny", "gpt2", "qwen2", "qwen2_5", "qwen3", "llama3_1")


def real_texts(real_data_dir, n: int = 150) -> list[str]:
    texts = []
    for name in ("fastchat_dummy_conversation.json", "llamafactory_alpaca_zh_demo.json",
                 "llamafactory_alpaca_en_demo.json"):
        for record in list(iter_records(real_data_dir / name))[:n]:
            texts += [m["content"] for m in record.get("messages", [])] or [record["instruction"], record["output"]]
    texts += [p + r for p in TEMPLATE_ENDS for r in REPLY_STARTS]
    return texts


def cuts_of(texts: list[str], per_text: int = 4, seed: int = 0):
    rng = random.Random(seed)
    for text in texts:
        for _ in range(per_text if len(text) > 1 else 0):
            yield text, rng.randrange(1, len(text))


def test_a_safe_cut_never_has_a_token_across_it(any_tokenizer, real_data_dir):
    """Whole-text tokenization of the real text (not a window: the whole text) puts no token across any cut
    ``may_span`` calls safe; for byte-level tokenizers most cuts are decided safe (the check does work), for
    Metaspace ones (LLaMA-2, Mistral) none is (the argument does not hold there)."""
    backend = any_tokenizer.backend_tokenizer
    check = PairCheck(backend)
    texts = real_texts(real_data_dir)
    cases = list(cuts_of(texts))
    encoded = backend.encode_batch([t for t, _ in cases], add_special_tokens=False)
    safe = across_safe = 0
    for (text, cut), enc in zip(cases, encoded):
        if not check.may_span(text[:cut], text[cut:]):
            safe += 1
            across_safe += any(a < cut < b for a, b in enc.offsets)
    assert across_safe == 0
    byte_level = type(backend.pre_tokenizer).__name__ != "Metaspace"
    assert check.usable == byte_level
    if byte_level:  # random cuts fall mostly inside words (and half the texts are Chinese): a share is safe
        assert safe > 0.1 * len(cases)
        boundaries = [(p, r) for p in TEMPLATE_ENDS for r in REPLY_STARTS]  # the encoder's own cuts: mostly safe
        assert sum(not check.may_span(p, r) for p, r in boundaries) > 0.3 * len(boundaries)
    else:
        assert safe == 0


def test_pairs_a_token_holds_and_nfc_compositions_are_not_safe():
    from conftest import load_any_tokenizer

    gpt2 = PairCheck(load_any_tokenizer("gpt2").backend_tokenizer)
    assert gpt2.may_span("x\n", "\ny")  # "\n\n" is one GPT-2 token
    assert gpt2.may_span("Hel", "lo")
    assert not gpt2.may_span("ASSISTANT:", " Hello")
    assert not gpt2.may_span("", "Hello") and not gpt2.may_span("Hello", "")
    qwen = PairCheck(load_any_tokenizer("qwen2_5").backend_tokenizer)
    assert qwen.norm == "nfc"
    text = "caf" + "e\u0301"  # NFC composes e + U+0301 into é: whole-text ids are not the two sides' ids
    ids = [qwen.backend.encode(t, add_special_tokens=False).ids for t in (text, text[:4], text[4:])]
    assert ids[0] != ids[1] + ids[2]
    assert qwen.may_span(text[:4], text[4:])
    assert qwen.may_span("你", "好")  # 你好 is one Qwen token
    assert not qwen.may_span("\n", "你")


def test_joined_pieces_equal_each_piece_alone(any_tokenizer, real_data_dir):
    """``encode_cont`` through ``_encode_joined`` (byte-level tokenizers) equals tokenizing every piece on
    its own after the EOS, on real texts cut at random, with the EOS text inside pieces (a reply's end)
    and empty pieces."""
    from utils.encode import _plan

    plan = _plan(any_tokenizer)
    texts = real_texts(real_data_dir, 60)
    rng = random.Random(1)
    pieces = []
    for text, cut in cuts_of(texts, 2):
        pieces += [text[:cut], text[cut:] + (plan.eos if rng.random() < 0.5 else "")]
    pieces += ["", plan.eos, plan.eos + plan.eos, " ", "\n"]
    rng.shuffle(pieces)
    alone = plan.encode_cont(pieces, plan.method)  # an explicit method: one by one
    assert plan.encode_cont(pieces) == alone
    assert plan.joinable == (type(any_tokenizer.backend_tokenizer.pre_tokenizer).__name__ != "Metaspace")


def test_joined_pieces_fall_back_when_an_added_token_swallows_the_eos_text():
    """An added token whose text contains the EOS text (``[</s>]``) hides that EOS: the EOS ids no longer
    match the count of EOS texts, and the chunk is tokenized piece by piece -- same ids as alone."""
    from transformers import AutoTokenizer

    from utils.encode import _plan
    from utils.models import load_tokenizer

    tok = AutoTokenizer.from_pretrained(load_tokenizer().name_or_path)
    tok.add_special_tokens({"additional_special_tokens": ["[</s>]"]})
    plan = _plan(tok)
    assert plan.joinable
    pieces = ["a [</s>] b", " reply</s>", "USER: x", "[</s>]"]
    want = [tok.backend_tokenizer.encode(plan.eos + p, add_special_tokens=False).ids[1:] for p in pieces]
    assert plan.encode_cont(pieces) == want
    assert want[0] != tok.backend_tokenizer.encode("a ", add_special_tokens=False).ids  # the token is there


@pytest.mark.parametrize("name", BYTE_LEVEL)
def test_byte_level_reference_tokenizers_use_the_shortcut(name):
    from conftest import load_any_tokenizer

    assert PairCheck(load_any_tokenizer(name).backend_tokenizer).usable


def test_nfc_inert_characters_never_compose_or_reorder():
    """Every character :data:`utils.spans.NFC_INERT` declares inert has combining class 0, no canonical
    decomposition and is never the second half of a canonical composition (from the Unicode database):
    so NFC of ``left + right`` is NFC(left) + NFC(right) when the characters at the cut are inert."""
    import unicodedata

    from utils.spans import NFC_INERT, nfc_inert

    second = set()
    for code in range(0x110000):
        d = unicodedata.decomposition(chr(code))
        if d and not d.startswith("<"):
            parts = d.split()
            if len(parts) == 2:
                second.add(int(parts[1], 16))
    second |= set(range(0x1161, 0x1176)) | set(range(0x11A8, 0x11C3))  # Hangul vowels and finals (algorithmic)
    for lo, hi in NFC_INERT:
        for code in range(lo, hi + 1):
            ch = chr(code)
            assert nfc_inert(ch)
            assert unicodedata.combining(ch) == 0, hex(code)
            assert unicodedata.normalize("NFD", ch) == ch == unicodedata.normalize("NFC", ch), hex(code)
            assert code not in second, hex(code)
    assert not nfc_inert("\u0301") and not nfc_inert("\u302a") and not nfc_inert("\u3099") and not nfc_inert("é")


def test_no_shortcut_where_the_argument_fails():
    """A pre-tokenizer that removes characters (then a token can join characters that are not neighbours in
    the text), a normalizer other than none/NFC, or Metaspace: every cut with text on both sides may span."""
    import json

    from tokenizers import Tokenizer

    from utils.models import load_tokenizer

    spec = json.loads(load_tokenizer().backend_tokenizer.to_str())
    assert PairCheck(Tokenizer.from_str(json.dumps(spec))).usable
    removed = json.loads(json.dumps(spec))
    removed["pre_tokenizer"]["pretokenizers"].insert(0, {"type": "Split", "pattern": {"String": "-"},
                                                         "behavior": "Removed", "invert": False})
    lowered = json.loads(json.dumps(spec))
    lowered["normalizer"] = {"type": "Lowercase"}
    for changed in (removed, lowered):
        check = PairCheck(Tokenizer.from_str(json.dumps(changed)))
        assert not check.usable
        assert check.may_span("ASSISTANT:", " Hello") and not check.may_span("", "Hello")


def test_byte_level_alphabet_maps_bytes_as_the_pre_tokenizer_does(real_data_dir):
    """Every byte UTF-8 text can hold has its own alphabet character, and mapping a real text's bytes through
    the table gives exactly what the ByteLevel pre-tokenizer writes for it."""
    from tokenizers.pre_tokenizers import ByteLevel

    from utils.spans import byte_level_alphabet

    alphabet = byte_level_alphabet()
    char_of = {b: c for c, b in alphabet.items()}
    assert len(char_of) == len(alphabet) == 256 - len([0xC0, 0xC1, *range(0xF5, 0x100)])  # one-to-one
    level = ByteLevel(add_prefix_space=False, use_regex=False)
    for text in real_texts(real_data_dir, 40) + ["😀 ok\t\x00é", "\U0010ffff"]:
        want = "".join(piece for piece, _ in level.pre_tokenize_str(text))
        assert "".join(char_of[b] for b in text.encode("utf-8")) == want


@pytest.mark.parametrize("name", BYTE_LEVEL)
def test_pair_table_is_a_substring_search_of_the_vocabulary(name):
    """``may_span`` answers from a table of byte pairs; the definition is "some vocabulary string holds the two
    alphabet characters side by side, or an added token holds the two characters": both agree on every pair
    of a sample of ASCII, CJK, punctuation, emoji and whitespace characters."""
    from tokenizers.pre_tokenizers import ByteLevel

    from conftest import load_any_tokenizer

    backend = load_any_tokenizer(name).backend_tokenizer
    check = PairCheck(backend)
    pool = "\x00".join(backend.get_vocab(with_added_tokens=False))
    in_pool = {pool[i:i + 2] for i in range(len(pool) - 1)}  # every two characters side by side in the pool
    level = ByteLevel(add_prefix_space=False, use_regex=False)
    rng = random.Random(1)
    chars = [chr(c) for c in range(32, 127)] + list("\n\t 你好。，！？「」😀éü") + [
        chr(rng.randrange(0x4E00, 0xA000)) for _ in range(20)]
    found = 0
    for a in chars:
        for b in chars:
            mapped = "".join(piece for piece, _ in level.pre_tokenize_str(a + b))
            n = len(a.encode("utf-8"))
            want = mapped[n - 1:n + 1] in in_pool or (a + b) in check._added
            pair = a.encode("utf-8")[-1] << 8 | b.encode("utf-8")[0]
            got = bool(check._pair_table()[pair]) or (a + b) in check._added
            assert got == want, (a, b)
            found += want
    assert 0 < found < len(chars) ** 2
