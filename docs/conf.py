"""Sphinx configuration (cookiecutter-scverse style: myst-nb, autodoc with numpydoc-style docstrings)."""

import shutil
from pathlib import Path

# The tutorials live in tutorials/ (where CI executes them); the docs render copies taken at build time.
_HERE = Path(__file__).parent
(_HERE / "tutorials").mkdir(exist_ok=True)
for _notebook in (_HERE.parent / "tutorials").glob("*.ipynb"):
    shutil.copy2(_notebook, _HERE / "tutorials" / _notebook.name)

project = "falcon_sc"
author = "falcon_sc developers"
extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.autosummary", "sphinx.ext.mathjax"]
autosummary_generate = True
napoleon_google_docstring = False
napoleon_numpy_docstring = True
myst_enable_extensions = ["dollarmath", "amsmath"]
# Tutorials are rendered as committed (the quick start with its outputs), never executed at build time.
nb_execution_mode = "off"
html_theme = "sphinx_book_theme"
exclude_patterns = ["_build", "generated/*.md", "**.ipynb_checkpoints"]
