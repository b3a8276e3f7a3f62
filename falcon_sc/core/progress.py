"""Progress bars, only when asked for."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator


def progress_bar(iterable: Iterable, *, enabled: bool, **options) -> Iterable:
    """``iterable`` wrapped in a tqdm bar (a widget in Jupyter) when ``enabled``, else unchanged.

    ``tqdm.auto`` is imported only here: importing it in a notebook without ipywidgets warns, which a user who
    turned progress off should never see."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, **options)


class EpochProgress:
    """One bar over the epochs of every training run of a call (restarts, re-seeded runs, the runs of
    ``n_fine="auto"``): each run adds its epochs to the total when it starts, so a call shows one bar, not one
    per run. Disabled, it does nothing."""

    def __init__(self, enabled: bool, desc: str = "FALCON"):
        self._enabled, self._desc, self._bar = enabled, desc, None

    def add(self, epochs: int) -> None:
        if not self._enabled:
            return
        if self._bar is None:  # drawn when the first run starts, with its epochs as the total
            from tqdm.auto import tqdm

            self._bar = tqdm(total=epochs, desc=self._desc, unit="epoch")
        else:
            self._bar.total += epochs
            self._bar.refresh()

    def step(self) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


@contextlib.contextmanager
def epoch_progress(progress: bool | EpochProgress, *, main_process: bool = True) -> Iterator[EpochProgress]:
    """The bar a training call adds its epochs to: the caller's ``EpochProgress`` when it shares one, else a bar
    of the call's own (shown when ``progress`` is true on the main process), closed when the block ends."""
    if isinstance(progress, EpochProgress):
        yield progress
        return
    bar = EpochProgress(progress and main_process)
    try:
        yield bar
    finally:
        bar.close()
