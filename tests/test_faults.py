"""Faults (issue 14 §3): ``python -m utils prepare`` killed (SIGKILL) or interrupted (SIGINT, Ctrl-C) at
each phase -- read, encode, save, commit -- never loses the previous output or leaves a half-written one,
and the next run leaves nothing behind.

Each case starts the real command in a subprocess through ``tests/fault_driver.py``, which only adds a
pause at the chosen phase (it prints ``FAULT-PAUSED``); the test then signals the process at that moment.
Every case runs ``prepare --overwrite`` over an earlier output written with another template, so "the old
output, intact" and "the new output, complete" can be told apart by ``stats.json``'s template.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import datasets
import pytest

from conftest import ROOT
from utils.cli import main

DRIVER = Path(__file__).parent / "fault_driver.py"
RECORDS = [{"instruction": f"Repeat the number {i}", "input": "", "output": f"{i} {i} {i}"} for i in range(60)]
TIMEOUT = 120


@pytest.fixture(autouse=True)
def quiet_progress_bars():
    datasets.disable_progress_bars()
    yield


@pytest.fixture
def setup(tmp_path, capsys):
    """``(data, out)``: a data file and an earlier output of it (template ``vicuna``) at ``out``."""
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in RECORDS), encoding="utf-8")
    out = tmp_path / "out"
    assert main(["prepare", str(data), "--template", "vicuna", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    return data, out


class Paused:
    """The driver in a subprocess (its own process group), stopped at ``phase``."""

    def __init__(self, phase: str, argv: list, go: Path):
        env = {**os.environ, "FAULT_PHASE": phase, "FAULT_GO": str(go), "PYTHONPATH": str(ROOT),
               "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        self.go = go
        self.process = subprocess.Popen([sys.executable, str(DRIVER), *map(str, argv)], env=env, cwd=ROOT,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        start_new_session=True)
        self.lines: queue.Queue = queue.Queue()
        self.err: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                self.process.kill()
                raise AssertionError(f"never reached {phase}: {''.join(self.err)[-2000:]}") from None
            if line is None:
                raise AssertionError(f"ended before {phase}: {''.join(self.err)[-2000:]}")
            if line.startswith("FAULT-PAUSED"):
                return

    def _read(self):
        for line in self.process.stderr:
            self.err.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def signal(self, sig: int, group: bool = False) -> None:
        if group:
            os.killpg(self.process.pid, sig)
        else:
            os.kill(self.process.pid, sig)

    def resume(self) -> None:
        self.go.write_text("go")

    def wait(self) -> tuple[int, str, str]:
        try:
            code = self.process.wait(timeout=TIMEOUT)  # reaped: its process id is free, as after a real kill
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            raise AssertionError(f"still running {TIMEOUT} s after the signal: {''.join(self.err)[-2000:]}") from None
        stdout = self.process.stdout.read()  # a few lines: the pipe never fills while the process runs
        time.sleep(0.05)
        return code, stdout, "".join(self.err)


def temporary(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".tmp-" in p.name)


def template_of(out: Path) -> str:
    """The template of the output at ``out``, after checking that it is complete (loads, counts agree)."""
    stats = json.loads((out / "stats.json").read_text())
    dataset = datasets.load_from_disk(str(out))
    assert len(dataset) == stats["rows"] == len(RECORDS)
    return stats["template"]


def no_group_left(pgid: int) -> bool:
    for _ in range(100):
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


ARGS = ["--template", "alpaca", "--quiet", "--overwrite"]


@pytest.mark.parametrize("phase", ["read", "encode", "save", "commit", "commit-fallback"])
def test_sigkill_at_each_phase(tmp_path, capsys, setup, phase):
    data, out = setup
    run = Paused(phase, ["prepare", data, "--out", out, *ARGS], tmp_path / "go")
    run.signal(signal.SIGKILL, group=True)
    code, stdout, _ = run.wait()
    assert code == -signal.SIGKILL and "wrote" not in stdout
    assert temporary(tmp_path) != []  # what kill -9 leaves: the next run must deal with it
    if phase == "commit":
        assert template_of(out) == "alpaca"  # swapped in one step: the new output, complete
    elif phase == "commit-fallback":
        assert not out.exists()  # a file system that cannot swap: the old output waits in the temporary folder
    else:
        assert template_of(out) == "vicuna"  # the earlier output, untouched
    # the next run: stale folders removed (an interrupted replacement put back first), nothing left behind
    if phase == "commit-fallback":
        code = main(["prepare", str(data), "--out", str(out), "--template", "alpaca", "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and f"note: restored {out} from {tmp_path}" in err and "already exists" in err
        assert template_of(out) == "vicuna"
    else:
        code = main(["prepare", str(data), "--out", str(out), *ARGS])
        err = capsys.readouterr().err
        assert code == 0, err
        assert template_of(out) == "alpaca"
    assert f"a temporary folder left by process {run.process.pid}, which ended before finishing" in err
    assert temporary(tmp_path) == []


@pytest.mark.parametrize("phase", ["read", "encode", "save", "commit"])
def test_ctrl_c_at_each_phase(tmp_path, setup, phase):
    data, out = setup
    run = Paused(phase, ["prepare", data, "--out", out, *ARGS], tmp_path / "go")
    run.signal(signal.SIGINT)
    if phase == "commit":
        time.sleep(0.3)  # the signal is held until the swap is recorded
        run.resume()
    code, stdout, err = run.wait()
    assert code == 130 and "Traceback" not in err and "wrote" not in stdout
    last = err.strip().splitlines()[-1]
    if phase == "commit":
        assert last == f"interrupted after {out} was written (it is complete)"
        assert template_of(out) == "alpaca"
    else:
        assert last == f"interrupted; nothing written to {out}"
        assert template_of(out) == "vicuna"
    assert temporary(tmp_path) == []  # nothing left behind, without waiting for another run


def test_ctrl_c_with_worker_processes(tmp_path, setup):
    """Ctrl-C reaches the whole process group: the workers of ``--num-proc 2`` too."""
    data, out = setup
    run = Paused("encode", ["prepare", data, "--out", out, "--num-proc", 2, *ARGS], tmp_path / "go")
    run.signal(signal.SIGINT, group=True)
    code, _, err = run.wait()
    assert code == 130 and "Traceback" not in err and "TimeoutError" not in err
    assert err.strip().splitlines()[-1] == f"interrupted; nothing written to {out}"
    assert template_of(out) == "vicuna" and temporary(tmp_path) == []
    assert no_group_left(run.process.pid)


def test_sigterm_cleans_up_like_ctrl_c(tmp_path, setup):
    data, out = setup
    run = Paused("encode", ["prepare", data, "--out", out, *ARGS], tmp_path / "go")
    run.signal(signal.SIGTERM)
    code, _, err = run.wait()
    assert code == 143 and err.strip().splitlines()[-1] == f"terminated; nothing written to {out}"
    assert template_of(out) == "vicuna" and temporary(tmp_path) == []


def test_two_runs_to_one_out(tmp_path, capsys, setup):
    """The second run to finish never replaces the first one's output (the rename refuses to replace)."""
    data, _ = setup
    out = tmp_path / "shared"
    first = Paused("commit-new", ["prepare", data, "--out", out, "--template", "alpaca", "--quiet"], tmp_path / "go")
    assert main(["prepare", str(data), "--out", str(out), "--template", "vicuna", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert f"belongs to process {first.process.pid}, which may still be running; left as it is" in err
    first.resume()
    code, stdout, err = first.wait()
    assert code == 1 and "wrote" not in stdout
    assert err.strip().splitlines()[-1] == (f"error: {out} appeared while this run was working (another run writing "
                                            "the same --out?); it was left untouched and nothing was written")
    assert template_of(out) == "vicuna" and temporary(tmp_path) == []
