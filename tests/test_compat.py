"""The course on other versions than the pinned ones (Colab's; see scripts/compat_check.py, `make compat`).

What can be checked in the pinned environment: the code paths that differ between transformers 5.x
releases, the setup cell against Colab's published package list, and the toolkit with PyPI's unrelated
``utils`` package installed over it. The environments themselves are run by ``make compat``.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
from importlib import resources
from pathlib import Path
from types import SimpleNamespace

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
COLAB_LISTS = sorted((ROOT / "compat").glob("colab-*.txt"))


def colab_versions() -> dict[str, str]:
    assert COLAB_LISTS, "compat/colab-YYYY-MM.txt is missing"
    pins = {}
    for line in COLAB_LISTS[-1].read_text().splitlines():
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;#]+)", line.split("#")[0].strip())
        if m:
            pins[canonicalize_name(m[1])] = m[2]
    return pins


def requirements(*extras: str) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    return [Requirement(r) for r in reqs]


# --------------------------------------------------------------------------- transformers 5.x: the KV cache

def test_kv_cache_reads_either_name():
    from utils.generate import kv_cache

    old, new = object(), object()
    assert kv_cache(SimpleNamespace(past_key_values=old)) is old            # transformers <= 5.23
    assert kv_cache(SimpleNamespace(cache=new, past_key_values=new)) is new  # 5.24 keeps an alias
    assert kv_cache(SimpleNamespace(logits=None)) is None


def test_cache_arg_uses_the_name_the_forward_takes():
    from utils.generate import cache_arg

    class Old:
        def forward(self, input_ids=None, past_key_values=None, use_cache=None, **kwargs): ...

    class New:
        def forward(self, input_ids=None, cache=None, use_cache=None, **kwargs): ...

    c = object()
    assert cache_arg(Old(), c) == {"past_key_values": c}
    assert cache_arg(New(), c) == {"cache": c}
    from utils.models import load_causal_lm

    model = load_causal_lm()
    (name,) = cache_arg(model, None)
    assert name in ("cache", "past_key_values")


def test_hand_cached_loop_equals_generate_with_the_installed_names():
    import torch

    from utils.generate import cache_arg, greedy_decode, kv_cache
    from utils.models import load_causal_lm, load_tokenizer

    model, tok = load_causal_lm(), load_tokenizer()
    ids = tok("今天天气真", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=True, **cache_arg(model, None))
        cache = kv_cache(out)
        assert cache is not None and cache.get_seq_length() == ids.shape[1]
        nxt = out.logits[0, -1].argmax().reshape(1, 1)
        step = model(input_ids=nxt, use_cache=True, **cache_arg(model, cache))
        full = model(input_ids=torch.cat([ids, nxt], dim=1), use_cache=False)
    # the cache was really used: the one new token alone gives the full sequence's last logits
    torch.testing.assert_close(step.logits[0, -1], full.logits[0, -1], rtol=1e-4, atol=1e-5)
    assert kv_cache(step).get_seq_length() == ids.shape[1] + 1
    assert greedy_decode(model, tok, "今天天气真", max_new_tokens=8).new_ids == \
        greedy_decode(model, tok, "今天天气真", max_new_tokens=8, use_cache=False).new_ids


# --------------------------------------------------------------------------- eager attention everywhere

def test_eager_attention_reaches_every_sub_config_and_is_restored():
    from utils.models import load_seq2seq_lm
    from utils.viz.plots import _configs, _eager_attention

    model = load_seq2seq_lm()
    configs = _configs(model)
    assert len(configs) >= 3, "a T5 holds its own config plus one per stack"
    before = [c._attn_implementation for c in configs]
    for config in configs[1:]:            # what transformers 5.15 leaves behind: the stacks on sdpa
        config._attn_implementation = "sdpa"
    with _eager_attention(model):
        assert [c._attn_implementation for c in configs] == ["eager"] * len(configs)
    assert [c._attn_implementation for c in configs] == [before[0]] + ["sdpa"] * (len(configs) - 1)
    for config, impl in zip(configs, before):
        config._attn_implementation = impl


# --------------------------------------------------------------------------- tests collect anywhere

def test_no_test_imports_the_tests_package():
    """IPython 7.34 (Colab's) installs a top-level package named ``tests`` that shadows ours."""
    offenders = []
    for path in sorted((ROOT / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            offenders += [f"{path.name}:{node.lineno}: {n}" for n in names if n == "tests" or n.startswith("tests.")]
    assert not offenders, "import helpers as `from conftest import ...`: " + "; ".join(offenders)


def test_tests_collect_with_a_foreign_tests_package_on_the_path(tmp_path):
    fake = tmp_path / "shadow" / "tests"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "shadow")}
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           str(ROOT / "tests" / "test_generate.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


# --------------------------------------------------------------------------- PyPI's `utils` over ours

def test_cli_works_when_a_foreign_utils_replaced_the_package_init(tmp_path):
    """PyPI's ``utils`` 1.0.2 ships an empty ``utils/__init__.py`` (and bools, dates, dicts, enum, lists,
    math, objects): installed after the course, it replaces our ``__init__``. The CLI must still run."""
    import utils

    site = tmp_path / "site" / "utils"
    site.mkdir(parents=True)
    for entry in Path(utils.__file__).parent.iterdir():
        if entry.name not in ("__init__.py", "__pycache__"):
            (site / entry.name).symlink_to(entry)
    (site / "__init__.py").write_text("")                    # what the foreign distribution writes
    env = {**os.environ, "PYTHONPATH": str(site.parent), "PYTHONSAFEPATH": "1"}
    samples = resources.files("utils") / "data" / "alpaca_samples.jsonl"
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "utils", "prepare", str(samples), "--template", "alpaca",
                           "--out", str(out)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "stats.json").exists()
    where = subprocess.run([sys.executable, "-c", "import utils, utils._version as v; print(utils.__file__, v.__version__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert where[0] == str(site / "__init__.py") and where[1] == utils.__version__


def test_version_is_the_distributions():
    from importlib.metadata import version

    import utils
    from utils._version import FALLBACK

    assert utils.__version__ in (version("llm-data-handbook"), FALLBACK)
    assert utils.__version__ == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_newest_env_is_tested_again_only_when_a_pinned_version_differs():
    from nbexec import load_script

    differ = load_script("compat_check.py").differences_from_pins
    pins = {"torch": "2.13.0", "transformers": "5.24.0", "ray": "2.50.0"}
    # a CPU build tag is the same version; a pinned extra not installed (ray) is no difference
    assert differ({"torch": "2.13.0+cpu", "transformers": "5.24.0", "pip": "26.0"}, pins) == {}
    assert differ({"torch": "2.13.0+cpu", "transformers": "5.25.0"}, pins) == {"transformers": "5.24.0 -> 5.25.0"}
    assert differ({"torch": "2.15.0+cpu", "transformers": "5.24.0"}, pins) == {"torch": "2.13.0 -> 2.15.0+cpu"}


# --------------------------------------------------------------------------- Colab: the setup cell

def test_colab_list_is_dated_and_sourced():
    text = COLAB_LISTS[-1].read_text()
    assert re.search(r"colab-\d{4}-\d{2}\.txt$", COLAB_LISTS[-1].name)
    assert "github.com/googlecolab/backend-info" in text and re.search(r"\b20\d\d-\d\d-\d\d\b", text)


@pytest.mark.parametrize("req", requirements("serve"), ids=lambda r: r.name)
def test_colab_versions_satisfy_the_package_ranges(req):
    """So the setup cell's ``pip install`` (the ranges) keeps every library Colab already has."""
    colab = colab_versions()
    name = canonicalize_name(req.name)
    if name == "torch":   # installed from a URL in Colab (the list's comments)
        m = re.search(r"torch-(\d+\.\d+\.\d+)", COLAB_LISTS[-1].read_text())
        have = m[1]
    elif name not in colab:
        pytest.skip(f"Colab has no {req.name}: the setup cell installs it")
    else:
        have = colab[name]
    assert req.specifier.contains(Version(have), prereleases=True), (
        f"Colab has {req.name} {have}, outside pyproject's {req.specifier}: the setup cell would replace it")


def test_colab_python_satisfies_requires_python():
    from packaging.specifiers import SpecifierSet

    spec = SpecifierSet(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"])
    assert spec.contains("3.13") and spec.contains("3.11")


def test_setup_cell_installs_with_the_ranges_only():
    from utils.course import SETUP_CELL

    pip_lines = [line for line in SETUP_CELL.splitlines() if "pip install" in line]
    assert len(pip_lines) == 1
    line = pip_lines[0]
    for forbidden in ("constraints", " -c ", "--upgrade", " -U ", "--force-reinstall", "torch", "=="):
        assert forbidden not in line, f"the setup cell must not use {forbidden!r}: {line}"


def _recipe(makefile: str, target: str) -> tuple[str, list[str]]:
    """``(prerequisites, recipe lines)`` of ``target`` in a Makefile."""
    match = re.search(rf"^{re.escape(target)}:(.*)\n((?:\t.*\n?)*)", makefile, re.M)
    assert match, f"the Makefile has no {target!r} target"
    lines = [line.strip() for line in match.group(2).replace("\\\n", " ").splitlines() if line.strip()]
    return match.group(1).strip(), lines


def test_make_test_runs_the_compat_check_after_the_pinned_tests():
    """CI runs `make test` (tests/test_pins.py); the fresh environments must be part of it, after the
    pinned suite, and `make compat` must run the same check on its own."""
    makefile = (ROOT / "Makefile").read_text()
    prereqs, recipe = _recipe(makefile, "test")
    assert prereqs.split() == ["test-pinned"], prereqs
    assert [line for line in recipe if "scripts/compat_check.py" in line] == recipe[-1:], recipe
    pinned_prereqs, pinned = _recipe(makefile, "test-pinned")
    assert pinned_prereqs == "setup" and any("--nbval " in line and "tests notebooks" in line for line in pinned)
    assert any("scripts/compat_check.py" in line for line in _recipe(makefile, "compat")[1])
    readme = (ROOT / "README.md").read_text()
    assert "make test-pinned" in readme and "make compat" in readme


def test_fresh_environments_leave_out_the_extras_they_do_not_install():
    """Neither fresh environment installs the ``ray`` extra, and under ``CI`` tests/test_ray.py fails without it
    (it must not skip silently in the pinned suite): compat_check deselects it there, and only there."""
    from nbexec import load_script

    compat_check = load_script("compat_check.py")
    source = (ROOT / "scripts" / "compat_check.py").read_text()
    assert "tests/test_ray.py" in compat_check.OPTIONAL_EXTRAS
    assert "left_out = PINNED_ONLY + OPTIONAL_EXTRAS" in source
    assert not re.search(r'\[[^\]]*\bray\b[^\]]*\]"\]', source), "an environment installs the ray extra after all"
    ray_test = (ROOT / "tests" / "test_ray.py").read_text()
    assert 'os.environ.get("CI")' in ray_test and "pytest.fail" in ray_test
