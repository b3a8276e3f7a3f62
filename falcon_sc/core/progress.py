"""Progress bars, only when asked for."""

from __future__ import annotations

from collections.abc import Iterable


def progress_bar(iterable: Iterable, *, enabled: bool, **options) -> Iterable:
    """``iterable`` wrapped in a tqdm bar (a widget in Jupyter) when ``enabled``, else unchanged.

    ``tqdm.auto`` is imported only here: importing it in a notebook without ipywidgets warns, which a user who
    turned progress off should never see."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, **options)
