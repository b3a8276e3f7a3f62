"""The project files that cannot run here (GitHub workflows, pre-commit, Read the Docs) parse, and every command,
path, extra and module they name exists in this repository; .ci/run fails on a failed install."""

import importlib.util
import re
import shlex
import tomllib
from importlib import resources
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXTRAS = set(PYPROJECT["project"]["optional-dependencies"])


def workflow(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def commands(document) -> list[str]:
    """Every shell line of every ``run`` step (and Read the Docs job) in a parsed YAML file."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "run" and isinstance(value, str):
                    found.extend(line.strip() for line in value.splitlines() if line.strip())
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                if isinstance(item, str) and item.startswith("python "):
                    found.append(item)
                else:
                    walk(item)

    walk(document)
    return found


def check_command(line: str) -> None:
    """The extras, modules and repository paths a command names exist."""
    for extras in re.findall(r"\.\[([\w,]+)\]", line):
        assert set(extras.split(",")) <= EXTRAS, line
    words = shlex.split(line) if "<<" not in line else line.split()
    if "-m" in words:
        module = words[words.index("-m") + 1]
        if module.startswith("falcon_sc"):
            assert importlib.util.find_spec(module) is not None, line
    if "sphinx" in words:
        assert (ROOT / words[words.index("-b") + 2] / "conf.py").is_file(), line


@pytest.mark.parametrize("name", ["test.yaml", "build.yaml", "docs.yaml"])
def test_workflows_parse_and_name_what_exists(name):
    document = workflow(name)
    assert document["jobs"] and document[True if True in document else "on"]  # YAML reads `on:` as True
    lines = commands(document)
    assert lines
    for line in lines:
        check_command(line)
    # torch comes from the CPU index, before the package, so that pip does not pull in a CUDA build
    installs = [line for line in lines if "pip install" in line and ("torch" in line or ".[" in line or ".whl" in line)]
    assert "download.pytorch.org/whl/cpu" in installs[0], installs


def test_the_test_workflow_runs_the_readmes_command_on_every_supported_python():
    job = workflow("test.yaml")["jobs"]["test"]
    assert job["strategy"]["matrix"]["python"] == ["3.11", "3.12", "3.13"]
    assert PYPROJECT["project"]["requires-python"] == ">=3.11"
    lines = commands(job)
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    for command in ("python -m pytest", "python -m ruff check .", "python -m ruff format --check ."):
        assert command in lines and command in ci
    assert 'pip install -e ".[test]" && python -m pytest' in readme


def test_the_build_workflow_installs_the_wheel_apart_and_checks_the_demo():
    lines = commands(workflow("build.yaml"))
    text = "\n".join(lines)
    assert "python -m build" in text and "twine check --strict dist/*" in text
    assert "python -m venv /tmp/clean" in text and "/tmp/clean/bin/python -m pip install dist/*.whl" in text
    assert "-m falcon_sc.demo" in text and "acc >= 96" in text and "sc.pp.neighbors(adata)" in text
    assert "10_000" in text  # above scanpy's exact-search size


def test_docs_build_as_ci_does():
    lines = commands(workflow("docs.yaml"))
    ci = (ROOT / ".ci" / "run").read_text()
    sphinx = "python -m sphinx -W -q -b html docs docs/_build/html"
    assert sphinx in lines and sphinx in ci
    rtd = yaml.safe_load((ROOT / ".readthedocs.yaml").read_text())
    assert rtd["version"] == 2 and (ROOT / rtd["sphinx"]["configuration"]).is_file()
    assert rtd["sphinx"]["fail_on_warning"] is True
    assert set(rtd["python"]["install"][0]["extra_requirements"]) <= EXTRAS
    for line in commands(rtd):
        check_command(line)


def test_pre_commit_runs_what_ci_lints_with():
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    hooks = {hook["id"] for repo in config["repos"] for hook in repo["hooks"]}
    assert {"ruff-check", "ruff-format"} <= hooks  # the two lint commands of .ci/run
    assert {"trailing-whitespace", "end-of-file-fixer", "check-yaml", "check-toml"} <= hooks
    ruff = next(repo for repo in config["repos"] if repo["repo"].endswith("ruff-pre-commit"))
    assert re.fullmatch(r"v\d+\.\d+\.\d+", ruff["rev"])


def test_ci_fails_on_a_failed_install_and_says_what_it_installed():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "|| true" not in ci and "2>/dev/null" not in ci and "set -euo pipefail" in ci
    assert "torch.__version__" in ci  # what was installed is printed


def test_the_package_is_typed():
    assert (resources.files("falcon_sc") / "py.typed").is_file()
