"""utils.output: the checks, the temporary folders' owners, stale folders (see also test_bad_input / test_faults)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from utils.output import (MARKER, OWNER, OutputError, ScratchDir, StagedOutput, check_output, clean_stale,
                          is_our_output)


def folder_owned_by(parent, prefix, pid, start=None, host=None, tag="abcd1234"):
    path = parent / f"{prefix}{pid}-{tag}"
    path.mkdir()
    (path / OWNER).write_text(json.dumps({"host": host or socket.gethostname(), "pid": pid, "start": start}))
    return path


def ended_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_clean_stale_removes_only_folders_of_ended_processes(tmp_path):
    from utils.output import _owner

    notes = []
    dead = folder_owned_by(tmp_path, ".o.tmp-", ended_pid())
    me = _owner()
    alive = folder_owned_by(tmp_path, ".o.tmp-", me["pid"], me["start"])
    reused = folder_owned_by(tmp_path, ".o.tmp-", me["pid"], "1", tag="reused00")  # our pid, another start time: a reused id
    remote = folder_owned_by(tmp_path, ".o.tmp-", ended_pid(), host="another-host")
    unknown = tmp_path / ".o.tmp-x7_kq2za"  # an older version's mkdtemp name, no owner record
    unknown.mkdir()
    no_record = tmp_path / f".o.tmp-{ended_pid()}-0000ffff"  # killed before it wrote its owner record
    no_record.mkdir()
    other = folder_owned_by(tmp_path, ".other.tmp-", ended_pid())  # another output's folder
    removed = clean_stale(tmp_path, ".o.tmp-", report=notes.append)
    assert sorted(removed) == sorted([dead, reused, no_record])
    assert alive.exists() and remote.exists() and unknown.exists() and other.exists()
    assert len(notes) == 6
    assert any("another-host" in n and "left as it is" in n for n in notes)
    assert any("no owner record" in n and str(unknown) in n for n in notes)


def test_a_stale_replacement_is_put_back(tmp_path):
    stale = folder_owned_by(tmp_path, ".o.tmp-", ended_pid())
    (stale / "old").mkdir()
    (stale / "old" / MARKER).write_text("{}")
    notes = []
    clean_stale(tmp_path, ".o.tmp-", restore_to=tmp_path / "o", report=notes.append)
    assert (tmp_path / "o" / MARKER).exists() and not stale.exists()
    assert notes[0].startswith(f"note: restored {tmp_path / 'o'}")


def test_scratch_dir_is_removed_and_owned(tmp_path):
    with ScratchDir(tmp_path, "utils-x-") as path:
        owner = json.loads((path / OWNER).read_text())
        assert owner["pid"] == os.getpid() and path.name.startswith(f"utils-x-{os.getpid()}-")
    assert not path.exists()


def test_a_failed_run_removes_the_parents_it_made(tmp_path):
    out = tmp_path / "a" / "b" / "out"
    with pytest.raises(RuntimeError):
        with StagedOutput(out) as stage:
            stage.path.mkdir()
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


def test_is_our_output_and_check(tmp_path):
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    for name in ("stats.json", "state.json", "dataset_info.json"):
        (legacy / name).write_text("{}")
    assert is_our_output(legacy)
    (legacy / "state.json").unlink()
    assert not is_our_output(legacy)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert check_output(empty, overwrite=True) == empty  # nothing to lose
    with pytest.raises(OutputError, match="already exists"):
        check_output(empty)
    with pytest.raises(OutputError, match="not an output of this toolkit"):
        check_output(legacy, overwrite=True)
    assert check_output(tmp_path / "f.jsonl", what="file") == tmp_path / "f.jsonl"
    (tmp_path / "f.jsonl").write_text("x")
    assert check_output(tmp_path / "f.jsonl", overwrite=True, what="file") == tmp_path / "f.jsonl"


def test_a_file_output(tmp_path):
    out = tmp_path / "kept.jsonl"
    with StagedOutput(out, what="file", command="curate") as stage:
        stage.path.write_text("a\n")
        stage.commit()
    assert out.read_text() == "a\n" and sorted(os.listdir(tmp_path)) == ["kept.jsonl"]
    with StagedOutput(out, what="file", overwrite=True) as stage:
        stage.path.write_text("b\n")
        stage.commit()
    assert out.read_text() == "b\n" and sorted(os.listdir(tmp_path)) == ["kept.jsonl"]
    with pytest.raises(OutputError, match="is the input file"):
        with StagedOutput(out, [out], what="file", overwrite=True):
            pass
