"""Parameter documentation written once and shared by every function that takes the parameter.

A docstring names a shared entry on a line of its own, e.g. ``{doc_show}``; :func:`doc_params` replaces that
line with the entry, indented as the line was (so the same text serves functions and methods).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)


def doc_params(**entries: str) -> Callable[[F], F]:
    """Fill ``{name}`` lines of the decorated function's docstring with ``entries[name]``."""

    def decorate(function: F) -> F:
        lines = []
        for line in (function.__doc__ or "").splitlines():
            name = line.strip()[1:-1] if line.strip().startswith("{") and line.strip().endswith("}") else None
            if name in entries:
                indent = line[: len(line) - len(line.lstrip())]
                lines += [indent + text if text else text for text in entries[name].splitlines()]
            else:
                lines.append(line)
        function.__doc__ = "\n".join(lines)
        return function

    return decorate


doc_adata_result = """\
adata
    AnnData after :func:`falcon_sc.tl.discover_subtypes` (or :func:`falcon_sc.tl.transfer_subtypes`)."""

doc_key = """\
key
    ``key_added`` of that run."""

doc_ax = """\
ax
    Axes to draw into; a new figure when ``None``."""

doc_show = """\
show
    Show the figure (default: ``scanpy.settings.autoshow``).
return_fig
    Return the figure instead of the axes."""

doc_key_added = """\
key_added
    Name under which the results are stored: ``obs[key_added]``, ``obs[f"{key_added}_confidence"]``,
    ``obsm[f"{key_added}_probs"]`` and ``uns[key_added]``."""

doc_layer = """\
layer
    Use ``adata.layers[layer]`` instead of ``adata.X``."""

doc_copy = """\
copy
    Return a modified copy instead of writing to ``adata``."""

doc_adata_predict = """\
adata
    Cells × genes, raw counts or log1p-normalised values (``X`` or ``layer``); for a model trained with
    ``use_rep``, the same embedding of these cells in ``obsm`` instead (an error says so when it is absent).
    Never modified except for the outputs, written once the prediction succeeded."""

doc_predict_options = f"""\
coarse_key
    Column of ``adata.obs`` with coarse labels named as in the model. Each cell is then given the most
    probable fine class among those M places under its coarse class. Without it, the most probable of all
    fine classes.
dataset
    For a model of several datasets: whose coarse taxonomy ``coarse_key`` follows (default: the first).
{doc_key_added}
{doc_layer}
min_gene_overlap
    Smallest fraction of the model's genes that must be present in ``adata``; genes it lacks are set to 0
    with a warning that gives the overlap.
device
    ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
{doc_copy}"""

doc_predict_returns = """\
``None``, or a copy of ``adata`` when ``copy=True``. Sets ``obs[key_added]`` (categorical, in the model's fine
classes), ``obs[f"{key_added}_confidence"]``, ``obsm[f"{key_added}_probs"]`` and ``uns[key_added]``
(``params`` with the gene overlap; ``relationship`` and ``fine_per_coarse`` counted on these cells,
``relationship_matrix``, ``fine_names``, ``coarse_names``, ``genes``), like ``discover_subtypes``."""

#: The entries of model prediction, shared by :meth:`falcon_sc.FalconModel.predict` and
#: :func:`falcon_sc.tl.transfer_subtypes`.
PREDICT_DOCS = {
    "doc_adata_predict": doc_adata_predict,
    "doc_predict_options": doc_predict_options,
    "doc_predict_returns": doc_predict_returns,
}
