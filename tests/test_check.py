"""``python -m utils check``: clean sets prepared by utils, TRL and Stanford Alpaca; one broken set per pitfall.

Every expected number is computed here, independently of :mod:`utils.check` (from the rows, or from
the tokenizer on the records), and positions are checked token by token.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path
from types import SimpleNamespace

import datasets
import pytest

from conftest import ROOT, needs_tested_trl
from utils.check import lint
from utils.cli import main
from utils.formats import iter_records
from utils.models import load_reference_tokenizer, load_tokenizer

SAMPLES = ROOT / "utils" / "data"
TINY_DIR = ROOT / "utils" / "assets" / "tokenizer"
QWEN_DIR = ROOT / "utils" / "assets" / "reference_tokenizers" / "qwen2_5"  # shipped with the package
GPT2_DIR = ROOT / "utils" / "assets" / "reference_tokenizers" / "gpt2"
MISTRAL_DIR = ROOT / "utils" / "assets" / "reference_tokenizers" / "mistral"
QUOTED = {"instruction": "Say hello in English, in quotes.", "input": "", "output": '"Hello"'}


@pytest.fixture(autouse=True)
def quiet_progress_bars():
    datasets.disable_progress_bars()
    yield


def run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(a) for a in argv])
    return status, out.getvalue(), err.getvalue()


def found(report) -> dict:
    return {f["check"]: f for f in report["findings"]}


def levels(report, level: str) -> set:
    return {f["check"] for f in report["findings"] if f["level"] == level}


def examples(finding) -> list:
    return [(e["row"], e["position"]) for e in finding["examples"]]


def duplicates(ids: list) -> list[int]:
    """Rows whose input_ids repeat an earlier row (computed here, not by the linter)."""
    seen, out = set(), []
    for i, row in enumerate(ids):
        key = tuple(row)
        if key in seen:
            out.append(i)
        seen.add(key)
    return out


@pytest.fixture(scope="module")
def tiny():
    return load_tokenizer()


@pytest.fixture(scope="module")
def qwen():
    return load_reference_tokenizer("qwen2_5")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("check")


def prepare(workdir: Path, name: str, data: str, template: str, *extra) -> Path:
    out = workdir / name
    if not out.exists():
        status, _, err = run(["prepare", SAMPLES / data, "--template", template, "--out", out, "--quiet",
                              "--on-error", "skip", *extra])
        assert status == 0, err
    return out


# ---- clean sets prepared by utils -------------------------------------------------------------

UTILS_SETS = {
    "tiny_alpaca": ("sft_alpaca.jsonl", "alpaca"),
    "tiny_alpaca_packed": ("sft_alpaca.jsonl", "alpaca", "--pack", "--max-length", "256"),
    "tiny_chat": ("sft_messages.jsonl", "chat_template"),
    "tiny_vicuna_truncated": ("sft_sharegpt.jsonl", "vicuna", "--max-length", "150", "--truncation", "truncate"),
    "qwen_chat": ("sft_messages.jsonl", "chat_template", "--tokenizer", QWEN_DIR),
    "qwen_alpaca": ("alpaca_samples.jsonl", "alpaca", "--tokenizer", QWEN_DIR),
    "gpt2_alpaca": ("alpaca_samples.jsonl", "alpaca", "--tokenizer", GPT2_DIR),  # BOS == EOS
    "mistral_chat": ("sft_messages.jsonl", "chat_template", "--tokenizer", MISTRAL_DIR),  # SentencePiece, [INST]
    "qwen_chat_packed": ("sft_messages.jsonl", "chat_template", "--tokenizer", QWEN_DIR, "--pack", "--max-length",
                         "200"),
}


@pytest.mark.parametrize("name", list(UTILS_SETS))
def test_utils_sets_are_clean(workdir, name):
    data, template, *extra = UTILS_SETS[name]
    out = prepare(workdir, name, data, template, *extra)
    args = extra[extra.index("--tokenizer"):][:2] if "--tokenizer" in extra else []  # tiny: found from stats.json
    status, text, err = run(["check", out, "--json", *args])
    report = json.loads(text)
    assert status == 0 and report["exit_status"] == 0, text
    assert report["tokenizer"] is not None and report["template"] == template
    # every reply's prompt boundary was checked against the template's prompt ending and a fresh tokenization
    assert report["boundaries"] == {"checked": report_replies(out), "unchecked": 0}
    assert levels(report, "error") == set()
    rows = datasets.load_from_disk(str(out))
    dups = duplicates(rows["input_ids"])  # the shipped files hold planted duplicate records
    assert levels(report, "warning") == ({"duplicate_rows"} if dups else set())
    if dups:
        assert found(report)["duplicate_rows"]["rows"] == len(dups)
        assert [r for r, _ in examples(found(report)["duplicate_rows"])] == dups[:5]
    infos = levels(report, "info")
    if name == "tiny_vicuna_truncated":  # cut replies carry no end marker, as the contract says
        cut = [i for i, (ids, labels) in enumerate(zip(rows["input_ids"], rows["labels"]))
               if len(ids) == 150 and labels[-1] != -100 and ids[-1] != load_tokenizer().eos_token_id]
        assert cut and infos == {"cut_reply"} and found(report)["cut_reply"]["rows"] == len(cut)
    else:
        assert infos == set()
    assert report["tokens"] == sum(map(len, rows["input_ids"]))
    assert report["supervised_tokens"] == sum(sum(v != -100 for v in labels) for labels in rows["labels"])


def report_replies(out: Path) -> int:
    """Supervised spans that follow a prompt (every reply of every example), counted from the rows."""
    ds = datasets.load_from_disk(str(out))
    positions = ds["position_ids"] if "position_ids" in ds.column_names else [None] * len(ds)
    n = 0
    for labels, pos in zip(ds["labels"], positions):
        starts = {0} | ({i for i, p in enumerate(pos) if p == 0} if pos else set())
        n += sum(1 for i, v in enumerate(labels) if v != -100 and (i in starts or labels[i - 1] == -100))
    return n


def test_table_output_and_streaming_in_small_batches(workdir, tiny):
    out = prepare(workdir, "tiny_alpaca", *UTILS_SETS["tiny_alpaca"])
    status, text, _ = run(["check", out])
    assert status == 0
    assert "level" in text and "duplicate_rows" in text and "0 error(s), 1 warning(s)" in text
    whole = lint(out, progress=False)
    small = lint(out, progress=False, batch_size=7)  # duplicates and counts across batch boundaries
    assert small["findings"] == whole["findings"] and small["tokens"] == whole["tokens"]


def test_parquet_and_jsonl_read_like_save_to_disk(workdir, tiny):
    out = prepare(workdir, "tiny_alpaca", *UTILS_SETS["tiny_alpaca"])
    ds = datasets.load_from_disk(str(out))
    ds.to_parquet(str(workdir / "set.parquet"))
    ds.to_json(str(workdir / "set.jsonl"))
    reference = lint(out, tokenizer=tiny, template="alpaca", progress=False)["findings"]
    for path in (workdir / "set.parquet", workdir / "set.jsonl"):
        assert lint(path, tokenizer=tiny, template="alpaca", progress=False)["findings"] == reference


# ---- TRL's SFT preparation --------------------------------------------------------------------

def trl_prepare(tokenizer, data: dict, workdir: Path, completion_only_loss: bool, packing=False, **config):
    """What ``SFTTrainer.__init__`` runs on a dataset before training (no model needed for it)."""
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(output_dir=str(workdir / "trl"), report_to="none", use_cpu=True, bf16=False, packing=packing,
                     **config)
    trainer = SimpleNamespace(_tokenizer=tokenizer, chat_template=None, completion_only_loss=completion_only_loss)
    return SFTTrainer._prepare_dataset(trainer, datasets.Dataset.from_dict(data), tokenizer, args, packing=packing,
                                       formatting_func=None, dataset_name="train")


def alpaca_records():
    return [json.loads(line) for line in (SAMPLES / "alpaca_samples.jsonl").read_text().splitlines()] + [QUOTED]


def merges(tokenizer, bench, records) -> dict[int, int]:
    """Records whose prompt's ids are not a prefix of the full text's ids: {row: where the ids diverge}."""
    out = {}
    for i, (source, record) in enumerate(zip(bench.sources_of(records), records)):
        prompt = tokenizer(source)["input_ids"]
        full = tokenizer(source + record["output"] + tokenizer.eos_token)["input_ids"]
        if full[:len(prompt)] != prompt:
            out[i] = next(k for k, (a, b) in enumerate(zip(prompt, full)) if a != b)
    return out


@needs_tested_trl
@pytest.mark.parametrize("name", ["tiny", "qwen2_5"])
def test_trl_prompt_completion_alpaca(workdir, bench, tiny, qwen, name):
    tok = tiny if name == "tiny" else qwen
    records = alpaca_records()
    ds = bench.trl_prepare(records, tok, bench.trl_config(workdir))  # completion_only_loss=True
    path = workdir / f"trl_alpaca_{name}"
    ds.save_to_disk(str(path))
    report = lint(path, tokenizer=tok, template="alpaca", progress=False)
    assert report["exit_status"] == 0 and levels(report, "error") == set()
    expected = merges(tok, bench, records)
    if name == "qwen2_5":
        assert len(expected) == 3  # '### Response:' merges with the reply's first characters on Qwen2.5
    if expected:
        merge = found(report)["boundary_merge"]
        # TRL starts the completion where the ids diverge: the merged token (with the prompt's ':') is supervised
        assert merge["rows"] == len(expected) and merge["detail"] == {"prompt_end_supervised": len(expected),
                                                                        "reply_start_masked": 0}
        assert examples(merge) == sorted(expected.items())[:5]
        assert all(ds[i]["labels"][p] != -100 and ds[i]["labels"][p - 1] == -100 for i, p in expected.items())
    assert levels(report, "warning") == ({"boundary_merge"} if expected else set())


@needs_tested_trl
def test_trl_conversational_assistant_only_loss_and_packing(workdir, tiny):
    messages = [r["messages"] for r in iter_records(SAMPLES / "sft_messages.jsonl", on_error="skip")]
    for packing in (False, True):
        ds = trl_prepare(tiny, {"messages": messages}, workdir, False, packing=packing, assistant_only_loss=True,
                         max_length=128 if packing else None)
        path = workdir / f"trl_chat_{packing}"
        ds.save_to_disk(str(path))
        report = lint(path, tokenizer=tiny, progress=False)
        assert report["exit_status"] == 0 and levels(report, "error") == set(), report["findings"]
        if packing:
            assert "seq_lengths" in ds.column_names and "position_ids" not in ds.column_names
            assert report["packed_rows"] == sum(len(s) > 1 for s in ds["seq_lengths"]) > 0
            assert levels(report, "warning") == set()  # seq_lengths mark the examples: no cross-contamination
        else:
            assert levels(report, "warning") == {"duplicate_rows"}
            assert found(report)["duplicate_rows"]["rows"] == len(duplicates(ds["input_ids"])) > 0


@needs_tested_trl
def test_trl_chatml_prompt_completion_supervises_the_newline_after_im_end(workdir, qwen):
    messages = [r["messages"] for r in iter_records(SAMPLES / "sft_messages.jsonl", on_error="skip")]
    ds = trl_prepare(qwen, {"prompt": [m[:-1] for m in messages], "completion": [m[-1:] for m in messages]},
                     workdir, True, max_length=None)
    path = workdir / "trl_qwen_pc"
    ds.save_to_disk(str(path))
    report = lint(path, tokenizer=qwen, progress=False)
    assert levels(report, "error") == set()
    end, newline = qwen.convert_tokens_to_ids("<|im_end|>"), qwen("\n")["input_ids"]
    after = [i for i, (ids, labels) in enumerate(zip(ds["input_ids"], ds["labels"]))
             if ids[-2] == end and [ids[-1]] == newline and labels[-1] != -100 and labels[-2] != -100]
    assert len(after) == len(ds) and found(report)["supervised_after_end"]["rows"] == len(after)
    assert examples(found(report)["supervised_after_end"]) == [(i, len(ds[i]["input_ids"]) - 1) for i in range(5)]
    # no masking at all (TRL's default for messages without assistant_only_loss): every row warned about
    ds = trl_prepare(qwen, {"messages": messages}, workdir, False, max_length=None)
    ds.save_to_disk(str(workdir / "trl_qwen_all"))
    report = lint(workdir / "trl_qwen_all", tokenizer=qwen, progress=False)
    assert found(report)["all_supervised"]["rows"] == len(ds) and report["exit_status"] == 0


# ---- Stanford Alpaca train.py ------------------------------------------------------------------

@pytest.mark.parametrize("name", ["tiny", "qwen2_5"])
def test_stanford_alpaca_preprocessing(workdir, bench, tiny, qwen, name):
    tok = tiny if name == "tiny" else qwen
    records = alpaca_records()
    ids, labels = bench.stanford_alpaca(records, bench.stanford_tokenizer(tok))
    path = workdir / f"stanford_{name}"
    datasets.Dataset.from_dict({"input_ids": [i.tolist() for i in ids],
                                "labels": [label.tolist() for label in labels]}).save_to_disk(str(path))
    report = lint(path, tokenizer=tok, template="alpaca", progress=False)
    assert report["exit_status"] == 0 and levels(report, "error") == set()
    expected = merges(tok, bench, records)
    assert levels(report, "warning") == ({"boundary_merge"} if expected else set())
    if name == "qwen2_5":
        assert len(expected) == 3
    if expected:
        merge = found(report)["boundary_merge"]
        # Stanford masks as many tokens as the prompt alone has: the merged token is masked with it
        assert merge["detail"] == {"reply_start_masked": len(expected), "prompt_end_supervised": 0}
        first = {i: len(tok(s)["input_ids"]) for i, s in enumerate(bench.sources_of(records))}
        assert examples(merge) == [(i, first[i]) for i in sorted(expected)][:5]
        assert all(labels[i][first[i] - 1] == -100 and labels[i][first[i]] != -100 for i in expected)


# ---- broken sets, one per pitfall -------------------------------------------------------------

@pytest.fixture(scope="module")
def good(workdir):
    """The tiny Alpaca set prepared by utils, as Python lists (edited by each test below)."""
    ds = datasets.load_from_disk(str(prepare(workdir, "tiny_alpaca", *UTILS_SETS["tiny_alpaca"])))
    return ds.to_dict()


def first_supervised(labels: list) -> int:
    return next(i for i, v in enumerate(labels) if v != -100)


def lint_rows(tmp_path, rows, tokenizer, **options):
    path = tmp_path / "broken"
    datasets.Dataset.from_dict(rows).save_to_disk(str(path))
    return lint(path, tokenizer=tokenizer, template="alpaca", progress=False, **options)


def only_error(report, check: str) -> dict:
    assert levels(report, "error") == {check}, report["findings"]
    assert report["exit_status"] == 1
    return found(report)[check]


def test_broken_no_supervised_token(tmp_path, good, tiny):
    rows = copy.deepcopy(good)
    for i in (3, 10):
        rows["labels"][i] = [-100] * len(rows["labels"][i])
    finding = only_error(lint_rows(tmp_path, rows, tiny), "no_supervised")
    assert finding["rows"] == 2 and examples(finding) == [(3, None), (10, None)]
    status, out, _ = run(["check", tmp_path / "broken", "--tokenizer", TINY_DIR, "--template", "alpaca"])
    assert status == 1 and "no_supervised" in out and "3, 10" in out  # exit status 1: an error-level pitfall


def test_broken_labels_shifted_before_saving(tmp_path, good, tiny):
    rows = copy.deepcopy(good)
    labels = rows["labels"][5]
    rows["labels"][5] = labels[1:] + [-100]  # what a hand-written "labels = input_ids[1:]" does
    start = first_supervised(labels)
    finding = only_error(lint_rows(tmp_path, rows, tiny), "labels_shifted")
    assert finding["rows"] == 1 and examples(finding) == [(5, start - 1)]
    assert finding["count"] == len(labels) - start


def test_broken_label_differs_and_label_out_of_vocabulary(tmp_path, good, tiny):
    rows = copy.deepcopy(good)
    q7, q8 = len(rows["labels"][7]) - 3, len(rows["labels"][8]) - 2
    rows["labels"][7][q7] = (rows["input_ids"][7][q7] + 1) % len(tiny)
    rows["labels"][8][q8] = len(tiny) + 5
    report = lint_rows(tmp_path, rows, tiny)
    assert levels(report, "error") == {"label_mismatch", "label_out_of_vocab"}
    assert examples(found(report)["label_mismatch"]) == [(7, q7)] and found(report)["label_mismatch"]["count"] == 1
    assert examples(found(report)["label_out_of_vocab"]) == [(8, q8)]


def test_broken_pad_equals_eos_trap(tmp_path, good, tiny):
    rows = copy.deepcopy(good)
    eos = tiny.eos_token_id
    rows["labels"] = [[-100 if t == eos else v for t, v in zip(ids, labels)]
                      for ids, labels in zip(rows["input_ids"], rows["labels"])]
    expected = [(i, len(ids) - 2) for i, ids in enumerate(rows["input_ids"])]  # the reply's last token, then EOS
    for tokenizer in (tiny, None):  # without a tokenizer the end id is inferred: it follows the spans, masked
        finding = only_error(lint_rows(tmp_path, rows, tokenizer), "end_not_supervised")
        assert finding["rows"] == len(expected) and examples(finding) == expected[:5]


def test_broken_eos_missing(tmp_path, good, tiny):
    rows = copy.deepcopy(good)
    for column in ("input_ids", "labels", "attention_mask"):
        rows[column][9] = rows[column][9][:-1]
    finding = only_error(lint_rows(tmp_path, rows, tiny), "end_missing")
    assert examples(finding) == [(9, len(rows["input_ids"][9]) - 1)]


def test_broken_double_bos_and_supervised_bos(tmp_path, good, tiny):
    rows = copy.deepcopy(good)
    bos = tiny.bos_token_id
    rows["input_ids"][4] = [bos] + rows["input_ids"][4]
    rows["labels"][4] = [-100] + rows["labels"][4]
    rows["attention_mask"][4] = [1] + rows["attention_mask"][4]
    rows["labels"][11][0] = rows["input_ids"][11][0]
    report = lint_rows(tmp_path, rows, tiny)
    assert levels(report, "error") == {"multiple_bos", "supervised_special", "end_missing"}
    assert examples(found(report)["multiple_bos"]) == [(4, 0)]
    assert examples(found(report)["supervised_special"]) == [(11, 0)]
    assert examples(found(report)["end_missing"]) == [(11, 0)]  # the supervised BOS is a span without an end


def test_broken_supervised_template_text(tmp_path, good, tiny):
    rows = copy.deepcopy(good)
    ids, labels = rows["input_ids"][6], rows["labels"][6]
    start = first_supervised(labels)
    k = next(k for k in range(1, start) if "### Response:" in tiny.decode(ids[start - k:start]))
    labels[start - k:start] = ids[start - k:start]
    report = lint_rows(tmp_path, rows, tiny)
    finding = only_error(report, "supervised_template_text")
    assert examples(finding) == [(6, start - k)]


def test_broken_eos_appended_after_truncation(tmp_path, good, tiny):
    rows = copy.deepcopy(good)
    limit, eos = 100, tiny.eos_token_id
    cut = []
    for i, ids in enumerate(rows["input_ids"]):
        if len(ids) > limit:  # a script's "tokenize(text, truncation=True, max_length=L - 1) + [eos]"
            assert first_supervised(rows["labels"][i]) < limit - 1
            rows["input_ids"][i] = ids[:limit - 1] + [eos]
            rows["labels"][i] = rows["labels"][i][:limit - 1] + [eos]
            rows["attention_mask"][i] = [1] * limit
            cut.append(i)
    natural = [i for i, ids in enumerate(good["input_ids"]) if len(ids) == limit and ids[-1] == eos]
    assert len(cut) >= 10 and len(natural) <= 1  # the linter cannot tell a natural ending at the limit apart
    for options in ({}, {"max_length": limit}):  # the limit is inferred when not given
        finding = only_error(lint_rows(tmp_path, rows, tiny, **options), "truncated_with_end")
        expected = sorted(cut + natural)
        assert finding["rows"] == len(expected) and examples(finding) == [(i, limit - 1) for i in expected[:5]]


def test_rows_over_the_length(tmp_path, good, tiny):
    limit = 100
    over = [i for i, ids in enumerate(good["input_ids"]) if len(ids) > limit]
    finding = only_error(lint_rows(tmp_path, good, tiny, max_length=limit), "over_length")
    assert finding["rows"] == len(over) and [r for r, _ in examples(finding)] == over[:5]


@pytest.fixture(scope="module")
def packed(workdir):
    path = prepare(workdir, "tiny_alpaca_packed", *UTILS_SETS["tiny_alpaca_packed"])
    return datasets.load_from_disk(str(path)).to_dict()


def restarts(positions: list) -> list[int]:
    return [p for p, v in enumerate(positions) if v == 0 and p > 0]


def test_broken_packed_positions_not_restarting(tmp_path, packed, tiny):
    rows = copy.deepcopy(packed)
    starts = restarts(rows["position_ids"][0])
    assert starts
    rows["position_ids"][0] = list(range(len(rows["input_ids"][0])))
    finding = only_error(lint_rows(tmp_path, rows, tiny), "positions_not_restarting")
    assert finding["rows"] == 1 and finding["count"] == len(starts) and examples(finding) == [(0, starts[0])]


def test_broken_packed_without_position_ids(tmp_path, packed, tiny):
    rows = {k: v for k, v in copy.deepcopy(packed).items() if k != "position_ids"}
    several = [i for i, p in enumerate(packed["position_ids"]) if restarts(p)]
    report = lint_rows(tmp_path, rows, tiny)
    assert report["exit_status"] == 0 and levels(report, "warning") == {"packed_without_boundaries"}
    status, out, _ = run(["check", tmp_path / "broken", "--tokenizer", TINY_DIR, "--json"])
    assert status == 0 and json.loads(out)["warnings"] == 1  # warnings only: exit status 0
    finding = found(report)["packed_without_boundaries"]
    assert finding["rows"] == len(several)
    assert finding["count"] == sum(len(restarts(p)) for p in packed["position_ids"])
    assert examples(finding) == [(i, restarts(packed["position_ids"][i])[0]) for i in several[:5]]


def neat_pack(rows: dict, cutoff: int, pad: int, positions: bool) -> tuple[dict, list[list[int]]]:
    """LLaMA-Factory's ``neat_packing`` layout, written here from its ``PackedSupervisedDatasetProcessor``: examples
    (none over ``cutoff``) packed in order up to ``cutoff`` tokens; ``attention_mask`` ``k + 1`` over the k-th
    example of a row; then ``cutoff + 1 - length`` pad tokens (label -100, attention 0, position 0). Its older
    releases wrote no ``position_ids`` (``positions=False``). Returns the rows and the examples of each."""
    packs: list[list[int]] = [[]]
    for i, ids in enumerate(rows["input_ids"]):
        if len(ids) > cutoff:
            continue
        if packs[-1] and sum(len(rows["input_ids"][j]) for j in packs[-1]) + len(ids) > cutoff:
            packs.append([])
        packs[-1].append(i)
    out = {"input_ids": [], "attention_mask": [], "labels": [], **({"position_ids": []} if positions else {})}
    for pack in packs:
        ids, att, labels, pos = [], [], [], []
        for k, j in enumerate(pack):
            n = len(rows["input_ids"][j])
            ids += rows["input_ids"][j]
            labels += rows["labels"][j]
            att += [k + 1] * n
            pos += list(range(n))
        n_pad = cutoff + 1 - len(ids)
        ids, labels, att, pos = ids + [pad] * n_pad, labels + [-100] * n_pad, att + [0] * n_pad, pos + [0] * n_pad
        for name, values in (("input_ids", ids), ("attention_mask", att), ("labels", labels), ("position_ids", pos)):
            if name in out:
                out[name].append(values)
    return out, packs


@pytest.mark.parametrize("positions", [False, True], ids=["segment_ids_only", "with_position_ids"])
def test_llamafactory_neat_packing_segment_ids_are_example_boundaries(tmp_path, good, tiny, positions):
    rows, packs = neat_pack(good, 256, tiny.pad_token_id, positions)
    several = [r for r, pack in enumerate(packs) if len(pack) > 1]
    assert several and len(packs) < len(good["input_ids"])
    report = lint_rows(tmp_path, rows, tiny)
    assert levels(report, "error") == levels(report, "warning") == set(), report["findings"]
    assert report["exit_status"] == 0 and report["packed_rows"] == len(several)  # padding is no example
    n_pad = [row.count(0) for row in rows["attention_mask"]]
    assert found(report)["padded_rows"]["count"] == sum(n_pad) and found(report)["padded_rows"]["rows"] == len(packs)
    # the second example of a row given the first one's segment id: it would attend to the first
    broken = copy.deepcopy(rows)
    r = several[0]
    start = len(good["input_ids"][packs[r][0]])
    end = start + len(good["input_ids"][packs[r][1]])
    assert broken["attention_mask"][r][start:end] == [2] * (end - start)
    broken["attention_mask"][r][start:end] = [1] * (end - start)  # position_ids (if any) still restart there
    finding = only_error(lint_rows(tmp_path / "broken", broken, tiny), "positions_not_restarting")
    assert examples(finding) == [(r, start)] and finding["count"] == 1


def test_broken_duplicates_attention_and_length_mismatch(tmp_path, good, tiny):
    rows = copy.deepcopy(good)
    n = len(rows["input_ids"])
    for column in rows:
        rows[column] += [rows[column][2], rows[column][5]]
    rows["attention_mask"][3][2] = 0
    rows["labels"][12] = rows["labels"][12][:-1]
    report = lint_rows(tmp_path, rows, tiny)
    assert levels(report, "error") == {"attention_zeros", "length_mismatch"}
    assert examples(found(report)["attention_zeros"]) == [(3, 2)]
    assert examples(found(report)["length_mismatch"]) == [(12, None)]
    dups = duplicates(rows["input_ids"])
    assert n in dups and n + 1 in dups and found(report)["duplicate_rows"]["rows"] == len(dups)


def test_padding_saved_and_supervised(tmp_path, good, tiny):
    rows = copy.deepcopy(good)
    pad = tiny.pad_token_id
    for i, supervised in ((12, False), (13, True)):
        rows["input_ids"][i] += [pad] * 3
        rows["labels"][i] += [pad if supervised else -100] * 3
        rows["attention_mask"][i] += [0] * 3
    report = lint_rows(tmp_path, rows, tiny)
    n = len(rows["input_ids"][13]) - 3
    assert examples(found(report)["supervised_padding"]) == [(13, n)] and found(report)["supervised_padding"]["count"] == 3
    assert [r for r, _ in examples(found(report)["padded_rows"])] == [12, 13]
    assert found(report)["padded_rows"]["count"] == 6


def test_no_prompt_masking_is_a_warning(tmp_path, good, tiny):
    rows = copy.deepcopy(good)
    rows["labels"][12] = list(rows["input_ids"][12])
    report = lint_rows(tmp_path, rows, tiny)
    assert report["exit_status"] == 0 and examples(found(report)["all_supervised"]) == [(12, None)]


def test_prompt_tokens_differ_from_a_fresh_tokenization(tmp_path, good, tiny):
    rows = copy.deepcopy(good)
    ids, labels = rows["input_ids"][13], rows["labels"][13]
    start = first_supervised(labels)
    vocab = tiny.get_vocab()
    # a prompt token written as two smaller tokens: same text, other ids (what a hand-made row can hold)
    at, piece = next((p, tiny.convert_ids_to_tokens(t)) for p, t in enumerate(ids[:start])
                     if len(tiny.convert_ids_to_tokens(t)) > 1 and tiny.convert_ids_to_tokens(t)[:1] in vocab
                     and tiny.convert_ids_to_tokens(t)[1:] in vocab and p > 0)
    split = [vocab[piece[:1]], vocab[piece[1:]]]
    assert tiny.decode(split) == tiny.decode([ids[at]])
    for column in ("input_ids", "labels", "attention_mask"):
        value = rows[column][13]
        rows[column][13] = value[:at] + ([-100, -100] if column == "labels" else split if column == "input_ids"
                                         else [1, 1]) + value[at + 1:]
    report = lint_rows(tmp_path, rows, tiny)
    assert report["exit_status"] == 0 and levels(report, "warning") >= {"prompt_tokens_differ"}
    assert examples(found(report)["prompt_tokens_differ"]) == [(13, start + 1)]


def test_broken_mask_boundary_by_one_token(tmp_path, good, tiny):
    rows = copy.deepcopy(good)
    s14, s15 = first_supervised(rows["labels"][14]), first_supervised(rows["labels"][15])
    rows["labels"][14][s14 - 1] = rows["input_ids"][14][s14 - 1]  # the prompt's last token supervised
    rows["labels"][15][s15] = -100  # the reply's first token masked
    report = lint_rows(tmp_path, rows, tiny)
    merge = found(report)["boundary_merge"]
    assert merge["detail"] == {"prompt_end_supervised": 1, "reply_start_masked": 1}
    assert examples(merge) == [(14, s14 - 1), (15, s15 + 1)]


# ---- bad input ---------------------------------------------------------------------------------

def test_bad_input_exits_2_naming_the_path(tmp_path):
    missing = tmp_path / "no_such_dir"
    no_ids = tmp_path / "text_only"
    datasets.Dataset.from_dict({"text": ["a", "b"]}).save_to_disk(str(no_ids))
    not_data = tmp_path / "notes.txt"
    not_data.write_text("just some notes\n")
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    bad_jsonl = tmp_path / "rows.jsonl"
    bad_jsonl.write_text('{"input_ids": [1, 2]}\n{"input_ids": [1, \n')
    for path, words in ((missing, "no such file or directory"), (no_ids, "no 'input_ids' column"),
                        (not_data, "not a data set"), (empty_dir, "neither"), (bad_jsonl, "not JSON Lines")):
        status, out, err = run(["check", path])
        assert status == 2 and str(path) in err and words in err and out == "", (path, err)
    status, _, err = run(["check", no_ids, "--tokenizer", tmp_path / "nope"])
    assert status == 2 and "nope" in err


def test_readme_entry_matches_the_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### 检查准备好的数据集：`check`"):readme.index("### 速度与正确性（基准）")]
    from utils.cli import build_parser

    options = build_parser()._subparsers._group_actions[0].choices["check"].format_help()
    for flag in ("--tokenizer", "--template", "--max-length", "--json"):
        assert flag in section and flag in options
    # the numbers it quotes are asserted above (test_trl_prompt_completion_alpaca, test_stanford_alpaca_preprocessing)
    assert "TRL 和 Stanford `train.py` 的结果各有 3 条" in section and "15 条 Alpaca 样例" in section
    assert len(alpaca_records()) == 15
    assert "0 表示没有 error" in section and "1 表示至少一个 error" in section and "2 表示用法错误" in section


def test_sample_re_tokenizes_every_kth_row_only_and_says_how_many(tmp_path, good, tiny):
    n = len(good["input_ids"])
    full = lint_rows(tmp_path, good, tiny)
    sampled = lint_rows(tmp_path / "s", good, tiny, sample=10)
    stride = -(-n // 10)
    chosen = [i for i in range(n) if i % stride == 0]
    assert full["boundary_rows"]["checked"] == n and sampled["boundary_rows"]["checked"] == len(chosen)
    assert 0 < sampled["boundaries"]["checked"] < full["boundaries"]["checked"]
    assert any(f"checked on {len(chosen)} of {n} rows" in note for note in sampled["notes"])
    assert levels(sampled, "error") == levels(full, "error")
