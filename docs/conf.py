"""Sphinx configuration (cookiecutter-scverse style: myst-nb, autodoc with numpydoc-style docstrings)."""

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
exclude_patterns = ["_build", "generated/*.md", "tutorials/README.md", "**.ipynb_checkpoints"]
