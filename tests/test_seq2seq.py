"""The tiny encoder-decoder (T5): its task, its data split, the committed checkpoint's quality."""

from __future__ import annotations

import json

import pytest

from utils.models import seq2seq as s2s

# Written by hand (Chinese grammar: 两 before a measure word, the noun's measure word, colour + 的
# before the size; English: size before colour, plural unless one, "fish" unchanged).
TRANSLATIONS = {
    s2s.Phrase(0, 0, 0, 0): ("一只猫", "one cat"),
    s2s.Phrase(1, 1, 1, 7): ("两辆红色的大车", "two big red cars"),
    s2s.Phrase(2, 2, 0, 3): ("三条小鱼", "three small fish"),
    s2s.Phrase(9, 0, 6, 4): ("十个黑色的苹果", "ten black apples"),
    s2s.Phrase(4, 1, 3, 6): ("五本蓝色的大书", "five big blue books"),
    s2s.Phrase(0, 2, 2, 9): ("一朵黄色的小花", "one small yellow flower"),
    s2s.Phrase(6, 0, 4, 8): ("七把绿色的椅子", "seven green chairs"),
    s2s.Phrase(7, 0, 5, 5): ("八个白色的杯子", "eight white cups"),
}


@pytest.mark.parametrize("phrase, texts", TRANSLATIONS.items())
def test_phrases_render_in_both_languages(phrase, texts):
    zh, en = texts
    assert (phrase.zh(), phrase.en()) == (zh, en)
    assert s2s.example_for(phrase, "zh_to_en") == {"input": "翻译成英文：" + zh, "target": en}
    assert s2s.example_for(phrase, "en_to_zh") == {"input": "翻译成中文：" + en, "target": zh}


def test_every_phrase_is_distinct_in_both_languages():
    phrases = s2s.all_phrases()
    assert len(phrases) == 10 * 3 * 7 * 10
    assert len({p.zh() for p in phrases}) == len({p.en() for p in phrases}) == len(phrases)
    with pytest.raises(ValueError, match="unknown task"):
        s2s.example_for(phrases[0], "zh_to_fr")


def test_splits_are_disjoint_and_cover_all_phrases():
    train, test = set(s2s.split_phrases("train")), set(s2s.split_phrases("test"))
    assert not train & test
    assert train | test == set(s2s.all_phrases())
    assert 0.10 < len(test) / len(s2s.all_phrases()) < 0.20
    # every word of the task is seen in training (held out are combinations, not words)
    for field, values in (("count", s2s.COUNTS), ("size", s2s.SIZES), ("color", s2s.COLORS),
                          ("noun", s2s.NOUNS)):
        assert {getattr(p, field) for p in train} == set(range(len(values)))


_BY_TEXT = {text: p for p in s2s.all_phrases() for text in (p.zh(), p.en())}


def _phrase(example: dict) -> s2s.Phrase:
    return _BY_TEXT[example["input"].split("：", 1)[1]]


def test_make_examples_is_deterministic_and_respects_the_split():
    a = s2s.make_examples("train", 500, seed=3)
    assert a == s2s.make_examples("train", 500, seed=3)
    assert a != s2s.make_examples("train", 500, seed=4)
    held_out = set(s2s.split_phrases("test"))
    assert not {_phrase(e) for e in a} & held_out
    for e in a:  # targets are the true translations
        p = _phrase(e)
        assert e["target"] == (p.en() if e["input"].startswith(s2s.TO_ENGLISH) else p.zh())

    test = s2s.held_out_examples()
    phrases = [_phrase(e) for e in test]
    assert len(set(phrases)) == len(test) == s2s.EVAL_SIZE  # distinct held-out phrases
    assert set(phrases) <= held_out
    assert sum(e["input"].startswith(s2s.TO_ENGLISH) for e in test) == len(test) // 2
    with pytest.raises(ValueError, match="split"):
        s2s.make_examples("dev", 3)
    with pytest.raises(ValueError, match="distinct held-out"):
        s2s.make_examples("test", len(held_out) + 1)


def test_training_features_match_t5_conventions():
    from utils.models import load_tokenizer

    tok = load_tokenizer()
    for task, target in (("zh_to_en", "two big red cars"), ("en_to_zh", "两辆红色的大车")):
        ex = s2s.example_for(s2s.Phrase(1, 1, 1, 7), task)
        [feat] = s2s.encode_examples([ex], tok)
        assert feat["input_ids"] == tok(ex["input"])["input_ids"]  # what translate() feeds
        assert feat["attention_mask"] == [1] * len(feat["input_ids"])
        assert feat["labels"][-1] == tok.eos_token_id and tok.bos_token_id not in feat["labels"]
        assert feat["labels"][:-1] == tok(target, add_special_tokens=False)["input_ids"]
        assert tok.decode(feat["labels"][:-1]) == target


# ---------------------------------------------------------------- the committed checkpoint

@pytest.fixture(scope="module")
def shipped():
    from utils.models import load_tokenizer

    if not (s2s.ASSET_DIR / "model.safetensors").is_file():
        pytest.fail(f"{s2s.ASSET_DIR} has no model.safetensors: run `python -m utils.models build --only seq2seq`")
    return s2s.load_seq2seq_lm(), load_tokenizer()


def test_checkpoint_is_safetensors_only_and_small():
    files = {p.name for p in s2s.ASSET_DIR.iterdir()}
    assert "model.safetensors" in files and "config.json" in files
    assert not {f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))}
    size = sum(p.stat().st_size for p in s2s.ASSET_DIR.iterdir())
    assert size < 5_000_000


def test_checkpoint_loads_offline_with_explicit_special_ids(shipped, monkeypatch):
    model, tok = shipped
    cfg = model.config
    assert cfg.model_type == "t5" and cfg.is_encoder_decoder
    assert cfg.decoder_start_token_id == cfg.pad_token_id == tok.pad_token_id
    assert cfg.eos_token_id == tok.eos_token_id
    assert tok.pad_token_id != tok.eos_token_id
    assert not model.training
    assert s2s.build_info()["tokenizer_fingerprint"] == s2s.tokenizer_fingerprint(tok)


def test_checkpoint_solves_held_out_inputs(shipped):
    model, tok = shipped
    acc = s2s.held_out_accuracy(model, tok, by_task=True)
    assert acc["all"] >= s2s.ACCURACY_BAR, acc
    assert min(acc["zh_to_en"], acc["en_to_zh"]) >= s2s.ACCURACY_BAR - 0.05, acc
    # the recorded number is the real one (same fixed held-out set)
    assert acc["all"] == pytest.approx(s2s.build_info()["held_out_accuracy"])


def test_checkpoint_never_trained_on_held_out_phrases():
    info = s2s.build_info()
    trained = s2s.make_examples("train", info["steps"] * info["batch_size"], info["seed"])
    assert not {_phrase(e) for e in trained} & set(s2s.split_phrases("test"))


def test_translate_maps_held_out_inputs_to_outputs(shipped):
    model, tok = shipped
    phrase = s2s.split_phrases("test")[0]
    assert s2s.translate(model, tok, "翻译成英文：" + phrase.zh()) == [phrase.en()]
    assert s2s.translate(model, tok, ["翻译成中文：" + phrase.en(), "翻译成英文：" + phrase.zh()]) == [
        phrase.zh(), phrase.en()]


def test_load_reports_a_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="build --only seq2seq"):
        s2s.load_seq2seq_lm(tmp_path)


def test_build_is_deterministic_and_writes_safetensors(tmp_path):
    from safetensors.torch import load_file

    from utils.models import load_tokenizer

    tok = load_tokenizer()
    runs = []
    for name in ("a", "b"):
        metrics = s2s.build(tmp_path / name, tokenizer=tok, steps=3, batch_size=8, warmup=1,
                            eval_n=4, progress=False)
        assert json.loads((tmp_path / name / s2s.BUILD_INFO).read_text())["steps"] == 3
        assert metrics["parameters"] > 0 and metrics["seconds"] >= 0
        runs.append(load_file(tmp_path / name / "model.safetensors"))
    assert runs[0].keys() == runs[1].keys()
    assert all((runs[0][k] == runs[1][k]).all() for k in runs[0])
    assert not list(tmp_path.glob(".seq2seq_tmp_*"))  # no half-written folder left behind


def test_load_refuses_a_checkpoint_trained_with_another_tokenizer(tmp_path):
    import shutil

    ckpt = tmp_path / "seq2seq_lm"
    shutil.copytree(s2s.ASSET_DIR, ckpt)
    info = json.loads((ckpt / s2s.BUILD_INFO).read_text())
    info["tokenizer_fingerprint"] = "0" * 16
    (ckpt / s2s.BUILD_INFO).write_text(json.dumps(info))
    with pytest.raises(RuntimeError, match="another version of the course tokenizer"):
        s2s.load_seq2seq_lm(ckpt)
    assert s2s.load_seq2seq_lm(ckpt, check_tokenizer=False).config.model_type == "t5"
