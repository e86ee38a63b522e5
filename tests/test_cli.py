"""``python -m utils prepare | inspect | stats``: outputs, the data contract on real data, bad input."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path

import datasets
import pytest

from conftest import ROOT, load_any_tokenizer, require_shared
from utils.cli import main
from utils.formats import iter_records, to_messages
from utils.templates import get_template, render_prompt

DATA = Path(__file__).parent / "data"
SAMPLES = Path(str(resources.files("utils") / "data"))
ANSI = re.compile(r"\x1b\[[0-9;]*m")
STATS_KEYS = {"records", "rows", "dropped", "truncated", "invalid", "tokens", "supervised_tokens",
              "boundary_merges", "lengths"}


@pytest.fixture(autouse=True)
def quiet_progress_bars():
    datasets.disable_progress_bars()
    yield


def run(argv, capsys):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def tokenizer_dir(name: str) -> str | None:
    return None if name == "tiny" else str(require_shared("reference_tokenizers", name))


def tokenizer_args(name: str) -> list[str]:
    path = tokenizer_dir(name)
    return [] if path is None else ["--tokenizer", path]


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def check_contract(rows, records, tokenizer, template_name: str) -> None:
    """Rules 1-4 and 6 of the data contract (README, 设计与数据契约) on every row, checked from the outside.

    The ids before each reply must be the tokenizer's ids of ``render_prompt`` of the history up to
    that reply (what inference sees); the reply and its EOS supervised; nothing else.
    """
    template = get_template(template_name)
    eos, bos = tokenizer.eos_token_id, tokenizer.bos_token_id
    assert len(rows) == len(records)
    prompts, spans = [], []
    for index, (row, record) in enumerate(zip(rows, records)):
        ids, labels = row["input_ids"], row["labels"]
        assert row["attention_mask"] == [1] * len(ids), index
        supervised = [i for i, label in enumerate(labels) if label != -100]
        assert supervised, index
        assert all(labels[i] == ids[i] for i in supervised), index  # rule 1
        if bos is not None and bos != eos:
            assert ids.count(bos) <= 1, index  # rule 4: at most one BOS
        messages = to_messages(record)
        replies = [k for k, m in enumerate(messages) if m["role"] == "assistant"]
        starts = [i for i in supervised if i == 0 or labels[i - 1] == -100]
        ends = [i for i in supervised if i + 1 == len(labels) or labels[i + 1] == -100]
        assert len(starts) == len(replies), index
        for k, start, end in zip(replies, starts, ends):
            history = {"messages": messages[:k + 1]} if "messages" in record else record
            prompts.append(render_prompt(history, template, tokenizer))
            spans.append((index, start, end, messages[k]["content"]))
    expected = tokenizer(prompts, add_special_tokens=template.add_special_tokens)["input_ids"]
    texts = tokenizer.batch_decode([rows[i]["input_ids"][a:b] for i, a, b, _ in spans])
    for (index, start, end, reply), prompt_ids, text in zip(spans, expected, texts):
        ids = rows[index]["input_ids"]
        assert ids[:start] == prompt_ids, f"record {index}: prompt ids differ from inference"  # rule 3
        assert ids[end] == eos, index  # rule 2: EOS closes the reply, supervised
        assert " ".join(text.split()) == " ".join(reply.split()), index  # rule 6


def prepare_and_load(tmp_path, capsys, data, template, tokenizer="tiny", *extra):
    out = tmp_path / f"out-{template}-{tokenizer}"
    status, stdout, err = run(["prepare", data, "--template", template, *tokenizer_args(tokenizer),
                               "--out", out, "--quiet", *extra], capsys)
    assert status == 0, err
    return datasets.load_from_disk(str(out)), json.loads((out / "stats.json").read_text()), stdout, err


# ---- the shipped sample data --------------------------------------------------------------------

@pytest.mark.parametrize("data,template", [
    ("alpaca_samples.jsonl", "alpaca"), ("alpaca_samples.jsonl", "vicuna"),
    ("conversations_samples.jsonl", "vicuna"), ("conversations_samples.jsonl", "human_assistant"),
    ("conversations_samples.jsonl", "chat_template")])
def test_prepare_writes_the_dataset_and_stats(tmp_path, capsys, data, template):
    path = SAMPLES / data
    dataset, stats, stdout, _ = prepare_and_load(tmp_path, capsys, path, template)
    assert dataset.column_names == ["input_ids", "attention_mask", "labels"]
    assert STATS_KEYS <= set(stats)
    records = list(iter_records(path))
    assert stats["records"] == len(records) and stats["rows"] == len(dataset) == len(records)
    assert stats["invalid"] == stats["dropped"] == stats["truncated"] == 0
    assert stats["tokens"] == sum(len(r) for r in dataset["input_ids"])
    assert stats["supervised_tokens"] == sum(x != -100 for r in dataset["labels"] for x in r)
    lengths = sorted(len(r) for r in dataset["input_ids"])
    assert stats["lengths"]["min"] == lengths[0] and stats["lengths"]["max"] == lengths[-1]
    check_contract(dataset.to_list(), records, load_any_tokenizer("tiny"), template)
    assert f"wrote {len(records)} rows" in stdout
    assert leftovers(tmp_path) == []


def test_prepare_pack_keeps_every_example_whole(tmp_path, capsys):
    path = SAMPLES / "alpaca_samples.jsonl"
    plain, _, _, _ = prepare_and_load(tmp_path, capsys, path, "alpaca")
    (tmp_path / "p").mkdir()
    packed, stats, _, _ = prepare_and_load(tmp_path / "p", capsys, path, "alpaca", "tiny", "--pack",
                                           "--max-length", "300")
    assert packed.column_names == ["input_ids", "attention_mask", "labels", "position_ids"]
    assert stats["packed"] and stats["rows"] == len(packed) < len(plain) and stats["examples"] == len(plain)
    assert stats["packing_efficiency"]["packed"] > stats["packing_efficiency"]["padded"]
    examples = []
    for row in packed:
        assert len(row["input_ids"]) <= 300 and row["attention_mask"] == [1] * len(row["input_ids"])
        starts = [i for i, p in enumerate(row["position_ids"]) if p == 0] + [len(row["input_ids"])]
        for a, b in zip(starts, starts[1:]):
            assert row["position_ids"][a:b] == list(range(b - a))
            examples.append((tuple(row["input_ids"][a:b]), tuple(row["labels"][a:b])))
    # the same examples as unpacked, each with its first label -100 (it was already: BOS / prompt)
    assert sorted(examples) == sorted((tuple(r["input_ids"]), tuple(r["labels"])) for r in plain)


def test_prepare_max_length_drop_and_truncate(tmp_path, capsys):
    path = SAMPLES / "alpaca_samples.jsonl"
    plain, _, _, _ = prepare_and_load(tmp_path, capsys, path, "alpaca")
    lengths = sorted(len(r) for r in plain["input_ids"])
    limit = lengths[len(lengths) // 2]
    too_long = sum(n > limit for n in lengths)
    (tmp_path / "d").mkdir()
    dropped, stats, _, _ = prepare_and_load(tmp_path / "d", capsys, path, "alpaca", "tiny", "--max-length", limit)
    assert stats["dropped"] == too_long and stats["rows"] == len(dropped) == len(plain) - too_long
    assert max(len(r) for r in dropped["input_ids"]) <= limit
    (tmp_path / "t").mkdir()
    cut, stats, _, _ = prepare_and_load(tmp_path / "t", capsys, path, "alpaca", "tiny", "--max-length", limit,
                                        "--truncation", "truncate")
    assert stats["truncated"] + stats["dropped"] == too_long and stats["rows"] == len(cut)
    assert all(len(r) <= limit for r in cut["input_ids"])
    assert all(any(x != -100 for x in r) for r in cut["labels"])


def test_num_proc_gives_the_same_rows(tmp_path, capsys):
    path = SAMPLES / "alpaca_samples.jsonl"
    one, stats_one, _, _ = prepare_and_load(tmp_path, capsys, path, "alpaca")
    (tmp_path / "two").mkdir()
    two, stats_two, _, _ = prepare_and_load(tmp_path / "two", capsys, path, "alpaca", "tiny", "--num-proc", 2)
    assert two.to_list() == one.to_list() and stats_two == stats_one


# ---- every real data file, every applicable template, every tokenizer ----------------------------

REAL_FILES = {
    "llamafactory_alpaca_zh_demo.json": ("alpaca", "vicuna", "human_assistant", "chat_template"),
    "llamafactory_alpaca_en_demo.json": ("alpaca", "vicuna", "human_assistant", "chat_template"),
    "llamafactory_identity.json": ("alpaca", "vicuna", "chat_template"),
    "stanford_alpaca_seed_tasks.jsonl": ("alpaca", "human_assistant"),
    "fastchat_dummy_conversation.json": ("vicuna", "human_assistant", "chat_template"),
}


@pytest.mark.parametrize("tokenizer", ["gpt2", "llama", "mistral", "qwen2"])
@pytest.mark.parametrize("file", sorted(REAL_FILES))
def test_prepare_real_data_keeps_the_contract(tmp_path, capsys, real_data_dir, file, tokenizer):
    path = real_data_dir / file
    tok = load_any_tokenizer(tokenizer)
    records = list(iter_records(path))
    for template in REAL_FILES[file]:
        if template == "chat_template" and not tok.chat_template:
            status, _, err = run(["prepare", path, "--template", template, *tokenizer_args(tokenizer),
                                  "--out", tmp_path / "none", "--quiet"], capsys)
            assert status != 0 and "chat_template" in err and not (tmp_path / "none").exists()
            continue
        dataset, stats, _, _ = prepare_and_load(tmp_path, capsys, path, template, tokenizer)
        assert stats["records"] == len(records) and stats["invalid"] == 0
        check_contract(dataset.to_list(), records, tok, template)
        if template == "alpaca":  # the contract's subtle case: merges are handled and counted
            assert stats["boundary_merges"] >= 0
    assert leftovers(tmp_path) == []


def test_alpaca_on_multi_turn_real_data_lists_each_record(tmp_path, capsys, real_data_dir):
    """FastChat's file has 2-, 4- and 6-turn conversations; alpaca takes only the single exchanges."""
    path = real_data_dir / "fastchat_dummy_conversation.json"
    records = list(iter_records(path))
    multi = [i for i, r in enumerate(records) if len(r["messages"]) > 2]
    status, _, err = run(["prepare", path, "--template", "alpaca", "--out", tmp_path / "o", "--quiet"], capsys)
    lines = err.strip().splitlines()
    assert status == 1 and not (tmp_path / "o").exists()
    assert lines[:-1] == [f"{path}:[{i}]: messages: " + lines[n].split(": messages: ", 1)[1]
                          for n, i in enumerate(multi)]
    assert all("alpaca template" in line for line in lines[:-1])
    dataset, stats, _, err = prepare_and_load(tmp_path, capsys, path, "alpaca", "tiny", "--on-error", "skip")
    assert stats["invalid"] == len(multi) and stats["rows"] == len(records) - len(multi)
    assert err.count("skipped: ") == len(multi)


# ---- bad input ----------------------------------------------------------------------------------

def test_bad_jsonl_lists_every_problem_and_writes_nothing(tmp_path, capsys):
    path = DATA / "cli_bad.jsonl"
    status, out, err = run(["prepare", path, "--template", "alpaca", "--out", tmp_path / "o"], capsys)
    assert status == 1 and not (tmp_path / "o").exists() and leftovers(tmp_path) == []
    lines = err.strip().splitlines()
    assert [line.split(": ")[:2] for line in lines[:-1]] == [
        [f"{path}:2", "output"], [f"{path}:3", "record"], [f"{path}:5", "instruction"], [f"{path}:6", "output"]]
    assert "missing" in lines[0] and "JSON" in lines[1] and "string" in lines[2] and "empty" in lines[3]
    assert lines[-1].startswith("error: 4 invalid records")


def test_bad_json_array_names_the_index(tmp_path, capsys):
    path = DATA / "cli_bad_array.json"
    status, _, err = run(["prepare", path, "--template", "vicuna", "--out", tmp_path / "o"], capsys)
    assert status == 1 and not (tmp_path / "o").exists()
    lines = err.strip().splitlines()
    assert [line.split(": ")[:2] for line in lines[:-1]] == [
        [f"{path}:[1]", "conversations[1].from"], [f"{path}:[2]", "conversations[0]"],
        [f"{path}:[3]", "conversations[0].from"]]
    assert "'bot'" in lines[0] and "user turn" in lines[1] and "alternate" in lines[2]


def test_on_error_skip_skips_and_counts(tmp_path, capsys):
    dataset, stats, _, err = prepare_and_load(tmp_path, capsys, DATA / "cli_bad.jsonl", "alpaca", "tiny",
                                              "--on-error", "skip")
    assert stats["invalid"] == 4 and stats["records"] == 2 and len(dataset) == 2
    assert err.count("skipped: ") == 4


def test_template_problems_are_located(tmp_path, capsys):
    path = DATA / "cli_multi_turn.jsonl"
    status, _, err = run(["prepare", path, "--template", "alpaca", "--out", tmp_path / "o"], capsys)
    assert status == 1 and not (tmp_path / "o").exists()
    assert err.splitlines()[0].startswith(f"{path}:2: messages: alpaca template")


def test_existing_output_is_kept_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    status, _, err = run(["prepare", SAMPLES / "alpaca_samples.jsonl", "--template", "alpaca", "--out", out], capsys)
    assert status == 2 and "already exists" in err and (out / "keep.txt").read_text() == "mine"
    # --overwrite replaces earlier outputs only: a folder of the user's own files stays (changed in issue 14)
    status, _, err = run(["prepare", SAMPLES / "alpaca_samples.jsonl", "--template", "alpaca", "--out", out,
                          "--overwrite", "--quiet"], capsys)
    assert status == 2 and "not an output of this toolkit" in err and (out / "keep.txt").read_text() == "mine"
    earlier = tmp_path / "earlier"
    status, _, err = run(["prepare", SAMPLES / "alpaca_samples.jsonl", "--template", "alpaca", "--out", earlier,
                          "--quiet"], capsys)
    assert status == 0, err
    (earlier / "extra.txt").write_text("from the earlier run")
    status, _, err = run(["prepare", SAMPLES / "alpaca_samples.jsonl", "--template", "alpaca", "--out", earlier,
                          "--overwrite", "--quiet"], capsys)
    assert status == 0 and not (earlier / "extra.txt").exists() and (earlier / "stats.json").exists()
    assert leftovers(tmp_path) == []


def test_a_failure_while_saving_leaves_nothing(tmp_path, capsys, monkeypatch):
    def broken(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(datasets.Dataset, "save_to_disk", broken)
    # a message and exit status 1, not a traceback (changed in issue 14; tests/test_bad_input.py has the rest)
    status, _, err = run(["prepare", SAMPLES / "alpaca_samples.jsonl", "--template", "alpaca", "--out",
                          tmp_path / "o", "--quiet"], capsys)
    assert status == 1 and "disk full; nothing was written" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv,message", [
    (["--tokenizer", "gpt2"], "runs offline"),
    (["--tokenizer", "Qwen/Qwen2-0.5B"], "never downloads from the Hugging Face Hub"),
    (["--template", "chatml"], "unknown template"),
    (["--pack"], "--pack needs --max-length"),
])
def test_usage_errors(tmp_path, capsys, argv, message):
    args = ["prepare", SAMPLES / "alpaca_samples.jsonl", "--template", "alpaca", "--out", tmp_path / "o", *argv]
    status, _, err = run(args, capsys)
    assert status == 2 and message in err and not (tmp_path / "o").exists()


def test_missing_and_empty_files(tmp_path, capsys):
    status, _, err = run(["stats", tmp_path / "nope.jsonl", "--template", "alpaca"], capsys)
    assert status == 2 and "no such file" in err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    status, _, err = run(["stats", empty, "--template", "alpaca"], capsys)
    assert status == 1 and "no records" in err


# ---- inspect and stats --------------------------------------------------------------------------

def test_inspect_shows_the_mask(capsys):
    status, out, _ = run(["inspect", SAMPLES / "conversations_samples.jsonl", "--template", "vicuna", "-n", 2,
                          "--color", "never"], capsys)
    assert status == 0
    assert out.count("── example") == 2
    records = list(iter_records(SAMPLES / "conversations_samples.jsonl"))[:2]
    replies = sum(m["role"] == "assistant" for r in records for m in r["messages"])
    assert out.count("</s>]") == replies  # each reply's run closes with its EOS
    assert "ASSISTANT:[" in out.replace("|", "")
    status, coloured, _ = run(["inspect", SAMPLES / "alpaca_samples.jsonl", "--template", "alpaca", "-n", 1,
                               "--color", "always"], capsys)
    assert status == 0 and "\x1b[30;42m" in coloured
    assert "### Response:" in ANSI.sub("", coloured).replace("·", " ")


def test_inspect_reports_bad_records_and_goes_on(capsys):
    status, out, err = run(["inspect", DATA / "cli_bad.jsonl", "--template", "alpaca", "-n", 5,
                            "--color", "never"], capsys)
    assert status == 0 and out.count("── example") == 2
    assert f"{DATA / 'cli_bad.jsonl'}:2: output: missing" in err


def test_stats_agrees_with_prepare(tmp_path, capsys):
    path = SAMPLES / "alpaca_samples.jsonl"
    _, prepared, _, _ = prepare_and_load(tmp_path, capsys, path, "alpaca")
    status, out, _ = run(["stats", path, "--template", "alpaca", "--json", "--quiet"], capsys)
    assert status == 0 and json.loads(out) == prepared
    status, table, _ = run(["stats", path, "--template", "alpaca", "--quiet"], capsys)
    assert re.search(rf"^supervised tokens\s+{prepared['supervised_tokens']} ", table, flags=re.M)
    assert re.search(r"^length \(tokens\)\s+min \d+", table, flags=re.M)


def test_python_dash_m_utils(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "utils", "prepare", str(SAMPLES / "alpaca_samples.jsonl"),
                           "--template", "alpaca", "--out", str(tmp_path / "o"), "--pack", "--max-length", "256"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout and (tmp_path / "o" / "stats.json").exists()
    assert "encode" in done.stderr  # the progress bar
    done = subprocess.run([sys.executable, "-m", "utils", "stats", str(DATA / "cli_bad.jsonl"), "--template",
                           "alpaca"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1 and done.stderr.count(f"{DATA / 'cli_bad.jsonl'}:") == 4


# ---- several files, Parquet, every kind ---------------------------------------------------------

def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def test_several_files_each_in_its_own_format_and_a_glob(tmp_path, capsys):
    files = [SAMPLES / "alpaca_samples.jsonl", SAMPLES / "conversations_samples.jsonl"]
    out = tmp_path / "out"
    status, _, err = run(["prepare", *files, "--template", "vicuna", "--out", out, "--quiet"], capsys)
    assert status == 0, err
    dataset, stats = datasets.load_from_disk(str(out)), json.loads((out / "stats.json").read_text())
    records = [r for f in files for r in iter_records(f)]
    assert stats["rows"] == len(dataset) == len(records) and stats["kind"] == "sft"
    assert [f["records"] for f in stats["files"]] == [len(list(iter_records(f))) for f in files]
    assert stats["tokens"] == sum(len(r) for r in dataset["input_ids"])
    check_contract(dataset.to_list(), records, load_any_tokenizer("tiny"), "vicuna")
    for f in files:
        (tmp_path / f.name).write_bytes(f.read_bytes())
    status, _, err = run(["prepare", tmp_path / "*_samples.jsonl", "--template", "vicuna", "--out", tmp_path / "g",
                          "--quiet"], capsys)
    assert status == 0, err
    assert datasets.load_from_disk(str(tmp_path / "g"))["input_ids"] == dataset["input_ids"]


def test_parquet_input_gives_the_same_rows(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = SAMPLES / "alpaca_samples.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, _, _, _ = prepare_and_load(tmp_path / "a", capsys, path, "alpaca")
    b, _, _, _ = prepare_and_load(tmp_path / "b", capsys, tmp_path / "d.parquet", "alpaca")
    assert a.to_dict() == b.to_dict() and len(a) == len(rows)


PAIRS = [{"prompt": "2+2?", "chosen": "4", "rejected": "5"}, {"prompt": "你好", "chosen": "你好！", "rejected": "走开。"}]
KTO = [{"prompt": "2+2?", "completion": "4", "label": True}, {"prompt": "2+2?", "completion": "5", "label": False}]


def test_a_mix_of_kinds_is_refused_and_kto_is_never_sft(tmp_path, capsys):
    pairs, kto = write_jsonl(tmp_path / "pairs.jsonl", PAIRS), write_jsonl(tmp_path / "kto.jsonl", KTO)
    status, _, err = run(["prepare", pairs, kto, "--template", "vicuna", "--out", tmp_path / "o"], capsys)
    assert status == 2 and "different kinds of records" in err and f"{kto}: kto" in err
    status, _, err = run(["prepare", kto, "--kind", "sft", "--template", "vicuna", "--out", tmp_path / "o"], capsys)
    assert status == 1 and not (tmp_path / "o").exists()
    assert err.splitlines()[0] == (f"{kto}:1: label: a KTO record (label true: a desirable answer) given to the sft "
                                   "path: trained as an SFT example, an undesirable answer would be learned like a "
                                   "good one; prepare it with --kind kto (utils.preference)")
    assert err.splitlines()[1].startswith(f"{kto}:2: label: a KTO record (label false: an undesirable answer)")


@pytest.mark.parametrize("kind", ["preference", "kto"])
def test_prepare_preference_and_kto(tmp_path, capsys, kind):
    from utils.preference import encode_preference_dataset

    path = write_jsonl(tmp_path / "d.jsonl", PAIRS if kind == "preference" else KTO)
    out = tmp_path / "out"
    status, stdout, err = run(["prepare", path, "--template", "human_assistant", "--out", out, "--quiet"], capsys)
    assert status == 0, err
    dataset, stats = datasets.load_from_disk(str(out)), json.loads((out / "stats.json").read_text())
    want = encode_preference_dataset(list(iter_records(path, kind=kind)), load_any_tokenizer("tiny"),
                                     "human_assistant", kind=kind).dataset
    assert dataset.to_dict() == want.to_dict()
    assert (stats["kind"], stats["records"], stats["rows"], stats["invalid"]) == (kind, 2, 2, 0)
    assert stats["answer_tokens"] == sum(len(x) for c in dataset.column_names if c.endswith("_ids")
                                         and c != "prompt_ids" for x in dataset[c])
    status, shown, _ = run(["inspect", path, "--template", "human_assistant", "-n", 1, "--color", "never"], capsys)
    assert status == 0 and shown.count("── example 1") == (2 if kind == "preference" else 1)


def test_prepare_real_dpo_file(tmp_path, capsys, real_data_dir):
    path = real_data_dir / "llamafactory_dpo_zh_demo.json"
    out = tmp_path / "out"
    status, _, err = run(["prepare", path, "--template", "chat_template", "--out", out, "--quiet"], capsys)
    assert status == 0, err
    stats = json.loads((out / "stats.json").read_text())
    assert (stats["kind"], stats["records"], stats["rows"], stats["invalid"]) == ("preference", 300, 300, 0)
    assert datasets.load_from_disk(str(out)).column_names == ["prompt_ids", "chosen_ids", "rejected_ids"]


def test_prepare_pretraining_text(tmp_path, capsys):
    from utils.pretrain import prepare_pretrain

    docs = ["今天天气真好。" * 5, "Hello world. " * 7, "短。"]
    (tmp_path / "a.txt").write_text(docs[0], encoding="utf-8")
    write_jsonl(tmp_path / "b.jsonl", [{"text": d} for d in docs[1:]])
    out = tmp_path / "out"
    status, stdout, err = run(["prepare", tmp_path / "a.txt", tmp_path / "b.jsonl", "--max-length", 16, "--drop-last",
                               "--restart-positions", "--out", out, "--quiet"], capsys)
    assert status == 0, err
    dataset, stats = datasets.load_from_disk(str(out)), json.loads((out / "stats.json").read_text())
    want = prepare_pretrain(docs, load_any_tokenizer("tiny"), 16, remainder="drop", restart_positions=True)
    assert dataset.to_dict() == want.dataset.to_dict()
    assert (stats["kind"], stats["documents"], stats["tokens"], stats["blocks"], stats["dropped_tokens"]) == (
        "pretrain", 3, want.tokens, want.blocks, want.dropped_tokens)
    assert stats["blocks"] * 16 + stats["dropped_tokens"] == stats["tokens"]
    assert "dropped" in stdout
    status, _, err = run(["stats", tmp_path / "a.txt", "--json"], capsys)
    assert status == 2 and "--max-length" in err


def test_chat_template_kwargs_and_tool_records(tmp_path, capsys, real_data_dir):
    from utils.encode import encode_dataset

    path = SAMPLES / "conversations_samples.jsonl"
    status, _, err = run(["stats", path, "--template", "chat_template", "--chat-template-kwargs", "{bad"], capsys)
    assert status == 2 and "--chat-template-kwargs: not valid JSON" in err
    status, _, err = run(["stats", path, "--template", "chat_template", "--chat-template-kwargs", "{}", "--quiet"],
                         capsys)
    assert status == 0, err  # empty: nothing passed on
    status, _, err = run(["stats", path, "--template", "chat_template", "--chat-template-kwargs",
                          '{"enable_thinking": false}', "--quiet"], capsys)
    import inspect as inspect_module

    if "chat_template_kwargs" in inspect_module.signature(encode_dataset).parameters:
        assert status == 0, err
    else:
        assert status == 2 and "no chat_template_kwargs option" in err
    tools = real_data_dir / "llamafactory_glaive_toolcall_zh_demo.json"
    status, _, err = run(["stats", tools, "--template", "vicuna", "--quiet"], capsys)
    lines = err.strip().splitlines()
    assert status == 1 and len(lines) == 201  # the 200 records with tools or calls, one line each, and the summary
    assert lines[0].endswith("tools: the 'vicuna' template (with this tokenizer) does not write tool schemas and tool "
                             "calls into the text; this record would be trained without them. Use a chat template "
                             "that renders tools")
