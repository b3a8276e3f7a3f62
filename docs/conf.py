"""Sphinx configuration (cookiecutter-scverse style: myst-nb, autodoc with numpydoc-style docstrings, intersphinx,
nitpicky: every cross-reference must resolve)."""

import shutil
import tempfile
import zlib
from pathlib import Path

# The tutorials live in tutorials/ (where CI executes them); the docs render copies taken at build time.
_HERE = Path(__file__).parent
(_HERE / "tutorials").mkdir(exist_ok=True)
for _notebook in (_HERE.parent / "tutorials").glob("*.ipynb"):
    shutil.copy2(_notebook, _HERE / "tutorials" / _notebook.name)

project = "falcon_sc"
author = "falcon_sc developers"
extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
]
autosummary_generate = True
templates_path = ["_templates"]  # classes document their own members, not a table of everything inherited
nitpicky = True
autodoc_inherit_docstrings = False  # torch's forward() docstrings refer to torch's own pages

# Where the types in our signatures are documented. Each project's published inventory is tried first; builds
# without network (CI here) fall back to an inventory written below that lists only the objects these docs
# refer to, pointing into the same published pages.
_PROJECTS = {  # project: (published docs, {object: (role, page of the object relative to the docs)})
    "python": (
        "https://docs.python.org/3/",
        {
            "collections.abc.Sequence": ("class", "library/collections.abc.html#$"),
            "collections.abc.Mapping": ("class", "library/collections.abc.html#$"),
            "collections.abc.Callable": ("class", "library/collections.abc.html#$"),
            "collections.abc.Iterator": ("class", "library/collections.abc.html#$"),
            "pathlib.Path": ("class", "library/pathlib.html#$"),
            "os.PathLike": ("class", "library/os.html#$"),
            "dataclasses.replace": ("function", "library/dataclasses.html#$"),
        },
    ),
    "numpy": ("https://numpy.org/doc/stable/", {"numpy.ndarray": ("class", "reference/generated/$.html#$")}),
    "pandas": ("https://pandas.pydata.org/docs/", {"pandas.DataFrame": ("class", "reference/api/$.html#$")}),
    "anndata": ("https://anndata.readthedocs.io/en/stable/", {"anndata.AnnData": ("class", "generated/$.html#$")}),
    "scanpy": (
        "https://scanpy.readthedocs.io/en/stable/",
        {
            "scanpy.tl.rank_genes_groups": ("function", "generated/$.html#$"),
            "scanpy.pl.rank_genes_groups_dotplot": ("function", "generated/$.html#$"),
        },
    ),
    "matplotlib": (
        "https://matplotlib.org/stable/",
        {
            "matplotlib.axes.Axes": ("class", "api/_as_gen/$.html#$"),
            "matplotlib.figure.Figure": ("class", "api/_as_gen/$.html#$"),
        },
    ),
    "torch": (
        "https://docs.pytorch.org/docs/stable/",
        {
            "torch.Tensor": ("class", "tensors.html#$"),
            "torch.device": ("class", "tensor_attributes.html#$"),
            "torch.Generator": ("class", "generated/$.html#$"),
            "torch.nn.Module": ("class", "generated/$.html#$"),
            "torch.nn.Sequential": ("class", "generated/$.html#$"),
            "torch.nn.Module.state_dict": ("method", "generated/torch.nn.Module.html#$"),
            "torch.nn.Module.load_state_dict": ("method", "generated/torch.nn.Module.html#$"),
        },
    ),
}


def _fallback_inventory(project: str, objects: dict[str, tuple[str, str]]) -> str:
    """Write a minimal intersphinx inventory (format 2) of ``objects`` and return its path."""
    lines = "".join(f"{name} py:{role} 1 {uri} -\n" for name, (role, uri) in objects.items())
    header = f"# Sphinx inventory version 2\n# Project: {project}\n# Version: \n"
    header += "# The remainder of this file is compressed using zlib.\n"
    path = Path(_INVENTORIES) / f"{project}.inv"
    path.write_bytes(header.encode() + zlib.compress(lines.encode()))
    return str(path)


_INVENTORIES = tempfile.mkdtemp(prefix="falcon_sc_inventories_")
intersphinx_mapping = {
    project: (url, (None, _fallback_inventory(project, objects))) for project, (url, objects) in _PROJECTS.items()
}

# Type hints name classes where they are defined; their documentation names them where users import them.
_PUBLIC_NAMES = {
    "anndata._core.anndata.AnnData": "anndata.AnnData",
    "pandas.core.frame.DataFrame": "pandas.DataFrame",
    "matplotlib.axes._axes.Axes": "matplotlib.axes.Axes",
    "torch.nn.modules.module.Module": "torch.nn.Module",
    "torch.nn.modules.container.Sequential": "torch.nn.Sequential",
    "torch._C.Generator": "torch.Generator",
}


def _public_name(app, env, node, contnode):
    """Point references to private module paths at the public name, before intersphinx looks them up."""
    target = node.get("reftarget")
    if target in _PUBLIC_NAMES:
        node["reftarget"] = _PUBLIC_NAMES[target]


def setup(app):
    app.connect("missing-reference", _public_name, priority=400)


napoleon_google_docstring = False
napoleon_numpy_docstring = True
myst_enable_extensions = ["dollarmath", "amsmath"]
# Tutorials are rendered as committed (the quick start with its outputs), never executed at build time.
nb_execution_mode = "off"
html_theme = "sphinx_book_theme"
exclude_patterns = ["_build", "generated/*.md", "**.ipynb_checkpoints"]
