"""utils.curate: duplicates, near-duplicates, ROUGE-L novelty, contamination, quality flags, mixing, and
``python -m utils curate`` -- each checked against planted cases written here and hand computations."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest

from conftest import require_shared
from utils.cli import main
from utils.curate import (curate, exact_duplicates, find_contamination, jaccard, mix, mix_counts, near_duplicates,
                          novelty_filter, quality_flags, quality_flags_record, record_text, rouge_l, shingles,
                          shingle_hashes, tokens)

# ---- planted near-duplicates (written for this test) ---------------------------------------------

ZH_BASES = [
    "长城是中国古代修建的军事防御工程，东起山海关，西到嘉峪关，全长两万多千米，是世界上最著名的建筑之一。",
    "光合作用是绿色植物利用阳光，把二氧化碳和水转变成有机物，同时释放出氧气的过程，它为地球上的生命提供能量。",
    "学习一门新的编程语言时，最好先写一些小程序，比如计算器或者待办清单，在动手的过程中熟悉它的语法和常用库。",
    "秋天到了，树叶慢慢变黄，一阵风吹过，落叶在空中打着旋儿飘下来，公园里的小路铺上了一层金色的地毯。",
    "睡眠对健康非常重要，成年人每天最好保证七到八个小时的睡眠，睡前少看手机，可以让人更快地入睡。",
    "北京的冬天寒冷干燥，夏天炎热多雨，春秋两季比较短，最适合旅游的时间是九月到十月的秋天。",
]
EN_BASES = [
    "The Great Wall is a series of fortifications built across northern China over many centuries to protect against invasions.",
    "Photosynthesis is the process by which green plants use sunlight to turn carbon dioxide and water into sugar and oxygen.",
    "When you learn a new programming language, start with small projects such as a calculator or a to-do list application.",
    "Regular exercise improves heart health, strengthens muscles, and can help people sleep better and feel less stressed.",
    "A good cup of tea needs fresh water just off the boil, the right amount of leaves, and a few minutes of patience.",
    "Rivers carry sediment from the mountains to the sea, building deltas where the water slows down and drops its load.",
]
DISTINCT = [
    "请把下面这句话翻译成英文：我今天很高兴。",
    "列出三种常见的水果，并说明它们的颜色。",
    "解释一下什么是机器学习中的过拟合现象。",
    "Name three planets in the solar system and one fact about each.",
    "Write a short poem about the ocean at night.",
    "What is the difference between a list and a tuple in Python?",
    "用三句话描述你最喜欢的季节。",
    "给我推荐两本适合初学者的历史书。",
    "计算从一加到一百的和，并写出步骤。",
    "Summarize the plot of a famous fairy tale in two sentences.",
    "Explain why the sky looks blue during the day.",
    "Suggest a name for a small bakery that sells bread and cakes.",
]


def _edits(text: str) -> list[str]:
    """Two near copies: the last character changed (one shingle of ~50-120 differs), and a few words
    appended (3-8 new shingles)."""
    if "，" in text:
        return [text[:-1] + "！", text + "对吧？"]
    return [text[:-1] + "!", text + " Really."]


def planted() -> tuple[list[str], list[set[int]]]:
    """Texts and the planted clusters (a base and its two near copies), with distinct texts between."""
    texts: list[str] = []
    clusters: list[set[int]] = []
    for k, base in enumerate(ZH_BASES + EN_BASES):
        members = {len(texts)}
        texts.append(base)
        texts.append(DISTINCT[k])
        for copy in _edits(base):
            members.add(len(texts))
            texts.append(copy)
        clusters.append(members)
    return texts, clusters


def test_the_planted_copies_are_near_duplicates_by_exact_jaccard_and_the_rest_are_not():
    texts, clusters = planted()
    for members in clusters:
        for a, b in itertools.combinations(sorted(members), 2):
            assert jaccard(texts[a], texts[b]) >= 0.85, (texts[a], texts[b])
    planted_pairs = {p for m in clusters for p in itertools.combinations(sorted(m), 2)}
    for a, b in itertools.combinations(range(len(texts)), 2):
        if (a, b) not in planted_pairs:
            assert jaccard(texts[a], texts[b]) < 0.3


def test_near_duplicates_finds_the_planted_clusters_with_measured_precision_and_recall():
    texts, clusters = planted()
    result = near_duplicates(texts, threshold=0.7)
    truth = {(a, b) for a, b in itertools.combinations(range(len(texts)), 2) if jaccard(texts[a], texts[b]) >= 0.7}
    found = {(a, b) for a, b, _ in result.pairs}
    precision = len(found & truth) / len(found)
    recall = len(found & truth) / len(truth)
    assert len(truth) == 3 * len(clusters)
    assert precision == 1.0 and recall == 1.0, (precision, recall)
    assert [set(c) for c in result.clusters] == clusters
    assert result.removed == sorted(i for c in clusters for i in sorted(c)[1:])
    assert set(result.keep) == set(range(len(texts))) - set(result.removed)
    for a, b, estimate in result.pairs:  # the estimate verified each pair, and it is close to the truth
        assert estimate >= 0.7 and abs(estimate - jaccard(texts[a], texts[b])) < 0.15


def test_near_duplicates_chinese_needs_character_shingles():
    a, b = ZH_BASES[0], ZH_BASES[0].replace("，", "、", 1)
    assert len(tokens(a)) > 40 and " " not in a  # no spaces: word shingles split on spaces would be one token
    assert jaccard(a, b) > 0.8
    assert near_duplicates([a, b, ZH_BASES[1]]).clusters == [[0, 1]]


def test_all_pairs_false_gives_the_same_clusters_with_a_spanning_set_of_pairs():
    texts, clusters = planted()
    full, lean = near_duplicates(texts), near_duplicates(texts, all_pairs=False)
    assert full.clusters == lean.clusters and full.removed == lean.removed
    assert len(lean.pairs) == sum(len(c) - 1 for c in clusters) < len(full.pairs)


def test_exact_duplicates_ignore_case_width_and_whitespace_only():
    texts = ["Hello World", "hello   world", "ＨＥＬＬＯ world", "Hello World!", "你好，世界", "你好,世界"]
    assert exact_duplicates(texts) == [[0, 1, 2], [4, 5]]


def test_shingle_hashes_have_one_distinct_hash_per_distinct_shingle():
    texts, _ = planted()
    for text, hashes in zip(texts, shingle_hashes(texts)):
        assert len(hashes) == len(set(hashes)) == len(shingles(text))
    # the same shingle gets the same hash in different texts and batches
    h1 = set(next(shingle_hashes(["abcdefg"])))
    h2 = set(list(shingle_hashes(["xx", "zzabcdefzz"], batch_size=1))[1])
    assert len(h1 & h2) == len(shingles("abcdefg") & shingles("zzabcdefzz")) == 2


def test_record_text_covers_every_form():
    assert record_text({"instruction": "A", "input": "", "output": "B"}) == "A\nB"
    sharegpt = {"conversations": [{"from": "human", "value": "问"}, {"from": "gpt", "value": "答"},
                                  {"from": "human", "value": "再问"}, {"from": "gpt", "value": "再答"}]}
    assert record_text(sharegpt) == "问\n答\n再问\n再答"
    messages = {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"},
                             {"role": "assistant", "content": "A"}]}
    assert record_text(messages) == "U\nA" and record_text(messages, system=True) == "S\nU\nA"
    assert record_text({"prompt": "P", "completion": "C"}) == "P\nC"


def test_near_duplicates_on_real_alpaca_data():
    """The real LLaMA-Factory Alpaca demos (1,999 records) plus 50 planted copies with three characters
    changed: precision (reported pairs whose exact Jaccard is >= 0.7) and recall (planted copies with exact
    Jaccard >= 0.7 that are found) both at least 0.9."""
    folder = require_shared("real_data")
    records = json.loads((folder / "llamafactory_alpaca_en_demo.json").read_text(encoding="utf-8"))
    records += json.loads((folder / "llamafactory_alpaca_zh_demo.json").read_text(encoding="utf-8"))
    texts = [record_text(r) for r in records]
    rng = random.Random(0)
    planted_from = rng.sample(range(len(texts)), 50)
    for i in planted_from:
        text = list(texts[i])
        for _ in range(3):
            text[rng.randrange(len(text))] = "#"
        texts.append("".join(text))
    result = near_duplicates(texts, threshold=0.7)
    exact = [jaccard(texts[a], texts[b]) for a, b, _ in result.pairs]
    precision = sum(j >= 0.7 for j in exact) / len(exact)
    truth = [(i, len(records) + k) for k, i in enumerate(planted_from)
             if jaccard(texts[i], texts[len(records) + k]) >= 0.7]
    found = {(a, b) for a, b, _ in result.pairs}
    recall = sum(pair in found for pair in truth) / len(truth)
    assert len(truth) >= 40 and precision >= 0.9 and recall >= 0.9, (len(truth), precision, recall)
    assert min(exact) >= 0.5  # no gross false positive


# ---- ROUGE-L --------------------------------------------------------------------------------------

def lcs(a: list, b: list) -> int:
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
    return table[-1][-1]


def test_rouge_l_on_chinese_counts_characters():
    # 我喜欢吃苹果 vs 我不喜欢吃香蕉: the LCS is 我喜欢吃 (4 characters), found by hand
    a, b = "我喜欢吃苹果", "我不喜欢吃香蕉"
    assert lcs(list(a), list(b)) == 4
    p, r = 4 / 7, 4 / 6
    assert rouge_l(a, b) == pytest.approx(2 * p * r / (p + r))
    assert rouge_l(a, b) == pytest.approx(8 / 13)
    # rouge-score's default tokenizer drops Chinese: every Chinese pair would score 0
    from rouge_score import rouge_scorer

    assert rouge_scorer.RougeScorer(["rougeL"]).score(a, a)["rougeL"].fmeasure == 0


def test_rouge_l_on_english_counts_words_and_mixed_text_both():
    assert rouge_l("The cat sat on the mat", "the cat lay on the mat") == pytest.approx(5 / 6)
    # 用 python 写 排 序: tokens 用 python 写 排 序 vs 用 java 写 排 序 -> LCS 4 of 5
    assert rouge_l("用Python写排序", "用Java写排序") == pytest.approx(0.8)


def test_novelty_filter_compares_with_seeds_and_earlier_kept_candidates_only():
    seeds = ["写一首关于春天的诗"]
    candidates = [
        "写一首关于春天的诗歌",  # 0: too close to the seed
        "解释什么是光合作用",  # 1: new, kept
        "解释一下什么是光合作用",  # 2: too close to 1 (kept)
        "解释一下什么是光合作用吧",  # 3: close to 2, but 2 was removed; still close to 1 -> removed by 1
        "列出三种水果",  # 4: kept
    ]
    result = novelty_filter(candidates, seeds=seeds, threshold=0.7)
    assert result.kept == [1, 4]
    assert [(i, partner) for i, partner, _ in result.removed] == [(0, "seed:0"), (2, 1), (3, 1)]
    for i, partner, score in result.removed:
        other = seeds[0] if partner == "seed:0" else candidates[partner]
        assert score == pytest.approx(rouge_l(other, candidates[i])) and score > 0.7


def test_novelty_filter_order_decides_which_of_two_similar_candidates_stays():
    a, b = "Give three tips for staying healthy.", "Give three tips for staying healthy today."
    assert novelty_filter([a, b]).kept == [0]
    assert novelty_filter([b, a]).kept == [0]
    assert novelty_filter([a, b], threshold=0.95).kept == [0, 1]  # ROUGE-L 0.93 is below 0.95



def test_novelty_filter_keeps_a_score_of_exactly_the_threshold_as_self_instruct_does():
    # Self-Instruct's bootstrap_instructions.py and Alpaca's generate_instruction.py: `if max(rouge_scores) > 0.7: continue`
    from rouge_score import rouge_scorer

    a = "alpha bravo charlie delta echo foxtrot golf hotel india juliet"
    b = "alpha bravo charlie delta echo foxtrot golf kilo lima mike"  # LCS 7 of 10 words each: P = R = F = 0.7
    assert rouge_scorer.RougeScorer(["rougeL"]).score(a, b)["rougeL"].fmeasure == 0.7
    assert novelty_filter([a, b], threshold=0.7).kept == [0, 1]
    assert novelty_filter([a, b], threshold=0.69).kept == [0]
    assert novelty_filter([b], seeds=[a], threshold=0.7).removed == []

# ---- contamination --------------------------------------------------------------------------------

EVAL = ["What is the capital of Greece?", "Which river is the longest in Africa and how long is it?",
        "法国的首都是哪一座城市？", "一年有多少个星期，多少天？"]


def test_contamination_catches_a_planted_leak_and_nothing_in_a_clean_set():
    clean = ["Tell me about the history of Athens.", "What is the capital of a country?",
             "非洲最长的河流流经哪些国家？", "法国有哪些著名的城市？", "Rivers are long."]
    assert find_contamination(clean, EVAL) == []
    leaked = clean + ["Question: which river is the longest in Africa and how long is it? Answer: the Nile.",
                      "请回答：法国的首都是哪一座城市？答案是巴黎。"]
    hits = find_contamination(leaked, EVAL)
    assert [(h.index, h.eval_index) for h in hits] == [(5, 1), (6, 2)]
    assert hits[0].ngram == "which river is the longest in africa and how long"  # the first shared 10 words
    assert hits[1].ngram == "法国的首都是哪一座城"  # 10 characters


def test_contamination_short_eval_texts_match_whole():
    # 6 tokens < n = 10: the whole question must appear in a row
    assert [h.index for h in find_contamination(["Q: what is the capital of greece", "greece capital"],
                                                ["What is the capital of Greece?"])] == [0]


def test_contamination_default_n_on_chapter_06_train_and_held_out_sets():
    """The docstring's measurement: chapter 06's training records and held-out questions + answers are
    disjoint by construction; 8-grams still match their shared template, 10-grams do not; a held-out
    question planted in a training record is caught."""
    from utils.models.sft_data import load_heldout, load_training_records

    train = [record_text(r) for r in load_training_records()]
    held = [h["question"] + "\n" + h["answer"] for h in load_heldout()]
    assert len({h.index for h in find_contamination(train, held, n=8)}) == 200
    assert find_contamination(train, held) == []
    leak = load_heldout()[5]
    hits = find_contamination(train + [f"{leak['question']} {leak['answer']}"], held)
    assert [(h.index, h.eval_index) for h in hits] == [(len(train), 5)]


# ---- quality --------------------------------------------------------------------------------------

@pytest.mark.parametrize("flag, positive, negative", [
    ("too_short", "好的", "北京是中国的首都。"),
    ("too_long", "很长的回答。" * 2000, "一个长度正常的回答。"),
    ("repetition", "我很喜欢这本书。\n" * 5, "第一行。\n第二行。\n第三行。"),
    ("repetition", "The model loops here and repeats the same words. " * 5,
     "A normal reply with enough words to be checked for repeated runs of ten tokens in a row."),
    ("refusal", "作为一个AI语言模型，我不能回答这个问题。", "我来回答这个问题：答案是42。"),
    ("refusal", "I'm sorry, but I cannot help with that request.", "Sure, here is how to do it."),
])
def test_each_quality_flag_fires_on_a_positive_case_only(flag, positive, negative):
    assert flag in quality_flags(positive)
    assert quality_flags(negative) == []


def test_language_mismatch_between_instruction_and_reply():
    assert quality_flags_record({"instruction": "介绍一下长城。", "output": "The Great Wall is very long."}) == \
        ["language_mismatch"]
    assert quality_flags_record({"instruction": "介绍一下长城。", "output": "长城很长，有两万多千米。"}) == []
    assert quality_flags_record({"instruction": "Describe the Great Wall.", "output": "长城很长，有两万多千米。"}) == \
        ["language_mismatch"]
    # translation tasks and code replies are not mismatches
    assert quality_flags_record({"instruction": "把这句话翻译成英文：我很高兴。", "output": "I am very happy."}) == []
    assert quality_flags_record({"instruction": "用Python写一个函数，返回两个数的和。",
                                 "output": "```python\ndef add(a, b):\n    return a + b\n```"}) == []
    assert quality_flags("Hello there.", lang="zh") == ["language_mismatch"]
    assert quality_flags("你好，很高兴见到你。", lang="zh") == []


# ---- mixing ---------------------------------------------------------------------------------------

def test_mix_follows_the_ratios_without_replacement():
    sources = {"zh": [f"zh{i}" for i in range(100)], "en": [f"en{i}" for i in range(50)], "code": ["c"] * 10}
    mixed = mix(sources, {"zh": 0.5, "en": 0.3, "code": 0.2}, total=50, seed=1)
    names = [name for name, _ in mixed]
    assert (names.count("zh"), names.count("en"), names.count("code")) == (25, 15, 10)
    zh = [r for n, r in mixed if n == "zh"]
    assert len(set(zh)) == 25  # no record drawn twice
    assert mix(sources, {"zh": 0.5, "en": 0.3, "code": 0.2}, total=50, seed=1) == mixed  # reproducible
    assert mix_counts({"a": 1, "b": 2}, total=10) == {"a": 3, "b": 7}


def test_mix_says_when_a_source_is_too_small():
    sources = {"zh": list(range(100)), "en": list(range(10))}
    with pytest.raises(ValueError, match=r"source 'en': 30 records asked .* only 10 available"):
        mix(sources, {"zh": 0.7, "en": 0.3}, total=100)
    mixed = mix(sources, {"zh": 0.7, "en": 0.3}, total=100, replace=True)
    en = sorted(r for n, r in mixed if n == "en")
    assert en == sorted(list(range(10)) * 3)  # every record three times: as even as possible


# ---- the pipeline ---------------------------------------------------------------------------------

def test_curate_applies_the_filters_in_order_and_reports_each_removal():
    texts, clusters = planted()
    records = [{"instruction": t[:12], "input": "", "output": t} for t in texts]
    records.append(dict(records[0]))  # exact duplicate of 0
    records.append({"instruction": "介绍一下长城", "output": "好的"})  # too short
    records.append({"instruction": "Q", "output": "Q: " + EVAL[1] + " A: the Nile, about 6,650 km."})  # leaked
    result = curate(records, decontaminate=EVAL, locations=[f"d.jsonl:{i + 1}" for i in range(len(records))])
    n = len(texts)
    by_index = {r["index"]: r for r in result.removed}
    assert by_index[n]["filter"] == "exact" and by_index[n]["partner"] == 0
    assert by_index[n]["partner_location"] == "d.jsonl:1"
    assert by_index[n + 1]["filter"] == "quality" and "too_short" in by_index[n + 1]["reason"]
    assert by_index[n + 2]["filter"] == "contamination" and by_index[n + 2]["partner"] == "eval:1"
    near = {i for i, r in by_index.items() if r["filter"] == "near_dup"}
    assert near == {i for c in clusters for i in sorted(c)[1:]}
    assert result.counts == {"records": n + 3, "exact": 1, "quality": 1, "contamination": 1,
                             "near_dup": len(near), "novelty": 0, "kept": n + 3 - 3 - len(near)}
    assert result.kept == [records[i] for i in result.kept_indices]
    frame = result.report()
    assert list(frame.columns) == ["index", "location", "filter", "reason", "partner", "partner_location"]
    assert len(frame) == len(result.removed)
    assert json.loads(json.dumps(result.as_dict()))["counts"] == result.counts


# ---- the command line -----------------------------------------------------------------------------

def _records_for_cli() -> list[dict]:
    texts, _ = planted()
    records = [{"instruction": f"问题 {i}" if tokens(t)[0] >= "\u4e00" else f"Question {i}", "input": "", "output": t}
               for i, t in enumerate(texts)]
    records.insert(3, dict(records[0]))  # an exact duplicate
    records.append({"instruction": "Say hi", "output": "hi"})  # too short
    return records


def _run(argv, capsys):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_cli_jsonl_round_trip_keeps_lines_byte_for_byte(tmp_path, capsys):
    records = _records_for_cli()
    data = tmp_path / "data.jsonl"
    lines = [json.dumps(r, ensure_ascii=i % 2 == 0) for i, r in enumerate(records)]  # both escapings
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "kept.jsonl"
    status, stdout, err = _run(["curate", data, "--out", out], capsys)
    assert status == 0, err
    report = json.loads((tmp_path / "kept.report.json").read_text(encoding="utf-8"))
    removed = {r["index"] for r in report["removed"]}
    assert out.read_text(encoding="utf-8").splitlines() == [l for i, l in enumerate(lines) if i not in removed]
    assert report["counts"]["exact"] == 1 and report["counts"]["quality"] == 1
    assert report["counts"]["kept"] == len(records) - len(removed)
    exact = next(r for r in report["removed"] if r["filter"] == "exact")
    assert (exact["location"], exact["partner_location"]) == (f"{data}:4", f"{data}:1")
    assert all(r["location"].startswith(f"{data}:") for r in report["removed"])
    assert "kept" in stdout


def test_cli_json_array_in_json_array_out(tmp_path, capsys):
    records = _records_for_cli()
    data = tmp_path / "data.json"
    data.write_text(json.dumps(records, ensure_ascii=False, indent=2), encoding="utf-8")
    out = tmp_path / "kept.json"
    status, _, err = _run(["curate", data, "--out", out, "--near-dup", "off"], capsys)
    assert status == 0, err
    kept = json.loads(out.read_text(encoding="utf-8"))
    report = json.loads((tmp_path / "kept.report.json").read_text(encoding="utf-8"))
    removed = {r["index"] for r in report["removed"]}
    assert kept == [r for i, r in enumerate(records) if i not in removed]
    assert report["counts"]["near_dup"] == 0 and report["settings"]["near_dup"] is None
    assert {r["location"] for r in report["removed"]} == {f"{data}:[3]", f"{data}:[{len(records) - 1}]"}


def test_cli_several_inputs_write_a_directory_and_dedup_across_files(tmp_path, capsys):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text(json.dumps({"instruction": "介绍长城", "output": ZH_BASES[0]}, ensure_ascii=False) + "\n",
                 encoding="utf-8")
    b.write_text(json.dumps({"conversations": [{"from": "human", "value": "介绍长城"},
                                               {"from": "gpt", "value": ZH_BASES[0]}]}, ensure_ascii=False) + "\n"
                 + json.dumps({"conversations": [{"from": "human", "value": "Tea?"},
                                                 {"from": "gpt", "value": EN_BASES[4]}]}) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    status, _, err = _run(["curate", a, b, "--out", out], capsys)
    assert status == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["a.jsonl", "b.jsonl", "report.json"]
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert [(r["location"], r["filter"], r["partner_location"]) for r in report["removed"]] == \
        [(f"{b}:1", "exact", f"{a}:1")]
    assert len((out / "b.jsonl").read_text().splitlines()) == 1


def test_cli_bad_input_names_file_and_line_and_writes_nothing(tmp_path, capsys):
    data = tmp_path / "data.jsonl"
    data.write_text('{"instruction": "A", "output": "A long enough answer."}\n{"instruction": "B"}\n'
                    '{"instruction": "C", "output": "Another answer here."\n', encoding="utf-8")
    out = tmp_path / "kept.jsonl"
    status, _, err = _run(["curate", data, "--out", out], capsys)
    assert status == 1
    assert f"{data}:2: output: missing" in err
    assert f"{data}:3: record: not valid JSON" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.jsonl"]  # nothing at OUT, no temp files



def test_cli_refuses_a_second_kind_or_format_in_a_file_as_prepare_does(tmp_path, capsys):
    from utils.formats import validate_file

    data = tmp_path / "data.jsonl"
    data.write_text('{"instruction": "A", "output": "A long enough answer."}\n'  # alpaca, sft
                    '{"prompt": "B", "chosen": "Good answer.", "rejected": "Bad one."}\n'  # another kind
                    '{"conversations": [{"from": "human", "value": "C"}, {"from": "gpt", "value": "D."}]}\n',  # another format
                    encoding="utf-8")
    status, _, err = _run(["curate", data, "--out", tmp_path / "kept.jsonl"], capsys)
    assert status == 1
    expected = [f"{data}:2: record: a preference record in a file of sft records (the kind of its first record, "
                "read from the keys); use one kind per file",
                f"{data}:3: record: format 'sharegpt' differs from the file's format ('alpaca', from its first "
                "record); use one format per file"]
    assert [line for line in expected if line in err] == expected
    assert [str(e) for e in validate_file(data, kind=None)] == expected  # prepare's reader: the same two problems
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.jsonl"]

def test_cli_on_error_skip_leaves_bad_records_out_and_lists_them(tmp_path, capsys):
    data = tmp_path / "data.jsonl"
    data.write_text('{"instruction": "A", "output": "A long enough answer."}\n{"instruction": "B"}\n', encoding="utf-8")
    out = tmp_path / "kept.jsonl"
    status, _, err = _run(["curate", data, "--out", out, "--on-error", "skip"], capsys)
    assert status == 0 and f"{data}:2: output: missing" in err
    report = json.loads((tmp_path / "kept.report.json").read_text(encoding="utf-8"))
    assert report["invalid"] == [f"{data}:2: output: missing"] and report["counts"]["invalid"] == 1
    assert out.read_text(encoding="utf-8").splitlines() == ['{"instruction": "A", "output": "A long enough answer."}']


def test_cli_txt_documents_one_record_per_file_copied_byte_for_byte(tmp_path, capsys):
    docs = tmp_path / "docs"
    docs.mkdir()
    a = b"\xef\xbb\xbf" + ZH_BASES[0].encode("utf-8") + b"\r\n\r\n" + ZH_BASES[1].encode("utf-8") + b"\r\n"
    (docs / "a.txt").write_bytes(a)  # a UTF-8 byte-order mark and CRLF line ends: kept as they are
    (docs / "b.txt").write_bytes(a[3:].replace(b"\r\n", b"\n"))  # the same document, written differently
    (docs / "c.txt").write_bytes(EN_BASES[0].encode("utf-8"))  # no final newline
    out = tmp_path / "out"
    status, stdout, err = _run(["curate", docs / "*.txt", "--out", out], capsys)
    assert status == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "c.txt", "report.json"]  # b removed: not written
    assert (out / "a.txt").read_bytes() == a and (out / "c.txt").read_bytes() == EN_BASES[0].encode("utf-8")
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert [(r["location"], r["filter"], r["partner_location"]) for r in report["removed"]] == \
        [(f"{docs / 'b.txt'}:1", "exact", f"{docs / 'a.txt'}:1")]
    assert report["counts"]["records"] == 3 and report["counts"]["kept"] == 2
    assert report["outputs"] == [str(out / "a.txt"), str(out / "c.txt")]
    # one input: OUT is the document itself
    status, _, err = _run(["curate", docs / "a.txt", "--out", tmp_path / "kept.txt"], capsys)
    assert status == 0, err
    assert (tmp_path / "kept.txt").read_bytes() == a
    # one input whose document is removed (here: it leaks an evaluation text): no OUT, not even an old one
    evals = tmp_path / "eval.txt"
    evals.write_text(EN_BASES[0] + "\n", encoding="utf-8")
    (tmp_path / "c_kept.txt").write_text("an earlier run's output\n")
    status, stdout, err = _run(["curate", docs / "c.txt", "--out", tmp_path / "c_kept.txt", "--decontaminate", evals,
                                "--overwrite"], capsys)
    assert status == 0, err
    assert not (tmp_path / "c_kept.txt").exists() and "no " + str(tmp_path / "c_kept.txt") in stdout
    report = json.loads((tmp_path / "c_kept.report.json").read_text(encoding="utf-8"))
    assert report["outputs"] == [] and report["removed"][0]["filter"] == "contamination"
    # a document that is not UTF-8: FILE:LINE of the bad byte, nothing written
    (docs / "d.txt").write_bytes(b"first line\nsecond \xd6\xd0\xce\xc4 line\n")
    status, _, err = _run(["curate", docs / "d.txt", "--out", tmp_path / "d_kept.txt"], capsys)
    assert status == 1 and err.startswith(f"{docs / 'd.txt'}:2: record: not UTF-8 text: byte D6 at byte offset 18")
    assert not (tmp_path / "d_kept.txt").exists()


def test_quality_leaves_a_preference_pair_s_rejected_answer_alone():
    pair = {"prompt": "Name a colour.", "chosen": "Blue is a colour.", "rejected": "As an AI language model, I cannot."}
    assert quality_flags_record(pair) == []
    assert quality_flags_record({**pair, "chosen": pair["rejected"]}) == ["refusal"]


def test_cli_refuses_to_replace_out_without_overwrite(tmp_path, capsys):
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"instruction": "A", "output": "A long enough answer."}) + "\n", encoding="utf-8")
    out = tmp_path / "kept.jsonl"
    out.write_text("old\n")
    status, _, err = _run(["curate", data, "--out", out], capsys)
    assert status == 2 and "--overwrite" in err and out.read_text() == "old\n"
    assert _run(["curate", data, "--out", out, "--overwrite"], capsys)[0] == 0
    assert json.loads(out.read_text()) == {"instruction": "A", "output": "A long enough answer."}


def test_cli_decontaminate_and_novelty(tmp_path, capsys):
    data = tmp_path / "data.jsonl"
    rows = [{"instruction": "写一首关于春天的诗歌", "output": "春风吹绿了江南岸，桃花开满了山坡。"},
            {"instruction": "解释什么是光合作用", "output": "植物利用阳光把二氧化碳和水变成养分和氧气。"},
            {"instruction": "回答问题", "output": "问题：法国的首都是哪一座城市？答案：巴黎。"}]
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    evals = tmp_path / "eval.jsonl"
    evals.write_text(json.dumps({"question": EVAL[2], "answer": "巴黎"}, ensure_ascii=False) + "\n", encoding="utf-8")
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("写一首关于春天的诗\n", encoding="utf-8")
    out = tmp_path / "kept.jsonl"
    status, _, err = _run(["curate", data, "--out", out, "--decontaminate", evals, "--novelty-seeds", seeds,
                           "--novelty", "0.7"], capsys)
    assert status == 0, err
    report = json.loads((tmp_path / "kept.report.json").read_text(encoding="utf-8"))
    assert [(r["location"], r["filter"], r["partner_location"]) for r in report["removed"]] == \
        [(f"{data}:1", "novelty", f"{seeds}:1"), (f"{data}:3", "contamination", f"{evals}:1")]
    assert json.loads(out.read_text(encoding="utf-8")) == rows[1]
