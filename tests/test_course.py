"""The shared notebook plumbing: set-up cell, Colab links, environment check, and JupyterLab itself."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import torch

from utils.course import REPO_URL, SETUP_CELL, check_environment, colab_url, pinned_versions, seed_everything

ROOT = Path(__file__).resolve().parents[1]


def test_setup_cell_installs_from_the_repo_url_only_in_colab():
    assert f"git+{REPO_URL}@" in SETUP_CELL
    assert 'if "google.colab" in sys.modules:' in SETUP_CELL
    assert SETUP_CELL.rstrip().endswith("setup_notebook()")


def test_colab_url_points_at_the_notebook_in_the_repo():
    owner_repo = REPO_URL.removeprefix("https://github.com/")
    assert colab_url("02_next_token.ipynb") == (
        f"https://colab.research.google.com/github/{owner_repo}/blob/main/notebooks/02_next_token.ipynb")


def test_check_environment_flags_a_version_that_differs_from_the_pin(tmp_path):
    pins = tmp_path / "constraints.txt"
    pins.write_text("torch==0.0.1\nnumpy==%s  # comment\n" % check_environment(["numpy"])["installed"][0])
    table = check_environment(["torch", "numpy", "no-such-package"], constraints_file=pins).set_index("package")
    assert table.loc["torch", "ok"] == False  # noqa: E712 (numpy bool)
    assert table.loc["numpy", "ok"] == True  # noqa: E712
    assert pd.isna(table.loc["no-such-package", "installed"]) and not table.loc["no-such-package", "ok"]


def test_repository_pins_are_read_and_installed():
    assert pinned_versions()["torch"] == "2.13.0"
    assert check_environment()["ok"].all()


def test_seed_everything_makes_torch_reproducible_on_two_threads():
    seed_everything(3)
    a = torch.rand(4)
    seed_everything(3)
    assert torch.equal(a, torch.rand(4)) and torch.get_num_threads() == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_jupyterlab_serves_the_course():
    """What `make lab` runs, started headless on loopback: the lab page and the notebooks answer."""
    port, token = _free_port(), "course-test"
    args = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--ServerApp.port={port}",
            "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}", "--ServerApp.open_browser=False"]
    if os.geteuid() == 0:
        args.append("--allow-root")
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, status = time.time() + 60, None
        while time.time() < deadline and status is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2):
                    status = "up"
            except OSError:
                assert proc.poll() is None, "JupyterLab exited during start-up"
                time.sleep(0.5)
        assert status == "up", "JupyterLab did not answer within 60 s"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/lab?token={token}", timeout=10) as r:
            assert r.status == 200 and b"JupyterLab" in r.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents/notebooks?token={token}", timeout=10) as r:
            assert b"00_setup.ipynb" in r.read()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
