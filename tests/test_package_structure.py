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
