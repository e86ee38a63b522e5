"""The pins have one source of truth (constraints.txt); environment.yml and the venv agree with it."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def constraints() -> dict[str, str]:
    pins = {}
    for n, line in enumerate((ROOT / "constraints.txt").read_text().splitlines(), 1):
        line = line.split("#")[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        assert m, f"constraints.txt:{n}: not an exact pin: {line!r}"
        pins[canonicalize_name(m[1])] = m[2]
    return pins


def conda_pip_pins() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_lists = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_lists) == 1, "environment.yml needs exactly one pip: section"
    pins = {}
    for entry in pip_lists[0]:
        req = Requirement(entry)
        spec = list(req.specifier)
        assert len(spec) == 1 and spec[0].operator == "==", f"environment.yml: {entry!r} is not an exact pin"
        pins[canonicalize_name(req.name)] = spec[0].version
    return pins


def project_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        reqs += [Requirement(r) for r in extra]
    return reqs


def test_torch_is_pinned_to_the_cpu_release():
    assert constraints()["torch"] == "2.13.0"


def test_environment_yml_names_the_same_versions_as_constraints():
    pins = constraints()
    conda = conda_pip_pins()
    mismatched = {name: (v, pins.get(name)) for name, v in conda.items() if pins.get(name) != v}
    assert not mismatched, f"environment.yml vs constraints.txt (yml, constraints): {mismatched}"


def test_every_direct_dependency_is_pinned_in_both_files():
    pins, conda = constraints(), conda_pip_pins()
    for req in project_requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} (pyproject.toml) has no pin in constraints.txt"
        assert name in conda, f"{req.name} (pyproject.toml) is missing from environment.yml"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"pyproject.toml asks {req} but constraints.txt pins {pins[name]}")


@pytest.mark.parametrize("req", project_requirements(), ids=lambda r: r.name)
def test_installed_versions_are_the_pinned_ones(req):
    installed = version(req.name).split("+")[0]
    assert installed == constraints()[canonicalize_name(req.name)], (
        f"{req.name} {installed} is installed but constraints.txt pins another version: run `make setup`")


def test_both_commands_use_the_constraints_and_ci_calls_the_readme_test_command():
    makefile = (ROOT / "Makefile").read_text()
    assert "-c constraints.txt" in makefile
    readme = (ROOT / "README.md").read_text()
    assert "make lab" in readme and "make test" in readme
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.lstrip().startswith("#")]
    # exactly the README's test command (which ends with `make compat`'s check: tests/test_compat.py)
    assert ci[-1] == "make test", f".ci/run must end by calling the README's test command, got {ci[-1]!r}"
