"""Bad input (issue 14 §3): a clear message and exit status, never a traceback, never lost input.

Every case runs ``python -m utils`` in-process (:func:`utils.cli.main`) on copies of the files in
``tests/data/bad_input/`` (binary ones such as UTF-16 are made here) and checks four things: the exit
status, the message (``FILE:LINE: field: reason`` with the byte offset where that applies), nothing at
``OUT`` and no temporary folder beside it, and every input file byte-for-byte as before (sha256).
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import datasets
import pytest

from utils.cli import main

CORPUS = Path(__file__).parent / "data" / "bad_input"
GOOD = [{"instruction": "Say hello", "input": "", "output": "Hello!"},
        {"instruction": "把这句话翻译成英文", "input": "你好", "output": "Hello"},
        {"instruction": "Name a colour", "input": "", "output": "Blue"}]


@pytest.fixture(autouse=True)
def quiet_progress_bars():
    datasets.disable_progress_bars()
    yield


@pytest.fixture
def ws(tmp_path):
    """A workspace: the corpus copied to ``in/``, outputs under ``out/``; checks that inputs stay intact."""
    inputs = tmp_path / "in"
    shutil.copytree(CORPUS, inputs)
    (tmp_path / "out").mkdir()
    space = Workspace(tmp_path, inputs)
    space.before = space.digests()
    yield space
    assert space.digests() == space.before, "an input file was changed"


class Workspace:
    def __init__(self, root: Path, inputs: Path):
        self.root, self.inputs, self.out = root, inputs, root / "out"

    def digests(self) -> dict[str, str]:
        return {str(p.relative_to(self.root)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(self.root.rglob("*")) if p.is_file() and self.inputs in p.parents}

    def path(self, name: str) -> Path:
        return self.inputs / name

    def write(self, name: str, data: bytes) -> Path:
        path = self.inputs / name
        path.write_bytes(data)
        self.before = self.digests()
        return path


def run(argv, capsys):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err + out
    return status, out, err


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def prepare_fails(ws, capsys, data, *extra, status=1, out=None, template="alpaca"):
    """``prepare`` on ``data``: the status, stderr; nothing at OUT, no leftovers beside it."""
    out = out or ws.out / "o"
    existed = os.path.lexists(out)  # then the test checks that it is unchanged
    data = data if isinstance(data, (list, tuple)) else [data]
    code, stdout, err = run(["prepare", *data, "--template", template, "--out", out, "--quiet", *extra], capsys)
    assert code == status, err
    assert "wrote" not in stdout
    assert existed or not os.path.lexists(out)
    if os.path.lexists(out.parent) and out.parent.is_dir():
        assert [n for n in hidden(out.parent) if ".tmp-" in n] == []
    return err


def lines(err: str) -> list[str]:
    return err.strip().splitlines()


# ---- text that is not UTF-8 ---------------------------------------------------------------------

def test_invalid_bytes_give_line_byte_offset_and_column(ws, capsys):
    path = ws.path("invalid_bytes.jsonl")
    raw = path.read_bytes()
    offset = raw.index(b"\xff")
    column = offset - raw.index(b"\n") - 1 + 1  # 1-based, within line 2 (ASCII before the bad byte)
    err = prepare_fails(ws, capsys, path)
    assert lines(err)[0] == (f"{path}:2: record: not UTF-8 text: byte FF at byte offset {offset} of the file "
                             f"(column {column}): invalid start byte; it decodes as Latin-1 / Windows-1252: convert "
                             "the file, e.g. iconv -f WINDOWS-1252 -t UTF-8 (if that is its encoding)")
    assert lines(err)[-1].startswith("error: 1 invalid record in")
    assert not (ws.out / "o").exists()


@pytest.mark.parametrize("name,line,hint", [("latin1.jsonl", 2, "Latin-1 / Windows-1252"),
                                            ("gbk.jsonl", 2, "GBK / GB18030")])
def test_legacy_encodings_are_named(ws, capsys, name, line, hint):
    path = ws.path(name)
    err = prepare_fails(ws, capsys, path)
    first = lines(err)[0]
    assert first.startswith(f"{path}:{line}: record: not UTF-8 text: byte ") and hint in first


@pytest.mark.parametrize("encoding,bom,message", [
    ("utf-16", True, "the file is UTF-16 (little-endian) text (it starts with that byte-order mark), not UTF-8"),
    ("utf-16-be", False, "not UTF-8 text: a NUL byte at byte offset 0"),
    ("utf-16-le", False, "not UTF-8 text: a NUL byte at byte offset 1"),
    ("utf-32", True, "the file is UTF-32 (little-endian) text"),
])
def test_utf16_and_utf32_files_are_one_problem(ws, capsys, encoding, bom, message):
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in GOOD)
    data = text.encode(encoding)
    assert data.startswith((b"\xff\xfe", b"\xfe\xff")) == bom
    path = ws.write(f"{encoding}.jsonl", data)
    err = prepare_fails(ws, capsys, path)
    assert lines(err)[0].startswith(f"{path}:1: file: {message}")
    assert len(lines(err)) == 2  # one problem for the whole file, then the summary


def test_compressed_file_says_decompress(ws, capsys):
    path = ws.write("data.jsonl", gzip.compress(b'{"instruction": "a", "output": "b"}\n'))
    err = prepare_fails(ws, capsys, path)
    assert lines(err)[0] == f"{path}:1: file: not text: this is a gzip-compressed file: decompress it first (gunzip)"


@pytest.mark.parametrize("name", ["utf8_bom.jsonl", "utf8_bom.json"])
def test_utf8_bom_is_accepted(ws, capsys, name):
    """The format sniffer skips a UTF-8 byte-order mark; so does the reader: same rows as without it."""
    code, _, err = run(["prepare", ws.path(name), "--template", "alpaca", "--out", ws.out / "bom", "--quiet"], capsys)
    assert code == 0, err
    code, _, err = run(["prepare", ws.path("plain.jsonl"), "--template", "alpaca", "--out", ws.out / "plain",
                        "--quiet"], capsys)
    assert code == 0, err
    with_bom, without = (datasets.load_from_disk(str(ws.out / n)) for n in ("bom", "plain"))
    assert with_bom.to_dict() == without.to_dict() and len(with_bom) == len(GOOD)


def test_txt_document_not_utf8(ws, capsys):
    path = ws.write("book.txt", "line one\nline two\ncafé\n".encode("latin-1"))
    offset = path.read_bytes().index(b"\xe9")
    code, _, err = run(["prepare", path, "--kind", "pretrain", "--max-length", 8, "--out", ws.out / "o", "--quiet"],
                       capsys)
    assert code == 1 and not (ws.out / "o").exists()
    assert lines(err)[0].startswith(f"{path}:3: record: not UTF-8 text: byte E9 at byte offset {offset} of the file "
                                    "(column 4)")


# ---- JSON that parses but is not valid text / too deep ---------------------------------------------

def test_lone_surrogate_names_the_field(ws, capsys):
    path = ws.path("lone_surrogate.jsonl")
    err = prepare_fails(ws, capsys, path)
    assert lines(err)[0].startswith(f"{path}:2: instruction: lone surrogate \\ud800 at character 7: valid JSON but "
                                    "not valid Unicode")
    path = ws.path("lone_surrogate.json")
    err = prepare_fails(ws, capsys, path, out=ws.out / "o2")
    assert lines(err)[0].startswith(f"{path}:[1]: output: lone surrogate \\ude00 at character 0")


def test_a_good_surrogate_pair_is_fine(ws, capsys):
    path = ws.write("emoji.jsonl", b'{"instruction": "Smile", "output": "\\ud83d\\ude00"}\n')
    code, _, err = run(["prepare", path, "--template", "alpaca", "--out", ws.out / "o", "--quiet"], capsys)
    assert code == 0, err


@pytest.mark.parametrize("name,field", [("deep_nesting.jsonl", "record"), ("nested_120.jsonl", "meta")])
def test_deep_nesting_is_refused_not_a_recursion_error(ws, capsys, name, field):
    path = ws.path(name)
    err = prepare_fails(ws, capsys, path)
    assert lines(err)[0].startswith(f"{path}:2: {field}: nested more than 100 levels deep")
    code, _, err = run(["prepare", path, "--template", "alpaca", "--out", ws.out / "skip", "--on-error", "skip",
                        "--quiet"], capsys)
    assert code == 0 and json.loads((ws.out / "skip" / "stats.json").read_text())["invalid"] == 1


def test_deep_json_array(ws, capsys):
    path = ws.write("deep.json", b"[" + b"[" * 5000 + b"]" * 5000 + b"]")
    err = prepare_fails(ws, capsys, path)
    assert lines(err)[0].startswith(f"{path}:1: record: nested more than 100 levels deep")


# ---- files that cannot be read ---------------------------------------------------------------------

def test_unreadable_file(ws, capsys, monkeypatch):
    path = ws.path("plain.jsonl")
    if os.geteuid() != 0:
        path.chmod(0)
    else:  # root reads everything: simulate the refusal where the command opens the file
        import builtins

        real_open = builtins.open

        def refuse(file, *args, **kwargs):
            if Path(str(file)) == path:
                raise PermissionError(errno.EACCES, "Permission denied", str(file))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", refuse)
    try:
        err = prepare_fails(ws, capsys, path, status=2)
    finally:
        path.chmod(0o644)
    assert lines(err) == [f"error: {path}: cannot read it: Permission denied"]


def test_io_error_while_reading(ws, capsys, monkeypatch):
    import io

    import utils.formats

    class Failing(io.BytesIO):
        def __iter__(self):
            yield self.readline()
            raise OSError(errno.EIO, "Input/output error")

    path = ws.path("plain.jsonl")
    monkeypatch.setattr(utils.formats, "_open", lambda p: Failing(Path(p).read_bytes()))
    err = prepare_fails(ws, capsys, path)
    assert lines(err)[-1] == f"error: {path}: cannot read it: Input/output error; nothing written"


def test_directory_and_fifo_as_data(ws, capsys):
    err = prepare_fails(ws, capsys, ws.inputs, status=2)
    assert lines(err) == [f"error: {ws.inputs} is a directory; pass the data files in it (e.g. {ws.inputs}/*.jsonl)"]
    fifo = ws.inputs / "pipe.jsonl"
    os.mkfifo(fifo)
    for command in (["prepare", "--out", ws.out / "o"], ["stats"], ["inspect"]):
        code, _, err = run([command[0], fifo, "--template", "alpaca", *command[1:]], capsys)
        assert code == 2 and f"{fifo} is a named pipe (FIFO); the reader needs a regular file" in err
    fifo.unlink()


# ---- usage errors ---------------------------------------------------------------------------------

def test_empty_tokenizer_directory(ws, capsys, tmp_path):
    empty = tmp_path / "tok"
    empty.mkdir()
    err = prepare_fails(ws, capsys, ws.path("plain.jsonl"), "--tokenizer", empty, status=2)
    assert "this directory holds no tokenizer files" in err
    assert "sentencepiece" not in err and "tiktoken" not in err


def test_missing_chat_template_is_one_usage_error(ws, capsys, tmp_path):
    from utils.models import load_tokenizer

    tok = load_tokenizer()
    tok.chat_template = None
    tok.save_pretrained(str(tmp_path / "tok"))
    for name in os.listdir(tmp_path / "tok"):
        assert "chat_template" not in name
    many = ws.write("many.jsonl", "".join(json.dumps(GOOD[i % 3]) + "\n" for i in range(50)).encode())
    err = prepare_fails(ws, capsys, many, "--tokenizer", tmp_path / "tok", status=2, template="chat_template")
    assert lines(err) == ["error: --template chat_template: the tokenizer 'tok' has no chat template; use --template "
                          "alpaca, vicuna or human_assistant, or a tokenizer that has one"]
    for command in ("stats", "inspect"):
        code, _, err = run([command, many, "--template", "chat_template", "--tokenizer", tmp_path / "tok"], capsys)
        assert code == 2 and len(lines(err)) == 1 and "has no chat template" in err


@pytest.mark.parametrize("value", ["0", "-1", "cpus+1"])
def test_num_proc_is_bounded(ws, capsys, value):
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    value = str(cpus + 1) if value == "cpus+1" else value
    err = prepare_fails(ws, capsys, ws.path("plain.jsonl"), "--num-proc", value, status=2)
    assert lines(err) == [f"error: --num-proc must be between 1 and {cpus} (the CPUs this process may use), got "
                          f"{value}. It helps only when the tokenizer's own threads do not already keep every "
                          "core busy"]


@pytest.mark.parametrize("n", ["-1", "0"])
def test_inspect_n_must_be_positive(ws, capsys, n):
    with pytest.raises(SystemExit) as exit_:
        main(["inspect", str(ws.path("plain.jsonl")), "--template", "alpaca", "-n", n])
    assert exit_.value.code == 2
    assert f"argument -n: must be at least 1, got {n}" in capsys.readouterr().err


# ---- nothing left ---------------------------------------------------------------------------------

def test_every_record_dropped_is_an_error(ws, capsys):
    path = ws.path("plain.jsonl")
    err = prepare_fails(ws, capsys, path, "--max-length", 5)
    assert lines(err) == ["error: 0 rows: every record was dropped (3 longer than --max-length 5); raise --max-length, "
                          f"or pass --truncation truncate to keep their start; nothing written to {ws.out / 'o'}"]
    code, out, err = run(["stats", path, "--template", "alpaca", "--max-length", 5, "--quiet"], capsys)
    assert code == 1 and re.search(r"^dropped \(too long\)\s+3$", out, flags=re.M)  # the counts are still shown
    assert lines(err)[-1].startswith("error: 0 rows: every record was dropped (3 longer")


def test_pack_with_nothing_left(ws, capsys):
    err = prepare_fails(ws, capsys, ws.path("plain.jsonl"), "--pack", "--max-length", 2)
    assert lines(err) == ["error: nothing left to pack: 0 rows: every record was dropped (3 longer than --max-length "
                          "2); raise --max-length, or pass --truncation truncate to keep their start"]


def test_pretrain_without_a_full_block(ws, capsys):
    path = ws.write("short.txt", "短。".encode())
    err = prepare_fails(ws, capsys, path, "--kind", "pretrain", "--max-length", 64, "--drop-last")
    assert "0 blocks" in lines(err)[-1]


def test_inspect_when_no_example_can_be_shown(ws, capsys):
    code, _, err = run(["inspect", ws.path("multi_turn_only.jsonl"), "--template", "alpaca", "--color", "never"],
                       capsys)
    assert code == 1 and lines(err)[-1] == "error: no example to show (2 invalid)"
    assert len([line for line in lines(err) if ": messages: alpaca template" in line]) == 2
    code, out, err = run(["inspect", ws.path("plain.jsonl"), "--template", "alpaca", "--max-length", 5,
                          "--color", "never"], capsys)
    assert code == 1 and out.count("dropped: longer than --max-length 5") == 3
    assert lines(err)[-1] == "error: no example to show (3 longer than --max-length)"


def test_printed_records_equal_stats_json(ws, capsys):
    path = Path(__file__).parent / "data" / "cli_bad.jsonl"
    code, out, err = run(["prepare", path, "--template", "alpaca", "--out", ws.out / "o", "--on-error", "skip",
                          "--quiet"], capsys)
    assert code == 0, err
    stats = json.loads((ws.out / "o" / "stats.json").read_text())
    printed = {name.strip(): value.strip() for name, value in re.findall(r"^(\S[^\n]*?)\s{2,}(\S[^\n]*)$", out, re.M)}
    assert printed["records"] == str(stats["records"]) and printed["invalid (skipped)"] == str(stats["invalid"])
    assert (stats["records"], stats["invalid"]) == (2, 4)


# ---- OUT: never over the user's data --------------------------------------------------------------

def test_out_is_the_input_file(ws, capsys):
    path = ws.path("plain.jsonl")
    err = prepare_fails(ws, capsys, path, "--overwrite", out=path, status=2)
    assert lines(err) == [f"error: --out {path} is the input file {path}; writing there would destroy it: choose "
                          "another --out"]


def test_out_holds_the_input(ws, capsys):
    path = ws.path("plain.jsonl")
    err = prepare_fails(ws, capsys, path, "--overwrite", out=ws.inputs, status=2)
    assert f"--out {ws.inputs} holds the input file {path}; replacing it would delete your data" in err
    link = ws.root / "link"
    link.symlink_to(ws.inputs, target_is_directory=True)  # the same folder by another name
    err = prepare_fails(ws, capsys, path, "--overwrite", out=link, status=2)
    assert "holds the input file" in err
    link.unlink()


def test_out_inside_an_input_or_under_a_file(ws, capsys):
    path = ws.path("plain.jsonl")
    err = prepare_fails(ws, capsys, path, out=path / "o", status=2)
    assert lines(err) == [f"error: --out {path / 'o'} lies inside the input {path}: choose another --out"]
    other = ws.path("gbk.jsonl")
    err = prepare_fails(ws, capsys, path, out=other / "sub" / "o", status=2)
    assert lines(err) == [f"error: --out {other / 'sub' / 'o'}: {other} is a file, not a directory: choose another "
                          "--out"]


def test_overwrite_never_replaces_a_file_or_a_foreign_folder(ws, capsys):
    path = ws.path("plain.jsonl")
    mine = ws.out / "notes.txt"
    mine.write_text("my notes")
    err = prepare_fails(ws, capsys, path, "--overwrite", out=mine, status=2)
    assert "is an existing file, not an output directory; it is never replaced" in err
    assert mine.read_text() == "my notes"
    folder = ws.out / "folder"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    err = prepare_fails(ws, capsys, path, "--overwrite", out=folder, status=2)
    assert "is not an output of this toolkit" in err and (folder / "keep.txt").read_text() == "mine"


def test_overwrite_replaces_an_earlier_output_and_an_old_one(ws, capsys):
    path = ws.path("plain.jsonl")
    out = ws.out / "o"
    code, _, err = run(["prepare", path, "--template", "alpaca", "--out", out, "--quiet"], capsys)
    assert code == 0 and (out / ".utils-output.json").is_file()
    (out / ".utils-output.json").unlink()  # an output of an earlier version: stats.json + datasets' files
    code, _, err = run(["prepare", path, "--template", "vicuna", "--out", out, "--quiet", "--overwrite"], capsys)
    assert code == 0, err
    assert json.loads((out / "stats.json").read_text())["template"] == "vicuna"
    assert hidden(ws.out) == []


def test_out_appearing_while_the_run_works_is_never_replaced(ws, capsys, monkeypatch):
    path = ws.path("plain.jsonl")
    out = ws.out / "o"
    save = datasets.Dataset.save_to_disk

    def save_while_someone_writes_out(self, target, *args, **kwargs):
        out.mkdir()
        (out / "theirs.txt").write_text("another run's output")
        return save(self, target, *args, **kwargs)

    monkeypatch.setattr(datasets.Dataset, "save_to_disk", save_while_someone_writes_out)
    code, stdout, err = run(["prepare", path, "--template", "alpaca", "--out", out, "--quiet"], capsys)
    assert code == 1 and "wrote" not in stdout
    assert "already exists" in err and "it changed while this run was working" in err
    assert sorted(os.listdir(out)) == ["theirs.txt"] and hidden(ws.out) == []
    shutil.rmtree(out)
    code, _, err = run(["prepare", path, "--template", "alpaca", "--out", out, "--quiet", "--overwrite"], capsys)
    assert code == 1 and "is not an output of this toolkit" in err and "changed while this run" in err
    assert sorted(os.listdir(out)) == ["theirs.txt"] and hidden(ws.out) == []


def test_rename_noreplace_and_exchange(tmp_path):
    from utils.output import exchange, rename_noreplace

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    (a / "x").write_text("a")
    b.mkdir()
    (b / "x").write_text("b")
    with pytest.raises(FileExistsError):
        rename_noreplace(a, b)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileExistsError):  # not even an empty folder is replaced
        rename_noreplace(a, empty)
    if exchange(a, b):
        assert (a / "x").read_text() == "b" and (b / "x").read_text() == "a"
    rename_noreplace(a, tmp_path / "c")
    assert not a.exists() and (tmp_path / "c" / "x").exists()


# ---- the disk: full, read-only --------------------------------------------------------------------

@pytest.mark.parametrize("code,message", [
    (errno.ENOSPC, "no space left on the device that holds {parent} (writing {out}); nothing was written: free some "
                   "space or choose another --out"),
    (errno.EROFS, "{parent} is on a read-only file system (writing {out}); nothing was written: choose another --out"),
])
def test_disk_full_and_read_only_simulated(ws, capsys, monkeypatch, code, message):
    def failing(self, *args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(datasets.Dataset, "save_to_disk", failing)
    out = ws.out / "o"
    err = prepare_fails(ws, capsys, ws.path("plain.jsonl"), out=out)
    assert lines(err) == ["error: " + message.format(parent=ws.out, out=out)]
    assert hidden(ws.out) == []


def _mount_tmpfs(path: Path, options: str) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    return done.returncode == 0


@pytest.mark.parametrize("options,expected", [("size=96k", "no space left on the device that holds {mount} "),
                                              ("size=1m,ro", "{mount} is on a read-only file system")])
def test_disk_full_and_read_only_for_real(ws, capsys, options, expected):
    """A small or read-only tmpfs (needs root and mount; skipped elsewhere, the simulated test covers it)."""
    mount = ws.root / "disk"
    mount.mkdir()
    if not _mount_tmpfs(mount, options):
        pytest.skip("needs root and mount (tmpfs) to make a full / read-only file system")
    try:
        big = ws.write("big.jsonl", "".join(json.dumps({"instruction": f"Count to {i}", "output": " ".join(
            str(j) for j in range(60))}) + "\n" for i in range(400)).encode())
        out = mount / "sub" / "o"
        err = prepare_fails(ws, capsys, big, out=out)
        assert lines(err)[-1].startswith("error: " + expected.format(mount=mount))
        assert os.listdir(mount) == []  # not even the parent folder it created
    finally:
        import gc

        gc.collect()  # a failed run's memory-mapped files would keep the mount busy
        if subprocess.run(["umount", str(mount)]).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], check=True)


# ---- stats and inspect read the same way ------------------------------------------------------------

@pytest.mark.parametrize("name", ["invalid_bytes.jsonl", "latin1.jsonl", "gbk.jsonl", "lone_surrogate.jsonl",
                                  "deep_nesting.jsonl", "nested_120.jsonl", "utf-16"])
def test_stats_and_inspect_give_the_same_message(ws, capsys, name):
    if name == "utf-16":
        path = ws.write("utf16.jsonl", "".join(json.dumps(r) + "\n" for r in GOOD).encode("utf-16"))
    else:
        path = ws.path(name)
    first = lines(prepare_fails(ws, capsys, path))[0]
    assert first.startswith(f"{path}:")
    code, out, err = run(["stats", path, "--template", "alpaca", "--quiet"], capsys)
    assert code == 1 and lines(err)[0] == first
    code, out, err = run(["inspect", path, "--template", "alpaca", "--color", "never"], capsys)
    assert lines(err)[0] == first
    from utils.formats import iter_records

    valid = len(list(iter_records(path, on_error="skip", problems=[])))
    assert out.count("── example") == valid and code == (0 if valid else 1)


def test_bad_json_line_keeps_its_column(ws, capsys):
    """The line's own column, not one past its newline (a record cut short at its end)."""
    path = ws.write("cut.jsonl", b'{"instruction": "a", "output": "b"}\n{"instruction": "a", "output": "b"\n')
    err = prepare_fails(ws, capsys, path)
    assert lines(err)[0] == f"{path}:2: record: not valid JSON (Expecting ',' delimiter at column 35)"
