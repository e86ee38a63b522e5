"""Chapter 07 (data sources and quality): the planted ground truth agrees with the candidate pool, every
number the notebook and the manual page state is recomputed here from the data and the filters, and
the executed notebook shows the same.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import nbformat
import pytest

from nbexec import load_script
from utils.curate import (exact_duplicates, find_contamination, jaccard, mix, near_duplicates, novelty_filter,
                          quality_flags_record, record_text, rouge_l, curate)
from utils.models.corpus import DATA_DIR
from utils.models.sft_data import load_heldout, load_training_records

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "07_data_sources_quality.ipynb"
PAGE = ROOT / "hf_basic" / "07_data_sources_quality.md"
QUALITY_KINDS = ("too_short", "too_long", "repetition", "language_mismatch", "refusal")


@pytest.fixture(scope="module")
def pool():
    with open(DATA_DIR / "ch07_candidates.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def planted():
    with open(DATA_DIR / "ch07_planted.json", encoding="utf-8") as f:
        return {int(k): v for k, v in json.load(f).items()}


@pytest.fixture(scope="module")
def kind(pool, planted):
    return [planted.get(i, {"kind": "clean"})["kind"] for i in range(len(pool))]


@pytest.fixture(scope="module")
def texts(pool):
    return [record_text(r) for r in pool]


def pairs_of(planted, name):
    return {tuple(sorted((i, v["partner"]))) for i, v in planted.items() if v["kind"] == name}


@pytest.fixture(scope="module")
def notebook():
    return nbformat.read(NOTEBOOK, as_version=4)


def prose(nb) -> str:
    return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def outputs(nb) -> str:
    parts = []
    for c in nb.cells:
        for o in c.get("outputs", []):
            parts.append(o.get("text") or o.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


# --------------------------------------------------------------------------- the data

def test_data_files_are_what_the_script_builds(pool, planted):
    spec = importlib.util.spec_from_file_location("make_ch07_data", ROOT / "scripts" / "make_ch07_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    built_pool, built_truth = module.build()
    assert built_pool == pool
    assert {int(k): v for k, v in built_truth.items()} == planted


def test_pool_is_alpaca_bilingual_and_sized(pool):
    assert 150 <= len(pool) <= 300
    assert all(set(r) == {"instruction", "input", "output"} for r in pool)
    chinese = sum(bool(re.search(r"[\u4e00-\u9fff]", r["instruction"])) for r in pool)
    assert 0.35 < chinese / len(pool) < 0.65


def test_planted_ground_truth_is_true(pool, planted, texts):
    heldout_questions = [q["question"] for q in load_heldout()]
    for i, v in planted.items():
        k = v["kind"]
        if k == "exact_duplicate":
            assert pool[i] == pool[v["partner"]] and v["partner"] < i
        elif k == "near_duplicate":
            assert pool[i] != pool[v["partner"]] and pool[i]["instruction"] == pool[v["partner"]]["instruction"]
            assert 0.7 <= jaccard(texts[i], texts[v["partner"]]) < 1 and v["partner"] < i
        elif k == "paraphrase":
            assert pool[i]["instruction"] != pool[v["partner"]]["instruction"]
            assert jaccard(texts[i], texts[v["partner"]]) < 0.3          # the answer is a new one
        elif k == "contamination":
            assert any(q in texts[i] for q in heldout_questions)
        elif k == "contamination_paraphrase":
            assert not any(q in texts[i] for q in heldout_questions) and "Thailand" in texts[i]
    counts = {}
    for v in planted.values():
        counts[v["kind"]] = counts.get(v["kind"], 0) + 1
    assert counts["exact_duplicate"] == 8 and counts["near_duplicate"] == 18 and counts["paraphrase"] == 8
    assert counts["contamination"] == 4 and sum(n for k, n in counts.items() if k.startswith("hard_")) == 11


def test_no_clean_record_is_a_hidden_problem(pool, kind, texts):
    """Clean records really are distinct: no exact or near duplicate among them, none quotes a held-out question."""
    clean = [i for i, k in enumerate(kind) if k == "clean"]
    clean_texts = [texts[i] for i in clean]
    assert exact_duplicates(clean_texts) == []
    assert near_duplicates(clean_texts, threshold=0.5).pairs == []
    assert not find_contamination(clean_texts, [q["question"] for q in load_heldout()], n=8)


# --------------------------------------------------------------------------- the filters vs the truth

def test_exact_duplicates_find_exactly_the_planted(planted, texts):
    groups = exact_duplicates(texts)
    assert {(g[0], j) for g in groups for j in g[1:]} == pairs_of(planted, "exact_duplicate")


def test_the_datasketch_loop_of_section_5(planted, texts):
    """The notebook's hand-written MinHash + LSH: 17 of 18 planted pairs, none wrong; the miss is (6, 92)."""
    from datasketch import MinHash, MinHashLSH

    from utils.curate import shingles

    sigs = []
    for t in texts:
        m = MinHash(num_perm=128, seed=1)
        m.update_batch([s.encode("utf-8") for s in shingles(t, 5)])
        sigs.append(m)
    lsh, found = MinHashLSH(threshold=0.7, num_perm=128), set()
    for i, m in enumerate(sigs):
        found |= {(j, i) for j in lsh.query(m) if sigs[j].jaccard(m) >= 0.7}
        lsh.insert(i, m)
    found -= pairs_of(planted, "exact_duplicate")
    near = pairs_of(planted, "near_duplicate")
    assert found <= near and len(found) == 17 and near - found == {(6, 92)}
    assert round(jaccard(texts[6], texts[92]), 3) == 0.704 and round(sigs[6].jaccard(sigs[92]), 3) == 0.656


def test_near_duplicates_sweep(planted, kind, texts):
    sweep = load_script("figures/ch07_data_quality.py").sweep_table()
    stated = {0.5: (0.95, 1.00), 0.6: (0.95, 1.00), 0.7: (0.94, 0.94), 0.75: (0.94, 0.83), 0.8: (1.00, 0.83),
              0.85: (1.00, 0.61), 0.9: (1.00, 0.28)}
    for t, (p, r) in stated.items():
        assert (round(sweep.loc[t, "precision"], 2), round(sweep.loc[t, "recall"], 2)) == (p, r), t
    pairs = {(i, j) for i, j, _ in near_duplicates(texts, threshold=0.7).pairs} - pairs_of(planted, "exact_duplicate")
    wrong = pairs - pairs_of(planted, "near_duplicate")
    assert wrong == {(133, 134)} and {kind[133], kind[134]} == {"hard_shared_context"}
    assert round(jaccard(texts[133], texts[134]), 3) == 0.787


def test_rouge_l_and_the_novelty_filter(pool, planted, kind, texts):
    from rouge_score import rouge_scorer

    assert rouge_scorer.RougeScorer(["rougeL"]).score("为什么海水是咸的？", "海水为什么是咸的？")["rougeL"].fmeasure == 0
    assert round(rouge_l("为什么海水是咸的？", "海水为什么是咸的？"), 3) == 0.750
    assert round(rouge_l("Explain what an API is in simple terms.", "Explain in simple terms what an API is."), 3) == 0.625
    instructions = [r["instruction"] for r in pool]
    novel = novelty_filter(instructions, threshold=0.7)
    assert (len(novel.kept), len(novel.removed), novel.comparisons) == (123, 36, 10_327)
    para = pairs_of(planted, "paraphrase")
    assert sum(rouge_l(instructions[i], instructions[j]) > 0.7 for i, j in para) == 7
    assert not para & {(a, b) for a, b, _ in near_duplicates(texts, threshold=0.7).pairs}
    others = {kind[i]: round(s, 3) for i, _, s in novel.removed
              if kind[i] not in ("exact_duplicate", "near_duplicate", "paraphrase")}
    assert others == {"hard_same_instruction": 1.0, "hard_asked_language": 0.824, "language_mismatch": 0.727}


def test_contamination_table(kind, texts):
    heldout = load_heldout()
    questions = [q["question"] for q in heldout]
    with_answers = [q["question"] + "\n" + q["answer"] for q in heldout]
    train = [record_text(r) for r in load_training_records()]
    assert len(train) == 504

    def row(n):
        found = {h.index for h in find_contamination(texts, questions, n=n)}
        return (sum(kind[i] == "contamination" for i in found), sum(kind[i] == "contamination_paraphrase" for i in found),
                sum(not kind[i].startswith("contamination") for i in found),
                len({h.index for h in find_contamination(train, questions, n=n)}),
                len({h.index for h in find_contamination(train, with_answers, n=n)}))

    assert row(5) == (4, 1, 1, 437, 437)
    assert row(8) == (4, 0, 0, 0, 200)
    assert row(13) == (4, 0, 0, 0, 0)


def test_quality_rules_and_their_failures(pool, kind):
    flags = [quality_flags_record(r, max_chars=2000) for r in pool]
    for k in QUALITY_KINDS:
        hit = [bool(flags[i]) and k in flags[i] for i in range(len(pool)) if kind[i] == k]
        assert sum(hit) == {"too_short": 2, "refusal": 2}.get(k, len(hit)), k
    missed = {pool[i]["output"] for i in range(len(pool)) if kind[i] in QUALITY_KINDS and not flags[i]}
    assert missed == {"Many.", "对不起，我只是一个人工智能助手，无法回答这个问题。"}
    wrong = {(kind[i], tuple(flags[i])) for i in range(len(pool))
             if (kind[i] == "clean" or kind[i].startswith("hard_")) and flags[i]}
    assert wrong == {("hard_refusal", ("refusal",)), ("hard_asked_language", ("language_mismatch",)),
                     ("hard_short_answer", ("too_short",)), ("clean", ("language_mismatch",))}
    assert sum(1 for i in range(len(pool)) if kind[i] == "clean" and flags[i]) == 1
    assert not any(flags[i] for i in range(len(pool)) if kind[i] == "hard_translation")


def test_mix_and_the_pipeline(pool, kind):
    clean = [pool[i] for i in range(len(pool)) if kind[i] == "clean"]
    mixed = mix({"general": clean, "facts": load_training_records()}, {"general": 0.6, "facts": 0.4}, total=100)
    assert [name for name, _ in mixed].count("general") == 60 and len(clean) == 95
    with pytest.raises(ValueError, match="120 records asked .* only 95 available"):
        mix({"general": clean, "facts": load_training_records()}, {"general": 0.6, "facts": 0.4}, total=200)

    cur = curate(pool, decontaminate=[q["question"] for q in load_heldout()], quality={"max_chars": 2000})
    assert cur.counts == {"records": 159, "exact": 8, "quality": 17, "contamination": 4, "near_dup": 18,
                          "novelty": 0, "kept": 112}
    removed = {r["index"]: r["filter"] for r in cur.removed}
    by_kind = lambda k: [removed.get(i) for i in range(len(pool)) if kind[i] == k]  # noqa: E731
    assert by_kind("exact_duplicate") == ["exact"] * 8
    assert by_kind("near_duplicate").count("near_dup") == 17
    assert by_kind("contamination") == ["contamination"] * 4 and by_kind("contamination_paraphrase") == [None]
    assert all(f is None for f in by_kind("paraphrase"))
    assert by_kind("clean").count(None) == 94
    hard = [i for i in range(len(pool)) if kind[i].startswith("hard_")]
    assert len(hard) == 11 and sum(i in removed for i in hard) == 5


def test_the_self_instruct_run_of_section_2(tok):
    """Four greedy rounds of the tiny base model: a corpus sentence, a task, and the same task twice
    (removed by ROUGE-L = 1.0): what the notebook shows and its prose describes."""
    import torch

    from utils.curate.self_instruct import first_sentence, load_seed_tasks, local_completer, self_instruct
    from utils.models import load_causal_lm

    torch.set_num_threads(2)
    complete = local_completer(load_causal_lm(), tok, max_new_tokens=24)
    seeds = [s["instruction"] for s in load_seed_tasks()]
    run = self_instruct(complete, seeds, rounds=4, parse=first_sentence, similarity=rouge_l, seed=0)
    got = [(c.instruction, c.kept, c.score) for c in run.candidates]
    assert got[0][:2] == ("我们一起学习怎样制作训练数据。", True)
    assert got[1][:2] == ("Give three tips for staying healthy.", True)
    assert got[2:] == [("Give three tips for staying healthy.", False, 1.0)] * 2


# --------------------------------------------------------------------------- the notebook and the page

def test_notebook_outputs_show_the_numbers(notebook):
    out = outputs(notebook)
    for phrase in ("precision 1.00, recall 0.94", "exact Jaccard 0.704, MinHash estimate 0.656",
                   "only in near_duplicates: [(133, 134)]", "default tokenizer: 0", "123 kept, 36 removed, 10,327",
                   "planted paraphrases with ROUGE-L > 0.7: 7 of 8; joined by MinHash on whole records: 0",
                   "all 8 planted exact duplicates found", "{'general': 60, 'facts': 40}",
                   "'exact': 8, 'quality': 17, 'contamination': 4, 'near_dup': 18, 'novelty': 0, 'kept': 112",
                   "exit status 0", "ch07_candidates.jsonl:3"):
        assert phrase in out, phrase


def test_prose_states_the_measured_numbers(notebook):
    text, page = prose(notebook), PAGE.read_text(encoding="utf-8")
    for phrase in ("精确率 1.00，召回率 0.94", "0.83（0.8）", "0.61（0.85）", "0.28（0.9）", "0.704", "0.656", "0.787", "0.625", "10,327", "7 条", "437 条", "200 条",
                   "94 条", "112 条"):
        assert phrase in text, phrase
    for phrase in ("1.00", "0.94", "0.625", "437", "200", "112", "0.83（0.8）", "0.28（0.9）"):
        assert phrase in page, phrase
    assert "../notebooks/07_data_sources_quality.ipynb" in page and "## 练习" in page


def test_exercise_solutions_are_hidden_and_ran(notebook):
    solutions = [c for c in notebook.cells if c.cell_type == "code" and "solution" in c.metadata.get("tags", [])]
    assert len(solutions) == 5
    for c in solutions:
        assert c.metadata["jupyter"] == {"source_hidden": True, "outputs_hidden": True}
        assert c.outputs and all(o.output_type != "error" for o in c.outputs)
    assert "开放题" in prose(notebook)


def test_figures_exist():
    for name in ("ch07_near_dup_sweep.png", "ch07_rouge_vs_minhash.png"):
        assert (ROOT / "img" / name).stat().st_size > 10_000
