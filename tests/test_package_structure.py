"""API conventions (scanpy's): adata first, options keyword-only, every parameter documented."""

import inspect
import re

import pytest

import falcon_sc as fs

PUBLIC = [getattr(fs.tl, name) for name in fs.tl.__all__] + [getattr(fs.pl, name) for name in fs.pl.__all__]


def documented(function) -> set[str]:
    """Parameter names listed in the numpydoc ``Parameters`` section of ``function``'s docstring."""
    doc = inspect.getdoc(function) or ""
    section = re.search(r"Parameters\n-+\n(.*?)(\n\n(Returns|Examples|Raises)\n-+|\Z)", doc, re.S)
    assert section, f"{function.__qualname__} has no Parameters section"
    return {line.strip().lstrip("*") for line in section[1].splitlines() if line and not line.startswith(" ")}


@pytest.mark.parametrize("function", [*PUBLIC, fs.FalconModel.predict], ids=lambda f: f.__qualname__)
def test_every_parameter_is_documented(function):
    names = [p for p in inspect.signature(function).parameters if p != "self"]
    assert set(names) <= documented(function), set(names) - documented(function)


@pytest.mark.parametrize("function", PUBLIC, ids=lambda f: f.__qualname__)
def test_adata_first_and_options_keyword_only(function):
    parameters = list(inspect.signature(function).parameters.values())
    assert parameters[0].name == "adata"
    positional = [p.name for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert len(positional) <= 3, positional  # adata and at most the keys it needs; the rest keyword-only


# What each part of the package may import from the others: the engine nothing above it, the AnnData adapters
# only the engine, plots never the tools' private modules, and only the command line itself imports it.
FORBIDDEN = {
    "falcon_sc.core": ("falcon_sc._adata", "falcon_sc.tl", "falcon_sc.pl", "falcon_sc.falcon_model", "falcon_sc.cli"),
    "falcon_sc._adata": ("falcon_sc.tl", "falcon_sc.pl", "falcon_sc.falcon_model", "falcon_sc.cli"),
    "falcon_sc.falcon_model": ("falcon_sc.tl", "falcon_sc.pl", "falcon_sc.cli"),
    "falcon_sc.tl": ("falcon_sc.pl", "falcon_sc.cli"),
    "falcon_sc.pl": ("falcon_sc.tl.", "falcon_sc.cli"),  # tl's public functions are reached as falcon_sc.tl
    "falcon_sc.image": ("falcon_sc.tl", "falcon_sc.pl", "falcon_sc._adata", "falcon_sc.cli"),
}


def imports_of(path, module: str) -> set[str]:
    import ast

    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package if node.level else ""
            target = ".".join(part for part in (base, node.module) if part)
            found |= {target} | {f"{target}.{alias.name}" for alias in node.names}
    return found


def test_no_import_runs_back_up_the_layers():
    from pathlib import Path

    root = Path(fs.__file__).parent
    broken = []
    for path in root.rglob("*.py"):
        module = ".".join(("falcon_sc", *path.relative_to(root).with_suffix("").parts)).removesuffix(".__init__")
        rules = [bad for part, bad in FORBIDDEN.items() if module == part or module.startswith(part + ".")]
        for target in imports_of(path, module):
            broken += [f"{module} imports {target}" for bad in rules for b in bad if (target + ".").startswith(b)]
    assert not broken, broken
